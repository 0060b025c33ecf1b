package metrics

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// gauges is one batch of the gauge queue.depth, one point per queue
// named in queues, at t.
func gauges(at time.Time, queues ...string) pmetric.Metrics {
	md, sm := newBatch()
	g := sm.Metrics().AppendEmpty()
	g.SetName("queue.depth")
	pts := g.SetEmptyGauge().DataPoints()
	for i, q := range queues {
		p := pts.AppendEmpty()
		p.SetTimestamp(pcommon.NewTimestampFromTime(at))
		p.SetDoubleValue(float64(i))
		p.Attributes().PutStr("queue", q)
	}
	return md
}

// samplesByQueue counts the stored samples of queue_depth per queue.
func samplesByQueue(t *testing.T, db *DB) map[string]int {
	t.Helper()
	q, err := db.TSDB().Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer q.Close()
	out := map[string]int{}
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "queue_depth"))
	for ss.Next() {
		s := ss.At()
		it := s.Iterator(nil)
		for it.Next() != 0 {
			out[s.Labels().Get("queue")]++
		}
	}
	require.NoError(t, ss.Err())
	return out
}

func TestSeriesLimit(t *testing.T) {
	dir := t.TempDir()
	// Three series: queue_depth for a, b and c (a resource of only
	// service.name has no target_info).
	db, err := Open(Options{Dir: dir, Retention: 24 * time.Hour, MaxSeries: 3})
	require.NoError(t, err)
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)

	// Two of five new series are past the limit: the three that fit are
	// stored, and the error says what was refused, as permanent.
	_, err = db.AppendOTLP(context.Background(), gauges(t0, "a", "b", "c", "d", "e"))
	require.ErrorIs(t, err, ErrSeriesLimit)
	require.NotErrorIs(t, err, ErrWrite)
	require.ErrorContains(t, err, "2 samples of new series refused")
	require.Equal(t, map[string]int{"a": 1, "b": 1, "c": 1}, samplesByQueue(t, db))
	require.EqualValues(t, 3, db.HeadSeries())

	// Series the head holds keep taking samples, whatever comes before
	// them in the request.
	_, err = db.AppendOTLP(context.Background(), gauges(t0.Add(time.Second), "f", "a", "b", "c"))
	require.ErrorIs(t, err, ErrSeriesLimit)
	require.Equal(t, map[string]int{"a": 2, "b": 2, "c": 2}, samplesByQueue(t, db))
	_, err = db.AppendOTLP(context.Background(), gauges(t0.Add(2*time.Second), "a", "b"))
	require.NoError(t, err)
	require.EqualValues(t, 3, db.SeriesLimitRefusals())

	// Remote write: the refusal matches storage.ErrOutOfBounds, which
	// Prometheus's write handler answers with 400, not a 5xx to retry.
	app := db.Appender(context.Background())
	_, err = app.Append(0, labels.FromStrings("__name__", "up", "job", "new"), t0.UnixMilli(), 1)
	require.ErrorIs(t, err, storage.ErrOutOfBounds)
	require.ErrorIs(t, err, ErrSeriesLimit)
	require.NoError(t, app.Rollback())
	require.NoError(t, db.Close())

	// A lower limit after a restart does not drop what was acknowledged:
	// the WAL replay restores every series, and new ones are refused.
	db, err = Open(Options{Dir: dir, Retention: 24 * time.Hour, MaxSeries: 2})
	require.NoError(t, err)
	defer db.Close()
	require.EqualValues(t, 3, db.HeadSeries())
	require.Equal(t, map[string]int{"a": 3, "b": 3, "c": 2}, samplesByQueue(t, db))
	_, err = db.AppendOTLP(context.Background(), gauges(t0.Add(3*time.Second), "g"))
	require.ErrorIs(t, err, ErrSeriesLimit)
	_, err = db.AppendOTLP(context.Background(), gauges(t0.Add(3*time.Second), "c"))
	require.NoError(t, err)
	require.Equal(t, map[string]int{"a": 3, "b": 3, "c": 3}, samplesByQueue(t, db))
}

// With no limit, the head takes every series.
func TestNoSeriesLimit(t *testing.T) {
	db, err := Open(Options{Dir: t.TempDir(), Retention: 24 * time.Hour})
	require.NoError(t, err)
	defer db.Close()
	queues := make([]string, 1000)
	for i := range queues {
		queues[i] = fmt.Sprint(i)
	}
	_, err = db.AppendOTLP(context.Background(), gauges(time.Now(), queues...))
	require.NoError(t, err)
	require.Len(t, samplesByQueue(t, db), 1000)
	require.Zero(t, db.SeriesLimitRefusals())
}
