package metrics

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// OTLP metrics are described by family, as Prometheus's metadata API
// lists them: the type from the OTLP type, the help from the description,
// the unit from the unit; a later description replaces an earlier one.
func TestMetadataFromOTLP(t *testing.T) {
	db, err := Open(Options{Dir: t.TempDir(), Retention: time.Hour})
	require.NoError(t, err)
	defer db.Close()
	now := pcommon.NewTimestampFromTime(time.Now())
	write := func(help string) {
		md := pmetric.NewMetrics()
		sm := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
		g := sm.Metrics().AppendEmpty()
		g.SetName("queue.depth")
		g.SetDescription(help)
		g.SetEmptyGauge().DataPoints().AppendEmpty().SetIntValue(3)
		g.Gauge().DataPoints().At(0).SetTimestamp(now)
		c := sm.Metrics().AppendEmpty()
		c.SetName("http.server.requests")
		c.SetDescription("Requests served.")
		s := c.SetEmptySum()
		s.SetIsMonotonic(true)
		s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		for i := range 3 {
			dp := s.DataPoints().AppendEmpty()
			dp.SetIntValue(int64(10 * (i + 1)))
			dp.SetTimestamp(now)
			dp.Attributes().PutStr("route", fmt.Sprintf("/r%d", i))
		}
		h := sm.Metrics().AppendEmpty()
		h.SetName("http.server.duration")
		h.SetUnit("ms")
		h.SetDescription("Time to serve.")
		hd := h.SetEmptyHistogram()
		hd.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		hp := hd.DataPoints().AppendEmpty()
		hp.SetTimestamp(now)
		hp.SetCount(2)
		hp.SetSum(30)
		hp.ExplicitBounds().FromRaw([]float64{10, 100})
		hp.BucketCounts().FromRaw([]uint64{1, 1, 0})
		_, err := db.AppendOTLP(context.Background(), md)
		require.NoError(t, err)
	}
	write("Items waiting.")
	got := db.Metadata()
	require.Equal(t, metadata.Metadata{Type: model.MetricTypeGauge, Help: "Items waiting."}, got["queue_depth"])
	require.Equal(t, metadata.Metadata{Type: model.MetricTypeCounter, Help: "Requests served."}, got["http_server_requests_total"])
	require.Equal(t, metadata.Metadata{Type: model.MetricTypeHistogram, Help: "Time to serve.", Unit: "milliseconds"}, got["http_server_duration_milliseconds"])
	require.Len(t, got, 3, "%v", got)

	write("Items waiting to be sent.")
	require.Equal(t, "Items waiting to be sent.", db.Metadata()["queue_depth"].Help)
}
