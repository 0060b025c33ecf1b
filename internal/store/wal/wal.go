// Package wal is the store's write-ahead log: numbered segment files of
// length-prefixed, CRC-32C-checksummed records, written with group commit.
//
// Segment file layout (all integers little-endian), see docs/storage-format.md:
//
//	header:  "SLWAL\x00" (6 bytes) | version uint16 (1 or 2)
//	record:  length uint32 | crc32c uint32 | type uint8 | payload [length]byte
//	end:     0xFFFFFFFF | 0 uint32 | 0 uint8 (version 2 only)
//
// The CRC covers the type byte and the payload. A record is valid only when
// it is complete and its CRC matches; replay stops at the first invalid
// record of a segment. A torn record at the end of the newest segment is the
// normal result of a crash and is cut off (Repair); anywhere else it means
// damage and is reported.
//
// Version 2 is written by a WAL that keeps deleted segments as spares
// (Options.Spares) and writes them again, over their old records: a write
// and an fsync into blocks a file already has cost about half the CPU and
// half the time of ones that grow it, which must also commit the file's new
// size and blocks to the filesystem's journal. Two rules keep the old
// records out of replay. Each record's stored CRC is XORed with the
// segment's salt, a bijection of its number, so a record written under
// another number fails its check. And every write ends with the end
// marker, which the next write overwrites: after a process crash replay
// stops there, cleanly, instead of at an old record; after a machine crash
// that kept the records but not the marker, the salt stops it.
package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	magic = "SLWAL\x00"
	// version1 segments have no salt and no end marker; version2 segments
	// may be written over a spare's old records (package doc).
	version1    = 1
	version2    = 2
	headerSize  = 8
	recordHead  = 9
	maxRecord   = 256 << 20
	segmentName = "%08d.wal"
	spareName   = "%08d.spare"
)

// endMarker ends every write to a version 2 segment. Its length field is
// longer than any record may be, so no record is taken for it.
var endMarker = [recordHead]byte{0xff, 0xff, 0xff, 0xff}

// salt is what a version 2 segment's records XOR into their stored CRC:
// an odd multiplier makes it a bijection of the segment's number, so two
// segments never share one.
func salt(seg int) uint32 { return uint32(seg) * 0x9e3779b1 }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrClosed is returned by Log after Close.
var ErrClosed = errors.New("wal closed")

// ErrCorrupt marks a record that is not a torn tail: a checksum mismatch or
// a bad length in the middle of a segment.
var ErrCorrupt = errors.New("corrupt wal record")

// SyncPolicy says when Log returns relative to fsync.
type SyncPolicy int

const (
	// SyncAlways fsyncs before Log returns. Concurrent writers share one
	// fsync (group commit). Acknowledged data survives power loss.
	SyncAlways SyncPolicy = iota
	// SyncInterval writes before Log returns and fsyncs on a timer.
	// Acknowledged data survives a process crash; a machine crash can lose
	// up to one interval.
	SyncInterval
)

// Options configure a WAL.
type Options struct {
	Sync         SyncPolicy
	SyncInterval time.Duration
	// SegmentSize is the size after which the writer starts a new segment.
	SegmentSize int64
	// Spares is how many segments Remove keeps, renamed, for the writer to
	// start new segments in instead of creating files (package doc); with
	// any, segments are written in version 2. Zero (or less) keeps none
	// and writes version 1, which ParseRecord and ReadAt read.
	Spares int
	// OpenFile opens a segment or a spare as os.OpenFile does; tests use
	// it to inject faults. The writer writes at offsets (WriteAt), never
	// in append mode.
	OpenFile func(name string, flag int, perm os.FileMode) (File, error)
}

// File is the part of *os.File the writer uses.
type File interface {
	io.WriterAt
	Sync() error
	Truncate(size int64) error
	Close() error
}

// WAL is safe for concurrent use.
type WAL struct {
	dir  string
	opts Options

	mu      sync.Mutex
	buf     []byte // records not yet handed to the flusher
	spare   []byte
	round   *round // the round that buf belongs to
	closed  bool
	seg     File
	segIdx  int
	segSize int64  // where the next write goes: the end of the valid records
	segSalt uint32 // the segment's salt; 0 in version 1
	broken  error  // set when a failed write could not be undone
	// spareSegs are the numbers of the spare files (spareName), which
	// the next segments are started in, last first.
	spareSegs []int

	kick chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
}

// round is one group commit: every record appended between two flushes.
// Its records are written together to one segment, from base on.
type round struct {
	done chan struct{}
	err  error
	seg  int
	base int64
}

// Position is where a record starts: its segment and the offset of its
// header in the segment file. ReadAt reads it back.
type Position struct {
	Segment int
	Offset  int64
}

// Open opens dir for appending. It starts a new segment after the last one,
// so that replayed segments are never appended to; callers replay existing
// segments (Segments, Replay) before or after Open.
func Open(dir string, opts Options) (*WAL, error) {
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = 64 << 20
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = time.Second
	}
	opts.Spares = max(opts.Spares, 0)
	if opts.OpenFile == nil {
		opts.OpenFile = func(name string, flag int, perm os.FileMode) (File, error) {
			return os.OpenFile(name, flag, perm)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create wal dir: %w", err)
	}
	segs, err := Segments(dir)
	if err != nil {
		return nil, err
	}
	w := &WAL{dir: dir, opts: opts, round: newRound(), kick: make(chan struct{}, 1), done: make(chan struct{})}
	next := 1
	if len(segs) > 0 {
		next = segs[len(segs)-1] + 1
	}
	spares, err := w.listSpares()
	if err != nil {
		return nil, err
	}
	if len(spares) > 0 {
		// New segments are numbered after the spares too: their old
		// records never share a salt with a segment written over them.
		next = max(next, spares[len(spares)-1]+1)
	}
	if err := w.openSegment(next); err != nil {
		return nil, err
	}
	w.wg.Add(1)
	go w.flusher()
	return w, nil
}

func newRound() *round { return &round{done: make(chan struct{})} }

// SegmentPath returns the file name of segment i.
func SegmentPath(dir string, i int) string {
	return filepath.Join(dir, fmt.Sprintf(segmentName, i))
}

// Segments lists the segment numbers in dir, ascending.
func Segments(dir string) ([]int, error) { return numbered(dir, ".wal") }

// numbered lists the numbers of the files in dir named a number and then
// suffix, ascending.
func numbered(dir, suffix string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list wal: %w", err)
	}
	var nums []int
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), suffix)
		if !ok {
			continue
		}
		if i, err := strconv.Atoi(name); err == nil {
			nums = append(nums, i)
		}
	}
	slices.Sort(nums)
	return nums, nil
}

func sparePath(dir string, i int) string {
	return filepath.Join(dir, fmt.Sprintf(spareName, i))
}

// listSpares returns the numbers of the spare files in the directory,
// ascending, and keeps the newest Options.Spares of them as w.spareSegs. It
// deletes the rest: an earlier process may have kept more.
func (w *WAL) listSpares() ([]int, error) {
	all, err := numbered(w.dir, ".spare")
	if err != nil {
		return nil, err
	}
	keep := max(len(all)-w.opts.Spares, 0)
	for _, i := range all[:keep] {
		if err := os.Remove(sparePath(w.dir, i)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove wal spare: %w", err)
		}
	}
	w.spareSegs = slices.Clone(all[keep:])
	return all, nil
}

// header returns the start of a new segment numbered i: its header and,
// in version 2, the end marker.
func (w *WAL) header(i int) ([]byte, uint32) {
	b := make([]byte, headerSize, headerSize+recordHead)
	copy(b, magic)
	if w.opts.Spares == 0 {
		binary.LittleEndian.PutUint16(b[6:], version1)
		return b, 0
	}
	binary.LittleEndian.PutUint16(b[6:], version2)
	return append(b, endMarker[:]...), salt(i)
}

// openSegment starts segment i, in a spare when there is one. The header
// is synced, and so is the directory, before any record is written to it.
func (w *WAL) openSegment(i int) error {
	hdr, segSalt := w.header(i)
	f, err := w.reuseSpare(i, hdr)
	if f == nil && err == nil {
		f, err = w.createSegment(i, hdr)
	}
	if err != nil {
		return err
	}
	w.seg, w.segIdx, w.segSize, w.segSalt = f, i, headerSize, segSalt
	return nil
}

func (w *WAL) createSegment(i int, hdr []byte) (File, error) {
	path := SegmentPath(w.dir, i)
	f, err := w.opts.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create wal segment: %w", err)
	}
	if _, err := f.WriteAt(hdr, 0); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("write wal segment header: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("sync wal segment: %w", err)
	}
	if err := syncDir(w.dir); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// reuseSpare starts segment i in the newest spare, if any. The new header
// and end marker are synced before the spare takes the segment's name, so
// a crash at any point leaves either a spare or a segment with nothing in
// it to replay. A spare that fails is deleted and the caller creates a
// file instead: it returns a nil File with the error only when the
// directory could not be synced after the rename.
func (w *WAL) reuseSpare(i int, hdr []byte) (File, error) {
	if len(w.spareSegs) == 0 {
		return nil, nil
	}
	s := w.spareSegs[len(w.spareSegs)-1]
	w.spareSegs = w.spareSegs[:len(w.spareSegs)-1]
	spare, path := sparePath(w.dir, s), SegmentPath(w.dir, i)
	f, err := w.opts.OpenFile(spare, os.O_WRONLY, 0)
	if err != nil {
		os.Remove(spare)
		return nil, nil
	}
	if _, err = f.WriteAt(hdr, 0); err == nil {
		if err = f.Sync(); err == nil {
			err = os.Rename(spare, path)
		}
	}
	if err != nil {
		f.Close()
		os.Remove(spare)
		return nil, nil
	}
	if err := syncDir(w.dir); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// AppendRecord appends one encoded record of a version 1 segment to dst.
func AppendRecord(dst []byte, typ byte, payload []byte) []byte {
	return appendRecord(dst, typ, payload, nil)
}

// appendRecord appends a record whose payload is head followed by tail.
func appendRecord(dst []byte, typ byte, head, tail []byte) []byte {
	var h [recordHead]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(len(head)+len(tail)))
	h[8] = typ
	crc := crc32.Update(crc32.Checksum(h[8:9], castagnoli), castagnoli, head)
	crc = crc32.Update(crc, castagnoli, tail)
	binary.LittleEndian.PutUint32(h[4:], crc)
	dst = append(dst, h[:]...)
	dst = append(dst, head...)
	return append(dst, tail...)
}

// Log appends a record and returns once it is durable under the sync
// policy. payload is copied before Log returns; the caller keeps ownership.
// An error means the record is not in the log and the write may be retried.
func (w *WAL) Log(typ byte, payload []byte) error {
	_, err := w.LogAt(typ, payload)
	return err
}

// LogAt is Log that also returns where the record was written, for
// callers that read records back by position (ReadAt) while the log is
// still being written, as the tail-sampling buffer does.
func (w *WAL) LogAt(typ byte, payload []byte) (Position, error) {
	var pos [1]Position
	_, err := w.LogAll([]Record{{Type: typ, Payload: payload}}, pos[:0])
	return pos[0], err
}

// Record is a record to log. Its payload is Payload followed by Tail:
// a caller whose record is a header and a body encoded apart passes both
// instead of copying them together first.
type Record struct {
	Type    byte
	Payload []byte
	Tail    []byte
}

// LogAll logs several records in one group commit: they are durable
// together when it returns, one fsync covers them all, and they lie one
// after the other in one segment. Their positions are appended to pos, in
// order. On error none of them is in the log.
func (w *WAL) LogAll(recs []Record, pos []Position) ([]Position, error) {
	for _, r := range recs {
		if n := len(r.Payload) + len(r.Tail); n > maxRecord {
			return pos, fmt.Errorf("wal record of %d bytes exceeds %d", n, maxRecord)
		}
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return pos, ErrClosed
	}
	if w.broken != nil {
		err := w.broken
		w.mu.Unlock()
		return pos, err
	}
	first := len(pos)
	for _, r := range recs {
		pos = append(pos, Position{Offset: int64(len(w.buf))})
		w.buf = appendRecord(w.buf, r.Type, r.Payload, r.Tail)
	}
	r := w.round
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	<-r.done
	if r.err != nil {
		return pos[:first], r.err
	}
	for i := first; i < len(pos); i++ {
		pos[i].Segment = r.seg
		pos[i].Offset += r.base
	}
	return pos, nil
}

// flusher writes and syncs one round at a time. While it waits on the disk,
// new records gather in the next round: that is the group commit.
func (w *WAL) flusher() {
	defer w.wg.Done()
	var ticker <-chan time.Time
	if w.opts.Sync == SyncInterval {
		t := time.NewTicker(w.opts.SyncInterval)
		defer t.Stop()
		ticker = t.C
	}
	for {
		select {
		case <-w.kick:
			w.flush()
		case <-ticker:
			w.mu.Lock()
			if w.seg != nil {
				if err := w.seg.Sync(); err != nil && w.broken == nil {
					w.broken = fmt.Errorf("sync wal: %w", err)
				}
			}
			w.mu.Unlock()
		case <-w.done:
			w.flush()
			return
		}
	}
}

func (w *WAL) flush() {
	w.mu.Lock()
	if len(w.buf) == 0 {
		w.mu.Unlock()
		return
	}
	buf, r, f, size, segSalt := w.buf, w.round, w.seg, w.segSize, w.segSalt
	w.buf, w.spare = w.spare[:0], nil
	w.round = newRound()
	r.seg, r.base = w.segIdx, size
	w.mu.Unlock()

	n := int64(len(buf))
	if w.opts.Spares > 0 {
		buf = saltRecords(buf, segSalt)
		buf = append(buf, endMarker[:]...)
	}
	_, err := f.WriteAt(buf, size)
	if err == nil && w.opts.Sync == SyncAlways {
		err = f.Sync()
	}

	w.mu.Lock()
	if err != nil {
		err = fmt.Errorf("write wal segment %d: %w", w.segIdx, err)
		// Undo the partial write so that later records stay readable. If
		// that fails too, the segment is unusable: refuse writes until a
		// new segment can be started.
		if terr := f.Truncate(size); terr != nil {
			w.broken = fmt.Errorf("%w (and truncating it back failed: %v)", err, terr)
		}
	} else {
		w.segSize += n
	}
	w.spare = buf
	if err == nil && w.segSize >= w.opts.SegmentSize {
		// Size-based rotation keeps replay of any one segment bounded. It
		// happens before the round's writers return: a caller that cuts
		// (NextSegment) right after its Log must find the rotation done, or
		// the two rotations race and leave an empty segment no head owns.
		if _, cerr := w.nextSegmentLocked(); cerr != nil && w.broken == nil {
			w.broken = cerr
		}
	}
	w.mu.Unlock()
	r.err = err
	close(r.done)
}

// saltRecords XORs salt into the stored CRC of every record in b, which
// holds whole records, and returns b.
func saltRecords(b []byte, salt uint32) []byte {
	for off := 0; off < len(b); {
		crc := b[off+4 : off+8]
		binary.LittleEndian.PutUint32(crc, binary.LittleEndian.Uint32(crc)^salt)
		off += recordHead + int(binary.LittleEndian.Uint32(b[off:]))
	}
	return b
}

// NextSegment closes the current segment and starts a new one. Records
// logged after it returns go to the new segment. It returns the number of
// the segment it closed. The caller must make sure no Log is in flight if it
// needs every earlier record in the closed segment (the store holds its
// append lock).
func (w *WAL) NextSegment() (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		return 0, errors.New("wal: NextSegment with records in flight")
	}
	return w.nextSegmentLocked()
}

func (w *WAL) nextSegmentLocked() (int, error) {
	old := w.segIdx
	if w.seg != nil {
		if err := w.seg.Sync(); err != nil {
			return 0, fmt.Errorf("sync wal segment %d: %w", old, err)
		}
		w.seg.Close()
		w.seg = nil
	}
	if err := w.openSegment(old + 1); err != nil {
		return 0, err
	}
	w.broken = nil
	return old, nil
}

// Recover clears a broken state by starting a new segment. The store calls
// it before retrying writes after a disk error.
func (w *WAL) Recover() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken == nil {
		return nil
	}
	if w.seg != nil {
		w.seg.Close()
		w.seg = nil
	}
	if err := w.openSegment(w.segIdx + 1); err != nil {
		return err
	}
	w.broken = nil
	return nil
}

// Current returns the number of the segment being written.
func (w *WAL) Current() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.segIdx
}

// Close flushes pending records and closes the segment.
func (w *WAL) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	close(w.done)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seg == nil {
		return nil
	}
	err := w.seg.Sync()
	if cerr := w.seg.Close(); err == nil {
		err = cerr
	}
	return err
}

// Remove deletes the segments numbered up to and including upto, never
// the current one, and keeps up to Options.Spares of them as spares for
// new segments to be written in.
func (w *WAL) Remove(upto int) error {
	segs, err := Segments(w.dir)
	if err != nil {
		return err
	}
	for _, s := range segs {
		w.mu.Lock()
		cur, keep := w.segIdx, len(w.spareSegs) < w.opts.Spares
		w.mu.Unlock()
		if s > upto || s >= cur {
			break
		}
		path := SegmentPath(w.dir, s)
		// Listed once renamed, not before: a segment's start must find
		// the file it takes.
		if keep && os.Rename(path, sparePath(w.dir, s)) == nil {
			w.mu.Lock()
			if keep = len(w.spareSegs) < w.opts.Spares; keep {
				w.spareSegs = append(w.spareSegs, s)
			}
			w.mu.Unlock()
			if keep {
				continue
			}
			path = sparePath(w.dir, s)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove wal segment: %w", err)
		}
	}
	return nil
}

// Remove deletes segments numbered up to and including upto, from a
// directory no WAL has open (the store's replay).
func Remove(dir string, upto int) error {
	segs, err := Segments(dir)
	if err != nil {
		return err
	}
	for _, s := range segs {
		if s > upto {
			break
		}
		if err := os.Remove(SegmentPath(dir, s)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove wal segment: %w", err)
		}
	}
	return nil
}
