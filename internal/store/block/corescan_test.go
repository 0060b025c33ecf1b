package block

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// TestReadCoreParts reads the parts of three blocks at once and checks
// what the scan's callers rely on: spans come in the order of the parts,
// exactly as reading block after block gives them; a consumer that stops
// gets nothing more, and the reads stop soon after it; a block that cannot
// be read is reported once and skipped, or ends the scan when fail says
// so. Row groups of 500 rows are read whole (fewer than 2*headMin); of
// 8,000, in two windows, and their columns of IDs are in more than one
// page each, so that a head reads less than its row group.
func TestReadCoreParts(t *testing.T) {
	for _, c := range []struct{ traces, rg int }{{600, 500}, {4000, 8000}} {
		t.Run(strconv.Itoa(c.rg), func(t *testing.T) { testReadCoreParts(t, c.traces, c.rg) })
	}
}

func testReadCoreParts(t *testing.T, traces, rg int) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, traces)
	third := len(spans) / 3
	blocks := []*Block{
		writeTestBlock(t, st, spans[:third], rg),
		writeTestBlock(t, st, spans[third:2*third], rg),
		writeTestBlock(t, st, spans[2*third:], rg),
	}
	ctx := context.Background()
	q := &storage.SpanQuery{Projection: storage.ProjectCore}
	require.True(t, IsCoreScan(q))

	var parts []CorePart
	var perBlock [][]storage.SpanID
	for _, b := range blocks {
		p := b.CoreParts(q)
		require.Greater(t, len(p), 1)
		parts = append(parts, p...)
		var ids []storage.SpanID
		sq := *q
		sq.Projection = storage.ProjectAll // the row-at-a-time path, not this one
		_, err := b.Spans(ctx, &sq, func(s *storage.Span) bool { ids = append(ids, s.SpanID); return true })
		require.NoError(t, err)
		perBlock = append(perBlock, ids)
	}
	require.Greater(t, len(parts), 2*scanParallel, "the parts outnumber the reads run ahead, or the test reads nothing ahead")
	var want []storage.SpanID
	for _, ids := range perBlock {
		want = append(want, ids...)
	}
	require.Len(t, want, len(spans))

	read := func(stopAfter int, fail func(*Block, error) error) ([]storage.SpanID, error) {
		var got []storage.SpanID
		err := ReadCoreParts(ctx, parts, func(s *storage.Span) bool {
			got = append(got, s.SpanID)
			return len(got) != stopAfter
		}, fail)
		return got, err
	}
	noFail := func(b *Block, err error) error { t.Fatalf("block %s failed: %v", b.Meta.ID, err); return err }

	got, err := read(-1, noFail)
	require.NoError(t, err)
	require.Equal(t, want, got, "in the order of the parts")

	// Stopping in the second block's parts: not one span more.
	stop := third + third/2
	got, err = read(stop, noFail)
	require.NoError(t, err)
	require.Equal(t, want[:stop], got)

	// What a scan that stops reads: inside the first part, that part
	// alone, and only its head when it has two windows; inside the
	// second, not the four parts the reads run ahead once a scan is well
	// under way.
	partBytes := make([]int64, len(parts))
	for k := range parts {
		var st storage.Stats
		require.NoError(t, ReadCoreParts(storage.WithStats(ctx, &st), parts[k:k+1], func(*storage.Span) bool { return true }, noFail))
		partBytes[k] = st.BytesRead()
		require.Positive(t, partBytes[k])
	}
	readStats := func(stopAfter int) int64 {
		var st storage.Stats
		n := 0
		require.NoError(t, ReadCoreParts(storage.WithStats(ctx, &st), parts, func(*storage.Span) bool { n++; return n != stopAfter }, noFail))
		return st.BytesRead()
	}
	rows0 := 0
	require.NoError(t, ReadCoreParts(ctx, parts[:1], func(*storage.Span) bool { rows0++; return true }, noFail))
	if rg >= 2*headMin {
		// A part read in two windows: a scan that ends once the head is
		// handed on reads no page of the rest.
		var st storage.Stats
		ctx, cancel := context.WithCancel(storage.WithStats(ctx, &st))
		heads := 0
		_, err := parts[0].read(ctx, &coreScratch{}, true, func(h *coreRows, more bool) {
			heads++
			require.Positive(t, h.n)
			require.True(t, more)
			cancel()
		})
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, 1, heads)
		require.Positive(t, st.BytesRead())
		require.Less(t, st.BytesRead(), partBytes[0], "the head alone")
	}
	for range 20 { // what runs ahead, and how far, is up to the scheduler
		got := readStats(1)
		if rg < 2*headMin {
			require.Equal(t, partBytes[0], got, "stopped in the first part")
		} else {
			require.LessOrEqual(t, got, partBytes[0], "stopped in the first part")
		}
		got = readStats(rows0 + 1)
		if rg < 2*headMin {
			// The first part taken whole leaves room for the second
			// alone: nothing else is read.
			require.Equal(t, partBytes[0]+partBytes[1], got, "stopped in the second part")
		} else {
			// The first part's head asked for more: the second part
			// starts beside its rest, and the third once it is read.
			require.Greater(t, got, partBytes[0])
			require.LessOrEqual(t, got, partBytes[0]+partBytes[1]+partBytes[2], "stopped in the second part")
		}
	}

	// The middle block's file is gone from under it: reported once, and
	// the others still read in full.
	require.NoError(t, blocks[1].Close())
	var failed []*Block
	got, err = read(-1, func(b *Block, err error) error {
		require.Error(t, err)
		failed = append(failed, b)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, []*Block{blocks[1]}, failed)
	require.Equal(t, append(append([]storage.SpanID(nil), perBlock[0]...), perBlock[2]...), got)

	// A fail that returns an error ends the scan with it.
	end := errors.New("end")
	got, err = read(-1, func(*Block, error) error { return end })
	require.ErrorIs(t, err, end)
	require.Equal(t, perBlock[0], got)
}

// A part all of whose spans start below the query's floor is neither read
// nor handed on, whether the floor was raised before the scan or while
// it ran; the row-at-a-time path skips such row groups too.
func TestReadCorePartsBelowFloor(t *testing.T) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 300)
	older := slices.Clone(spans)
	for i := range older {
		older[i].StartUnixNano -= int64(time.Hour)
		older[i].EndUnixNano -= int64(time.Hour)
	}
	bNew := writeTestBlock(t, st, spans, 500)
	bOld := writeTestBlock(t, st, older, 500)
	require.Less(t, bOld.Meta.MaxTime, bNew.Meta.MinTime)

	scan := func(floor *storage.StartFloor, raise func()) (n int, bytes int64) {
		stats := &storage.Stats{}
		ctx := storage.WithStats(context.Background(), stats)
		q := &storage.SpanQuery{Projection: storage.ProjectCore, Floor: floor}
		parts := append(bNew.CoreParts(q), bOld.CoreParts(q)...)
		require.Greater(t, len(parts), 2)
		err := ReadCoreParts(ctx, parts, func(s *storage.Span) bool {
			require.GreaterOrEqual(t, s.EndUnixNano, floor.Load(), "a span below the floor was handed on")
			n++
			if n == 1 && raise != nil {
				raise()
			}
			return true
		}, func(b *Block, err error) error { return err })
		require.NoError(t, err)
		return n, stats.BytesRead()
	}
	all, allBytes := scan(nil, nil)
	require.Equal(t, 2*len(spans), all)

	before := &storage.StartFloor{}
	before.Raise(bNew.Meta.MinTime)
	n, b := scan(before, nil)
	require.Equal(t, len(spans), n, "the newer block's spans, and no older one")
	require.Less(t, b, allBytes*2/3, "the older block was read")

	during := &storage.StartFloor{}
	n, _ = scan(during, func() { during.Raise(bNew.Meta.MinTime) })
	require.Equal(t, len(spans), n, "raised at the first span: the older block is left out")

	for _, p := range []storage.Projection{storage.ProjectAll, storage.ProjectCore} {
		stats := &storage.Stats{}
		got := 0
		_, err := bOld.Spans(storage.WithStats(context.Background(), stats), &storage.SpanQuery{Projection: p, Floor: before}, func(*storage.Span) bool { got++; return true })
		require.NoError(t, err)
		require.Zero(t, got)
		require.Zero(t, stats.BytesRead())
	}
}
