package store

import (
	"cmp"
	"encoding/binary"
	"math/bits"
	"slices"
	"strings"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// headSpans holds a head's spans in its arena. Each span has a fixed-size
// entry, with the fields that deduplication, the trace index and the block
// sort order read, and a record:
//
//	span:  parent[8] | zigzag(end-start) | uvarint flags | kind | status |
//	       ref name | str trace_state | str status_message |
//	       uvarint resource | uvarint scope | attrs |
//	       uvarint n × (zigzag(time-start) | ref name | attrs) events |
//	       uvarint n × (trace_id[16] | span_id[8] | str trace_state | uvarint flags | attrs) links
//
// It is not safe for concurrent use; the head's lock guards it.
type headSpans struct {
	a       *arena
	entries chunked[spanEntry]
	// spanKeys marks the interned keys seen on spans (not only on events
	// or links), a bit per interned string: the head's share of TagNames.
	spanKeys []uint64
	// res are the resources of the head's spans, for Services and TagNames.
	res map[uint32]struct{}
	ops map[headOp]struct{}
	// opRefs are the operations in ops whose names are interned, by
	// reference.
	opRefs map[opRef]struct{}
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

// opRef is an operation by its resource's and interned name's
// references.
type opRef struct {
	res, name uint32
	kind      storage.SpanKind
}

const (
	// A map entry of two strings and a kind; of three integers; of an
	// index.
	opEntryBytes = 64
	opRefBytes   = 24
	resKeyBytes  = 16
)

func newHeadSpans(a *arena) headSpans {
	return headSpans{a: a, res: map[uint32]struct{}{}, ops: map[headOp]struct{}{}, opRefs: map[opRef]struct{}{}}
}

func (h *headSpans) len() int { return h.entries.len() }

func (h *headSpans) entry(i int) *spanEntry { return h.entries.at(i) }

// push encodes s and returns its index and the heap bytes it added.
func (h *headSpans) push(s *storage.Span) (int32, int64) {
	a := h.a
	// The references first: they use a.buf, which then takes the record.
	resRef, added := a.resourceRef(s.Resource)
	scopeRef, n := a.scopeRef(s.Scope)
	added += n
	if _, ok := h.res[resRef]; !ok {
		h.res[resRef] = struct{}{}
		added += resKeyBytes
	}
	nameRef, n, interned := a.intern(s.Name)
	added += n
	// An operation whose name is interned is known by its references: a
	// span's lookup then hashes 12 bytes, not its service and name.
	ref := opRef{res: resRef, name: nameRef, kind: s.Kind}
	if _, ok := h.opRefs[ref]; !ok || !interned {
		op := headOp{service: a.res[resRef].ServiceName(), name: s.Name, kind: s.Kind}
		if _, ok := h.ops[op]; !ok {
			op.name = strings.Clone(op.name)
			h.ops[op] = struct{}{}
			added += opEntryBytes + strBytes(op.name)
		}
		if interned {
			h.opRefs[ref] = struct{}{}
			added += opRefBytes
		}
	}

	b := a.buf[:0]
	b = append(b, s.ParentSpanID[:]...)
	b = binary.AppendVarint(b, s.EndUnixNano-s.StartUnixNano)
	b = binary.AppendUvarint(b, uint64(s.Flags))
	b = append(b, byte(s.Kind), byte(s.StatusCode))
	if interned {
		b = binary.AppendUvarint(b, uint64(nameRef)+1)
	} else {
		b = appendStr(append(b, 0), s.Name)
	}
	b = appendStr(b, s.TraceState)
	b = appendStr(b, s.StatusMessage)
	b = binary.AppendUvarint(b, uint64(resRef))
	b = binary.AppendUvarint(b, uint64(scopeRef))
	b, n = a.appendAttrs(b, s.Attrs, h.seenKey)
	added += n
	b = binary.AppendUvarint(b, uint64(len(s.Events)))
	for i := range s.Events {
		e := &s.Events[i]
		b = binary.AppendVarint(b, e.TimeUnixNano-s.StartUnixNano)
		b, n = a.appendRef(b, e.Name)
		added += n
		b, n = a.appendAttrs(b, e.Attrs, nil)
		added += n
	}
	b = binary.AppendUvarint(b, uint64(len(s.Links)))
	for i := range s.Links {
		l := &s.Links[i]
		b = append(b, l.TraceID[:]...)
		b = append(b, l.SpanID[:]...)
		b = appendStr(b, l.TraceState)
		b = binary.AppendUvarint(b, uint64(l.Flags))
		b, n = a.appendAttrs(b, l.Attrs, nil)
		added += n
	}
	a.buf = b

	page, off, n := a.write()
	added += n
	i, n := h.entries.push(&spanEntry{TraceID: s.TraceID, SpanID: s.SpanID, Start: s.StartUnixNano, page: page, off: off})
	return i, added + n
}

func (h *headSpans) seenKey(k uint32) int64 {
	w, bit := int(k/64), uint64(1)<<(k%64)
	var added int64
	if w >= len(h.spanKeys) {
		added = int64(w+1-len(h.spanKeys)) * 8
		h.spanKeys = append(h.spanKeys, make([]uint64, w+1-len(h.spanKeys))...)
	}
	h.spanKeys[w] |= bit
	return added
}

// eachSpanKey calls fn with every interned key seen on a span.
func (h *headSpans) eachSpanKey(fn func(string)) {
	for w, set := range h.spanKeys {
		for ; set != 0; set &= set - 1 {
			fn(h.a.strs[w*64+bits.TrailingZeros64(set)])
		}
	}
}

// decode fills dst with span i. dst's Attrs are reused; its strings point
// into the arena's pages, and its Events and Links are allocated afresh, so
// that a span decoded into the same dst again does not change them.
func (h *headSpans) decode(i int, dst *storage.Span) error {
	e := h.entries.at(i)
	r := recordReader{a: h.a, b: h.a.record(e.page, e.off)}
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
	dst.Resource = r.resource()
	dst.Scope = r.scope()
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

// decodeCore decodes a span's core fields only (storage.ProjectCore):
// IDs, name, kind, status, start, end and resource; it stops before the
// scope, attributes, events and links, which a core read leaves empty.
func (h *headSpans) decodeCore(i int, dst *storage.Span) error {
	e := h.entries.at(i)
	r := recordReader{a: h.a, b: h.a.record(e.page, e.off)}
	*dst = storage.Span{TraceID: e.TraceID, SpanID: e.SpanID, StartUnixNano: e.Start}
	r.fixed(dst.ParentSpanID[:])
	dst.EndUnixNano = e.Start + r.varint()
	r.uvarint() // flags
	dst.Kind = storage.SpanKind(r.byte())
	dst.StatusCode = storage.StatusCode(r.byte())
	dst.Name = r.ref()
	r.str() // trace_state
	r.str() // status_message
	dst.Resource = r.resource()
	return r.err
}

// compareEntries is block.CompareSpans on entries. Trace IDs compare as
// two big-endian integers, which is byte order: most comparisons are of
// the spans of one trace, whose IDs compare whole.
func compareEntries(a, b *spanEntry) int {
	if c := compareID(a.TraceID[:8], b.TraceID[:8]); c != 0 {
		return c
	}
	if c := compareID(a.TraceID[8:], b.TraceID[8:]); c != 0 {
		return c
	}
	if a.Start != b.Start {
		if a.Start < b.Start {
			return -1
		}
		return 1
	}
	return compareID(a.SpanID[:], b.SpanID[:])
}

// compareID compares eight bytes of an ID.
func compareID(a, b []byte) int {
	return cmp.Compare(binary.BigEndian.Uint64(a), binary.BigEndian.Uint64(b))
}

// sorted returns the span indexes in block order.
//
// Each span's sort key is one integer: its index in the low bits, as few
// as the head's spans need (18 for 160k), and the first bytes of its
// trace ID above. Trace IDs are random, so those bits nearly always
// decide, and slices.Sort orders plain integers with its comparisons
// inlined, where a comparison function cost a call per comparison: the
// sort took 175-238 ns a span of a 160k-span head with a function over
// (prefix, index) pairs, 113-156 this way (and 16 bytes a span while it
// sorts, 8 this way). Keys that tie above the index, the spans of one
// trace and rare collisions, are then sorted by their entries, a run at a
// time. A run can be the whole head: 64-bit trace IDs (older Jaeger and
// Zipkin clients) arrive with their first eight bytes zero.
func (h *headSpans) sorted() []int32 {
	n := h.len()
	idxBits := bits.Len(uint(n))
	keys := make([]uint64, n)
	for i := range keys {
		prefix := binary.BigEndian.Uint64(h.entries.at(i).TraceID[:8])
		keys[i] = prefix>>idxBits<<idxBits | uint64(i)
	}
	slices.Sort(keys)
	idxMask := uint64(1)<<idxBits - 1
	out := make([]int32, n)
	byEntry := func(a, b int32) int { return compareEntries(h.entries.at(int(a)), h.entries.at(int(b))) }
	for k := 0; k < n; {
		r := k + 1
		for r < n && keys[r]>>idxBits == keys[k]>>idxBits {
			r++
		}
		for j := k; j < r; j++ {
			out[j] = int32(keys[j] & idxMask)
		}
		if r-k > 1 {
			slices.SortFunc(out[k:r], byEntry)
		}
		k = r
	}
	return out
}
