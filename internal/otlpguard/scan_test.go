package otlpguard

import (
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/sightlinehq/sightline/internal/otlpguard/otlpguardtest"
	"github.com/sightlinehq/sightline/internal/workload"
)

// nest makes v depth AnyValues deep: lists of lists, or maps of
// maps, alternating so both shapes are walked.
func nest(v pcommon.Value, depth int) {
	for i := 1; i < depth; i++ {
		if i%2 == 0 {
			v = v.SetEmptySlice().AppendEmpty()
		} else {
			v = v.SetEmptyMap().PutEmpty("k")
		}
	}
	v.SetStr("bottom")
}

// Every place OTLP holds attributes, at the limit and one past it: the
// walk must reach each of them, or a deep value there would slip through.
func TestCheckProtoReachesEveryAttribute(t *testing.T) {
	const limit = 5
	type place struct {
		name string
		sig  Signal
		make func(depth int) []byte
	}
	traces := func(put func(ptrace.Span, ptrace.ResourceSpans, ptrace.ScopeSpans, int)) func(int) []byte {
		return func(depth int) []byte {
			td := ptrace.NewTraces()
			rs := td.ResourceSpans().AppendEmpty()
			ss := rs.ScopeSpans().AppendEmpty()
			sp := ss.Spans().AppendEmpty()
			sp.SetName("s")
			put(sp, rs, ss, depth)
			b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	metrics := func(put func(pmetric.Metric, int)) func(int) []byte {
		return func(depth int) []byte {
			md := pmetric.NewMetrics()
			m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
			m.SetName("m")
			put(m, depth)
			b, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	logs := func(put func(plog.LogRecord, pcommon.Map, int)) func(int) []byte {
		return func(depth int) []byte {
			ld := plog.NewLogs()
			rl := ld.ResourceLogs().AppendEmpty()
			lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
			put(lr, rl.Resource().Attributes(), depth)
			b, err := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	places := []place{
		{"span attribute", Traces, traces(func(sp ptrace.Span, _ ptrace.ResourceSpans, _ ptrace.ScopeSpans, d int) {
			nest(sp.Attributes().PutEmpty("a"), d)
		})},
		{"resource attribute", Traces, traces(func(_ ptrace.Span, rs ptrace.ResourceSpans, _ ptrace.ScopeSpans, d int) {
			nest(rs.Resource().Attributes().PutEmpty("a"), d)
		})},
		{"scope attribute", Traces, traces(func(_ ptrace.Span, _ ptrace.ResourceSpans, ss ptrace.ScopeSpans, d int) {
			nest(ss.Scope().Attributes().PutEmpty("a"), d)
		})},
		{"event attribute", Traces, traces(func(sp ptrace.Span, _ ptrace.ResourceSpans, _ ptrace.ScopeSpans, d int) {
			nest(sp.Events().AppendEmpty().Attributes().PutEmpty("a"), d)
		})},
		{"link attribute", Traces, traces(func(sp ptrace.Span, _ ptrace.ResourceSpans, _ ptrace.ScopeSpans, d int) {
			nest(sp.Links().AppendEmpty().Attributes().PutEmpty("a"), d)
		})},
		{"log body", Logs, logs(func(lr plog.LogRecord, _ pcommon.Map, d int) { nest(lr.Body(), d) })},
		{"log attribute", Logs, logs(func(lr plog.LogRecord, _ pcommon.Map, d int) { nest(lr.Attributes().PutEmpty("a"), d) })},
		{"log resource attribute", Logs, logs(func(_ plog.LogRecord, res pcommon.Map, d int) { nest(res.PutEmpty("a"), d) })},
		{"gauge point", Metrics, metrics(func(m pmetric.Metric, d int) {
			nest(m.SetEmptyGauge().DataPoints().AppendEmpty().Attributes().PutEmpty("a"), d)
		})},
		{"sum exemplar", Metrics, metrics(func(m pmetric.Metric, d int) {
			nest(m.SetEmptySum().DataPoints().AppendEmpty().Exemplars().AppendEmpty().FilteredAttributes().PutEmpty("a"), d)
		})},
		{"histogram point", Metrics, metrics(func(m pmetric.Metric, d int) {
			nest(m.SetEmptyHistogram().DataPoints().AppendEmpty().Attributes().PutEmpty("a"), d)
		})},
		{"histogram exemplar", Metrics, metrics(func(m pmetric.Metric, d int) {
			nest(m.SetEmptyHistogram().DataPoints().AppendEmpty().Exemplars().AppendEmpty().FilteredAttributes().PutEmpty("a"), d)
		})},
		{"exponential histogram point", Metrics, metrics(func(m pmetric.Metric, d int) {
			nest(m.SetEmptyExponentialHistogram().DataPoints().AppendEmpty().Attributes().PutEmpty("a"), d)
		})},
		{"exponential histogram exemplar", Metrics, metrics(func(m pmetric.Metric, d int) {
			nest(m.SetEmptyExponentialHistogram().DataPoints().AppendEmpty().Exemplars().AppendEmpty().FilteredAttributes().PutEmpty("a"), d)
		})},
		{"summary point", Metrics, metrics(func(m pmetric.Metric, d int) {
			nest(m.SetEmptySummary().DataPoints().AppendEmpty().Attributes().PutEmpty("a"), d)
		})},
		{"metric metadata", Metrics, metrics(func(m pmetric.Metric, d int) {
			m.SetEmptyGauge().DataPoints().AppendEmpty()
			nest(m.Metadata().PutEmpty("a"), d)
		})},
	}
	for _, p := range places {
		t.Run(p.name, func(t *testing.T) {
			if err := CheckProto(p.sig, p.make(limit), Limits{MaxDepth: limit}); err != nil {
				t.Errorf("depth %d refused at limit %d: %v", limit, limit, err)
			}
			err := CheckProto(p.sig, p.make(limit+1), Limits{MaxDepth: limit})
			if !errors.Is(err, ErrTooDeep) {
				t.Errorf("depth %d at limit %d: got %v, want ErrTooDeep", limit+1, limit, err)
			}
		})
	}
}

func TestCheckProtoMillionLevels(t *testing.T) {
	for _, shape := range []otlpguardtest.Shape{otlpguardtest.Array, otlpguardtest.KVList} {
		b := otlpguardtest.DeepTracesProto(1_000_000, shape)
		if err := CheckProto(Traces, b, Limits{}); !errors.Is(err, ErrTooDeep) {
			t.Errorf("shape %d, %d bytes: got %v, want ErrTooDeep", shape, len(b), err)
		}
	}
	if err := CheckProto(Logs, otlpguardtest.DeepLogsProto(1_000_000, otlpguardtest.KVList), Limits{}); !errors.Is(err, ErrTooDeep) {
		t.Errorf("log body: got %v, want ErrTooDeep", err)
	}
	if err := CheckJSON(otlpguardtest.DeepTracesJSON(1_000_000), Limits{}); !errors.Is(err, ErrTooDeep) {
		t.Errorf("json: got %v, want ErrTooDeep", err)
	}
}

// The hand-written hostile requests are real OTLP: at a depth pdata can
// take, pdata decodes them to the value they claim.
func TestDeepRequestsDecode(t *testing.T) {
	for _, shape := range []otlpguardtest.Shape{otlpguardtest.Array, otlpguardtest.KVList} {
		b := otlpguardtest.DeepTracesProto(10, shape)
		if err := CheckProto(Traces, b, Limits{MaxDepth: 10}); err != nil {
			t.Fatal(err)
		}
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
		if err != nil {
			t.Fatalf("shape %d: %v", shape, err)
		}
		v, _ := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes().Get("a")
		depth := 1
		for ; v.Type() == pcommon.ValueTypeSlice || v.Type() == pcommon.ValueTypeMap; depth++ {
			if v.Type() == pcommon.ValueTypeSlice {
				v = v.Slice().At(0)
			} else {
				v, _ = v.Map().Get("")
			}
		}
		if depth != 10 {
			t.Errorf("shape %d: decoded depth %d, want 10", shape, depth)
		}
	}
	if _, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(otlpguardtest.DeepTracesJSON(10)); err != nil {
		t.Fatal(err)
	}
	if err := CheckJSON(otlpguardtest.DeepTracesJSON(DefaultMaxDepth), Limits{}); err != nil {
		t.Errorf("JSON at the limit refused: %v", err)
	}
	if err := CheckJSON(otlpguardtest.DeepTracesJSON(DefaultMaxDepth+2), Limits{}); !errors.Is(err, ErrTooDeep) {
		t.Errorf("JSON past the limit: got %v", err)
	}
}

func TestCheckProtoMalformed(t *testing.T) {
	good := otlpguardtest.DeepTracesProto(3, otlpguardtest.Array)
	for name, b := range map[string][]byte{
		"truncated":       good[:len(good)-1],
		"length past end": {0x0a, 0x05, 0x00},
		"unclosed group":  {0x0b},
		"field zero":      {0x02, 0x00},
		"overlong varint": {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		if err := CheckProto(Traces, b, Limits{}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
		if _, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b); err == nil {
			t.Errorf("%s: pdata accepts what the guard refuses", name)
		}
	}
	if err := CheckProto(Traces, nil, Limits{}); err != nil {
		t.Errorf("empty request: %v", err)
	}
}

func TestScanProtoCountsInvalidSpanIDs(t *testing.T) {
	b, _ := ptraceotlp.NewExportRequestFromTraces(mixedIDs(4)).MarshalProto()
	rep, err := ScanProto(Traces, b, Limits{})
	if err != nil || rep.InvalidSpans != 3 {
		t.Fatalf("got %+v, %v; want 3 invalid spans", rep, err)
	}
	b, _ = ptraceotlp.NewExportRequestFromTraces(mixedIDs(4)).MarshalProto()
	if testing.AllocsPerRun(100, func() { _, _ = ScanProto(Traces, b, Limits{}) }) != 0 {
		t.Error("the walk allocates")
	}
}

// BenchmarkScanProto walks a request of the workload generator's spans,
// as the guard walks every request before it is decoded.
func BenchmarkScanProto(b *testing.B) {
	td, _ := workload.New(1, time.Unix(1_700_000_000, 0), workload.Options{}).Batch(20)
	p, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ScanProto(Traces, p, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(td.SpanCount()), "spans/op")
}
