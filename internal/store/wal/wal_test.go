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
	"time"

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

func (f fullDisk) WriteAt(p []byte, off int64) (int, error) {
	if *f.full {
		n, _ := f.File.WriteAt(p[:len(p)/2], off)
		return n, syscall.ENOSPC
	}
	return f.File.WriteAt(p, off)
}

func TestFullDiskRefusesAndLosesNothing(t *testing.T) {
	for _, spares := range []int{0, 1} {
		t.Run(fmt.Sprintf("spares=%d", spares), func(t *testing.T) {
			dir := t.TempDir()
			full := false
			w, err := Open(dir, Options{Spares: spares, OpenFile: func(name string, flag int, perm os.FileMode) (File, error) {
				f, err := os.OpenFile(name, flag, perm)
				if err != nil {
					return nil, err
				}
				return fullDisk{f, &full}, nil
			}})
			require.NoError(t, err)
			if spares > 0 {
				// The failed write lands in a spare, over its old records.
				require.NoError(t, w.Log(1, bytes.Repeat([]byte("o"), 1000)))
				_, err := w.NextSegment()
				require.NoError(t, err)
				require.NoError(t, w.Remove(1))
				_, err = w.NextSegment()
				require.NoError(t, err)
				require.NoFileExists(t, sparePath(dir, 1), "segment 3 started in the spare")
			}
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
		})
	}
}

// A spare's old records never replay as the new segment's: the end marker
// stops replay after a process crash (Close leaves the file as a crash
// does), and the salt after a machine crash that lost the marker.
func TestSpareIsWrittenAgain(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, Options{Spares: 1})
	require.NoError(t, err)
	old := bytes.Repeat([]byte("o"), 100)
	for range 50 {
		require.NoError(t, w.Log(1, old))
	}
	seg1, err := os.Stat(SegmentPath(dir, 1))
	require.NoError(t, err)
	_, err = w.NextSegment()
	require.NoError(t, err)
	require.NoError(t, w.Remove(1))
	require.NoFileExists(t, SegmentPath(dir, 1))
	require.FileExists(t, sparePath(dir, 1))
	_, err = w.NextSegment()
	require.NoError(t, err)
	require.Equal(t, 3, w.Current())
	seg3, err := os.Stat(SegmentPath(dir, 3))
	require.NoError(t, err)
	require.True(t, os.SameFile(seg1, seg3), "segment 3 is written in segment 1's file")
	require.NoFileExists(t, sparePath(dir, 1))
	// New records of the old ones' size end where an old record starts.
	var want []string
	for i := range 3 {
		p := bytes.Repeat([]byte{byte('a' + i)}, len(old))
		require.NoError(t, w.Log(2, p))
		want = append(want, "2:"+string(p))
	}
	require.NoError(t, w.Close())
	got, err := replayAll(t, dir)
	require.NoError(t, err)
	require.Equal(t, want, got)

	// The old record after the new ones, as it was before the end marker
	// was written over its header.
	off := int64(headerSize + 3*(recordHead+len(old)))
	stale := saltRecords(AppendRecord(nil, 1, old), salt(1))
	f, err := os.OpenFile(SegmentPath(dir, 3), os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(stale[:recordHead], off)
	require.NoError(t, err)
	onDisk := make([]byte, len(stale))
	_, err = f.ReadAt(onDisk, off)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.Equal(t, stale, onDisk, "a whole old record follows the new ones")
	got, err = replayAll(t, dir)
	var d *Damage
	require.ErrorAs(t, err, &d)
	require.ErrorContains(t, err, "checksum mismatch")
	require.Equal(t, off, d.Offset)
	require.Equal(t, want, got)
}

// Spares outlive the process, no more of them than asked for, and new
// segments are numbered after them: a segment never shares its number, and
// so its salt, with the old records of the spare it is written in.
func TestSparesAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, Options{Spares: 2})
	require.NoError(t, err)
	for range 3 {
		require.NoError(t, w.Log(1, []byte("x")))
		_, err := w.NextSegment()
		require.NoError(t, err)
	}
	require.NoError(t, w.Remove(3))
	require.FileExists(t, sparePath(dir, 1))
	require.FileExists(t, sparePath(dir, 2))
	require.NoFileExists(t, SegmentPath(dir, 3), "past the spares a segment is deleted")
	require.NoError(t, w.Close())
	// The store's replay removes every segment it wrote to blocks.
	require.NoError(t, Remove(dir, 4))

	w, err = Open(dir, Options{Spares: 1})
	require.NoError(t, err)
	require.NoFileExists(t, sparePath(dir, 1), "one spare kept of two")
	require.NoFileExists(t, sparePath(dir, 2), "and the segment started in it")
	require.Equal(t, 3, w.Current())
	require.NoError(t, w.Log(1, []byte("y")))
	require.NoError(t, w.Close())
	got, err := replayAll(t, dir)
	require.NoError(t, err)
	require.Equal(t, []string{"1:y"}, got)
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

// BenchmarkLogSegments logs requests of about the 20k spans/s workload's
// size one after another, each fsynced, and starts a segment every 64 of
// them as head cuts do, deleting the one before as a flush does: with
// spares the deleted segments are written again. cpu-us/op is the
// process's user and system CPU a request, most of it the kernel's in
// write(2) and fsync(2).
func BenchmarkLogSegments(b *testing.B) {
	for _, spares := range []int{0, 2} {
		b.Run(fmt.Sprintf("spares=%d", spares), func(b *testing.B) {
			w, err := Open(b.TempDir(), Options{Spares: spares})
			require.NoError(b, err)
			defer w.Close()
			payload := bytes.Repeat([]byte("span"), 100<<10/4)
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			start := cpuTime(b)
			for i := range b.N {
				require.NoError(b, w.Log(1, payload))
				if i%64 == 63 {
					old, err := w.NextSegment()
					require.NoError(b, err)
					require.NoError(b, w.Remove(old))
				}
			}
			b.ReportMetric(float64(cpuTime(b)-start)/1e3/float64(b.N), "cpu-us/op")
		})
	}
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
