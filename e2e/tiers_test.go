package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// TestAgentToGateway runs the agent, gateway and all-in-one builtins as
// shipped (test ports aside) as three processes, the gateway forwarding to
// the all-in-one as its storage tier: a span from the OTel Go SDK, a line
// written to a container log file in the kubelet's layout, and the host's
// metrics go through the agent and the gateway (TLS and bearer token
// between them) and are queryable on the all-in-one's APIs. The log line
// carries the namespace, pod and container that its file's path names.
func TestAgentToGateway(t *testing.T) {
	sp := freePort(t)
	store := start(t, []string{"builtin:all-in-one", "testdata/overlay-all-in-one.yaml"},
		"QUERY_PORT="+strconv.Itoa(sp), "LOKI_PORT="+strconv.Itoa(freePort(t)))

	cert, key := writeSelfSignedCert(t, t.TempDir())
	gwEnv := []string{
		"SIGHTLINE_TOKEN=tiers-token",
		"SIGHTLINE_TLS_CERT_FILE=" + cert, "SIGHTLINE_TLS_KEY_FILE=" + key,
	}
	qp := freePort(t)
	gw := start(t, []string{"builtin:gateway", "testdata/overlay-gateway.yaml", "testdata/overlay-gateway-forward.yaml"},
		append(gwEnv, "QUERY_PORT="+strconv.Itoa(qp), "SIGHTLINE_STORAGE_ENDPOINT=127.0.0.1:"+strconv.Itoa(store.GRPC))...)

	logs := t.TempDir()
	podDir := filepath.Join(logs, "shop_checkout-7d4f9_0f1e2d3c-1111-2222-3333-444455556666", "checkout")
	if err := os.MkdirAll(podDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A line from before the agent started: it is not read, as a restarted
	// DaemonSet does not send a node's old logs again.
	old := time.Now().UTC().Format(time.RFC3339Nano) + " stdout F started before the agent\n"
	if err := os.WriteFile(filepath.Join(podDir, "0.log"), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	agent := start(t, []string{"builtin:agent", "testdata/overlay-agent.yaml", "testdata/overlay-agent-files.yaml"},
		"GATEWAY_CA_FILE="+cert,
		"SIGHTLINE_GATEWAY_ENDPOINT=127.0.0.1:"+strconv.Itoa(gw.GRPC),
		"SIGHTLINE_TOKEN=tiers-token",
		"SIGHTLINE_QUEUE_DIR="+t.TempDir(),
		"SIGHTLINE_LOG_FILES="+filepath.Join(logs, "*", "*", "*.log"),
	)

	// The agent reads from the end of files it finds at start (start_at:
	// end), so the line is appended once it watches the file: a containerd
	// (CRI) line.
	logFile := filepath.Join(podDir, "0.log")
	agent.waitFor("the agent watching the container log", 30*time.Second, func() bool {
		return strings.Contains(agent.out.String(), "Started watching file")
	})
	f, err := os.OpenFile(logFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	stamp := time.Now().UTC().Format(time.RFC3339Nano)
	if _, err := f.WriteString(stamp + " stdout F payment declined for order 42\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	te, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(fmt.Sprintf("127.0.0.1:%d", agent.GRPC)), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(te),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "checkout"))))
	_, span := tp.Tracer("e2e").Start(ctx, "POST /pay")
	// The gateway's tail sampling keeps every error trace.
	span.SetStatus(codes.Error, "declined")
	span.End()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	traceID := span.SpanContext().TraceID().String()

	api := &apiClient{t: t, http: &http.Client{Timeout: 10 * time.Second}, base: fmt.Sprintf("http://127.0.0.1:%d", sp)}
	store.waitFor("the span in the storage tier", 60*time.Second, func() bool {
		var tr struct {
			Batches []json.RawMessage `json:"batches"`
		}
		return api.get("/api/traces/"+traceID, nil, &tr) == http.StatusOK && len(tr.Batches) == 1
	})
	store.waitFor("the log line in the storage tier, with its pod's labels", 60*time.Second, func() bool {
		var res struct {
			Data struct {
				Result []struct {
					Stream map[string]string `json:"stream"`
					Values [][2]string       `json:"values"`
				} `json:"result"`
			} `json:"data"`
		}
		q := url.Values{"query": {`{k8s_namespace_name="shop", k8s_pod_name="checkout-7d4f9", k8s_container_name="checkout"} |= "payment declined"`},
			"start": {strconv.FormatInt(time.Now().Add(-time.Hour).UnixNano(), 10)}}
		if api.get("/loki/api/v1/query_range", q, &res) != http.StatusOK || len(res.Data.Result) != 1 {
			return false
		}
		r := res.Data.Result[0]
		return len(r.Values) == 1 && r.Values[0][1] == "payment declined for order 42"
	})
	store.waitFor("a host metrics point in the storage tier", 60*time.Second, func() bool {
		var res struct {
			Data struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		q := url.Values{"query": {`system_memory_usage_bytes{state="used"}`}}
		return api.get("/api/v1/query", q, &res) == http.StatusOK && len(res.Data.Result) > 0
	})
}

// apiClient asks a query API, with a bearer token when one is set.
type apiClient struct {
	t     *testing.T
	http  *http.Client
	base  string
	token string
}

// get decodes a 200 answer into v and returns the status (0 when the
// request failed).
func (c *apiClient) get(path string, q url.Values, v any) int {
	c.t.Helper()
	u := c.base + path
	if q != nil {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, v); err != nil {
			c.t.Fatalf("%s: %v\n%s", path, err, b)
		}
	}
	return resp.StatusCode
}
