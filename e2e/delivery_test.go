package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

const perTransport = 50

// transport sends telemetry one way: an SDK over gRPC, an SDK over
// HTTP/protobuf, or raw OTLP/HTTP JSON.
type transport struct {
	name string
	send func(t *testing.T, in *instance, n int)
}

// TestDeliveryExactlyOnce sends traces, metrics and logs over every OTLP
// transport and checks that each item reaches the file exporter exactly
// once with its attributes, after a SIGTERM that must drain the pipeline.
func TestDeliveryExactlyOnce(t *testing.T) {
	in := start(t, []string{"testdata/passthrough.yaml"})
	transports := []transport{
		{"grpc", sendSDKGRPC},
		{"http-proto", sendSDKHTTP},
		{"http-json", sendJSON},
	}
	for _, tr := range transports {
		tr.send(t, in, perTransport)
	}
	in.stop()

	spans := readSpans(t, filepath.Join(in.Dir, "traces.jsonl"))
	logs := readLogs(t, filepath.Join(in.Dir, "logs.jsonl"))
	points := readSumPoints(t, filepath.Join(in.Dir, "metrics.jsonl"))

	seenSpans := map[string]int{}
	for _, s := range spans {
		id := strAttr(s.Span.Attributes(), "test.id")
		seenSpans[id]++
		if got := strAttr(s.Resource.Attributes(), "service.name"); got != "delivery-test" {
			t.Errorf("span %s: service.name = %q", id, got)
		}
		if want := "op-" + id; s.Span.Name() != want {
			t.Errorf("span %s: name = %q, want %q", id, s.Span.Name(), want)
		}
		if got := strAttr(s.Span.Attributes(), "http.route"); got != "/api/items/{id}" {
			t.Errorf("span %s: http.route = %q", id, got)
		}
	}
	seenLogs := map[string]int{}
	for _, lr := range logs {
		id := strAttr(lr.Attributes(), "test.id")
		seenLogs[id]++
		if want := "log line " + id; lr.Body().AsString() != want {
			t.Errorf("log %s: body = %q, want %q", id, lr.Body().AsString(), want)
		}
		if lr.SeverityNumber() != plog.SeverityNumberWarn {
			t.Errorf("log %s: severity = %v", id, lr.SeverityNumber())
		}
	}
	seenPoints := map[string]int{}
	for _, p := range points {
		if p.Metric != "delivery.requests" {
			continue
		}
		id := strAttr(p.Point.Attributes(), "test.id")
		seenPoints[id]++
		if p.Point.IntValue() != 7 {
			t.Errorf("point %s: value = %d, want 7", id, p.Point.IntValue())
		}
	}

	for _, tr := range transports {
		for i := range perTransport {
			id := fmt.Sprintf("%s-%d", tr.name, i)
			if seenSpans[id] != 1 {
				t.Errorf("span %s arrived %d times, want 1", id, seenSpans[id])
			}
			if seenLogs[id] != 1 {
				t.Errorf("log %s arrived %d times, want 1", id, seenLogs[id])
			}
			if seenPoints[id] != 1 {
				t.Errorf("metric point %s arrived %d times, want 1", id, seenPoints[id])
			}
		}
	}
	if want := len(transports) * perTransport; len(spans) != want || len(logs) != want {
		t.Errorf("got %d spans and %d logs, want %d of each", len(spans), len(logs), want)
	}
}

func testResource() *resource.Resource {
	return resource.NewSchemaless(attribute.String("service.name", "delivery-test"))
}

// sdkSend drives the three SDK providers. Shutdown flushes each exactly
// once: the metric reader's interval is an hour, so its only export is the
// one at shutdown and every point is sent once.
func sdkSend(t *testing.T, prefix string, n int, te sdktrace.SpanExporter, me sdkmetric.Exporter, le sdklog.Exporter) {
	t.Helper()
	ctx := context.Background()
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(te), sdktrace.WithResource(testResource()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(me, sdkmetric.WithInterval(time.Hour))),
		sdkmetric.WithResource(testResource()))
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewBatchProcessor(le)), sdklog.WithResource(testResource()))

	tracer := tp.Tracer("e2e")
	counter, err := mp.Meter("e2e").Int64Counter("delivery.requests")
	if err != nil {
		t.Fatal(err)
	}
	logger := lp.Logger("e2e")
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		sctx, span := tracer.Start(ctx, "op-"+id, trace.WithAttributes(
			attribute.String("test.id", id), attribute.String("http.route", "/api/items/{id}")))
		counter.Add(sctx, 7, metricAttr(id))
		var rec otellog.Record
		rec.SetBody(attribute.StringValue("log line " + id))
		rec.SetSeverity(otellog.SeverityWarn)
		rec.AddAttributes(attribute.String("test.id", id))
		logger.Emit(sctx, rec)
		span.End()
	}
	for name, shutdown := range map[string]func(context.Context) error{
		"traces": tp.Shutdown, "metrics": mp.Shutdown, "logs": lp.Shutdown,
	} {
		if err := shutdown(ctx); err != nil {
			t.Fatalf("%s %s export: %v", prefix, name, err)
		}
	}
}

func sendSDKGRPC(t *testing.T, in *instance, n int) {
	ctx := context.Background()
	ep := fmt.Sprintf("127.0.0.1:%d", in.GRPC)
	te, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(ep), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	me, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(ep), otlpmetricgrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	le, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(ep), otlploggrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	sdkSend(t, "grpc", n, te, me, le)
}

func sendSDKHTTP(t *testing.T, in *instance, n int) {
	ctx := context.Background()
	ep := fmt.Sprintf("127.0.0.1:%d", in.HTTP)
	te, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(ep), otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	me, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpoint(ep), otlpmetrichttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	le, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(ep), otlploghttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	sdkSend(t, "http-proto", n, te, me, le)
}

// sendJSON posts OTLP/HTTP JSON requests, the encoding the Go SDK does not
// speak but browsers and many shippers do.
func sendJSON(t *testing.T, in *instance, n int) {
	td := ptrace.NewTraces()
	md := pmetric.NewMetrics()
	ld := plog.NewLogs()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "delivery-test")
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "delivery-test")
	sum := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	sum.SetName("delivery.requests")
	sum.SetEmptySum().SetIsMonotonic(true)
	sum.Sum().SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "delivery-test")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	records := rl.ScopeLogs().AppendEmpty().LogRecords()
	now := time.Now()
	for i := range n {
		id := fmt.Sprintf("http-json-%d", i)
		s := spans.AppendEmpty()
		s.SetName("op-" + id)
		s.SetTraceID(pcommon.TraceID{0xee, byte(i), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14})
		s.SetSpanID(pcommon.SpanID{0xee, byte(i), 1, 2, 3, 4, 5, 6})
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
		s.Attributes().PutStr("test.id", id)
		s.Attributes().PutStr("http.route", "/api/items/{id}")
		dp := sum.Sum().DataPoints().AppendEmpty()
		dp.SetIntValue(7)
		dp.SetTimestamp(pcommon.NewTimestampFromTime(now))
		dp.Attributes().PutStr("test.id", id)
		lr := records.AppendEmpty()
		lr.Body().SetStr("log line " + id)
		lr.SetSeverityNumber(plog.SeverityNumberWarn)
		lr.SetTimestamp(pcommon.NewTimestampFromTime(now))
		lr.Attributes().PutStr("test.id", id)
	}
	tb, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	mb, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	lb, err := plogotlp.NewExportRequestFromLogs(ld).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	for path, body := range map[string][]byte{"/v1/traces": tb, "/v1/metrics": mb, "/v1/logs": lb} {
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d%s", in.HTTP, path), "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: status %d", path, resp.StatusCode)
		}
	}
}
