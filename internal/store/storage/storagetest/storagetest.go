// Package storagetest checks a storage.Querier against the contract in
// storage.go, so that every reader (the embedded store at each stage of
// its data's life, the tenant wrapper, and the merged views to come) is
// held to the same answers. Expected results come from the query's own
// Match over the spans loaded, not from another reader.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/workload"
)

// Data is what the suite loads: workload traces and logs over a few
// seconds from T0.
type Data struct {
	Traces ptrace.Traces
	Logs   plog.Logs
	Spans  []storage.Span
}

// T0 is the data's time origin.
var T0 = time.Unix(1_700_000_000, 0)

// NewData generates the suite's data: n workload traces and their logs.
func NewData(n int) Data {
	td, ld := workload.New(5, T0, workload.Options{}).Batch(n)
	return Data{Traces: td, Logs: ld, Spans: storage.AppendTraces(nil, td)}
}

// RunQuerier runs the suite against q, which must hold exactly d.
func RunQuerier(t *testing.T, q storage.Querier, d Data) {
	ctx := context.Background()
	spans := d.Spans
	require.NotEmpty(t, spans)
	byTrace := map[storage.TraceID][]storage.Span{}
	for _, s := range spans {
		byTrace[s.TraceID] = append(byTrace[s.TraceID], s)
	}
	some := spans[len(spans)/3]
	var ids []storage.TraceID
	for i := 0; i < len(spans); i += max(1, len(spans)/30) {
		ids = append(ids, spans[i].TraceID)
	}
	ids = append(ids, storage.TraceID{0xff, 0xfe}) // not stored
	slices.SortFunc(ids, func(a, b storage.TraceID) int { return bytes.Compare(a[:], b[:]) })
	ids = slices.Compact(ids)
	first, last := spans[0].StartUnixNano, spans[0].StartUnixNano
	for _, s := range spans {
		first, last = min(first, s.StartUnixNano), max(last, s.StartUnixNano)
	}
	mid := first + (last-first)/2
	method, err := storage.NewMatcher(storage.ScopeSpan, "http.request.method", storage.OpEqual, storage.Str("POST"))
	require.NoError(t, err)

	t.Run("TraceByID", func(t *testing.T) {
		for _, id := range ids[:len(ids)-1] {
			got, err := q.TraceByID(ctx, id, 0, 0)
			require.NoError(t, err)
			require.ElementsMatch(t, spanIDs(byTrace[id]), spanIDs(got), "trace %s", id)
		}
		_, err := q.TraceByID(ctx, storage.TraceID{0xff, 0xfe}, 0, 0)
		require.True(t, errors.Is(err, storage.ErrNotFound), "an unknown trace: %v", err)
	})

	queries := []storage.SpanQuery{
		{},
		{ServiceName: some.Resource.ServiceName()},
		{Name: some.Name},
		{HasStatus: true, Status: storage.StatusError},
		{HasKind: true, Kind: some.Kind, MinDuration: int64(time.Millisecond)},
		{MaxDuration: int64(2 * time.Millisecond)},
		{Start: mid, End: mid + (last-first)/5},
		{TraceID: some.TraceID},
		{TraceIDs: ids},
		{TraceIDs: ids, HasStatus: true, Status: storage.StatusError},
		{Matchers: []*storage.Matcher{method}},
	}
	for i, sq := range queries {
		want := map[storage.SpanID]bool{}
		for _, s := range spans {
			if sq.Match(&s) {
				want[s.SpanID] = true
			}
		}
		require.NotEmpty(t, want, "query %d matches nothing in the data; it tests nothing", i)
		t.Run(fmt.Sprintf("Spans/%d", i), func(t *testing.T) {
			for _, proj := range []struct {
				p storage.Projection
				f storage.CoreFields
			}{{storage.ProjectAll, 0}, {storage.ProjectCore, 0}, {storage.ProjectCore, storage.FieldSpanID}} {
				sq := sq
				sq.Projection, sq.Fields = proj.p, proj.f
				got := map[storage.SpanID]bool{}
				err := q.Spans(ctx, &sq, func(s *storage.Span) bool {
					got[s.SpanID] = true
					return true
				})
				require.NoError(t, err)
				require.Equal(t, want, got, "%+v", sq)
			}
		})
		if pq, ok := q.(storage.PartedQuerier); ok {
			t.Run(fmt.Sprintf("SpanParts/%d", i), func(t *testing.T) {
				got := map[storage.SpanID]bool{}
				for _, part := range pq.SpanParts(sq.Start, sq.End) {
					err := part.Spans(ctx, &sq, func(s *storage.Span) bool {
						got[s.SpanID] = true
						if part.ID != "" {
							require.GreaterOrEqual(t, s.StartUnixNano, part.MinTime, "part %s", part.ID)
							require.LessOrEqual(t, s.StartUnixNano, part.MaxTime, "part %s", part.ID)
						}
						return true
					})
					require.NoError(t, err)
				}
				require.Equal(t, want, got, "the parts together hold what Spans returns")
			})
		}
	}

	t.Run("SpansStops", func(t *testing.T) {
		n := 0
		require.NoError(t, q.Spans(ctx, &storage.SpanQuery{}, func(*storage.Span) bool { n++; return false }))
		require.Equal(t, 1, n, "fn returned false: no more calls")
	})

	t.Run("SpansMayBeRetained", func(t *testing.T) {
		var kept []*storage.Span
		require.NoError(t, q.Spans(ctx, &storage.SpanQuery{ServiceName: some.Resource.ServiceName()}, func(s *storage.Span) bool {
			kept = append(kept, s)
			return true
		}))
		seen := map[storage.SpanID]bool{}
		for _, s := range kept {
			seen[s.SpanID] = true
			require.Equal(t, some.Resource.ServiceName(), s.Resource.ServiceName())
		}
		require.Len(t, seen, len(kept), "a retained ProjectAll span was overwritten")
	})

	t.Run("Names", func(t *testing.T) {
		svcs, err := q.Services(ctx, 0, 0)
		require.NoError(t, err)
		ops, err := q.Operations(ctx, some.Resource.ServiceName(), 0, 0)
		require.NoError(t, err)
		wantOps := storage.OperationSet{}
		for _, s := range spans {
			require.Contains(t, svcs, s.Resource.ServiceName())
			if s.Resource.ServiceName() == some.Resource.ServiceName() {
				wantOps[storage.Operation{Name: s.Name, Kind: s.Kind}] = struct{}{}
			}
		}
		require.Equal(t, wantOps.Sorted(), ops)
		tags, err := q.TagNames(ctx, 0, 0)
		require.NoError(t, err)
		require.Contains(t, tags.Span, "http.request.method")
		vals, err := q.TagValues(ctx, storage.ScopeSpan, "http.request.method", 0, 0, 100)
		require.NoError(t, err)
		require.Contains(t, vals, storage.Str("POST"))
	})

	t.Run("Logs", func(t *testing.T) {
		logs := storage.AppendLogs(nil, d.Logs)
		require.NotEmpty(t, logs)
		l := logs[len(logs)/2]
		want := 0
		for _, x := range logs {
			if x.TraceID == l.TraceID {
				want++
			}
		}
		got, err := q.LogsByTrace(ctx, l.TraceID, storage.SpanID{}, 0, 0, 0)
		require.NoError(t, err)
		require.Len(t, got, want)
		for _, x := range got {
			require.Equal(t, l.TraceID, x.TraceID)
		}
		n := 0
		require.NoError(t, q.Logs(ctx, &storage.LogQuery{ServiceName: l.Resource.ServiceName()}, func(x *storage.LogRecord) bool {
			require.Equal(t, l.Resource.ServiceName(), x.Resource.ServiceName())
			n++
			return true
		}))
		require.NotZero(t, n)
	})
}

// Split cuts d's traces and logs into two halves by resource, so that a
// trace's spans end up on both sides, as they do across a head cut.
func Split(d Data) (Data, Data) {
	var a, b Data
	a.Traces, b.Traces = ptrace.NewTraces(), ptrace.NewTraces()
	for i, rs := range d.Traces.ResourceSpans().All() {
		dst := a.Traces
		if i%2 == 1 {
			dst = b.Traces
		}
		rs.CopyTo(dst.ResourceSpans().AppendEmpty())
	}
	a.Logs, b.Logs = plog.NewLogs(), plog.NewLogs()
	for i, rl := range d.Logs.ResourceLogs().All() {
		dst := a.Logs
		if i%2 == 1 {
			dst = b.Logs
		}
		rl.CopyTo(dst.ResourceLogs().AppendEmpty())
	}
	a.Spans, b.Spans = storage.AppendTraces(nil, a.Traces), storage.AppendTraces(nil, b.Traces)
	return a, b
}

func spanIDs(spans []storage.Span) []storage.SpanID {
	out := make([]storage.SpanID, len(spans))
	for i, s := range spans {
		out[i] = s.SpanID
	}
	return out
}
