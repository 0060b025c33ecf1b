package api

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/query/traceql"
	"github.com/sightlinehq/sightline/internal/store"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/store/storage/storagetest"
	"github.com/sightlinehq/sightline/internal/workload"
)

// TestTenantQuerierConformance runs the shared reader suite through the
// tenant wrapper over a store that also holds another tenant's data, in
// the head and in blocks: the wrapper must answer exactly as a store
// holding the one tenant would.
func TestTenantQuerierConformance(t *testing.T) {
	ctx := context.Background()
	tag := func(td ptrace.Traces, ld plog.Logs, tenant string) {
		for _, rs := range td.ResourceSpans().All() {
			rs.Resource().Attributes().PutStr("tenant.id", tenant)
		}
		for _, rl := range ld.ResourceLogs().All() {
			rl.Resource().Attributes().PutStr("tenant.id", tenant)
		}
	}
	d := storagetest.NewData(300)
	tag(d.Traces, d.Logs, "a")
	d.Spans = storage.AppendTraces(nil, d.Traces)
	otherT, otherL := workload.New(6, storagetest.T0, workload.Options{}).Batch(300)
	tag(otherT, otherL, "b")

	db := openStore(t)
	require.NoError(t, db.AppendTraces(d.Traces))
	require.NoError(t, db.AppendLogs(d.Logs))
	require.NoError(t, db.AppendTraces(otherT))
	require.NoError(t, db.AppendLogs(otherL))
	run := func(name string) {
		q, err := db.Querier(ctx)
		require.NoError(t, err)
		defer q.Close()
		t.Run(name, func(t *testing.T) { storagetest.RunQuerier(t, newTenantQuerier(q, "tenant.id", "a"), d) })
	}
	run("head")
	require.NoError(t, db.Flush(ctx))
	run("blocks")
}

// A search that takes its candidates from the trace tables through the
// tenant wrapper answers with the tenant's traces only: the tables name
// every tenant's long traces, and each is checked through the wrapper.
func TestTenantSearchFromTraceTables(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	owner := map[storage.TraceID]string{}
	for i, tenant := range []string{"a", "b"} {
		td, _ := workload.New(uint64(7+i), storagetest.T0, workload.Options{}).Batch(600)
		for _, rs := range td.ResourceSpans().All() {
			rs.Resource().Attributes().PutStr("tenant.id", tenant)
			for _, ss := range rs.ScopeSpans().All() {
				for _, s := range ss.Spans().All() {
					owner[storage.TraceID(s.TraceID())] = tenant
				}
			}
		}
		require.NoError(t, db.AppendTraces(td))
	}
	require.NoError(t, db.Flush(ctx))
	q, err := db.Querier(ctx)
	require.NoError(t, err)
	defer q.Close()
	var long int
	require.NoError(t, q.(storage.TraceFinder).FindTraces(ctx, &storage.TraceFilter{MinDuration: int64(8 * time.Millisecond), Errors: true}, func(id storage.TraceID) bool {
		if owner[id] == "b" {
			long++
		}
		return true
	}))
	require.NotZero(t, long, "the other tenant has no long trace; the case tests nothing")

	pq, err := traceql.Parse(`{ traceDuration > 8ms && status = error }`)
	require.NoError(t, err)
	all, err := traceql.Search(ctx, newTenantQuerier(q, "tenant.id", "a"), traceql.SearchRequest{Query: pq, Limit: 1 << 20})
	require.NoError(t, err)
	require.Greater(t, len(all.Traces), 3, "too few matches for a limit of 3 to test anything")
	match := map[storage.TraceID]bool{}
	for _, tr := range all.Traces {
		require.Equal(t, "a", owner[tr.TraceID], "trace %s", tr.TraceID)
		match[tr.TraceID] = true
	}
	res, err := traceql.Search(ctx, newTenantQuerier(q, "tenant.id", "a"), traceql.SearchRequest{Query: pq, Limit: 3})
	require.NoError(t, err)
	require.Len(t, res.Traces, 3)
	for _, tr := range res.Traces {
		require.True(t, match[tr.TraceID], "trace %s of tenant %q", tr.TraceID, owner[tr.TraceID])
	}
}

// openStore opens a store in a test directory that compacts nothing and
// writes blocks only when flushed; the test's cleanup closes it.
func openStore(t testing.TB) *store.DB {
	t.Helper()
	dir := t.TempDir()
	bucket, err := objstore.OpenFilesystem(filepath.Join(dir, "blocks"))
	require.NoError(t, err)
	db, err := store.Open(context.Background(), store.Options{Dir: dir, Bucket: bucket, CompactionInterval: -1, MaxBlockDuration: time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}
