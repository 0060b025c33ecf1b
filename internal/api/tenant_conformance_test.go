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

	dir := t.TempDir()
	bucket, err := objstore.OpenFilesystem(filepath.Join(dir, "blocks"))
	require.NoError(t, err)
	db, err := store.Open(ctx, store.Options{Dir: dir, Bucket: bucket, CompactionInterval: -1, MaxBlockDuration: time.Hour})
	require.NoError(t, err)
	defer db.Close()
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
