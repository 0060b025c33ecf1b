package traceql

import (
	"cmp"
	"context"
	"encoding/binary"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// TestRecentTracesSweep feeds a most_recent search's tracker matches whose
// traces come in the order their starts do (IDs that grow with time):
// with sweeping it holds a bounded number of traces however many it
// sees, and in any order its limit most recent are those of a tracker
// that keeps everything.
func TestRecentTracesSweep(t *testing.T) {
	const limit = 20
	r := newRecentTraces(limit, true)
	most := 0
	for i := range 200_000 {
		r.see(storage.TraceID{byte(i >> 16), byte(i >> 8), byte(i)}, int64(i))
		most = max(most, len(r.latest))
	}
	require.LessOrEqual(t, most, 2*4096, "a sweep keeps what may still be among the most recent")

	top := func(latest map[storage.TraceID]int64) []storage.TraceID {
		ids := slices.Collect(maps.Keys(latest))
		slices.SortFunc(ids, func(a, b storage.TraceID) int {
			if c := cmp.Compare(latest[b], latest[a]); c != 0 {
				return c
			}
			return slices.Compare(a[:], b[:])
		})
		return ids[:min(limit, len(ids))]
	}
	rnd := rand.New(rand.NewPCG(11, 12))
	for round := range 5 {
		swept, all := newRecentTraces(limit, true), newRecentTraces(limit, false)
		for range 50_000 {
			// Traces match again, later or earlier, as spans of one do.
			id := storage.TraceID{byte(round), byte(rnd.IntN(100))}
			binary.BigEndian.PutUint32(id[4:], uint32(rnd.IntN(30_000)))
			start := int64(rnd.IntN(1_000_000))
			if round%2 == 1 {
				start = int64(binary.BigEndian.Uint32(id[4:]))*10 + int64(rnd.IntN(40))
			}
			swept.see(id, start)
			all.see(id, start)
		}
		want := top(all.latest)
		require.Equal(t, want, top(swept.latest), "round %d", round)
		for _, id := range want {
			require.Equal(t, all.latest[id], swept.latest[id], "round %d", round)
		}
	}
}

// countingQuerier counts the spans its store hands to searches.
type countingQuerier struct {
	memQuerier
	spans int
}

func (c *countingQuerier) Spans(ctx context.Context, q *storage.SpanQuery, fn func(*storage.Span) bool) error {
	return c.memQuerier.Spans(ctx, q, func(s *storage.Span) bool {
		c.spans++
		return fn(s)
	})
}

// rootChildTraces makes n traces of a root span and its child, a
// millisecond apart.
func rootChildTraces(n int) []storage.Span {
	var spans []storage.Span
	for i := range n {
		id := storage.TraceID{byte(i >> 8), byte(i), 1}
		root, child := storage.SpanID{byte(i >> 8), byte(i), 1}, storage.SpanID{byte(i >> 8), byte(i), 2}
		start := int64(i) * int64(time.Millisecond)
		spans = append(spans,
			storage.Span{TraceID: id, SpanID: root, Name: "root", StartUnixNano: start, EndUnixNano: start + 10},
			storage.Span{TraceID: id, SpanID: child, ParentSpanID: root, Name: "child", StartUnixNano: start + 1, EndUnixNano: start + 5})
	}
	return spans
}

// fanTrace makes trace id of a root span starting at start and children
// under it.
func fanTrace(id storage.TraceID, start int64, children int) []storage.Span {
	root := storage.SpanID{0xff}
	spans := []storage.Span{{TraceID: id, SpanID: root, Name: "root", StartUnixNano: start, EndUnixNano: start + 1000}}
	for k := range children {
		spans = append(spans, storage.Span{TraceID: id, SpanID: storage.SpanID{1, byte(k >> 8), byte(k)}, ParentSpanID: root,
			Name: "child", StartUnixNano: start + 1, EndUnixNano: start + 500})
	}
	return spans
}

// TestSearchCandidatesBounded runs a structural most_recent search, which
// needs every candidate trace, over more traces than it may inspect: it
// fails as too many traces, having stopped collecting candidates at four
// times that bound instead of reading every trace ID in range into
// memory first. A search that finds its limit early still answers.
func TestSearchCandidatesBounded(t *testing.T) {
	spans := rootChildTraces(2000)
	q, err := Parse(`{ name = "root" } > { name = "child" } with(most_recent=true)`)
	require.NoError(t, err)
	cq := &countingQuerier{memQuerier: memQuerier{spans: spans}}
	_, err = Search(context.Background(), cq, SearchRequest{Query: q, Limit: 5, MaxInspectedTraces: 10})
	require.ErrorIs(t, err, ErrTooManyTraces)
	require.Less(t, cq.spans, 1000, "candidates are collected up to the bound, not from every span in range")

	q, err = Parse(`{ name = "root" } > { name = "child" }`)
	require.NoError(t, err)
	res, err := Search(context.Background(), &memQuerier{spans: spans}, SearchRequest{Query: q, Limit: 5, MaxInspectedTraces: 10})
	require.NoError(t, err)
	require.Len(t, res.Traces, 5)
}

// TestMetricsCandidatesBounded is the same for a structural metrics
// query, which inspects every candidate: one past the bound fails it,
// and the scan stops there.
func TestMetricsCandidatesBounded(t *testing.T) {
	spans := rootChildTraces(2000)
	q, err := Parse(`{ name = "root" } > { name = "child" } | rate()`)
	require.NoError(t, err)
	cq := &countingQuerier{memQuerier: memQuerier{spans: spans}}
	req := MetricsRequest{Query: q, Start: 0, End: int64(3 * time.Second), Step: int64(time.Second), MaxInspectedTraces: 10}
	_, err = Metrics(context.Background(), cq, req)
	require.ErrorIs(t, err, ErrTooManyTraces)
	require.Less(t, cq.spans, 100, "the candidate scan stops one trace past the bound")

	req.MaxInspectedTraces = 2000
	res, err := Metrics(context.Background(), &memQuerier{spans: spans}, req)
	require.NoError(t, err)
	require.Len(t, res.Series, 1)
}

// spanBoundQuerier looks traces up by ID as the store does under a
// query's bound on spans a trace (storage.Stats.MaxTraceSpans): past it,
// ErrTraceTooLarge instead of the spans.
type spanBoundQuerier struct{ memQuerier }

func (q *spanBoundQuerier) TraceByID(ctx context.Context, id storage.TraceID, start, end int64) ([]storage.Span, error) {
	spans, err := q.memQuerier.TraceByID(ctx, id, start, end)
	if err == nil {
		err = storage.StatsFrom(ctx).CheckTraceSpans(len(spans))
	}
	if err != nil {
		return nil, err
	}
	return spans, nil
}

// TestSearchSkipsLargeTraces runs searches and a structural metrics query
// whose candidates include one trace of more spans than the query's bound:
// that trace is left out and counted, and every other one is answered as
// without the bound, whether candidates are assembled from core columns,
// whole (Jaeger's full traces) or one at a time (metrics).
func TestSearchSkipsLargeTraces(t *testing.T) {
	big := storage.TraceID{0xff, 1}
	spans := append(rootChildTraces(50), fanTrace(big, 1, 500)...)
	bounded := storage.WithStats(context.Background(), &storage.Stats{MaxTraceSpans: 100})
	q, err := Parse(`{ name = "root" } > { name = "child" }`)
	require.NoError(t, err)
	for _, full := range []bool{false, true} {
		sq := &spanBoundQuerier{memQuerier{spans: spans}}
		req := SearchRequest{Query: q, Limit: 1000, FullTraces: full}
		all, err := Search(context.Background(), sq, req)
		require.NoError(t, err)
		require.Len(t, all.Traces, 51, "full=%v", full)
		require.Zero(t, all.SkippedTraces)

		res, err := Search(bounded, sq, req)
		require.NoError(t, err, "full=%v", full)
		require.Equal(t, 1, res.SkippedTraces, "full=%v", full)
		want := slices.DeleteFunc(all.Traces, func(r TraceResult) bool { return r.TraceID == big })
		require.Equal(t, want, res.Traces, "full=%v: the others are answered as without the bound", full)
	}

	mq, err := Parse(`{ name = "root" } > { name = "child" } | count_over_time()`)
	require.NoError(t, err)
	req := MetricsRequest{Query: mq, Start: 0, End: int64(time.Minute), Step: int64(time.Minute), MaxInspectedTraces: 1000}
	cq := &countingQuerier{memQuerier: memQuerier{spans: spans}}
	res, err := Metrics(bounded, cq, req)
	require.NoError(t, err)
	require.Equal(t, 1, res.SkippedTraces)
	require.Len(t, res.Series, 1)
	var n float64
	for _, s := range res.Series[0].Samples {
		n += s.Value
	}
	require.Equal(t, float64(50), n, "the 50 small traces' children, none of the large one's")
}

// TestCoreBatchShrinks assembles candidate traces from core columns where
// a batch of all of them would hold more spans than a batch may: each
// read holds at most that bound (one span past it, where it stops), the
// batches shrink until they fit, and the answer is the one without the
// bound.
func TestCoreBatchShrinks(t *testing.T) {
	var spans []storage.Span
	for i := range 12 {
		spans = append(spans, fanTrace(storage.TraceID{0xee, byte(i)}, int64(i), 300)...)
	}
	q, err := Parse(`{ name = "root" } > { name = "child" }`)
	require.NoError(t, err)
	req := SearchRequest{Query: q, Limit: 100, SpansPerSpanset: 3}
	want, err := Search(context.Background(), &memQuerier{spans: spans}, req)
	require.NoError(t, err)
	require.Len(t, want.Traces, 12)

	defer func(n int) { coreBatchSpans = n }(coreBatchSpans)
	coreBatchSpans = 1000 // three of the traces
	bq := &batchQuerier{memQuerier: memQuerier{spans: spans}}
	got, err := Search(context.Background(), bq, req)
	require.NoError(t, err)
	require.Equal(t, want.Traces, got.Traces)
	require.Equal(t, 12, got.InspectedTraces, "a batch given up is not counted as inspected")
	require.LessOrEqual(t, bq.most, coreBatchSpans+1)
	require.Greater(t, bq.reads, 1, "the batch shrank")
}

// batchQuerier records the most spans one read of several traces' spans
// handed over.
type batchQuerier struct {
	memQuerier
	most, reads int
}

func (b *batchQuerier) Spans(ctx context.Context, q *storage.SpanQuery, fn func(*storage.Span) bool) error {
	if len(q.TraceIDs) == 0 {
		return b.memQuerier.Spans(ctx, q, fn)
	}
	n := 0
	b.reads++
	defer func() { b.most = max(b.most, n) }()
	return b.memQuerier.Spans(ctx, q, func(s *storage.Span) bool {
		n++
		return fn(s)
	})
}

// TestResultSpansBound runs a search for full traces (as Jaeger's) under a
// bound on the spans of its whole answer: it ends before the trace that
// would pass it, with fewer traces than its limit, and says so; without
// the bound it answers the limit.
func TestResultSpansBound(t *testing.T) {
	var spans []storage.Span
	for i := range 10 {
		spans = append(spans, fanTrace(storage.TraceID{0xdd, byte(i)}, int64(i), 29)...)
	}
	for _, text := range []string{`{ name = "root" }`, `{ name = "root" } > { name = "child" }`} {
		q, err := Parse(text)
		require.NoError(t, err)
		req := SearchRequest{Query: q, Limit: 10, FullTraces: true}
		all, err := Search(context.Background(), &memQuerier{spans: spans}, req)
		require.NoError(t, err)
		require.Len(t, all.Traces, 10, text)
		require.False(t, all.Truncated)

		req.MaxResultSpans = 100
		res, err := Search(context.Background(), &memQuerier{spans: spans}, req)
		require.NoError(t, err)
		require.True(t, res.Truncated, text)
		require.Len(t, res.Traces, 3, "%s: three traces of 30 spans fit in 100", text)
		for _, tr := range res.Traces {
			require.Len(t, tr.Spans, 30, text)
		}
	}
}

// A search for many traces answers from the store's trace summaries
// without assembling its results (summarizedResults), yet leaves out a
// trace past the query's bound as a search for a few traces does, which
// assembles them: the answer does not depend on the limit.
func TestSummarizedSearchSkipsLargeTraces(t *testing.T) {
	big := storage.TraceID{0xff, 1}
	spans := append(rootChildTraces(150), fanTrace(big, int64(time.Second), 500)...)
	q, err := Parse(`{ name = "child" }`)
	require.NoError(t, err)
	sq := &summarizingQuerier{memQuerier{spans: spans}}
	for _, limit := range []int{scanHitsLimit, 1000} {
		req := SearchRequest{Query: q, Limit: limit, SpansPerSpanset: 3}
		all, err := Search(context.Background(), sq, req)
		require.NoError(t, err)
		require.Len(t, all.Traces, min(limit, 151))
		require.True(t, slices.ContainsFunc(all.Traces, func(r TraceResult) bool { return r.TraceID == big }), "limit %d: the large trace is the most recent", limit)

		bounded := storage.WithStats(context.Background(), &storage.Stats{MaxTraceSpans: 100})
		res, err := Search(bounded, sq, req)
		require.NoError(t, err)
		require.Equal(t, 1, res.SkippedTraces, "limit %d", limit)
		want := slices.DeleteFunc(all.Traces, func(r TraceResult) bool { return r.TraceID == big })
		require.Equal(t, want, res.Traces[:len(want)], "limit %d: the others are answered as without the bound", limit)
	}
}
