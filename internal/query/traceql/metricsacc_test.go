package traceql

import (
	"context"
	"maps"
	"math"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// partedQuerier is a memQuerier cut into parts by start time: two
// immutable ones, [0, 1s) and [1s, 2s), and a changing one after. It
// counts how often each part is read.
type partedQuerier struct {
	memQuerier
	reads map[string]int
}

func (p *partedQuerier) SpanParts(start, end int64) []storage.SpanPart {
	cut := []struct {
		id     string
		lo, hi int64
	}{{"", 2 * int64(time.Second), math.MaxInt64}, {"b", int64(time.Second), 2*int64(time.Second) - 1}, {"a", 0, int64(time.Second) - 1}}
	var parts []storage.SpanPart
	for _, c := range cut {
		if end != 0 && c.lo > end || start != 0 && c.hi < start {
			continue
		}
		parts = append(parts, storage.SpanPart{ID: c.id, MinTime: c.lo, MaxTime: c.hi, Spans: func(ctx context.Context, q *storage.SpanQuery, fn func(*storage.Span) bool) error {
			p.reads[c.id]++
			return p.memQuerier.Spans(ctx, q, func(s *storage.Span) bool {
				if s.StartUnixNano < c.lo || s.StartUnixNano > c.hi {
					return true
				}
				return fn(s)
			})
		}})
	}
	return parts
}

// partsInOrder reads a partedQuerier's parts one after another, as one
// querier that caches nothing: a query over it adds the spans of each
// part in the order a cached query merges them.
type partsInOrder struct {
	memQuerier
	parts *partedQuerier
}

func (p *partsInOrder) Spans(ctx context.Context, q *storage.SpanQuery, fn func(*storage.Span) bool) error {
	for _, part := range p.parts.SpanParts(0, 0) {
		stopped := false
		if err := part.Spans(ctx, q, func(s *storage.Span) bool {
			stopped = !fn(s)
			return !stopped
		}); err != nil || stopped {
			return err
		}
	}
	return nil
}

// TestMetricsCache runs metrics queries over a parted store three ways:
// without a cache, filling one, and from it; and again with the window
// moved by a step. Every answer must equal the uncached one, and a part
// whose series are cached must not be read again.
func TestMetricsCache(t *testing.T) {
	var spans []storage.Span
	svc := []*storage.Resource{
		{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str("a")}}},
		{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str("b")}}},
	}
	for i := range 300 {
		start := int64(i) * int64(10*time.Millisecond)
		spans = append(spans, storage.Span{
			TraceID: storage.TraceID{byte(i), 1}, SpanID: storage.SpanID{byte(i), 2},
			Name: []string{"get", "put", "scan"}[i%3], StatusCode: storage.StatusCode(i % 3),
			StartUnixNano: start, EndUnixNano: start + int64(i%17)*int64(time.Millisecond),
			Resource: svc[i%2],
		})
	}
	step := int64(100 * time.Millisecond)
	for _, query := range []string{
		`{ } | rate() by (resource.service.name)`,
		`{ status = error } | count_over_time()`,
		`{ } | sum_over_time(duration) by (name)`,
		`{ } | min_over_time(duration)`,
		`{ } | max_over_time(duration) by (resource.service.name, name)`,
		`{ } | avg_over_time(duration)`,
		`{ } | histogram_over_time(duration)`,
	} {
		q, err := Parse(query)
		require.NoError(t, err)
		for _, window := range [][2]int64{{0, 3 * int64(time.Second)}, {step, 3*int64(time.Second) + step}} {
			req := MetricsRequest{Query: q, Start: window[0], End: window[1], Step: step, Exemplars: 5}
			want, err := Metrics(context.Background(), &memQuerier{spans: spans}, req)
			require.NoError(t, err)
			require.NotEmpty(t, want.Series, query)
			// The exemplars a cached query keeps are those of adding the
			// parts' spans in its order (pickExemplars).
			inOrder, err := Metrics(context.Background(), &partsInOrder{memQuerier{spans: spans}, &partedQuerier{memQuerier: memQuerier{spans: spans}, reads: map[string]int{}}}, req)
			require.NoError(t, err)

			pq := &partedQuerier{memQuerier: memQuerier{spans: spans}, reads: map[string]int{}}
			req.Cache = NewMetricsCache(1 << 20)
			var filled map[string]int
			for run := range 2 {
				if run == 1 {
					filled = maps.Clone(pq.reads)
				}
				got, err := Metrics(context.Background(), pq, req)
				require.NoError(t, err)
				require.Equal(t, len(want.Series), len(got.Series), "%s run %d", query, run)
				for i := range want.Series {
					require.Equal(t, want.Series[i].Labels, got.Series[i].Labels, "%s run %d", query, run)
					require.Equal(t, want.Series[i].Samples, got.Series[i].Samples, "%s run %d: %v", query, run, want.Series[i].Labels)
					require.Equal(t, len(want.Series[i].Exemplars), len(got.Series[i].Exemplars), "%s run %d", query, run)
					require.Equal(t, inOrder.Series[i].Exemplars, got.Series[i].Exemplars, "%s run %d: %v", query, run, want.Series[i].Labels)
				}
			}
			require.Equal(t, 2, pq.reads[""], "the changing part is read every time")
			// Part a lies inside the first window only; b inside both. A
			// part is cached after one read, or two when its exemplars
			// take a pass of their own (exemplarPass).
			require.Equal(t, filled["b"], pq.reads["b"], "%s: a cached part was read again", query)
			require.Contains(t, []int{1, 2}, filled["b"], query)
			if window[0] == 0 {
				require.Equal(t, filled["a"], pq.reads["a"], query)
			} else {
				require.Equal(t, 2, pq.reads["a"], "%s: a part straddling the start is read, not cached", query)
			}
		}
	}
}

// TestMetricsCacheSeriesLimit checks that a block whose own series pass
// the limit fails the query, cached or not, rather than answering with the
// series it had room for.
func TestMetricsCacheSeriesLimit(t *testing.T) {
	var spans []storage.Span
	for i := range 50 {
		spans = append(spans, storage.Span{SpanID: storage.SpanID{byte(i)}, Name: []string{"a", "b", "c"}[i%3],
			StartUnixNano: int64(i) * int64(time.Second) / 50, EndUnixNano: int64(i)*int64(time.Second)/50 + 1})
	}
	q, err := Parse(`{ } | rate() by (name)`)
	require.NoError(t, err)
	pq := &partedQuerier{memQuerier: memQuerier{spans: spans}, reads: map[string]int{}}
	req := MetricsRequest{Query: q, Start: 0, End: 3 * int64(time.Second), Step: int64(100 * time.Millisecond), MaxSeries: 2, Cache: NewMetricsCache(1 << 20)}
	for range 2 {
		_, err := Metrics(context.Background(), pq, req)
		require.ErrorIs(t, err, ErrTooManySeries)
	}
	require.Equal(t, 2, pq.reads["a"], "a part past the limit is not kept")
}

// TestMetricsCacheBudget checks that the cache holds at most its budget,
// dropping the least recently used entries, and refuses an entry larger
// than a quarter of it.
func TestMetricsCacheBudget(t *testing.T) {
	q, err := Parse(`{ } | rate() by (name)`)
	require.NoError(t, err)
	acc := func(series int) *metricsAcc {
		a := newMetricsAcc(q.Metrics, 0, 1, 100, 0, 0)
		for i := range series {
			a.newSeries(string(rune('a'+i)), nil)
		}
		return a
	}
	one := acc(1).size() + 2
	c := NewMetricsCache(10 * one)
	for i := range 20 {
		c.put(string(rune('A'+i))+"k", acc(1))
		require.LessOrEqual(t, c.Bytes(), 10*one)
	}
	require.Equal(t, 10, c.Len())
	_, ok := c.get("Ak")
	require.False(t, ok, "the oldest entries went first")
	_, ok = c.get("Tk")
	require.True(t, ok)
	c.put("big", acc(50))
	_, ok = c.get("big")
	require.False(t, ok, "an entry past a quarter of the budget is not kept")
}

// TestMetricsByResource counts spans grouped by a resource attribute when
// every span has its own Resource, past the memo's bound, and when many
// share one: the series are the same either way.
func TestMetricsByResource(t *testing.T) {
	q, err := Parse(`{ } | count_over_time() by (resource.service.name)`)
	require.NoError(t, err)
	shared := []*storage.Resource{
		{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str("a")}}},
		{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str("b")}}},
	}
	for _, own := range []bool{false, true} {
		a := newMetricsAcc(q.Metrics, 0, 10, 1, 0, 0)
		one := newSingle()
		n := 3 * maxResMemo
		for i := range n {
			r := shared[i%2]
			if own {
				r = &storage.Resource{Attrs: slices.Clone(r.Attrs)}
			}
			a.add(one.with(&storage.Span{StartUnixNano: 1, EndUnixNano: 2, Resource: r}), 0)
		}
		require.Len(t, a.series, 2)
		for _, s := range a.series {
			require.Equal(t, float64(n/2), s.count[0])
		}
		require.LessOrEqual(t, len(a.byRes), maxResMemo)
	}
}

// TestExemplarPass checks that counting every span and then picking
// exemplars in a second pass over the same spans, stopped as soon as each
// series has its exemplars, gives exactly what one pass gives: the same
// counts, and the first span of each step in scan order as the exemplar,
// up to the limit. Series a has more steps with spans than the limit,
// series b fewer.
func TestExemplarPass(t *testing.T) {
	q, err := Parse(`{ } | rate() by (resource.service.name)`)
	require.NoError(t, err)
	m := q.Metrics
	svc := []*storage.Resource{
		{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str("a")}}},
		{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str("b")}}},
	}
	var trs []*Trace
	for i := range 2000 {
		// b's spans fall in the first three steps only; the order is
		// not by time, as a block's is not.
		r, start := svc[0], int64((i*7919)%1000)*int64(time.Millisecond)
		if i%5 == 0 {
			r, start = svc[1], int64(i%3)*int64(100*time.Millisecond)
		}
		trs = append(trs, &Trace{Spans: []*storage.Span{{
			TraceID: storage.TraceID{byte(i), byte(i >> 8)}, SpanID: storage.SpanID{byte(i), 9},
			StartUnixNano: start, EndUnixNano: start + 1, Resource: r,
		}}})
	}
	step := int64(10 * time.Millisecond)
	const limit = 40
	one := newMetricsAcc(m, 0, step, 100, 0, limit)
	for _, tr := range trs {
		one.add(tr, 0)
	}
	two := newMetricsAcc(m, 0, step, 100, 0, limit)
	two.pass = passCounts
	for _, tr := range trs {
		two.add(tr, 0)
	}
	require.True(t, two.exemplarPass())
	read := 0
	for _, tr := range trs {
		if two.exPending == 0 {
			break
		}
		two.add(tr, 0)
		read++
	}
	require.Zero(t, two.exPending)
	require.Less(t, read, len(trs)/2, "the exemplars' pass stops early")
	require.Equal(t, one.order, two.order)
	for _, k := range one.order {
		a, b := one.series[k], two.series[k]
		require.Equal(t, a.count, b.count, k)
		require.Equal(t, a.ex, b.ex, k)
		require.Equal(t, a.exBkt, b.exBkt, k)
	}
	var lens []int
	for _, k := range one.order {
		lens = append(lens, len(one.series[k].ex))
	}
	slices.Sort(lens)
	require.Equal(t, []int{3, limit}, lens, "b has 3 steps with spans, a more than the limit")
}

// TestMetricsExemplarsPerQuery checks that a request's exemplars bound
// the whole result, as Tempo's do, shared among the series: a series
// with few keeps all of its own, the others split the rest, and each
// series' exemplars are in time order and spread over those it found.
func TestMetricsExemplarsPerQuery(t *testing.T) {
	// Service "few" has spans in 3 steps; "a" to "c" one in every step.
	var spans []storage.Span
	res := func(name string) *storage.Resource {
		return &storage.Resource{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str(name)}}}
	}
	svcs := []*storage.Resource{res("a"), res("b"), res("c")}
	step := int64(time.Second)
	for i := range 100 {
		for k, r := range svcs {
			spans = append(spans, storage.Span{TraceID: storage.TraceID{byte(i), byte(k)}, SpanID: storage.SpanID{byte(i), byte(k)},
				StartUnixNano: int64(i) * step, EndUnixNano: int64(i)*step + 1, Resource: r})
		}
		if i%40 == 0 {
			spans = append(spans, storage.Span{TraceID: storage.TraceID{byte(i), 9}, SpanID: storage.SpanID{byte(i), 9},
				StartUnixNano: int64(i) * step, EndUnixNano: int64(i)*step + 1, Resource: res("few")})
		}
	}
	q, err := Parse(`{ } | rate() by (resource.service.name)`)
	require.NoError(t, err)
	for _, c := range []struct {
		limit int
		want  map[string]int // exemplars per series
	}{
		{100, map[string]int{"few": 3, "a": 33, "b": 32, "c": 32}},
		{10, map[string]int{"few": 2, "a": 3, "b": 3, "c": 2}}, // shares of 2, the 2 left to the first
		{4, map[string]int{"few": 1, "a": 1, "b": 1, "c": 1}},
		{1000, map[string]int{"few": 3, "a": 100, "b": 100, "c": 100}}, // under the limit: as found
		{0, map[string]int{}},
	} {
		r, err := Metrics(context.Background(), &memQuerier{spans: spans}, MetricsRequest{Query: q, Start: 0, End: 100 * step, Step: step, Exemplars: c.limit})
		require.NoError(t, err)
		require.Len(t, r.Series, 4)
		got := map[string]int{}
		for _, s := range r.Series {
			name := s.Labels[0].Value.Text()
			if len(s.Exemplars) == 0 {
				continue
			}
			got[name] = len(s.Exemplars)
			require.True(t, slices.IsSortedFunc(s.Exemplars, func(a, b Exemplar) int { return int(a.TimestampMs - b.TimestampMs) }), "limit %d %s: time order", c.limit, name)
			if name != "few" && c.limit >= 100 {
				// Spread: with one exemplar found in every step, the first
				// kept is the first step's and the last lies in the last
				// third of the range. (With a smaller limit each series
				// finds only as many as the limit, in the steps it reads
				// first, and what it keeps spreads over those.)
				require.Equal(t, int64(0), s.Exemplars[0].TimestampMs, "limit %d %s", c.limit, name)
				require.GreaterOrEqual(t, s.Exemplars[len(s.Exemplars)-1].TimestampMs, int64(66_000), "limit %d %s", c.limit, name)
			}
		}
		require.Equal(t, c.want, got, "limit %d", c.limit)
	}
}

// cutQuerier is a memQuerier cut by start time into immutable parts of
// width ns each, newest first as a store lists them.
type cutQuerier struct {
	memQuerier
	width, end int64
}

func (c *cutQuerier) SpanParts(start, end int64) []storage.SpanPart {
	var parts []storage.SpanPart
	for lo := c.end - c.width; lo >= 0; lo -= c.width {
		hi := lo + c.width - 1
		if lo > end || hi < start {
			continue
		}
		parts = append(parts, storage.SpanPart{ID: strconv.FormatInt(lo, 10), MinTime: lo, MaxTime: hi, Spans: func(ctx context.Context, q *storage.SpanQuery, fn func(*storage.Span) bool) error {
			return c.memQuerier.Spans(ctx, q, func(s *storage.Span) bool {
				return s.StartUnixNano < lo || s.StartUnixNano > hi || fn(s)
			})
		}})
	}
	return parts
}

// BenchmarkMetricsCached answers bench/sidebyside's rate() by service
// from the cache: 11 services over 140 steps, in 7 blocks, with Tempo's
// default of 100 exemplars.
func BenchmarkMetricsCached(b *testing.B) {
	const step = int64(time.Second)
	var spans []storage.Span
	for k := range 11 {
		r := &storage.Resource{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str("service-" + strconv.Itoa(k))}}}
		for i := range 140 * 5 {
			t := int64(i) * step / 5
			spans = append(spans, storage.Span{TraceID: storage.TraceID{byte(i), byte(i >> 8), byte(k)}, SpanID: storage.SpanID{byte(i), byte(k)},
				StartUnixNano: t, EndUnixNano: t + 1000, Resource: r})
		}
	}
	q, err := Parse(`{ } | rate() by (resource.service.name)`)
	require.NoError(b, err)
	sq := &cutQuerier{memQuerier: memQuerier{spans: spans}, width: 20 * step, end: 140 * step}
	req := MetricsRequest{Query: q, Start: 0, End: 140 * step, Step: step, Exemplars: 100, Cache: NewMetricsCache(64 << 20)}
	r, err := Metrics(context.Background(), sq, req)
	require.NoError(b, err)
	require.Len(b, r.Series, 11)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := Metrics(context.Background(), sq, req); err != nil {
			b.Fatal(err)
		}
	}
}
