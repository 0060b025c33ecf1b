package tailsamplingprocessor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sightlinehq/sightline/internal/store/wal"
)

// The buffer's records are WAL records (docs/storage-format.md). A request
// that has spans to keep is written, in one group commit, as a skeleton
// followed by its chunks:
//
//	skeleton:   type 3 | OTLP ExportTraceServiceRequest with the request's resources and scopes, no spans
//	chunk:      type 1 | trace ID [16] | arrival unix ns int64 | flags uint8 (1 = has a root span)
//	                 | spans uint32 | back uint32 | resource uint32 | n uint32 | scope uint32 × n
//	                 | body: OTLP ExportTraceServiceRequest, one ResourceSpans, resource and scopes empty, the spans
//	summarized: type 4 | as a chunk up to the scopes | summary length uint32 | summary | body
//	decided:    type 2 | trace ID [16]
//
// A chunk is the spans of one trace from one ResourceSpans, grouped by
// scope as upstream's processor groups them. Its skeleton starts back bytes
// before it in the same file; resource is the ResourceSpans' index in the
// skeleton and the n scope indexes say which of its ScopeSpans each of the
// chunk's came from. The resource is written once per request, not once
// per trace: it is most of a chunk's bytes otherwise (the workload's
// resources have 11 attributes, a chunk under two spans). A summarized
// chunk carries its spans' summary (summary.go) ahead of them, in the same
// record so that one read and one checksum cover both.
const (
	recChunk      = 1
	recDecided    = 2
	recSkeleton   = 3
	recSummarized = 4

	chunkFixed = 16 + 8 + 1 + 4 + 4 + 4 + 4
	flagRoot   = 1
)

// chunk is one trace's spans from one ResourceSpans of a request.
type chunk struct {
	id     pcommon.TraceID
	root   bool
	spans  int
	rs     int
	scopes []uint32
	// items are the spans, in the request's order; each in the chunk's
	// group-th scope.
	items []chunkSpan
	// The record: its type, recChunk or recSummarized, and its payload,
	// head (the header, and the summary) followed by tail (the body).
	typ  byte
	head []byte
	tail []byte
}

// chunkSpan is one span of a chunk: the span in the request, and its
// encoding within the request's.
type chunkSpan struct {
	group int
	raw   []byte
	span  ptrace.Span
}

// size is the chunk's record size, its header included.
func (c *chunk) size() uint32 { return uint32(9 + len(c.head) + len(c.tail)) }

// encodeRequest encodes td as the buffer's records: the skeleton's
// payload, and a chunk for each trace in each ResourceSpans, its record
// built (back left zero: setBack fills it in when the records are laid
// out), summarized when sum is not nil and the spans allow it. td is only
// read.
//
// The request is encoded once, and the chunks' bodies and the skeleton are
// cut from that encoding: the spans are neither copied nor moved as
// pdata, which on this path cost an allocation per span.
func encodeRequest(td ptrace.Traces, arrival int64, m *ptrace.ProtoMarshaler, sum *summarizer) (skel []byte, chunks []chunk, err error) {
	full, err := m.MarshalTraces(td)
	if err != nil {
		return nil, nil, err
	}
	if chunks, err = splitEncoded(td, full); err != nil {
		return nil, nil, err
	}
	skel, err = skeletonOf(full)
	if err != nil {
		return nil, nil, err
	}
	// Every body in one allocation: the log copies them before add returns.
	bodies := make([]byte, 0, len(full)+16*len(chunks))
	for i := range chunks {
		c := &chunks[i]
		lo := len(bodies)
		bodies = c.appendBody(bodies)
		c.tail = bodies[lo:len(bodies):len(bodies)]
		c.encodeHead(arrival, sum)
	}
	return skel, chunks, nil
}

// eachField calls fn with every field of the encoded message b: its number
// and wire type, its value (a length-delimited field's content, else the
// value's bytes) and the whole field, tag included.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v, raw []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		var (
			v []byte
			m int
		)
		if typ == protowire.BytesType {
			v, m = protowire.ConsumeBytes(b[n:])
		} else {
			m = protowire.ConsumeFieldValue(num, typ, b[n:])
			if m >= 0 {
				v = b[n : n+m]
			}
		}
		if m < 0 {
			return protowire.ParseError(m)
		}
		if err := fn(num, typ, v, b[:n+m]); err != nil {
			return err
		}
		b = b[n+m:]
	}
	return nil
}

// splitEncoded groups the spans of td, whose encoding is full, into
// chunks: the spans of one trace from one ResourceSpans, grouped by scope
// as upstream's processor groups them. The OTLP field numbers are
// ExportTraceServiceRequest.resource_spans 1, ResourceSpans.scope_spans 2
// and ScopeSpans.spans 2; the encoding lists them in td's order.
func splitEncoded(td ptrace.Traces, full []byte) ([]chunk, error) {
	var (
		chunks []chunk
		// Every span, in the request's order, and its chunk's index; the
		// chunks' items are cut from one slice in the end, not grown one
		// by one.
		all = make([]chunkSpan, 0, td.SpanCount())
		of  = make([]int32, 0, td.SpanCount())
	)
	byTrace := map[pcommon.TraceID]int{}
	rsl := td.ResourceSpans()
	i := 0
	err := eachField(full, func(num protowire.Number, typ protowire.Type, rsb, _ []byte) error {
		if num != 1 || typ != protowire.BytesType {
			return nil
		}
		if i >= rsl.Len() {
			return errors.New("more ResourceSpans encoded than in the request")
		}
		rs := rsl.At(i)
		clear(byTrace)
		j := 0
		err := eachField(rsb, func(num protowire.Number, typ protowire.Type, ssb, _ []byte) error {
			if num != 2 || typ != protowire.BytesType {
				return nil
			}
			if j >= rs.ScopeSpans().Len() {
				return errors.New("more ScopeSpans encoded than in the request")
			}
			spans := rs.ScopeSpans().At(j).Spans()
			k := 0
			err := eachField(ssb, func(num protowire.Number, typ protowire.Type, sb, _ []byte) error {
				if num != 2 || typ != protowire.BytesType {
					return nil
				}
				if k >= spans.Len() {
					return errors.New("more spans encoded than in the request")
				}
				span := spans.At(k)
				k++
				ci, ok := byTrace[span.TraceID()]
				if !ok {
					ci = len(chunks)
					chunks = append(chunks, chunk{id: span.TraceID(), rs: i})
					byTrace[span.TraceID()] = ci
				}
				c := &chunks[ci]
				if n := len(c.scopes); n == 0 || c.scopes[n-1] != uint32(j) {
					c.scopes = append(c.scopes, uint32(j))
				}
				if span.ParentSpanID().IsEmpty() {
					c.root = true
				}
				all = append(all, chunkSpan{group: len(c.scopes) - 1, raw: sb, span: span})
				of = append(of, int32(ci))
				c.spans++
				return nil
			})
			if err == nil && k != spans.Len() {
				err = errors.New("fewer spans encoded than in the request")
			}
			j++
			return err
		})
		i++
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("split the encoded request: %w", err)
	}
	// A stable counting sort by chunk keeps each chunk's spans in order.
	at := make([]int, len(chunks)+1)
	for _, ci := range of {
		at[ci+1]++
	}
	for i := range chunks {
		at[i+1] += at[i]
	}
	items := make([]chunkSpan, len(all))
	next := slices.Clone(at[:len(chunks)])
	for k, ci := range of {
		items[next[ci]] = all[k]
		next[ci]++
	}
	for i := range chunks {
		chunks[i].items = items[at[i]:at[i+1]:at[i+1]]
	}
	return chunks, nil
}

// skeletonOf returns the encoded request full without its spans: its
// resources, scopes and schema URLs, every ScopeSpans kept, empty or not,
// so that a chunk's indexes find theirs.
func skeletonOf(full []byte) ([]byte, error) {
	var out, rsBuf, ssBuf []byte
	err := eachField(full, func(num protowire.Number, typ protowire.Type, rsb, raw []byte) error {
		if num != 1 || typ != protowire.BytesType {
			out = append(out, raw...)
			return nil
		}
		rsBuf = rsBuf[:0]
		err := eachField(rsb, func(num protowire.Number, typ protowire.Type, ssb, raw []byte) error {
			if num != 2 || typ != protowire.BytesType {
				rsBuf = append(rsBuf, raw...)
				return nil
			}
			ssBuf = ssBuf[:0]
			err := eachField(ssb, func(num protowire.Number, typ protowire.Type, _, raw []byte) error {
				if num != 2 || typ != protowire.BytesType {
					ssBuf = append(ssBuf, raw...)
				}
				return nil
			})
			rsBuf = protowire.AppendTag(rsBuf, 2, protowire.BytesType)
			rsBuf = protowire.AppendBytes(rsBuf, ssBuf)
			return err
		})
		out = protowire.AppendTag(out, 1, protowire.BytesType)
		out = protowire.AppendBytes(out, rsBuf)
		return err
	})
	return out, err
}

// appendBody appends the chunk's body: an ExportTraceServiceRequest with
// one ResourceSpans, its resource left out and one ScopeSpans per group,
// scope left out, holding the spans' encodings as they were.
func (c *chunk) appendBody(dst []byte) []byte {
	var sizes [8]int
	groups := sizes[:0]
	for range c.scopes {
		groups = append(groups, 0)
	}
	for _, it := range c.items {
		groups[it.group] += protowire.SizeTag(2) + protowire.SizeBytes(len(it.raw))
	}
	rs := 0
	for _, g := range groups {
		rs += protowire.SizeTag(2) + protowire.SizeBytes(g)
	}
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(rs))
	next := 0
	for g, size := range groups {
		dst = protowire.AppendTag(dst, 2, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(size))
		for ; next < len(c.items) && c.items[next].group == g; next++ {
			dst = protowire.AppendTag(dst, 2, protowire.BytesType)
			dst = protowire.AppendBytes(dst, c.items[next].raw)
		}
	}
	return dst
}

// encodeHead builds the record's head: the header, and the summary when
// sum is not nil and the spans allow one.
func (c *chunk) encodeHead(arrival int64, sum *summarizer) {
	n := chunkFixed + 4*len(c.scopes)
	p := make([]byte, n, n+4+64*c.spans) // a summary span is about 50 bytes
	copy(p, c.id[:])
	binary.LittleEndian.PutUint64(p[16:], uint64(arrival))
	if c.root {
		p[24] = flagRoot
	}
	binary.LittleEndian.PutUint32(p[25:], uint32(c.spans))
	binary.LittleEndian.PutUint32(p[33:], uint32(c.rs))
	binary.LittleEndian.PutUint32(p[37:], uint32(len(c.scopes)))
	for i, s := range c.scopes {
		binary.LittleEndian.PutUint32(p[chunkFixed+4*i:], s)
	}
	c.typ = recChunk
	if sum != nil {
		var ok bool
		if p, ok = sum.appendSummary(append(p, 0, 0, 0, 0), c); ok {
			binary.LittleEndian.PutUint32(p[n:], uint32(len(p)-n-4))
			c.typ = recSummarized
		} else {
			p = p[:n]
		}
	}
	c.head = p
}

func setBack(p []byte, back uint32) { binary.LittleEndian.PutUint32(p[29:], back) }

type chunkHeader struct {
	id      pcommon.TraceID
	arrival int64
	root    bool
	spans   uint32
	back    uint32
	rs      uint32
	scopes  []uint32
	summary []byte // nil unless summarized
	body    []byte
}

// parseChunk parses a chunk or summarized record's payload.
func parseChunk(typ byte, p []byte) (chunkHeader, error) {
	var h chunkHeader
	if len(p) < chunkFixed {
		return h, fmt.Errorf("%w: chunk record of %d bytes", wal.ErrCorrupt, len(p))
	}
	copy(h.id[:], p[:16])
	h.arrival = int64(binary.LittleEndian.Uint64(p[16:]))
	h.root = p[24]&flagRoot != 0
	h.spans = binary.LittleEndian.Uint32(p[25:])
	h.back = binary.LittleEndian.Uint32(p[29:])
	h.rs = binary.LittleEndian.Uint32(p[33:])
	n := binary.LittleEndian.Uint32(p[37:])
	if uint64(n) > uint64(len(p)-chunkFixed)/4 {
		return h, fmt.Errorf("%w: chunk record with %d scopes in %d bytes", wal.ErrCorrupt, n, len(p))
	}
	h.scopes = make([]uint32, n)
	for i := range h.scopes {
		h.scopes[i] = binary.LittleEndian.Uint32(p[chunkFixed+4*i:])
	}
	rest := p[chunkFixed+4*int(n):]
	switch typ {
	case recChunk:
	case recSummarized:
		if len(rest) < 4 {
			return h, fmt.Errorf("%w: summarized chunk without its summary's length", wal.ErrCorrupt)
		}
		sn := binary.LittleEndian.Uint32(rest)
		if uint64(sn) > uint64(len(rest)-4) {
			return h, fmt.Errorf("%w: summary of %d bytes in %d", wal.ErrCorrupt, sn, len(rest)-4)
		}
		h.summary = rest[4 : 4+sn : 4+sn]
		rest = rest[4+sn:]
	default:
		return h, fmt.Errorf("%w: record type %d is not a chunk", wal.ErrCorrupt, typ)
	}
	h.body = rest
	return h, nil
}

// withResource returns the chunk as a request of its own, its resource
// and scopes copied from the request's: what goes to the decider at once.
func (c *chunk) withResource(req ptrace.Traces, u *ptrace.ProtoUnmarshaler) (ptrace.Traces, error) {
	body, err := u.UnmarshalTraces(c.tail)
	if err != nil {
		return body, fmt.Errorf("decode chunk: %w", err)
	}
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	src := req.ResourceSpans().At(c.rs)
	src.Resource().CopyTo(rs.Resource())
	rs.SetSchemaUrl(src.SchemaUrl())
	for k, ss := range body.ResourceSpans().At(0).ScopeSpans().All() {
		out := rs.ScopeSpans().AppendEmpty()
		from := src.ScopeSpans().At(int(c.scopes[k]))
		from.Scope().CopyTo(out.Scope())
		out.SetSchemaUrl(from.SchemaUrl())
		ss.Spans().MoveAndAppendTo(out.Spans())
	}
	return td, nil
}

// assembler builds the decider's batch from chunk records read back, in
// log order. Chunks of one skeleton's ResourceSpans share one ResourceSpans
// in the batch, a copy of the skeleton's with the spans put back: the decider splits it by trace
// into exactly the chunks upstream would have made of the request, and the
// resource is decoded and copied once per batch instead of once per trace.
type assembler struct {
	td    ptrace.Traces
	skels map[wal.Position]ptrace.Traces
	rss   map[rsKey]ptrace.ResourceSpans
	u     ptrace.ProtoUnmarshaler
}

type rsKey struct {
	skel wal.Position
	rs   uint32
}

func newAssembler() *assembler {
	return &assembler{td: ptrace.NewTraces(), skels: map[wal.Position]ptrace.Traces{}, rss: map[rsKey]ptrace.ResourceSpans{}}
}

func (a *assembler) hasSkeleton(pos wal.Position) bool {
	_, ok := a.skels[pos]
	return ok
}

// addSkeleton decodes a skeleton record's payload for the chunks after it.
// Decoding copies what it keeps, so p may be reused once it returns.
func (a *assembler) addSkeleton(pos wal.Position, p []byte) error {
	st, err := a.u.UnmarshalTraces(p)
	if err != nil {
		return fmt.Errorf("decode skeleton at %d of segment %d: %w", pos.Offset, pos.Segment, err)
	}
	a.skels[pos] = st
	return nil
}

// add puts a chunk into the batch, its summary when it has one; its
// skeleton was added before.
func (a *assembler) add(h chunkHeader, skelPos wal.Position) error {
	st, ok := a.skels[skelPos]
	if !ok {
		return fmt.Errorf("tail sampling buffer: no skeleton at %d of segment %d", skelPos.Offset, skelPos.Segment)
	}
	if int(h.rs) >= st.ResourceSpans().Len() {
		return fmt.Errorf("%w: chunk of resource %d of a skeleton with %d", wal.ErrCorrupt, h.rs, st.ResourceSpans().Len())
	}
	src := h.body
	if h.summary != nil {
		src = h.summary
	}
	body, err := a.u.UnmarshalTraces(src)
	if err != nil {
		return fmt.Errorf("decode chunk: %w", err)
	}
	if body.ResourceSpans().Len() != 1 || body.ResourceSpans().At(0).ScopeSpans().Len() != len(h.scopes) {
		return fmt.Errorf("%w: chunk body does not match its %d scopes", wal.ErrCorrupt, len(h.scopes))
	}
	rk := rsKey{skelPos, h.rs}
	rs, ok := a.rss[rk]
	if !ok {
		// The skeleton's ResourceSpans itself, every scope in the
		// request's order, so that each trace's scopes keep their order;
		// the decider skips the empty ones.
		rs = a.td.ResourceSpans().AppendEmpty()
		st.ResourceSpans().At(int(h.rs)).MoveTo(rs)
		a.rss[rk] = rs
	}
	for _, s := range h.scopes {
		if int(s) >= rs.ScopeSpans().Len() {
			return fmt.Errorf("%w: chunk of scope %d of a resource with %d", wal.ErrCorrupt, s, rs.ScopeSpans().Len())
		}
	}
	for k, ss := range body.ResourceSpans().At(0).ScopeSpans().All() {
		ss.Spans().MoveAndAppendTo(rs.ScopeSpans().At(int(h.scopes[k])).Spans())
	}
	return nil
}
