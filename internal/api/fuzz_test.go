package api

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
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
