package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"

	"github.com/sightlinehq/sightline/internal/metrics"
)

// TestPromMetadata sends the requests Grafana's Prometheus datasource
// sends for its metric browser (all metadata, and one metric's) and
// checks the answer is Prometheus's shape with the OTLP description,
// type and unit of what was written.
func TestPromMetadata(t *testing.T) {
	mdb, err := metrics.Open(metrics.Options{Dir: t.TempDir(), Retention: time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { mdb.Close() })
	md := pmetric.NewMetrics()
	sm := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
	for _, name := range []string{"queue.depth", "cache.size"} {
		g := sm.Metrics().AppendEmpty()
		g.SetName(name)
		g.SetUnit("By")
		g.SetDescription("Described " + name)
		dp := g.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetIntValue(1)
		dp.SetTimestamp(pcommon.NewTimestampFromTime(time.Now()))
	}
	_, err = mdb.AppendOTLP(context.Background(), md)
	require.NoError(t, err)

	srv := httptest.NewServer(New(createDefaultConfig().(*Config), nil, Stores{Metrics: mdb}, component.BuildInfo{Version: "test"}, zap.NewNop()).Handler())
	t.Cleanup(srv.Close)
	var res struct {
		Status string                         `json:"status"`
		Data   map[string][]map[string]string `json:"data"`
	}
	code, b := get(t, srv, "/api/v1/metadata", nil, "")
	require.Equal(t, http.StatusOK, code, "%s", b)
	require.NoError(t, json.Unmarshal(b, &res))
	require.Equal(t, "success", res.Status)
	require.Equal(t, map[string][]map[string]string{
		"cache_size_bytes":  {{"type": "gauge", "help": "Described cache.size", "unit": "bytes"}},
		"queue_depth_bytes": {{"type": "gauge", "help": "Described queue.depth", "unit": "bytes"}},
	}, res.Data)

	code, b = get(t, srv, "/api/v1/metadata", url.Values{"metric": {"queue_depth_bytes"}}, "")
	require.Equal(t, http.StatusOK, code, "%s", b)
	res.Data = nil
	require.NoError(t, json.Unmarshal(b, &res))
	require.Len(t, res.Data, 1)
	require.Contains(t, res.Data, "queue_depth_bytes")

	code, b = get(t, srv, "/api/v1/metadata", url.Values{"limit": {"1"}}, "")
	require.Equal(t, http.StatusOK, code, "%s", b)
	res.Data = nil
	require.NoError(t, json.Unmarshal(b, &res))
	require.Len(t, res.Data, 1)
}

// A tenant sees the families it has series of, whatever suffixes its
// series carry.
func TestFamilyVisible(t *testing.T) {
	names := map[string]bool{"rpc_duration_seconds_bucket": true, "jobs_total": true, "temp": true}
	for family, want := range map[string]bool{
		"rpc_duration_seconds": true, "jobs_total": true, "jobs": true, "temp": true, "other": false, "rpc": false,
	} {
		require.Equal(t, want, familyVisible(family, names), family)
	}
}
