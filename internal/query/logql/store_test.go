package logql_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"

	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/query/logql"
	"github.com/sightlinehq/sightline/internal/store"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/workload"
)

// TestEvalOverStore runs LogQL over the real store on generated logs, in
// the head, in blocks and after compaction, against plain-Go expectations.
func TestEvalOverStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	bucket, err := objstore.OpenFilesystem(filepath.Join(dir, "blocks"))
	require.NoError(t, err)
	db, err := store.Open(ctx, store.Options{Dir: dir, Bucket: bucket, CompactionInterval: -1, MaxBlockDuration: time.Hour, CompactMinBlocks: 2})
	require.NoError(t, err)
	defer db.Close()

	t0 := time.Unix(1_700_000_000, 0)
	var recs []storage.LogRecord
	for i := range 3 {
		_, ld := workload.New(uint64(i+1), t0, workload.Options{}).Batch(200)
		require.NoError(t, db.AppendLogs(ld))
		recs = storage.AppendLogs(recs, ld)
	}
	require.NotEmpty(t, recs)
	start, end := t0.Add(-time.Minute).UnixNano(), t0.Add(time.Hour).UnixNano()

	// Expectations.
	perService := map[string]int{}
	errorsPerService := map[string]int{}
	byTrace := map[storage.TraceID][]string{}
	for _, r := range recs {
		svc := r.Resource.ServiceName()
		perService[svc]++
		if r.SeverityNumber >= 17 {
			errorsPerService[svc]++
		}
		byTrace[r.TraceID] = append(byTrace[r.TraceID], r.Body.AsString())
	}
	var someTrace storage.TraceID
	for id := range byTrace {
		if len(byTrace[id]) > 1 {
			someTrace = id
			break
		}
	}
	require.False(t, someTrace.IsEmpty())

	check := func(phase string) {
		q, err := db.Querier(ctx)
		require.NoError(t, err)
		defer q.Close()
		for svc, n := range perService {
			e, err := logql.Parse(fmt.Sprintf(`{service_name=%q}`, svc))
			require.NoError(t, err)
			streams, _, err := logql.Select(ctx, q, logql.SelectRequest{Expr: e.Log, Start: start, End: end, Limit: 1 << 20})
			require.NoError(t, err)
			got := 0
			for _, s := range streams {
				got += len(s.Entries)
			}
			require.Equal(t, n, got, "%s: lines of %s", phase, svc)
		}

		e, err := logql.Parse(fmt.Sprintf(`{service_name=~".+"} | trace_id=%q`, someTrace))
		require.NoError(t, err)
		streams, _, err := logql.Select(ctx, q, logql.SelectRequest{Expr: e.Log, Start: start, End: end, Limit: 1000})
		require.NoError(t, err)
		var lines []string
		for _, s := range streams {
			for _, en := range s.Entries {
				lines = append(lines, en.Line)
			}
		}
		want := slices.Clone(byTrace[someTrace])
		slices.Sort(want)
		slices.Sort(lines)
		require.Equal(t, want, lines, "%s: lines of trace %s", phase, someTrace)

		m, err := logql.Parse(`sum by (service_name) (count_over_time({service_name=~".+"} | detected_level="error" [2h]))`)
		require.NoError(t, err)
		series, _, err := logql.Eval(ctx, q, logql.MetricRequest{Expr: m.Metric, Start: end, End: end, Step: int64(time.Second)})
		require.NoError(t, err)
		got := map[string]int{}
		for _, s := range series {
			v, _ := s.Metric.Get("service_name")
			require.Len(t, s.Points, 1)
			got[v] = int(s.Points[0].V)
		}
		require.Equal(t, errorsPerService, got, "%s: error lines per service", phase)

		// Every line is its own stream (trace_id is metadata), yet a sum
		// by service stays within a series limit of one per service: it is
		// grouped as the records stream. Without the sum the limit refuses
		// it.
		m, err = logql.Parse(`sum by (service_name) (count_over_time({service_name=~".+"} [2h]))`)
		require.NoError(t, err)
		series, _, err = logql.Eval(ctx, q, logql.MetricRequest{Expr: m.Metric, Start: end, End: end, Step: int64(time.Second), MaxSeries: len(perService)})
		require.NoError(t, err)
		got = map[string]int{}
		for _, s := range series {
			v, _ := s.Metric.Get("service_name")
			got[v] = int(s.Points[0].V)
		}
		require.Equal(t, perService, got, "%s: lines per service, a retried batch counted once", phase)
		m, err = logql.Parse(`count_over_time({service_name=~".+"} [2h])`)
		require.NoError(t, err)
		_, _, err = logql.Eval(ctx, q, logql.MetricRequest{Expr: m.Metric, Start: end, End: end, Step: int64(time.Second), MaxSeries: len(perService)})
		require.ErrorIs(t, err, logql.ErrTooManySeries)
	}
	check("head")
	require.NoError(t, db.Flush(ctx))
	check("blocks")
	_, ld := workload.New(1, t0, workload.Options{}).Batch(200) // a retried batch
	require.NoError(t, db.AppendLogs(ld))
	require.NoError(t, db.Flush(ctx))
	db.Compact(ctx)
	check("compacted")

}
