package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TestRolesOnASharedBucket runs the ingester, querier and compactor
// builtins (test ports and a quick cadence aside) as four processes on one
// file:// bucket: spans from the OTel Go SDK sent to the ingester are found
// by ID through the querier exactly once, before and after the compactor
// merges their blocks; of two compactors only one holds the lease, and the
// other takes over when it stops.
func TestRolesOnASharedBucket(t *testing.T) {
	bucket := t.TempDir()
	env := []string{"SIGHTLINE_BUCKET_URL=file://" + bucket}
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
			if !strings.HasPrefix(e.Name(), ".") && !strings.HasSuffix(e.Name(), ".attrs") && e.Name() > newest {
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
	ing := role("ingester", "ingester-0")
	qp := freePort(t)
	role("querier", "querier-0", "QUERY_PORT="+strconv.Itoa(qp))

	// 20 traces of 3 spans each.
	ctx := context.Background()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(mustExporter(t, ing.GRPC)),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "checkout"))))
	var ids []string
	for i := range 20 {
		ctx, root := tp.Tracer("e2e").Start(ctx, "POST /checkout", trace.WithAttributes(attribute.Int("order", i)))
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

	api := &apiClient{t: t, http: &http.Client{Timeout: 10 * time.Second}, base: fmt.Sprintf("http://127.0.0.1:%d", qp)}
	spans := func(id string) int {
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
	allOnce := func() bool {
		for _, id := range ids {
			if n := spans(id); n != 3 {
				return false
			}
		}
		return true
	}
	waitFor(t, "every trace through the querier, each span once", 60*time.Second, allOnce)

	// The ingester cuts a block a second; the compactor merges them.
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
	if !merged() {
		// A second batch makes a second level-0 block to merge with.
		tp2 := sdktrace.NewTracerProvider(sdktrace.WithSyncer(mustExporter(t, ing.GRPC)))
		_, s := tp2.Tracer("e2e").Start(ctx, "GET /health")
		s.End()
		tp2.Shutdown(ctx)
	}
	waitFor(t, "the compactor to merge blocks", 60*time.Second, merged)
	if strings.Contains(c2.out.String(), "compacted blocks") {
		t.Fatal("the standby compactor merged blocks")
	}
	// After the merge, and whenever the querier polls, each span once.
	for _, id := range ids {
		if n := spans(id); n != 3 {
			t.Fatalf("trace %s has %d spans through the querier after compaction, want 3", id, n)
		}
	}

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
