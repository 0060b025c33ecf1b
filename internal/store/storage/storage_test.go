package storage

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/workload"
)

func TestPdataRoundTrip(t *testing.T) {
	td, ld := workload.New(1, time.Unix(1_700_000_000, 0), workload.Options{}).Batch(50)
	rs := td.ResourceSpans().At(0)
	s := rs.ScopeSpans().At(0).Spans().At(0)
	// One key per map: pcommon builds maps from Go maps in random order,
	// and the comparison below is of ordered OTLP/JSON.
	s.Attributes().PutEmptySlice("list").FromRaw([]any{int64(1), "a", 2.5, map[string]any{"n": int64(7)}})
	s.Attributes().PutEmptyMap("map").FromRaw(map[string]any{"k": []any{true}})
	s.Attributes().PutEmptyBytes("raw").FromRaw([]byte{0, 1, 2})
	l := s.Links().AppendEmpty()
	l.SetTraceID([16]byte{9})
	l.Attributes().PutStr("why", "follows")

	back := SpansToTraces(AppendTraces(nil, td))
	m := ptrace.ProtoMarshaler{}
	require.Equal(t, td.SpanCount(), back.SpanCount())
	require.Equal(t, td.ResourceSpans().Len(), back.ResourceSpans().Len(), "spans regroup by resource")
	a, _ := m.MarshalTraces(td)
	b, _ := m.MarshalTraces(back)
	require.Equal(t, len(a), len(b))
	require.Equal(t, ptraceJSON(t, td), ptraceJSON(t, back))

	lback := LogsToPdata(AppendLogs(nil, ld))
	lm := plog.JSONMarshaler{}
	x, _ := lm.MarshalLogs(ld)
	y, _ := lm.MarshalLogs(lback)
	require.JSONEq(t, string(x), string(y))
}

func ptraceJSON(t *testing.T, td ptrace.Traces) string {
	b, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	require.NoError(t, err)
	return string(b)
}

// The Into conversions give what the plain ones give, with every span's or
// record's attributes in one array appended to the caller's: what was in
// it stays, and appending to one span's attributes never reaches the
// next's.
func TestAppendInto(t *testing.T) {
	td, ld := workload.New(2, time.Unix(1_700_000_000, 0), workload.Options{}).Batch(20)
	prior := Attrs{{Key: "kept", Value: Value{Type: TypeStr, Str: "x"}}}

	want := AppendTraces(nil, td)
	spans, attrs := AppendTracesInto(nil, prior, td)
	require.Equal(t, len(want), len(spans))
	n := len(prior)
	for i := range want {
		require.Equal(t, want[i].Attrs, spans[i].Attrs, "span %d", i)
		n += len(want[i].Attrs)
	}
	require.Len(t, attrs, n)
	require.Equal(t, prior[0], attrs[0])
	for i := range spans[:len(spans)-1] {
		next := slices.Clone(spans[i+1].Attrs)
		_ = append(spans[i].Attrs, Attr{Key: "extra"})
		require.Equal(t, next, spans[i+1].Attrs, "span %d's append reached span %d", i, i+1)
	}

	wantLogs := AppendLogs(nil, ld)
	logs, lattrs := AppendLogsInto(nil, nil, ld)
	require.Equal(t, wantLogs, logs)
	require.NotEmpty(t, lattrs)
	for i := range logs[:len(logs)-1] {
		next := slices.Clone(logs[i+1].Attrs)
		_ = append(logs[i].Attrs, Attr{Key: "extra"})
		require.Equal(t, next, logs[i+1].Attrs, "record %d's append reached record %d", i, i+1)
	}
}

func TestMatcher(t *testing.T) {
	res := &Resource{Attrs: Attrs{{Key: "service.name", Value: Str("cart")}, {Key: "region", Value: Str("eu")}}}
	span := Attrs{{Key: "http.response.status_code", Value: Int(503)}, {Key: "ratio", Value: Double(0.5)}}
	cases := []struct {
		scope Scope
		key   string
		op    Op
		v     Value
		want  bool
	}{
		{ScopeSpan, "http.response.status_code", OpGreaterEqual, Int(500), true},
		{ScopeSpan, "http.response.status_code", OpEqual, Double(503), true},
		{ScopeSpan, "http.response.status_code", OpEqual, Str("503"), false},
		{ScopeAny, "region", OpRegexp, Str("e.*"), true},
		{ScopeAny, "region", OpRegexp, Str("e"), false}, // anchored
		{ScopeSpan, "region", OpEqual, Str("eu"), false},
		{ScopeResource, "region", OpNotEqual, Str("us"), true},
		{ScopeSpan, "missing", OpNotEqual, Str("x"), true},
		{ScopeSpan, "missing", OpEqual, Str("x"), false},
		{ScopeSpan, "ratio", OpLess, Double(1), true},
	}
	for i, c := range cases {
		m, err := NewMatcher(c.scope, c.key, c.op, c.v)
		require.NoError(t, err)
		v, ok := m.Lookup(span, res)
		require.Equal(t, c.want, m.MatchValue(v, ok), "case %d: %s %s %v", i, c.key, c.op, c.v)
	}
	_, err := NewMatcher(ScopeSpan, "k", OpRegexp, Str("("))
	require.ErrorContains(t, err, "bad regexp")
}

func TestParseTraceID(t *testing.T) {
	id, err := ParseTraceID("abc")
	require.NoError(t, err)
	require.Equal(t, "00000000000000000000000000000abc", id.String())
	_, err = ParseTraceID("zz")
	require.Error(t, err)
	_, err = ParseTraceID("")
	require.Error(t, err)
}
