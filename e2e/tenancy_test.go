package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/collector/pdata/pcommon"
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
	"go.opentelemetry.io/otel/metric"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sightlinehq/sightline/internal/otlpguard/otlpguardtest"
)

var tenants = []string{"team-a", "team-b", "team-c"}

// spoofOf is the tenant a tenant's payloads claim to be.
func spoofOf(tenant string) string {
	for i, t := range tenants {
		if t == tenant {
			return tenants[(i+1)%len(tenants)]
		}
	}
	return ""
}

type tenancyFixture struct {
	in         *instance
	query      string // base URL of the query API
	lokiPush   string
	traceIDs   map[string][]string // tenant → its trace IDs
	grpcTarget string
}

// TestTenancyComesFromTheRequest writes as three tenants through every
// ingest path, each payload naming the next tenant as its own, and reads
// through every API as each tenant: every tenant sees exactly its own
// data, whatever its payloads claimed, and requests without a tenant are
// refused.
func TestTenancyComesFromTheRequest(t *testing.T) {
	qp, lp := freePort(t), freePort(t)
	in := start(t, []string{"testdata/tenancy.yaml"}, "QUERY_PORT="+strconv.Itoa(qp), "LOKI_PORT="+strconv.Itoa(lp))
	f := &tenancyFixture{
		in: in, query: fmt.Sprintf("http://127.0.0.1:%d", qp), lokiPush: fmt.Sprintf("http://127.0.0.1:%d/loki/api/v1/push", lp),
		traceIDs: map[string][]string{}, grpcTarget: fmt.Sprintf("127.0.0.1:%d", in.GRPC),
	}
	for _, tenant := range tenants {
		f.writeAs(t, tenant)
	}
	f.refusedWithoutTenant(t)

	// Span metrics are derived on a 1 s flush; wait until each tenant's
	// are in before reading.
	for _, tenant := range tenants {
		waitFor(t, "span metrics of "+tenant, 30*time.Second, func() bool {
			_, body := f.get(t, "/api/v1/query", url.Values{"query": {`traces_spanmetrics_calls_total`}}, tenant)
			return strings.Contains(body, svc(tenant, "grpc"))
		})
	}
	for _, tenant := range tenants {
		t.Run(tenant, func(t *testing.T) { f.readAs(t, tenant) })
	}
}

func svc(tenant, path string) string { return "svc-" + tenant + "-" + path }

// writeAs sends as tenant over OTLP/gRPC and OTLP/HTTP (the OTel Go SDK),
// Loki push, and Prometheus remote write and OTLP on the query API.
func (f *tenancyFixture) writeAs(t *testing.T, tenant string) {
	t.Helper()
	ctx := context.Background()
	hdr := map[string]string{"X-Scope-OrgID": tenant}
	spoof := spoofOf(tenant)
	otlpHTTP := fmt.Sprintf("127.0.0.1:%d", f.in.HTTP)

	te, _ := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(f.grpcTarget), otlptracegrpc.WithInsecure(), otlptracegrpc.WithHeaders(hdr))
	me, _ := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(f.grpcTarget), otlpmetricgrpc.WithInsecure(), otlpmetricgrpc.WithHeaders(hdr))
	le, _ := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(f.grpcTarget), otlploggrpc.WithInsecure(), otlploggrpc.WithHeaders(hdr))
	f.sdk(t, tenant, svc(tenant, "grpc"), spoof, te, me, le)

	te2, _ := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(otlpHTTP), otlptracehttp.WithInsecure(), otlptracehttp.WithHeaders(hdr))
	me2, _ := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpoint(otlpHTTP), otlpmetrichttp.WithInsecure(), otlpmetrichttp.WithHeaders(hdr))
	le2, _ := otlploghttp.New(ctx, otlploghttp.WithEndpoint(otlpHTTP), otlploghttp.WithInsecure(), otlploghttp.WithHeaders(hdr))
	f.sdk(t, tenant, svc(tenant, "http"), spoof, te2, me2, le2)

	push := fmt.Sprintf(`{"streams":[{"stream":{"service_name":%q,"tenant_id":%q},"values":[[%q,"loki line of %s"]]}]}`,
		svc(tenant, "loki"), spoof, strconv.FormatInt(time.Now().UnixNano(), 10), tenant)
	if code, body := f.post(t, f.lokiPush, []byte(push), "application/json", tenant); code != http.StatusNoContent {
		t.Fatalf("loki push as %s: %d %s", tenant, code, body)
	}

	rw := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "remote_written"}, {Name: "service_name", Value: svc(tenant, "rw")}, {Name: "tenant_id", Value: spoof}},
		Samples: []prompb.Sample{{Timestamp: time.Now().UnixMilli(), Value: 1}},
	}}}
	raw, _ := rw.Marshal()
	if code, body := f.post(t, f.query+"/api/v1/write", snappy.Encode(nil, raw), "application/x-protobuf", tenant); code != http.StatusNoContent {
		t.Fatalf("remote write as %s: %d %s", tenant, code, body)
	}
	me3, _ := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(f.query+"/api/v1/otlp/v1/metrics"), otlpmetrichttp.WithHeaders(hdr))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(me3, sdkmetric.WithInterval(time.Hour))),
		sdkmetric.WithResource(resource.NewSchemaless(attribute.String("service.name", svc(tenant, "promotlp")), attribute.String("tenant.id", spoof))))
	c, _ := mp.Meter("e2e").Int64Counter("otlp.written")
	c.Add(ctx, 1, metric.WithAttributes(attribute.String("tenant_id", spoof)))
	if err := mp.Shutdown(ctx); err != nil {
		t.Fatalf("OTLP metrics to the query API as %s: %v", tenant, err)
	}
}

// sdk sends one trace of two spans, a counter point and a log record
// through the SDK's exporters, all with a resource (and a point
// attribute) that claim to be spoof.
func (f *tenancyFixture) sdk(t *testing.T, tenant, service, spoof string, te sdktrace.SpanExporter, me sdkmetric.Exporter, le sdklog.Exporter) {
	t.Helper()
	ctx := context.Background()
	res := resource.NewSchemaless(attribute.String("service.name", service), attribute.String("tenant.id", spoof), attribute.String("tenant_id", spoof))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(te), sdktrace.WithResource(res))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(me, sdkmetric.WithInterval(time.Hour))), sdkmetric.WithResource(res))
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewSimpleProcessor(le)), sdklog.WithResource(res))

	sctx, root := tp.Tracer("e2e").Start(ctx, "checkout", trace.WithSpanKind(trace.SpanKindServer))
	_, child := tp.Tracer("e2e").Start(sctx, "charge")
	var rec otellog.Record
	rec.SetBody(attribute.StringValue("log line of " + tenant))
	rec.AddAttributes(attribute.String("tenant.id", spoof))
	lp.Logger("e2e").Emit(sctx, rec)
	counter, _ := mp.Meter("e2e").Int64Counter("tenant.requests")
	counter.Add(ctx, 1, metric.WithAttributes(attribute.String("tenant_id", spoof)))
	child.End()
	root.End()
	f.traceIDs[tenant] = append(f.traceIDs[tenant], root.SpanContext().TraceID().String())
	for name, shutdown := range map[string]func(context.Context) error{"traces": tp.Shutdown, "metrics": mp.Shutdown, "logs": lp.Shutdown} {
		if err := shutdown(ctx); err != nil {
			t.Fatalf("%s %s as %s: %v", service, name, tenant, err)
		}
	}
}

// refusedWithoutTenant sends on every ingest path without a tenant, with
// a payload naming one: each is refused with a permanent error, and
// nothing of it is stored (readAs finds no "nobody" data).
func (f *tenancyFixture) refusedWithoutTenant(t *testing.T) {
	t.Helper()
	code, body := f.post(t, fmt.Sprintf("http://127.0.0.1:%d/v1/traces", f.in.HTTP), otlpTraceProto("svc-nobody", tenants[0]), "application/x-protobuf", "")
	if code != http.StatusUnauthorized || !strings.Contains(body, "X-Scope-OrgID") {
		t.Errorf("OTLP/HTTP without a tenant: %d %s, want 401 naming the header", code, body)
	}
	err := grpcExport(f.grpcTarget, otlpTraceProto("svc-nobody", tenants[0]))
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("OTLP/gRPC without a tenant: %v, want Unauthenticated", err)
	}
	push := fmt.Sprintf(`{"streams":[{"stream":{"service_name":"svc-nobody"},"values":[[%q,"x"]]}]}`, strconv.FormatInt(time.Now().UnixNano(), 10))
	if code, body := f.post(t, f.lokiPush, []byte(push), "application/json", ""); code != http.StatusUnauthorized {
		t.Errorf("Loki push without a tenant: %d %s, want 401", code, body)
	}
	if code, body := f.post(t, f.query+"/api/v1/write", nil, "application/x-protobuf", ""); code != http.StatusUnauthorized {
		t.Errorf("remote write without a tenant: %d %s, want 401", code, body)
	}
	if code, body := f.post(t, f.lokiPush, []byte(push), "application/json", "../team-a"); code != http.StatusBadRequest {
		t.Errorf("Loki push with an invalid tenant: %d %s, want 400", code, body)
	}
}

// otlpTraceProto is an OTLP/protobuf traces request of one span whose
// resource claims tenant.
func otlpTraceProto(service, tenant string) []byte {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", service)
	rs.Resource().Attributes().PutStr("tenant.id", tenant)
	sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetName("no-tenant")
	sp.SetTraceID([16]byte{0xde, 0xad, 1})
	sp.SetSpanID([8]byte{0xde, 0xad, 1})
	now := time.Now()
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-time.Millisecond)))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
	b, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	return b
}

// grpcExport sends an encoded traces request over OTLP/gRPC, without
// metadata.
func grpcExport(target string, body []byte) error {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	var reply []byte
	return conn.Invoke(context.Background(), "/opentelemetry.proto.collector.trace.v1.TraceService/Export", body, &reply, grpc.ForceCodecV2(otlpguardtest.RawCodec{}))
}

func (f *tenancyFixture) readAs(t *testing.T, tenant string) {
	mine := func(s string) bool { return strings.HasPrefix(s, "svc-"+tenant+"-") }
	others := func(body string) {
		t.Helper()
		for _, o := range tenants {
			if o != tenant && strings.Contains(body, "svc-"+o+"-") {
				t.Errorf("%s sees %s's data: %.500s", tenant, o, body)
			}
		}
		if strings.Contains(body, "svc-nobody") {
			t.Errorf("%s sees a refused request's data: %.500s", tenant, body)
		}
	}
	rng := url.Values{"start": {strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)}, "end": {strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10)}}
	with := func(kv ...string) url.Values {
		v := url.Values{}
		for k, vs := range rng {
			v[k] = vs
		}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}

	// Tempo.
	code, body := f.get(t, "/api/search", with("q", "{ }", "limit", "100"), tenant)
	var search struct {
		Traces []struct {
			TraceID         string `json:"traceID"`
			RootServiceName string `json:"rootServiceName"`
		} `json:"traces"`
	}
	decodeOK(t, code, body, &search)
	if len(search.Traces) != 2 {
		t.Errorf("Tempo search as %s: %d traces, want its 2: %s", tenant, len(search.Traces), body)
	}
	for _, tr := range search.Traces {
		if !mine(tr.RootServiceName) {
			t.Errorf("Tempo search as %s found %s", tenant, tr.RootServiceName)
		}
	}
	code, body = f.get(t, "/api/v2/search/tag/resource.service.name/values", rng, tenant)
	decodeOK(t, code, body, &struct{}{})
	others(body)
	if !strings.Contains(body, svc(tenant, "grpc")) {
		t.Errorf("Tempo tag values as %s: %s", tenant, body)
	}
	for _, o := range tenants {
		for _, id := range f.traceIDs[o] {
			want := http.StatusOK
			if o != tenant {
				want = http.StatusNotFound
			}
			if code, _ := f.get(t, "/api/v2/traces/"+id, nil, tenant); code != want {
				t.Errorf("Tempo trace of %s as %s: %d, want %d", o, tenant, code, want)
			}
			if code, _ := f.get(t, "/jaeger/api/traces/"+id, nil, tenant); code != want {
				t.Errorf("Jaeger trace of %s as %s: %d, want %d", o, tenant, code, want)
			}
			_, body := f.get(t, "/api/sightline/v1/traces/"+id+"/logs", nil, tenant)
			if (o == tenant) != strings.Contains(body, "log line of "+o) {
				t.Errorf("native trace logs of %s as %s: %.300s", o, tenant, body)
			}
		}
	}

	// Jaeger.
	code, body = f.get(t, "/jaeger/api/services", nil, tenant)
	var services struct{ Data []string }
	decodeOK(t, code, body, &services)
	if len(services.Data) != 2 || !mine(services.Data[0]) || !mine(services.Data[1]) {
		t.Errorf("Jaeger services as %s: %v", tenant, services.Data)
	}

	// Loki: OTLP logs over both transports and the Loki push.
	code, body = f.get(t, "/loki/api/v1/query_range", url.Values{"query": {`{service_name=~"svc-.+"}`}, "limit": {"100"},
		"start": {strconv.FormatInt(time.Now().Add(-time.Hour).UnixNano(), 10)}}, tenant)
	var logs struct {
		Data struct {
			Result []struct {
				Stream map[string]string `json:"stream"`
			} `json:"result"`
		} `json:"data"`
	}
	decodeOK(t, code, body, &logs)
	got := map[string]bool{}
	for _, s := range logs.Data.Result {
		got[s.Stream["service_name"]] = true
		if s.Stream["tenant_id"] != tenant {
			t.Errorf("Loki stream as %s has tenant_id %q: %v", tenant, s.Stream["tenant_id"], s.Stream)
		}
	}
	for _, p := range []string{"grpc", "http", "loki"} {
		if !got[svc(tenant, p)] {
			t.Errorf("Loki as %s: no %s stream in %v", tenant, p, got)
		}
	}
	code, body = f.get(t, "/loki/api/v1/label/service_name/values", nil, tenant)
	decodeOK(t, code, body, &struct{}{})
	others(body)

	// Prometheus: OTLP metrics over both transports, remote write, OTLP
	// on the query API and the span metrics derived from the traces.
	// OTLP's service.name is the job label, span metrics' service_name.
	code, body = f.get(t, "/api/v1/series", url.Values{"match[]": {`{__name__=~".+"}`}}, tenant)
	var series struct{ Data []map[string]string }
	decodeOK(t, code, body, &series)
	others(body)
	names := map[string]bool{}
	for _, s := range series.Data {
		name := s["service_name"]
		if name == "" {
			name = s["job"]
		}
		names[s["__name__"]+" "+name] = true
		if s["tenant_id"] != tenant {
			t.Errorf("series as %s has tenant_id %q: %v", tenant, s["tenant_id"], s)
		}
	}
	for _, want := range []string{
		"tenant_requests_total " + svc(tenant, "grpc"), "tenant_requests_total " + svc(tenant, "http"),
		"remote_written " + svc(tenant, "rw"), "otlp_written_total " + svc(tenant, "promotlp"),
		"traces_spanmetrics_calls_total " + svc(tenant, "grpc"), "traces_spanmetrics_calls_total " + svc(tenant, "http"),
	} {
		if !names[want] {
			t.Errorf("series as %s: no %s in %v", tenant, want, names)
		}
	}
	code, body = f.get(t, "/api/v1/status/tsdb", url.Values{"limit": {"1000"}}, tenant)
	decodeOK(t, code, body, &struct{}{})
	others(body)
	if !strings.Contains(body, svc(tenant, "rw")) {
		t.Errorf("TSDB status as %s lacks its own series: %.500s", tenant, body)
	}

	// Native status: the tenant's own view.
	code, body = f.get(t, "/api/sightline/v1/status", nil, tenant)
	var st map[string]any
	decodeOK(t, code, body, &st)
	if st["tenant"] != tenant || st["spans_in_blocks"] != nil {
		t.Errorf("native status as %s: %s", tenant, body)
	}

	// The UI: a browser signs in with the tenant and reads through the
	// session cookie alone.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err := browser.PostForm(f.query+"/ui/login", url.Values{"tenant": {tenant}, "next": {"/ui/traces"}})
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(page, []byte("/ui/app.js")) {
		t.Fatalf("UI login as %s: %d %.300s", tenant, resp.StatusCode, page)
	}
	resp, err = browser.Get(f.query + "/api/search?" + with("q", "{ }", "limit", "100").Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	others(string(page))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), svc(tenant, "grpc")) {
		t.Errorf("UI session search as %s: %d %.300s", tenant, resp.StatusCode, page)
	}

	// Without a tenant every read is refused.
	for _, path := range []string{"/api/search", "/jaeger/api/services", "/loki/api/v1/labels", "/api/v1/query?query=up", "/api/v1/status/tsdb", "/api/sightline/v1/status"} {
		if code, _ := f.get(t, path, nil, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without a tenant: %d, want 401", path, code)
		}
	}
}

func (f *tenancyFixture) get(t *testing.T, path string, q url.Values, tenant string) (int, string) {
	t.Helper()
	u := f.query + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (f *tenancyFixture) post(t *testing.T, u string, body []byte, contentType, tenant string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func decodeOK(t *testing.T, code int, body string, v any) {
	t.Helper()
	if code != http.StatusOK {
		t.Fatalf("status %d: %.500s", code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("%v: %.500s", err, body)
	}
}
