package metrics

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// newBatch starts an OTLP batch of one resource, service checkout with
// the given extra resource attributes (key, value, ...), and returns it
// with its one scope to add metrics to.
func newBatch(attrs ...string) (pmetric.Metrics, pmetric.ScopeMetrics) {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "checkout")
	for i := 0; i+1 < len(attrs); i += 2 {
		rm.Resource().Attributes().PutStr(attrs[i], attrs[i+1])
	}
	return md, rm.ScopeMetrics().AppendEmpty()
}

// otlpSample builds one OTLP batch: a cumulative counter with a unit and
// an exemplar, a gauge and an explicit-bucket histogram, from service
// checkout.
func otlpSample(at time.Time, calls int64) pmetric.Metrics {
	md, sm := newBatch("service.instance.id", "i-1", "k8s.namespace.name", "shop")
	ts := pcommon.NewTimestampFromTime(at)

	m := sm.Metrics().AppendEmpty()
	m.SetName("http.server.requests")
	m.SetUnit("1")
	sum := m.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	dp := sum.DataPoints().AppendEmpty()
	dp.SetTimestamp(ts)
	dp.SetIntValue(calls)
	dp.Attributes().PutStr("http.route", "/cart")
	ex := dp.Exemplars().AppendEmpty()
	ex.SetTimestamp(ts)
	ex.SetIntValue(1)
	ex.SetTraceID(pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	ex.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, 8})

	g := sm.Metrics().AppendEmpty()
	g.SetName("queue.depth")
	gp := g.SetEmptyGauge().DataPoints().AppendEmpty()
	gp.SetTimestamp(ts)
	gp.SetDoubleValue(7)

	h := sm.Metrics().AppendEmpty()
	h.SetName("http.server.duration")
	h.SetUnit("s")
	hist := h.SetEmptyHistogram()
	hist.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	hp := hist.DataPoints().AppendEmpty()
	hp.SetTimestamp(ts)
	hp.SetCount(uint64(calls))
	hp.SetSum(float64(calls) * 0.1)
	hp.ExplicitBounds().FromRaw([]float64{0.05, 0.5})
	hp.BucketCounts().FromRaw([]uint64{uint64(calls) / 2, uint64(calls) / 2, 0})
	return md
}

func TestAppendOTLPAndQuery(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(Options{Dir: dir, Retention: 24 * time.Hour, OTLP: config.OTLPConfig{PromoteResourceAttributes: []string{"k8s.namespace.name"}}})
	require.NoError(t, err)
	t0 := time.Now().Add(-5 * time.Minute).Truncate(time.Second)
	for i := range 5 {
		_, err := db.AppendOTLP(context.Background(), otlpSample(t0.Add(time.Duration(i)*time.Minute), int64(60*(i+1))))
		require.NoError(t, err)
	}
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	at := t0.Add(4 * time.Minute)
	query := func(q string) promql.Vector {
		t.Helper()
		qr, err := eng.NewInstantQuery(context.Background(), db.TSDB(), nil, q, at)
		require.NoError(t, err)
		res := qr.Exec(context.Background())
		require.NoError(t, res.Err, q)
		v, err := res.Vector()
		require.NoError(t, err, q)
		return v
	}
	v := query(`http_server_requests_total{http_route="/cart"}`)
	require.Len(t, v, 1, "the counter is named as Prometheus's OTLP ingestion names it")
	require.Equal(t, 300.0, v[0].F)
	require.Equal(t, "checkout", v[0].Metric.Get("job"), "job is service.name")
	require.Equal(t, "i-1", v[0].Metric.Get("instance"))
	require.Equal(t, "shop", v[0].Metric.Get("k8s_namespace_name"), "promoted resource attribute")

	v = query(`rate(http_server_requests_total[5m])`)
	require.Len(t, v, 1)
	require.InDelta(t, 1.0, v[0].F, 0.01, "60 requests a minute")
	require.Equal(t, 7.0, query(`queue_depth`)[0].F)
	require.Len(t, query(`target_info{job="checkout"}`), 1)
	v = query(`histogram_quantile(0.5, rate(http_server_duration_seconds_bucket[5m]))`)
	require.Len(t, v, 1)
	require.InDelta(t, 0.05, v[0].F, 1e-9)

	// Exemplars carry the trace and span IDs.
	eq, err := db.TSDB().ExemplarQuerier(context.Background())
	require.NoError(t, err)
	m, err := promqlMatchers(`http_server_requests_total`)
	require.NoError(t, err)
	exs, err := eq.Select(t0.UnixMilli()-1, at.UnixMilli()+1, m)
	require.NoError(t, err)
	require.NotEmpty(t, exs)
	require.Equal(t, "0102030405060708090a0b0c0d0e0f10", exs[0].Exemplars[0].Labels.Get("trace_id"))

	// A restart replays the WAL: nothing acknowledged is lost.
	require.NoError(t, db.Close())
	db, err = Open(Options{Dir: dir, Retention: 24 * time.Hour})
	require.NoError(t, err)
	defer db.Close()
	qr, err := eng.NewInstantQuery(context.Background(), db.TSDB(), nil, `http_server_requests_total`, at)
	require.NoError(t, err)
	res := qr.Exec(context.Background())
	require.NoError(t, res.Err)
	vec, _ := res.Vector()
	require.Len(t, vec, 1)
	require.Equal(t, 300.0, vec[0].F)
}

// A delta sum is refused with its name and the reason, and the rest of
// the batch is still stored: nothing accepted alongside it is lost.
func TestDeltaRefusedRestKept(t *testing.T) {
	db, err := Open(Options{Dir: t.TempDir(), Retention: time.Hour})
	require.NoError(t, err)
	defer db.Close()
	now := time.Now()
	md := otlpSample(now, 60)
	m := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().AppendEmpty()
	m.SetName("jobs.done")
	s := m.SetEmptySum()
	s.SetIsMonotonic(true)
	s.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	dp := s.DataPoints().AppendEmpty()
	dp.SetTimestamp(pcommon.NewTimestampFromTime(now))
	dp.SetIntValue(3)

	_, err = db.AppendOTLP(context.Background(), md)
	require.ErrorIs(t, err, ErrUnsupported)
	require.ErrorContains(t, err, "jobs.done")
	require.ErrorContains(t, err, "temporality")

	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	q, err := eng.NewInstantQuery(context.Background(), db.TSDB(), nil, `queue_depth`, now)
	require.NoError(t, err)
	v, err := q.Exec(context.Background()).Vector()
	require.NoError(t, err)
	require.Len(t, v, 1, "the gauge of the same batch was stored")
}

// An exponential histogram becomes a Prometheus native histogram (one
// series, no _bucket series), which histogram_quantile and
// histogram_count read; a summary becomes its _sum, _count and quantile
// series, as Prometheus's own OTLP endpoint stores them.
func TestExponentialHistogramAndSummary(t *testing.T) {
	db, err := Open(Options{Dir: t.TempDir(), Retention: time.Hour})
	require.NoError(t, err)
	defer db.Close()
	t0 := time.Now().Add(-2 * time.Minute).Truncate(time.Second)
	batch := func(at time.Time, n uint64) pmetric.Metrics {
		md, sm := newBatch()
		ts := pcommon.NewTimestampFromTime(at)

		m := sm.Metrics().AppendEmpty()
		m.SetName("rpc.server.duration")
		m.SetUnit("s")
		eh := m.SetEmptyExponentialHistogram()
		eh.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		dp := eh.DataPoints().AppendEmpty()
		dp.SetTimestamp(ts)
		dp.SetStartTimestamp(pcommon.NewTimestampFromTime(t0.Add(-time.Minute)))
		// Scale 0: bucket i (offset 0) holds (2^i, 2^(i+1)]. Every
		// observation is in (1, 2] or (2, 4], half each.
		dp.SetScale(0)
		dp.SetCount(n)
		dp.SetSum(float64(n) * 2.25)
		dp.Positive().SetOffset(0)
		dp.Positive().BucketCounts().FromRaw([]uint64{n / 2, n / 2})

		s := sm.Metrics().AppendEmpty()
		s.SetName("gc.pause")
		s.SetUnit("s")
		sp := s.SetEmptySummary().DataPoints().AppendEmpty()
		sp.SetTimestamp(ts)
		sp.SetCount(n)
		sp.SetSum(float64(n) * 0.01)
		for q, v := range map[float64]float64{0.5: 0.008, 0.99: 0.03} {
			qv := sp.QuantileValues().AppendEmpty()
			qv.SetQuantile(q)
			qv.SetValue(v)
		}
		return md
	}
	for i := range 3 {
		_, err := db.AppendOTLP(context.Background(), batch(t0.Add(time.Duration(i)*time.Minute), uint64(100*(i+1))))
		require.NoError(t, err)
	}
	at := t0.Add(2 * time.Minute)
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	query := func(q string) promql.Vector {
		t.Helper()
		qr, err := eng.NewInstantQuery(context.Background(), db.TSDB(), nil, q, at)
		require.NoError(t, err)
		v, err := qr.Exec(context.Background()).Vector()
		require.NoError(t, err, q)
		return v
	}

	v := query(`rpc_server_duration_seconds`)
	require.Len(t, v, 1)
	require.NotNil(t, v[0].H, "stored as a native histogram")
	require.Equal(t, 300.0, v[0].H.Count)
	require.Empty(t, query(`rpc_server_duration_seconds_bucket`), "no classic bucket series")
	require.Equal(t, 300.0, query(`histogram_count(rpc_server_duration_seconds)`)[0].F)
	// 200 new observations over the last 2 minutes, half at most 2 s: the
	// median is the upper edge of the (1, 2] bucket.
	v = query(`histogram_quantile(0.5, rate(rpc_server_duration_seconds[5m]))`)
	require.Len(t, v, 1)
	require.InDelta(t, 2.0, v[0].F, 1e-9)

	require.Equal(t, 300.0, query(`gc_pause_seconds_count`)[0].F)
	require.InDelta(t, 3.0, query(`gc_pause_seconds_sum`)[0].F, 1e-9)
	v = query(`gc_pause_seconds{quantile="0.99"}`)
	require.Len(t, v, 1)
	require.Equal(t, 0.03, v[0].F)
	require.Len(t, query(`gc_pause_seconds`), 2, "one series per quantile")
}

// A cumulative point's start time is stored as a zero sample, so that a
// counter's first export already counts in rate() and increase().
func TestStartTimeZeroSample(t *testing.T) {
	db, err := Open(Options{Dir: t.TempDir(), Retention: 24 * time.Hour})
	require.NoError(t, err)
	defer db.Close()
	start := time.Now().Add(-time.Minute).Truncate(time.Second)
	md, sm := newBatch()
	m := sm.Metrics().AppendEmpty()
	m.SetName("calls")
	sum := m.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	dp := sum.DataPoints().AppendEmpty()
	dp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	dp.SetTimestamp(pcommon.NewTimestampFromTime(start.Add(30 * time.Second)))
	dp.SetIntValue(12)
	_, err = db.AppendOTLP(context.Background(), md)
	require.NoError(t, err)

	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	q, err := eng.NewInstantQuery(context.Background(), db.TSDB(), nil, `increase(calls_total[2m])`, start.Add(30*time.Second))
	require.NoError(t, err)
	res := q.Exec(context.Background())
	require.NoError(t, res.Err)
	vec, err := res.Vector()
	require.NoError(t, err)
	require.Len(t, vec, 1, "one export of a new counter has an increase")
	require.InDelta(t, 12, vec[0].F, 1e-9)
}
