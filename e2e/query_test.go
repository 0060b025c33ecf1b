package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/workload"
)

// queryFixture is a running sightline with generated traces and logs, and
// what was sent, for expectations computed without the query engines.
type queryFixture struct {
	otlp     string
	base     string
	lokiPush string
	spans    []storage.Span
	logs     []storage.LogRecord
	start    time.Time
	traces   map[storage.TraceID][]storage.Span
}

func newQueryFixture(t *testing.T) *queryFixture {
	port, loki := freePort(t), freePort(t)
	in := start(t, []string{"testdata/query.yaml"}, "QUERY_PORT="+strconv.Itoa(port), "LOKI_PORT="+strconv.Itoa(loki))
	f := &queryFixture{otlp: fmt.Sprintf("127.0.0.1:%d", in.GRPC), base: fmt.Sprintf("http://127.0.0.1:%d", port), lokiPush: fmt.Sprintf("http://127.0.0.1:%d/loki/api/v1/push", loki), start: time.Now().Add(-10 * time.Minute).Truncate(time.Second), traces: map[storage.TraceID][]storage.Span{}}
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", in.GRPC), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	gen := workload.New(7, f.start, workload.Options{TraceInterval: 100 * time.Millisecond})
	for range 6 {
		td, ld := gen.Batch(50)
		_, err := ptraceotlp.NewGRPCClient(conn).Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(td))
		require.NoError(t, err)
		_, err = plogotlp.NewGRPCClient(conn).Export(context.Background(), plogotlp.NewExportRequestFromLogs(ld))
		require.NoError(t, err)
		f.spans = storage.AppendTraces(f.spans, td)
		f.logs = storage.AppendLogs(f.logs, ld)
	}
	for _, s := range f.spans {
		f.traces[s.TraceID] = append(f.traces[s.TraceID], s)
	}
	return f
}

// get sends a GET with the headers Grafana sends and returns status and body.
func (f *queryFixture) get(t *testing.T, path string, params url.Values, accept string) (int, []byte) {
	t.Helper()
	u := f.base + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(t, err)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func (f *queryFixture) getJSON(t *testing.T, path string, params url.Values, into any) {
	t.Helper()
	code, b := f.get(t, path, params, "application/json")
	require.Equal(t, http.StatusOK, code, "%s: %s", path, b)
	require.NoError(t, json.Unmarshal(b, into), "%s: %s", path, b)
}

func secs(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

var (
	hexID    = regexp.MustCompile(`^[0-9a-f]+$`)
	digits   = regexp.MustCompile(`^[0-9]+$`)
	spanIDRe = regexp.MustCompile(`^[0-9a-f]{16}$`)
)

// tracesWith returns the IDs of traces with a span matching pred.
func (f *queryFixture) tracesWith(pred func(*storage.Span) bool) map[string]bool {
	out := map[string]bool{}
	for id, spans := range f.traces {
		for i := range spans {
			if pred(&spans[i]) {
				out[strings.TrimLeft(id.String(), "0")] = true
				break
			}
		}
	}
	return out
}

func TestQueryAPIContracts(t *testing.T) {
	f := newQueryFixture(t)
	from, to := f.start.Add(-time.Minute), time.Now().Add(time.Minute)
	var someID storage.TraceID
	for id := range f.traces {
		someID = id
		break
	}

	t.Run("tempo echo and buildinfo", func(t *testing.T) {
		code, b := f.get(t, "/api/echo", nil, "")
		require.Equal(t, 200, code)
		require.Equal(t, "echo", string(b))
		var bi map[string]string
		f.getJSON(t, "/api/status/buildinfo", nil, &bi)
		for _, k := range []string{"version", "revision", "branch", "buildDate", "buildUser", "goVersion"} {
			require.Contains(t, bi, k)
		}
	})

	t.Run("tempo trace by id, v2 protobuf as Grafana asks", func(t *testing.T) {
		p := url.Values{"start": {secs(from)}, "end": {secs(to)}}
		code, b := f.get(t, "/api/v2/traces/"+someID.String(), p, "application/protobuf")
		require.Equal(t, 200, code, "%s", b)
		// tempopb.TraceByIDResponse: field 1 is the Trace.
		num, typ, n := protowire.ConsumeTag(b)
		require.True(t, n > 0 && num == 1 && typ == protowire.BytesType)
		inner, m := protowire.ConsumeBytes(b[n:])
		require.Positive(t, m)
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(inner)
		require.NoError(t, err)
		require.Equal(t, len(f.traces[someID]), td.SpanCount())

		code, b = f.get(t, "/api/traces/"+someID.String(), nil, "application/protobuf")
		require.Equal(t, 200, code)
		td, err = (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
		require.NoError(t, err)
		require.Equal(t, len(f.traces[someID]), td.SpanCount())

		var v1 struct {
			Batches []json.RawMessage `json:"batches"`
		}
		f.getJSON(t, "/api/traces/"+someID.String(), nil, &v1)
		require.NotEmpty(t, v1.Batches)
		var v2 struct {
			Trace struct {
				ResourceSpans []json.RawMessage `json:"resourceSpans"`
			} `json:"trace"`
		}
		f.getJSON(t, "/api/v2/traces/"+someID.String(), nil, &v2)
		require.NotEmpty(t, v2.Trace.ResourceSpans)

		// Unknown: 404, on which Grafana falls back from v2 to v1.
		code, _ = f.get(t, "/api/v2/traces/0123456789abcdef0123456789abcdef", nil, "application/protobuf")
		require.Equal(t, 404, code)
		code, _ = f.get(t, "/api/traces/not-hex", nil, "")
		require.Equal(t, 400, code)
		code, b = f.get(t, "/api/traces/"+someID.String(), url.Values{"start": {"20"}, "end": {"10"}}, "")
		require.Equal(t, 400, code)
		require.Contains(t, string(b), "start must be before end")
	})

	t.Run("tempo search", func(t *testing.T) {
		want := f.tracesWith(func(s *storage.Span) bool {
			return s.Resource.ServiceName() == "checkout" && s.StatusCode == storage.StatusError
		})
		require.NotEmpty(t, want)
		var res struct {
			Traces []struct {
				TraceID           string `json:"traceID"`
				RootServiceName   string `json:"rootServiceName"`
				RootTraceName     string `json:"rootTraceName"`
				StartTimeUnixNano string `json:"startTimeUnixNano"`
				DurationMs        *int   `json:"durationMs"`
				SpanSets          []struct {
					Spans []struct {
						SpanID            string `json:"spanID"`
						StartTimeUnixNano string `json:"startTimeUnixNano"`
						DurationNanos     string `json:"durationNanos"`
						Attributes        []struct {
							Key   string         `json:"key"`
							Value map[string]any `json:"value"`
						} `json:"attributes"`
					} `json:"spans"`
					Matched int `json:"matched"`
				} `json:"spanSets"`
				SpanSet      json.RawMessage           `json:"spanSet"`
				ServiceStats map[string]map[string]int `json:"serviceStats"`
			} `json:"traces"`
			Metrics struct {
				InspectedBytes string `json:"inspectedBytes"`
			} `json:"metrics"`
		}
		p := url.Values{"q": {`{ resource.service.name = "checkout" && status = error }`}, "limit": {"1000"}, "spss": {"3"}, "start": {secs(from)}, "end": {secs(to)}}
		f.getJSON(t, "/api/search", p, &res)
		got := map[string]bool{}
		for _, tr := range res.Traces {
			got[tr.TraceID] = true
			require.Regexp(t, hexID, tr.TraceID)
			require.False(t, strings.HasPrefix(tr.TraceID, "0"), "Tempo prints trace IDs without leading zeros")
			root := rootOf(f.traces[storage.TraceID(mustID(t, tr.TraceID))])
			require.Equal(t, root.Resource.ServiceName(), tr.RootServiceName)
			require.Equal(t, root.Name, tr.RootTraceName)
			require.Regexp(t, digits, tr.StartTimeUnixNano)
			require.NotNil(t, tr.DurationMs)
			require.NotEmpty(t, tr.SpanSets)
			require.NotNil(t, tr.SpanSet, "the deprecated spanSet is still filled")
			require.Contains(t, tr.ServiceStats, "frontend")
			for _, ss := range tr.SpanSets {
				require.Positive(t, ss.Matched)
				require.LessOrEqual(t, len(ss.Spans), 3, "spss")
				for _, sp := range ss.Spans {
					require.Regexp(t, spanIDRe, sp.SpanID)
					require.Regexp(t, digits, sp.StartTimeUnixNano)
					require.Regexp(t, digits, sp.DurationNanos)
					var status string
					for _, a := range sp.Attributes {
						if a.Key == "status" {
							status, _ = a.Value["stringValue"].(string)
						}
					}
					require.Equal(t, "error", status, "matched fields are returned")
				}
			}
		}
		require.Equal(t, want, got)
		require.Regexp(t, digits, res.Metrics.InspectedBytes)

		// Limit: exactly limit of them.
		p.Set("q", "{ }")
		p.Set("limit", "5")
		f.getJSON(t, "/api/search", p, &res)
		require.Len(t, res.Traces, 5)

		for _, bad := range []struct {
			params url.Values
			code   int
			msg    string
		}{
			{url.Values{"q": {"{ status = }"}}, 400, "1:12"},
			{url.Values{"q": {"{ }"}, "limit": {"0"}}, 400, "limit"},
			{url.Values{"q": {"{ }"}, "limit": {"5000"}}, 422, "maximum of 1000"},
			{url.Values{"q": {"{ }"}, "start": {"100"}, "end": {"50"}}, 400, "start must be before end"},
			{url.Values{"q": {"{ }"}, "start": {secs(to.Add(-72 * time.Hour))}, "end": {secs(to)}}, 422, "exceeds the limit"},
		} {
			code, b := f.get(t, "/api/search", bad.params, "application/json")
			require.Equal(t, bad.code, code, "%v: %s", bad.params, b)
			require.Contains(t, string(b), bad.msg)
		}
	})

	t.Run("tempo tags and values, v2 as Grafana asks", func(t *testing.T) {
		var tags struct {
			Scopes []struct {
				Name string   `json:"name"`
				Tags []string `json:"tags"`
			} `json:"scopes"`
		}
		f.getJSON(t, "/api/v2/search/tags", url.Values{"limit": {"5000"}}, &tags)
		byScope := map[string][]string{}
		for _, s := range tags.Scopes {
			byScope[s.Name] = s.Tags
		}
		require.Contains(t, byScope["resource"], "service.name")
		require.Contains(t, byScope["span"], "http.request.method")
		require.Contains(t, byScope["intrinsic"], "duration")

		var v1 struct {
			TagNames []string `json:"tagNames"`
		}
		f.getJSON(t, "/api/search/tags", nil, &v1)
		require.Contains(t, v1.TagNames, "http.request.method")
		code, _ := f.get(t, "/api/v2/search/tags", url.Values{"scope": {"bogus"}}, "")
		require.Equal(t, 400, code)

		var vals struct {
			TagValues []struct {
				Type  string `json:"type"`
				Value string `json:"value"`
			} `json:"tagValues"`
		}
		f.getJSON(t, "/api/v2/search/tag/resource.service.name/values", url.Values{"limit": {"5000"}}, &vals)
		services := map[string]bool{}
		for _, s := range f.spans {
			services[s.Resource.ServiceName()] = true
		}
		require.Len(t, vals.TagValues, len(services))
		for _, v := range vals.TagValues {
			require.Equal(t, "string", v.Type)
			require.True(t, services[v.Value], v.Value)
		}
		// Filtered by q, and a half-typed q falls back to all values.
		f.getJSON(t, "/api/v2/search/tag/span.http.route/values", url.Values{"q": {`{ resource.service.name = "cart" }`}}, &vals)
		require.NotEmpty(t, vals.TagValues)
		for _, v := range vals.TagValues {
			require.Contains(t, v.Value, "CartService", "a route of another service: %s", v.Value)
		}
		f.getJSON(t, "/api/v2/search/tag/resource.service.name/values", url.Values{"q": {`{ resource.service.name = }`}}, &vals)
		require.Len(t, vals.TagValues, len(services))
		f.getJSON(t, "/api/v2/search/tag/status/values", nil, &vals)
		require.Contains(t, vals.TagValues, struct {
			Type  string `json:"type"`
			Value string `json:"value"`
		}{"status", "error"})
		var v1vals struct {
			TagValues []string `json:"tagValues"`
		}
		f.getJSON(t, "/api/search/tag/service.name/values", nil, &v1vals)
		require.Len(t, v1vals.TagValues, len(services))
	})

	t.Run("tempo metrics", func(t *testing.T) {
		wantErrs := map[string]int{}
		for _, s := range f.spans {
			if s.StatusCode == storage.StatusError {
				wantErrs[s.Resource.ServiceName()]++
			}
		}
		var res struct {
			Series []struct {
				Labels []struct {
					Key   string         `json:"key"`
					Value map[string]any `json:"value"`
				} `json:"labels"`
				Samples []struct {
					TimestampMs string  `json:"timestampMs"`
					Value       float64 `json:"value"`
				} `json:"samples"`
				Exemplars []struct {
					Labels []struct {
						Key   string         `json:"key"`
						Value map[string]any `json:"value"`
					} `json:"labels"`
				} `json:"exemplars"`
			} `json:"series"`
		}
		p := url.Values{"q": {`{ status = error } | count_over_time() by (resource.service.name)`}, "start": {secs(from)}, "end": {secs(to)}, "step": {"60s"}}
		f.getJSON(t, "/api/metrics/query_range", p, &res)
		got := map[string]int{}
		for _, s := range res.Series {
			require.Len(t, s.Labels, 1)
			require.Equal(t, "resource.service.name", s.Labels[0].Key)
			svc := s.Labels[0].Value["stringValue"].(string)
			for _, smp := range s.Samples {
				require.Regexp(t, digits, smp.TimestampMs)
				ms, _ := strconv.ParseInt(smp.TimestampMs, 10, 64)
				require.Zero(t, ms%60000, "timestamps align to the step")
				got[svc] += int(smp.Value)
			}
			require.NotEmpty(t, s.Exemplars)
			require.Equal(t, "trace:id", s.Exemplars[0].Labels[0].Key)
		}
		require.Equal(t, wantErrs, got)

		var inst struct {
			Series []struct {
				Value float64 `json:"value"`
			} `json:"series"`
		}
		p = url.Values{"q": {`{ status = error } | count_over_time()`}, "start": {secs(from)}, "end": {secs(to)}}
		f.getJSON(t, "/api/metrics/query", p, &inst)
		require.Len(t, inst.Series, 1)
		total := 0
		for _, n := range wantErrs {
			total += n
		}
		require.Equal(t, float64(total), inst.Series[0].Value)

		// Metrics arithmetic, as Grafana sends it for an error ratio.
		p = url.Values{"q": {`({ status = error } | count_over_time()) / ({ } | count_over_time()) * 100`}, "start": {secs(from)}, "end": {secs(to)}}
		f.getJSON(t, "/api/metrics/query", p, &inst)
		require.Len(t, inst.Series, 1)
		require.InDelta(t, 100*float64(total)/float64(len(f.spans)), inst.Series[0].Value, 1e-9)

		code, _ := f.get(t, "/api/metrics/query_range", url.Values{"q": {"{ }"}}, "")
		require.Equal(t, 400, code, "a search is not a metrics query")
	})

	t.Run("jaeger", func(t *testing.T) {
		var svcs struct {
			Data   []string `json:"data"`
			Total  int      `json:"total"`
			Errors any      `json:"errors"`
		}
		f.getJSON(t, "/jaeger/api/services", nil, &svcs)
		require.Contains(t, svcs.Data, "frontend")
		require.Equal(t, len(svcs.Data), svcs.Total)
		var ops struct {
			Data []string `json:"data"`
		}
		f.getJSON(t, "/jaeger/api/services/cart/operations", nil, &ops)
		require.NotEmpty(t, ops.Data)
		var ops2 struct {
			Data []struct {
				Name     string `json:"name"`
				SpanKind string `json:"spanKind"`
			} `json:"data"`
		}
		f.getJSON(t, "/jaeger/api/operations", url.Values{"service": {"cart"}, "spanKind": {"server"}}, &ops2)
		require.NotEmpty(t, ops2.Data)
		for _, o := range ops2.Data {
			require.Equal(t, "server", o.SpanKind)
		}

		type jtrace struct {
			TraceID string `json:"traceID"`
			Spans   []struct {
				TraceID       string `json:"traceID"`
				SpanID        string `json:"spanID"`
				OperationName string `json:"operationName"`
				References    []struct {
					RefType string `json:"refType"`
				} `json:"references"`
				StartTime int64 `json:"startTime"`
				Duration  int64 `json:"duration"`
				Tags      []struct {
					Key   string `json:"key"`
					Type  string `json:"type"`
					Value any    `json:"value"`
				} `json:"tags"`
				ProcessID string `json:"processID"`
			} `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		}
		var found struct {
			Data []jtrace `json:"data"`
		}
		p := url.Values{"service": {"checkout"}, "tags": {`{"error":"true"}`}, "limit": {"1000"},
			"start": {strconv.FormatInt(from.UnixMicro(), 10)}, "end": {strconv.FormatInt(to.UnixMicro(), 10)}}
		f.getJSON(t, "/jaeger/api/traces", p, &found)
		want := f.tracesWith(func(s *storage.Span) bool {
			return s.Resource.ServiceName() == "checkout" && s.StatusCode == storage.StatusError
		})
		require.Len(t, found.Data, len(want))
		for _, tr := range found.Data {
			require.Len(t, tr.TraceID, 32)
			require.True(t, want[strings.TrimLeft(tr.TraceID, "0")])
			for _, sp := range tr.Spans {
				require.Contains(t, tr.Processes, sp.ProcessID)
				require.Regexp(t, spanIDRe, sp.SpanID)
				require.Positive(t, sp.StartTime)
			}
		}

		var one struct {
			Data []jtrace `json:"data"`
		}
		f.getJSON(t, "/jaeger/api/traces/"+someID.String(), nil, &one)
		require.Len(t, one.Data, 1)
		require.Len(t, one.Data[0].Spans, len(f.traces[someID]))
		code, b := f.get(t, "/jaeger/api/traces/0123456789abcdef0123456789abcdef", nil, "")
		require.Equal(t, 404, code)
		require.Contains(t, string(b), `"errors":[{"code":404`)

		var deps struct {
			Data []struct {
				Parent    string `json:"parent"`
				Child     string `json:"child"`
				CallCount int    `json:"callCount"`
			} `json:"data"`
		}
		// From the service graph's counters, once it has flushed twice
		// (an increase needs two samples).
		edges := map[string]int{}
		waitFor(t, "the service graph's frontend -> checkout calls", 60*time.Second, func() bool {
			f.getJSON(t, "/jaeger/api/dependencies", url.Values{"endTs": {strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10)}, "lookback": {strconv.FormatInt(time.Hour.Milliseconds(), 10)}}, &deps)
			clear(edges)
			for _, d := range deps.Data {
				edges[d.Parent+">"+d.Child] = d.CallCount
			}
			return edges["frontend>checkout"] > 0
		})
		for e, n := range edges {
			parent, child, _ := strings.Cut(e, ">")
			require.NotEqual(t, parent, child, "a self-call: %v", edges)
			require.Positive(t, n, "%v", edges)
		}

		var v3 struct {
			Services []string `json:"services"`
		}
		f.getJSON(t, "/jaeger/api/v3/services", nil, &v3)
		require.Equal(t, svcs.Data, v3.Services)
		var v3t struct {
			Result struct {
				ResourceSpans []json.RawMessage `json:"resourceSpans"`
			} `json:"result"`
		}
		f.getJSON(t, "/jaeger/api/v3/traces/"+someID.String(), nil, &v3t)
		require.NotEmpty(t, v3t.Result.ResourceSpans)
		f.getJSON(t, "/jaeger/api/v3/traces", url.Values{"query.service_name": {"payment"}, "query.start_time_min": {from.Format(time.RFC3339Nano)}, "query.start_time_max": {to.Format(time.RFC3339Nano)}, "query.num_traces": {"3"}}, &v3t)
		require.NotEmpty(t, v3t.Result.ResourceSpans)
	})

	t.Run("loki", func(t *testing.T) {
		ns := func(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }
		perSvc := map[string]int{}
		for _, l := range f.logs {
			perSvc[l.Resource.ServiceName()]++
		}
		var res struct {
			Status string `json:"status"`
			Data   struct {
				ResultType string `json:"resultType"`
				Result     []struct {
					Stream map[string]string `json:"stream"`
					Values [][2]string       `json:"values"`
				} `json:"result"`
			} `json:"data"`
		}
		p := url.Values{"query": {`{service_name="cart"}`}, "direction": {"backward"}, "limit": {"1000"}, "start": {ns(from)}, "end": {ns(to)}, "step": {"2000ms"}}
		f.getJSON(t, "/loki/api/v1/query_range", p, &res)
		require.Equal(t, "success", res.Status)
		require.Equal(t, "streams", res.Data.ResultType)
		n := 0
		var last int64 = 1 << 62
		for _, s := range res.Data.Result {
			require.Equal(t, "cart", s.Stream["service_name"])
			for _, v := range s.Values {
				require.Regexp(t, digits, v[0])
				ts, _ := strconv.ParseInt(v[0], 10, 64)
				if len(res.Data.Result) == 1 {
					require.LessOrEqual(t, ts, last, "backward is newest first")
					last = ts
				}
				n++
			}
		}
		require.Equal(t, perSvc["cart"], n)

		// The trace's logs by trace_id, as Grafana's trace-to-logs link asks.
		var withLogs storage.TraceID
		want := 0
		for _, l := range f.logs {
			if !l.TraceID.IsEmpty() {
				withLogs = l.TraceID
				break
			}
		}
		for _, l := range f.logs {
			if l.TraceID == withLogs {
				want++
			}
		}
		p.Set("query", fmt.Sprintf(`{service_name=~".+"} | trace_id=%q`, withLogs))
		f.getJSON(t, "/loki/api/v1/query_range", p, &res)
		n = 0
		for _, s := range res.Data.Result {
			require.Equal(t, withLogs.String(), s.Stream["trace_id"])
			n += len(s.Values)
		}
		require.Equal(t, want, n)

		var mat struct {
			Data struct {
				ResultType string `json:"resultType"`
				Result     []struct {
					Metric map[string]string `json:"metric"`
					Values [][2]any          `json:"values"`
				} `json:"result"`
			} `json:"data"`
		}
		p = url.Values{"query": {`sum by (service_name) (count_over_time({service_name=~".+"} | drop __error__ [1h]))`}, "start": {ns(to)}, "end": {ns(to)}, "step": {"60"}}
		f.getJSON(t, "/loki/api/v1/query_range", p, &mat)
		require.Equal(t, "matrix", mat.Data.ResultType)
		got := map[string]int{}
		for _, s := range mat.Data.Result {
			require.Len(t, s.Values, 1)
			_, isNum := s.Values[0][0].(float64)
			require.True(t, isNum, "matrix timestamps are numbers")
			v, err := strconv.Atoi(s.Values[0][1].(string))
			require.NoError(t, err, "matrix values are strings")
			got[s.Metric["service_name"]] = v
		}
		require.Equal(t, perSvc, got)

		var labels struct {
			Status string   `json:"status"`
			Data   []string `json:"data"`
		}
		f.getJSON(t, "/loki/api/v1/labels", url.Values{"start": {ns(from)}, "end": {ns(to)}}, &labels)
		require.Contains(t, labels.Data, "service_name")
		f.getJSON(t, "/loki/api/v1/label/service_name/values", url.Values{"start": {ns(from)}, "end": {ns(to)}}, &labels)
		require.Len(t, labels.Data, len(perSvc))
		var series struct {
			Data []map[string]string `json:"data"`
		}
		f.getJSON(t, "/loki/api/v1/series", url.Values{"match[]": {`{service_name="cart"}`}, "start": {ns(from)}, "end": {ns(to)}}, &series)
		require.NotEmpty(t, series.Data)
		for _, s := range series.Data {
			require.Equal(t, "cart", s["service_name"])
		}
		var stats map[string]int
		f.getJSON(t, "/loki/api/v1/index/stats", url.Values{"query": {`{service_name="cart"}`}, "start": {ns(from)}, "end": {ns(to)}}, &stats)
		require.Equal(t, perSvc["cart"], stats["entries"])
		for _, k := range []string{"streams", "chunks", "bytes"} {
			require.Contains(t, stats, k)
		}

		code, b := f.get(t, "/loki/api/v1/query_range", url.Values{"query": {`{service_name="cart"`}}, "")
		require.Equal(t, 400, code)
		require.Contains(t, string(b), "parse error at line 1, col 21")
	})

	t.Run("cli", func(t *testing.T) {
		run := func(args ...string) string {
			out, err := exec.Command(binary, append(args, "--addr", f.base)...).CombinedOutput()
			require.NoError(t, err, "%s", out)
			return string(out)
		}
		out := run("trace", someID.String())
		require.Contains(t, out, fmt.Sprintf("Trace %s  %d spans", someID, len(f.traces[someID])))
		root := rootOf(f.traces[someID])
		require.Contains(t, strings.Split(out, "\n")[1], root.Name, "the root comes first")
		require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), len(f.traces[someID])+1)

		out = run("query", `{ resource.service.name = "checkout" && status = error }`, "--since", "30m")
		want := f.tracesWith(func(s *storage.Span) bool {
			return s.Resource.ServiceName() == "checkout" && s.StatusCode == storage.StatusError
		})
		for id := range want {
			require.Contains(t, out, id)
		}
		out = run("query", `{ status = error } | count_over_time() by (resource.service.name)`, "--since", "30m")
		require.Contains(t, out, `{resource.service.name="checkout"}`)
		out = run("logs", `{service_name="cart"} | detected_level="error"`, "--since", "30m", "--limit", "5")
		cartErrors := 0
		for _, l := range f.logs {
			if l.Resource.ServiceName() == "cart" && l.SeverityNumber >= 17 {
				cartErrors++
			}
		}
		require.Positive(t, cartErrors)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Len(t, lines, min(5, cartErrors), "%s", out)
		for _, l := range lines {
			require.Contains(t, l, `service_name="cart"`)
			require.Contains(t, l, `detected_level="error"`)
		}

		bad, err := exec.Command(binary, "query", "{ status = }", "--addr", f.base).CombinedOutput()
		require.Error(t, err)
		require.Contains(t, string(bad), "400 Bad Request: 1:12")
	})

	t.Run("loki push", func(t *testing.T) {
		now := time.Now()
		trace := "0af7651916cd43dd8448eb211c80319c"
		body := fmt.Sprintf(`{"streams":[{"stream":{"service_name":"shipper","env":"test"},"values":[["%d","pushed line one",{"trace_id":%q}],["%d","pushed line two"]]}]}`,
			now.UnixNano(), trace, now.UnixNano()+1)
		resp, err := http.Post(f.lokiPush, "application/json", strings.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
		resp, err = http.Post(f.lokiPush, "application/json", strings.NewReader(`{"streams":`))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)

		var res struct {
			Data struct {
				Result []struct {
					Stream map[string]string `json:"stream"`
					Values [][2]string       `json:"values"`
				} `json:"result"`
			} `json:"data"`
		}
		p := url.Values{"query": {`{service_name="shipper", env="test"} | trace_id="` + trace + `"`}, "start": {strconv.FormatInt(now.Add(-time.Minute).UnixNano(), 10)}, "end": {strconv.FormatInt(now.Add(time.Minute).UnixNano(), 10)}}
		f.getJSON(t, "/loki/api/v1/query_range", p, &res)
		require.Len(t, res.Data.Result, 1)
		require.Equal(t, [][2]string{{strconv.FormatInt(now.UnixNano(), 10), "pushed line one"}}, res.Data.Result[0].Values)
	})

	t.Run("prometheus api", func(t *testing.T) {
		conn, err := grpc.NewClient(f.otlp, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		defer conn.Close()
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", "shop")
		m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName("queue.depth")
		now := time.Now()
		gauge := m.SetEmptyGauge()
		for i, v := range []float64{3, 7} {
			dp := gauge.DataPoints().AppendEmpty()
			dp.SetTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Duration(i-1) * time.Minute)))
			dp.SetDoubleValue(v)
			dp.Attributes().PutStr("queue", "orders")
		}
		_, err = pmetricotlp.NewGRPCClient(conn).Export(context.Background(), pmetricotlp.NewExportRequestFromMetrics(md))
		require.NoError(t, err)

		var inst struct {
			Status string `json:"status"`
			Data   struct {
				ResultType string `json:"resultType"`
				Result     []struct {
					Metric map[string]string `json:"metric"`
					Value  [2]any            `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		f.getJSON(t, "/api/v1/query", url.Values{"query": {`queue_depth{queue="orders"}`}, "time": {strconv.FormatInt(now.Unix()+1, 10)}}, &inst)
		require.Equal(t, "success", inst.Status)
		require.Equal(t, "vector", inst.Data.ResultType)
		require.Len(t, inst.Data.Result, 1)
		require.Equal(t, "shop", inst.Data.Result[0].Metric["job"])
		require.Equal(t, "7", inst.Data.Result[0].Value[1])

		var rng struct {
			Data struct {
				ResultType string `json:"resultType"`
				Result     []struct {
					Values [][2]any `json:"values"`
				} `json:"result"`
			} `json:"data"`
		}
		f.getJSON(t, "/api/v1/query_range", url.Values{"query": {`max(queue_depth)`}, "start": {strconv.FormatInt(now.Add(-2*time.Minute).Unix()+1, 10)}, "end": {strconv.FormatInt(now.Unix()+1, 10)}, "step": {"60"}}, &rng)
		require.Equal(t, "matrix", rng.Data.ResultType)
		require.Len(t, rng.Data.Result, 1)
		require.Len(t, rng.Data.Result[0].Values, 2, "no sample two minutes ago; 3 then 7")
		require.Equal(t, "7", rng.Data.Result[0].Values[1][1])

		var labels struct {
			Data []string `json:"data"`
		}
		f.getJSON(t, "/api/v1/labels", nil, &labels)
		require.Contains(t, labels.Data, "queue")
		f.getJSON(t, "/api/v1/label/__name__/values", nil, &labels)
		require.Contains(t, labels.Data, "queue_depth")
		var bi struct {
			Data map[string]string `json:"data"`
		}
		f.getJSON(t, "/api/v1/status/buildinfo", nil, &bi)
		require.Contains(t, bi.Data, "version")
		code, b := f.get(t, "/api/v1/query", url.Values{"query": {"sum("}}, "")
		require.Equal(t, 400, code)
		require.Contains(t, string(b), `"errorType":"bad_data"`)

		// OTLP over HTTP at Prometheus's path lands in the same TSDB.
		m.SetName("otlp.http.depth")
		body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
		require.NoError(t, err)
		resp, err := http.Post(f.base+"/api/v1/otlp/v1/metrics", "application/x-protobuf", bytes.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)

		for _, q := range []string{`otlp_http_depth{job="shop"}`} {
			f.getJSON(t, "/api/v1/query", url.Values{"query": {q}, "time": {strconv.FormatInt(now.Unix()+1, 10)}}, &inst)
			require.Len(t, inst.Data.Result, 1, q)
		}
	})

	t.Run("native trace logs", func(t *testing.T) {
		var withLogs storage.TraceID
		for _, l := range f.logs {
			if !l.TraceID.IsEmpty() {
				withLogs = l.TraceID
				break
			}
		}
		var ld struct {
			ResourceLogs []struct {
				ScopeLogs []struct {
					LogRecords []struct {
						TraceID string `json:"traceId"`
					} `json:"logRecords"`
				} `json:"scopeLogs"`
			} `json:"resourceLogs"`
		}
		f.getJSON(t, "/api/sightline/v1/traces/"+withLogs.String()+"/logs", nil, &ld)
		var ids []string
		for _, rl := range ld.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				for _, r := range sl.LogRecords {
					ids = append(ids, r.TraceID)
				}
			}
		}
		require.NotEmpty(t, ids)
		require.True(t, !slices.ContainsFunc(ids, func(s string) bool { return s != withLogs.String() }))
	})
}

func mustID(t *testing.T, s string) storage.TraceID {
	id, err := storage.ParseTraceID(s)
	require.NoError(t, err)
	return id
}

func rootOf(spans []storage.Span) storage.Span {
	for _, s := range spans {
		if s.ParentSpanID.IsEmpty() {
			return s
		}
	}
	return storage.Span{}
}
