package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// Damage describes where replay of a segment stopped early.
type Damage struct {
	Segment int
	Offset  int64 // where the first invalid record starts
	Size    int64 // the segment's size on disk
	Err     error // why the record is invalid; wraps ErrCorrupt
}

func (d *Damage) Error() string {
	return fmt.Sprintf("wal segment %d: %v at offset %d (%d bytes after it unreadable)", d.Segment, d.Err, d.Offset, d.Size-d.Offset)
}

func (d *Damage) Unwrap() error { return d.Err }

// Replay calls fn for every valid record of segment seg, in order. The
// payload passed to fn is only valid during the call. When the segment ends
// in an invalid record, Replay returns a *Damage; fn's own errors are
// returned as they are.
func Replay(dir string, seg int, fn func(typ byte, payload []byte) error) error {
	return ReplayAt(dir, seg, func(_ int64, typ byte, payload []byte) error { return fn(typ, payload) })
}

// ReplayAt is Replay that also passes each record's offset in the segment,
// the Position.Offset that LogAt returned for it.
func ReplayAt(dir string, seg int, fn func(off int64, typ byte, payload []byte) error) error {
	f, err := os.Open(SegmentPath(dir, seg))
	if err != nil {
		return fmt.Errorf("open wal segment: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat wal segment: %w", err)
	}
	return replay(bufio.NewReaderSize(f, 1<<20), seg, st.Size(), fn)
}

func replay(r io.Reader, seg int, size int64, fn func(off int64, typ byte, payload []byte) error) error {
	damage := func(off int64, err error) error {
		return &Damage{Segment: seg, Offset: off, Size: size, Err: err}
	}
	var hdr [headerSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return damage(0, fmt.Errorf("%w: short header", ErrCorrupt))
	}
	if string(hdr[:6]) != magic {
		return damage(0, fmt.Errorf("%w: bad magic", ErrCorrupt))
	}
	var (
		v2     bool
		salted uint32
	)
	switch v := binary.LittleEndian.Uint16(hdr[6:]); v {
	case version1:
	case version2:
		v2, salted = true, salt(seg)
	default:
		return damage(0, fmt.Errorf("%w: unknown version %d", ErrCorrupt, v))
	}
	off := int64(headerSize)
	var rh [recordHead]byte
	var payload []byte
	for {
		n, err := io.ReadFull(r, rh[:])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return damage(off, fmt.Errorf("%w: torn record header (%d of %d bytes)", ErrCorrupt, n, recordHead))
		}
		length := binary.LittleEndian.Uint32(rh[0:])
		if v2 && rh == endMarker {
			// The end of what was written; a spare's old records may follow.
			return nil
		}
		if length > maxRecord || off+recordHead+int64(length) > size {
			return damage(off, fmt.Errorf("%w: record length %d runs past the end", ErrCorrupt, length))
		}
		if cap(payload) < int(length) {
			payload = make([]byte, length)
		}
		payload = payload[:length]
		if _, err := io.ReadFull(r, payload); err != nil {
			return damage(off, fmt.Errorf("%w: torn record", ErrCorrupt))
		}
		crc := crc32.Update(crc32.Checksum(rh[8:9], castagnoli), castagnoli, payload)
		if crc^salted != binary.LittleEndian.Uint32(rh[4:]) {
			return damage(off, fmt.Errorf("%w: checksum mismatch", ErrCorrupt))
		}
		if err := fn(off, rh[8], payload); err != nil {
			return err
		}
		off += recordHead + int64(length)
	}
}

// ReadAt reads the record that starts at off in a version 1 segment file
// (a WAL without spares) and checks it. The payload is read into buf when
// it fits, else into a new slice. A record that is short or fails its
// checksum is an error wrapping ErrCorrupt.
func ReadAt(r io.ReaderAt, off int64, buf []byte) (typ byte, payload []byte, err error) {
	var rh [recordHead]byte
	if _, err := r.ReadAt(rh[:], off); err != nil {
		return 0, nil, fmt.Errorf("%w: record header at %d: %v", ErrCorrupt, off, err)
	}
	length := binary.LittleEndian.Uint32(rh[0:])
	if length > maxRecord {
		return 0, nil, fmt.Errorf("%w: record length %d at %d", ErrCorrupt, length, off)
	}
	if cap(buf) < recordHead+int(length) {
		buf = make([]byte, recordHead+int(length))
	}
	buf = buf[:recordHead+int(length)]
	copy(buf, rh[:])
	if _, err := r.ReadAt(buf[recordHead:], off+recordHead); err != nil {
		return 0, nil, fmt.Errorf("%w: record at %d: %v", ErrCorrupt, off, err)
	}
	typ, payload, _, err = ParseRecord(buf)
	if err != nil {
		return 0, nil, fmt.Errorf("%w at %d", err, off)
	}
	return typ, payload, nil
}

// ParseRecord checks the record at the start of b, as read from a version
// 1 segment in one piece with others, and returns its type, its payload
// (a slice of b) and its length with the header. It never reads past b.
func ParseRecord(b []byte) (typ byte, payload []byte, n int, err error) {
	if len(b) < recordHead {
		return 0, nil, 0, fmt.Errorf("%w: %d bytes for a record header", ErrCorrupt, len(b))
	}
	length := binary.LittleEndian.Uint32(b[0:])
	if length > maxRecord || int64(length) > int64(len(b)-recordHead) {
		return 0, nil, 0, fmt.Errorf("%w: record length %d past the %d bytes read", ErrCorrupt, length, len(b))
	}
	payload = b[recordHead : recordHead+int(length)]
	if crc32.Update(crc32.Checksum(b[8:9], castagnoli), castagnoli, payload) != binary.LittleEndian.Uint32(b[4:]) {
		return 0, nil, 0, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	return b[8], payload, recordHead + int(length), nil
}

// Repair truncates a damaged segment to its valid prefix so that it can be
// replayed cleanly next time. It is idempotent.
func Repair(dir string, d *Damage) error {
	if d == nil {
		return errors.New("wal: nothing to repair")
	}
	off := d.Offset
	if off < headerSize {
		// Not even the header survived: the segment holds nothing.
		return os.Remove(SegmentPath(dir, d.Segment))
	}
	f, err := os.OpenFile(SegmentPath(dir, d.Segment), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("repair wal segment: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(off); err != nil {
		return fmt.Errorf("repair wal segment: %w", err)
	}
	return f.Sync()
}
