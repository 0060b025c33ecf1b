package e2e

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// TestNoArgumentsRunsAllInOne starts `sightline` with no arguments: the
// embedded all-in-one config on its documented ports (OTLP on
// localhost:4317/4318, health on 13133, self-metrics on 8888). It needs
// those ports free, as a newcomer's machine has them.
func TestNoArgumentsRunsAllInOne(t *testing.T) {
	in := &instance{t: t, out: &syncBuffer{}, done: make(chan struct{}), Health: 13133, Dir: t.TempDir()}
	in.launch(nil, nil)

	ctx := context.Background()
	te, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint("localhost:4317"), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(te), sdktrace.WithResource(testResource()))
	_, span := tp.Tracer("e2e").Start(ctx, "GET /hello")
	span.End()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatalf("export to localhost:4317: %v", err)
	}
	resp, err := http.Post("http://localhost:4318/v1/traces", "application/json", strings.NewReader(`{"resourceSpans":[]}`))
	if err != nil {
		t.Fatalf("OTLP/HTTP on localhost:4318: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("OTLP/HTTP on 4318 answered %d", resp.StatusCode)
	}
	// The span reaches the debug exporter, and the span_metrics connector
	// (flushing every 15 s) turns it into metrics on the derived pipeline;
	// no OTLP metrics are sent, so metrics in the output are derived ones.
	in.waitFor("the span and its span metrics in the debug output", 60*time.Second, func() bool {
		out := in.out.String()
		return strings.Contains(out, `"otelcol.signal": "traces"`) && strings.Contains(out, `"spans": 1`) &&
			strings.Contains(out, `"otelcol.signal": "metrics"`)
	})
	self := httpGet(t, "http://localhost:8888/metrics")
	if !strings.Contains(self, `otelcol_receiver_accepted_spans{receiver="otlp",transport="grpc"`) {
		t.Errorf("self-metrics on 8888 do not count the accepted span:\n%s", self)
	}
	in.stop()
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestComponentsAndVersionCommands(t *testing.T) {
	out, err := exec.Command(binary, "components").CombinedOutput()
	if err != nil {
		t.Fatalf("components: %v\n%s", err, out)
	}
	for _, want := range []string{"awss3", "tail_sampling", "span_metrics", "load_balancing", "bearertokenauth", "file_storage", "prometheus_remote_write"} {
		if !strings.Contains(string(out), "name: "+want) {
			t.Errorf("components output lacks %s", want)
		}
	}
	out, err = exec.Command(binary, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("version: %v\n%s", err, out)
	}
	for _, want := range []string{"sightline ", "opentelemetry-collector: v0.159.0", "opentelemetry-collector-contrib: v0.159.0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
}
