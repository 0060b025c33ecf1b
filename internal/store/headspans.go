package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"unsafe"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// headSpans holds a head's spans encoded, not as storage.Span structs.
//
// A decoded span costs about 1.2 KB of heap on the workload's spans: the
// struct, one 56-byte Attr per attribute and a separate allocation per
// string, all of them pointers the garbage collector walks on every cycle.
// Encoded, the same span is about a quarter of that, in pages that hold no
// pointers at all. Since the head is cut at a share of the memory budget,
// a span that costs a quarter makes level-0 blocks four times larger, and
// every span is then rewritten by one merge level fewer (docs/benchmarks.md).
//
// Each span has a fixed-size entry, with the fields that deduplication,
// the trace index and the block sort order read, and a record in a page:
//
//	record:  parent[8] | zigzag(end-start) | uvarint flags | kind | status |
//	         ref name | str trace_state | str status_message |
//	         uvarint resource | uvarint scope | attrs |
//	         uvarint n × (zigzag(time-start) | ref name | attrs) events |
//	         uvarint n × (trace_id[16] | span_id[8] | str trace_state | uvarint flags | attrs) links
//	attrs:   uvarint n × (ref key | type | value)
//	value:   str for strings, bytes, arrays and maps; zigzag varint for
//	         integers and booleans; 8 bytes little-endian for doubles;
//	         nothing for empty values
//	ref:     uvarint 0 | str  (inline), or uvarint i+1 (interned string i)
//	str:     uvarint length | bytes
//
// Attribute keys and span names repeat across nearly every span, so they
// are interned per head (up to maxInterned strings); values mostly do not
// and are stored inline. Resources and scopes are kept once per distinct
// encoding, as blocks keep them once per dictionary entry.
//
// Written bytes are never modified, which is what lets decode hand out
// strings that point into the pages (unsafe.String): such a string keeps
// its page alive for as long as a query result holds it, and is never
// changed under it.
//
// It is not safe for concurrent use; the head's lock guards it.
type headSpans struct {
	entries chunked[spanEntry]
	pages   [][]byte
	strs    []string
	strIdx  map[string]uint32
	// spanKeys are the interned keys seen on spans (not only on events or
	// links): the head's share of TagNames.
	spanKeys  map[uint32]struct{}
	res       []*storage.Resource
	resIdx    map[string]uint32
	scopes    []*storage.InstrumentationScope
	scopeIdx  map[string]uint32
	ops       map[headOp]struct{}
	lastRes   *storage.Resource
	lastRef   uint32
	lastScope *storage.InstrumentationScope
	lastSRef  uint32
	buf       []byte
}

// spanEntry is a span's fixed part: what deduplication, the trace index
// and the block sort order (trace ID, start, span ID) read without
// decoding the record.
type spanEntry struct {
	TraceID storage.TraceID
	SpanID  storage.SpanID
	Start   int64
	page    uint32
	off     uint32
}

// headOp is one (service, name, kind) seen in the head, for Operations.
type headOp struct {
	service, name string
	kind          storage.SpanKind
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
	// encoding as the map key; an operation is a map entry of two strings
	// and a kind.
	internedBytes = 16 + 48 + stringOverhead
	entryBytes    = int64(unsafe.Sizeof(spanEntry{}))
	resEntryBytes = 64
	opEntryBytes  = 64
	spanKeyBytes  = 16
)

var errSpanRecord = errors.New("bad head span record")

func (h *headSpans) len() int { return h.entries.len() }

func (h *headSpans) entry(i int) *spanEntry { return h.entries.at(i) }

// push encodes s and returns its index and the heap bytes it added.
func (h *headSpans) push(s *storage.Span) (int32, int64) {
	var added int64
	if h.strIdx == nil {
		h.strIdx = map[string]uint32{}
		h.spanKeys = map[uint32]struct{}{}
		h.resIdx = map[string]uint32{}
		h.scopeIdx = map[string]uint32{}
		h.ops = map[headOp]struct{}{}
	}
	resRef, n := h.resourceRef(s.Resource)
	added += n
	scopeRef, n := h.scopeRef(s.Scope)
	added += n
	op := headOp{service: h.res[resRef].ServiceName(), name: s.Name, kind: s.Kind}
	if _, ok := h.ops[op]; !ok {
		op.name = strings.Clone(op.name)
		h.ops[op] = struct{}{}
		added += opEntryBytes + strBytes(op.name)
	}

	b := h.buf[:0]
	b = append(b, s.ParentSpanID[:]...)
	b = binary.AppendVarint(b, s.EndUnixNano-s.StartUnixNano)
	b = binary.AppendUvarint(b, uint64(s.Flags))
	b = append(b, byte(s.Kind), byte(s.StatusCode))
	b, n = h.appendRef(b, s.Name, false)
	added += n
	b = appendStr(b, s.TraceState)
	b = appendStr(b, s.StatusMessage)
	b = binary.AppendUvarint(b, uint64(resRef))
	b = binary.AppendUvarint(b, uint64(scopeRef))
	b, n = h.appendAttrs(b, s.Attrs, true)
	added += n
	b = binary.AppendUvarint(b, uint64(len(s.Events)))
	for i := range s.Events {
		e := &s.Events[i]
		b = binary.AppendVarint(b, e.TimeUnixNano-s.StartUnixNano)
		b, n = h.appendRef(b, e.Name, false)
		added += n
		b, n = h.appendAttrs(b, e.Attrs, false)
		added += n
	}
	b = binary.AppendUvarint(b, uint64(len(s.Links)))
	for i := range s.Links {
		l := &s.Links[i]
		b = append(b, l.TraceID[:]...)
		b = append(b, l.SpanID[:]...)
		b = appendStr(b, l.TraceState)
		b = binary.AppendUvarint(b, uint64(l.Flags))
		b, n = h.appendAttrs(b, l.Attrs, false)
		added += n
	}
	h.buf = b

	page, off, n := h.place(len(b))
	added += n
	h.pages[page] = append(h.pages[page], b...)
	if h.entries.len()%chunkLen == 0 {
		added += chunkLen * entryBytes
	}
	i := h.entries.push(&spanEntry{TraceID: s.TraceID, SpanID: s.SpanID, Start: s.StartUnixNano, page: page, off: off})
	return i, added
}

// place finds room for a record of n bytes, starting a page when the last
// one is full, and returns where it goes and the bytes a new page added.
func (h *headSpans) place(n int) (page, off uint32, added int64) {
	if k := len(h.pages); k > 0 {
		last := h.pages[k-1]
		if cap(last)-len(last) >= n {
			return uint32(k - 1), uint32(len(last)), 0
		}
	}
	size := minPage
	if k := len(h.pages); k > 0 {
		size = min(2*cap(h.pages[k-1]), maxPage)
	}
	size = max(size, n)
	h.pages = append(h.pages, make([]byte, 0, size))
	return uint32(len(h.pages) - 1), 0, int64(size)
}

func (h *headSpans) resourceRef(r *storage.Resource) (uint32, int64) {
	if r == h.lastRes && len(h.res) > 0 {
		return h.lastRef, 0
	}
	var schema string
	var attrs storage.Attrs
	if r != nil {
		schema, attrs = r.SchemaURL, r.Attrs
	}
	key := appendStr(h.buf[:0], schema)
	key = appendPlainAttrs(key, attrs)
	h.buf = key
	ref, ok := h.resIdx[string(key)]
	var added int64
	if !ok {
		ref = uint32(len(h.res))
		c := &storage.Resource{SchemaURL: strings.Clone(schema), Attrs: cloneAttrs(attrs)}
		h.res = append(h.res, c)
		h.resIdx[string(key)] = ref
		added = resEntryBytes + int64(len(key)) + resourceBytes(c, nil)
	}
	h.lastRes, h.lastRef = r, ref
	return ref, added
}

func (h *headSpans) scopeRef(s *storage.InstrumentationScope) (uint32, int64) {
	if s == h.lastScope && len(h.scopes) > 0 {
		return h.lastSRef, 0
	}
	var sc storage.InstrumentationScope
	if s != nil {
		sc = *s
	}
	key := appendStr(h.buf[:0], sc.Name)
	key = appendStr(key, sc.Version)
	key = appendStr(key, sc.SchemaURL)
	key = appendPlainAttrs(key, sc.Attrs)
	h.buf = key
	ref, ok := h.scopeIdx[string(key)]
	var added int64
	if !ok {
		ref = uint32(len(h.scopes))
		c := &storage.InstrumentationScope{Name: strings.Clone(sc.Name), Version: strings.Clone(sc.Version), SchemaURL: strings.Clone(sc.SchemaURL), Attrs: cloneAttrs(sc.Attrs)}
		h.scopes = append(h.scopes, c)
		h.scopeIdx[string(key)] = ref
		added = resEntryBytes + int64(len(key)) + resourceBytes(nil, c)
	}
	h.lastScope, h.lastSRef = s, ref
	return ref, added
}

// appendRef appends s interned when it can be; spanKey marks an interned
// key as one seen on a span.
func (h *headSpans) appendRef(b []byte, s string, spanKey bool) ([]byte, int64) {
	i, ok := h.strIdx[s]
	var added int64
	if !ok {
		if len(h.strs) >= maxInterned || len(s) > maxInternedLen {
			b = append(b, 0)
			return appendStr(b, s), 0
		}
		i = uint32(len(h.strs))
		c := strings.Clone(s)
		h.strs = append(h.strs, c)
		h.strIdx[c] = i
		added = internedBytes + int64(len(s))
	}
	if spanKey {
		if _, ok := h.spanKeys[i]; !ok {
			h.spanKeys[i] = struct{}{}
			added += spanKeyBytes
		}
	}
	return binary.AppendUvarint(b, uint64(i)+1), added
}

func (h *headSpans) appendAttrs(b []byte, a storage.Attrs, spanKeys bool) ([]byte, int64) {
	var added int64
	b = binary.AppendUvarint(b, uint64(len(a)))
	for i := range a {
		var n int64
		b, n = h.appendRef(b, a[i].Key, spanKeys)
		added += n
		b = appendValue(b, a[i].Value)
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

// decode fills dst with span i. dst's Attrs are reused; its strings point
// into the head's pages, and its Events and Links are allocated afresh, so
// that a span decoded into the same dst again does not change them.
func (h *headSpans) decode(i int, dst *storage.Span) error {
	e := h.entries.at(i)
	r := recordReader{h: h, b: h.pages[e.page][e.off:]}
	attrs := dst.Attrs[:0]
	*dst = storage.Span{TraceID: e.TraceID, SpanID: e.SpanID, StartUnixNano: e.Start}
	r.fixed(dst.ParentSpanID[:])
	dst.EndUnixNano = e.Start + r.varint()
	dst.Flags = uint32(r.uvarint())
	dst.Kind = storage.SpanKind(r.byte())
	dst.StatusCode = storage.StatusCode(r.byte())
	dst.Name = r.ref()
	dst.TraceState = r.str()
	dst.StatusMessage = r.str()
	if res := r.uvarint(); res < uint64(len(h.res)) {
		dst.Resource = h.res[res]
	} else {
		r.fail()
	}
	if sc := r.uvarint(); sc < uint64(len(h.scopes)) {
		dst.Scope = h.scopes[sc]
	} else {
		r.fail()
	}
	dst.Attrs = r.attrs(attrs)
	if n := r.count(); n > 0 {
		dst.Events = make([]storage.Event, n)
		for j := range dst.Events {
			ev := &dst.Events[j]
			ev.TimeUnixNano = e.Start + r.varint()
			ev.Name = r.ref()
			ev.Attrs = r.attrs(nil)
		}
	}
	if n := r.count(); n > 0 {
		dst.Links = make([]storage.Link, n)
		for j := range dst.Links {
			l := &dst.Links[j]
			r.fixed(l.TraceID[:])
			r.fixed(l.SpanID[:])
			l.TraceState = r.str()
			l.Flags = uint32(r.uvarint())
			l.Attrs = r.attrs(nil)
		}
	}
	return r.err
}

// recordReader reads a record with a sticky error: the records are the
// head's own, so an error is a bug, reported instead of a panic.
type recordReader struct {
	h   *headSpans
	b   []byte
	err error
}

func (r *recordReader) fail() {
	if r.err == nil {
		r.err = errSpanRecord
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
	if i > uint64(len(r.h.strs)) {
		r.fail()
		return ""
	}
	return r.h.strs[i-1]
}

func (r *recordReader) attrs(dst storage.Attrs) storage.Attrs {
	n := r.count()
	for range n {
		if r.err != nil {
			break
		}
		k := r.ref()
		dst = append(dst, storage.Attr{Key: k, Value: r.value()})
	}
	return dst
}

func (r *recordReader) value() storage.Value {
	v := storage.Value{Type: storage.ValueType(r.byte())}
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
	return v
}

// compareEntries is block.CompareSpans on entries.
func compareEntries(a, b *spanEntry) int {
	if c := bytes.Compare(a.TraceID[:], b.TraceID[:]); c != 0 {
		return c
	}
	if a.Start != b.Start {
		if a.Start < b.Start {
			return -1
		}
		return 1
	}
	return bytes.Compare(a.SpanID[:], b.SpanID[:])
}

// sorted returns the span indexes in block order.
func (h *headSpans) sorted() []int32 {
	out := make([]int32, h.len())
	for i := range out {
		out[i] = int32(i)
	}
	slices.SortFunc(out, func(a, b int32) int { return compareEntries(h.entries.at(int(a)), h.entries.at(int(b))) })
	return out
}
