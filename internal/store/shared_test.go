package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/sightlinehq/sightline/internal/store/block"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/workload"
)

// openSharedDB opens a store as one process of several on the bucket in
// bucketDir: its own data directory and its own handle on the bucket.
func openSharedDB(t *testing.T, bucketDir string, clock *fakeClock, mod func(*Options)) *DB {
	t.Helper()
	o := Options{Dir: t.TempDir(), Bucket: openBucket(t, bucketDir), Shared: true, CompactionInterval: -1,
		PollInterval: time.Hour, MaxBlockDuration: time.Hour, CompactMinBlocks: 2, DeleteDelay: 10 * time.Minute, Now: clock.Now}
	if mod != nil {
		mod(&o)
	}
	db, err := Open(context.Background(), o)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func spanTotal(want map[storage.TraceID]int) int64 {
	var n int64
	for _, c := range want {
		n += int64(c)
	}
	return n
}

func merge(dst map[storage.TraceID]int, src map[storage.TraceID]int) {
	for id, n := range src {
		dst[id] += n
	}
}

// bucketState counts the bucket's block directories: visible, marked as
// replaced, incomplete.
func bucketState(t *testing.T, db *DB) (visible, marked, incomplete int) {
	t.Helper()
	listed, err := db.listBucket(context.Background())
	require.NoError(t, err)
	for _, lb := range listed {
		switch {
		case !lb.complete:
			incomplete++
		case lb.compacted:
			marked++
		default:
			visible++
		}
	}
	return
}

// TestSharedBucketEachSpanOnce runs two ingesters, a querier and two
// compactors as separate stores on one bucket: every span is read exactly
// once by a reader, before, during and after a merge; replaced blocks stay
// until the delete delay for readers that listed them earlier; and of two
// compactors only the lease holder merges.
func TestSharedBucketEachSpanOnce(t *testing.T) {
	ctx := context.Background()
	bucket := filepath.Join(t.TempDir(), "bucket")
	clock := newFakeClock()
	ingA := openSharedDB(t, bucket, clock, func(o *Options) { o.Writer = "ingester-a" })
	ingB := openSharedDB(t, bucket, clock, func(o *Options) { o.Writer = "ingester-b" })
	querier := openSharedDB(t, bucket, clock, nil)
	compactor := func(id string) (*DB, *Lease) {
		l := NewLease(openBucket(t, bucket), "compactor", id, time.Minute, clock.Now)
		return openSharedDB(t, bucket, clock, func(o *Options) { o.Lease = l }), l
	}
	// Each compactor contends for the lease as it opens: the first takes it.
	comp1, lease1 := compactor("compactor-1")
	require.True(t, try(t, lease1))
	comp2, lease2 := compactor("compactor-2")

	want := map[storage.TraceID]int{}
	var lds []plog.Logs
	for i, ing := range []*DB{ingA, ingB} {
		w, ld := appendFlushed(t, ing, workload.New(uint64(20+i), clock.Now(), workload.Options{}), 3)
		merge(want, w)
		lds = append(lds, ld...)
	}
	total := spanTotal(want)

	require.NoError(t, querier.syncBlocks(ctx))
	requireAll(t, querier, want, lds)
	require.Equal(t, total, querier.Stats().BlockSpans, "each span once through the querier")
	require.Equal(t, 12, querier.Stats().Blocks)

	// Only the lease holder merges.
	require.True(t, try(t, lease1))
	require.False(t, try(t, lease2))
	comp2.Compact(ctx)
	visible, marked, _ := bucketState(t, querier)
	require.Equal(t, 12, visible, "the compactor without the lease merged")
	require.Zero(t, marked)

	// A querier opened before the merge keeps reading what it listed.
	q, err := querier.Querier(ctx)
	require.NoError(t, err)
	comp1.Compact(ctx)
	require.Empty(t, comp1.Problems())
	visible, marked, _ = bucketState(t, querier)
	require.Equal(t, 2, visible, "12 blocks of two signals merge two at a time into one block each")
	// Per signal: 4 and 2 level-0 blocks merged, then the two outputs.
	require.Equal(t, 2*(6+2), marked, "every replaced block is marked, inputs of the upper merge included")
	for id, n := range want {
		spans, err := q.TraceByID(ctx, id, 0, 0)
		require.NoError(t, err)
		require.Len(t, spans, n)
	}
	q.Close()

	// After a poll every process reads the merged blocks, each span once.
	for _, db := range []*DB{querier, ingA, comp2} {
		require.NoError(t, db.syncBlocks(ctx))
		require.Equal(t, 2, db.Stats().Blocks)
		require.Equal(t, total, db.Stats().BlockSpans)
		requireAll(t, db, want, lds)
	}

	// Replaced blocks go once the delay has passed, and only then.
	comp1.Compact(ctx)
	_, marked, _ = bucketState(t, querier)
	require.Equal(t, 16, marked, "replaced blocks were deleted before the delete delay")
	clock.Add(11 * time.Minute)
	require.True(t, try(t, lease1))
	comp1.Compact(ctx)
	visible, marked, incomplete := bucketState(t, querier)
	require.Equal(t, [3]int{2, 0, 0}, [3]int{visible, marked, incomplete})
	requireAll(t, querier, want, lds)

	// The holder stops: the standby takes over and merges new blocks.
	w, ld := appendFlushed(t, ingA, workload.New(30, clock.Now(), workload.Options{}), 2)
	merge(want, w)
	lds = append(lds, ld...)
	require.NoError(t, comp1.Close())
	require.True(t, try(t, lease2), "the standby did not take the released lease")
	comp2.Compact(ctx)
	require.NoError(t, querier.syncBlocks(ctx))
	require.Equal(t, spanTotal(want), querier.Stats().BlockSpans)
	requireAll(t, querier, want, lds)
	levels := map[int]int{}
	for _, m := range querier.BlockMetas() {
		levels[m.Level]++
	}
	require.Zero(t, levels[0], "the new compactor left level-0 blocks unmerged: %v", levels)
}

// An ingester replays its WAL against its own blocks' claims only: another
// ingester's blocks, or a merge of both, must not make it skip segments
// it never wrote to a block.
func TestSharedReplayTrustsOnlyItsOwnClaims(t *testing.T) {
	ctx := context.Background()
	bucket := filepath.Join(t.TempDir(), "bucket")
	clock := newFakeClock()
	dirA := t.TempDir()
	ingA := openSharedDB(t, bucket, clock, func(o *Options) { o.Writer = "a"; o.Dir = dirA })
	ingB := openSharedDB(t, bucket, clock, func(o *Options) { o.Writer = "b" })
	want, lds := appendFlushed(t, ingA, workload.New(40, clock.Now(), workload.Options{}), 1)
	appendFlushed(t, ingB, workload.New(41, clock.Now(), workload.Options{}), 6)
	claimB := 0
	for _, m := range ingB.BlockMetas() {
		claimB = max(claimB, m.WALClaim("b"))
	}
	require.Greater(t, claimB, 2, "b's blocks claim segments a has not flushed")

	// a takes more it does not flush, and stops.
	g := workload.New(42, clock.Now(), workload.Options{})
	td, ld := g.Batch(30)
	require.NoError(t, ingA.AppendTraces(td))
	require.NoError(t, ingA.AppendLogs(ld))
	merge(want, traceIDs(td))
	lds = append(lds, ld)
	require.NoError(t, ingA.Close())
	reopened := openSharedDB(t, bucket, clock, func(o *Options) { o.Writer = "a"; o.Dir = dirA })
	require.NotZero(t, reopened.Stats().HeadSpans, "a's unflushed spans were not replayed beside b's blocks")
	requireAll(t, reopened, want, lds)
	require.NoError(t, reopened.Close())

	// Meanwhile the compactor merges a's and b's blocks together.
	lease := NewLease(openBucket(t, bucket), "compactor", "c", time.Minute, clock.Now)
	comp := openSharedDB(t, bucket, clock, func(o *Options) { o.Lease = lease })
	require.True(t, try(t, lease))
	comp.Compact(ctx)
	var mixed bool
	for _, m := range comp.BlockMetas() {
		if m.Signal == block.Traces && len(m.WALSegments) == 2 {
			mixed = true
			require.Equal(t, 1, m.WALClaim("a"))
			require.Greater(t, m.WALClaim("b"), 1)
		}
	}
	require.True(t, mixed, "no merge of both ingesters' blocks: %+v", comp.BlockMetas())

	reopened = openSharedDB(t, bucket, clock, func(o *Options) { o.Writer = "a"; o.Dir = dirA })
	require.NotZero(t, reopened.Stats().HeadSpans, "a's unflushed spans were not replayed beside merged blocks")
	requireAll(t, reopened, want, lds)
}

// Background compaction of a shared bucket without a lease would let
// every process merge the same blocks.
func TestSharedCompactionNeedsALease(t *testing.T) {
	_, err := Open(context.Background(), Options{Dir: t.TempDir(), Bucket: openBucket(t, t.TempDir()), Shared: true})
	require.ErrorContains(t, err, "needs a lease")
}

// A store opened as its bucket's only process refuses a bucket that roles
// share, where it would delete and merge their blocks: one with an
// ingester's blocks, or with a compactor lease.
func TestAllInOneRefusesASharedBucket(t *testing.T) {
	ctx := context.Background()
	for name, populate := range map[string]func(t *testing.T, bucket string){
		"an ingester's blocks": func(t *testing.T, bucket string) {
			ing := openSharedDB(t, bucket, newFakeClock(), func(o *Options) { o.Writer = "ingester-0" })
			appendFlushed(t, ing, workload.New(50, time.Now(), workload.Options{}), 1)
		},
		"a compactor lease": func(t *testing.T, bucket string) {
			l := NewLease(openBucket(t, bucket), "compactor", "compactor-0", time.Minute, nil)
			ok, err := l.Try(ctx)
			require.NoError(t, err)
			require.True(t, ok)
		},
	} {
		t.Run(name, func(t *testing.T) {
			bucket := filepath.Join(t.TempDir(), "bucket")
			populate(t, bucket)
			_, err := Open(ctx, Options{Dir: t.TempDir(), Bucket: openBucket(t, bucket), CompactionInterval: -1})
			require.ErrorIs(t, err, ErrSharedBucket)
			require.ErrorContains(t, err, "role ingester, querier or compactor")
		})
	}
}
