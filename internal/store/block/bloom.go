package block

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// Bloom is a trace-ID bloom filter. Trace IDs are already uniformly random,
// so the two 64-bit halves of the ID serve as the two base hashes of
// Kirsch–Mitzenmacher double hashing; no hash function is needed.
//
// File layout (little-endian): "SLBF" | version uint16 (1) | k uint16 |
// m uint64 (bits) | words [ceil(m/64)]uint64.
type Bloom struct {
	k    uint32
	m    uint64
	bits []uint64
}

const bloomMagic = "SLBF"

// NewBloom sizes a filter for n IDs at false-positive rate p.
func NewBloom(n int, p float64) *Bloom {
	if n < 1 {
		n = 1
	}
	m := uint64(math.Ceil(-float64(n) * math.Log(p) / (math.Ln2 * math.Ln2)))
	m = (m + 63) &^ 63
	k := uint32(math.Round(float64(m) / float64(n) * math.Ln2))
	k = min(max(k, 1), 16)
	return &Bloom{k: k, m: m, bits: make([]uint64, m/64)}
}

func (b *Bloom) hashes(id storage.TraceID) (uint64, uint64) {
	h1 := binary.LittleEndian.Uint64(id[0:8])
	h2 := binary.LittleEndian.Uint64(id[8:16]) | 1
	return h1, h2
}

// Add inserts id.
func (b *Bloom) Add(id storage.TraceID) {
	h1, h2 := b.hashes(id)
	for i := range uint64(b.k) {
		bit := (h1 + i*h2) % b.m
		b.bits[bit/64] |= 1 << (bit % 64)
	}
}

// MayContain is false only when id was never added.
func (b *Bloom) MayContain(id storage.TraceID) bool {
	h1, h2 := b.hashes(id)
	for i := range uint64(b.k) {
		bit := (h1 + i*h2) % b.m
		if b.bits[bit/64]&(1<<(bit%64)) == 0 {
			return false
		}
	}
	return true
}

// MarshalBinary encodes the filter in the file layout.
func (b *Bloom) MarshalBinary() ([]byte, error) {
	out := make([]byte, 16, 16+8*len(b.bits))
	copy(out, bloomMagic)
	binary.LittleEndian.PutUint16(out[4:], 1)
	binary.LittleEndian.PutUint16(out[6:], uint16(b.k))
	binary.LittleEndian.PutUint64(out[8:], b.m)
	for _, w := range b.bits {
		out = binary.LittleEndian.AppendUint64(out, w)
	}
	return out, nil
}

var errBadBloom = errors.New("bad bloom filter")

// UnmarshalBloom decodes a filter written by MarshalBinary.
func UnmarshalBloom(p []byte) (*Bloom, error) {
	if len(p) < 16 || string(p[:4]) != bloomMagic {
		return nil, fmt.Errorf("%w: bad header", errBadBloom)
	}
	if v := binary.LittleEndian.Uint16(p[4:]); v != 1 {
		return nil, fmt.Errorf("%w: unknown version %d", errBadBloom, v)
	}
	k := uint32(binary.LittleEndian.Uint16(p[6:]))
	m := binary.LittleEndian.Uint64(p[8:])
	if k == 0 || m == 0 || m%64 != 0 || uint64(len(p)-16) != m/8 {
		return nil, fmt.Errorf("%w: k=%d m=%d for %d bytes", errBadBloom, k, m, len(p))
	}
	b := &Bloom{k: k, m: m, bits: make([]uint64, m/64)}
	for i := range b.bits {
		b.bits[i] = binary.LittleEndian.Uint64(p[16+8*i:])
	}
	return b, nil
}
