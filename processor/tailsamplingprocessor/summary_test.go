package tailsamplingprocessor

import (
	"testing"

	upstream "github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

func policiesConfig(t *testing.T, policies ...map[string]any) *upstream.Config {
	t.Helper()
	cfg := upstreamFactory.CreateDefaultConfig().(*upstream.Config)
	list := make([]any, len(policies))
	for i, p := range policies {
		list[i] = p
	}
	require.NoError(t, confmap.NewFromStringMap(map[string]any{"policies": list}).Unmarshal(cfg))
	return cfg
}

// The fields a summary keeps follow the policies, nested ones included,
// and policies that read more than fields turn summaries off.
func TestSummaryFieldsFollowThePolicies(t *testing.T) {
	str := func(name, key string) map[string]any {
		return map[string]any{"name": name, "type": "string_attribute", "string_attribute": map[string]any{"key": key, "values": []any{"x"}}}
	}
	f, why := summaryFieldsFor(policiesConfig(t,
		str("a", "customer.tier"),
		map[string]any{"name": "n", "type": "numeric_attribute", "numeric_attribute": map[string]any{"key": "http.status", "min_value": 1}},
		map[string]any{"name": "and", "type": "and", "and": map[string]any{"and_sub_policy": []any{
			str("b", "customer.tier"),
			map[string]any{"name": "not", "type": "not", "not": map[string]any{"not_sub_policy": map[string]any{
				"name": "bool", "type": "boolean_attribute", "boolean_attribute": map[string]any{"key": "debug", "value": true}}}},
		}}},
		map[string]any{"name": "drop", "type": "drop", "drop": map[string]any{"drop_sub_policy": []any{str("c", "synthetic")}}},
		map[string]any{"name": "comp", "type": "composite", "composite": map[string]any{
			"policy_order": []any{"d"}, "composite_sub_policy": []any{str("d", "region")}}},
		map[string]any{"name": "ts", "type": "trace_state", "trace_state": map[string]any{"key": "k", "values": []any{"v"}}},
	))
	require.Empty(t, why)
	require.Equal(t, []string{"customer.tier", "debug", "http.status", "region", "synthetic"}, f.keys)
	require.True(t, f.traceState)
	require.False(t, f.flags)

	for typ, cfg := range map[string]map[string]any{
		"ottl_condition": {"name": "o", "type": "ottl_condition", "ottl_condition": map[string]any{"span": []any{`name == "x"`}}},
		"bytes_limiting": {"name": "and", "type": "and", "and": map[string]any{"and_sub_policy": []any{
			map[string]any{"name": "b", "type": "bytes_limiting", "bytes_limiting": map[string]any{"bytes_per_second": 10}}}}},
		"extension": {"name": "e", "type": "my_extension"},
	} {
		_, why := summaryFieldsFor(policiesConfig(t, cfg))
		require.NotEmpty(t, why, typ)
	}
	cfg := policiesConfig(t, str("a", "k"))
	cfg.MaximumTraceSizeBytes = 1 << 20
	_, why = summaryFieldsFor(cfg)
	require.Contains(t, why, "maximum_trace_size_bytes")
}

// A summary decodes as OTLP into the spans' count and order, each with
// exactly the fields the policies read, every value type a policy compares
// intact; an attribute holding a map or a list leaves the chunk without one.
func TestSummaryKeepsWhatPoliciesRead(t *testing.T) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	for k := range 2 {
		ss := rs.ScopeSpans().AppendEmpty()
		for j := range 3 {
			sp := ss.Spans().AppendEmpty()
			sp.SetTraceID(pcommon.TraceID{1, 2, 3})
			sp.SetSpanID(pcommon.SpanID{byte(k), byte(j), 1})
			if j > 0 {
				sp.SetParentSpanID(pcommon.SpanID{9})
			}
			sp.SetName("GET /cart")
			sp.SetKind(ptrace.SpanKindServer)
			sp.SetStartTimestamp(pcommon.Timestamp(1000 + j))
			sp.SetEndTimestamp(pcommon.Timestamp(5000 + 7*j))
			sp.SetFlags(uint32(j))
			sp.TraceState().FromRaw("sl=keep")
			sp.Status().SetCode(ptrace.StatusCode(j % 3))
			sp.Status().SetMessage("not kept")
			a := sp.Attributes()
			a.PutStr("unnamed", "dropped")
			a.PutStr("s", "gold")
			a.PutInt("i", -503)
			a.PutDouble("d", 0.25)
			a.PutBool("b", true)
			a.PutEmptyBytes("raw").FromRaw([]byte{0, 1})
			a.PutEmpty("nil")
			sp.Events().AppendEmpty().SetName("boom")
		}
	}
	s := &summarizer{fields: summaryFields{keys: []string{"b", "d", "i", "nil", "raw", "s"}, traceState: true, flags: true}}
	chunks := splitTest(t, td)
	require.Len(t, chunks, 1)
	p, ok := s.appendSummary([]byte("head"), &chunks[0])
	require.True(t, ok)
	require.Equal(t, "head", string(p[:4]))
	var u ptrace.ProtoUnmarshaler
	got, err := u.UnmarshalTraces(p[4:])
	require.NoError(t, err)
	require.Equal(t, 1, got.ResourceSpans().Len())
	gss, wss := got.ResourceSpans().At(0).ScopeSpans(), rs.ScopeSpans()
	require.Equal(t, wss.Len(), gss.Len())
	for k := range wss.Len() {
		require.Equal(t, wss.At(k).Spans().Len(), gss.At(k).Spans().Len())
		for j := range wss.At(k).Spans().Len() {
			w, g := wss.At(k).Spans().At(j), gss.At(k).Spans().At(j)
			require.Equal(t, w.TraceID(), g.TraceID())
			require.Equal(t, w.ParentSpanID(), g.ParentSpanID())
			require.Equal(t, summaryName, g.Name())
			require.Equal(t, w.StartTimestamp(), g.StartTimestamp())
			require.Equal(t, w.EndTimestamp(), g.EndTimestamp())
			require.Equal(t, w.Flags(), g.Flags())
			require.Equal(t, "sl=keep", g.TraceState().AsRaw())
			require.Equal(t, w.Status().Code(), g.Status().Code())
			require.Empty(t, g.Status().Message())
			require.True(t, g.SpanID().IsEmpty())
			require.Zero(t, g.Events().Len())
			want := pcommon.NewMap()
			w.Attributes().CopyTo(want)
			want.Remove("unnamed")
			require.Equal(t, want.AsRaw(), g.Attributes().AsRaw())
			v, _ := g.Attributes().Get("nil")
			require.Equal(t, pcommon.ValueTypeEmpty, v.Type())
		}
	}

	// Without trace state and flags among what is read, neither is kept.
	s.fields = summaryFields{keys: []string{"s"}}
	p, ok = s.appendSummary(nil, &chunks[0])
	require.True(t, ok)
	got, err = u.UnmarshalTraces(p)
	require.NoError(t, err)
	sp := got.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(1)
	require.Empty(t, sp.TraceState().AsRaw())
	require.Zero(t, sp.Flags())
	require.Equal(t, map[string]any{"s": "gold"}, sp.Attributes().AsRaw())

	rs.ScopeSpans().At(1).Spans().At(2).Attributes().PutEmptyMap("s").PutStr("nested", "x")
	p, ok = s.appendSummary([]byte("head"), &splitTest(t, td)[0])
	require.False(t, ok)
	require.Equal(t, "head", string(p))
}

func splitTest(t *testing.T, td ptrace.Traces) []chunk {
	t.Helper()
	var m ptrace.ProtoMarshaler
	full, err := m.MarshalTraces(td)
	require.NoError(t, err)
	chunks, err := splitEncoded(td, full)
	require.NoError(t, err)
	return chunks
}
