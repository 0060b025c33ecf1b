package store

import (
	"cmp"
	"encoding/binary"
	"slices"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// headLogs holds a head's log records in its arena, as headSpans holds
// spans. Each record has a fixed-size entry, with what the trace index, the
// block sort order (service, then time) and a time-range scan read, and a
// record:
//
//	log:  varint time | varint observed_time | zigzag severity_number |
//	      ref severity_text | value body | uvarint flags | ref event_name |
//	      uvarint scope | attrs
//
// The entry holds the resource: the sort order reads its service name.
//
// It is not safe for concurrent use; the head's lock guards it.
type headLogs struct {
	a       *arena
	entries chunked[logEntry]
}

type logEntry struct {
	TraceID storage.TraceID
	SpanID  storage.SpanID
	// TS is the record's Timestamp(): its time, or the observed time.
	TS        int64
	res       uint32
	page, off uint32
}

func (h *headLogs) len() int { return h.entries.len() }

func (h *headLogs) entry(i int) *logEntry { return h.entries.at(i) }

// push encodes l and returns its index and the heap bytes it added.
func (h *headLogs) push(l *storage.LogRecord) (int32, int64) {
	a := h.a
	resRef, added := a.resourceRef(l.Resource)
	scopeRef, n := a.scopeRef(l.Scope)
	added += n

	b := a.buf[:0]
	b = binary.AppendVarint(b, l.TimeUnixNano)
	b = binary.AppendVarint(b, l.ObservedTimeUnixNano)
	b = binary.AppendVarint(b, int64(l.SeverityNumber))
	b, n = a.appendRef(b, l.SeverityText)
	added += n
	b = appendValue(b, l.Body)
	b = binary.AppendUvarint(b, uint64(l.Flags))
	b, n = a.appendRef(b, l.EventName)
	added += n
	b = binary.AppendUvarint(b, uint64(scopeRef))
	b, n = a.appendAttrs(b, l.Attrs, nil)
	added += n
	a.buf = b

	page, off, n := a.write()
	added += n
	i, n := h.entries.push(&logEntry{TraceID: l.TraceID, SpanID: l.SpanID, TS: l.Timestamp(), res: resRef, page: page, off: off})
	return i, added + n
}

// decode fills dst with record i. dst's Attrs are reused and its strings
// point into the arena's pages.
func (h *headLogs) decode(i int, dst *storage.LogRecord) error {
	e := h.entries.at(i)
	r := recordReader{a: h.a, b: h.a.record(e.page, e.off)}
	attrs := dst.Attrs[:0]
	*dst = storage.LogRecord{TraceID: e.TraceID, SpanID: e.SpanID, Resource: h.a.res[e.res]}
	dst.TimeUnixNano = r.varint()
	dst.ObservedTimeUnixNano = r.varint()
	dst.SeverityNumber = int32(r.varint())
	dst.SeverityText = r.ref()
	dst.Body = r.value()
	dst.Flags = uint32(r.uvarint())
	dst.EventName = r.ref()
	dst.Scope = r.scope()
	dst.Attrs = r.attrs(attrs)
	return r.err
}

// sorted returns the record indexes in block order (block.CompareLogs):
// by service name, then time, arrival order among equals.
func (h *headLogs) sorted() []int32 {
	out := make([]int32, h.len())
	for i := range out {
		out[i] = int32(i)
	}
	slices.SortStableFunc(out, func(x, y int32) int {
		a, b := h.entries.at(int(x)), h.entries.at(int(y))
		if a.res != b.res {
			if c := cmp.Compare(h.a.res[a.res].ServiceName(), h.a.res[b.res].ServiceName()); c != 0 {
				return c
			}
		}
		return cmp.Compare(a.TS, b.TS)
	})
	return out
}
