package e2e

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/prometheus/prometheus/promql"

	"github.com/sightlinehq/sightline/internal/metrics"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// TestNoArgumentsRunsAllInOne starts `sightline` with no arguments: the
// embedded all-in-one config on its documented ports (OTLP on
// localhost:4317/4318, health on 13133, self-metrics on 8888). It needs
// those ports free, as a newcomer's machine has them.
func TestNoArgumentsRunsAllInOne(t *testing.T) {
	in := &instance{t: t, out: &syncBuffer{}, done: make(chan struct{}), Health: 13133, Dir: t.TempDir()}
	in.launch(nil, nil)

	// One line for people says where everything is; the UI it names answers.
	want := "sightline dev: OTLP/gRPC localhost:4317, OTLP/HTTP localhost:4318, Loki localhost:3100; data in " +
		filepath.Join(in.Dir, "data") + "; UI: http://localhost:3200/ui/\n"
	in.waitFor("the startup line", 30*time.Second, func() bool { return strings.Contains(in.out.String(), want) })
	if ui := httpGet(t, "http://localhost:3200/ui/"); !strings.Contains(ui, "<html") {
		t.Errorf("the UI named on the startup line does not answer with a page:\n%.300s", ui)
	}
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
	// The span_metrics connector (flushing every 15 s) turns the span into
	// metrics on the derived pipeline, which the sightline exporter writes
	// to the embedded TSDB; the prometheus receiver scrapes Sightline's
	// own telemetry into the same TSDB. Both answer PromQL on :3200.
	in.waitFor("the span's metrics and the self-scrape in the TSDB", 90*time.Second, func() bool {
		return promValue(t, "http://localhost:3200", `sum(traces_spanmetrics_duration_milliseconds_count{span_name="GET /hello"})`) == 1 &&
			promValue(t, "http://localhost:3200", `up{job="sightline"}`) == 1 &&
			promValue(t, "http://localhost:3200", `sum(otelcol_receiver_accepted_spans_total{receiver="otlp"})`) >= 1
	})
	self := httpGet(t, "http://localhost:8888/metrics")
	if !strings.Contains(self, `otelcol_receiver_accepted_spans_total{receiver="otlp",transport="grpc"`) {
		t.Errorf("self-metrics on 8888 do not count the accepted span:\n%s", self)
	}
	// `sightline demo` without --embedded names the UI it sends to. It runs last, so that
	// its spans do not reach the checks above.
	demo := exec.Command(binary, "demo", "--duration", "1s", "--rate", "5")
	out, err := demo.CombinedOutput()
	if err != nil {
		t.Fatalf("sightline demo: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "demo: see it at UI: http://localhost:3200/ui/\n") {
		t.Errorf("sightline demo does not name the UI:\n%s", out)
	}

	in.stop()
	// The span is in the embedded store ($SIGHTLINE_DATA).
	db := openStore(t, filepath.Join(in.Dir, "data"))
	defer db.Close()
	q, _ := db.Querier(ctx)
	defer q.Close()
	got, err := q.TraceByID(ctx, storage.TraceID(span.SpanContext().TraceID()), 0, 0)
	if err != nil || len(got) != 1 || got[0].Name != "GET /hello" {
		t.Fatalf("the span is not in the store: %v %v", got, err)
	}
	// Its RED metrics are in the embedded TSDB, named as Prometheus names
	// them and queryable with PromQL.
	mdb, err := metrics.Open(metrics.Options{Dir: filepath.Join(in.Dir, "data", "metrics"), Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer mdb.Close()
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	// The duration histogram counts the span at once; the calls counter's
	// first cumulative point is 0 by the connector's design (so that rate()
	// sees the step to 1 at the next flush), so only its series is checked.
	qry, err := eng.NewInstantQuery(ctx, mdb.TSDB(), nil, `sum by (span_name) (traces_spanmetrics_duration_milliseconds_count{span_name="GET /hello"}) and on (span_name) count by (span_name) (traces_spanmetrics_calls_total)`, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	res := qry.Exec(ctx)
	vec, err := res.Vector()
	if err != nil || len(vec) != 1 || vec[0].F != 1 || vec[0].Metric.Get("span_name") != "GET /hello" {
		t.Fatalf("span metrics in the TSDB: %v %v", vec, err)
	}
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
	for _, want := range []string{"sightline ", "opentelemetry-collector: v0.161.0", "opentelemetry-collector-contrib: v0.161.0", "prometheus: v0.314.0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
}
