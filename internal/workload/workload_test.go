package workload

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

func TestShape(t *testing.T) {
	g := New(1, time.Unix(1_700_000_000, 0), Options{})
	td, ld := g.Batch(2000)
	perTrace := map[pcommon.TraceID]int{}
	failedTraces := map[pcommon.TraceID]bool{}
	spans := map[pcommon.SpanID]pcommon.TraceID{}
	services := map[string]bool{}
	var spanAttrs, n int
	for _, rs := range td.ResourceSpans().All() {
		svc, _ := rs.Resource().Attributes().Get("service.name")
		services[svc.Str()] = true
		require.GreaterOrEqual(t, rs.Resource().Attributes().Len(), 10)
		for _, ss := range rs.ScopeSpans().All() {
			for _, s := range ss.Spans().All() {
				perTrace[s.TraceID()]++
				spans[s.SpanID()] = s.TraceID()
				spanAttrs += s.Attributes().Len()
				n++
				if s.Status().Code() == ptrace.StatusCodeError {
					failedTraces[s.TraceID()] = true
				}
				require.Less(t, s.StartTimestamp(), s.EndTimestamp())
			}
		}
	}
	require.Len(t, perTrace, 2000)
	for id, c := range perTrace {
		require.True(t, c >= 8 && c <= 20, "trace %s has %d spans", id, c)
	}
	require.InDelta(t, 10, float64(spanAttrs)/float64(n), 1.5, "about 10 span attributes")
	require.InDelta(t, 0.10, float64(len(failedTraces))/2000, 0.03)
	require.GreaterOrEqual(t, len(services), 8)

	linked := 0
	for _, rl := range ld.ResourceLogs().All() {
		for _, sl := range rl.ScopeLogs().All() {
			for _, l := range sl.LogRecords().All() {
				tid, ok := spans[l.SpanID()]
				require.True(t, ok, "log points at an existing span")
				require.Equal(t, tid, l.TraceID())
				linked++
			}
		}
	}
	require.Greater(t, linked, 2000)

	// Same seed, same data.
	td2, _ := New(1, time.Unix(1_700_000_000, 0), Options{}).Batch(2000)
	require.Equal(t, td.SpanCount(), td2.SpanCount())
	m := ptrace.ProtoMarshaler{}
	a, _ := m.MarshalTraces(td)
	b, _ := m.MarshalTraces(td2)
	require.Equal(t, a, b)
}
