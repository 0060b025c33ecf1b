package store

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/store/storage/storagetest"
)

// TestQuerierConformance runs the shared reader suite over the store at
// every stage of its data's life: all in the head, half in a block and
// half in the head, in two blocks, and compacted into one.
func TestQuerierConformance(t *testing.T) {
	ctx := context.Background()
	// Over 4,096 spans: the head hands them out in chunks.
	d := storagetest.NewData(600)
	a, b := storagetest.Split(d)
	db := openTestDB(t, t.TempDir(), func(o *Options) { o.CompactMinBlocks = 2 })
	run := func(name string) {
		q, err := db.Querier(ctx)
		require.NoError(t, err)
		defer q.Close()
		t.Run(name, func(t *testing.T) { storagetest.RunQuerier(t, q, d) })
	}
	load := func(x storagetest.Data) {
		require.NoError(t, db.AppendTraces(x.Traces))
		require.NoError(t, db.AppendLogs(x.Logs))
	}
	load(a)
	require.NoError(t, db.Flush(ctx))
	load(b)
	run("head and block")
	require.NoError(t, db.Flush(ctx))
	run("blocks")
	db.Compact(ctx)
	require.Len(t, db.BlockMetas(), 2, "one block per signal after compaction")
	run("compacted")

	fresh := openTestDB(t, t.TempDir(), nil)
	require.NoError(t, fresh.AppendTraces(d.Traces))
	require.NoError(t, fresh.AppendLogs(d.Logs))
	q, err := fresh.Querier(ctx)
	require.NoError(t, err)
	defer q.Close()
	t.Run("head", func(t *testing.T) { storagetest.RunQuerier(t, q, d) })
}
