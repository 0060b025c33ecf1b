package store_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store"
	"github.com/sightlinehq/sightline/internal/store/headproto"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/store/storage/storagetest"
)

// TestQuerierSeesIngesterHandoffOnce runs the shared reader suite over a
// querier's merged view (its bucket snapshot and an ingester over
// headproto) at every step of the data's way from an ingester's head into
// a merged block, with the querier's and the ingester's polls falling on
// either side: each span and log record must be read exactly once.
func TestQuerierSeesIngesterHandoffOnce(t *testing.T) {
	ctx := context.Background()
	bucket := filepath.Join(t.TempDir(), "bucket")
	open := func(mod func(*store.Options)) *store.DB {
		st, err := objstore.OpenFilesystem(bucket)
		require.NoError(t, err)
		o := store.Options{Dir: t.TempDir(), Bucket: st, Shared: true, CompactionInterval: -1, PollInterval: time.Hour,
			MaxBlockDuration: time.Hour, CompactMinBlocks: 2}
		if mod != nil {
			mod(&o)
		}
		db, err := store.Open(ctx, o)
		require.NoError(t, err)
		t.Cleanup(func() { db.Close() })
		return db
	}
	ingester := open(func(o *store.Options) { o.Writer = "ingester-0" })
	querierDB := open(nil)
	leaseStore, err := objstore.OpenFilesystem(bucket)
	require.NoError(t, err)
	lease := store.NewLease(leaseStore, "compactor", "compactor-0", time.Minute, nil)
	compactor := open(func(o *store.Options) { o.Lease = lease })

	srv := httptest.NewServer(headproto.Handler(ingester))
	defer srv.Close()
	client := headproto.NewClient(srv.URL, http.DefaultClient)

	d := storagetest.NewData(300)
	a, b := storagetest.Split(d)
	run := func(name string) {
		t.Helper()
		local, covered := querierDB.Covering(ctx)
		remote, instance, err := client.Querier(ctx, covered)
		require.Equal(t, "ingester-0", instance)
		require.NoError(t, err)
		q := storage.NewMergeQuerier(local, remote)
		defer q.Close()
		t.Run(name, func(t *testing.T) { storagetest.RunQuerier(t, q, d) })
	}
	load := func(x storagetest.Data) {
		require.NoError(t, ingester.AppendTraces(x.Traces))
		require.NoError(t, ingester.AppendLogs(x.Logs))
	}

	load(a)
	require.NoError(t, ingester.Flush(ctx))
	load(b)
	run("an unpolled block and the live head")
	require.NoError(t, querierDB.SyncBlocks(ctx))
	run("a polled block and the live head")

	release := ingester.HoldBlockWriter()
	require.NoError(t, ingester.CutHead())
	run("a head cut and not yet written")
	// Once a querier covers the cut head's blocks (it polled them while
	// the ingester had not yet dropped the head), the head is not read.
	all, _, err := client.Querier(ctx, func(string) bool { return true })
	require.NoError(t, err)
	require.NoError(t, all.Spans(ctx, &storage.SpanQuery{}, func(s *storage.Span) bool {
		t.Fatalf("span %s read from a part the querier covers", s.SpanID)
		return false
	}))
	release()
	require.NoError(t, ingester.FlushHeads(ctx))
	run("the cut head written, not yet polled")

	ok, err := lease.Try(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	compactor.Compact(ctx)
	require.NoError(t, ingester.SyncBlocks(ctx))
	run("merged and polled by the ingester, not the querier: the handoff serves what it lacks")
	require.NoError(t, querierDB.SyncBlocks(ctx))
	for _, m := range querierDB.BlockMetas() {
		require.Equal(t, 1, m.Level, "the querier reads the merge only")
		require.Len(t, m.Level0, 2)
	}
	run("merged and polled by both")
}
