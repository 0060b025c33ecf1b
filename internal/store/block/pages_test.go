package block

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/objstore"
)

// The pages of the columns read a few rows at a time end every
// sparsePageRows rows (up to a write batch more), in blocks written from
// spans and in merged ones, so that a sparse read decodes a page of about
// a thousand rows per kept row; the other columns keep their pages of up
// to 64 KiB.
func TestSparsePageRows(t *testing.T) {
	ctx := context.Background()
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 3000) // about 42k spans
	half := len(spans) / 2
	for half < len(spans) && spans[half].TraceID == spans[half-1].TraceID {
		half++
	}
	a := writeTestBlock(t, st, spans[:half], 15_000)
	b := writeTestBlock(t, st, spans[half:], 15_000)
	m, err := MergeSpans(ctx, st, []*Block{a, b}, WriteOptions{RowGroupRows: 15_000, TempDir: t.TempDir(), Level: 1})
	require.NoError(t, err)
	merged, err := Open(ctx, st, Traces, m.ID)
	require.NoError(t, err)
	defer merged.Close()

	for name, blk := range map[string]*Block{"written": a, "merged": merged} {
		f, err := blk.data()
		require.NoError(t, err)
		require.Greater(t, len(f.RowGroups()), 1, name)
		for _, rg := range f.RowGroups() {
			chunks := rg.ColumnChunks()
			for _, leaf := range sparseLeaves {
				oi, err := chunks[leaf].OffsetIndex()
				require.NoError(t, err)
				n := oi.NumPages()
				for p := range n {
					end := rg.NumRows()
					if p+1 < n {
						end = oi.FirstRowIndex(p + 1)
					}
					rows := end - oi.FirstRowIndex(p)
					require.LessOrEqual(t, rows, int64(sparsePageRows+writeBatch-1), "%s: column %d page %d", name, leaf, p)
					if p+1 < n {
						require.GreaterOrEqual(t, rows, int64(sparsePageRows), "%s: column %d page %d ends early", name, leaf, p)
					}
				}
			}
			// An int64 column outside the core: a 64 KiB page holds up
			// to 8k of its rows.
			other, ok := spanSchema.Lookup("http_status_code")
			require.True(t, ok)
			oi, err := chunks[other.ColumnIndex].OffsetIndex()
			require.NoError(t, err)
			require.Less(t, oi.NumPages(), int(rg.NumRows()/sparsePageRows), "%s: other columns keep their large pages", name)
		}
	}
}

// A head's flush (a level-0 block, Fast) ends its pages at 8 KiB, so that
// a merge of many such blocks holds small pages of each
// (pageBufferSize); blocks of other levels keep their 64 KiB pages.
func TestLevel0Pages(t *testing.T) {
	ctx := context.Background()
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 3000)
	pages := func(opts WriteOptions, path ...string) int {
		opts.TempDir = t.TempDir()
		m, err := WriteSpans(ctx, st, seqSpans(spans), opts)
		require.NoError(t, err)
		blk, err := Open(ctx, st, Traces, m.ID)
		require.NoError(t, err)
		defer blk.Close()
		f, err := blk.data()
		require.NoError(t, err)
		leaf, ok := spanSchema.Lookup(path...)
		require.True(t, ok, "%v", path)
		n := 0
		for _, rg := range f.RowGroups() {
			oi, err := rg.ColumnChunks()[leaf.ColumnIndex].OffsetIndex()
			require.NoError(t, err)
			n += oi.NumPages()
		}
		return n
	}
	for _, path := range [][]string{{"attrs", "value"}, {"resource"}, {"duration_nano"}} {
		level0 := pages(WriteOptions{Fast: true}, path...)
		level1 := pages(WriteOptions{Fast: true, Level: 1}, path...)
		final := pages(WriteOptions{Level: 1}, path...)
		require.Equal(t, level1, final, "%v: the codec does not change where pages end", path)
		require.GreaterOrEqual(t, level0, 4*level1, "%v: a head's flush ends its pages at 8 KiB, the others at 64 KiB", path)
	}
}
