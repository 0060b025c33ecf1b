package block

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// TestReadCoreParts reads the parts of three blocks at once and checks
// what the scan's callers rely on: spans come in the order of the parts,
// exactly as reading block after block gives them; a consumer that stops
// gets nothing more; a block that cannot be read is reported once and
// skipped, or ends the scan when fail says so.
func TestReadCoreParts(t *testing.T) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 600)
	third := len(spans) / 3
	blocks := []*Block{
		writeTestBlock(t, st, spans[:third], 500),
		writeTestBlock(t, st, spans[third:2*third], 500),
		writeTestBlock(t, st, spans[2*third:], 500),
	}
	ctx := context.Background()
	q := &storage.SpanQuery{Projection: storage.ProjectCore}
	require.True(t, IsCoreScan(q))

	var parts []CorePart
	var perBlock [][]storage.SpanID
	for _, b := range blocks {
		p := b.CoreParts(q)
		require.Greater(t, len(p), scanParallel, "a block's parts outnumber the reads at once, or the test reads nothing ahead")
		parts = append(parts, p...)
		var ids []storage.SpanID
		sq := *q
		sq.Projection = storage.ProjectAll // the row-at-a-time path, not this one
		_, err := b.Spans(ctx, &sq, func(s *storage.Span) bool { ids = append(ids, s.SpanID); return true })
		require.NoError(t, err)
		perBlock = append(perBlock, ids)
	}
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
