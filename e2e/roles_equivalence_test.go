package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sightlinehq/sightline/internal/workload"
)

// TestRolesAnswerAsTheAllInOne feeds the same traces, logs and metrics to
// an all-in-one and to an ingester (metrics remote-written to Debian's
// Prometheus) read through a querier, and asks both the same TraceQL,
// LogQL and PromQL: the answers must be the same.
func TestRolesAnswerAsTheAllInOne(t *testing.T) {
	prom := promServer(t)
	aioPort := freePort(t)
	aio := start(t, []string{"builtin:all-in-one", "testdata/overlay-all-in-one.yaml"},
		"QUERY_PORT="+strconv.Itoa(aioPort), "LOKI_PORT="+strconv.Itoa(freePort(t)))
	handoff := freePort(t)
	env := []string{"SIGHTLINE_BUCKET_URL=file://" + t.TempDir(), "HANDOFF_PORT=" + strconv.Itoa(handoff), "PROM_URL=" + prom,
		fmt.Sprintf("SIGHTLINE_INGESTERS=[http://127.0.0.1:%d]", handoff), "SIGHTLINE_METRICS_READ_URL=" + prom + "/api/v1/read"}
	ing := start(t, []string{"builtin:ingester", "testdata/overlay-role.yaml", "testdata/overlay-ingester.yaml", "testdata/overlay-ingester-metrics.yaml"},
		append(slices.Clone(env), "SIGHTLINE_INSTANCE_ID=ingester-0")...)
	qPort := freePort(t)
	start(t, []string{"builtin:querier", "testdata/overlay-role.yaml", "testdata/overlay-querier.yaml"},
		append(slices.Clone(env), "SIGHTLINE_INSTANCE_ID=querier-0", "QUERY_PORT="+strconv.Itoa(qPort))...)
	start(t, []string{"builtin:compactor", "testdata/overlay-role.yaml"}, append(slices.Clone(env), "SIGHTLINE_INSTANCE_ID=compactor-0")...)

	// The same requests to both, in the same order.
	from := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	gen := workload.New(21, from, workload.Options{TraceInterval: 100 * time.Millisecond})
	var (
		tds []ptrace.Traces
		lds []plog.Logs
	)
	for range 4 {
		td, ld := gen.Batch(40)
		tds, lds = append(tds, td), append(lds, ld)
	}
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "checkout")
	sum := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	sum.SetName("orders.placed")
	sum.SetEmptySum().SetIsMonotonic(true)
	sum.Sum().SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	for i, region := range []string{"eu", "us", "ap"} {
		dp := sum.Sum().DataPoints().AppendEmpty()
		dp.Attributes().PutStr("region", region)
		dp.SetStartTimestamp(pcommon.NewTimestampFromTime(time.Now().Add(-time.Minute)))
		dp.SetTimestamp(pcommon.NewTimestampFromTime(time.Now()))
		dp.SetIntValue(int64(10 * (i + 1)))
	}
	for _, in := range []*instance{aio, ing} {
		conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", in.GRPC), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for i := range tds {
			if _, err := ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(tds[i])); err != nil {
				t.Fatal(err)
			}
			if _, err := plogotlp.NewGRPCClient(conn).Export(ctx, plogotlp.NewExportRequestFromLogs(lds[i])); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := pmetricotlp.NewGRPCClient(conn).Export(ctx, pmetricotlp.NewExportRequestFromMetrics(md)); err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}

	api := func(port int) *apiClient {
		return &apiClient{t: t, http: &http.Client{Timeout: 10 * time.Second}, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	}
	w := window{from.Add(-time.Minute), time.Now().Add(time.Minute)}
	agree(t, api(aioPort), api(qPort), []question{
		w.traceIDs("TraceQL: error spans", `{ status = error }`),
		w.traceIDs("TraceQL: structural", `{ resource.service.name = "frontend" } >> { status = error }`),
		w.traceIDs("TraceQL: duration", `{ duration > 5ms && kind = server }`),
		w.traceQLCounts("TraceQL metrics: count by service", `{ } | count_over_time() by (resource.service.name)`),
		w.logQLVector("LogQL: count of lines by service", `sum by (service_name) (count_over_time({service_name=~".+"} [1h]))`, "service_name", 0),
		w.promQLVector("PromQL: sum by region", `sum by (region) (orders_placed_total)`, "region", 3),
	})
}

// window is the time range the equivalence questions ask about.
type window struct{ from, to time.Time }

func (w window) params(kv ...string) url.Values {
	v := url.Values{"start": {secs(w.from)}, "end": {secs(w.to)}}
	for i := 0; i < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

// question asks one API and reduces its answer to a string that two
// answers can be compared by; ok is false while the answer is not yet one
// to compare (an error status, or nothing found).
type question struct {
	name string
	ask  func(a *apiClient) (answer string, ok bool)
}

// traceIDs asks a TraceQL search for up to 1000 traces; the answer is the
// sorted trace IDs, a duplicate included.
func (w window) traceIDs(name, q string) question {
	return question{name, func(a *apiClient) (string, bool) {
		var res struct {
			Traces []struct {
				TraceID string `json:"traceID"`
			} `json:"traces"`
		}
		if code := a.get("/api/search", w.params("q", q, "limit", "1000"), &res); code != http.StatusOK {
			return fmt.Sprint("status ", code), false
		}
		var ids []string
		for _, tr := range res.Traces {
			ids = append(ids, tr.TraceID)
		}
		slices.Sort(ids)
		return fmt.Sprint(len(ids), ids), len(ids) > 0
	}}
}

// traceQLCounts asks a TraceQL metrics query over the window in one step;
// the answer is each series' total.
func (w window) traceQLCounts(name, q string) question {
	return question{name, func(a *apiClient) (string, bool) {
		var res struct {
			Series []struct {
				Labels  []json.RawMessage `json:"labels"`
				Samples []struct {
					Value float64 `json:"value"`
				} `json:"samples"`
			} `json:"series"`
		}
		if code := a.get("/api/metrics/query_range", w.params("q", q, "step", "1h"), &res); code != http.StatusOK {
			return fmt.Sprint("status ", code), false
		}
		var out []string
		for _, s := range res.Series {
			total := 0.0
			for _, v := range s.Samples {
				total += v.Value
			}
			out = append(out, fmt.Sprintf("%s=%v", s.Labels, total))
		}
		slices.Sort(out)
		return fmt.Sprint(out), len(out) > 0
	}}
}

// logQLVector and promQLVector ask an instant query at the window's end;
// the answer is each series' label and value. want, when not 0, is how
// many series an answer must have to be compared.
func (w window) logQLVector(name, q, label string, want int) question {
	return w.vector(name, "/loki/api/v1/query", q, label, want)
}

func (w window) promQLVector(name, q, label string, want int) question {
	return w.vector(name, "/api/v1/query", q, label, want)
}

func (w window) vector(name, path, q, label string, want int) question {
	return question{name, func(a *apiClient) (string, bool) {
		var res vectorAnswer
		if code := a.get(path, url.Values{"query": {q}, "time": {secs(time.Now())}}, &res); code != http.StatusOK {
			return fmt.Sprint("status ", code), false
		}
		var out []string
		for _, r := range res.Data.Result {
			out = append(out, fmt.Sprintf("%s=%v", r.Metric[label], r.Value[1]))
		}
		slices.Sort(out)
		return fmt.Sprint(out), len(out) > 0 && (want == 0 || len(out) == want)
	}}
}

// agree asks both APIs each question until their answers are the same.
// Each takes what it acknowledged in its own time (a querier reads the
// ingesters at once, Prometheus a remote write later), so a difference
// fails the test only if it lasts a minute; the answers are shown then.
func agree(t *testing.T, a, b *apiClient, questions []question) {
	t.Helper()
	for _, q := range questions {
		var answers [2]string
		deadline := time.Now().Add(60 * time.Second)
		for {
			ok := true
			for i, api := range []*apiClient{a, b} {
				ans, answered := q.ask(api)
				ok = ok && answered
				answers[i] = ans
			}
			if ok && answers[0] == answers[1] {
				t.Logf("%s, both: %.160s", q.name, answers[0])
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the answers differ:\n%s: %s\n%s: %s", q.name, a.base, answers[0], b.base, answers[1])
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// vectorAnswer is an instant query's answer in Prometheus's shape, which
// Loki's API shares.
type vectorAnswer struct {
	Data struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	} `json:"data"`
}
