package block

import (
	"unsafe"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// keyCache remembers attribute keys by the address of their bytes, in a
// small direct-mapped table: a hit costs a shift and two compares where a
// map costs a hash of the whole key. The head interns keys, so the spans
// of a level-0 block share a few dozen key strings, and nearly every
// lookup of a flush hits; keys that do not share their bytes (spans
// decoded from blocks, tests) miss and fall through to the caller's slow
// path, with the same result.
//
// An entry keeps a pointer to its key's bytes, so the bytes stay alive,
// and their address cannot name another string, while the entry holds it.
type keyCache struct {
	slots [keyCacheSlots]keySlot
}

const keyCacheSlots = 256

type keySlot struct {
	ptr      *byte
	n        int
	typ      storage.ValueType
	prefixed string // the key with its type byte in front (attrRow.Key)
}

func (c *keyCache) slot(key string) *keySlot {
	p := uintptr(unsafe.Pointer(unsafe.StringData(key)))
	return &c.slots[(p>>4^p>>12)%keyCacheSlots]
}

// seen reports whether key was seen before (by address), noting it if not.
func (c *keyCache) seen(key string) bool {
	if key == "" {
		return false
	}
	s := c.slot(key)
	if s.ptr == unsafe.StringData(key) && s.n == len(key) {
		return true
	}
	*s = keySlot{ptr: unsafe.StringData(key), n: len(key)}
	return false
}

// prefixed returns attrRow's key for key and t: one allocation per key and
// type on a miss, none on a hit.
func (c *keyCache) prefixed(key string, t storage.ValueType) string {
	if key == "" {
		return string(rune(t))
	}
	s := c.slot(key)
	if s.ptr == unsafe.StringData(key) && s.n == len(key) && s.typ == t && s.prefixed != "" {
		return s.prefixed
	}
	p := string(rune(t)) + key
	*s = keySlot{ptr: unsafe.StringData(key), n: len(key), typ: t, prefixed: p}
	return p
}
