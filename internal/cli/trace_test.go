package cli

import (
	"bytes"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// TestWaterfall compares the rendering of a small trace with
// testdata/waterfall.txt: tree order, bar placement, durations, the error
// mark, an orphan as its own tree, and an escaped control character.
func TestWaterfall(t *testing.T) {
	res := func(svc string) *storage.Resource {
		return &storage.Resource{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str(svc)}}}
	}
	id := storage.TraceID{15: 1}
	base := int64(1_700_000_000) * 1e9
	ms := int64(1e6)
	spans := []storage.Span{
		{TraceID: id, SpanID: storage.SpanID{7: 3}, ParentSpanID: storage.SpanID{7: 1}, Name: "SELECT", Resource: res("db"), StartUnixNano: base + 50*ms, EndUnixNano: base + 90*ms, StatusCode: storage.StatusError, StatusMessage: "deadlock"},
		{TraceID: id, SpanID: storage.SpanID{7: 1}, Name: "GET /cart", Resource: res("frontend"), StartUnixNano: base, EndUnixNano: base + 100*ms},
		{TraceID: id, SpanID: storage.SpanID{7: 2}, ParentSpanID: storage.SpanID{7: 1}, Name: "cache\x1b[2J", Resource: res("cart"), StartUnixNano: base + 10*ms, EndUnixNano: base + 20*ms},
		{TraceID: id, SpanID: storage.SpanID{7: 4}, ParentSpanID: storage.SpanID{7: 9}, Name: "late", Resource: res("worker"), StartUnixNano: base + 95*ms, EndUnixNano: base + 100*ms},
	}
	var buf bytes.Buffer
	Waterfall(&buf, spans, 20)
	if os.Getenv("UPDATE_GOLDEN") != "" {
		require.NoError(t, os.WriteFile("testdata/waterfall.txt", buf.Bytes(), 0o644))
	}
	want, err := os.ReadFile("testdata/waterfall.txt")
	require.NoError(t, err)
	require.Equal(t, string(want), buf.String())
}
