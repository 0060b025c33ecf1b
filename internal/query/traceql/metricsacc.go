package traceql

import (
	"container/list"
	"fmt"
	"math"
	mathbits "math/bits"
	"strconv"
	"sync"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// metricsAcc accumulates a metrics aggregate's series over steps of width
// step from origin (a multiple of step), n of them. A query has one for
// its range; an immutable block gets its own, over the steps the block
// covers, which the cache keeps and later queries merge.
type metricsAcc struct {
	m                    *MetricsAggregate
	origin, step         int64
	n                    int
	maxSeries, exemplars int
	series               map[string]*seriesAcc
	order                []string
	keyBuf               []byte
	tooMany              error
	// byRes memoizes the series of a resource when every by() field is a
	// resource attribute, as in rate() by (resource.service.name): the
	// series then depends on the span's resource alone, which stores
	// share between spans, and its key need not be built per span.
	byRes map[*storage.Resource]*seriesAcc

	// pass says what add does with a span: count it and keep it as an
	// exemplar (passAll), only count it, or only keep it as an exemplar
	// (exemplarPass). exPending is how many series still lack
	// exemplars in the exemplars' pass.
	pass      int8
	exPending int

	// held counts the values quantile_over_time keeps exactly; once it
	// passes maxExactValues, sketched is set and every series' values
	// are folded into sketches (see sketch.go).
	held     int
	sketched bool
	slots    int // bucket slots of all sketches (maxSketchSlots)

	// parts are the partial accumulators merged into a, in merge order.
	// Their exemplars are not copied when they are merged but picked
	// when the query finishes (pickExemplars), so that the many a
	// per-query limit leaves out are never copied at all.
	parts []mergedPart
}

// mergedPart is a partial accumulator merged into a query's, with the
// query's step where its own steps start.
type mergedPart struct {
	p   *metricsAcc
	off int
}

const (
	passAll = iota
	passCounts
	passExemplars
)

// maxResMemo bounds byRes.
const maxResMemo = 4096

func newMetricsAcc(m *MetricsAggregate, origin, step int64, n, maxSeries, exemplars int) *metricsAcc {
	a := &metricsAcc{m: m, origin: origin, step: step, n: n, maxSeries: maxSeries, exemplars: exemplars, series: map[string]*seriesAcc{}}
	resOnly := len(m.By) > 0 && m.Fn != "histogram_over_time"
	for _, e := range m.By {
		at, ok := e.(*Attribute)
		resOnly = resOnly && ok && at.Scope == ScopeResource && !at.Parent
	}
	if resOnly {
		a.byRes = map[*storage.Resource]*seriesAcc{}
	}
	return a
}

// newSeries makes the accumulator of a series first seen.
func (a *metricsAcc) newSeries(key string, labels []Label) (*seriesAcc, bool) {
	if a.maxSeries > 0 && len(a.series) >= a.maxSeries {
		a.tooMany = fmt.Errorf("%w: more than %d", ErrTooManySeries, a.maxSeries)
		return nil, false
	}
	acc := &seriesAcc{labels: labels, count: make([]float64, a.n)}
	switch a.m.Fn {
	case "min_over_time", "max_over_time", "sum_over_time", "avg_over_time":
		acc.sum, acc.min, acc.max = make([]float64, a.n), make([]float64, a.n), make([]float64, a.n)
	case "quantile_over_time":
		if a.sketched {
			acc.sketches = make([]*sketch, a.n)
		} else {
			acc.values = make([][]float64, a.n)
		}
	}
	a.series[key] = acc
	a.order = append(a.order, key)
	return acc, true
}

// sketchAll folds the values of every series into a sketch per step, and
// has a keep sketches from here on: past maxExactValues a query's
// quantiles are within sketchAlpha, and its memory no longer grows with
// its spans.
func (a *metricsAcc) sketchAll() {
	a.sketched = true
	for _, acc := range a.series {
		if acc.values == nil {
			continue
		}
		acc.sketches = make([]*sketch, a.n)
		for b, vs := range acc.values {
			if len(vs) == 0 {
				continue
			}
			sk := &sketch{}
			for _, v := range vs {
				a.sketchAdd(sk, v)
			}
			acc.sketches[b] = sk
		}
		acc.values = nil
	}
}

// sketchAdd adds v to sk and holds the query's sketches to maxSketchSlots.
func (a *metricsAcc) sketchAdd(sk *sketch, v float64) {
	if a.slots += sk.add(v); a.slots > maxSketchSlots && a.tooMany == nil {
		a.tooMany = fmt.Errorf("%w: quantile_over_time's sketches hold more than %d buckets; raise the step or narrow the query", ErrTooManyValues, maxSketchSlots)
	}
}

// exemplarPass prepares a, whose spans were all counted in passCounts,
// for a pass over the same spans in the same order that only picks
// exemplars, and reports whether any are wanted. A series wants as many
// as it has steps with spans, up to the limit: the pass can stop once
// each has them (exPending 0), and picks what counting and picking at
// once would have, the first span of each step in scan order until the
// limit.
func (a *metricsAcc) exemplarPass() bool {
	a.pass, a.exPending = passExemplars, 0
	for _, acc := range a.series {
		acc.exWant = 0
		for _, c := range acc.count {
			if c > 0 {
				acc.exWant++
			}
		}
		acc.exWant = min(acc.exWant, a.exemplars)
		if acc.exWant > len(acc.ex) {
			a.exPending++
		}
	}
	return a.exPending > 0
}

// add counts span i of tr, when it starts inside the accumulator's steps.
func (a *metricsAcc) add(tr *Trace, i int) {
	m := a.m
	s := tr.Spans[i]
	t := s.StartUnixNano
	if t < a.origin {
		return
	}
	b := int((t - a.origin) / a.step)
	if b >= a.n {
		return
	}
	c := evalCtx{tr: tr, span: i}
	val := 0.0
	if m.Attr != nil {
		v := eval(m.Attr, &c)
		f, ok := v.Float()
		if !ok {
			return
		}
		if v.Type == TypeDuration {
			f /= 1e9 // seconds, as Tempo reports durations
		}
		val = f
	}
	acc, ok := a.byRes[s.Resource]
	if !ok {
		acc, ok = a.seriesOf(&c, val)
		if !ok {
			return
		}
		if a.byRes != nil && s.Resource != nil {
			if len(a.byRes) >= maxResMemo {
				// Stores share resources, but nothing promises it.
				clear(a.byRes)
			}
			a.byRes[s.Resource] = acc
		}
	}
	if a.pass != passExemplars {
		if acc.count[b] == 0 && acc.min != nil {
			acc.min[b], acc.max[b] = val, val
		}
		acc.count[b]++
		if acc.sum != nil {
			acc.sum[b] += val
			acc.min[b] = math.Min(acc.min[b], val)
			acc.max[b] = math.Max(acc.max[b], val)
		}
		switch {
		case acc.values != nil:
			acc.values[b] = append(acc.values[b], val)
			if a.held++; a.held > maxExactValues {
				a.sketchAll()
			}
		case acc.sketches != nil:
			if acc.sketches[b] == nil {
				acc.sketches[b] = &sketch{}
			}
			a.sketchAdd(acc.sketches[b], val)
		}
	}
	if a.pass != passCounts && len(acc.ex) < a.exemplars && !acc.hasExemplar(b) {
		acc.addExemplar(Exemplar{
			Labels:      []Label{{Key: "trace:id", Value: NewString(s.TraceID.String())}, {Key: "span:id", Value: NewString(s.SpanID.String())}},
			Value:       val,
			TimestampMs: t / 1e6,
		}, b, a.n, a.exemplars)
		if a.pass == passExemplars && len(acc.ex) == acc.exWant {
			a.exPending--
		}
	}
}

// seriesOf finds or makes the series of the span c is on, which measured
// val. The key is built in a reused buffer; labels are only materialised
// for a new series.
func (a *metricsAcc) seriesOf(c *evalCtx, val float64) (*seriesAcc, bool) {
	m := a.m
	a.keyBuf = a.keyBuf[:0]
	for _, e := range m.By {
		a.keyBuf = eval(e, c).appendKey(a.keyBuf)
	}
	le := 0.0
	if m.Fn == "histogram_over_time" {
		le = bucketUpper(val)
		a.keyBuf = strconv.AppendFloat(a.keyBuf, le, 'g', -1, 64)
	}
	if acc, ok := a.series[string(a.keyBuf)]; ok {
		return acc, true
	}
	var labels []Label
	for _, e := range m.By {
		if v := eval(e, c); v.Type != TypeNil {
			labels = append(labels, Label{Key: e.String(), Value: v})
		}
	}
	if m.Fn == "histogram_over_time" {
		labels = append(labels, Label{Key: "__bucket", Value: NewFloat(le)})
	} else if len(m.By) == 0 {
		labels = append(labels, Label{Key: "__name__", Value: NewString(m.Fn)})
	}
	return a.newSeries(string(a.keyBuf), labels)
}

// merge adds p's series into a. p has a's step and an origin on a's step
// grid, and its steps lie inside a's; p is not changed, since the cache
// hands it to other queries too. Its exemplars are picked later, by
// pickExemplars: an accumulator that merges parts adds no spans itself.
func (a *metricsAcc) merge(p *metricsAcc) {
	off := int((p.origin - a.origin) / a.step)
	for _, k := range p.order {
		ps := p.series[k]
		acc, ok := a.series[k]
		if !ok {
			if acc, ok = a.newSeries(k, ps.labels); !ok {
				return
			}
		}
		for b, c := range ps.count {
			ab := b + off
			if c == 0 || ab < 0 || ab >= a.n {
				continue
			}
			if acc.sum != nil {
				if acc.count[ab] == 0 {
					acc.min[ab], acc.max[ab] = ps.min[b], ps.max[b]
				}
				acc.sum[ab] += ps.sum[b]
				acc.min[ab] = math.Min(acc.min[ab], ps.min[b])
				acc.max[ab] = math.Max(acc.max[ab], ps.max[b])
			}
			acc.count[ab] += c
		}
	}
	a.parts = append(a.parts, mergedPart{p: p, off: off})
}

// exRef is an exemplar of a merged part: the part, and its index in the
// part's series.
type exRef struct{ part, i int32 }

// pickExemplars gives the series named by keys the exemplars of the
// parts merged into a. A series takes, in merge order, the first
// exemplar of each step it has none of yet, until it has a.exemplars:
// what adding the parts' spans to a in that order would have kept. With
// limit >= 0, the series, in the order of keys, then keep only what
// capExemplars(limit) would leave them of those, and only those are
// copied: a rate() by service over cached blocks otherwise copied a
// hundred exemplars a series to keep nine. The caller passes limit < 0
// when something other than the steps decides what capExemplars keeps
// (values left out as NaN, series a second stage drops).
func (a *metricsAcc) pickExemplars(keys []string, limit int) {
	if len(a.parts) == 0 || a.exemplars <= 0 {
		return
	}
	// taken marks the steps a series has an exemplar for, and at holds
	// it: one a step, so that walking taken finds them in time order.
	taken := make([]uint64, (a.n+63)>>6)
	at := make([]exRef, a.n)
	gather := func(k string) int {
		clear(taken)
		n := 0
		for pi, mp := range a.parts {
			ps, ok := mp.p.series[k]
			if !ok {
				continue
			}
			for i, b := range ps.exBkt {
				if n >= a.exemplars {
					return n
				}
				// A step outside a's range has no sample to go with.
				ab := b + mp.off
				if ab < 0 || ab >= a.n || taken[ab>>6]&(1<<(ab&63)) != 0 {
					continue
				}
				taken[ab>>6] |= 1 << (ab & 63)
				at[ab] = exRef{part: int32(pi), i: int32(i)}
				n++
			}
		}
		return n
	}
	var keep []int
	if limit >= 0 {
		lens, total := make([]int, len(keys)), 0
		for si, k := range keys {
			lens[si] = gather(k)
			total += lens[si]
		}
		if total > limit {
			keep = exemplarShares(lens, limit)
		}
	}
	for si, k := range keys {
		n := gather(k)
		kn := n
		if keep != nil {
			kn = keep[si]
		}
		acc := a.series[k]
		acc.ex, acc.exBkt = make([]Exemplar, 0, kn), make([]int, 0, kn)
		// As capExemplars: the j-th kept is the (j*n/kn)-th in time
		// order, which is step order.
		c := 0
		for w, bits := range taken {
			for ; bits != 0 && len(acc.ex) < kn; bits &= bits - 1 {
				if j := len(acc.ex); c == j*n/kn {
					b := w<<6 + mathbits.TrailingZeros64(bits)
					r := at[b]
					acc.ex = append(acc.ex, a.parts[r.part].p.series[k].ex[r.i])
					acc.exBkt = append(acc.exBkt, b)
				}
				c++
			}
		}
	}
}

// cacheable reports whether m's partial series merge: counts, sums,
// minima and maxima do; quantiles need every value, and compare() keeps
// its own counts.
func cacheable(m *MetricsAggregate) bool {
	return m.Compare == nil && m.Fn != "quantile_over_time"
}

// size estimates the bytes a's series hold, for the cache's budget.
func (a *metricsAcc) size() int64 {
	var n int64 = 256
	for k, s := range a.series {
		n += int64(len(k)) + 128 + int64(len(s.labels))*64 + int64(len(s.ex))*160 + int64(len(s.exIn))*8
		n += int64(len(s.count)) * 8
		if s.sum != nil {
			n += int64(len(s.count)) * 24
		}
	}
	return n
}

// MetricsCache keeps the partial series of TraceQL metrics queries over
// immutable blocks, keyed by block ID, query and step, within a budget of
// bytes; the least recently used go first. A dashboard that asks for the
// last hour every few seconds then reads only what changed since: the
// heads and blocks written since. It is safe for concurrent use.
type MetricsCache struct {
	mu     sync.Mutex
	budget int64
	used   int64
	lru    *list.List // of *cacheEntry, most recent first
	byKey  map[string]*list.Element
}

type cacheEntry struct {
	key  string
	acc  *metricsAcc
	size int64
}

// NewMetricsCache returns a cache holding at most budget bytes (estimated).
func NewMetricsCache(budget int64) *MetricsCache {
	return &MetricsCache{budget: budget, lru: list.New(), byKey: map[string]*list.Element{}}
}

func (c *MetricsCache) get(key string) (*metricsAcc, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[key]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(e)
	return e.Value.(*cacheEntry).acc, true
}

// put keeps acc unless it alone would take more than a quarter of the
// budget, evicting the least recently used entries to make room.
func (c *MetricsCache) put(key string, acc *metricsAcc) {
	size := acc.size() + int64(len(key))
	c.mu.Lock()
	defer c.mu.Unlock()
	if size > c.budget/4 {
		return
	}
	if e, ok := c.byKey[key]; ok {
		c.used -= e.Value.(*cacheEntry).size
		c.lru.Remove(e)
	}
	for c.used+size > c.budget && c.lru.Len() > 0 {
		last := c.lru.Back()
		ce := last.Value.(*cacheEntry)
		c.used -= ce.size
		delete(c.byKey, ce.key)
		c.lru.Remove(last)
	}
	c.byKey[key] = c.lru.PushFront(&cacheEntry{key: key, acc: acc, size: size})
	c.used += size
}

// Len and Bytes report what the cache holds.
func (c *MetricsCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

func (c *MetricsCache) Bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}
