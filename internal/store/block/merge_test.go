package block

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"
	"gocloud.dev/blob/memblob"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/workload"
)

// MergeSpans must write the block that WriteSpans writes from the decoded,
// merged spans: the same spans, the same row groups and index, the same
// meta and bloom filter. The sources interleave traces, split one trace
// across two blocks (late spans), and repeat a batch (a client's retry).
// Blocks on local disk merge a column at a time, blocks in a bucket row
// by row. A merge takes four blocks, or as many as a default merge of
// level-0 blocks takes.
func TestMergeSpansMatchesWriteSpans(t *testing.T) {
	for _, n := range []int{4, 64} {
		t.Run(fmt.Sprintf("columns/%d", n), func(t *testing.T) {
			st, err := objstore.OpenFilesystem(t.TempDir())
			require.NoError(t, err)
			testMergeSpans(t, st, n, func(blocks []*Block, opts WriteOptions) (*Meta, error) {
				return mergeColumns(context.Background(), st, blocks, dataFiles(t, blocks), opts)
			})
		})
	}
	t.Run("rows", func(t *testing.T) {
		st := objstore.NewStore(memblob.OpenBucket(nil), "memory")
		testMergeSpans(t, st, 4, func(blocks []*Block, opts WriteOptions) (*Meta, error) {
			_, err := mergeColumns(context.Background(), st, blocks, dataFiles(t, blocks), opts)
			require.ErrorIs(t, err, errNotDirect, "blocks in a bucket are not read by pages")
			return MergeSpans(context.Background(), st, blocks, opts)
		})
	})
}

func dataFiles(t *testing.T, blocks []*Block) []*parquet.File {
	files := make([]*parquet.File, len(blocks))
	for i, b := range blocks {
		var err error
		files[i], err = b.data()
		require.NoError(t, err)
	}
	return files
}

func testMergeSpans(t *testing.T, st *objstore.Store, n int, merge func([]*Block, WriteOptions) (*Meta, error)) {
	ctx := context.Background()
	spans, _ := genSpans(t, 2000)

	parts := make([][]storage.Span, n)
	trace := -1
	var prev storage.TraceID
	for i, s := range spans {
		if i == 0 || s.TraceID != prev {
			trace++
			prev = s.TraceID
		}
		p := trace % n
		if trace == 10 && s.SpanID[0]%2 == 0 {
			p = 1 // trace 10's late spans land in another block
		}
		parts[p] = append(parts[p], s)
	}
	for _, s := range parts[0][:min(300, len(parts[0]))] { // a retry of part of a batch
		parts[n-1] = append(parts[n-1], s)
	}
	// The inputs are written as a head's flush writes them (level 0,
	// Fast: small pages, Snappy), the blocks most merges take.
	var blocks []*Block
	for _, p := range parts {
		sortSpans(p)
		m, err := WriteSpans(ctx, st, seqSpans(p), WriteOptions{RowGroupRows: 1000, TempDir: t.TempDir(), Fast: true})
		require.NoError(t, err)
		b, err := Open(ctx, st, Traces, m.ID)
		require.NoError(t, err)
		t.Cleanup(func() { b.Close() })
		blocks = append(blocks, b)
	}

	opts := WriteOptions{RowGroupRows: 1000, TempDir: t.TempDir(), Level: 1}
	got, err := merge(blocks, opts)
	require.NoError(t, err)
	var all []storage.Span
	for _, p := range parts {
		all = append(all, p...)
	}
	sortSpans(all)
	want, err := WriteSpans(ctx, st, seqSpans(all), opts)
	require.NoError(t, err)

	require.Equal(t, int64(len(spans)), got.Rows, "the retried spans are stored once")
	// The files may differ by a few bytes of encoding (dictionary order).
	g, w := *got, *want
	g.ID, w.ID, g.DataBytes, w.DataBytes = "", "", 0, 0
	require.Equal(t, w, g)

	gb, err := Open(ctx, st, Traces, got.ID)
	require.NoError(t, err)
	defer gb.Close()
	wb, err := Open(ctx, st, Traces, want.ID)
	require.NoError(t, err)
	defer wb.Close()
	require.Equal(t, wb.Index, gb.Index)
	var gotSpans []storage.Span
	require.NoError(t, gb.AllSpans(ctx, func(s *storage.Span) bool { gotSpans = append(gotSpans, normalize(*s)); return true }))
	require.Len(t, gotSpans, len(spans))
	i := 0
	require.NoError(t, wb.AllSpans(ctx, func(s *storage.Span) bool {
		require.Equal(t, normalize(*s), gotSpans[i], "span %d", i)
		i++
		return true
	}))
	for _, s := range spans {
		require.True(t, gb.bloom.MayContain(s.TraceID))
	}
	tr, err := gb.TraceByID(ctx, spans[len(spans)/2].TraceID, nil)
	require.NoError(t, err)
	require.NotEmpty(t, tr)
}

// Blocks of a format version this build does not know are left to the
// span-by-span merge (formats 1 and 2 share the data schema and merge row
// by row: TestTraceTableOfMergedOlderBlocks).
func TestMergeSpansRefusesOtherFormats(t *testing.T) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 100)
	a := writeTestBlock(t, st, spans[:len(spans)/2], 1000)
	b := writeTestBlock(t, st, spans[len(spans)/2:], 1000)
	b.Meta.Format = FormatVersion + 1
	_, err = MergeSpans(context.Background(), st, []*Block{a, b}, WriteOptions{TempDir: t.TempDir()})
	require.ErrorIs(t, err, ErrNotMergeable)
}

func sortSpans(s []storage.Span) {
	slices.SortFunc(s, func(a, b storage.Span) int { return CompareSpans(&a, &b) })
}

// A damaged page fails a merge with an error, whichever column it is in,
// the sort columns included: the merge writes nothing and its sources
// stay as they are.
func TestMergeSpansRefusesDamagedPages(t *testing.T) {
	spans, _ := genSpans(t, 200)
	for _, col := range []string{"trace_id", "start_unix_nano", "attrs.key", "duration_nano", "service_name"} {
		dir := t.TempDir()
		st, err := objstore.OpenFilesystem(dir)
		require.NoError(t, err)
		a := writeTestBlock(t, st, spans[:len(spans)/2], 1000)
		b := writeTestBlock(t, st, spans[len(spans)/2:], 1000)
		at, size := firstPage(t, b, col)
		name := filepath.Join(dir, "traces", b.Meta.ID, DataFile)
		data, err := os.ReadFile(name)
		require.NoError(t, err)
		data[at+size-1] ^= 0x5a
		require.NoError(t, os.WriteFile(name, data, 0o644))
		damaged, err := Open(context.Background(), st, Traces, b.Meta.ID)
		require.NoError(t, err)
		_, err = MergeSpans(context.Background(), st, []*Block{a, damaged}, WriteOptions{TempDir: t.TempDir(), Level: 1})
		require.ErrorIs(t, err, parquet.ErrCorrupted, col)
		require.NoError(t, damaged.Close())
		metas, err := st.List(context.Background(), "traces/", MetaFile)
		require.NoError(t, err)
		require.Len(t, metas, 2, "%s: the two sources, and no merged block", col)
	}
}

// A merge reads every column chunk of its inputs by its offset index. The
// inputs stay open (and referenced by the store) until the merged block
// replaces them, so an index the merge leaves cached in an input's file
// stays in memory with it: at the end of a merge of 64 level-0 blocks, with
// their 8 KiB pages, that was 13 MiB of the live heap, which with a head at
// its cut tipped the process over its admission threshold and refused a
// steady 20k spans/s for seconds. Nothing the merge decoded may stay
// behind in its inputs.
func TestMergeLeavesNoPageIndexBehind(t *testing.T) {
	ctx := context.Background()
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	level0 := func(n, seed int) []*Block {
		var blocks []*Block
		for i := range n {
			g := workload.New(uint64(seed+i), time.Unix(1_700_000_000+int64(i), 0), workload.Options{})
			td, _ := g.Batch(300)
			spans := storage.AppendTraces(nil, td)
			sortSpans(spans)
			m, err := WriteSpans(ctx, st, seqSpans(spans), WriteOptions{TempDir: t.TempDir(), Fast: true})
			require.NoError(t, err)
			b, err := Open(ctx, st, Traces, m.ID)
			require.NoError(t, err)
			t.Cleanup(func() { b.Close() })
			blocks = append(blocks, b)
		}
		return blocks
	}
	// A first merge makes what the process allocates once (codec tables,
	// pools) before the one measured.
	warm := level0(2, 200)
	_, err = mergeColumns(ctx, st, warm, dataFiles(t, warm), WriteOptions{TempDir: t.TempDir(), Level: 1})
	require.NoError(t, err)
	blocks := level0(16, 100)
	files := dataFiles(t, blocks)
	live := func() int64 {
		var ms runtime.MemStats
		// Twice: pooled buffers survive one collection.
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	before := live()
	m, err := mergeColumns(ctx, st, blocks, files, WriteOptions{TempDir: t.TempDir(), Level: 1})
	require.NoError(t, err)
	after := live()
	runtime.KeepAlive(files)
	// What the inputs' offset indexes take encoded; decoded they take more.
	var indexes int64
	for _, f := range files {
		for _, rg := range f.Metadata().RowGroups {
			for _, col := range rg.Columns {
				indexes += int64(col.OffsetIndexLength)
			}
		}
	}
	t.Logf("merged %d rows; heap %d -> %d bytes (%+d); offset indexes %d bytes encoded", m.Rows, before, after, after-before, indexes)
	require.Less(t, after-before, indexes/2, "the merge left its inputs' page indexes in memory")
}
