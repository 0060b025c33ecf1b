package traceql

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// summarizingQuerier is a memQuerier that summarizes every trace, as a
// store does whose traces each sit in one block with a trace table.
type summarizingQuerier struct{ memQuerier }

func (m *summarizingQuerier) TraceSummaries(ctx context.Context, ids []storage.TraceID, fn func(*storage.TraceSummary)) error {
	for _, id := range ids {
		spans, err := m.TraceByID(ctx, id, 0, 0)
		if err != nil {
			continue
		}
		ptrs := make([]*storage.Span, len(spans))
		for i := range spans {
			ptrs[i] = &spans[i]
		}
		tr := NewTrace(ptrs)
		sum := storage.TraceSummary{TraceID: id, Start: tr.Start, End: tr.End, HasRoot: tr.Root >= 0, RootService: tr.RootService(), RootName: tr.RootName()}
		for _, s := range tr.Spans {
			sum.Spans++
			k := slices.IndexFunc(sum.Services, func(x storage.ServiceSpans) bool { return x.Service == s.Resource.ServiceName() })
			if k < 0 {
				sum.Services = append(sum.Services, storage.ServiceSpans{Service: s.Resource.ServiceName()})
				k = len(sum.Services) - 1
			}
			sum.Services[k].Spans++
			if s.StatusCode == storage.StatusError {
				sum.Errors++
				sum.Services[k].Errors++
			}
		}
		fn(&sum)
	}
	return nil
}

// A search that stops at its limit may stop inside a trace, having seen
// only some of its matching spans; its result still counts and shows the
// trace's matches as a search without summaries does.
func TestSearchStoppedInsideATrace(t *testing.T) {
	svc := &storage.Resource{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str("a")}}}
	var spans []storage.Span
	// Traces one after another, each of eight spans, later traces later:
	// the trace at which a search stops is also the most recent. Limits
	// of 100 and more keep matches while scanning (scanHits).
	for tr := range 1200 {
		for i := range 8 {
			s := storage.Span{TraceID: storage.TraceID{byte(tr), byte(tr >> 8), 7}, SpanID: storage.SpanID{byte(tr), byte(tr >> 8), byte(i), 1},
				Name: "op", StartUnixNano: int64(tr)*1e9 + int64(i)*1e6, Resource: svc}
			s.EndUnixNano = s.StartUnixNano + 5e5
			if i > 0 {
				s.ParentSpanID = storage.SpanID{byte(tr), byte(tr >> 8), 0, 1}
			}
			spans = append(spans, s)
		}
	}
	plain := &memQuerier{spans: spans}
	summarized := &summarizingQuerier{memQuerier{spans: spans}}
	defer func(n int) { scanHitsMaxTraces = n }(scanHitsMaxTraces)
	for _, c := range []struct{ limit, maxTraces int }{{1, 10_000}, {3, 10_000}, {scanHitsLimit, 10_000}, {scanHitsLimit, 7}} {
		limit := c.limit
		scanHitsMaxTraces = c.maxTraces // 7: most traces are read after the scan
		req := SearchRequest{Query: mustParse(t, `{ }`), Limit: limit, SpansPerSpanset: 3}
		want, err := Search(context.Background(), plain, req)
		require.NoError(t, err)
		got, err := Search(context.Background(), summarized, req)
		require.NoError(t, err)
		require.Len(t, got.Traces, limit)
		require.Equal(t, want.Traces, got.Traces, "limit %d, at most %d traces kept", limit, c.maxTraces)
		for _, tr := range got.Traces {
			require.Equal(t, 8, tr.Spansets[0].Matched, "limit %d: trace %s", limit, tr.TraceID)
		}
	}
}

func mustParse(t *testing.T, s string) *Query {
	t.Helper()
	q, err := Parse(s)
	require.NoError(t, err)
	return q
}

// recentFloor's floor is always the limit-th largest start it was given,
// or zero before it has limit of them.
func TestRecentFloor(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, limit := range []int{1, 2, 7, 20} {
		r := newRecentFloor(limit)
		var seen []int64
		for range 500 {
			v := rng.Int64N(1000)
			r.add(v)
			seen = append(seen, v)
			want := int64(0)
			if len(seen) >= limit {
				s := slices.Clone(seen)
				slices.Sort(s)
				want = s[len(s)-limit]
			}
			require.Equal(t, want, r.f.Load(), "limit %d after %d values", limit, len(seen))
		}
	}
}
