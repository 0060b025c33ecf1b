package store

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"unsafe"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// arena holds a head's spans and log records encoded, in append-only pages,
// with what they share kept once: interned attribute keys and names, and
// each distinct resource and scope.
//
// Decoded, a span of the workload generator costs about 1.2 KB of heap:
// the struct, one 56-byte Attr per attribute and a separate allocation per
// string, all of them pointers the garbage collector walks on every cycle.
// Encoded, it is about 205 B in pages that hold no pointers at all. The
// head is cut at a share of the memory budget, so what a record costs sets
// the size of level-0 blocks and with it how many merge levels every span
// goes through (docs/benchmarks.md).
//
// The encodings shared by span and log records (headSpans and headLogs
// give the records):
//
//	attrs:   uvarint n × (ref key | value)
//	value:   type | str for strings, bytes, arrays and maps; zigzag varint
//	         for integers and booleans; 8 bytes little-endian for doubles;
//	         nothing for empty values
//	ref:     uvarint 0 | str  (inline), or uvarint i+1 (interned string i)
//	str:     uvarint length | bytes
//
// Keys and names repeat across nearly every record, so they are interned
// (up to maxInterned strings of up to maxInternedLen bytes); values mostly
// do not and are stored inline.
//
// Written bytes are never modified, which is what lets a decoder hand out
// strings that point into the pages (unsafe.String): such a string keeps
// its page alive for as long as a query result holds it, and is never
// changed under it.
//
// It is not safe for concurrent use; the head's lock guards it.
type arena struct {
	pages  [][]byte
	strs   []string
	strIdx map[string]uint32
	// recent caches strIdx's answers by a cheap hash of the string:
	// the keys and names of a head's spans are a few dozen strings that
	// repeat on every span, and a map lookup hashes the whole key.
	recent   [recentSlots]internSlot
	res      []*storage.Resource
	resIdx   map[string]uint32
	scopes   []*storage.InstrumentationScope
	scopeIdx map[string]uint32
	// The last resource and scope pointers seen and their references:
	// records of one ResourceSpans share them. Reset after each append
	// (forget), so that a request's pdata is not kept alive by them.
	lastRes   *storage.Resource
	lastRef   uint32
	lastScope *storage.InstrumentationScope
	lastSRef  uint32
	buf       []byte
}

const (
	// Pages start small so that a nearly empty head holds little, and
	// double up to maxPage; a record larger than that gets a page of its
	// own size.
	minPage = 16 << 10
	maxPage = 1 << 20
	// maxInterned bounds the interned strings of one head: past it, keys
	// and names are stored inline. Longer strings are never interned.
	maxInterned    = 1 << 16
	maxInternedLen = 128
	// Heap cost estimates, checked against the live heap by
	// TestHeadMemoryEstimate: an interned string is its bytes, a string
	// header in the list and a map entry; a resource or scope adds its
	// encoding as the map key.
	internedBytes = 16 + 48 + stringOverhead
	resEntryBytes = 64
)

var errRecord = errors.New("bad head record")

func newArena() *arena {
	return &arena{strIdx: map[string]uint32{}, resIdx: map[string]uint32{}, scopeIdx: map[string]uint32{}}
}

// forget drops the pointer caches at the end of an append.
func (a *arena) forget() {
	a.lastRes, a.lastScope = nil, nil
}

// write copies the record in a.buf into a page and returns where it went
// and the bytes a new page added.
func (a *arena) write() (page, off uint32, added int64) {
	n := len(a.buf)
	k := len(a.pages)
	if k == 0 || cap(a.pages[k-1])-len(a.pages[k-1]) < n {
		size := minPage
		if k > 0 {
			size = min(2*cap(a.pages[k-1]), maxPage)
		}
		size = max(size, n)
		a.pages = append(a.pages, make([]byte, 0, size))
		added = int64(size)
		k++
	}
	p := &a.pages[k-1]
	off = uint32(len(*p))
	*p = append(*p, a.buf...)
	return uint32(k - 1), off, added
}

// record returns the bytes from a record's start to its page's end.
func (a *arena) record(page, off uint32) []byte { return a.pages[page][off:] }

func (a *arena) resourceRef(r *storage.Resource) (uint32, int64) {
	if r == a.lastRes && a.lastRes != nil {
		return a.lastRef, 0
	}
	var schema string
	var attrs storage.Attrs
	if r != nil {
		schema, attrs = r.SchemaURL, r.Attrs
	}
	key := appendStr(a.buf[:0], schema)
	key = appendPlainAttrs(key, attrs)
	a.buf = key
	ref, ok := a.resIdx[string(key)]
	var added int64
	if !ok {
		ref = uint32(len(a.res))
		c := &storage.Resource{SchemaURL: strings.Clone(schema), Attrs: cloneAttrs(attrs)}
		a.res = append(a.res, c)
		a.resIdx[string(key)] = ref
		added = resEntryBytes + int64(len(key)) + resourceBytes(c, nil)
	}
	a.lastRes, a.lastRef = r, ref
	return ref, added
}

func (a *arena) scopeRef(s *storage.InstrumentationScope) (uint32, int64) {
	if s == a.lastScope && a.lastScope != nil {
		return a.lastSRef, 0
	}
	var sc storage.InstrumentationScope
	if s != nil {
		sc = *s
	}
	key := appendStr(a.buf[:0], sc.Name)
	key = appendStr(key, sc.Version)
	key = appendStr(key, sc.SchemaURL)
	key = appendPlainAttrs(key, sc.Attrs)
	a.buf = key
	ref, ok := a.scopeIdx[string(key)]
	var added int64
	if !ok {
		ref = uint32(len(a.scopes))
		c := &storage.InstrumentationScope{Name: strings.Clone(sc.Name), Version: strings.Clone(sc.Version), SchemaURL: strings.Clone(sc.SchemaURL), Attrs: cloneAttrs(sc.Attrs)}
		a.scopes = append(a.scopes, c)
		a.scopeIdx[string(key)] = ref
		added = resEntryBytes + int64(len(key)) + resourceBytes(nil, c)
	}
	a.lastScope, a.lastSRef = s, ref
	return ref, added
}

// intern returns the interned index of s, interning it when there is
// room; ok is false when s is to be stored inline.
func (a *arena) intern(s string) (i uint32, added int64, ok bool) {
	var slot *internSlot
	if len(s) > 0 {
		slot = &a.recent[recentSlot(s)]
		// An empty slot's string is "", which s is not.
		if slot.s == s {
			return slot.i, 0, true
		}
	}
	if i, ok := a.strIdx[s]; ok {
		if slot != nil {
			*slot = internSlot{s: a.strs[i], i: i}
		}
		return i, 0, true
	}
	if len(a.strs) >= maxInterned || len(s) > maxInternedLen {
		return 0, 0, false
	}
	i = uint32(len(a.strs))
	c := strings.Clone(s)
	a.strs = append(a.strs, c)
	a.strIdx[c] = i
	if slot != nil {
		*slot = internSlot{s: c, i: i}
	}
	return i, internedBytes + int64(len(s)), true
}

// internSlot is a string of arena.recent and its interned index.
type internSlot struct {
	s string
	i uint32
}

const recentSlots = 256

// recentSlot hashes s's length and three of its bytes: keys that differ
// in none of them share a slot, and take turns in it.
func recentSlot(s string) int {
	n := len(s)
	return int(uint(n)*0x9e37^uint(s[0])*0x2f^uint(s[n/2])*0x61^uint(s[n-1])*0xc5) & (recentSlots - 1)
}

// appendRef appends s as a ref.
func (a *arena) appendRef(b []byte, s string) ([]byte, int64) {
	i, added, ok := a.intern(s)
	if !ok {
		return appendStr(append(b, 0), s), 0
	}
	return binary.AppendUvarint(b, uint64(i)+1), added
}

// appendAttrs appends attrs; seen, when not nil, is called with each
// interned key.
func (a *arena) appendAttrs(b []byte, attrs storage.Attrs, seen func(uint32) int64) ([]byte, int64) {
	var added int64
	b = binary.AppendUvarint(b, uint64(len(attrs)))
	for i := range attrs {
		k, n, ok := a.intern(attrs[i].Key)
		added += n
		if ok {
			b = binary.AppendUvarint(b, uint64(k)+1)
			if seen != nil {
				added += seen(k)
			}
		} else {
			b = appendStr(append(b, 0), attrs[i].Key)
		}
		b = appendValue(b, attrs[i].Value)
	}
	return b, added
}

func appendValue(b []byte, v storage.Value) []byte {
	b = append(b, byte(v.Type))
	switch v.Type {
	case storage.TypeEmpty:
	case storage.TypeInt, storage.TypeBool:
		b = binary.AppendVarint(b, v.Int)
	case storage.TypeDouble:
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v.Double))
	default:
		b = appendStr(b, v.Str)
	}
	return b
}

// appendPlainAttrs encodes attributes without interning: the key under
// which a resource or scope is kept once.
func appendPlainAttrs(b []byte, a storage.Attrs) []byte {
	b = binary.AppendUvarint(b, uint64(len(a)))
	for i := range a {
		b = appendStr(b, a[i].Key)
		b = appendValue(b, a[i].Value)
	}
	return b
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func cloneAttrs(a storage.Attrs) storage.Attrs {
	if len(a) == 0 {
		return nil
	}
	out := make(storage.Attrs, len(a))
	for i := range a {
		out[i] = storage.Attr{Key: strings.Clone(a[i].Key), Value: a[i].Value}
		out[i].Value.Str = strings.Clone(a[i].Value.Str)
	}
	return out
}

// recordReader reads a record with a sticky error: the records are the
// head's own, so an error is a bug, reported instead of a panic.
type recordReader struct {
	a   *arena
	b   []byte
	err error
}

func (r *recordReader) fail() {
	if r.err == nil {
		r.err = errRecord
	}
	r.b = nil
}

func (r *recordReader) fixed(dst []byte) {
	if len(r.b) < len(dst) {
		r.fail()
		return
	}
	copy(dst, r.b)
	r.b = r.b[len(dst):]
}

func (r *recordReader) byte() byte {
	if len(r.b) == 0 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *recordReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a length that must fit in what is left of the record, one
// byte an element at least.
func (r *recordReader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return 0
	}
	return int(n)
}

func (r *recordReader) str() string {
	n := r.count()
	if n == 0 {
		return ""
	}
	s := unsafe.String(&r.b[0], n)
	r.b = r.b[n:]
	return s
}

func (r *recordReader) ref() string {
	i := r.uvarint()
	if i == 0 {
		return r.str()
	}
	if i > uint64(len(r.a.strs)) {
		r.fail()
		return ""
	}
	return r.a.strs[i-1]
}

func (r *recordReader) resource() *storage.Resource {
	if i := r.uvarint(); i < uint64(len(r.a.res)) {
		return r.a.res[i]
	}
	r.fail()
	return nil
}

func (r *recordReader) scope() *storage.InstrumentationScope {
	if i := r.uvarint(); i < uint64(len(r.a.scopes)) {
		return r.a.scopes[i]
	}
	r.fail()
	return nil
}

// attrs appends the record's attributes to dst. Each is decoded in place,
// in dst's new element: building an Attr and appending it copied its 56
// bytes through three temporaries, and the copies' overlapping loads of
// narrower stores stalled store forwarding, the larger part of a head
// flush's decoding (BenchmarkHeadDecode).
func (r *recordReader) attrs(dst storage.Attrs) storage.Attrs {
	n := r.count()
	dst = slices.Grow(dst, n)
	for range n {
		if r.err != nil {
			break
		}
		dst = dst[:len(dst)+1]
		a := &dst[len(dst)-1]
		a.Key = r.ref()
		r.valueInto(&a.Value)
	}
	return dst
}

func (r *recordReader) value() storage.Value {
	var v storage.Value
	r.valueInto(&v)
	return v
}

// valueInto decodes a value into v, which it overwrites whole.
func (r *recordReader) valueInto(v *storage.Value) {
	*v = storage.Value{Type: storage.ValueType(r.byte())}
	switch v.Type {
	case storage.TypeEmpty:
	case storage.TypeInt, storage.TypeBool:
		v.Int = r.varint()
	case storage.TypeDouble:
		if len(r.b) < 8 {
			r.fail()
			break
		}
		v.Double = math.Float64frombits(binary.LittleEndian.Uint64(r.b))
		r.b = r.b[8:]
	default:
		v.Str = r.str()
	}
}
