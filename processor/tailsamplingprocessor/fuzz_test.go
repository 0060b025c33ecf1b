package tailsamplingprocessor

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/store/wal"
)

func seedChunk(t testing.TB) []byte {
	_, first, _, _ := corpus(3, 1, []string{"errors"})
	td := request(first[0])
	chunks := splitRequest(td)
	var m ptrace.ProtoMarshaler
	p, err := encodeChunk(&chunks[0], 42, &m)
	if err != nil {
		t.Fatal(err)
	}
	setBack(p, 100)
	return p
}

// FuzzParseChunk: a chunk record's header never panics the parser, and
// what it accepts stays inside the record.
func FuzzParseChunk(f *testing.F) {
	f.Add(seedChunk(f))
	f.Add(make([]byte, chunkFixed))
	f.Fuzz(func(t *testing.T, p []byte) {
		h, err := parseChunk(p)
		if err != nil {
			return
		}
		if len(h.body) > len(p) || chunkFixed+4*len(h.scopes)+len(h.body) != len(p) {
			t.Fatalf("parsed %d scopes and a %d-byte body from %d bytes", len(h.scopes), len(h.body), len(p))
		}
		var u ptrace.ProtoUnmarshaler
		u.UnmarshalTraces(h.body) // no panic; errors are the decoder's
	})
}

// FuzzReplayBuffer opens a buffer whose one file holds arbitrary records
// after a valid skeleton: replay never panics, and reading back whatever
// it indexed never panics either.
func FuzzReplayBuffer(f *testing.F) {
	f.Add(seedChunk(f), uint32(0))
	f.Add([]byte{}, uint32(3))
	f.Fuzz(func(t *testing.T, chunk []byte, back uint32) {
		dir := t.TempDir()
		seg := []byte("SLWAL\x00\x01\x00")
		td := request(nil)
		var m ptrace.ProtoMarshaler
		skel, _ := m.MarshalTraces(td)
		seg = wal.AppendRecord(seg, recSkeleton, skel)
		if len(chunk) >= chunkFixed {
			setBack(chunk, back)
		}
		seg = wal.AppendRecord(seg, recChunk, chunk)
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
