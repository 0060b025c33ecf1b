package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// otlpSink is an OTLP/gRPC trace server that counts every span it gets.
type otlpSink struct {
	ptraceotlp.UnimplementedGRPCServer
	mu    sync.Mutex
	spans map[string]int // trace ID/span ID -> times received
	port  int
}

func newOTLPSink(t *testing.T) *otlpSink {
	s := &otlpSink{spans: map[string]int{}, port: freePort(t)}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	ptraceotlp.RegisterGRPCServer(srv, s)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return s
}

func (s *otlpSink) Export(_ context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range req.Traces().ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				s.spans[sp.TraceID().String()+"/"+sp.SpanID().String()]++
			}
		}
	}
	return ptraceotlp.NewExportResponse(), nil
}

// received returns how many times each span of the traces arrived.
func (s *otlpSink) received(spans map[string]bool) (got, dup int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range spans {
		n := s.spans[k]
		if n > 0 {
			got++
		}
		if n > 1 {
			dup++
		}
	}
	return got, dup
}

// sendSampledTraces sends n three-span traces with the OTel Go SDK: a
// third fail, a sixth are for vip customers, the rest neither. It returns
// the spans the gateway's policies keep and those they drop, once the SDK
// has had them all acknowledged.
func sendSampledTraces(t *testing.T, port int, n int) (keep, drop map[string]bool) {
	t.Helper()
	ctx := context.Background()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(fmt.Sprintf("127.0.0.1:%d", port)), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
	tracer := tp.Tracer("e2e")
	keep, drop = map[string]bool{}, map[string]bool{}
	for i := range n {
		tier := "free"
		if i%6 == 1 {
			tier = "vip"
		}
		rctx, root := tracer.Start(ctx, "checkout", trace.WithAttributes(attribute.String("customer.tier", tier)))
		_, db := tracer.Start(rctx, "db")
		db.End()
		_, pay := tracer.Start(rctx, "pay")
		if i%3 == 0 {
			pay.SetStatus(codes.Error, "declined")
		}
		pay.End()
		root.End()
		for _, sc := range []trace.SpanContext{root.SpanContext(), db.SpanContext(), pay.SpanContext()} {
			k := sc.TraceID().String() + "/" + sc.SpanID().String()
			if i%3 == 0 || tier == "vip" {
				keep[k] = true
			} else {
				drop[k] = true
			}
		}
	}
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatalf("export: %v", err)
	}
	return keep, drop
}

// selfMetric sums a self-metric's samples whose labels contain match. A
// counter may carry the _total suffix.
func selfMetric(t *testing.T, in *instance, name, match string) (float64, bool) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", in.Metrics))
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		metric, _, _ := strings.Cut(line, " ")
		metric, _, _ = strings.Cut(metric, "{")
		if (metric != name && metric != name+"_total") || !strings.Contains(line, match) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		sum += v
		found = true
	}
	return sum, found
}

// gateway runs the sampling gateway of testdata/tail-sampling-restart.yaml
// in front of sink, with its buffer in dir.
func gateway(t *testing.T, sink *otlpSink, dir string) *instance {
	return start(t, []string{"testdata/tail-sampling-restart.yaml"},
		"SINK_PORT="+strconv.Itoa(sink.port), "BUFFER_DIR="+dir)
}

// settled waits until every kept span reached the sink and nothing waits
// in the gateway.
func settled(t *testing.T, gw *instance, sink *otlpSink, keep map[string]bool) {
	t.Helper()
	waitFor(t, "every kept span at the sink", time.Minute, func() bool {
		got, _ := sink.received(keep)
		return got == len(keep)
	})
	waitFor(t, "nothing waiting in the gateway", time.Minute, func() bool {
		waiting, ok1 := selfMetric(t, gw, "sightline_tail_sampling_traces", `state="waiting"`)
		deciding, ok2 := selfMetric(t, gw, "sightline_tail_sampling_traces", `state="deciding"`)
		return ok1 && ok2 && waiting == 0 && deciding == 0
	})
}

func merge(into map[string]bool, from ...map[string]bool) {
	for _, m := range from {
		for k := range m {
			into[k] = true
		}
	}
}

func kill(t *testing.T, in *instance) {
	t.Helper()
	if err := in.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-in.done
}

func requireRecovered(t *testing.T, gw *instance) {
	t.Helper()
	if n, _ := selfMetric(t, gw, "sightline_tail_sampling_recovered_traces", ""); n < 1 {
		t.Errorf("recovered traces %v after the restart, want some", n)
	}
}

// A gateway stopped with SIGTERM while traces wait for their decision and
// others are being decided: after it starts again every trace is decided,
// and every span of every kept trace reaches the next hop exactly once.
func TestTailSamplingSurvivesSIGTERM(t *testing.T) {
	sink, dir := newOTLPSink(t), t.TempDir()
	gw := gateway(t, sink, dir)
	keep, drop := sendSampledTraces(t, gw.GRPC, 300)
	waitFor(t, "the first kept traces at the sink", time.Minute, func() bool {
		got, _ := sink.received(keep)
		return got > 0
	})
	keep2, drop2 := sendSampledTraces(t, gw.GRPC, 300)
	merge(keep, keep2)
	merge(drop, drop2)
	gw.stop()
	if got, _ := sink.received(keep); got == len(keep) {
		t.Fatalf("all %d kept spans were delivered before the stop; the test needs traces pending", got)
	}

	gw = gateway(t, sink, dir)
	requireRecovered(t, gw)
	settled(t, gw, sink, keep)
	gw.stop()
	if _, dup := sink.received(keep); dup > 0 {
		t.Errorf("%d kept spans arrived more than once", dup)
	}
	if got, _ := sink.received(drop); got > 0 {
		t.Errorf("%d spans of dropped traces arrived", got)
	}
}

// SIGKILL loses nothing. Killed while traces wait, the gateway delivers
// each kept trace exactly once after the restart. Killed while it
// forwards decided traces, at most one trace can reach the next hop
// twice: the one whose acknowledgement came in and whose decision was not
// yet on disk, since traces are forwarded one at a time.
func TestTailSamplingSurvivesSIGKILL(t *testing.T) {
	sink, dir := newOTLPSink(t), t.TempDir()
	gw := gateway(t, sink, dir)
	keep, drop := sendSampledTraces(t, gw.GRPC, 200)
	settled(t, gw, sink, keep)
	keep2, drop2 := sendSampledTraces(t, gw.GRPC, 300)
	merge(keep, keep2)
	merge(drop, drop2)
	kill(t, gw)

	gw = gateway(t, sink, dir)
	requireRecovered(t, gw)
	settled(t, gw, sink, keep)
	if _, dup := sink.received(keep); dup > 0 {
		t.Errorf("killed with traces waiting: %d kept spans arrived more than once", dup)
	}

	// Now while it forwards.
	keep3, drop3 := sendSampledTraces(t, gw.GRPC, 600)
	waitFor(t, "the first kept traces of the third batch at the sink", time.Minute, func() bool {
		got, _ := sink.received(keep3)
		return got > 0
	})
	kill(t, gw)
	before, _ := sink.received(keep3)
	t.Logf("killed with %d of %d kept spans of the third batch delivered", before, len(keep3))
	gw = gateway(t, sink, dir)
	settled(t, gw, sink, keep3)
	gw.stop()
	if _, dup := sink.received(keep); dup > 0 {
		t.Errorf("%d spans decided before the second kill arrived again", dup)
	}
	dupTraces := map[string]bool{}
	sink.mu.Lock()
	for k := range keep3 {
		if sink.spans[k] > 1 {
			dupTraces[k[:32]] = true
		}
	}
	sink.mu.Unlock()
	if len(dupTraces) > 1 {
		t.Errorf("killed while forwarding: spans of %d traces arrived twice, at most the one in flight may", len(dupTraces))
	}
	merge(drop, drop3)
	if got, _ := sink.received(drop); got > 0 {
		t.Errorf("%d spans of dropped traces arrived", got)
	}
}
