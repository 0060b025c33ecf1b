package metrics

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

// An exemplar that the head drops at commit, for being older than the
// newest of its series by more than the out-of-order window, is still in
// the WAL. Replaying it must not print a warning per exemplar: one line
// says how many were skipped.
func TestReplaySummarisesSkippedExemplars(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(Options{Dir: dir, Retention: 24 * time.Hour})
	require.NoError(t, err)

	series := labels.FromStrings("__name__", "calls_total", "job", "checkout")
	t0 := time.Now().Add(-time.Hour).UnixMilli()
	app := db.Appender(context.Background())
	ref, err := app.Append(0, series, t0, 1)
	require.NoError(t, err)
	_, err = app.AppendExemplar(ref, series, exemplar.Exemplar{Labels: labels.FromStrings("trace_id", "a"), Value: 1, Ts: t0, HasTs: true})
	require.NoError(t, err)
	require.NoError(t, app.Commit())

	// Both validate against the stored newest (t0); at commit the second is
	// older than the first by more than the window, so the head drops it.
	const dropped = 3
	app = db.Appender(context.Background())
	ref, err = app.Append(ref, series, t0+60_000, 2)
	require.NoError(t, err)
	_, err = app.AppendExemplar(ref, series, exemplar.Exemplar{Labels: labels.FromStrings("trace_id", "b"), Value: 2, Ts: t0 + (30 * time.Minute).Milliseconds(), HasTs: true})
	require.NoError(t, err)
	for i := range dropped {
		_, err = app.AppendExemplar(ref, series, exemplar.Exemplar{Labels: labels.FromStrings("trace_id", "old"), Value: float64(3 + i), Ts: t0 + int64(i+1), HasTs: true})
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	require.NoError(t, db.Close())

	var out bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	db, err = Open(Options{Dir: dir, Retention: 24 * time.Hour, Logger: logger})
	require.NoError(t, err)
	defer db.Close()

	log := out.String()
	require.NotContains(t, log, exemplarReplayMsg)
	require.Equal(t, 1, strings.Count(log, "exemplars_skipped="), log)
	require.Contains(t, log, "exemplars_skipped=3")
	// The TSDB's other records still pass through.
	require.Contains(t, log, "Replaying WAL")
}
