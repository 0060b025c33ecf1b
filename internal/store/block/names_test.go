package block

import (
	"context"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// TestNamesBounded writes blocks whose every span has a name, an attribute
// key and a resource attribute key of its own (IDs in them, as badly
// instrumented services send): each name list of the meta stops at
// maxNames and says so, a merge of two such blocks too, and a block of
// few names lists them all.
func TestNamesBounded(t *testing.T) {
	ctx := context.Background()
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	distinct := func(from, n int) []storage.Span {
		spans := make([]storage.Span, n)
		for i := range spans {
			k := strconv.Itoa(from + i)
			spans[i] = storage.Span{
				TraceID: storage.TraceID{byte((from + i) >> 16), byte((from + i) >> 8), byte(from + i), 1}, SpanID: storage.SpanID{1},
				Name: "GET /users/" + k, StartUnixNano: 1, EndUnixNano: 2,
				Attrs:    storage.Attrs{{Key: "user." + k, Value: storage.Str("x")}},
				Resource: &storage.Resource{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str("api")}, {Key: "pod." + k, Value: storage.Str("y")}}},
			}
		}
		slices.SortFunc(spans, func(a, b storage.Span) int { return CompareSpans(&a, &b) })
		return spans
	}
	var blocks []*Block
	for _, from := range []int{0, 100_000} {
		m, err := WriteSpans(ctx, st, seqSpans(distinct(from, maxNames+2000)), WriteOptions{TempDir: t.TempDir()})
		require.NoError(t, err)
		require.True(t, m.NamesTruncated)
		require.Len(t, m.SpanNames, maxNames)
		require.Len(t, m.AttributeNames, maxNames)
		require.Len(t, m.ResourceAttributeNames, maxNames)
		blk, err := Open(ctx, st, Traces, m.ID)
		require.NoError(t, err)
		defer blk.Close()
		blocks = append(blocks, blk)
	}
	m, err := MergeSpans(ctx, st, blocks, WriteOptions{TempDir: t.TempDir(), Level: 1})
	require.NoError(t, err)
	require.True(t, m.NamesTruncated)
	require.Len(t, m.SpanNames, maxNames)
	require.Len(t, m.AttributeNames, maxNames)
	require.Len(t, m.ResourceAttributeNames, maxNames)

	m, err = WriteSpans(ctx, st, seqSpans(distinct(500_000, 50)), WriteOptions{TempDir: t.TempDir()})
	require.NoError(t, err)
	require.False(t, m.NamesTruncated)
	require.Len(t, m.SpanNames, 50)
	require.Len(t, m.AttributeNames, 50)
	require.Len(t, m.ResourceAttributeNames, 51) // and service.name
}
