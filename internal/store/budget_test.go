package store

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sightlinehq/sightline/internal/store/block"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/store/wal"
	"github.com/sightlinehq/sightline/internal/workload"
)

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// While the block writer is held up, appends fill the budget and are then
// refused, retryably and before anything is written; once blocks are
// written, appends are taken again, and nothing acknowledged is lost.
func TestMemoryBudgetRefusesUntilBlocksAreWritten(t *testing.T) {
	const budget = 8 << 20
	db := openTestDB(t, t.TempDir(), func(o *Options) { o.MemoryBudget = budget })
	g := workload.New(7, time.Now(), workload.Options{})
	want := map[storage.TraceID]int{}
	var lds []plog.Logs

	db.flushMu.Lock() // the writer stalls, as a slow disk would stall it
	var refused error
	for i := 0; i < 10_000 && refused == nil; i++ {
		td, ld := g.Batch(20)
		if err := db.AppendTraces(td); err != nil {
			refused = err
			break
		}
		for id, n := range traceIDs(td) {
			want[id] += n
		}
		if err := db.AppendLogs(ld); err != nil {
			refused = err
			break
		}
		lds = append(lds, ld)
	}
	require.ErrorIs(t, refused, ErrOverBudget)
	st := db.Stats()
	require.GreaterOrEqual(t, st.MemoryBytes, int64(budget))
	require.Positive(t, st.RefusedSpans+st.RefusedLogs)
	require.Positive(t, st.PendingHeads, "the head is cut at a quarter of the budget")
	// Refused appends wrote nothing: the WAL holds only what was taken.
	td, _ := g.Batch(5)
	require.ErrorIs(t, db.AppendTraces(td), ErrOverBudget)
	requireAll(t, db, want, lds)

	db.flushMu.Unlock()
	waitUntil(t, "appends to be taken again", func() bool {
		td, _ := g.Batch(1)
		err := db.AppendTraces(td)
		if err == nil {
			for id, n := range traceIDs(td) {
				want[id] += n
			}
		}
		return err == nil
	})
	require.Less(t, db.Stats().MemoryBytes, int64(budget))
	requireAll(t, db, want, lds)
}

// A head is cut when it is MaxBlockDuration old, by the DB's clock.
func TestHeadIsCutByAge(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	db := openTestDB(t, t.TempDir(), func(o *Options) {
		o.MaxBlockDuration = 30 * time.Second
		o.Now = func() time.Time { return time.Unix(0, now.Load()) }
	})
	td, _ := workload.New(3, time.Now(), workload.Options{}).Batch(5)
	require.NoError(t, db.AppendTraces(td))
	db.maybeCut()
	require.Equal(t, 0, db.Stats().Blocks, "a young head stays")
	now.Add(int64(31 * time.Second))
	db.maybeCut()
	waitUntil(t, "the old head to reach a block", func() bool { return db.Stats().Blocks == 1 })
	st := db.Stats()
	require.Zero(t, st.HeadSpans)
	require.Zero(t, st.MemoryBytes)
	require.Equal(t, int64(td.SpanCount()), st.BlockSpans)
}

// A WAL longer than the budget replays into blocks as it goes: replay
// never holds more than a head's share, and every record comes back.
func TestReplayStaysWithinBudget(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir, nil) // no budget: everything stays in the WAL
	g := workload.New(11, time.Now(), workload.Options{})
	want := map[storage.TraceID]int{}
	for range 200 {
		td, _ := g.Batch(20)
		require.NoError(t, db.AppendTraces(td))
		for id, n := range traceIDs(td) {
			want[id] += n
		}
	}
	held := db.Stats().MemoryBytes
	require.NoError(t, db.Close())

	const budget = 4 << 20
	require.Greater(t, held, int64(budget), "the WAL must hold more than the budget for this test")
	db = openTestDB(t, dir, func(o *Options) { o.MemoryBudget = budget })
	st := db.Stats()
	require.Positive(t, st.Blocks, "replay wrote blocks on the way")
	require.Less(t, st.MemoryBytes, int64(budget/4)+(2<<20))
	requireAll(t, db, want, nil)
}

// The estimate the budget counts tracks the heap the head really holds. It
// is measured in a child process of its own, where no other test's
// garbage moves the heap while it is read.
func TestHeadMemoryEstimate(t *testing.T) {
	if os.Getenv("SIGHTLINE_HEAD_MEMORY_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHeadMemoryEstimate$", "-test.v")
		cmd.Env = append(os.Environ(), "SIGHTLINE_HEAD_MEMORY_CHILD=1")
		out, err := cmd.CombinedOutput()
		t.Logf("%s", out)
		require.NoError(t, err)
		return
	}
	for _, signal := range []string{"spans", "logs"} {
		g := workload.New(5, time.Now(), workload.Options{})
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		h := newHead(0)
		var est int64
		for range 100 {
			// Decoded from the wire, as the receivers hand them over.
			td, ld := g.Batch(20)
			if signal == "spans" {
				b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
				require.NoError(t, err)
				td, err = (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
				require.NoError(t, err)
				est += h.appendSpans(storage.AppendTraces(nil, td), 0)
			} else {
				b, err := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
				require.NoError(t, err)
				ld, err = (&plog.ProtoUnmarshaler{}).UnmarshalLogs(b)
				require.NoError(t, err)
				est += h.appendLogs(storage.AppendLogs(nil, ld), 0)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		real := int64(after.HeapAlloc) - int64(before.HeapAlloc)
		runtime.KeepAlive(h)
		n := int64(h.spans.len() + h.logs.len())
		t.Logf("%d %s: estimate %d B (%d B each), heap %d B (%d B each)", n, signal, est, est/n, real, real/n)
		require.InDelta(t, 1.0, float64(est)/float64(real), 0.35, "%s: estimate %d, heap %d", signal, est, real)
	}
}

// A span stamped far in the future ages from when its block was written,
// so it cannot keep the block, or those compacted with it, forever.
func TestFutureTimestampDoesNotPinRetention(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	db := openTestDB(t, t.TempDir(), func(o *Options) {
		o.RetentionAge = 24 * time.Hour
		o.Now = func() time.Time { return time.Unix(0, now.Load()) }
	})
	td, _ := workload.New(9, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), workload.Options{}).Batch(3)
	require.NoError(t, db.AppendTraces(td))
	require.NoError(t, db.Flush(t.Context()))
	require.Equal(t, 1, db.Stats().Blocks)
	require.Greater(t, db.BlockMetas()[0].MaxTime, time.Date(2199, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano(), "stored as sent")

	db.ApplyRetention(t.Context())
	require.Equal(t, 1, db.Stats().Blocks, "inside the window")
	now.Add(int64(25 * time.Hour))
	db.ApplyRetention(t.Context())
	require.Equal(t, 0, db.Stats().Blocks, "aged out by its write time")
}

// While level-0 blocks wait to be merged in StallBlocks, the signal's
// ingest is refused retryably (its admission and its appends), the other
// signal's is not; the level-0 compactor, woken by the refusal's flush,
// merges them, and ingest is taken again with nothing acknowledged lost.
func TestCompactionBacklogStallsIngestUntilMerged(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t, t.TempDir(), func(o *Options) {
		o.CompactMinBlocks, o.StallBlocks = 2, 3
		o.CompactionInterval = time.Hour // the level-0 compactor runs, woken by flushes
	})
	g := workload.New(9, time.Now(), workload.Options{})
	want := map[storage.TraceID]int{}
	appendTracesFlushed := func() {
		td, _ := g.Batch(5)
		require.NoError(t, db.AppendTraces(td))
		for id, n := range traceIDs(td) {
			want[id] += n
		}
		require.NoError(t, db.Flush(ctx))
	}
	// Each block is held, as soon as it is written, in a merge that does
	// not progress, as a compactor busy elsewhere would hold it: the
	// level-0 compactor, woken by each flush, never finds two to merge, and
	// the third block reaches the stall.
	var held []*blockRef
	for range 3 {
		appendTracesFlushed()
		db.mu.Lock()
		for _, b := range db.blocks {
			if !b.merging {
				b.merging = true
				held = append(held, b)
			}
		}
		db.mu.Unlock()
	}
	require.EqualValues(t, 3, db.level0[signalIndex(block.Traces)].Load())

	require.ErrorIs(t, db.Admit(block.Traces), ErrBacklog)
	td, ld := g.Batch(5)
	require.ErrorIs(t, db.AppendTraces(td), ErrBacklog)
	require.NoError(t, db.Admit(block.Logs), "the logs have no backlog")
	require.NoError(t, db.AppendLogs(ld))
	require.EqualValues(t, 1, db.Stats().RefusedTraceRequests)

	db.mu.Lock()
	for _, b := range held {
		b.merging = false
	}
	db.mu.Unlock()
	db.kickLevel0()
	waitUntil(t, "the level-0 compactor to merge the backlog", func() bool {
		return db.level0[signalIndex(block.Traces)].Load() < 3
	})
	require.NoError(t, db.Admit(block.Traces))
	require.NoError(t, db.AppendTraces(td))
	for id, n := range traceIDs(td) {
		want[id] += n
	}
	requireAll(t, db, want, []plog.Logs{ld})
	require.Empty(t, db.Problems())
}

// A replay of many segments says how far it is as it goes, by the clock
// the store is given, and ends with what it replayed.
func TestReplayReportsProgress(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir, func(o *Options) { o.WAL.SegmentSize = 64 << 10 })
	g := workload.New(12, time.Now(), workload.Options{})
	for range 100 {
		td, _ := g.Batch(20)
		require.NoError(t, db.AppendTraces(td))
	}
	require.NoError(t, db.Close())
	segs, err := wal.Segments(filepath.Join(dir, "wal"))
	require.NoError(t, err)
	require.Greater(t, len(segs), 4, "the test needs a WAL of several segments")

	// Each reading of the clock is six seconds after the one before.
	var ticks atomic.Int64
	start := time.Now()
	core, logs := observer.New(zap.InfoLevel)
	openTestDB(t, dir, func(o *Options) {
		o.Logger = zap.New(core)
		o.Now = func() time.Time { return start.Add(time.Duration(ticks.Add(1)) * 6 * time.Second) }
	})
	var progress []string
	for _, e := range logs.FilterMessage("replaying wal").All() {
		if done, ok := e.ContextMap()["done"].(string); ok {
			require.Equal(t, int64(len(segs)), e.ContextMap()["of"])
			progress = append(progress, done)
		}
	}
	require.NotEmpty(t, progress, "no progress reported")
	require.Equal(t, len(segs)-1, len(progress), "one report per segment after the first, at six seconds a segment: %v", progress)
	require.NotEqual(t, "0%", progress[len(progress)-1])
	require.Len(t, logs.FilterMessage("wal replayed").All(), 1)
}
