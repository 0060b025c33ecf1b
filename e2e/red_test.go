package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// shop is two services instrumented with the OTel Go SDK: frontend
// serves GET /checkout and calls checkout's POST /pay.
type shop struct {
	providers []*sdktrace.TracerProvider
	frontend  trace.Tracer
	checkout  trace.Tracer
}

func newShop(t *testing.T, endpoint string) *shop {
	s := &shop{}
	tracer := func(service string) trace.Tracer {
		exp, err := otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure())
		require.NoError(t, err)
		tp := sdktrace.NewTracerProvider(
			sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(100*time.Millisecond)),
			sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))))
		s.providers = append(s.providers, tp)
		return tp.Tracer("red-test")
	}
	s.frontend, s.checkout = tracer("frontend"), tracer("checkout")
	t.Cleanup(func() {
		for _, tp := range s.providers {
			_ = tp.Shutdown(context.Background())
		}
	})
	return s
}

// request records one checkout: the frontend's server and client spans
// and checkout's server span, a child of the client span as context
// propagation would make it. A failed payment fails checkout's span.
func (s *shop) request(fail bool) (trace.TraceID, trace.SpanID) {
	t0 := time.Now()
	ctx, root := s.frontend.Start(context.Background(), "GET /checkout", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(t0))
	_, client := s.frontend.Start(ctx, "POST /pay", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(t0.Add(time.Millisecond)))
	remote := trace.ContextWithRemoteSpanContext(context.Background(), client.SpanContext())
	_, server := s.checkout.Start(remote, "POST /pay", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(t0.Add(2*time.Millisecond)))
	if fail {
		server.SetStatus(codes.Error, "card declined")
	}
	server.End(trace.WithTimestamp(t0.Add(40 * time.Millisecond)))
	client.End(trace.WithTimestamp(t0.Add(42 * time.Millisecond)))
	root.End(trace.WithTimestamp(t0.Add(45 * time.Millisecond)))
	return server.SpanContext().TraceID(), server.SpanContext().SpanID()
}

func (s *shop) flush(t *testing.T) {
	for _, tp := range s.providers {
		require.NoError(t, tp.ForceFlush(context.Background()))
	}
}

// capture records the JSON bodies POSTed to a test Alertmanager or webhook.
type capture struct {
	mu     sync.Mutex
	bodies []json.RawMessage
}

func (c *capture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.bodies = append(c.bodies, b)
	c.mu.Unlock()
}

// alerts returns the alerts of every body, in order; a webhook body's
// alerts are under "alerts".
func (c *capture) alerts() []struct {
	Status string            `json:"status"`
	Labels map[string]string `json:"labels"`
	EndsAt time.Time         `json:"endsAt"`
} {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []struct {
		Status string            `json:"status"`
		Labels map[string]string `json:"labels"`
		EndsAt time.Time         `json:"endsAt"`
	}
	for _, b := range c.bodies {
		var hook struct {
			Alerts []struct {
				Status string            `json:"status"`
				Labels map[string]string `json:"labels"`
				EndsAt time.Time         `json:"endsAt"`
			} `json:"alerts"`
		}
		if json.Unmarshal(b, &hook) == nil && hook.Alerts != nil {
			out = append(out, hook.Alerts...)
			continue
		}
		_ = json.Unmarshal(b, &hook.Alerts)
		out = append(out, hook.Alerts...)
	}
	return out
}

// promValue returns the single value of an instant PromQL query now, or
// -1 when it returns no series.
func promValue(t *testing.T, base, q string) float64 {
	t.Helper()
	res := queryProm(t, base, "/api/v1/query", url.Values{"query": {q}, "time": {promTime(time.Now())}}, false)
	if len(res.Series) == 0 {
		return -1
	}
	require.Len(t, res.Series, 1, q)
	v, err := strconv.ParseFloat(res.Points[0][0][1], 64)
	require.NoError(t, err)
	return v
}

// TestREDMetricsFromTraces sends traces from the OTel Go SDK through the
// all-in-one's span metrics and service graph wiring and checks the RED
// counts and graph edges in PromQL, exemplars that open stored traces,
// and the seeds' HighErrorRate alert firing on error traffic and
// resolving when it stops, at the Alertmanager and the webhook.
func TestREDMetricsFromTraces(t *testing.T) {
	var am, hook capture
	amSrv, hookSrv := httptest.NewServer(&am), httptest.NewServer(&hook)
	defer amSrv.Close()
	defer hookSrv.Close()
	port := freePort(t)
	in := start(t, []string{"testdata/red.yaml"}, "QUERY_PORT="+strconv.Itoa(port), "AM_URL="+amSrv.URL, "WEBHOOK_URL="+hookSrv.URL)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	s := newShop(t, fmt.Sprintf("127.0.0.1:%d", in.GRPC))

	const requests, failures = 40, 10
	sent := map[trace.TraceID]trace.SpanID{}
	for i := range requests {
		id, span := s.request(i%4 == 0)
		sent[id] = span
	}
	s.flush(t)

	expect := map[string]float64{
		`sum(traces_spanmetrics_calls_total{service_name="checkout",span_name="POST /pay",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_ERROR"})`: failures,
		`sum(traces_spanmetrics_calls_total{service_name="checkout",span_name="POST /pay",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET"})`: requests - failures,
		`sum(traces_spanmetrics_calls_total{service_name="frontend",span_name="GET /checkout",span_kind="SPAN_KIND_SERVER"})`:                             requests,
		`sum(traces_spanmetrics_calls_total{service_name="frontend",span_name="POST /pay",span_kind="SPAN_KIND_CLIENT"})`:                                 requests,
		`sum(traces_spanmetrics_duration_milliseconds_count{service_name="checkout"})`:                                                                    requests,
		// Every checkout span took 38 ms: all in the 50 ms bucket, none in 25 ms.
		`sum(traces_spanmetrics_duration_milliseconds_bucket{service_name="checkout",le="50"})`:       requests,
		`sum(traces_spanmetrics_duration_milliseconds_bucket{service_name="checkout",le="25"})`:       0,
		`sum(traces_service_graph_request_total{client="frontend",server="checkout"})`:                requests,
		`sum(traces_service_graph_request_failed_total{client="frontend",server="checkout"})`:         failures,
		`sum(traces_service_graph_request_server_seconds_count{client="frontend",server="checkout"})`: requests,
		`count(count by (client, server) (traces_service_graph_request_total))`:                       1,
	}
	for q, want := range expect {
		var got float64
		in.waitFor(q, 30*time.Second, func() bool { got = promValue(t, base, q); return got >= want })
		require.Equal(t, want, got, q)
	}

	t.Run("exemplars open stored traces", func(t *testing.T) {
		res := struct {
			Data []struct {
				SeriesLabels map[string]string `json:"seriesLabels"`
				Exemplars    []struct {
					Labels map[string]string `json:"labels"`
				} `json:"exemplars"`
			} `json:"data"`
		}{}
		p := url.Values{"query": {`traces_spanmetrics_duration_milliseconds_bucket{service_name="checkout"}`},
			"start": {promTime(time.Now().Add(-5 * time.Minute))}, "end": {promTime(time.Now().Add(time.Minute))}}
		resp, err := http.PostForm(base+"/api/v1/query_exemplars", p)
		require.NoError(t, err)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&res))
		resp.Body.Close()
		n := 0
		for _, series := range res.Data {
			require.Equal(t, "checkout", series.SeriesLabels["service_name"])
			for _, ex := range series.Exemplars {
				tid, err := trace.TraceIDFromHex(ex.Labels["trace_id"])
				require.NoError(t, err)
				require.Contains(t, sent, tid, "an exemplar names a trace that was sent")
				require.Equal(t, sent[tid].String(), ex.Labels["span_id"])
				// Tempo's trace by ID, JSON: the exemplar's span is in it.
				body := httpGet(t, base+"/api/v2/traces/"+tid.String()+"?format=json")
				require.Contains(t, body, "POST /pay", "exemplar trace %s", tid)
				n++
			}
		}
		require.Positive(t, n, "the duration histogram carries exemplars")
	})

	t.Run("HighErrorRate fires and resolves", func(t *testing.T) {
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { // error traffic: every other payment fails
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				s.request(i%2 == 0)
			}
		}()
		firing := func() bool {
			var res struct {
				Data struct {
					Alerts []struct {
						Labels map[string]string `json:"labels"`
						State  string            `json:"state"`
					} `json:"alerts"`
				} `json:"data"`
			}
			body := httpGet(t, base+"/api/v1/alerts")
			require.NoError(t, json.Unmarshal([]byte(body), &res))
			for _, a := range res.Data.Alerts {
				if a.Labels["alertname"] == "HighErrorRate" && a.Labels["service_name"] == "checkout" && a.State == "firing" {
					return true
				}
			}
			return false
		}
		in.waitFor("HighErrorRate to fire", 60*time.Second, firing)
		sentTo := func(c *capture, resolved bool) func() bool {
			return func() bool {
				for _, a := range c.alerts() {
					if a.Labels["alertname"] != "HighErrorRate" || a.Labels["service_name"] != "checkout" {
						continue
					}
					isResolved := a.Status == "resolved" || (!a.EndsAt.IsZero() && !a.EndsAt.After(time.Now()))
					if isResolved == resolved {
						return true
					}
				}
				return false
			}
		}
		in.waitFor("the Alertmanager to receive the firing alert", 30*time.Second, sentTo(&am, false))
		in.waitFor("the webhook to receive the firing alert", 30*time.Second, sentTo(&hook, false))
		rules := httpGet(t, base+"/api/v1/rules")
		require.Contains(t, rules, `"name":"HighErrorRate"`)
		require.Contains(t, rules, `"state":"firing"`)

		close(stop)
		<-done
		// Healthy traffic only from here: the error ratio falls to zero.
		healthy := make(chan struct{})
		defer close(healthy)
		go func() {
			for {
				select {
				case <-healthy:
					return
				case <-time.After(50 * time.Millisecond):
				}
				s.request(false)
			}
		}()
		in.waitFor("HighErrorRate to resolve", 60*time.Second, func() bool { return !firing() })
		in.waitFor("the Alertmanager to learn it resolved", 30*time.Second, sentTo(&am, true))
		in.waitFor("the webhook to learn it resolved", 30*time.Second, sentTo(&hook, true))
	})
}
