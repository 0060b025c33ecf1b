package wal

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzReplay feeds arbitrary segment bytes to the decoder: it must never
// panic, and whatever it accepts must be exactly the records a writer would
// produce for that prefix.
func FuzzReplay(f *testing.F) {
	seg := []byte(magic + "\x01\x00")
	seg = AppendRecord(seg, 1, []byte("payload"))
	seg = AppendRecord(seg, 2, nil)
	f.Add(seg)
	f.Add(seg[:len(seg)-3])
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		var re []byte
		re = append(re, magic+"\x01\x00"...)
		err := replay(bytes.NewReader(b), 1, int64(len(b)), func(_ int64, typ byte, p []byte) error {
			re = AppendRecord(re, typ, p)
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
		if d == nil || d.Offset >= headerSize {
			if !bytes.Equal(re, valid) {
				t.Fatalf("re-encoded records differ from the accepted prefix")
			}
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
