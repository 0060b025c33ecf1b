package tailsamplingprocessor

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/store/wal"
)

func seedChunk(t testing.TB, sum *summarizer) []byte {
	_, first, _, _ := corpus(3, 1, []string{"errors"})
	td := request(first[0])
	chunks := splitRequest(td)
	var m ptrace.ProtoMarshaler
	if err := chunks[0].encode(42, &m, sum); err != nil {
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
