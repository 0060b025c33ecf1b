package store

import (
	"fmt"
	"iter"
	"slices"
	"sync"
	"unsafe"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// head holds the data of the WAL segments not yet written to blocks. It is
// queryable the moment an append returns. Spans are deduplicated on insert
// (same trace, span ID and start), which absorbs client retries. Spans and
// log records are held encoded in one arena (headSpans, headLogs).
type head struct {
	mu          sync.RWMutex
	arena       *arena
	spans       headSpans
	byTrace     map[storage.TraceID][]int32
	logs        headLogs
	logsByTrace map[storage.TraceID][]int32
	minT, maxT  int64
	bytes       int64 // OTLP bytes appended, the cut-by-size measure
	mem         int64 // estimated heap bytes held, the memory budget's measure
	createdNano int64
	// lastSegment is set when the head is cut: the last WAL segment whose
	// records it holds.
	lastSegment int
	// blockIDs name, when the head is cut, the trace and log blocks it
	// will be written as (signalIndex order).
	blockIDs [2]string
}

func newHead(now int64) *head {
	a := newArena()
	return &head{
		arena: a, spans: newHeadSpans(a), logs: headLogs{a: a},
		byTrace: map[storage.TraceID][]int32{}, logsByTrace: map[storage.TraceID][]int32{}, createdNano: now,
	}
}

func (h *head) widen(t int64) {
	if h.minT == 0 || t < h.minT {
		h.minT = t
	}
	if t > h.maxT {
		h.maxT = t
	}
}

// appendSpans copies spans into the head.
// It returns the heap bytes the append added.
func (h *head) appendSpans(spans []storage.Span, size int) (added int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	defer h.arena.forget()
	h.bytes += int64(size)
	for i := range spans {
		s := &spans[i]
		idx := h.byTrace[s.TraceID]
		dup := false
		for _, j := range idx {
			if o := h.spans.entry(int(j)); o.SpanID == s.SpanID && o.Start == s.StartUnixNano {
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		if idx == nil {
			added += traceIndexBytes
		}
		j, n := h.spans.push(s)
		h.byTrace[s.TraceID] = append(idx, j)
		added += n + slotBytes
		h.widen(s.StartUnixNano)
		h.widen(s.EndUnixNano)
	}
	h.mem += added
	return added
}

// appendLogs copies logs into the head.
// It returns the heap bytes the append added.
func (h *head) appendLogs(logs []storage.LogRecord, size int) (added int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	defer h.arena.forget()
	h.bytes += int64(size)
	for i := range logs {
		l := &logs[i]
		j, n := h.logs.push(l)
		added += n
		if !l.TraceID.IsEmpty() {
			idx, ok := h.logsByTrace[l.TraceID]
			if !ok {
				added += traceIndexBytes
			}
			h.logsByTrace[l.TraceID] = append(idx, j)
			added += slotBytes
		}
		h.widen(l.Timestamp())
	}
	h.mem += added
	return added
}

// The head's heap footprint is counted as it fills: the arena's pages as
// allocated, each record's entry, the interned strings, resources and
// scopes from their sizes plus a word of allocator rounding per string, and
// the indexes. It is what the memory budget counts; it is checked against
// the live heap in TestHeadMemoryEstimate.
const (
	stringOverhead  = 8
	attrStructBytes = int64(unsafe.Sizeof(storage.Attr{}))
	// A map entry and its slice of row numbers, amortised over a trace.
	traceIndexBytes = 96
	// A record's row number in its trace's index, which grows by doubling.
	slotBytes = 8
)

func strBytes(s string) int64 {
	if s == "" {
		return 0
	}
	return int64(len(s)) + stringOverhead
}

func attrsBytes(a storage.Attrs) int64 {
	n := int64(cap(a)) * attrStructBytes
	for i := range a {
		n += strBytes(a[i].Key) + strBytes(a[i].Value.Str)
	}
	return n
}

func resourceBytes(r *storage.Resource, sc *storage.InstrumentationScope) int64 {
	var n int64
	if r != nil {
		n += int64(unsafe.Sizeof(*r)) + strBytes(r.SchemaURL) + attrsBytes(r.Attrs)
	}
	if sc != nil {
		n += int64(unsafe.Sizeof(*sc)) + strBytes(sc.Name) + strBytes(sc.Version) + strBytes(sc.SchemaURL) + attrsBytes(sc.Attrs)
	}
	return n
}

// size returns the OTLP bytes and the estimated heap bytes the head holds.
func (h *head) size() (otlp, mem int64) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.bytes, h.mem
}

func (h *head) empty() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.spans.len() == 0 && h.logs.len() == 0
}

func (h *head) overlaps(start, end int64) bool {
	return (end == 0 || h.minT <= end) && (start == 0 || h.maxT >= start)
}

// Results decoded for a caller get their own slices; their strings point
// into the arena (see arena).
func (h *head) traceByID(id storage.TraceID, dst []storage.Span) []storage.Span {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, i := range h.byTrace[id] {
		dst = append(dst, storage.Span{})
		if h.spans.decode(int(i), &dst[len(dst)-1]) != nil {
			dst = dst[:len(dst)-1]
		}
	}
	return dst
}

// holdsTrace reports whether the head has spans of trace id.
func (h *head) holdsTrace(id storage.TraceID) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.byTrace[id]) > 0
}

func (h *head) logsByTraceID(id storage.TraceID, span storage.SpanID, dst []storage.LogRecord) []storage.LogRecord {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, i := range h.logsByTrace[id] {
		if !span.IsEmpty() && h.logs.entry(int(i)).SpanID != span {
			continue
		}
		dst = append(dst, storage.LogRecord{})
		if h.logs.decode(int(i), &dst[len(dst)-1]) != nil {
			dst = dst[:len(dst)-1]
		}
	}
	return dst
}

// scanHead calls fn for the records that match: those listed in idx, or
// when idx is nil the first n in arrival order, newest first. Records are
// decoded into one scratch value under the read lock a chunk at a time,
// skipped on their entry where skip says so, and copied out only when they
// match, so that a long search never stalls appends for long and fn runs
// without the lock. Newest first lets a search that stops at its limit
// find the latest traces and lines.
//
// With reuse set, the values handed to fn live in a buffer that the next
// chunk overwrites (storage.ProjectCore allows it); otherwise every chunk
// has its own, so that fn may keep what it is given.
func scanHead[T any](h *head, idx []int32, n int, skip func(int) bool, decode func(int, *T) error, match func(*T) bool, clone func(*T) T, reuse bool, fn func(*T) bool) bool {
	const chunk = 4096
	var (
		out     []T
		scratch T
	)
	if idx != nil {
		n = len(idx)
	}
	for hi := n; hi > 0; hi -= chunk {
		if reuse {
			out = out[:0]
		} else {
			out = nil
		}
		h.mu.RLock()
		for k := hi - 1; k >= max(hi-chunk, 0); k-- {
			i := k
			if idx != nil {
				i = int(idx[k])
			}
			if skip(i) {
				continue
			}
			if decode(i, &scratch) == nil && match(&scratch) {
				out = append(out, clone(&scratch))
			}
		}
		h.mu.RUnlock()
		for i := range out {
			if !fn(&out[i]) {
				return false
			}
		}
	}
	return true
}

func (h *head) searchSpans(q *storage.SpanQuery, fn func(*storage.Span) bool) bool {
	h.mu.RLock()
	if !h.overlaps(q.Start, q.End) {
		h.mu.RUnlock()
		return true
	}
	var idx []int32
	if !q.TraceID.IsEmpty() {
		idx = slices.Clone(h.byTrace[q.TraceID])
		if len(idx) == 0 {
			h.mu.RUnlock()
			return true
		}
	}
	if len(q.TraceIDs) > 0 {
		for _, id := range q.TraceIDs {
			idx = append(idx, h.byTrace[id]...)
		}
		if len(idx) == 0 {
			h.mu.RUnlock()
			return true
		}
	}
	n := h.spans.len()
	h.mu.RUnlock()
	// The time range is checked on the entry, before decoding.
	skip := func(i int) bool {
		e := h.spans.entry(i)
		return (q.Start != 0 && e.Start < q.Start) || (q.End != 0 && e.Start > q.End)
	}
	clone := func(s *storage.Span) storage.Span {
		c := *s
		c.Attrs = slices.Clone(s.Attrs)
		return c
	}
	if q.Projection == storage.ProjectCore && len(q.Matchers) == 0 {
		// Core fields only: the record's head, no attributes to copy.
		// Match needs nothing more without matchers.
		return scanHead(h, idx, n, skip, h.spans.decodeCore, q.Match, func(s *storage.Span) storage.Span { return *s }, true, fn)
	}
	return scanHead(h, idx, n, skip, h.spans.decode, q.Match, clone, false, fn)
}

func (h *head) searchLogs(q *storage.LogQuery, fn func(*storage.LogRecord) bool) bool {
	h.mu.RLock()
	if !h.overlaps(q.Start, q.End) {
		h.mu.RUnlock()
		return true
	}
	// A trace's records are found through the head's trace index, not
	// by walking every record.
	var idx []int32
	if !q.TraceID.IsEmpty() {
		idx = slices.Clone(h.logsByTrace[q.TraceID])
		if len(idx) == 0 {
			h.mu.RUnlock()
			return true
		}
	}
	n := h.logs.len()
	h.mu.RUnlock()
	skip := func(i int) bool {
		e := h.logs.entry(i)
		return (q.Start != 0 && e.TS < q.Start) || (q.End != 0 && e.TS > q.End) ||
			(!q.TraceID.IsEmpty() && e.TraceID != q.TraceID) || (!q.SpanID.IsEmpty() && e.SpanID != q.SpanID)
	}
	clone := func(l *storage.LogRecord) storage.LogRecord {
		c := *l
		c.Attrs = slices.Clone(l.Attrs)
		return c
	}
	return scanHead(h, idx, n, skip, h.logs.decode, q.Match, clone, false, fn)
}

// sortedSpans and sortedLogs yield the head's records in block order. The
// head must be immutable (cut) when they are called. The records yielded
// alternate between two scratch values, so that each stays valid until the
// next but one is yielded (the block writers compare each record with the
// one before); a record that fails to decode ends the sequence with its
// error in *errp.
func (h *head) sortedSpans(errp *error) iter.Seq[*storage.Span] {
	return sortedSeq(h.spans.sorted(), h.spans.decode, errp)
}

func (h *head) sortedLogs(errp *error) iter.Seq[*storage.LogRecord] {
	return sortedSeq(h.logs.sorted(), h.logs.decode, errp)
}

func sortedSeq[T any](order []int32, decode func(int, *T) error, errp *error) iter.Seq[*T] {
	return func(yield func(*T) bool) {
		var scratch [2]T
		for k, i := range order {
			v := &scratch[k%2]
			if err := decode(int(i), v); err != nil {
				*errp = fmt.Errorf("decode head record %d: %w", i, err)
				return
			}
			if !yield(v) {
				return
			}
		}
	}
}

// services, operations and tagNames add what the head's spans carry to
// the querier's name lists. The caller holds the read lock.
func (h *head) services(set map[string]struct{}) {
	for r := range h.spans.res {
		listName(set, h.arena.res[r].ServiceName())
	}
}

func (h *head) operations(service string, set storage.OperationSet) {
	for op := range h.spans.ops {
		if service == "" || op.service == service {
			listName(set, storage.Operation{Name: op.name, Kind: op.kind})
		}
	}
}

func (h *head) tagNames(span, res map[string]struct{}) {
	h.spans.eachSpanKey(func(k string) { listName(span, k) })
	for r := range h.spans.res {
		for _, a := range h.arena.res[r].Attrs {
			listName(res, a.Key)
		}
	}
}
