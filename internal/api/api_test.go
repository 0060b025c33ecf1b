package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/sightlinehq/sightline/internal/query/traceql"
	"github.com/sightlinehq/sightline/internal/store"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/workload"
)

// testStore holds two tenants' telemetry: every resource of the first
// generator is tagged tenant.id=a, of the second tenant.id=b.
func testStore(t testing.TB) (*store.DB, map[string][]storage.Span, time.Time) {
	db := openStore(t)
	t0 := time.Now().Add(-10 * time.Minute)
	spans := map[string][]storage.Span{}
	for i, tenant := range []string{"a", "b"} {
		td, ld := workload.New(uint64(i+1), t0, workload.Options{}).Batch(30)
		for _, rs := range td.ResourceSpans().All() {
			rs.Resource().Attributes().PutStr("tenant.id", tenant)
		}
		for _, rl := range ld.ResourceLogs().All() {
			rl.Resource().Attributes().PutStr("tenant.id", tenant)
		}
		require.NoError(t, db.AppendTraces(td))
		require.NoError(t, db.AppendLogs(ld))
		spans[tenant] = storage.AppendTraces(nil, td)
	}
	return db, spans, t0
}

func newTestAPI(t *testing.T, db *store.DB, mod func(*Config)) *httptest.Server {
	cfg := createDefaultConfig().(*Config)
	if mod != nil {
		mod(cfg)
	}
	srv := httptest.NewServer(New(cfg, StoreSource(db), Stores{Traces: db}, component.BuildInfo{Version: "test"}, zap.NewNop()).Handler())
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, path string, params url.Values, tenant string) (int, []byte) {
	req, err := http.NewRequest(http.MethodGet, srv.URL+path+"?"+params.Encode(), nil)
	require.NoError(t, err)
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func TestTenancy(t *testing.T) {
	db, spans, t0 := testStore(t)
	srv := newTestAPI(t, db, func(c *Config) { c.Tenancy.Enabled = true })
	rng := url.Values{"start": {strconv.FormatInt(t0.Add(-time.Minute).Unix(), 10)}, "end": {strconv.FormatInt(time.Now().Unix(), 10)}, "limit": {"1000"}, "q": {"{ }"}}

	code, b := get(t, srv, "/api/search", rng, "")
	require.Equal(t, http.StatusUnauthorized, code, "%s", b)
	require.Contains(t, string(b), "X-Scope-OrgID")

	for tenant, mine := range spans {
		ids := map[string]bool{}
		for _, s := range mine {
			ids[traceIDHex(s.TraceID)] = true
		}
		code, b := get(t, srv, "/api/search", rng, tenant)
		require.Equal(t, 200, code, "%s", b)
		var res struct {
			Traces []struct {
				TraceID string `json:"traceID"`
			} `json:"traces"`
		}
		require.NoError(t, json.Unmarshal(b, &res))
		require.Len(t, res.Traces, len(ids), "tenant %s sees its traces and no others", tenant)
		for _, tr := range res.Traces {
			require.True(t, ids[tr.TraceID])
		}
		other := "b"
		if tenant == "b" {
			other = "a"
		}
		code, _ = get(t, srv, "/api/traces/"+spans[other][0].TraceID.String(), nil, tenant)
		require.Equal(t, http.StatusNotFound, code, "another tenant's trace is not found")
		code, _ = get(t, srv, "/api/traces/"+mine[0].TraceID.String(), nil, tenant)
		require.Equal(t, http.StatusOK, code)

		code, b = get(t, srv, "/loki/api/v1/query_range", url.Values{"query": {`{service_name=~".+"}`}, "limit": {"5000"}, "start": {strconv.FormatInt(t0.Add(-time.Minute).UnixNano(), 10)}}, tenant)
		require.Equal(t, 200, code, "%s", b)
		var logs struct {
			Data struct {
				Result []struct {
					Stream map[string]string `json:"stream"`
				} `json:"result"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(b, &logs))
		require.NotEmpty(t, logs.Data.Result)
		for _, s := range logs.Data.Result {
			require.Equal(t, tenant, s.Stream["tenant_id"])
		}
	}
}

// blockingQuerier never answers a scan before its context ends.
type blockingQuerier struct{ storage.Querier }

func (blockingQuerier) Spans(ctx context.Context, _ *storage.SpanQuery, _ func(*storage.Span) bool) error {
	<-ctx.Done()
	return ctx.Err()
}
func (blockingQuerier) Close() error { return nil }

func TestLimits(t *testing.T) {
	db, _, t0 := testStore(t)
	require.NoError(t, db.Flush(context.Background()))
	rng := url.Values{"start": {strconv.FormatInt(t0.Add(-time.Minute).Unix(), 10)}, "end": {strconv.FormatInt(time.Now().Unix(), 10)}, "q": {`{ span.http.request.method = "POST" }`}, "limit": {"1000"}}

	srv := newTestAPI(t, db, func(c *Config) { c.Limits.MaxBytesScanned = 1024 })
	code, b := get(t, srv, "/api/search", rng, "")
	require.Equal(t, http.StatusUnprocessableEntity, code, "%s", b)
	require.Contains(t, string(b), "read limit")

	srv = newTestAPI(t, db, func(c *Config) { c.Limits.MaxSeries = 2 })
	code, b = get(t, srv, "/api/metrics/query_range", url.Values{"q": {"{ } | rate() by (resource.service.name)"}, "start": rng["start"], "end": rng["end"]}, "")
	require.Equal(t, http.StatusUnprocessableEntity, code, "%s", b)
	require.Contains(t, string(b), "too many series")

	cfg := createDefaultConfig().(*Config)
	cfg.Limits.Timeout = 50 * time.Millisecond
	slow := httptest.NewServer(New(cfg, func(ctx context.Context) (storage.Querier, error) { return blockingQuerier{}, nil }, Stores{}, component.BuildInfo{}, zap.NewNop()).Handler())
	defer slow.Close()
	code, b = get(t, slow, "/api/search", rng, "")
	require.Equal(t, http.StatusServiceUnavailable, code, "%s", b)
	require.Contains(t, string(b), "timed out after 50ms")
}

// PromQL range queries obey max_time_range before they reach the engine.
func TestPromQLTimeRangeLimit(t *testing.T) {
	db, _, _ := testStore(t)
	srv := newTestAPI(t, db, func(c *Config) { c.Limits.MaxTimeRange = time.Hour })
	now := time.Now().Unix()
	code, body := get(t, srv, "/api/v1/query_range", url.Values{"query": {"up"}, "start": {strconv.FormatInt(now-7200, 10)}, "end": {strconv.FormatInt(now, 10)}, "step": {"60"}}, "")
	require.Equal(t, http.StatusUnprocessableEntity, code, string(body))
	var res struct{ Status, ErrorType, Error string }
	require.NoError(t, json.Unmarshal(body, &res))
	require.Equal(t, "error", res.Status)
	require.Contains(t, res.Error, "exceeds the limit of 1h0m0s")
}

// With tenancy on, the Prometheus API needs the tenant header; remote
// write labels a tenant's series with it, and queries, label values and
// series lookups see only the tenant's own.
func TestPromQLTenancy(t *testing.T) {
	db, _, _ := testStore(t)
	tsdbDir := t.TempDir()
	mdb, err := tsdb.Open(tsdbDir, nil, nil, tsdb.DefaultOptions(), nil)
	require.NoError(t, err)
	defer mdb.Close()
	cfg := createDefaultConfig().(*Config)
	cfg.Tenancy.Enabled = true
	a := New(cfg, StoreSource(db), Stores{Traces: db}, component.BuildInfo{Version: "test"}, zap.NewNop())
	a.metrics.open = func() (*tsdb.DB, error) { return mdb, nil }
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()

	now := time.Now()
	write := func(tenant, job string, v float64) {
		req := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: job}, {Name: "tenant_id", Value: "forged"}},
			Samples: []prompb.Sample{{Timestamp: now.UnixMilli(), Value: v}},
		}}}
		raw, err := req.Marshal()
		require.NoError(t, err)
		hr, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
		require.NoError(t, err)
		hr.Header.Set("Content-Encoding", "snappy")
		hr.Header.Set("Content-Type", "application/x-protobuf")
		hr.Header.Set("X-Scope-OrgID", tenant)
		resp, err := http.DefaultClient.Do(hr)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusNoContent, resp.StatusCode, string(b))
	}
	write("a", "checkout", 1)
	write("b", "billing", 2)

	at := url.Values{"query": {"up"}, "time": {strconv.FormatInt(now.Unix()+1, 10)}}
	for tenant, want := range map[string]string{"a": `{"__name__":"up","job":"checkout","tenant_id":"a"}`, "b": `{"__name__":"up","job":"billing","tenant_id":"b"}`} {
		code, body := get(t, srv, "/api/v1/query", at, tenant)
		require.Equal(t, http.StatusOK, code, string(body))
		var res struct {
			Data struct {
				Result []struct {
					Metric json.RawMessage `json:"metric"`
				} `json:"result"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(body, &res))
		require.Len(t, res.Data.Result, 1, "tenant %s sees only its own series", tenant)
		require.JSONEq(t, want, string(res.Data.Result[0].Metric))

		code, body = get(t, srv, "/api/v1/label/job/values", nil, tenant)
		require.Equal(t, http.StatusOK, code)
		require.NotContains(t, string(body), map[string]string{"a": "billing", "b": "checkout"}[tenant])
		code, body = get(t, srv, "/api/v1/series", url.Values{"match[]": {`{__name__=~".+"}`}}, tenant)
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, 1, strings.Count(string(body), `"__name__"`), "series of tenant %s: %s", tenant, body)
	}
	code, _ := get(t, srv, "/api/v1/query", at, "")
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = get(t, srv, "/api/v1/query", at, "a/../b")
	require.Equal(t, http.StatusBadRequest, code, "tenant IDs are checked as Mimir checks them")

	// Status endpoints answer per tenant, or not at all.
	for tenant, other := range map[string]string{"a": "billing", "b": "checkout"} {
		code, body := get(t, srv, "/api/v1/status/tsdb", nil, tenant)
		require.Equal(t, http.StatusOK, code, string(body))
		var st struct {
			Data struct {
				HeadStats struct {
					NumSeries int `json:"numSeries"`
				} `json:"headStats"`
				SeriesCountByLabelValuePair []struct {
					Name  string `json:"name"`
					Value int    `json:"value"`
				} `json:"seriesCountByLabelValuePair"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(body, &st))
		require.Equal(t, 1, st.Data.HeadStats.NumSeries, "tenant %s counts its own series: %s", tenant, body)
		require.Contains(t, string(body), `"tenant_id=`+tenant+`"`)
		require.NotContains(t, string(body), other)

		code, body = get(t, srv, "/api/v1/status/tsdb/blocks", nil, tenant)
		require.Equal(t, http.StatusForbidden, code, string(body))
		code, body = get(t, srv, "/api/v1/rules", nil, tenant)
		require.Equal(t, http.StatusOK, code, string(body))
	}
	code, _ = get(t, srv, "/api/v1/status/tsdb", nil, "")
	require.Equal(t, http.StatusUnauthorized, code)
}

func TestCheckPromQL(t *testing.T) {
	for _, c := range []struct {
		q    string
		ok   bool
		name string
	}{
		{`sum(rate(x{a="b"}[5m]))`, true, "ordinary"},
		{strings.Repeat("(", 5) + "1" + strings.Repeat(")", 5), true, "at the depth limit"},
		{strings.Repeat("(", 6) + "1" + strings.Repeat(")", 6), false, "past the depth limit"},
		{`x{a="((((((((("}`, true, "brackets in a string"},
		{"x{a=`(((((((`}", true, "brackets in a raw string"},
		{`x{a="\"((((((("}`, true, "escaped quote"},
		{"x # ((((((((\n", true, "brackets in a comment"},
		{strings.Repeat("x+", 60), false, "over the length limit"},
	} {
		err := checkPromQL(c.q, 100, 5)
		if c.ok && err != nil || !c.ok && !errors.Is(err, errLimit) {
			t.Errorf("%s: %q: %v", c.name, c.q, err)
		}
	}
}

// Strings are stored as sent, invalid UTF-8 included; the OTLP JSON the
// trace and log endpoints answer is still UTF-8, with U+FFFD in its place.
func TestJSONResponsesAreUTF8(t *testing.T) {
	db, _, _ := testStore(t)
	td := ptrace.NewTraces()
	sp := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetTraceID([16]byte{0xee, 1})
	sp.SetSpanID([8]byte{0xee, 2})
	sp.SetName("bad\xffname")
	sp.Attributes().PutStr("k", "v\xc3\x28")
	now := time.Now()
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
	require.NoError(t, db.AppendTraces(td))
	ld := plog.NewLogs()
	lr := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.SetTraceID([16]byte{0xee, 1})
	lr.Body().SetStr("body\xfe")
	lr.SetTimestamp(pcommon.NewTimestampFromTime(now))
	require.NoError(t, db.AppendLogs(ld))
	srv := newTestAPI(t, db, nil)
	id := sp.TraceID().String()
	for _, path := range []string{"/api/traces/" + id, "/api/v2/traces/" + id, "/jaeger/api/v3/traces/" + id, "/api/sightline/v1/traces/" + id + "/logs"} {
		code, b := get(t, srv, path, nil, "")
		require.Equal(t, http.StatusOK, code, "%s: %s", path, b)
		require.True(t, utf8.Valid(b), "%s: %q", path, b)
		require.Contains(t, string(b), "\uFFFD", path)
	}
}

// TestParseTime covers the forms of time the query APIs take: unix
// seconds (with a fraction), unix nanoseconds and RFC3339; anything else
// is a bad request.
func TestParseTime(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"", 0},
		{"1796510953", 1796510953e9},
		{"1796510953.25", 1796510953250000000},
		{"-1.5", -1500000000},
		{"1796510953123456789", 1796510953123456789},
		{"2026-12-06T02:29:55Z", 1796524195e9},
		{"2026-12-06T02:29:55.5+01:00", 1796520595500000000},
	} {
		got, err := parseTime("start", c.in)
		require.NoError(t, err, c.in)
		require.Equal(t, c.want, got, c.in)
	}
	for _, in := range []string{"abc", "2026-12-06", "02:29:55", "NaN", "1e400", "99999999999.5", "2026-12-06T02:29:55"} {
		_, err := parseTime("start", in)
		require.Error(t, err, in)
		require.Contains(t, err.Error(), "invalid start", in)
	}
}

// TestParseStep covers steps as durations and as seconds, and refuses
// those that are not a positive whole number of nanoseconds int64 holds.
func TestParseStep(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"", 0},
		{"15s", 15e9},
		{"1m", 60e9},
		{"30", 30e9},
		{"0.5", 5e8},
		{"1e-9", 1},
		{"9e9", 9e18},
	} {
		got, err := parseStep(c.in)
		require.NoError(t, err, c.in)
		require.Equal(t, c.want, got, c.in)
	}
	for _, in := range []string{"0", "-1", "-5s", "0s", "1e-12", "1e10", "1e300", "+Inf", "NaN", "abc"} {
		_, err := parseStep(in)
		require.Error(t, err, in)
	}
}

// A step too large or too small for nanoseconds is refused, not turned
// into one that slips past the points-per-series limit: a step of 1e300
// became negative, and the LogQL engine evaluated two days in steps of a
// second (172,801 points a series, where 11,000 is the limit).
func TestStepOutOfRange(t *testing.T) {
	db, _, _ := testStore(t)
	srv := newTestAPI(t, db, nil)
	now := time.Now().Unix()
	span := url.Values{"start": {strconv.FormatInt(now-2*86400, 10)}, "end": {strconv.FormatInt(now, 10)}}
	for _, step := range []string{"1e300", "1e10", "1e-12"} {
		q := url.Values{"query": {`count_over_time({service_name=~".+"}[1m])`}, "step": {step}, "start": span["start"], "end": span["end"]}
		code, body := get(t, srv, "/loki/api/v1/query_range", q, "")
		require.Equal(t, http.StatusBadRequest, code, "step %s: %.300s", step, body)
		require.Contains(t, string(body), "invalid step", step)
		q = url.Values{"q": {`{ } | rate()`}, "step": {step}, "start": span["start"], "end": span["end"]}
		code, body = get(t, srv, "/api/metrics/query_range", q, "")
		require.Equal(t, http.StatusBadRequest, code, "step %s: %.300s", step, body)
	}
}

// A range whose length int64 cannot hold is still held to max_time_range,
// and Jaeger's millisecond parameters are refused where nanoseconds would
// overflow, rather than wrapping into a range that passes.
func TestTimeRangeOverflow(t *testing.T) {
	db, _, _ := testStore(t)
	srv := newTestAPI(t, db, func(c *Config) { c.Limits.MaxTimeRange = time.Hour })
	wide := url.Values{"start": {"-9000000000000000000"}, "end": {"9000000000000000000"}}
	for _, c := range []struct {
		path string
		q    url.Values
	}{
		{"/loki/api/v1/query_range", url.Values{"query": {`{service_name=~".+"}`}}},
		{"/api/metrics/query_range", url.Values{"q": {"{ } | rate()"}}},
		{"/api/v1/query_range", url.Values{"query": {"up"}, "step": {"60"}}},
	} {
		c.q["start"], c.q["end"] = wide["start"], wide["end"]
		code, body := get(t, srv, c.path, c.q, "")
		require.GreaterOrEqual(t, code, 400, "%s: %.300s", c.path, body)
		require.Less(t, code, 500, "%s: %.300s", c.path, body)
		require.Contains(t, string(body), "exceeds the limit of 1h0m0s", c.path)
	}
	for _, q := range []url.Values{
		{"endTs": {"9999999999999999"}},
		{"endTs": {"-9999999999999999"}},
		{"lookback": {"9223372036854775807"}},
	} {
		code, body := get(t, srv, "/jaeger/api/dependencies", q, "")
		require.Equal(t, http.StatusBadRequest, code, "%v: %.300s", q, body)
	}
}

// TestLegacyQuery covers Tempo's pre-TraceQL search parameters: each tag
// becomes a condition with its value quoted or checked, so no value is
// read as query text.
func TestLegacyQuery(t *testing.T) {
	for _, c := range []struct{ tags, min, want string }{
		{`name="GET /cart" status=error`, "", `{ name = "GET /cart" && status = error }`},
		{`kind=server http.route="/a b" "x"=1`, "5ms", `{ kind = server && .http.route = "/a b" && ."\"x\"" = "1" && duration >= 5000000ns }`},
		{`service.name="} || { true"`, "", `{ .service.name = "} || { true" }`},
		{``, "", `{  }`},
	} {
		r := httptest.NewRequest(http.MethodGet, "/api/search?"+url.Values{"tags": {c.tags}, "minDuration": {c.min}}.Encode(), nil)
		got, err := legacyQuery(r)
		require.NoError(t, err, c.tags)
		require.Equal(t, c.want, got, c.tags)
		_, err = traceql.Parse(got)
		require.NoError(t, err, got)
	}
	for _, tags := range []string{`status="error } || { true"`, `kind=sever`, `status=ERROR`} {
		r := httptest.NewRequest(http.MethodGet, "/api/search?"+url.Values{"tags": {tags}}.Encode(), nil)
		_, err := legacyQuery(r)
		require.Error(t, err, tags)
	}
}

// Jaeger's search by trace IDs answers the traces found and leaves out
// those that are not, takes no more IDs than a search may return traces,
// and fails on a malformed ID instead of answering without it.
func TestJaegerTraceIDs(t *testing.T) {
	db, spans, _ := testStore(t)
	srv := newTestAPI(t, db, func(c *Config) { c.Limits.MaxResults = 3 })
	found := spans["a"][0].TraceID.String()
	missing := "0123456789abcdef0123456789abcdef"
	code, body := get(t, srv, "/jaeger/api/traces", url.Values{"traceID": {found, missing}}, "")
	require.Equal(t, http.StatusOK, code, "%.300s", body)
	var res struct {
		Data []struct {
			TraceID string `json:"traceID"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &res))
	require.Len(t, res.Data, 1)
	require.Equal(t, traceIDHex(spans["a"][0].TraceID), strings.TrimLeft(res.Data[0].TraceID, "0"))

	code, body = get(t, srv, "/jaeger/api/traces", url.Values{"traceID": {found, "not-hex"}}, "")
	require.Equal(t, http.StatusBadRequest, code, "%.300s", body)
	code, body = get(t, srv, "/jaeger/api/traces", url.Values{"traceID": {found, missing, missing, missing}}, "")
	require.GreaterOrEqual(t, code, 400, "%.300s", body)
	require.Less(t, code, 500, "%.300s", body)
}

// Tag values are held until the answer, so their limit is lowered to
// max_results: Grafana asks for 5,000 whatever the server's bound.
func TestTagValuesLimit(t *testing.T) {
	db, spans, _ := testStore(t)
	services := map[string]bool{}
	for _, s := range spans["a"] {
		services[s.Resource.ServiceName()] = true
	}
	require.Greater(t, len(services), 2)
	srv := newTestAPI(t, db, func(c *Config) { c.Limits.MaxResults = 2 })
	for _, path := range []string{"/api/search/tag/service.name/values", "/api/v2/search/tag/resource.service.name/values"} {
		code, body := get(t, srv, path, url.Values{"limit": {"100000000"}}, "")
		require.Equal(t, http.StatusOK, code, "%s: %.300s", path, body)
		var res struct{ TagValues []json.RawMessage }
		require.NoError(t, json.Unmarshal(body, &res))
		require.Len(t, res.TagValues, 2, path)
	}
}

// A trace looked up by ID with more spans than max_spans_per_trace is
// refused (422) on Tempo's and Jaeger's trace endpoints, not read whole.
func TestMaxSpansPerTrace(t *testing.T) {
	db, spans, _ := testStore(t)
	count := map[storage.TraceID]int{}
	for _, s := range spans["a"] {
		count[s.TraceID]++
	}
	var id storage.TraceID
	for k, n := range count {
		if n >= 3 {
			id = k
			break
		}
	}
	require.False(t, id.IsEmpty(), "the workload has traces of several spans")
	paths := []string{"/api/traces/" + id.String(), "/api/v2/traces/" + id.String(), "/jaeger/api/traces/" + id.String()}
	tight := newTestAPI(t, db, func(c *Config) { c.Limits.MaxSpansPerTrace = count[id] - 1 })
	roomy := newTestAPI(t, db, func(c *Config) { c.Limits.MaxSpansPerTrace = count[id] })
	for _, p := range paths {
		code, body := get(t, tight, p, nil, "")
		require.Equal(t, http.StatusUnprocessableEntity, code, "%s: %.300s", p, body)
		require.Contains(t, string(body), "trace too large", p)
		code, body = get(t, roomy, p, nil, "")
		require.Equal(t, http.StatusOK, code, "%s: %.300s", p, body)
	}

	// A search leaves the trace out rather than failing, Tempo's and
	// Jaeger's alike (structural: the candidates are assembled).
	var service string
	for _, s := range spans["a"] {
		if s.TraceID == id && s.ParentSpanID.IsEmpty() {
			service = s.Resource.ServiceName()
		}
	}
	now := time.Now()
	searches := []struct {
		path   string
		params url.Values
	}{
		{"/api/search", url.Values{"q": {`{ } > { }`}, "limit": {"100"},
			"start": {strconv.FormatInt(now.Add(-time.Hour).Unix(), 10)}, "end": {strconv.FormatInt(now.Add(time.Minute).Unix(), 10)}}},
		{"/jaeger/api/traces", url.Values{"service": {service}, "limit": {"100"}, "lookback": {"2h"}}},
	}
	// A Jaeger search's answer holds at most the bound in all
	// (TestJaegerAnswerSpans): roomy enough here for every trace.
	roomier := newTestAPI(t, db, func(c *Config) { c.Limits.MaxSpansPerTrace = len(spans["a"]) + len(spans["b"]) })
	for _, s := range searches {
		var found [2]bool
		for k, srv := range []*httptest.Server{tight, roomier} {
			code, body := get(t, srv, s.path, s.params, "")
			require.Equal(t, http.StatusOK, code, "%s: %.300s", s.path, body)
			// Tempo's search prints IDs without leading zeros; the
			// rest of the ID is in Jaeger's form too.
			found[k] = strings.Contains(string(body), traceIDHex(id))
		}
		require.Equal(t, [2]bool{false, true}, found, "%s: the trace is left out under the bound only", s.path)
	}
}

// TestTraceLogsLimit reads the UI's logs of a trace with more records than
// max_results: the oldest max_results come back, oldest first, and with
// tenancy on they are the tenant's oldest, not the trace's.
func TestTraceLogsLimit(t *testing.T) {
	db := openStore(t)
	id := storage.TraceID{0xab, 7}
	t0 := time.Now().Add(-time.Minute)
	ld := plog.NewLogs()
	for _, tenant := range []string{"b", "a"} {
		rl := ld.ResourceLogs().AppendEmpty()
		rl.Resource().Attributes().PutStr("tenant.id", tenant)
		lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
		for i := 9; i >= 0; i-- { // newest first
			lr := lrs.AppendEmpty()
			lr.SetTraceID(pcommon.TraceID(id))
			off := time.Duration(i) * time.Second
			if tenant == "a" {
				off += 500 * time.Millisecond // b's records are older
			}
			lr.SetTimestamp(pcommon.NewTimestampFromTime(t0.Add(off)))
			lr.Body().SetStr(tenant + strconv.Itoa(i))
		}
	}
	require.NoError(t, db.AppendLogs(ld))
	bodies := func(b []byte) []string {
		logs, err := (&plog.JSONUnmarshaler{}).UnmarshalLogs(b)
		require.NoError(t, err, "%s", b)
		var out []string
		for _, rl := range logs.ResourceLogs().All() {
			for _, sl := range rl.ScopeLogs().All() {
				for _, lr := range sl.LogRecords().All() {
					out = append(out, lr.Body().Str())
				}
			}
		}
		return out
	}
	path := "/api/sightline/v1/traces/" + id.String() + "/logs"
	code, b := get(t, newTestAPI(t, db, func(c *Config) { c.Limits.MaxResults = 3 }), path, nil, "")
	require.Equal(t, http.StatusOK, code, "%s", b)
	// Grouped by resource in the answer: the set is what is kept.
	require.ElementsMatch(t, []string{"b0", "a0", "b1"}, bodies(b))

	srv := newTestAPI(t, db, func(c *Config) { c.Limits.MaxResults = 3; c.Tenancy.Enabled = true })
	code, b = get(t, srv, path, nil, "a")
	require.Equal(t, http.StatusOK, code, "%s", b)
	require.Equal(t, []string{"a0", "a1", "a2"}, bodies(b))
}

// TestSpansPerSpanset holds a Tempo search's spss to Tempo's rules: above
// max_spans_per_spanset it is refused with Tempo's message, 0 is Tempo's
// default of 3, and up to the bound it is what each spanset carries.
func TestSpansPerSpanset(t *testing.T) {
	db, _, t0 := testStore(t)
	srv := newTestAPI(t, db, nil)
	params := func(spss string) url.Values {
		return url.Values{"q": {`{ }`}, "limit": {"50"}, "spss": {spss},
			"start": {strconv.FormatInt(t0.Add(-time.Minute).Unix(), 10)}, "end": {strconv.FormatInt(time.Now().Unix()+60, 10)}}
	}
	code, body := get(t, srv, "/api/search", params("101"), "")
	require.Equal(t, http.StatusBadRequest, code, "%s", body)
	require.Contains(t, string(body), "spans per span set exceeds 100. received 101")

	most := func(spss string) (returned, matched int) {
		code, body := get(t, srv, "/api/search", params(spss), "")
		require.Equal(t, http.StatusOK, code, "%s", body)
		var res struct {
			Traces []struct {
				SpanSets []struct {
					Spans   []json.RawMessage `json:"spans"`
					Matched int               `json:"matched"`
				} `json:"spanSets"`
			} `json:"traces"`
		}
		require.NoError(t, json.Unmarshal(body, &res))
		require.NotEmpty(t, res.Traces)
		for _, tr := range res.Traces {
			for _, ss := range tr.SpanSets {
				returned, matched = max(returned, len(ss.Spans)), max(matched, ss.Matched)
			}
		}
		return returned, matched
	}
	returned, matched := most("0")
	require.Equal(t, 3, returned, "0 is Tempo's default")
	require.Greater(t, matched, 3, "the workload has traces of more spans")
	returned, _ = most("100")
	require.Equal(t, matched, returned, "up to the bound, every matching span")
}

// TestJaegerAnswerSpans holds a Jaeger answer to max_spans_per_trace in
// all, as one trace is held: a search ends before the trace that would
// pass it (fewer traces than its limit), and a lookup of several trace
// IDs that pass it together is refused.
func TestJaegerAnswerSpans(t *testing.T) {
	db, spans, _ := testStore(t)
	count := map[storage.TraceID]int{}
	for _, s := range append(spans["a"], spans["b"]...) { // tenancy is off: both are searched
		count[s.TraceID]++
	}
	total, largest := 0, 0
	for _, n := range count {
		total += n
		largest = max(largest, n)
	}
	bound := largest + 1
	require.Less(t, 2*bound, total, "the workload's traces outnumber the bound")
	answer := func(srv *httptest.Server, params url.Values) (traces, spans int) {
		code, body := get(t, srv, "/jaeger/api/traces", params, "")
		require.Equal(t, http.StatusOK, code, "%s", body)
		var res struct {
			Data []struct {
				Spans []json.RawMessage `json:"spans"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(body, &res))
		for _, tr := range res.Data {
			spans += len(tr.Spans)
		}
		return len(res.Data), spans
	}
	search := url.Values{"service": {"frontend"}, "limit": {"100"}, "lookback": {"2h"}}
	open := newTestAPI(t, db, nil)
	allTraces, allSpans := answer(open, search)
	require.Greater(t, allSpans, bound, "the unbounded answer passes the bound")
	bounded := newTestAPI(t, db, func(c *Config) { c.Limits.MaxSpansPerTrace = bound })
	n, got := answer(bounded, search)
	require.LessOrEqual(t, got, bound)
	require.Positive(t, n)
	require.Less(t, n, allTraces)

	// Trace IDs asked for by name: refused once they pass it together.
	var ids []string
	sum := 0
	for id, c := range count {
		ids = append(ids, id.String())
		if sum += c; sum > bound {
			break
		}
	}
	code, body := get(t, bounded, "/jaeger/api/traces", url.Values{"traceID": ids}, "")
	require.Equal(t, http.StatusUnprocessableEntity, code, "%s", body)
	require.Contains(t, string(body), "max_spans_per_trace")
	traces, _ := answer(bounded, url.Values{"traceID": ids[:1]})
	require.Equal(t, 1, traces)
}

// A span whose attributes are doubles JSON has no number for (NaN, ±Inf,
// which OTLP carries) is answered by every API that shows them: Tempo's
// search as Tempo writes them ("NaN", "Infinity"), Jaeger's as text tags.
// Each was a 200 with no body.
func TestNonFiniteAttributes(t *testing.T) {
	db := openStore(t)
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "nan")
	sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetTraceID(pcommon.TraceID{1, 2, 3})
	sp.SetSpanID(pcommon.SpanID{4, 5, 6})
	sp.SetName("op")
	t0 := time.Now().Add(-time.Minute)
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(t0))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(t0.Add(time.Millisecond)))
	sp.Attributes().PutDouble("x", math.NaN())
	sp.Attributes().PutDouble("y", math.Inf(-1))
	require.NoError(t, db.AppendTraces(td))
	srv := newTestAPI(t, db, nil)
	rng := url.Values{"start": {strconv.FormatInt(t0.Add(-time.Minute).Unix(), 10)}, "end": {strconv.FormatInt(t0.Add(time.Minute).Unix(), 10)}}

	q := url.Values{"q": {`{ resource.service.name = "nan" } | select(span.x, span.y)`}, "start": rng["start"], "end": rng["end"]}
	code, b := get(t, srv, "/api/search", q, "")
	require.Equal(t, http.StatusOK, code, "%s", b)
	require.True(t, json.Valid(b), "%s", b)
	require.Contains(t, string(b), `{"key":"x","value":{"doubleValue":"NaN"}}`)
	require.Contains(t, string(b), `{"key":"y","value":{"doubleValue":"-Infinity"}}`)

	us := func(t time.Time) string { return strconv.FormatInt(t.UnixMicro(), 10) }
	for _, path := range []string{"/jaeger/api/traces/01020300000000000000000000000000", "/jaeger/api/traces"} {
		code, b = get(t, srv, path, url.Values{"service": {"nan"}, "start": {us(t0.Add(-time.Minute))}, "end": {us(t0.Add(time.Minute))}}, "")
		require.Equal(t, http.StatusOK, code, "%s: %s", path, b)
		require.True(t, json.Valid(b), "%s: %s", path, b)
		require.Contains(t, string(b), `{"key":"x","type":"string","value":"NaN"}`, path)
		require.Contains(t, string(b), `{"key":"y","type":"string","value":"-Inf"}`, path)
	}
}
