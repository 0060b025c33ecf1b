package store

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/objstore/objstoretest"
	"github.com/sightlinehq/sightline/internal/store/block"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/store/wal"
	"github.com/sightlinehq/sightline/internal/workload"
)

func openTestDB(t testing.TB, dir string, mod func(*Options)) *DB {
	t.Helper()
	st, err := objstore.OpenFilesystem(filepath.Join(dir, "blocks"))
	require.NoError(t, err)
	// A one-byte reader cache keeps only the reader last used, so every
	// test reads blocks whose readers are reopened as they are needed.
	o := Options{Dir: dir, Bucket: st, CompactionInterval: -1, MaxBlockDuration: time.Hour, BlockReaders: 1}
	if mod != nil {
		mod(&o)
	}
	db, err := Open(context.Background(), o)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func traceIDs(td ptrace.Traces) map[storage.TraceID]int {
	ids := map[storage.TraceID]int{}
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, s := range ss.Spans().All() {
				ids[storage.TraceID(s.TraceID())]++
			}
		}
	}
	return ids
}

// requireAll checks that every trace is complete and every log record of
// ld can be found by its trace and span.
func requireAll(t *testing.T, db *DB, want map[storage.TraceID]int, ld []plog.Logs) {
	t.Helper()
	q, err := db.Querier(context.Background())
	require.NoError(t, err)
	defer q.Close()
	for id, n := range want {
		spans, err := q.TraceByID(context.Background(), id, 0, 0)
		require.NoError(t, err, "trace %s", id)
		require.Len(t, spans, n, "trace %s", id)
	}
	for _, l := range ld {
		for _, rl := range l.ResourceLogs().All() {
			for _, sl := range rl.ScopeLogs().All() {
				for _, r := range sl.LogRecords().All() {
					got, err := q.LogsByTrace(context.Background(), storage.TraceID(r.TraceID()), storage.SpanID(r.SpanID()), 0, 0, 0)
					require.NoError(t, err)
					require.NotEmpty(t, got, "log of span %s", r.SpanID())
				}
			}
		}
	}
}

func TestAppendIsVisibleAtOnceAndSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir, nil)
	g := workload.New(1, time.Now(), workload.Options{})
	want := map[storage.TraceID]int{}
	var lds []plog.Logs
	for range 5 {
		td, ld := g.Batch(50)
		require.NoError(t, db.AppendTraces(td))
		require.NoError(t, db.AppendLogs(ld))
		for id, n := range traceIDs(td) {
			want[id] += n
		}
		lds = append(lds, ld)
	}
	requireAll(t, db, want, lds)
	// A retry of the same batch stores nothing new.
	td, _ := g.Batch(10)
	require.NoError(t, db.AppendTraces(td))
	require.NoError(t, db.AppendTraces(td))
	for id, n := range traceIDs(td) {
		want[id] += n
	}
	requireAll(t, db, want, lds)
	require.NoError(t, db.Close())

	db = openTestDB(t, dir, nil)
	requireAll(t, db, want, lds)
	require.NoError(t, db.Flush(context.Background()))
	st := db.Stats()
	require.Equal(t, 2, st.Blocks)
	require.Zero(t, st.HeadSpans)
	requireAll(t, db, want, lds)
	segs, err := wal.Segments(filepath.Join(dir, "wal"))
	require.NoError(t, err)
	require.Len(t, segs, 1, "flushed segments are deleted")
	require.NoError(t, db.Close())

	db = openTestDB(t, dir, nil)
	require.Zero(t, db.Stats().HeadSpans, "nothing is replayed twice")
	requireAll(t, db, want, lds)
}

func TestCompactionMergesAndDedupes(t *testing.T) {
	db := openTestDB(t, t.TempDir(), func(o *Options) { o.CompactMinBlocks = 3 })
	g := workload.New(2, time.Now(), workload.Options{})
	want := map[storage.TraceID]int{}
	var lds []plog.Logs
	var retry ptrace.Traces
	for i := range 4 {
		td, ld := g.Batch(100)
		require.NoError(t, db.AppendTraces(td))
		require.NoError(t, db.AppendLogs(ld))
		if i == 0 {
			retry = td
		}
		if i == 2 {
			// A client's retry of the first request, in a later head: the
			// store remembers taking it and stores nothing. A collector
			// that re-batched the same spans sends another request, which
			// is stored, and compaction drops the repeats.
			require.NoError(t, db.AppendTraces(retry))
			require.Equal(t, int64(retry.SpanCount()), db.Stats().RetriedSpans)
			rebatched := ptrace.NewTraces()
			retry.ResourceSpans().At(0).CopyTo(rebatched.ResourceSpans().AppendEmpty())
			require.NoError(t, db.AppendTraces(rebatched))
		}
		for id, n := range traceIDs(td) {
			want[id] += n
		}
		lds = append(lds, ld)
		require.NoError(t, db.Flush(context.Background()))
	}
	require.Equal(t, 8, db.Stats().Blocks)
	q, err := db.Querier(context.Background())
	require.NoError(t, err)
	db.Compact(context.Background())
	require.Equal(t, 2, db.Stats().Blocks)
	// The querier opened before compaction still reads the old blocks.
	for id := range want {
		_, err := q.TraceByID(context.Background(), id, 0, 0)
		require.NoError(t, err)
	}
	q.Close()
	requireAll(t, db, want, lds)
	var total int
	for _, n := range want {
		total += n
	}
	require.Equal(t, int64(total), db.Stats().BlockSpans, "the re-batched spans are stored once")
	require.Empty(t, db.Problems())
}

// A merge takes min_blocks blocks of a level, however many that is: the
// fan-in is the ratio between levels. With a fan-in capped at 4 below a
// min_blocks of 6, no group was ever large enough and nothing merged.
func TestCompactionFanInIsMinBlocks(t *testing.T) {
	db := openTestDB(t, t.TempDir(), func(o *Options) { o.CompactMinBlocks = 6 })
	want, lds := appendFlushed(t, db, workload.New(9, time.Now(), workload.Options{}), 13)
	require.Equal(t, 26, db.Stats().Blocks)
	db.Compact(context.Background())
	require.Equal(t, map[int]int{0: 1, 1: 2}, traceLevels(db), "13 level-0 blocks: two merges of 6, one left")
	require.Equal(t, 6, db.Stats().Blocks)
	requireAll(t, db, want, lds)
}

// traceLevels counts the trace blocks of each level.
func traceLevels(db *DB) map[int]int {
	levels := map[int]int{}
	for _, m := range db.BlockMetas() {
		if m.Signal == block.Traces {
			levels[m.Level]++
		}
	}
	return levels
}

// Level 0 has its own fan-in: CompactLevel0Blocks level-0 blocks make a
// level-1 block, and the upper levels merge CompactMinBlocks at a time.
func TestCompactionLevel0FanIn(t *testing.T) {
	db := openTestDB(t, t.TempDir(), func(o *Options) { o.CompactMinBlocks, o.CompactLevel0Blocks = 2, 5 })
	want, lds := appendFlushed(t, db, workload.New(12, time.Now(), workload.Options{}), 11)
	db.Compact(context.Background())
	require.Equal(t, map[int]int{0: 1, 2: 1}, traceLevels(db), "11 level-0 blocks: two merges of 5, then the two level-1 blocks merged")
	requireAll(t, db, want, lds)

	// Level-0 blocks that fill CompactMaxBytes before there are
	// CompactLevel0Blocks of them are merged as they are: waiting for
	// more would stall ingest for good once StallBlocks are waiting.
	big := openTestDB(t, t.TempDir(), func(o *Options) { o.CompactMinBlocks, o.CompactLevel0Blocks = 2, 8 })
	want, lds = appendFlushed(t, big, workload.New(13, time.Now(), workload.Options{}), 6)
	var largest int64
	for _, m := range big.BlockMetas() {
		if m.Signal == block.Traces {
			largest = max(largest, m.DataBytes)
		}
	}
	big.opts.CompactMaxBytes = 2 * largest // two fit; three do not
	big.Compact(context.Background())
	require.Equal(t, map[int]int{0: 2, 1: 2}, traceLevels(big),
		"six level-0 blocks: two merges of the two that fit before a third; the last two wait, as nothing fills their group yet")
	requireAll(t, big, want, lds)

	// The stall count follows the level-0 fan-in, so that level 0 can
	// take another merge's worth while one runs.
	wide := openTestDB(t, t.TempDir(), func(o *Options) { o.CompactMinBlocks, o.CompactLevel0Blocks = 2, 12 })
	require.Equal(t, 24, wide.Stats().StallBlocks)
}

// A compaction cancelled before it reads a row (shutdown cancels it) writes
// nothing, keeps its sources, and does not crash: it once took the nil
// block of an empty merge for a written one.
func TestCancelledCompactionKeepsItsSources(t *testing.T) {
	db := openTestDB(t, t.TempDir(), func(o *Options) { o.CompactMinBlocks = 2 })
	want, lds := appendFlushed(t, db, workload.New(5, time.Now(), workload.Options{}), 2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	db.Compact(ctx)
	require.Equal(t, 4, db.Stats().Blocks)
	requireAll(t, db, want, lds)
	require.Empty(t, db.Problems(), "a merge cancelled by shutdown is not a problem of the store")
	db.Compact(context.Background())
	require.Equal(t, 2, db.Stats().Blocks)
	require.Empty(t, db.Problems())
	requireAll(t, db, want, lds)
}

// appendFlushed appends n batches of 50 traces and their logs to db,
// flushing each into blocks of their own, and returns what was appended.
func appendFlushed(t *testing.T, db *DB, g *workload.Generator, n int) (map[storage.TraceID]int, []plog.Logs) {
	t.Helper()
	want := map[storage.TraceID]int{}
	var lds []plog.Logs
	for range n {
		td, ld := g.Batch(50)
		require.NoError(t, db.AppendTraces(td))
		require.NoError(t, db.AppendLogs(ld))
		for id, c := range traceIDs(td) {
			want[id] += c
		}
		lds = append(lds, ld)
		require.NoError(t, db.Flush(context.Background()))
	}
	return want, lds
}

func TestRetention(t *testing.T) {
	now := time.Now()
	db := openTestDB(t, t.TempDir(), func(o *Options) {
		o.RetentionAge = 24 * time.Hour
		o.Now = func() time.Time { return now }
	})
	oldGen := workload.New(3, now.Add(-48*time.Hour), workload.Options{})
	newGen := workload.New(4, now.Add(-23*time.Hour), workload.Options{})
	oldTD, oldLD := oldGen.Batch(100)
	newTD, newLD := newGen.Batch(100)
	require.NoError(t, db.AppendTraces(oldTD))
	require.NoError(t, db.AppendLogs(oldLD))
	require.NoError(t, db.Flush(context.Background()))
	require.NoError(t, db.AppendTraces(newTD))
	require.NoError(t, db.AppendLogs(newLD))
	require.NoError(t, db.Flush(context.Background()))
	require.Equal(t, 4, db.Stats().Blocks)

	db.ApplyRetention(context.Background())
	require.Equal(t, 2, db.Stats().Blocks)
	requireAll(t, db, traceIDs(newTD), []plog.Logs{newLD})
	q, err := db.Querier(context.Background())
	require.NoError(t, err)
	defer q.Close()
	for id := range traceIDs(oldTD) {
		_, err := q.TraceByID(context.Background(), id, 0, 0)
		require.ErrorIs(t, err, storage.ErrNotFound)
	}

	// By size: one byte under the total drops exactly the oldest block.
	db.opts.RetentionAge = 0
	db.opts.RetentionBytes = db.Stats().BlockBytes - 1
	db.ApplyRetention(context.Background())
	require.Equal(t, 1, db.Stats().Blocks)
}

// A block in a running merge is left to the next retention pass: the
// merge removes it itself, and removing it twice would release it twice.
func TestRetentionLeavesBlocksInAMerge(t *testing.T) {
	now := time.Now()
	db := openTestDB(t, t.TempDir(), func(o *Options) {
		o.RetentionAge = 24 * time.Hour
		o.Now = func() time.Time { return now }
	})
	td, _ := workload.New(3, now.Add(-48*time.Hour), workload.Options{}).Batch(20)
	require.NoError(t, db.AppendTraces(td))
	require.NoError(t, db.Flush(context.Background()))
	db.mu.Lock()
	b := db.blocks[0]
	b.merging = true
	db.mu.Unlock()
	db.ApplyRetention(context.Background())
	require.Equal(t, 1, db.Stats().Blocks, "kept while it is merged")
	db.mu.Lock()
	b.merging = false
	db.mu.Unlock()
	db.ApplyRetention(context.Background())
	require.Equal(t, 0, db.Stats().Blocks)
}

func TestCorruptBlockIsQuarantined(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir, nil)
	g := workload.New(5, time.Now(), workload.Options{})
	bad, _ := g.Batch(50)
	require.NoError(t, db.AppendTraces(bad))
	require.NoError(t, db.Flush(context.Background()))
	good, _ := g.Batch(50)
	require.NoError(t, db.AppendTraces(good))
	require.NoError(t, db.Flush(context.Background()))
	db.mu.RLock()
	badID := db.blocks[0].Meta.ID
	db.mu.RUnlock()
	require.NoError(t, db.Close())

	path := filepath.Join(dir, "blocks", "traces", badID, block.DataFile)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data[:len(data)/2], 0o644))

	db = openTestDB(t, dir, nil)
	probs := db.Problems()
	require.Len(t, probs, 1)
	require.ErrorIs(t, probs[0], storage.ErrCorrupt)
	require.Contains(t, probs[0].Error(), badID)
	requireAll(t, db, traceIDs(good), nil)
	td, _ := g.Batch(5)
	require.NoError(t, db.AppendTraces(td), "ingest goes on")
}

// A flushed head's WAL segments become spares that later segments are
// written in; what they held before is never replayed again.
func TestFlushedWALSegmentsAreWrittenAgain(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir, nil)
	g := workload.New(8, time.Now(), workload.Options{})
	var want []ptrace.Traces
	for range 3 {
		td, _ := g.Batch(20)
		require.NoError(t, db.AppendTraces(td))
		require.NoError(t, db.Flush(context.Background()))
		want = append(want, td)
	}
	last, _ := g.Batch(20)
	require.NoError(t, db.AppendTraces(last))
	spares, err := filepath.Glob(filepath.Join(dir, "wal", "*.spare"))
	require.NoError(t, err)
	// Each cut takes a spare and each flush gives one back.
	require.Len(t, spares, 1)
	segs, err := wal.Segments(filepath.Join(dir, "wal"))
	require.NoError(t, err)
	require.Equal(t, []int{4}, segs, "the head's segment, written in a spare")
	require.NoError(t, db.Close())

	db = openTestDB(t, dir, nil)
	require.Empty(t, db.Problems())
	require.Equal(t, last.SpanCount(), db.Stats().HeadSpans, "only the last batch is replayed")
	for _, td := range append(want, last) {
		requireAll(t, db, traceIDs(td), nil)
	}
}

func TestTornWALIsRepairedAndReported(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir, nil)
	g := workload.New(6, time.Now(), workload.Options{})
	first, _ := g.Batch(20)
	second, _ := g.Batch(20)
	require.NoError(t, db.AppendTraces(first))
	require.NoError(t, db.AppendTraces(second))
	require.NoError(t, db.Close())
	path := wal.SegmentPath(filepath.Join(dir, "wal"), 1)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(path, st.Size()-100))

	db = openTestDB(t, dir, nil)
	probs := db.Problems()
	require.Len(t, probs, 1)
	require.ErrorIs(t, probs[0], wal.ErrCorrupt)
	require.Contains(t, probs[0].Error(), "wal segment 1")
	requireAll(t, db, traceIDs(first), nil)
	require.NoError(t, db.AppendTraces(second), "ingest goes on")
	requireAll(t, db, traceIDs(second), nil)
}

type enospcFile struct {
	*os.File
	full *bool
}

func (f enospcFile) WriteAt(p []byte, off int64) (int, error) {
	if *f.full {
		return 0, syscall.ENOSPC
	}
	return f.File.WriteAt(p, off)
}

func TestFullDiskRefusesWithRetryableError(t *testing.T) {
	full := false
	db := openTestDB(t, t.TempDir(), func(o *Options) {
		o.WAL.OpenFile = func(name string, flag int, perm os.FileMode) (wal.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			return enospcFile{f, &full}, err
		}
	})
	g := workload.New(7, time.Now(), workload.Options{})
	before, _ := g.Batch(10)
	during, _ := g.Batch(10)
	require.NoError(t, db.AppendTraces(before))
	full = true
	err := db.AppendTraces(during)
	require.ErrorIs(t, err, ErrWrite)
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.Len(t, db.Problems(), 1)
	q, _ := db.Querier(context.Background())
	for id := range traceIDs(during) {
		_, err := q.TraceByID(context.Background(), id, 0, 0)
		require.ErrorIs(t, err, storage.ErrNotFound, "refused data is not half-stored")
	}
	q.Close()
	full = false
	require.NoError(t, db.AppendTraces(during))
	require.Zero(t, db.Stats().RetriedSpans, "a request that failed is not taken for a retry")
	require.Empty(t, db.Problems(), "the problem clears once writes succeed")
	requireAll(t, db, traceIDs(before), nil)
	requireAll(t, db, traceIDs(during), nil)
}

func TestBlocksOnS3(t *testing.T) {
	endpoint := objstoretest.FakeS3(t, "traces")
	b, err := objstore.OpenS3(context.Background(), objstore.S3Options{Bucket: "traces", Endpoint: endpoint, PathStyle: true})
	require.NoError(t, err)
	st := objstore.NewStore(b, "s3")
	dir := t.TempDir()
	o := Options{Dir: dir, Bucket: st, CompactionInterval: time.Hour, MaxBlockDuration: time.Hour}
	db, err := Open(context.Background(), o)
	require.NoError(t, err)
	g := workload.New(8, time.Now(), workload.Options{})
	td, ld := g.Batch(100)
	require.NoError(t, db.AppendTraces(td))
	require.NoError(t, db.AppendLogs(ld))
	require.NoError(t, db.Flush(context.Background()))
	require.NoError(t, db.Close())
	keys, err := st.List(context.Background(), "traces/", block.MetaFile)
	require.NoError(t, err)
	require.Len(t, keys, 1)

	db, err = Open(context.Background(), o)
	require.NoError(t, err)
	defer db.Close()
	require.Equal(t, 2, db.Stats().Blocks)
	requireAll(t, db, traceIDs(td), []plog.Logs{ld})
}

func TestBackgroundLoopCutsAndCompacts(t *testing.T) {
	db := openTestDB(t, t.TempDir(), func(o *Options) {
		o.MaxBlockBytes = 256 << 10
		o.CompactionInterval = 50 * time.Millisecond
		o.CompactMinBlocks = 2
	})
	g := workload.New(11, time.Now(), workload.Options{})
	want := map[storage.TraceID]int{}
	for range 20 {
		td, _ := g.Batch(40)
		require.NoError(t, db.AppendTraces(td))
		for id, n := range traceIDs(td) {
			want[id] += n
		}
	}
	require.Eventually(t, func() bool {
		db.mu.RLock()
		defer db.mu.RUnlock()
		for _, b := range db.blocks {
			if b.Meta.Level > 0 {
				return true
			}
		}
		return false
	}, 20*time.Second, 20*time.Millisecond, "the loop cuts blocks and compacts them")
	requireAll(t, db, want, nil)
	require.Empty(t, db.Problems())
}

func TestConcurrentFlushAndCompact(t *testing.T) {
	db := openTestDB(t, t.TempDir(), func(o *Options) { o.CompactMinBlocks = 2 })
	g := workload.New(12, time.Now(), workload.Options{})
	want := map[storage.TraceID]int{}
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				require.NoError(t, db.Flush(context.Background()))
				db.Compact(context.Background())
			}
		}()
	}
	for range 30 {
		td, _ := g.Batch(10)
		require.NoError(t, db.AppendTraces(td))
		for id, n := range traceIDs(td) {
			want[id] += n
		}
	}
	wg.Wait()
	requireAll(t, db, want, nil)
	require.Empty(t, db.Problems())
}

// TestReadStats checks that block reads are accounted to the query's Stats
// and that a read limit ends the query with ErrBytesLimit.
func TestReadStats(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t, t.TempDir(), nil)
	traces, _ := workload.New(1, time.Unix(1_700_000_000, 0), workload.Options{}).Batch(200)
	require.NoError(t, db.AppendTraces(traces))
	require.NoError(t, db.Flush(ctx))

	q, err := db.Querier(ctx)
	require.NoError(t, err)
	defer q.Close()
	st := &storage.Stats{}
	n := 0
	require.NoError(t, q.Spans(storage.WithStats(ctx, st), &storage.SpanQuery{}, func(*storage.Span) bool { n++; return true }))
	require.Equal(t, traces.SpanCount(), n)
	require.Positive(t, st.BytesRead())

	limited := &storage.Stats{MaxBytes: st.BytesRead() / 2}
	err = q.Spans(storage.WithStats(ctx, limited), &storage.SpanQuery{}, func(*storage.Span) bool { return true })
	require.ErrorIs(t, err, storage.ErrBytesLimit)
	require.Empty(t, db.Problems(), "a read limit is not damage")
}

// The head yields its newest spans first, so that a search that stops at
// its limit shows the latest traces (the UI's landing page showed traces
// minutes old while newer ones were in the head).
func TestHeadYieldsNewestFirst(t *testing.T) {
	db := openTestDB(t, t.TempDir(), nil)
	t0 := time.Now().Add(-time.Minute)
	var last storage.TraceID
	for i := range 50 {
		td, _ := workload.New(uint64(i+1), t0.Add(time.Duration(i)*time.Second), workload.Options{}).Batch(1)
		require.NoError(t, db.AppendTraces(td))
		last = storage.AppendTraces(nil, td)[0].TraceID
	}
	q, err := db.Querier(context.Background())
	require.NoError(t, err)
	defer q.Close()
	var first storage.TraceID
	require.NoError(t, q.Spans(context.Background(), &storage.SpanQuery{}, func(s *storage.Span) bool {
		first = s.TraceID
		return false
	}))
	require.Equal(t, last, first)
}

// The open blocks' Parquet readers are held within their bound (a quarter
// of the memory budget unless set), and every block still answers when
// the bound holds the readers of fewer blocks than there are.
func TestBlockReadersWithinBound(t *testing.T) {
	db := openTestDB(t, t.TempDir(), func(o *Options) { o.MemoryBudget, o.BlockReaders = 64<<20, 0 })
	require.EqualValues(t, 16<<20, db.Stats().BlockReaderLimit)
	require.NoError(t, db.Close())

	db = openTestDB(t, t.TempDir(), func(o *Options) { o.BlockReaders = 40 << 10 })
	g := workload.New(4, time.Now(), workload.Options{})
	want := map[storage.TraceID]int{}
	var lds []plog.Logs
	for range 6 {
		td, ld := g.Batch(150)
		require.NoError(t, db.AppendTraces(td))
		require.NoError(t, db.AppendLogs(ld))
		for id, n := range traceIDs(td) {
			want[id] += n
		}
		lds = append(lds, ld)
		require.NoError(t, db.Flush(context.Background()))
	}
	requireAll(t, db, want, lds)
	st := db.Stats()
	require.Equal(t, 12, st.Blocks)
	require.Positive(t, st.BlockReaderBytes)
	require.LessOrEqual(t, st.BlockReaderBytes, st.BlockReaderLimit)
}

// The pages queries decode are kept within their bound (an eighth of the
// memory budget unless set), and a query that runs again finds them: the
// same answer, from the cache. Off, nothing is kept.
func TestPageCacheWithinBound(t *testing.T) {
	db := openTestDB(t, t.TempDir(), func(o *Options) { o.MemoryBudget = 64 << 20 })
	require.EqualValues(t, 8<<20, db.Stats().PageCacheLimit)
	require.NoError(t, db.Close())
	db = openTestDB(t, t.TempDir(), func(o *Options) { o.PageCache = -1 })
	require.Zero(t, db.Stats().PageCacheLimit)
	require.NoError(t, db.Close())

	db = openTestDB(t, t.TempDir(), func(o *Options) { o.PageCache = 64 << 10 })
	g := workload.New(5, time.Now(), workload.Options{})
	for range 4 {
		td, _ := g.Batch(200)
		require.NoError(t, db.AppendTraces(td))
		require.NoError(t, db.Flush(context.Background()))
	}
	q, err := db.Querier(context.Background())
	require.NoError(t, err)
	defer q.Close()
	errorSpans := func() []storage.Span {
		ctx := storage.WithStats(context.Background(), &storage.Stats{})
		var out []storage.Span
		require.NoError(t, q.Spans(ctx, &storage.SpanQuery{Projection: storage.ProjectCore, HasStatus: true, Status: storage.StatusError}, func(s *storage.Span) bool {
			out = append(out, *s)
			return true
		}))
		return out
	}
	first := errorSpans()
	require.NotEmpty(t, first)
	st := db.Stats()
	require.Positive(t, st.PageCacheBytes)
	require.LessOrEqual(t, st.PageCacheBytes, st.PageCacheLimit)
	again := errorSpans()
	require.ElementsMatch(t, first, again)
	after := db.Stats()
	require.Greater(t, after.PageCacheHits, st.PageCacheHits)
	require.LessOrEqual(t, after.PageCacheBytes, after.PageCacheLimit)
}
