package block

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
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
// 8,000, in four windows, and their columns of IDs are in more than one
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
	// alone, and only its first window when it has two; inside the
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
		// A part read in windows: a scan that ends once the first is
		// handed on reads no page of the others.
		var st storage.Stats
		ctx, cancel := context.WithCancel(storage.WithStats(ctx, &st))
		heads := 0
		err := parts[0].read(ctx, &coreScratch{}, true, func(h *coreRows, last bool) {
			heads++
			require.Positive(t, h.n)
			require.False(t, last)
			cancel()
		}, func() bool { return ctx.Err() == nil })
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, 1, heads)
		require.Positive(t, st.BytesRead())
		require.Less(t, st.BytesRead(), partBytes[0], "the first window alone")

		sizes := checkWindows(t, parts[0])
		require.Len(t, sizes, 4, "a row group of eight pages of trace IDs: an eighth, as many again, a quarter, the rest")
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

// checkWindows reads p in windows and whole, checks that the windows
// hand on every kept row once, in order, as the whole read does, and
// returns the windows' sizes.
func checkWindows(t *testing.T, p CorePart) []int {
	t.Helper()
	read := func(split bool) (sizes []int, ids []storage.SpanID) {
		// Each window is taken before the next is read: reuse has
		// nothing to wait for.
		require.NoError(t, p.read(context.Background(), &coreScratch{}, split, func(h *coreRows, last bool) {
			sizes = append(sizes, h.n)
			var s storage.Span
			for j := range h.n {
				h.span(j, &s)
				ids = append(ids, s.SpanID)
			}
		}, func() bool { return true }))
		return sizes, ids
	}
	sizes, ids := read(true)
	whole, wids := read(false)
	require.Len(t, whole, 1)
	require.Equal(t, wids, ids)
	return sizes
}

// A part of many pages of trace IDs is read in windows that grow: an
// eighth of its kept rows, as many again, a quarter, then the rest, each
// cut where a page of trace IDs begins.
func TestCorePartWindows(t *testing.T) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 3000)
	b := writeTestBlock(t, st, spans, len(spans))
	parts := b.CoreParts(&storage.SpanQuery{Projection: storage.ProjectCore})
	require.Len(t, parts, 1)
	sizes := checkWindows(t, parts[0])
	require.Len(t, sizes, 4, "windows %v", sizes)
	// Through ReadCoreParts, where the third window is read into the
	// first's buffer once that has been taken: the same rows, in order,
	// however far the reader gets ahead of a consumer that keeps each
	// span.
	var want, got []storage.Span
	require.NoError(t, parts[0].read(context.Background(), &coreScratch{}, false, func(h *coreRows, _ bool) {
		for j := range h.n {
			var s storage.Span
			h.span(j, &s)
			want = append(want, s)
		}
	}, func() bool { return true }))
	require.NoError(t, ReadCoreParts(context.Background(), parts, func(s *storage.Span) bool {
		got = append(got, *s)
		return true
	}, func(b *Block, err error) error { return err }))
	require.Equal(t, want, got)
	n := len(spans)
	for w, share := range []float64{1.0 / 8, 1.0 / 8, 1.0 / 4} {
		// Within a page of trace IDs (64 KiB of 16-byte IDs) of its share.
		require.InDelta(t, share*float64(n), float64(sizes[w]), 4096, "window %d of %v", w, sizes)
	}
}

// A scan that stops in the second window of its first part has started
// no other part: the reads run ahead only once fn has taken two windows
// of a part with more to come. Each part started takes a scratch, and
// the scan's first comes from a pool made empty here, so the pool's New
// counts the parts started.
func TestReadCorePartsStopInSecondWindow(t *testing.T) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 3000)
	first := writeTestBlock(t, st, spans, len(spans))
	second := writeTestBlock(t, st, spans[:1000], 500)
	q := &storage.SpanQuery{Projection: storage.ProjectCore}
	parts := append(first.CoreParts(q), second.CoreParts(q)...)
	require.Len(t, parts, 3)
	sizes := checkWindows(t, parts[0])
	require.Greater(t, len(sizes), 2)

	saved := coreScratches
	t.Cleanup(func() { coreScratches = saved })
	var made atomic.Int32
	for range 20 {
		made.Store(0)
		coreScratches = &sync.Pool{New: func() any { made.Add(1); return &coreScratch{} }}
		n, stop := 0, sizes[0]+sizes[1]/2
		require.NoError(t, ReadCoreParts(context.Background(), parts, func(*storage.Span) bool {
			n++
			return n < stop
		}, func(b *Block, err error) error { return err }))
		require.Equal(t, stop, n)
		require.EqualValues(t, 1, made.Load(), "a part after the first was started")
	}
}
