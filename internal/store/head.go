package store

import (
	"fmt"
	"iter"
	"slices"
	"sync"
	"unsafe"

	"github.com/sightlinehq/sightline/internal/store/block"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// head holds the data of the WAL segments not yet written to blocks. It is
// queryable the moment an append returns. Spans are deduplicated on insert
// (same trace, span ID and start), which absorbs client retries. Spans are
// held encoded (headSpans); log records as structs.
type head struct {
	mu          sync.RWMutex
	spans       headSpans
	byTrace     map[storage.TraceID][]int32
	logs        chunked[storage.LogRecord]
	logsByTrace map[storage.TraceID][]int32
	minT, maxT  int64
	bytes       int64 // OTLP bytes appended, the cut-by-size measure
	mem         int64 // estimated heap bytes held, the memory budget's measure
	createdNano int64
	// lastSegment is set when the head is cut: the last WAL segment whose
	// records it holds.
	lastSegment int
}

func newHead(now int64) *head {
	return &head{byTrace: map[storage.TraceID][]int32{}, logsByTrace: map[storage.TraceID][]int32{}, createdNano: now}
}

func (h *head) widen(t int64) {
	if h.minT == 0 || t < h.minT {
		h.minT = t
	}
	if t > h.maxT {
		h.maxT = t
	}
}

// appendSpans copies spans into the head, encoded (headSpans).
// It returns the heap bytes the append added.
func (h *head) appendSpans(spans []storage.Span, size int) (added int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
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

func (h *head) appendLogs(logs []storage.LogRecord, size int) (added int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.bytes += int64(size)
	var lastRes *storage.Resource
	for i := range logs {
		l := &logs[i]
		j := h.logs.push(l)
		if !l.TraceID.IsEmpty() {
			if _, ok := h.logsByTrace[l.TraceID]; !ok {
				added += traceIndexBytes
			}
			h.logsByTrace[l.TraceID] = append(h.logsByTrace[l.TraceID], j)
		}
		added += logBytes(l)
		if l.Resource != lastRes {
			lastRes = l.Resource
			added += resourceBytes(l.Resource, l.Scope)
		}
		h.widen(l.Timestamp())
	}
	h.mem += added
	return added
}

// The head's heap footprint is estimated as it fills, from the sizes of the
// structs it holds and the strings they point to, plus a word of allocator
// rounding per string. It is what the memory budget counts; the estimate
// is checked against the live heap in TestHeadMemoryEstimate.
const (
	stringOverhead  = 8
	logStructBytes  = int64(unsafe.Sizeof(storage.LogRecord{}))
	attrStructBytes = int64(unsafe.Sizeof(storage.Attr{}))
	// A map entry and its slice of row numbers, amortised over a trace.
	traceIndexBytes = 96
	// The span's row number in its trace's index, which grows by doubling.
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

func logBytes(l *storage.LogRecord) int64 {
	return 2*logStructBytes + slotBytes + strBytes(l.SeverityText) + strBytes(l.Body.Str) + strBytes(l.EventName) + attrsBytes(l.Attrs)
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

func (h *head) logsByTraceID(id storage.TraceID, span storage.SpanID, dst []storage.LogRecord) []storage.LogRecord {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, i := range h.logsByTrace[id] {
		if l := h.logs.at(int(i)); span.IsEmpty() || l.SpanID == span {
			dst = append(dst, *l)
		}
	}
	return dst
}

// scanChunks calls fn for the items of items[0:n] that match, newest
// first (the items are in arrival order), copying matches out a chunk at
// a time under the read lock, so that a long search never stalls appends
// for long and fn runs without the lock. Newest first lets a search that
// stops at its limit find the latest traces and lines.
func scanChunks[T any](h *head, n int, items *chunked[T], match func(*T) bool, fn func(*T) bool) bool {
	const chunk = 4096
	var out []T
	for hi := n; hi > 0; hi -= chunk {
		out = out[:0]
		h.mu.RLock()
		for i := hi - 1; i >= max(hi-chunk, 0); i-- {
			if v := items.at(i); match(v) {
				out = append(out, *v)
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
	if !q.TraceID.IsEmpty() {
		idx := slices.Clone(h.byTrace[q.TraceID])
		h.mu.RUnlock()
		if len(idx) == 0 {
			return true
		}
		return h.scanSpans(idx, 0, q, fn)
	}
	n := h.spans.len()
	h.mu.RUnlock()
	return h.scanSpans(nil, n, q, fn)
}

// scanSpans is scanChunks for the encoded spans: the spans listed in idx,
// or when idx is nil the first n in arrival order, newest first. Each is
// decoded into one scratch span and copied out only when it matches.
func (h *head) scanSpans(idx []int32, n int, q *storage.SpanQuery, fn func(*storage.Span) bool) bool {
	const chunk = 4096
	var (
		out     []storage.Span
		scratch storage.Span
	)
	at := func(k int) int {
		if idx != nil {
			return int(idx[k])
		}
		return k
	}
	if idx != nil {
		n = len(idx)
	}
	for hi := n; hi > 0; hi -= chunk {
		out = out[:0]
		h.mu.RLock()
		for k := hi - 1; k >= max(hi-chunk, 0); k-- {
			i := at(k)
			// The time range is checked on the entry, before decoding.
			if e := h.spans.entry(i); (q.Start != 0 && e.Start < q.Start) || (q.End != 0 && e.Start > q.End) {
				continue
			}
			if h.spans.decode(i, &scratch) == nil && q.Match(&scratch) {
				s := scratch
				s.Attrs = slices.Clone(scratch.Attrs)
				out = append(out, s)
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

func (h *head) searchLogs(q *storage.LogQuery, fn func(*storage.LogRecord) bool) bool {
	h.mu.RLock()
	if !h.overlaps(q.Start, q.End) {
		h.mu.RUnlock()
		return true
	}
	n := h.logs.len()
	h.mu.RUnlock()
	return scanChunks(h, n, &h.logs, q.Match, fn)
}

// sortedSpans yields the head's spans in block order. The head must be
// immutable (cut) when it is called. The spans yielded alternate between
// two scratch spans, so that each stays valid until the next but one is
// yielded (WriteSpans compares each span with the one before); a span that
// fails to decode ends the sequence with its error in *errp.
func (h *head) sortedSpans(errp *error) iter.Seq[*storage.Span] {
	return func(yield func(*storage.Span) bool) {
		var scratch [2]storage.Span
		for k, i := range h.spans.sorted() {
			s := &scratch[k%2]
			if err := h.spans.decode(int(i), s); err != nil {
				*errp = fmt.Errorf("decode head span %d: %w", i, err)
				return
			}
			if !yield(s) {
				return
			}
		}
	}
}

// services, operations and spanAttrKeys add what the head's spans carry
// to the querier's name lists. The caller holds the read lock.
func (h *head) services(set map[string]struct{}) {
	for _, r := range h.spans.res {
		set[r.ServiceName()] = struct{}{}
	}
}

func (h *head) operations(service string, set storage.OperationSet) {
	for op := range h.spans.ops {
		if service == "" || op.service == service {
			set[storage.Operation{Name: op.name, Kind: op.kind}] = struct{}{}
		}
	}
}

func (h *head) tagNames(span, res map[string]struct{}) {
	for i := range h.spans.spanKeys {
		span[h.spans.strs[i]] = struct{}{}
	}
	for _, r := range h.spans.res {
		for _, a := range r.Attrs {
			res[a.Key] = struct{}{}
		}
	}
}

func (h *head) sortedLogs() []*storage.LogRecord {
	out := make([]*storage.LogRecord, h.logs.len())
	for i := range out {
		out[i] = h.logs.at(i)
	}
	slices.SortStableFunc(out, block.CompareLogs)
	return out
}

func ptrSeq[T any](s []*T) func(func(*T) bool) {
	return func(yield func(*T) bool) {
		for _, p := range s {
			if !yield(p) {
				return
			}
		}
	}
}
