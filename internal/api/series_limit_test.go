package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.uber.org/zap"

	"github.com/sightlinehq/sightline/internal/metrics"
)

// TestSeriesLimitWrites sends metrics past the metrics store's series
// limit through Prometheus's OTLP endpoint and remote write: OTLP gets a
// partial success naming the rejected points, with the rest stored, in
// the request's encoding; remote write gets 400, which Prometheus does
// not retry.
func TestSeriesLimitWrites(t *testing.T) {
	mdb, err := metrics.Open(metrics.Options{Dir: t.TempDir(), Retention: time.Hour, MaxSeries: 2})
	require.NoError(t, err)
	t.Cleanup(func() { mdb.Close() })
	srv := httptest.NewServer(New(createDefaultConfig().(*Config), nil, Stores{Metrics: mdb}, component.BuildInfo{Version: "test"}, zap.NewNop()).Handler())
	t.Cleanup(srv.Close)

	post := func(path, contentType string, body []byte, header ...string) (int, []byte) {
		req, err := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", contentType)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	gauges := func(at time.Time, queues ...string) pmetricotlp.ExportRequest {
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", "checkout")
		g := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		g.SetName("queue.depth")
		pts := g.SetEmptyGauge().DataPoints()
		for _, q := range queues {
			p := pts.AppendEmpty()
			p.SetTimestamp(pcommon.NewTimestampFromTime(at))
			p.SetDoubleValue(1)
			p.Attributes().PutStr("queue", q)
		}
		return pmetricotlp.NewExportRequestFromMetrics(md)
	}
	now := time.Now().Add(-time.Minute)

	// Protobuf: two series fit, the third is rejected, the request is not.
	body, err := gauges(now, "a", "b", "c").MarshalProto()
	require.NoError(t, err)
	code, b := post("/api/v1/otlp/v1/metrics", "application/x-protobuf", body)
	require.Equal(t, http.StatusOK, code, string(b))
	resp := pmetricotlp.NewExportResponse()
	require.NoError(t, resp.UnmarshalProto(b))
	require.EqualValues(t, 1, resp.PartialSuccess().RejectedDataPoints())
	require.Contains(t, resp.PartialSuccess().ErrorMessage(), "metrics::max_series")
	require.EqualValues(t, 2, mdb.HeadSeries())

	// JSON: a new series first, then the two the head holds, which are
	// stored.
	body, err = gauges(now.Add(time.Second), "d", "a", "b").MarshalJSON()
	require.NoError(t, err)
	code, b = post("/api/v1/otlp/v1/metrics", "application/json", body)
	require.Equal(t, http.StatusOK, code, string(b))
	resp = pmetricotlp.NewExportResponse()
	require.NoError(t, resp.UnmarshalJSON(b))
	require.EqualValues(t, 1, resp.PartialSuccess().RejectedDataPoints())
	code, b = get(t, srv, "/api/v1/query", url.Values{"query": {"count_over_time(queue_depth[5m])"}}, "")
	require.Equal(t, http.StatusOK, code, string(b))
	var res struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(b, &res))
	counts := map[string]any{}
	for _, r := range res.Data.Result {
		counts[r.Metric["queue"]] = r.Value[1]
	}
	require.Equal(t, map[string]any{"a": "2", "b": "2"}, counts)

	// Within the limit: no partial success.
	body, err = gauges(now.Add(2*time.Second), "a").MarshalProto()
	require.NoError(t, err)
	code, b = post("/api/v1/otlp/v1/metrics", "application/x-protobuf", body)
	require.Equal(t, http.StatusOK, code, string(b))
	resp = pmetricotlp.NewExportResponse()
	require.NoError(t, resp.UnmarshalProto(b))
	require.Zero(t, resp.PartialSuccess().RejectedDataPoints())

	// Remote write of a new series: 400.
	rw := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "new"}},
		Samples: []prompb.Sample{{Timestamp: now.UnixMilli(), Value: 1}},
	}}}
	raw, err := rw.Marshal()
	require.NoError(t, err)
	code, b = post("/api/v1/write", "application/x-protobuf", snappy.Encode(nil, raw), "Content-Encoding", "snappy")
	require.Equal(t, http.StatusBadRequest, code, string(b))
	require.EqualValues(t, 2, mdb.HeadSeries())
}
