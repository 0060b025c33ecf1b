package traceql

import (
	"cmp"
	"slices"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// compare() answers "what is different about these spans?": of the spans
// the pipeline yields, those its filter matches are the selection and the
// rest the baseline, and for every attribute of every span it counts, per
// step, how often each value occurs on each side. Grafana's Traces
// Drilldown draws the two distributions side by side.
//
// Its series are Tempo's, so that Grafana reads them unchanged:
//
//	{__meta_type="baseline", <attr>=<value>}        spans of the baseline with that value
//	{__meta_type="selection", <attr>=<value>}       the same for the selection
//	{__meta_type="baseline_total", <attr>=nil}      spans of the baseline with the attribute
//	{__meta_type="selection_total", <attr>=nil}     the same for the selection
//	{__meta_error="__too_many_values__", <attr>=nil} the attribute has more values than were kept
//
// Attributes are the span's name, status, kind and status message (when
// set), its scope's name and version, and every resource, span, scope,
// event and link attribute, named as a query names them
// (resource.service.name, span.http.route, event:name). Durations, IDs and
// trace-level intrinsics are left out: their values are unique or need the
// whole trace, and grouping by them says nothing.
const (
	metaTypeLabel       = "__meta_type"
	metaErrorLabel      = "__meta_error"
	metaTooManyValues   = "__too_many_values__"
	maxComparedValues   = 100 // values of one attribute counted per side
	defaultCompareLimit = 1 << 20
)

var compareSides = [2]string{"baseline", "selection"}

// compareAttrKey names an attribute without building its label: the
// lookup on every span allocates nothing.
type compareAttrKey struct {
	scope AttrScope
	name  string // the attribute's name, or an intrinsic's with scope ScopeNone
}

// label is the attribute's name as a query writes it.
func (k compareAttrKey) label() string {
	if k.scope == ScopeNone {
		return k.name
	}
	return (&Attribute{Scope: k.scope, Name: k.name}).String()
}

type compareAttr struct {
	label  string
	total  []float64
	values map[string]*compareValue
	// over is set once a value was not counted on its own because the
	// attribute or the query had reached its bound.
	over bool
}

type compareValue struct {
	val    Static
	counts []float64
	sum    float64
}

// compareAcc accumulates compare()'s counts for n steps. Its memory is
// bounded: at most maxComparedValues values per attribute and side, and
// at most budget samples in all; values past either bound still count in
// the attribute's total, and the attribute is reported as having too many
// values, as is an attribute first met once the budget is spent.
type compareAcc struct {
	m      *MetricsAggregate
	n      int
	budget int
	ev, lk bool
	sides  [2]map[compareAttrKey]*compareAttr
	// unkept names the attributes met after the budget was spent, so
	// that they are reported rather than missing without a word; it is
	// bounded like the values of one attribute.
	unkept map[compareAttrKey]bool
	keyBuf []byte
}

func newCompareAcc(m *MetricsAggregate, n, maxSamples int) *compareAcc {
	if maxSamples <= 0 {
		maxSamples = defaultCompareLimit
	}
	c := &compareAcc{m: m, n: n, budget: maxSamples, unkept: map[compareAttrKey]bool{}}
	if m.Compare.Expr != nil {
		c.ev, c.lk = iterates(m.Compare.Expr)
	}
	for i := range c.sides {
		c.sides[i] = map[compareAttrKey]*compareAttr{}
	}
	return c
}

// observe counts span i of tr, which starts in step b.
func (c *compareAcc) observe(tr *Trace, i, b int) {
	s := tr.Spans[i]
	side := 0
	selectable := c.m.From == 0 && c.m.To == 0 || s.StartUnixNano > c.m.From && s.StartUnixNano <= c.m.To
	if selectable && (c.m.Compare.Expr == nil || matchSpan(c.m.Compare.Expr, tr, i, c.ev, c.lk)) {
		side = 1
	}
	attrs := c.sides[side]
	c.add(attrs, b, compareAttrKey{name: "name"}, NewString(s.Name))
	c.add(attrs, b, compareAttrKey{name: "status"}, NewStatus(s.StatusCode))
	c.add(attrs, b, compareAttrKey{name: "kind"}, NewKind(s.Kind))
	if s.StatusMessage != "" {
		c.add(attrs, b, compareAttrKey{name: "statusMessage"}, NewString(s.StatusMessage))
	}
	if r := s.Resource; r != nil {
		c.addAll(attrs, b, ScopeResource, r.Attrs)
	}
	if sc := s.Scope; sc != nil {
		if sc.Name != "" {
			c.add(attrs, b, compareAttrKey{name: "instrumentation:name"}, NewString(sc.Name))
		}
		if sc.Version != "" {
			c.add(attrs, b, compareAttrKey{name: "instrumentation:version"}, NewString(sc.Version))
		}
		c.addAll(attrs, b, ScopeInstrumentation, sc.Attrs)
	}
	c.addAll(attrs, b, ScopeSpan, s.Attrs)
	for ei := range s.Events {
		c.add(attrs, b, compareAttrKey{name: "event:name"}, NewString(s.Events[ei].Name))
		c.addAll(attrs, b, ScopeEvent, s.Events[ei].Attrs)
	}
	for li := range s.Links {
		c.addAll(attrs, b, ScopeLink, s.Links[li].Attrs)
	}
}

func (c *compareAcc) addAll(attrs map[compareAttrKey]*compareAttr, b int, scope AttrScope, as storage.Attrs) {
	for i := range as {
		c.add(attrs, b, compareAttrKey{scope: scope, name: as[i].Key}, fromValue(as[i].Value))
	}
}

func (c *compareAcc) add(attrs map[compareAttrKey]*compareAttr, b int, k compareAttrKey, v Static) {
	if v.Type == TypeNil {
		return
	}
	a := attrs[k]
	if a == nil {
		if c.budget < c.n {
			if len(c.unkept) < maxComparedValues {
				c.unkept[k] = true
			}
			return
		}
		c.budget -= c.n
		a = &compareAttr{label: k.label(), total: make([]float64, c.n), values: map[string]*compareValue{}}
		attrs[k] = a
	}
	a.total[b]++
	c.keyBuf = v.appendKey(c.keyBuf[:0])
	cv := a.values[string(c.keyBuf)]
	if cv == nil {
		if len(a.values) >= maxComparedValues || c.budget < c.n {
			a.over = true
			return
		}
		c.budget -= c.n
		cv = &compareValue{val: v, counts: make([]float64, c.n)}
		a.values[string(c.keyBuf)] = cv
	}
	cv.counts[b]++
	cv.sum++
}

// series returns the accumulated series; ts gives a step's timestamp.
func (c *compareAcc) series(ts func(int) int64) []Series {
	build := func(labels []Label, counts []float64) Series {
		s := Series{Labels: labels, Samples: make([]Sample, 0, len(counts))}
		for b, v := range counts {
			s.Samples = append(s.Samples, Sample{TimestampMs: ts(b), Value: v})
		}
		return s
	}
	var out []Series
	tooMany := map[string]bool{}
	for k := range c.unkept {
		tooMany[k.label()] = true
	}
	for side, attrs := range c.sides {
		meta := Label{Key: metaTypeLabel, Value: NewString(compareSides[side])}
		total := Label{Key: metaTypeLabel, Value: NewString(compareSides[side] + "_total")}
		for _, a := range attrs {
			out = append(out, build([]Label{total, {Key: a.label}}, a.total))
			vals := make([]*compareValue, 0, len(a.values))
			for _, v := range a.values {
				vals = append(vals, v)
			}
			// The most frequent first; ties by value, so that results do
			// not depend on map order.
			slices.SortFunc(vals, func(x, y *compareValue) int {
				if c := cmp.Compare(y.sum, x.sum); c != 0 {
					return c
				}
				return cmp.Compare(x.val.Text(), y.val.Text())
			})
			if len(vals) > c.m.TopN || a.over {
				tooMany[a.label] = true
				vals = vals[:min(len(vals), c.m.TopN)]
			}
			for _, v := range vals {
				out = append(out, build([]Label{meta, {Key: a.label, Value: v.val}}, v.counts))
			}
		}
	}
	for label := range tooMany {
		out = append(out, Series{Labels: []Label{{Key: metaErrorLabel, Value: NewString(metaTooManyValues)}, {Key: label}}})
	}
	return out
}
