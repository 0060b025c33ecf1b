package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"
)

// TestRolesOnASharedBucket runs the ingester, querier and compactor
// builtins (test ports and a quick cadence aside) as six processes on one
// file:// bucket. Spans from the OTel Go SDK sent to the ingester are found
// by ID through both queriers exactly once: from the ingester's head
// before they reach a block, from blocks once the compactor has merged
// them, after the ingester is killed with SIGKILL and restarted on its
// WAL, and after a querier is killed and replaced. Of two compactors only one holds the lease; the other takes
// over when it stops.
func TestRolesOnASharedBucket(t *testing.T) {
	bucket := t.TempDir()
	handoff := freePort(t)
	env := []string{"SIGHTLINE_BUCKET_URL=file://" + bucket, "HANDOFF_PORT=" + strconv.Itoa(handoff),
		fmt.Sprintf("SIGHTLINE_INGESTERS=[http://127.0.0.1:%d]", handoff)}
	role := func(name, id string, extra ...string) *instance {
		configs := []string{"builtin:" + name, "testdata/overlay-role.yaml"}
		if name != "compactor" {
			configs = append(configs, "testdata/overlay-"+name+".yaml")
		}
		return start(t, configs, append(append(slices.Clone(env), "SIGHTLINE_INSTANCE_ID="+id), extra...)...)
	}
	holder := func() string {
		dir := filepath.Join(bucket, "leases", "compactor")
		entries, err := os.ReadDir(dir)
		if err != nil {
			return ""
		}
		var newest string
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") && e.Name() > newest {
				newest = e.Name()
			}
		}
		var rec struct {
			Holder  string `json:"holder"`
			Renewed int64  `json:"renewed_unix_nano"`
		}
		b, err := os.ReadFile(filepath.Join(dir, newest))
		if err != nil || json.Unmarshal(b, &rec) != nil || rec.Renewed == 0 {
			return ""
		}
		return rec.Holder
	}

	c1 := role("compactor", "compactor-1")
	c1.waitFor("compactor-1 to take the lease", 30*time.Second, func() bool { return holder() == "compactor-1" })
	c2 := role("compactor", "compactor-2")
	c2.waitFor("compactor-2 to stand by", 30*time.Second, func() bool {
		return strings.Contains(c2.out.String(), "standing by")
	})
	// The ingester keeps its WAL in one place across its restart.
	ingData := filepath.Join(t.TempDir(), "ingester")
	ing := role("ingester", "ingester-0", "SIGHTLINE_DATA="+ingData)
	var (
		apis     []*apiClient
		queriers []*instance
	)
	var queryPorts []int
	for _, id := range []string{"querier-0", "querier-1"} {
		qp := freePort(t)
		queryPorts = append(queryPorts, qp)
		queriers = append(queriers, role("querier", id, "QUERY_PORT="+strconv.Itoa(qp)))
		apis = append(apis, &apiClient{t: t, http: &http.Client{Timeout: 10 * time.Second}, base: fmt.Sprintf("http://127.0.0.1:%d", qp)})
	}

	// Traces of 3 spans each.
	ctx := context.Background()
	var ids []string
	send := func(port, n int) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(mustExporter(t, port)),
			sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "checkout"))))
		for i := range n {
			ctx, root := tp.Tracer("e2e").Start(ctx, "POST /checkout", trace.WithAttributes(attribute.Int("order", len(ids)+i)))
			for _, name := range []string{"reserve", "charge"} {
				_, child := tp.Tracer("e2e").Start(ctx, name)
				child.End()
			}
			root.End()
			ids = append(ids, root.SpanContext().TraceID().String())
		}
		if err := tp.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// allOnce reports whether every trace sent has its 3 spans through
	// both queriers; more than 3 fails the test at once.
	allOnce := func() bool {
		for _, api := range apis {
			for _, id := range ids {
				switch n := traceSpans(api, id); {
				case n > 3:
					t.Fatalf("trace %s has %d spans through %s, want 3: a span was read twice", id, n, api.base)
				case n < 3:
					return false
				}
			}
		}
		return true
	}

	send(ing.GRPC, 20)
	waitFor(t, "every trace through both queriers, each span once", 60*time.Second, allOnce)

	// The compactor merges the ingester's level-0 blocks.
	merged := func() bool {
		metas, _ := filepath.Glob(filepath.Join(bucket, "traces", "*", "meta.json"))
		for _, m := range metas {
			var meta struct {
				Level int `json:"compaction_level"`
			}
			b, err := os.ReadFile(m)
			if err == nil && json.Unmarshal(b, &meta) == nil && meta.Level > 0 {
				return true
			}
		}
		return false
	}
	for i := 0; !merged() && i < 30; i++ {
		// More level-0 blocks to merge: the ingester cuts one a second.
		send(ing.GRPC, 1)
		waitFor(t, "the traces sent so far", 30*time.Second, allOnce)
	}
	waitFor(t, "the compactor to merge blocks", 60*time.Second, merged)
	if !allOnce() {
		t.Fatal("traces went missing through a querier after the merge")
	}
	if strings.Contains(c2.out.String(), "compacted blocks") {
		t.Fatal("the standby compactor merged blocks")
	}
	// Until now the ingester was always up: no answer may have missed it.
	for _, q := range queriers {
		if strings.Contains(q.out.String(), "trace read partially") {
			t.Fatalf("a querier could not read the ingester:\n%s", q.out.String())
		}
	}

	// SIGKILL the ingester right after it acknowledged more, then restart
	// it on the same WAL: nothing acknowledged is lost or doubled.
	send(ing.GRPC, 10)
	if err := ing.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-ing.done
	ing = role("ingester", "ingester-0", "SIGHTLINE_DATA="+ingData)
	waitFor(t, "every trace through both queriers after the ingester's restart", 60*time.Second, allOnce)
	send(ing.GRPC, 5)
	waitFor(t, "traces sent to the restarted ingester", 60*time.Second, allOnce)

	// SIGKILL a querier: a new one on its port lists the bucket and
	// answers as it did.
	if err := queriers[1].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-queriers[1].done
	queriers[1] = role("querier", "querier-1", "QUERY_PORT="+strconv.Itoa(queryPorts[1]))
	waitFor(t, "every trace through the restarted querier", 60*time.Second, allOnce)

	c1.stop()
	c2.waitFor("compactor-2 to take over", 30*time.Second, func() bool { return holder() == "compactor-2" })
}

func mustExporter(t *testing.T, port int) sdktrace.SpanExporter {
	t.Helper()
	te, err := otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpoint(fmt.Sprintf("127.0.0.1:%d", port)), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	return te
}

// TestQuerierReadsMetricsAndLogs runs an ingester that remote-writes
// metrics to Debian's Prometheus, as docs/scaling.md sets it up, and a
// querier that reads them back by remote read: the OTel Go SDK's counter
// sent to the ingester is answered by the querier's PromQL API (service.name
// is the job label, as remote write makes it), and its
// log records by the querier's Loki API, each once.
func TestQuerierReadsMetricsAndLogs(t *testing.T) {
	prom := promServer(t)
	bucket := t.TempDir()
	handoff := freePort(t)
	env := []string{"SIGHTLINE_BUCKET_URL=file://" + bucket, "HANDOFF_PORT=" + strconv.Itoa(handoff), "PROM_URL=" + prom,
		fmt.Sprintf("SIGHTLINE_INGESTERS=[http://127.0.0.1:%d]", handoff), "SIGHTLINE_METRICS_READ_URL=" + prom + "/api/v1/read"}
	ing := start(t, []string{"builtin:ingester", "testdata/overlay-role.yaml", "testdata/overlay-ingester.yaml", "testdata/overlay-ingester-metrics.yaml"},
		append(slices.Clone(env), "SIGHTLINE_INSTANCE_ID=ingester-0")...)
	qp := freePort(t)
	start(t, []string{"builtin:querier", "testdata/overlay-role.yaml", "testdata/overlay-querier.yaml"},
		append(slices.Clone(env), "SIGHTLINE_INSTANCE_ID=querier-0", "QUERY_PORT="+strconv.Itoa(qp))...)
	api := &apiClient{t: t, http: &http.Client{Timeout: 10 * time.Second}, base: fmt.Sprintf("http://127.0.0.1:%d", qp)}

	sendSDKGRPC(t, ing, 5)
	waitFor(t, "the counter through the querier's PromQL API", 60*time.Second, func() bool {
		var res struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if api.get("/api/v1/query", url.Values{"query": {`delivery_requests_total{job="delivery-test"}`}}, &res) != http.StatusOK {
			return false
		}
		if len(res.Data.Result) != 5 {
			return false
		}
		for _, r := range res.Data.Result {
			if r.Value[1] != "7" {
				t.Fatalf("a counter series reads %v through the querier, want 7", r.Value[1])
			}
		}
		return true
	})
	waitFor(t, "the log records through the querier's Loki API, each once", 60*time.Second, func() bool {
		var res struct {
			Data struct {
				Result []struct {
					Values [][2]string `json:"values"`
				} `json:"result"`
			} `json:"data"`
		}
		q := url.Values{"query": {`{service_name="delivery-test"} |= "log line"`},
			"start": {strconv.FormatInt(time.Now().Add(-time.Hour).UnixNano(), 10)}}
		if api.get("/loki/api/v1/query_range", q, &res) != http.StatusOK {
			return false
		}
		n := 0
		for _, r := range res.Data.Result {
			n += len(r.Values)
		}
		if n > 5 {
			t.Fatalf("%d log lines through the querier, want 5: a record was read twice", n)
		}
		return n == 5
	})
}

// TestGatewaysShardToIngesters runs two gateway builtins (TLS, bearer
// token, tail sampling) that route what they keep by trace ID to three
// ingesters with the load_balancing exporter, and a querier that reads the
// bucket and all three ingesters: every trace sent through either gateway
// is found complete, each span once, through the querier.
func TestGatewaysShardToIngesters(t *testing.T) {
	bucket := t.TempDir()
	cert, key := writeSelfSignedCert(t, t.TempDir())
	var (
		handoffs []string
		otlp     []string
		env      = []string{"SIGHTLINE_BUCKET_URL=file://" + bucket}
	)
	for i := range 3 {
		h := freePort(t)
		ing := start(t, []string{"builtin:ingester", "testdata/overlay-role.yaml", "testdata/overlay-ingester.yaml"},
			append(slices.Clone(env), "HANDOFF_PORT="+strconv.Itoa(h), fmt.Sprintf("SIGHTLINE_INSTANCE_ID=ingester-%d", i))...)
		handoffs = append(handoffs, fmt.Sprintf("http://127.0.0.1:%d", h))
		otlp = append(otlp, fmt.Sprintf("127.0.0.1:%d", ing.GRPC))
	}
	qp := freePort(t)
	start(t, []string{"builtin:querier", "testdata/overlay-role.yaml", "testdata/overlay-querier.yaml"},
		append(slices.Clone(env), "SIGHTLINE_INSTANCE_ID=querier-0", "QUERY_PORT="+strconv.Itoa(qp),
			"SIGHTLINE_INGESTERS=["+strings.Join(handoffs, ",")+"]")...)
	var gateways []*instance
	for range 2 {
		gateways = append(gateways, start(t, []string{"builtin:gateway", "testdata/overlay-gateway.yaml", "testdata/overlay-gateway-ingesters.yaml"},
			"SIGHTLINE_TOKEN=shard-token", "SIGHTLINE_TLS_CERT_FILE="+cert, "SIGHTLINE_TLS_KEY_FILE="+key,
			"QUERY_PORT="+strconv.Itoa(freePort(t)), "INGESTER_OTLP=["+strings.Join(otlp, ",")+"]"))
	}

	// 20 error traces of 3 spans through each gateway: tail sampling keeps
	// every error trace.
	ctx := context.Background()
	creds, err := credentials.NewClientTLSFromFile(cert, "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, gw := range gateways {
		te, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(fmt.Sprintf("127.0.0.1:%d", gw.GRPC)),
			otlptracegrpc.WithTLSCredentials(creds), otlptracegrpc.WithHeaders(map[string]string{"Authorization": "Bearer shard-token"}))
		if err != nil {
			t.Fatal(err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(te),
			sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "checkout"))))
		for range 20 {
			ctx, root := tp.Tracer("e2e").Start(ctx, "POST /checkout")
			for _, name := range []string{"reserve", "charge"} {
				_, child := tp.Tracer("e2e").Start(ctx, name)
				child.End()
			}
			root.SetStatus(codes.Error, "declined")
			root.End()
			ids = append(ids, root.SpanContext().TraceID().String())
		}
		if err := tp.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}

	api := &apiClient{t: t, http: &http.Client{Timeout: 10 * time.Second}, base: fmt.Sprintf("http://127.0.0.1:%d", qp)}
	waitFor(t, "every trace through the querier, each span once", 90*time.Second, func() bool {
		for _, id := range ids {
			n := traceSpans(api, id)
			if n > 3 {
				t.Fatalf("trace %s has %d spans through the querier, want 3", id, n)
			}
			if n < 3 {
				return false
			}
		}
		return true
	})
	// The traces were spread over the ingesters: each wrote blocks of its
	// own (a trace of 3 spans stays whole on one).
	writers := map[string]bool{}
	metas, _ := filepath.Glob(filepath.Join(bucket, "traces", "*", "meta.json"))
	for _, m := range metas {
		var meta struct {
			Writer      string         `json:"writer"`
			WALSegments map[string]int `json:"wal_segments"`
		}
		if b, err := os.ReadFile(m); err == nil && json.Unmarshal(b, &meta) == nil {
			writers[meta.Writer] = true
			for w := range meta.WALSegments {
				writers[w] = true
			}
		}
	}
	delete(writers, "")
	if len(writers) != 3 {
		t.Errorf("blocks written by %v, want all three ingesters", writers)
	}
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
