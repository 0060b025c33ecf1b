package block

import (
	"context"
	"runtime"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// Blocks opened with a FileCache hold their readers only while it has
// room: past its limit the least recently used are dropped, and a block
// whose reader was dropped reopens it for the next read, which answers as
// the block always did.
func TestFileCacheBoundsReaders(t *testing.T) {
	ctx := context.Background()
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 900)
	// Three blocks of a third of the traces each.
	var parts [3][]storage.Span
	for _, s := range spans {
		k := int(s.TraceID[0]) % 3
		parts[k] = append(parts[k], s)
	}
	var ids []string
	for _, p := range parts {
		m, err := WriteSpans(ctx, st, seqSpans(p), WriteOptions{RowGroupRows: 2000, TempDir: t.TempDir(), Format: FormatVersion})
		require.NoError(t, err)
		ids = append(ids, m.ID)
	}
	// Room for the readers of about one and a half blocks.
	pinned, err := Open(ctx, st, Traces, ids[0])
	require.NoError(t, err)
	one := fileCharge(pinned.pinned[dataFile]) + fileCharge(pinned.pinned[traceTableFile])
	pinned.Close()
	files := NewFileCache(one * 3 / 2)
	var blocks []*Block
	for _, id := range ids {
		b, err := OpenCached(ctx, st, Traces, id, Caches{Files: files})
		require.NoError(t, err)
		blocks = append(blocks, b)
		require.LessOrEqual(t, files.Used(), one*3/2)
	}
	require.Nil(t, blocks[0].cached[dataFile], "the first block's reader is dropped once two more are open")

	// Every read, in turn, through readers dropped and reopened.
	for round := range 2 {
		for k, b := range blocks {
			for _, s := range parts[k][:50] {
				got, err := b.TraceByID(ctx, s.TraceID, nil)
				require.NoError(t, err)
				var want []storage.Span
				for _, w := range parts[k] {
					if w.TraceID == s.TraceID {
						want = append(want, w)
					}
				}
				require.Len(t, got, len(want), "round %d block %d", round, k)
			}
			n := 0
			_, err := b.Spans(ctx, &storage.SpanQuery{Projection: storage.ProjectCore}, func(*storage.Span) bool { n++; return true })
			require.NoError(t, err)
			require.Equal(t, len(parts[k]), n)
			found := 0
			_, err = b.FindTraces(ctx, &storage.TraceFilter{}, func(storage.TraceID) bool { found++; return true })
			require.NoError(t, err)
			require.EqualValues(t, b.Meta.Traces, found)
			require.LessOrEqual(t, files.Used(), one*3/2)
		}
	}
	m, err := MergeSpans(ctx, st, blocks, WriteOptions{TempDir: t.TempDir(), Level: 1})
	require.NoError(t, err)
	require.EqualValues(t, len(spans), m.Rows)

	for _, b := range blocks {
		require.NoError(t, b.Close())
	}
	require.Zero(t, files.Used(), "closed blocks left readers in the cache")
}

// A reader's charge in a FileCache is of the order of the heap it takes
// once all of its page index has been read: within half to twice it.
func TestFileCharge(t *testing.T) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 3000)
	for _, rows := range []int{5000, 100_000} {
		m, err := WriteSpans(context.Background(), st, seqSpans(spans), WriteOptions{RowGroupRows: rows, TempDir: t.TempDir()})
		require.NoError(t, err)
		const opens = 20
		var files []*parquet.File
		var charge int64
		before := liveHeap()
		for range opens {
			b, err := Open(context.Background(), st, Traces, m.ID)
			require.NoError(t, err)
			f := b.pinned[dataFile]
			for _, rg := range f.RowGroups() {
				for _, cc := range rg.ColumnChunks() {
					_, err := cc.OffsetIndex()
					require.NoError(t, err)
					_, err = cc.ColumnIndex()
					require.NoError(t, err)
				}
			}
			files = append(files, f)
			charge += fileCharge(f)
			b.pinned[dataFile] = nil // counted on its own below
			b.pinned[traceTableFile] = nil
			b.bloom, b.Index = nil, nil
			b.Close()
		}
		held := liveHeap() - before
		t.Logf("row groups of %d: charged %d B, held %d B", rows, charge/opens, held/opens)
		require.Greater(t, charge, held/2, "row groups of %d", rows)
		require.Less(t, charge, held*2, "row groups of %d", rows)
		runtime.KeepAlive(files)
	}
}
