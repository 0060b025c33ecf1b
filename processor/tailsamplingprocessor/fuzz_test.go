package tailsamplingprocessor

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/store/wal"
)

func seedChunk(t testing.TB, sum *summarizer) []byte {
	_, first, _, _ := corpus(3, 1, []string{"errors"})
	td := request(first[0])
	var m ptrace.ProtoMarshaler
	_, chunks, err := encodeRequest(td, 42, &m, sum)
	if err != nil {
		t.Fatal(err)
	}
	p := append(chunks[0].head, chunks[0].tail...)
	setBack(p, 100)
	return p
}

func seedSummarizer() *summarizer {
	return &summarizer{fields: summaryFields{keys: []string{"customer.tier", "http.response.status_code"}}}
}

// FuzzParseChunk: a chunk or summarized record's header never panics the
// parser, and what it accepts stays inside the record.
func FuzzParseChunk(f *testing.F) {
	f.Add(byte(recChunk), seedChunk(f, nil))
	f.Add(byte(recSummarized), seedChunk(f, seedSummarizer()))
	f.Add(byte(recSummarized), make([]byte, chunkFixed+4))
	f.Fuzz(func(t *testing.T, typ byte, p []byte) {
		h, err := parseChunk(typ, p)
		if err != nil {
			return
		}
		extra := 0
		if typ == recSummarized {
			extra = 4 + len(h.summary)
		}
		if chunkFixed+4*len(h.scopes)+extra+len(h.body) != len(p) {
			t.Fatalf("parsed %d scopes, a %d-byte summary and a %d-byte body from %d bytes", len(h.scopes), len(h.summary), len(h.body), len(p))
		}
		var u ptrace.ProtoUnmarshaler
		u.UnmarshalTraces(h.body) // no panic; errors are the decoder's
		u.UnmarshalTraces(h.summary)
	})
}

// FuzzReplayBuffer opens a buffer whose one file holds arbitrary records
// after a valid skeleton: replay never panics, and reading back whatever
// it indexed never panics either.
func FuzzReplayBuffer(f *testing.F) {
	f.Add(seedChunk(f, nil), uint32(0), false)
	f.Add(seedChunk(f, seedSummarizer()), uint32(0), true)
	f.Add([]byte{}, uint32(3), false)
	f.Fuzz(func(t *testing.T, chunk []byte, back uint32, summarized bool) {
		dir := t.TempDir()
		seg := []byte("SLWAL\x00\x01\x00")
		td := request(nil)
		var m ptrace.ProtoMarshaler
		skel, _ := m.MarshalTraces(td)
		seg = wal.AppendRecord(seg, recSkeleton, skel)
		if len(chunk) >= chunkFixed {
			setBack(chunk, back)
		}
		typ := byte(recChunk)
		if summarized {
			typ = recSummarized
		}
		seg = wal.AppendRecord(seg, typ, chunk)
		if err := os.WriteFile(filepath.Join(dir, "00000001.wal"), seg, 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := openBuffer(bufferOptions{dir: dir, wait: time.Second, numTraces: 10, segmentSize: 1 << 20, sync: wal.SyncInterval, syncInterval: time.Second})
		if err != nil {
			return
		}
		defer b.close()
		b.release(time.Now().Add(time.Hour), 100)
	})
}

// FuzzEncodeRequest: any request the OTLP decoder accepts is cut into a
// skeleton and chunks that put back together give the request again:
// the skeleton is the request without its spans, and each trace's spans,
// in order, are its chunks' of the ResourceSpans and scopes they name.
func FuzzEncodeRequest(f *testing.F) {
	var m ptrace.ProtoMarshaler
	_, first, second, _ := corpus(5, 40, triggers["or"])
	for _, spans := range [][]genSpan{slices.Concat(first...), slices.Concat(second[:3]...)} {
		p, err := m.MarshalTraces(request(spans))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		var u ptrace.ProtoUnmarshaler
		td, err := u.UnmarshalTraces(p)
		if err != nil {
			return
		}
		skel, chunks, err := encodeRequest(td, 1, &m, seedSummarizer())
		if err != nil {
			t.Fatalf("encode a decoded request: %v", err)
		}
		checkEncoded(t, td, skel, chunks)
	})
}

func checkEncoded(t *testing.T, td ptrace.Traces, skel []byte, chunks []chunk) {
	var (
		m ptrace.ProtoMarshaler
		u ptrace.ProtoUnmarshaler
	)
	want := ptrace.NewTraces()
	td.CopyTo(want)
	type key struct {
		rs, scope int
		id        pcommon.TraceID
	}
	spans := map[key][]ptrace.Span{}
	for i, rs := range want.ResourceSpans().All() {
		for j, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				k := key{i, j, sp.TraceID()}
				spans[k] = append(spans[k], sp)
			}
		}
	}
	got, err := u.UnmarshalTraces(skel)
	if err != nil {
		t.Fatalf("decode skeleton: %v", err)
	}
	stripped := ptrace.NewTraces()
	want.CopyTo(stripped)
	for _, rs := range stripped.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			ss.Spans().RemoveIf(func(ptrace.Span) bool { return true })
		}
	}
	a, _ := m.MarshalTraces(stripped)
	b, _ := m.MarshalTraces(got)
	if string(a) != string(b) {
		t.Fatal("the skeleton is not the request without its spans")
	}
	seen := 0
	for _, c := range chunks {
		body, err := u.UnmarshalTraces(c.tail)
		if err != nil || body.ResourceSpans().Len() != 1 || body.ResourceSpans().At(0).ScopeSpans().Len() != len(c.scopes) {
			t.Fatalf("chunk body: %v", err)
		}
		for g, ss := range body.ResourceSpans().At(0).ScopeSpans().All() {
			w := spans[key{c.rs, int(c.scopes[g]), c.id}]
			if ss.Spans().Len() != len(w) {
				t.Fatalf("chunk of %s: %d spans in scope %d, want %d", c.id, ss.Spans().Len(), c.scopes[g], len(w))
			}
			for k, sp := range ss.Spans().All() {
				one, other := ptrace.NewTraces(), ptrace.NewTraces()
				sp.CopyTo(one.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty())
				w[k].CopyTo(other.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty())
				x, _ := m.MarshalTraces(one)
				y, _ := m.MarshalTraces(other)
				if string(x) != string(y) {
					t.Fatalf("span %d of trace %s differs", k, c.id)
				}
				seen++
			}
		}
		if h, err := parseChunk(c.typ, append(append([]byte{}, c.head...), c.tail...)); err != nil || h.id != c.id || int(h.spans) != c.spans {
			t.Fatalf("chunk record: %v", err)
		}
	}
	if seen != td.SpanCount() {
		t.Fatalf("%d spans in chunks, %d in the request", seen, td.SpanCount())
	}
}
