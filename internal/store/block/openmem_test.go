package block

import (
	"context"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/objstore"
)

func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// An open block holds its footer, index and bloom filter, not its page
// index: that is read per column chunk when a reader asks for it. Decoded,
// a page index is 1.2 bytes a span in blocks of 100k-row groups (2.8 here,
// with 5,000-row groups); held for every open block from its opening, it
// grew with everything the store kept.
func TestOpenBlockMemory(t *testing.T) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 3000)
	m, err := WriteSpans(context.Background(), st, seqSpans(spans), WriteOptions{RowGroupRows: 5000, TempDir: t.TempDir()})
	require.NoError(t, err)
	const opens = 40
	blocks := make([]*Block, 0, opens)
	before := liveHeap()
	for range opens {
		b, err := Open(context.Background(), st, Traces, m.ID)
		require.NoError(t, err)
		blocks = append(blocks, b)
	}
	opened := liveHeap()
	for _, b := range blocks {
		for _, rg := range b.pinned[dataFile].RowGroups() {
			for _, cc := range rg.ColumnChunks() {
				_, err := cc.OffsetIndex()
				require.NoError(t, err)
				_, err = cc.ColumnIndex()
				require.NoError(t, err)
			}
		}
	}
	indexed := liveHeap()
	spanCount := float64(opens * m.Rows)
	held, index := float64(opened-before)/spanCount, float64(indexed-opened)/spanCount
	t.Logf("an open block holds %.2f B/span; its page index, read, %.2f B/span more", held, index)
	// Read at open, the page index would add nothing here.
	require.Greater(t, index, 1.0, "the page index was read at open")
	for _, b := range blocks {
		b.Close()
	}
}
