package wal

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzReplay feeds arbitrary segment bytes to the decoder: it must never
// panic, and whatever it accepts must be exactly the records a writer would
// produce for that prefix, followed in version 2 by the end marker or
// nothing.
func FuzzReplay(f *testing.F) {
	seg := []byte(magic + "\x01\x00")
	seg = AppendRecord(seg, 1, []byte("payload"))
	seg = AppendRecord(seg, 2, nil)
	f.Add(seg)
	f.Add(seg[:len(seg)-3])
	f.Add([]byte(magic))
	// Version 2, as segment 1 of a WAL with spares: salted records, the
	// end marker, and a spare's old record after it.
	v2 := []byte(magic + "\x02\x00")
	v2 = append(v2, saltRecords(AppendRecord(AppendRecord(nil, 1, []byte("payload")), 2, nil), salt(1))...)
	v2 = append(v2, endMarker[:]...)
	v2 = append(v2, saltRecords(AppendRecord(nil, 1, []byte("old")), salt(7))...)
	f.Add(v2)
	f.Add(v2[:len(v2)-20])
	f.Fuzz(func(t *testing.T, b []byte) {
		version := "\x01\x00"
		if len(b) >= headerSize && b[6] == version2 && b[7] == 0 {
			version = "\x02\x00"
		}
		re := []byte(magic + version)
		err := replay(bytes.NewReader(b), 1, int64(len(b)), func(_ int64, typ byte, p []byte) error {
			n := len(re)
			re = AppendRecord(re, typ, p)
			if version == "\x02\x00" {
				saltRecords(re[n:], salt(1))
			}
			return nil
		})
		var d *Damage
		if err != nil && !errors.As(err, &d) {
			t.Fatalf("replay error is not *Damage: %v", err)
		}
		valid := b
		if d != nil {
			if d.Offset > int64(len(b)) {
				t.Fatalf("damage offset %d beyond %d", d.Offset, len(b))
			}
			valid = b[:max(d.Offset, 0)]
		}
		if d != nil && d.Offset < headerSize {
			return
		}
		if !bytes.HasPrefix(valid, re) {
			t.Fatalf("re-encoded records differ from the accepted prefix")
		}
		if rest := valid[len(re):]; len(rest) > 0 && (d != nil || version != "\x02\x00" || !bytes.HasPrefix(rest, endMarker[:])) {
			t.Fatalf("replay stopped at %d of %d bytes without the end marker or damage", len(re), len(valid))
		}
	})
}

// FuzzReadAt reads a record at an arbitrary offset of arbitrary bytes: it
// must never panic, and what it accepts must re-encode to the bytes there.
func FuzzReadAt(f *testing.F) {
	seg := []byte(magic + "\x01\x00")
	seg = AppendRecord(seg, 1, []byte("payload"))
	seg = AppendRecord(seg, 2, nil)
	f.Add(seg, int64(headerSize))
	f.Add(seg, int64(headerSize+recordHead+7))
	f.Add(seg[:len(seg)-3], int64(headerSize+recordHead+7))
	f.Add(seg, int64(1))
	f.Fuzz(func(t *testing.T, b []byte, off int64) {
		if off < 0 {
			off = -off
		}
		typ, p, err := ReadAt(bytes.NewReader(b), off, nil)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("read error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		rec := AppendRecord(nil, typ, p)
		if off+int64(len(rec)) > int64(len(b)) || !bytes.Equal(rec, b[off:off+int64(len(rec))]) {
			t.Fatalf("accepted record differs from the bytes at %d", off)
		}
	})
}

// FuzzParseRecord checks records parsed from an arbitrary buffer: no
// panic, no read past it, and what is accepted re-encodes to its bytes.
func FuzzParseRecord(f *testing.F) {
	f.Add(AppendRecord(nil, 3, []byte("skeleton")))
	f.Add(AppendRecord(nil, 1, nil)[:5])
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, p, n, err := ParseRecord(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("parse error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		if n > len(b) || !bytes.Equal(AppendRecord(nil, typ, p), b[:n]) {
			t.Fatalf("accepted record differs from its bytes")
		}
	})
}
