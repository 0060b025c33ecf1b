package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// TestSeedFilterDropsNoiseEndpoints runs the lifemote sidecar seed's
// filter processor: spans and logs for /ping, /metrics and /test (in any of
// url.path, http.target with a query, http.route) are dropped; everything
// else, including look-alikes such as /pinger, is kept.
func TestSeedFilterDropsNoiseEndpoints(t *testing.T) {
	in := start(t, []string{"testdata/seed-configs/lifemote-sidecar.yaml", "testdata/overlay-lifemote-sidecar.yaml"},
		"OTEL_BEARER_TOKEN=unused", "OTEL_GATEWAY_ENDPOINT=https://127.0.0.1:1")
	cases := []struct {
		key, value string
		keep       bool
	}{
		{"url.path", "/ping", false},
		{"url.path", "/metrics", false},
		{"url.path", "/test", false},
		{"http.target", "/metrics?x=1", false},
		{"http.route", "/ping", false},
		{"url.path", "/api/x", true},
		{"url.path", "/pinger", true},
		{"http.target", "/testing", true},
		{"http.route", "/api/orders/{id}", true},
	}
	ctx := context.Background()
	ep := fmt.Sprintf("127.0.0.1:%d", in.HTTP)
	te, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(ep), otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	le, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(ep), otlploghttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(te), sdktrace.WithResource(testResource()))
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewSimpleProcessor(le)))
	for i, c := range cases {
		id := fmt.Sprint(i)
		_, span := tp.Tracer("e2e").Start(ctx, "GET "+c.value, trace.WithAttributes(
			attribute.String(c.key, c.value), attribute.String("test.id", id)))
		span.End()
		var rec otellog.Record
		rec.SetBody(attribute.StringValue("request " + c.value))
		rec.AddAttributes(attribute.String(c.key, c.value), attribute.String("test.id", id))
		lp.Logger("e2e").Emit(ctx, rec)
	}
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	in.stop()

	kept := map[string]int{}
	for _, s := range readSpans(t, filepath.Join(in.Dir, "traces.jsonl")) {
		kept["span "+strAttr(s.Span.Attributes(), "test.id")]++
	}
	for _, lr := range readLogs(t, filepath.Join(in.Dir, "logs.jsonl")) {
		kept["log "+strAttr(lr.Attributes(), "test.id")]++
	}
	for i, c := range cases {
		for _, kind := range []string{"span", "log"} {
			got := kept[fmt.Sprintf("%s %d", kind, i)]
			want := 0
			if c.keep {
				want = 1
			}
			if got != want {
				t.Errorf("%s with %s=%q: kept %d times, want %d", kind, c.key, c.value, got, want)
			}
		}
	}
}

// seededIDs makes the SDK's trace IDs reproducible, so the probabilistic
// share the test sees is the same on every run.
type seededIDs struct {
	mu  sync.Mutex
	rnd *rand.Rand
}

func (g *seededIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var tid trace.TraceID
	var sid trace.SpanID
	for i := range tid {
		tid[i] = byte(g.rnd.UintN(256))
	}
	for i := range sid {
		sid[i] = byte(g.rnd.UintN(256))
	}
	return tid, sid
}

func (g *seededIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	g.mu.Lock()
	defer g.mu.Unlock()
	var sid trace.SpanID
	for i := range sid {
		sid[i] = byte(g.rnd.UintN(256))
	}
	return sid
}

// TestSeedTailSampling runs production-bundle's tail_sampling policies:
// every error trace and every trace over 500 ms is kept whole, and about
// 10% of the rest.
func TestSeedTailSampling(t *testing.T) {
	in := start(t, []string{"testdata/tail-sampling.yaml"})
	ctx := context.Background()
	te, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(fmt.Sprintf("127.0.0.1:%d", in.GRPC)), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(te), sdktrace.WithResource(testResource()),
		sdktrace.WithIDGenerator(&seededIDs{rnd: rand.New(rand.NewPCG(1, 2))}))
	tracer := tp.Tracer("e2e")

	const normal, errs, slow = 600, 30, 30
	// emit sends one three-span trace. The normal traces go first: the
	// sampler decides traces in arrival order, so once the last error and
	// slow traces are out, every normal one has been decided too.
	emit := func(kind string, i int) {
		now := time.Now()
		dur := 20 * time.Millisecond
		if kind == "slow" {
			dur = 800 * time.Millisecond
		}
		rctx, root := tracer.Start(ctx, "GET /checkout", trace.WithTimestamp(now.Add(-dur)),
			trace.WithAttributes(attribute.String("test.kind", kind), attribute.Int("test.i", i)))
		for _, name := range []string{"SELECT orders", "POST /charge"} {
			_, child := tracer.Start(rctx, name, trace.WithTimestamp(now.Add(-dur/2)))
			if kind == "error" && name == "POST /charge" {
				child.SetStatus(codes.Error, "card declined")
			}
			child.End(trace.WithTimestamp(now.Add(-dur / 4)))
		}
		root.End(trace.WithTimestamp(now))
	}
	for i := range normal {
		emit("normal", i)
	}
	for i := range errs {
		emit("error", i)
		emit("slow", i)
	}
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(in.Dir, "traces.jsonl")
	count := func() (spansPerTrace map[string]int, kinds map[string]map[string]bool) {
		spansPerTrace = map[string]int{}
		kinds = map[string]map[string]bool{"normal": {}, "error": {}, "slow": {}}
		for _, s := range readSpans(t, out) {
			tid := s.Span.TraceID().String()
			spansPerTrace[tid]++
			if k := strAttr(s.Span.Attributes(), "test.kind"); k != "" {
				kinds[k][tid] = true
			}
		}
		return spansPerTrace, kinds
	}
	in.waitFor("every error and slow trace to be sampled", 60*time.Second, func() bool {
		_, kinds := count()
		return len(kinds["error"]) == errs && len(kinds["slow"]) == slow
	})
	in.stop()

	spansPerTrace, kinds := count()
	for tid, n := range spansPerTrace {
		if n != 3 {
			t.Errorf("trace %s kept with %d spans, want all 3", tid, n)
		}
	}
	if len(kinds["error"]) != errs || len(kinds["slow"]) != slow {
		t.Errorf("kept %d error and %d slow traces, want %d and %d", len(kinds["error"]), len(kinds["slow"]), errs, slow)
	}
	// 10% of 600 is 60 (binomial sd 7.3); the IDs are seeded, so this
	// checks the policy, not luck.
	if n := len(kinds["normal"]); n < 35 || n > 85 {
		t.Errorf("kept %d of %d normal traces, want about 10%%", n, normal)
	}
	t.Logf("kept %d of %d normal traces", len(kinds["normal"]), normal)
}

// TestSeedAttributes runs the seeds' attributes actions on spans and logs.
func TestSeedAttributes(t *testing.T) {
	in := start(t, []string{"testdata/attributes.yaml"})
	ctx := context.Background()
	ep := fmt.Sprintf("127.0.0.1:%d", in.GRPC)
	te, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(ep), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	le, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(ep), otlploggrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(te))
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewSimpleProcessor(le)))
	_, span := tp.Tracer("e2e").Start(ctx, "GET /profile", trace.WithAttributes(
		attribute.String("http.url", "https://shop.example/profile?session=abc"),
		attribute.String("user.email", "ada@example.com"),
		attribute.String("http.route", "/profile")))
	span.End()
	var rec otellog.Record
	rec.SetBody(attribute.StringValue("profile viewed"))
	rec.AddAttributes(attribute.String("http.url", "https://shop.example/profile"), attribute.String("user.email", "ada@example.com"))
	lp.Logger("e2e").Emit(ctx, rec)
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	in.stop()

	spans := readSpans(t, filepath.Join(in.Dir, "traces.jsonl"))
	logs := readLogs(t, filepath.Join(in.Dir, "logs.jsonl"))
	if len(spans) != 1 || len(logs) != 1 {
		t.Fatalf("got %d spans and %d logs, want 1 of each", len(spans), len(logs))
	}
	for what, attrs := range map[string]pcommon.Map{"span": spans[0].Span.Attributes(), "log": logs[0].Attributes()} {
		if _, ok := attrs.Get("http.url"); ok {
			t.Errorf("%s still has http.url", what)
		}
		if got := strAttr(attrs, "user.email"); got != "***REDACTED***" {
			t.Errorf("%s user.email = %q, want it redacted", what, got)
		}
	}
	if got := strAttr(spans[0].Span.Attributes(), "http.route"); got != "/profile" {
		t.Errorf("unrelated attribute changed: http.route = %q", got)
	}
}

// TestMemoryLimiterRefusesRetryably checks that over its limit the
// memory_limiter makes both OTLP receivers refuse with the statuses the
// OTLP spec calls retryable, so clients keep the data and try again.
func TestMemoryLimiterRefusesRetryably(t *testing.T) {
	in := start(t, []string{"testdata/memory-limiter.yaml"})
	request := func(name string) ptraceotlp.ExportRequest {
		td := ptrace.NewTraces()
		s := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		s.SetName(name)
		s.SetTraceID(pcommon.TraceID{1, 2, 3})
		s.SetSpanID(pcommon.SpanID{1})
		return ptraceotlp.NewExportRequestFromTraces(td)
	}

	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", in.GRPC), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)
	// Requests that arrive before the limiter's first check are accepted;
	// each of those must still be delivered, and no refused one may be.
	accepted := map[string]bool{}
	var code grpccodes.Code
	attempt := 0
	in.waitFor("the gRPC receiver to refuse", 30*time.Second, func() bool {
		attempt++
		name := fmt.Sprintf("attempt-%d", attempt)
		_, err := client.Export(context.Background(), request(name))
		if err == nil {
			accepted[name] = true
			return false
		}
		code = status.Code(err)
		return true
	})
	if code != grpccodes.Unavailable {
		t.Errorf("gRPC refusal code = %v, want Unavailable (retryable)", code)
	}

	body, err := request("refused-over-http").MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/traces", in.HTTP), "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("HTTP refusal status = %d, want 503 or 429 (retryable)", resp.StatusCode)
	}
	in.stop()
	exported := map[string]bool{}
	for _, s := range readSpans(t, filepath.Join(in.Dir, "traces.jsonl")) {
		exported[s.Span.Name()] = true
	}
	for name := range accepted {
		if !exported[name] {
			t.Errorf("accepted span %s was not delivered", name)
		}
	}
	for name := range exported {
		if !accepted[name] {
			t.Errorf("refused span %s reached the exporter", name)
		}
	}
}

// TestSeedGatewayBearerTokenAndTLS runs the lifemote gateway seed: its
// OTLP/HTTP receiver requires TLS 1.3 and the bearer token.
func TestSeedGatewayBearerTokenAndTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeSelfSignedCert(t, dir)
	in := start(t, []string{"testdata/seed-configs/lifemote-gateway.yaml", "testdata/overlay-lifemote-gateway.yaml"},
		"OTEL_BEARER_TOKEN=s3cret-token", "OTEL_TLS_CERT_FILE="+cert, "OTEL_TLS_KEY_FILE="+key,
		"GRAFANA_CLOUD_OTLP_ENDPOINT=https://127.0.0.1:1/otlp", "GRAFANA_CLOUD_OTLP_AUTH=unused")

	pem, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	url := fmt.Sprintf("https://127.0.0.1:%d/v1/logs", in.HTTP)

	post := func(c *http.Client, token, body string) (int, error) {
		ld := plog.NewLogs()
		ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr(body)
		b, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/x-protobuf")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	for _, c := range []struct{ token, body string }{{"", "no token"}, {"wrong", "wrong token"}} {
		code, err := post(client, c.token, c.body)
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", c.body, code)
		}
	}
	if code, err := post(client, "s3cret-token", "with token"); err != nil || code != http.StatusOK {
		t.Errorf("with token: status %d, err %v; want 200", code, err)
	}
	tls12 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12}}}
	if _, err := post(tls12, "s3cret-token", "over tls 1.2"); err == nil {
		t.Error("a TLS 1.2 client was accepted; the seed requires TLS 1.3")
	}
	in.stop()

	logs := readLogs(t, filepath.Join(in.Dir, "logs.jsonl"))
	if len(logs) != 1 || logs[0].Body().AsString() != "with token" {
		var bodies []string
		for _, l := range logs {
			bodies = append(bodies, l.Body().AsString())
		}
		t.Errorf("logs that reached the exporter: %q, want only the authenticated one", bodies)
	}
}
