package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"

	"github.com/sightlinehq/sightline/internal/objstore"
)

// TestCluster runs the layout docs/scaling.md describes on one machine,
// every part its own process: two gateways (TLS, bearer token, tail
// sampling) that route by trace ID to three ingesters with the upstream
// load_balancing exporter, two queriers, two compactors, Debian's
// Prometheus as the metrics TSDB the ingesters remote-write to, and the
// bucket they share. Two OTel Go SDK clients send traces, logs and metrics
// through the gateways and, the same data, to an all-in-one beside them.
//
// While they send, one ingester is killed with SIGKILL and restarted on
// its WAL, and one querier is killed and replaced. Every span and log
// record the SDK had acknowledged is found through both queriers exactly
// once, by trace ID and by search, before and after the compactor merges
// it; TraceQL, LogQL and PromQL give the all-in-one's answers; and the
// second compactor merges nothing until the first stops.
//
// The bucket is SeaweedFS's S3 server, built from its Go module and run as
// its own process (`weed server -s3`), and a directory shared through
// file://.
func TestCluster(t *testing.T) {
	t.Run("s3", func(t *testing.T) { runCluster(t, seaweedS3(t, "sightline")) })
	t.Run("file", func(t *testing.T) {
		dir := t.TempDir()
		st, err := objstore.OpenFilesystem(dir)
		if err != nil {
			t.Fatal(err)
		}
		runCluster(t, clusterBucket{url: "file://" + dir, store: st})
	})
}

// clusterBucket is the bucket the processes share: url is what they are
// given, store the test's own view of it, to see what the compactor did.
type clusterBucket struct {
	url   string
	store *objstore.Store
}

// blockMeta is what the test reads of a block's meta.json.
type blockMeta struct {
	ID          string         `json:"id"`
	Level       int            `json:"compaction_level"`
	Writer      string         `json:"writer"`
	WALSegments map[string]int `json:"wal_segments"`
}

// traceBlocks lists the trace blocks visible in the bucket.
func (b clusterBucket) traceBlocks(t *testing.T) []blockMeta {
	t.Helper()
	ctx := context.Background()
	keys, err := b.store.List(ctx, "traces/", "/meta.json")
	if err != nil {
		t.Fatalf("list %s: %v", b.url, err)
	}
	var metas []blockMeta
	for _, k := range keys {
		raw, err := b.store.Get(ctx, k)
		if err != nil {
			continue // deleted by the compactor since the listing
		}
		var m blockMeta
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		metas = append(metas, m)
	}
	return metas
}

// merged returns the IDs of the blocks a compactor wrote.
func (b clusterBucket) merged(t *testing.T) map[string]bool {
	ids := map[string]bool{}
	for _, m := range b.traceBlocks(t) {
		if m.Level > 0 {
			ids[m.ID] = true
		}
	}
	return ids
}

func runCluster(t *testing.T, bucket clusterBucket) {
	prom := promServer(t)
	cert, key := writeSelfSignedCert(t, t.TempDir())
	env := []string{"SIGHTLINE_BUCKET_URL=" + bucket.url, "PROM_URL=" + prom, "SIGHTLINE_METRICS_READ_URL=" + prom + "/api/v1/read"}
	role := func(name, id string, overlays []string, extra ...string) *instance {
		configs := append([]string{"builtin:" + name, "testdata/overlay-role.yaml"}, overlays...)
		return start(t, configs, append(append(slices.Clone(env), "SIGHTLINE_INSTANCE_ID="+id), extra...)...)
	}

	c1 := role("compactor", "compactor-1", nil)
	c1.waitFor("compactor-1 to take the lease", 30*time.Second, func() bool {
		return strings.Contains(c1.out.String(), "compactor lease taken")
	})
	c2 := role("compactor", "compactor-2", nil)
	c2.waitFor("compactor-2 to stand by", 30*time.Second, func() bool {
		return strings.Contains(c2.out.String(), "standing by")
	})

	var (
		ingesters []*instance
		handoffs  []string
		otlp      []string
	)
	for i := range 3 {
		h := freePort(t)
		ingesters = append(ingesters, role("ingester", fmt.Sprintf("ingester-%d", i),
			[]string{"testdata/overlay-ingester.yaml", "testdata/overlay-ingester-metrics.yaml"}, "HANDOFF_PORT="+strconv.Itoa(h)))
		handoffs = append(handoffs, fmt.Sprintf("http://127.0.0.1:%d", h))
		otlp = append(otlp, fmt.Sprintf("127.0.0.1:%d", ingesters[i].GRPC))
	}
	var (
		queriers []*instance
		apis     []*apiClient
	)
	for i := range 2 {
		qp := freePort(t)
		queriers = append(queriers, role("querier", fmt.Sprintf("querier-%d", i), []string{"testdata/overlay-querier.yaml"},
			"QUERY_PORT="+strconv.Itoa(qp), "SIGHTLINE_INGESTERS=["+strings.Join(handoffs, ",")+"]"))
		apis = append(apis, &apiClient{t: t, http: &http.Client{Timeout: 10 * time.Second}, base: fmt.Sprintf("http://127.0.0.1:%d", qp)})
	}
	var gateways []*instance
	for range 2 {
		gateways = append(gateways, start(t, []string{"builtin:gateway", "testdata/overlay-gateway.yaml", "testdata/overlay-gateway-ingesters.yaml"},
			"SIGHTLINE_TOKEN=cluster-token", "SIGHTLINE_TLS_CERT_FILE="+cert, "SIGHTLINE_TLS_KEY_FILE="+key,
			"QUERY_PORT="+strconv.Itoa(freePort(t)), "INGESTER_OTLP=["+strings.Join(otlp, ",")+"]"))
	}
	aioPort := freePort(t)
	aio := start(t, []string{"builtin:all-in-one", "testdata/overlay-all-in-one.yaml"},
		"QUERY_PORT="+strconv.Itoa(aioPort), "LOKI_PORT="+strconv.Itoa(freePort(t)))
	aioAPI := &apiClient{t: t, http: &http.Client{Timeout: 10 * time.Second}, base: fmt.Sprintf("http://127.0.0.1:%d", aioPort)}

	creds, err := credentials.NewClientTLSFromFile(cert, "")
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	var shops []*shopClient
	for i, gw := range gateways {
		shops = append(shops, newShopClient(t, fmt.Sprintf("shop-%c", 'a'+i), gw, creds, aio))
	}
	sent := &sentData{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last missing: %s", sent.missing)
		}
	})
	round := func(n int) {
		for _, s := range shops {
			s.send(t, n, sent)
		}
	}
	once := func() bool {
		for _, api := range apis {
			if !sent.foundOnce(t, api, began) {
				return false
			}
		}
		return true
	}

	// Before any merge: from the ingesters' heads and level-0 blocks.
	round(10)
	waitFor(t, "every span and log through both queriers, each once", 90*time.Second, once)

	// More level-0 blocks (each ingester cuts one a second) until the
	// compactor has merged some.
	for i := 0; len(bucket.merged(t)) == 0 && i < 30; i++ {
		round(1)
		waitFor(t, "what was sent so far", 60*time.Second, once)
	}
	waitFor(t, "the compactor to merge blocks", 60*time.Second, func() bool { return len(bucket.merged(t)) > 0 })
	if !once() {
		t.Fatal("spans or logs went missing through a querier after the merge")
	}
	// Until now every ingester was up: no answer may have missed one.
	for _, q := range queriers {
		if strings.Contains(q.out.String(), "read partially") {
			t.Fatalf("a querier could not read an ingester:\n%s", q.out.String())
		}
	}

	// SIGKILL an ingester once it has acknowledged a round, send another
	// while it is down (the gateways hold its share and retry), and
	// restart it on its WAL: nothing acknowledged is lost or doubled.
	round(5)
	waitFor(t, "the round before the kill", 60*time.Second, once)
	ingesters[1].kill()
	round(5)
	ingesters[1] = ingesters[1].restart()
	waitFor(t, "every span and log after the ingester's restart", 90*time.Second, once)

	// SIGKILL a querier: its replacement lists the bucket and answers as
	// it did.
	queriers[1].kill()
	queriers[1] = queriers[1].restart()
	before := bucket.merged(t)
	round(5)
	waitFor(t, "every span and log through the restarted querier", 60*time.Second, once)

	// After compaction: the compactor has merged since the last round, and
	// has caught up (fewer level-0 blocks are left than it merges at once).
	waitFor(t, "the compactor to merge the last rounds' blocks", 60*time.Second, func() bool {
		newMerge, level0 := false, 0
		for _, m := range bucket.traceBlocks(t) {
			newMerge = newMerge || (m.Level > 0 && !before[m.ID])
			if m.Level == 0 {
				level0++
			}
		}
		return newMerge && level0 < 2
	})
	if !once() {
		t.Fatal("spans or logs went missing through a querier after the last merge")
	}
	// Every ingester wrote blocks of its own: the gateways spread the
	// traces over all three.
	writers := map[string]bool{}
	for _, m := range bucket.traceBlocks(t) {
		writers[m.Writer] = true
		for w := range m.WALSegments {
			writers[w] = true
		}
	}
	delete(writers, "")
	if len(writers) != 3 {
		t.Errorf("blocks written by %v, want all three ingesters", writers)
	}

	// The all-in-one, fed the same data, answers as both queriers do.
	for _, s := range shops {
		s.flushMetrics(t)
	}
	w := window{began.Add(-time.Minute), time.Now().Add(time.Minute)}
	questions := []question{
		w.traceIDs("TraceQL: one shop", `{ resource.service.name = "shop-a" }`),
		w.traceIDs("TraceQL: structural", `{ resource.service.name = "shop-b" } >> { name = "charge" }`),
		w.traceIDs("TraceQL: attribute and status", `{ span.order > 20 && status = error }`),
		w.traceQLCounts("TraceQL metrics: count by service", `{ } | count_over_time() by (resource.service.name)`),
		w.logQLVector("LogQL: lines by service", `sum by (service_name) (count_over_time({service_name=~"shop-.+"} [1h]))`, "service_name", 2),
		w.promQLVector("PromQL: orders by region", `sum by (region) (shop_orders_total)`, "region", 3),
	}
	for _, q := range apis {
		agree(t, aioAPI, q, questions)
	}

	if strings.Contains(c2.out.String(), "compacted blocks") {
		t.Fatal("the standby compactor merged blocks while the first held the lease")
	}
	c1.stop()
	c2.waitFor("compactor-2 to take over", 30*time.Second, func() bool {
		return strings.Contains(c2.out.String(), "compactor lease taken")
	})
}

// shopClient is one service instrumented with the OTel Go SDK. Every
// signal goes to a gateway and, the same data, to the all-in-one: each
// provider has one processor or reader per destination.
type shopClient struct {
	name   string
	tp     *sdktrace.TracerProvider
	lp     *sdklog.LoggerProvider
	mp     *sdkmetric.MeterProvider
	orders metric.Int64Counter
}

func newShopClient(t *testing.T, name string, gw *instance, creds credentials.TransportCredentials, aio *instance) *shopClient {
	t.Helper()
	ctx := context.Background()
	gwEP, aioEP := fmt.Sprintf("127.0.0.1:%d", gw.GRPC), fmt.Sprintf("127.0.0.1:%d", aio.GRPC)
	token := map[string]string{"Authorization": "Bearer cluster-token"}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	res := resource.NewSchemaless(attribute.String("service.name", name))

	var tps []sdktrace.TracerProviderOption
	for _, opts := range [][]otlptracegrpc.Option{
		{otlptracegrpc.WithEndpoint(gwEP), otlptracegrpc.WithTLSCredentials(creds), otlptracegrpc.WithHeaders(token)},
		{otlptracegrpc.WithEndpoint(aioEP), otlptracegrpc.WithInsecure()},
	} {
		e, err := otlptracegrpc.New(ctx, opts...)
		must(err)
		tps = append(tps, sdktrace.WithBatcher(e))
	}
	var lps []sdklog.LoggerProviderOption
	for _, opts := range [][]otlploggrpc.Option{
		{otlploggrpc.WithEndpoint(gwEP), otlploggrpc.WithTLSCredentials(creds), otlploggrpc.WithHeaders(token)},
		{otlploggrpc.WithEndpoint(aioEP), otlploggrpc.WithInsecure()},
	} {
		e, err := otlploggrpc.New(ctx, opts...)
		must(err)
		lps = append(lps, sdklog.WithProcessor(sdklog.NewBatchProcessor(e)))
	}
	var mps []sdkmetric.Option
	for _, opts := range [][]otlpmetricgrpc.Option{
		{otlpmetricgrpc.WithEndpoint(gwEP), otlpmetricgrpc.WithTLSCredentials(creds), otlpmetricgrpc.WithHeaders(token)},
		{otlpmetricgrpc.WithEndpoint(aioEP), otlpmetricgrpc.WithInsecure()},
	} {
		e, err := otlpmetricgrpc.New(ctx, opts...)
		must(err)
		// Exported only when the test flushes.
		mps = append(mps, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(e, sdkmetric.WithInterval(time.Hour))))
	}
	s := &shopClient{
		name: name,
		tp:   sdktrace.NewTracerProvider(append(tps, sdktrace.WithResource(res))...),
		lp:   sdklog.NewLoggerProvider(append(lps, sdklog.WithResource(res))...),
		mp:   sdkmetric.NewMeterProvider(append(mps, sdkmetric.WithResource(res))...),
	}
	var err error
	s.orders, err = s.mp.Meter("e2e").Int64Counter("shop.orders")
	must(err)
	t.Cleanup(func() {
		_ = s.tp.Shutdown(ctx)
		_ = s.lp.Shutdown(ctx)
		_ = s.mp.Shutdown(ctx)
	})
	return s
}

// sentData is what the SDK clients had acknowledged: trace IDs, each a
// trace of three spans with one log record.
type sentData struct {
	traces []string // by order number: the log record of traces[i] reads "order i declined"
	// missing is what foundOnce last missed, shown when a wait times out.
	missing string
}

// send makes n traces of three spans, an error at the root (so that tail
// sampling keeps them all and the all-in-one gets the same), and one log
// record in each, and returns once both destinations acknowledged them.
func (s *shopClient) send(t *testing.T, n int, sent *sentData) {
	t.Helper()
	ctx := context.Background()
	tracer, logger := s.tp.Tracer("e2e"), s.lp.Logger("e2e")
	regions := []string{"eu", "us", "ap"}
	var ids []string
	for range n {
		order := len(sent.traces) + len(ids)
		sctx, root := tracer.Start(ctx, "POST /checkout", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.Int("order", order)))
		for _, name := range []string{"reserve", "charge"} {
			_, child := tracer.Start(sctx, name)
			child.End()
		}
		var rec otellog.Record
		rec.SetBody(attribute.StringValue(fmt.Sprintf("order %d declined", order)))
		rec.SetSeverity(otellog.SeverityError)
		logger.Emit(sctx, rec)
		s.orders.Add(sctx, 1, metric.WithAttributes(attribute.String("region", regions[order%len(regions)])))
		root.SetStatus(codes.Error, "declined")
		root.End()
		ids = append(ids, root.SpanContext().TraceID().String())
	}
	if err := s.tp.ForceFlush(ctx); err != nil {
		t.Fatalf("%s: traces not acknowledged: %v", s.name, err)
	}
	if err := s.lp.ForceFlush(ctx); err != nil {
		t.Fatalf("%s: logs not acknowledged: %v", s.name, err)
	}
	sent.traces = append(sent.traces, ids...)
}

// flushMetrics exports the counters' cumulative values to both
// destinations.
func (s *shopClient) flushMetrics(t *testing.T) {
	t.Helper()
	if err := s.mp.ForceFlush(context.Background()); err != nil {
		t.Fatalf("%s: metrics not acknowledged: %v", s.name, err)
	}
}

// foundOnce reports whether every trace sent is found through api with
// its three spans and its log record, by trace ID and by search. A span or
// record found twice fails the test at once.
func (d *sentData) foundOnce(t *testing.T, api *apiClient, since time.Time) bool {
	t.Helper()
	w := window{since.Add(-time.Minute), time.Now().Add(time.Minute)}
	// By search: one TraceQL search and one LogQL query for everything.
	var found struct {
		Traces []struct {
			TraceID  string `json:"traceID"`
			SpanSets []struct {
				Matched int `json:"matched"`
			} `json:"spanSets"`
		} `json:"traces"`
	}
	miss := func(format string, args ...any) bool {
		d.missing = api.base + ": " + fmt.Sprintf(format, args...)
		return false
	}
	if code := api.get("/api/search", w.params("q", `{ resource.service.name =~ "shop-.*" }`, "limit", "1000", "spss", "10"), &found); code != http.StatusOK {
		return miss("search: status %d", code)
	}
	matched := map[string]int{}
	for _, tr := range found.Traces {
		// Tempo's search prints IDs without leading zeros.
		id := strings.Repeat("0", max(0, 32-len(tr.TraceID))) + tr.TraceID
		if _, dup := matched[id]; dup {
			t.Fatalf("trace %s found twice by search through %s", id, api.base)
		}
		for _, ss := range tr.SpanSets {
			matched[id] += ss.Matched
		}
	}
	var lines struct {
		Data struct {
			Result []struct {
				Values [][2]string `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	q := url.Values{"query": {`{service_name=~"shop-.+"}`}, "limit": {"1000"},
		"start": {strconv.FormatInt(w.from.UnixNano(), 10)}, "end": {strconv.FormatInt(w.to.UnixNano(), 10)}}
	if code := api.get("/loki/api/v1/query_range", q, &lines); code != http.StatusOK {
		return miss("log search: status %d", code)
	}
	logged := map[string]int{}
	for _, r := range lines.Data.Result {
		for _, v := range r.Values {
			logged[v[1]]++
		}
	}
	for order, id := range d.traces {
		line := fmt.Sprintf("order %d declined", order)
		switch {
		case matched[id] > 3:
			t.Fatalf("trace %s: %d spans found by search through %s, want 3", id, matched[id], api.base)
		case logged[line] > 1:
			t.Fatalf("%q found %d times by search through %s, want once", line, logged[line], api.base)
		case matched[id] < 3 || logged[line] < 1:
			return miss("by search, trace %s has %d spans and %d log records", id, matched[id], logged[line])
		}
	}
	// By ID: the trace, and the log records of the trace.
	for _, id := range d.traces {
		switch n := traceSpans(api, id); {
		case n > 3:
			t.Fatalf("trace %s has %d spans through %s, want 3", id, n, api.base)
		case n < 3:
			return miss("trace %s by ID has %d spans", id, n)
		}
		var byID struct {
			Data struct {
				Result []struct {
					Values [][2]string `json:"values"`
				} `json:"result"`
			} `json:"data"`
		}
		q.Set("query", fmt.Sprintf(`{service_name=~"shop-.+"} | trace_id=%q`, id))
		if code := api.get("/loki/api/v1/query_range", q, &byID); code != http.StatusOK {
			return miss("logs of trace %s: status %d", id, code)
		}
		n := 0
		for _, r := range byID.Data.Result {
			n += len(r.Values)
		}
		if n > 1 {
			t.Fatalf("trace %s has %d log records through %s, want 1", id, n, api.base)
		}
		if n < 1 {
			return miss("trace %s has no log record by its ID", id)
		}
	}
	return true
}

// traceSpans counts the spans of a trace by ID through a Tempo API; 0
// when it is not found.
func traceSpans(api *apiClient, id string) int {
	var tr struct {
		Batches []struct {
			ScopeSpans []struct {
				Spans []json.RawMessage `json:"spans"`
			} `json:"scopeSpans"`
		} `json:"batches"`
	}
	if api.get("/api/traces/"+id, nil, &tr) != http.StatusOK {
		return 0
	}
	n := 0
	for _, b := range tr.Batches {
		for _, ss := range b.ScopeSpans {
			n += len(ss.Spans)
		}
	}
	return n
}
