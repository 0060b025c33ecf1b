package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func replayAll(t *testing.T, dir string) ([]string, error) {
	t.Helper()
	segs, err := Segments(dir)
	require.NoError(t, err)
	var got []string
	for _, s := range segs {
		if err := Replay(dir, s, func(typ byte, p []byte) error {
			got = append(got, fmt.Sprintf("%d:%s", typ, p))
			return nil
		}); err != nil {
			return got, err
		}
	}
	return got, nil
}

func TestConcurrentWritersAllReplay(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, Options{SegmentSize: 4 << 10})
	require.NoError(t, err)
	var wg sync.WaitGroup
	want := map[string]bool{}
	var mu sync.Mutex
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				p := fmt.Sprintf("g%d-r%d", g, i)
				require.NoError(t, w.Log(1, []byte(p)))
				mu.Lock()
				want["1:"+p] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.NoError(t, w.Close())
	segs, err := Segments(dir)
	require.NoError(t, err)
	require.Greater(t, len(segs), 3, "4 KiB segments must rotate")
	got, err := replayAll(t, dir)
	require.NoError(t, err)
	require.Len(t, got, len(want))
	for _, g := range got {
		require.True(t, want[g], g)
	}
}

func TestReopenStartsNewSegment(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, Options{})
	require.NoError(t, err)
	require.NoError(t, w.Log(1, []byte("a")))
	require.NoError(t, w.Close())
	w, err = Open(dir, Options{})
	require.NoError(t, err)
	require.Equal(t, 2, w.Current())
	require.NoError(t, w.Log(2, []byte("b")))
	require.NoError(t, w.Close())
	got, err := replayAll(t, dir)
	require.NoError(t, err)
	require.Equal(t, []string{"1:a", "2:b"}, got)
}

func TestTornTailIsReportedAndRepaired(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, Options{})
	require.NoError(t, err)
	for i := range 10 {
		require.NoError(t, w.Log(1, bytes.Repeat([]byte{byte('a' + i)}, 100)))
	}
	require.NoError(t, w.Close())
	path := SegmentPath(dir, 1)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(path, st.Size()-30))

	got, err := replayAll(t, dir)
	var d *Damage
	require.ErrorAs(t, err, &d)
	require.ErrorIs(t, err, ErrCorrupt)
	require.Len(t, got, 9, "records before the torn one survive")
	require.Equal(t, int64(headerSize+9*(recordHead+100)), d.Offset)
	require.Contains(t, err.Error(), "wal segment 1")

	require.NoError(t, Repair(dir, d))
	got, err = replayAll(t, dir)
	require.NoError(t, err)
	require.Len(t, got, 9)
}

func TestChecksumMismatchIsDamage(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, Options{})
	require.NoError(t, err)
	require.NoError(t, w.Log(1, []byte("hello")))
	require.NoError(t, w.Log(1, []byte("world")))
	require.NoError(t, w.Close())
	path := SegmentPath(dir, 1)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[headerSize+recordHead+1] ^= 0xff // flip a payload byte of record 1
	require.NoError(t, os.WriteFile(path, b, 0o644))
	got, err := replayAll(t, dir)
	require.ErrorContains(t, err, "checksum mismatch")
	require.Empty(t, got)
}

// fullDisk fails writes once armed, like a filesystem out of space: a
// partial write followed by ENOSPC.
type fullDisk struct {
	*os.File
	full *bool
}

func (f fullDisk) Write(p []byte) (int, error) {
	if *f.full {
		n, _ := f.File.Write(p[:len(p)/2])
		return n, syscall.ENOSPC
	}
	return f.File.Write(p)
}

func TestFullDiskRefusesAndLosesNothing(t *testing.T) {
	dir := t.TempDir()
	full := false
	w, err := Open(dir, Options{OpenFile: func(name string) (File, error) {
		f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		return fullDisk{f, &full}, nil
	}})
	require.NoError(t, err)
	require.NoError(t, w.Log(1, []byte("before")))
	full = true
	err = w.Log(1, []byte("during"))
	require.ErrorIs(t, err, syscall.ENOSPC)
	full = false
	require.NoError(t, w.Log(1, []byte("after")))
	require.NoError(t, w.Close())
	got, err := replayAll(t, dir)
	require.NoError(t, err, "the partial write was undone")
	require.Equal(t, []string{"1:before", "1:after"}, got)
}

// A size rotation is finished when Log returns. A cut right after it (the
// store cuts a full head as soon as the append returns) then closes the
// empty segment the rotation opened, and the two never race to leave an
// empty segment behind that no head claims.
func TestSizeRotationIsDoneWhenLogReturns(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, Options{SegmentSize: 1 << 10})
	require.NoError(t, err)
	defer w.Close()
	for i := range 50 {
		require.NoError(t, w.Log(1, bytes.Repeat([]byte("x"), 2<<10)))
		segs, err := Segments(dir)
		require.NoError(t, err)
		require.Len(t, segs, 2, "after record %d: the full segment and the one rotated to", i)
		closed, err := w.NextSegment()
		require.NoError(t, err)
		require.Equal(t, segs[1], closed, "the cut closes the segment the rotation opened")
		require.NoError(t, Remove(dir, closed))
		segs, err = Segments(dir)
		require.NoError(t, err)
		require.Equal(t, []int{closed + 1}, segs, "only the cut's new segment is left")
	}
}

// Positions from LogAt read back the record that was logged, while the log
// is still written by other goroutines and across size rotations, and
// ReplayAt reports the same positions.
func TestLogAtPositionsReadBack(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, Options{Sync: SyncInterval, SegmentSize: 8 << 10})
	require.NoError(t, err)
	const writers, each = 8, 60
	type logged struct {
		pos     Position
		payload string
	}
	got := make([][]logged, writers)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				p := fmt.Sprintf("writer %d record %d %s", g, i, strings.Repeat("y", i*7))
				pos, err := w.LogAt(byte(g+1), []byte(p))
				if !assert.NoError(t, err) {
					return
				}
				got[g] = append(got[g], logged{pos, p})
			}
		}()
	}
	wg.Wait()
	require.NoError(t, w.Close())
	segs, err := Segments(dir)
	require.NoError(t, err)
	require.Greater(t, len(segs), 3, "the records span several segments")

	files := map[int]*os.File{}
	for _, s := range segs {
		f, err := os.Open(SegmentPath(dir, s))
		require.NoError(t, err)
		defer f.Close()
		files[s] = f
	}
	byPos := map[Position]string{}
	for g, ls := range got {
		for _, l := range ls {
			typ, payload, err := ReadAt(files[l.pos.Segment], l.pos.Offset, nil)
			require.NoError(t, err)
			require.Equal(t, byte(g+1), typ)
			require.Equal(t, l.payload, string(payload))
			byPos[l.pos] = l.payload
		}
	}
	replayed := 0
	for _, s := range segs {
		require.NoError(t, ReplayAt(dir, s, func(off int64, _ byte, payload []byte) error {
			require.Equal(t, byPos[Position{s, off}], string(payload))
			replayed++
			return nil
		}))
	}
	require.Equal(t, writers*each, replayed)

	// A position that is not a record's start fails its checksum, never
	// returns another record's bytes as valid.
	l := got[0][5]
	_, _, err = ReadAt(files[l.pos.Segment], l.pos.Offset+1, nil)
	require.ErrorIs(t, err, ErrCorrupt)
}

func TestLogAfterClose(t *testing.T) {
	w, err := Open(t.TempDir(), Options{})
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.True(t, errors.Is(w.Log(1, nil), ErrClosed))
}

func BenchmarkLogParallel(b *testing.B) {
	w, err := Open(b.TempDir(), Options{})
	require.NoError(b, err)
	defer w.Close()
	payload := bytes.Repeat([]byte("x"), 64<<10)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := w.Log(1, payload); err != nil {
				b.Error(err)
			}
		}
	})
}

// A record logged as Payload and Tail reads back, and replays, as one
// payload; the size limit counts both parts.
func TestLogAllJoinsPayloadAndTail(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, Options{Sync: SyncInterval})
	require.NoError(t, err)
	pos, err := w.LogAll([]Record{
		{Type: 1, Payload: []byte("head|"), Tail: []byte("tail")},
		{Type: 2, Payload: []byte("only")},
		{Type: 3, Tail: []byte("tail only")},
	}, nil)
	require.NoError(t, err)
	_, err = w.LogAll([]Record{{Type: 4, Payload: make([]byte, maxRecord/2+1), Tail: make([]byte, maxRecord/2)}}, nil)
	require.ErrorContains(t, err, "exceeds")
	require.NoError(t, w.Close())

	f, err := os.Open(SegmentPath(dir, pos[0].Segment))
	require.NoError(t, err)
	defer f.Close()
	want := []string{"head|tail", "only", "tail only"}
	for i, p := range pos {
		typ, payload, err := ReadAt(f, p.Offset, nil)
		require.NoError(t, err)
		require.Equal(t, byte(i+1), typ)
		require.Equal(t, want[i], string(payload))
	}
	var replayed []string
	require.NoError(t, ReplayAt(dir, pos[0].Segment, func(_ int64, _ byte, payload []byte) error {
		replayed = append(replayed, string(payload))
		return nil
	}))
	require.Equal(t, want, replayed)
}
