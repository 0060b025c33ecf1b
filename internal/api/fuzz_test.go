package api

import (
	"bytes"
	"context"
	"encoding/json"
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
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.uber.org/zap"

	"github.com/sightlinehq/sightline/internal/otlpguard/otlpguardtest"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// FuzzWriteEndpoints posts any body to the query API's two metrics write
// paths, Prometheus remote write (snappy-framed protobuf) and OTLP: a
// decoder panic would answer 500 (recoverPanics), and every input must get
// a 2xx or 4xx instead.
func FuzzWriteEndpoints(f *testing.F) {
	rw := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "x"}},
		Samples: []prompb.Sample{{Timestamp: 1_700_000_000_000, Value: 1}},
	}}}
	rwb, _ := rw.Marshal()
	md := pmetric.NewMetrics()
	g := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	g.SetName("g")
	g.SetEmptyGauge().DataPoints().AppendEmpty().SetDoubleValue(1)
	otlp, _ := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	f.Add(false, rwb)
	f.Add(false, []byte("\x0a\xff\xff\xff\xff\x0f"))
	f.Add(true, otlp)
	f.Add(true, []byte("\x0a\xff\xff\xff\xff\x0f"))
	f.Add(true, otlpguardtest.DeepTracesProto(1000, otlpguardtest.KVList))

	mdb, err := tsdb.Open(f.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		f.Fatal(err)
	}
	defer mdb.Close()
	cfg := createDefaultConfig().(*Config)
	a := New(cfg, func(context.Context) (storage.Querier, error) { return nil, errNotReady }, Stores{}, component.BuildInfo{Version: "fuzz"}, zap.NewNop())
	a.metrics.open = func() (*tsdb.DB, error) { return mdb, nil }
	h := a.Handler()
	f.Fuzz(func(t *testing.T, isOTLP bool, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(snappy.Encode(nil, body)))
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("Content-Encoding", "snappy")
		if isOTLP {
			req = httptest.NewRequest(http.MethodPost, "/api/v1/otlp/v1/metrics", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/x-protobuf")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s: %d %s", req.URL.Path, rec.Code, rec.Body.String())
		}
	})
}

// FuzzTimeAndStep holds the query APIs' time and step parsers to their
// contracts on any text: no panic, a step that is positive when given
// (the points-per-series limit divides by it), and a time of RFC3339
// text or a number that round-trips within a microsecond of what it says.
func FuzzTimeAndStep(f *testing.F) {
	for _, s := range []string{"", "15s", "0.5", "1e300", "1e-12", "-1", "NaN", "1796510953.25", "1796510953123456789", "2026-12-06T02:29:55Z", "9e9", "99999999999.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if step, err := parseStep(s); err == nil && (step < 0 || step == 0 && s != "") {
			t.Fatalf("step %q parsed as %d", s, step)
		}
		ns, err := parseTime("start", s)
		if err != nil || s == "" {
			return
		}
		if f, ferr := strconv.ParseFloat(s, 64); ferr == nil && !strings.ContainsAny(s, ":") {
			// Seconds (or, as a whole number of more than 10 digits,
			// nanoseconds): the result is the number, to float precision.
			want := f * 1e9
			if !strings.ContainsAny(s, ".eE") && len(strings.TrimLeft(s, "+-")) > 10 {
				want = f
			}
			if diff := math.Abs(float64(ns) - want); diff > 1e3 && diff > math.Abs(want)*1e-15 {
				t.Fatalf("time %q parsed as %d, want about %g", s, ns, want)
			}
		}
	})
}

// FuzzQueryEndpoints sends any path argument and any query string to
// every read route of the API (Tempo, Jaeger, Loki, Prometheus, the
// native and dashboard routes), over a store and a TSDB that hold data. A
// parameter nobody checked reaches an engine as an error it does not
// map, or a panic, and answers 500; a panic in a goroutine a handler
// started would end the process, which recoverPanics cannot prevent. So
// every answer must be below 500, or 503 for a query that ran out of
// time, and a JSON answer must be valid JSON in UTF-8.
func FuzzQueryEndpoints(f *testing.F) {
	routes := []struct{ path, query string }{
		{"/api/search", "q=" + url.QueryEscape(`{ resource.service.name = "checkout" && duration > 1ms }`) + "&limit=20&spss=3"},
		{"/api/search", "tags=" + url.QueryEscape(`service.name="checkout" http.route="/x"`) + "&minDuration=1ms&maxDuration=1s"},
		{"/api/search/tags", "scope=span"},
		{"/api/v2/search/tags", "q=" + url.QueryEscape(`{ span.http.route = "/x" }`)},
		{"/api/search/tag/{arg}/values", "limit=5"},
		{"/api/v2/search/tag/{arg}/values", "q=" + url.QueryEscape(`{ status = error }`)},
		{"/api/traces/{arg}", "start=0&end=0"},
		{"/api/v2/traces/{arg}", ""},
		{"/api/metrics/query_range", "q=" + url.QueryEscape(`{ } | rate() by (resource.service.name)`) + "&step=15s&exemplars=5"},
		{"/api/metrics/query", "q=" + url.QueryEscape(`{ } | quantile_over_time(duration, .9)`)},
		{"/jaeger/api/services", ""},
		{"/jaeger/api/services/{arg}/operations", ""},
		{"/jaeger/api/operations", "service=checkout&spanKind=server"},
		{"/jaeger/api/traces", "service=checkout&tags=" + url.QueryEscape(`{"error":"true"}`) + "&limit=20&lookback=1h&minDuration=1ms"},
		{"/jaeger/api/traces/{arg}", ""},
		{"/jaeger/api/dependencies", "lookback=3600000"},
		{"/jaeger/api/v3/services", ""},
		{"/jaeger/api/v3/operations", "service=checkout&span_kind=server"},
		{"/jaeger/api/v3/traces", "query.service_name=checkout&query.start_time_min=" + time.Now().Add(-time.Hour).UTC().Format(time.RFC3339) + "&query.start_time_max=" + time.Now().UTC().Format(time.RFC3339) + "&query.num_traces=5"},
		{"/jaeger/api/v3/traces/{arg}", "start_time=2020-01-01T00:00:00Z"},
		{"/loki/api/v1/query_range", "query=" + url.QueryEscape(`sum by (level) (rate({service_name="checkout"} |= "x" | json [5m]))`) + "&step=60&limit=100&direction=forward"},
		{"/loki/api/v1/query", "query=" + url.QueryEscape(`{service_name=~".+"} | logfmt | line_format "{{.msg}}"`)},
		{"/loki/api/v1/series", "match[]=" + url.QueryEscape(`{service_name="checkout"}`)},
		{"/loki/api/v1/index/volume", "query=" + url.QueryEscape(`{service_name=~".+"}`)},
		{"/loki/api/v1/index/volume_range", "query=" + url.QueryEscape(`{service_name=~".+"}`) + "&step=60"},
		{"/loki/api/v1/index/stats", "query=" + url.QueryEscape(`{service_name="checkout"}`)},
		{"/loki/api/v1/labels", "start=0"},
		{"/loki/api/v1/label/{arg}/values", "query=" + url.QueryEscape(`{service_name="checkout"}`)},
		{"/loki/api/v1/detected_labels", "query=" + url.QueryEscape(`{service_name="checkout"}`)},
		{"/loki/api/v1/detected_fields", "query=" + url.QueryEscape(`{service_name="checkout"}`) + "&field_limit=10"},
		{"/loki/api/v1/detected_field/{arg}/values", "query=" + url.QueryEscape(`{service_name="checkout"}`)},
		{"/loki/api/v1/patterns", "query=" + url.QueryEscape(`{service_name="checkout"}`) + "&step=60"},
		{"/loki/api/v1/tail", "query=" + url.QueryEscape(`{service_name="checkout"}`)},
		{"/api/v1/query", "query=" + url.QueryEscape(`sum by (job) (rate(up[5m]))`)},
		{"/api/v1/query_range", "query=up&start=0&end=100000&step=15"},
		{"/api/v1/series", "match[]=up"},
		{"/api/v1/labels", ""},
		{"/api/v1/label/{arg}/values", ""},
		{"/api/v1/query_exemplars", "query=up&start=0&end=100000"},
		{"/api/v1/metadata", "metric=up&limit=1"},
		{"/api/v1/format_query", "query=up"},
		{"/api/v1/rules", ""},
		{"/api/v1/alerts", ""},
		{"/api/sightline/v1/traces/{arg}/logs", "limit=10"},
		{"/api/sightline/v1/status", ""},
		{"/api/sightline/v1/silences", ""},
		{"/api/sightline/v1/queries", "kind=promql"},
		{"/api/dashboards", "query=red"},
		{"/api/dashboards/uid/{arg}", ""},
		{"/api/status/buildinfo", ""},
	}
	db, spans, _ := testStore(f)
	id := spans["a"][0].TraceID.String()
	for i, r := range routes {
		f.Add(uint8(i), id, r.query)
	}
	f.Add(uint8(4), "service.name", "")
	f.Add(uint8(5), "span.http.route", "")
	f.Add(uint8(11), "checkout", "")
	f.Add(uint8(37), "__name__", "match[]=up")

	mdb, err := tsdb.Open(f.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		f.Fatal(err)
	}
	defer mdb.Close()
	cfg := createDefaultConfig().(*Config)
	a := New(cfg, StoreSource(db), Stores{Traces: db, Dashboards: testDashboards(f)}, component.BuildInfo{Version: "fuzz"}, zap.NewNop())
	a.metrics.open = func() (*tsdb.DB, error) { return mdb, nil }
	h := a.Handler()
	rw := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "checkout"}},
		Samples: []prompb.Sample{{Timestamp: time.Now().UnixMilli(), Value: 1}},
	}}}
	raw, _ := rw.Marshal()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNoContent {
		f.Fatalf("remote write: %d %s", rec.Code, rec.Body)
	}

	f.Fuzz(func(t *testing.T, route uint8, arg, query string) {
		r := routes[int(route)%len(routes)]
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL.Path = strings.Replace(r.path, "{arg}", arg, 1)
		req.URL.RawQuery = query
		req.RequestURI = req.URL.RequestURI()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		body := rec.Body.Bytes()
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("GET %s: %d %s", req.RequestURI, rec.Code, body)
		}
		if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") && (!utf8.Valid(body) || !json.Valid(body)) {
			t.Fatalf("GET %s: %d, not JSON in UTF-8: %q", req.RequestURI, rec.Code, body)
		}
	})
}

// FuzzSaveEndpoints posts any body as a dashboard (Grafana's
// /api/dashboards/db) and as a saved query: every answer is below 500,
// and a dashboard that was saved reads back.
func FuzzSaveEndpoints(f *testing.F) {
	f.Add(false, []byte(`{"dashboard":{"title":"t","panels":[{"type":"timeseries","targets":[{"expr":"up"}]}]},"overwrite":true}`))
	f.Add(false, []byte(`{"dashboard":{"title":"t","uid":"abc","version":3}}`))
	f.Add(false, []byte(`{"dashboard":null}`))
	f.Add(true, []byte(`{"kind":"promql","name":"checkout rate","query":"rate(x[5m])"}`))
	f.Add(true, []byte(`{"kind":"traceql","name":"errors","query":"{ status = error }"}`))
	h := New(createDefaultConfig().(*Config), nil, Stores{Dashboards: testDashboards(f)}, component.BuildInfo{Version: "fuzz"}, zap.NewNop()).Handler()
	f.Fuzz(func(t *testing.T, query bool, body []byte) {
		path := "/api/dashboards/db"
		if query {
			path = "/api/sightline/v1/queries"
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
		if rec.Code >= 500 {
			t.Fatalf("POST %s: %d %s", path, rec.Code, rec.Body)
		}
		if query || rec.Code != http.StatusOK {
			return
		}
		var saved struct{ UID string }
		if err := json.Unmarshal(rec.Body.Bytes(), &saved); err != nil || saved.UID == "" {
			t.Fatalf("saved, but answered %s", rec.Body)
		}
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/dashboards/uid/"+saved.UID, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("saved %s, read back %d %s", saved.UID, rec.Code, rec.Body)
		}
	})
}
