package api

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

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
