package tailsamplingprocessor

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/store/wal"
)

// The buffer keeps every span that waits for a decision in a log on disk
// (the store's WAL format, docs/storage-format.md) and in memory only a
// summary per trace: its ID, when it was first seen, its deadline, and
// where its chunks are. A chunk is the spans of one trace from one
// ResourceSpans of one request, grouped as upstream's processor groups
// them, so that the decider reads back exactly what it would have held.
//
// Records (payloads of WAL records):
//
//	chunk:    type 1 | trace ID [16] | arrival unix ns int64 | flags uint8 (1 = has a root span) | spans uint32 | OTLP ExportTraceServiceRequest
//	decided:  type 2 | trace ID [16]
//
// A decided record ends every chunk of its trace logged before it. Replay
// reads the files in order and what is left are the traces that were
// pending when the process stopped, each with its first arrival time, so
// that it is decided at its original deadline. A file is deleted when no
// chunk in it, nor in an older file, still waits for a decision.
const (
	recChunk   = 1
	recDecided = 2

	chunkHeader = 16 + 8 + 1 + 4
	flagRoot    = 1
)

// ErrBufferFull is returned, retryably, while the buffer's files are over
// one and a half times buffer::max_size: decisions are not keeping up.
var ErrBufferFull = errors.New("tail sampling buffer is full")

type traceState uint8

const (
	statePending   traceState = iota // waiting on disk for its deadline
	stateReleasing                   // being read back for the decider
	stateReleased                    // with the decider, not yet decided
)

// trace is the in-memory summary of a trace that waits.
type trace struct {
	id       pcommon.TraceID
	first    int64 // unix ns of its first chunk
	deadline int64 // unix ns
	chunks   []wal.Position
	spans    int64
	state    traceState
	// sampled is set when the decider sampled it; the decision is
	// recorded once the spans were forwarded.
	sampled bool
	// late holds chunks that arrived while it was read back; they go to
	// the decider after the trace itself.
	late []ptrace.Traces
	idx  int // in the deadline heap; -1 when not pending
}

// chunk is one trace's spans from one ResourceSpans of a request.
type chunk struct {
	id      pcommon.TraceID
	root    bool
	spans   int
	td      ptrace.Traces
	payload []byte // the chunk record, built before the buffer is locked
}

type segment struct {
	live int   // chunks not yet decided
	size int64 // bytes in the file
	file *os.File
}

// decisionKind is what the decider did with a trace, remembered for late
// spans (recentDecisions).
type decisionKind uint8

const (
	kindSampled decisionKind = iota + 1
	kindNotSampled
)

type bufferOptions struct {
	dir          string
	wait         time.Duration
	afterRoot    time.Duration
	numTraces    int
	maxSize      int64
	segmentSize  int64
	sync         wal.SyncPolicy
	syncInterval time.Duration
}

// buffer is safe for concurrent use.
type buffer struct {
	opts bufferOptions
	lock *os.File

	mu      sync.Mutex
	log     *wal.WAL
	traces  map[pcommon.TraceID]*trace
	pending deadlineHeap
	segs    map[int]*segment
	oldest  int   // the oldest segment still on disk
	bytes   int64 // the files' total size
	recent  recentDecisions
	stats   bufferStats
	posBuf  []wal.Position
	payBuf  [][]byte
}

type bufferStats struct {
	recovered    int64 // traces found pending at startup
	earlyTraces  int64 // decided before their deadline: num_traces
	earlyDisk    int64 // decided before their deadline: buffer::max_size
	refused      int64 // requests refused, buffer full
	decided      int64
	writeErrors  int64
	releasedLate int64 // chunks sent to the decider after their trace
}

// openBuffer takes the directory (one process and instance at a time),
// replays what an earlier run left, and opens the log for writing.
func openBuffer(opts bufferOptions, now time.Time) (*buffer, error) {
	if err := os.MkdirAll(opts.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create tail sampling buffer: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(opts.dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open tail sampling buffer lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("tail sampling buffer %s is in use by another process or processor instance (a processor in two pipelines needs a buffer::path each): %w", opts.dir, err)
	}
	b := &buffer{
		opts:   opts,
		lock:   lock,
		traces: map[pcommon.TraceID]*trace{},
		segs:   map[int]*segment{},
		recent: newRecentDecisions(opts.numTraces),
	}
	if err := b.replay(now); err != nil {
		b.closeFiles()
		return nil, err
	}
	b.log, err = wal.Open(opts.dir, wal.Options{Sync: opts.sync, SyncInterval: opts.syncInterval, SegmentSize: opts.segmentSize})
	if err != nil {
		b.closeFiles()
		return nil, err
	}
	cur := b.log.Current()
	if len(b.segs) == 0 {
		b.oldest = cur
	}
	b.segLocked(cur)
	b.collectLocked()
	return b, nil
}

func (b *buffer) replay(now time.Time) error {
	segs, err := wal.Segments(b.opts.dir)
	if err != nil {
		return err
	}
	for i, s := range segs {
		if i == 0 {
			b.oldest = s
		}
		seg := &segment{}
		b.segs[s] = seg
		err := wal.ReplayAt(b.opts.dir, s, func(off int64, typ byte, p []byte) error {
			switch typ {
			case recChunk:
				if len(p) < chunkHeader {
					return fmt.Errorf("%w: chunk record of %d bytes", wal.ErrCorrupt, len(p))
				}
				id, arrival, flags, spans := decodeChunkHeader(p)
				t := b.traces[id]
				if t == nil {
					t = &trace{id: id, first: arrival, deadline: arrival + int64(b.opts.wait), idx: -1}
					b.traces[id] = t
				}
				b.addChunkLocked(t, wal.Position{Segment: s, Offset: off}, arrival, flags&flagRoot != 0, int64(spans))
			case recDecided:
				if len(p) != 16 {
					return fmt.Errorf("%w: decided record of %d bytes", wal.ErrCorrupt, len(p))
				}
				if t := b.traces[pcommon.TraceID(p)]; t != nil {
					b.forgetLocked(t)
				}
			}
			return nil
		})
		var d *wal.Damage
		if errors.As(err, &d) && i == len(segs)-1 {
			// A torn record at the end of the newest file is what a crash
			// leaves: it was never acknowledged.
			if err := wal.Repair(b.opts.dir, d); err != nil {
				return err
			}
		} else if err != nil {
			return fmt.Errorf("replay tail sampling buffer: %w", err)
		}
		if st, err := os.Stat(wal.SegmentPath(b.opts.dir, s)); err == nil {
			seg.size = st.Size()
			b.bytes += st.Size()
		}
	}
	for _, t := range b.traces {
		heap.Push(&b.pending, t)
	}
	b.stats.recovered = int64(len(b.traces))
	return nil
}

func decodeChunkHeader(p []byte) (id pcommon.TraceID, arrival int64, flags uint8, spans uint32) {
	copy(id[:], p[:16])
	arrival = int64(binary.LittleEndian.Uint64(p[16:]))
	flags = p[24]
	spans = binary.LittleEndian.Uint32(p[25:])
	return
}

// encodeChunk builds a chunk record. It runs before the buffer is locked.
func encodeChunk(c *chunk, arrival int64, m *ptrace.ProtoMarshaler) ([]byte, error) {
	size := m.TracesSize(c.td)
	p := make([]byte, chunkHeader, chunkHeader+size)
	copy(p, c.id[:])
	binary.LittleEndian.PutUint64(p[16:], uint64(arrival))
	if c.root {
		p[24] = flagRoot
	}
	binary.LittleEndian.PutUint32(p[25:], uint32(c.spans))
	body, err := m.MarshalTraces(c.td)
	if err != nil {
		return nil, err
	}
	return append(p, body...), nil
}

func (b *buffer) addChunkLocked(t *trace, pos wal.Position, now int64, root bool, spans int64) {
	t.chunks = append(t.chunks, pos)
	t.spans += spans
	if seg := b.segs[pos.Segment]; seg != nil {
		seg.live++
	}
	if root && b.opts.afterRoot > 0 {
		if d := now + int64(b.opts.afterRoot); d < t.deadline {
			t.deadline = d
			if t.idx >= 0 {
				heap.Fix(&b.pending, t.idx)
			}
		}
	}
}

// route says where a chunk goes.
type route uint8

const (
	toDisk    route = iota // pending: wait on disk
	toBoth                 // with the decider already: log it (for a crash) and send it
	toDecider              // decided and remembered by the decider: send it only
)

// add logs the chunks that wait and indexes them. It returns the chunks
// to send to the decider now: those of traces the decider holds or has
// decided (late spans, which its decision caches answer). known says
// whether the decider remembers a decided trace's decision; it is called
// with the buffer locked and must not call back into it.
func (b *buffer) add(now time.Time, chunks []chunk, known func(pcommon.TraceID, decisionKind) bool) (direct []ptrace.Traces, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.opts.maxSize > 0 && b.bytes > b.opts.maxSize+b.opts.maxSize/2 {
		b.stats.refused++
		return nil, fmt.Errorf("%w: %d bytes, buffer::max_size %d", ErrBufferFull, b.bytes, b.opts.maxSize)
	}
	routes := make([]route, len(chunks))
	b.payBuf = b.payBuf[:0]
	for i := range chunks {
		c := &chunks[i]
		t := b.traces[c.id]
		switch {
		case t == nil:
			kind, _ := b.recent.get(c.id)
			if known(c.id, kind) {
				routes[i] = toDecider
				direct = append(direct, c.td)
				continue
			}
			routes[i] = toDisk
		case t.state == statePending:
			routes[i] = toDisk
		default:
			routes[i] = toBoth
		}
		b.payBuf = append(b.payBuf, c.payload)
	}
	if len(b.payBuf) == 0 {
		return direct, nil
	}
	pos, err := b.log.LogAll(recChunk, b.payBuf, b.posBuf[:0])
	b.posBuf = pos[:0]
	if err != nil {
		b.stats.writeErrors++
		return nil, fmt.Errorf("write tail sampling buffer: %w", err)
	}
	ns := now.UnixNano()
	j := 0
	for i := range chunks {
		if routes[i] == toDecider {
			continue
		}
		c := &chunks[i]
		p := pos[j]
		j++
		n := int64(9 + len(c.payload))
		b.segLocked(p.Segment).size += n
		b.bytes += n
		t := b.traces[c.id]
		if t == nil {
			t = &trace{id: c.id, first: ns, deadline: ns + int64(b.opts.wait), idx: -1}
			b.traces[c.id] = t
			b.addChunkLocked(t, p, ns, c.root, int64(c.spans))
			heap.Push(&b.pending, t)
		} else {
			b.addChunkLocked(t, p, ns, c.root, int64(c.spans))
		}
		switch t.state {
		case stateReleasing:
			t.late = append(t.late, c.td)
		case stateReleased:
			b.stats.releasedLate++
			direct = append(direct, c.td)
		}
	}
	return direct, nil
}

// release takes the traces that are due: past their deadline, or the
// oldest when more than num_traces wait or the files are over
// buffer::max_size. It reads their chunks back into one batch for the
// decider. At most max traces are taken per call.
func (b *buffer) release(now time.Time, max int) (ptrace.Traces, []pcommon.TraceID, error) {
	type read struct {
		pos  wal.Position
		file *os.File
	}
	var (
		ids   []pcommon.TraceID
		reads []read
		err   error
	)
	b.mu.Lock()
	ns := now.UnixNano()
take:
	for len(b.pending) > 0 && len(ids) < max {
		t := b.pending[0]
		switch {
		case t.deadline <= ns:
		case len(b.pending) > b.opts.numTraces:
			b.stats.earlyTraces++
		case b.opts.maxSize > 0 && b.bytes > b.opts.maxSize && len(t.chunks) > 0 && t.chunks[0].Segment <= b.oldestLiveLocked():
			b.stats.earlyDisk++
		default:
			break take
		}
		heap.Pop(&b.pending)
		t.state = stateReleasing
		ids = append(ids, t.id)
		for _, p := range t.chunks {
			f, ferr := b.fileLocked(p.Segment)
			if ferr != nil {
				err = errors.Join(err, ferr)
				continue
			}
			reads = append(reads, read{p, f})
		}
	}
	b.mu.Unlock()

	// Reading needs no lock: the files of chunks that wait are not
	// deleted, and the records are immutable.
	td := ptrace.NewTraces()
	var (
		u   ptrace.ProtoUnmarshaler
		buf []byte
	)
	for _, r := range reads {
		typ, p, rerr := wal.ReadAt(r.file, r.pos.Offset, buf)
		if rerr == nil && (typ != recChunk || len(p) < chunkHeader) {
			rerr = fmt.Errorf("%w: record at %d of segment %d is not a chunk", wal.ErrCorrupt, r.pos.Offset, r.pos.Segment)
		}
		if rerr != nil {
			// What cannot be read cannot be decided; the rest of the
			// trace still is, so that it is not held forever.
			err = errors.Join(err, rerr)
			continue
		}
		buf = p[:0]
		c, uerr := u.UnmarshalTraces(p[chunkHeader:])
		if uerr != nil {
			err = errors.Join(err, fmt.Errorf("decode chunk at %d of segment %d: %w", r.pos.Offset, r.pos.Segment, uerr))
			continue
		}
		c.ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
	}
	return td, ids, err
}

// released marks traces as given to the decider and returns the chunks
// that arrived for them while they were read back.
func (b *buffer) released(ids []pcommon.TraceID) (late []ptrace.Traces) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, id := range ids {
		t := b.traces[id]
		if t == nil || t.state != stateReleasing {
			continue // decided already
		}
		t.state = stateReleased
		late = append(late, t.late...)
		b.stats.releasedLate += int64(len(t.late))
		t.late = nil
	}
	return late
}

// decidedSampled is called when the decider samples a trace, before it
// forwards the spans; forwarded records the decision after.
func (b *buffer) decidedSampled(id pcommon.TraceID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t := b.traces[id]; t != nil && t.state != statePending {
		t.sampled = true
	}
}

// forwarded records the decision of a sampled trace whose spans the next
// consumer has taken.
func (b *buffer) forwarded(id pcommon.TraceID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t := b.traces[id]; t != nil && t.sampled {
		b.decideLocked(t, kindSampled)
	}
}

// decidedNotSampled records a trace the decider did not sample.
func (b *buffer) decidedNotSampled(id pcommon.TraceID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t := b.traces[id]; t != nil && t.state != statePending {
		b.decideLocked(t, kindNotSampled)
	}
}

func (b *buffer) decideLocked(t *trace, kind decisionKind) {
	if p, err := b.log.LogAt(recDecided, t.id[:]); err != nil {
		// The trace is decided again after a restart; nothing is lost.
		b.stats.writeErrors++
	} else {
		b.segLocked(p.Segment).size += 9 + 16
		b.bytes += 9 + 16
	}
	b.forgetLocked(t)
	b.recent.put(t.id, kind)
	b.stats.decided++
	b.collectLocked()
}

func (b *buffer) forgetLocked(t *trace) {
	for _, p := range t.chunks {
		if seg := b.segs[p.Segment]; seg != nil {
			seg.live--
		}
	}
	if t.idx >= 0 {
		heap.Remove(&b.pending, t.idx)
	}
	delete(b.traces, t.id)
}

// segLocked returns segment s, which the log may have just started.
func (b *buffer) segLocked(s int) *segment {
	seg := b.segs[s]
	if seg == nil {
		seg = &segment{size: 8} // the file's header
		b.segs[s] = seg
		b.bytes += 8
	}
	return seg
}

// oldestLiveLocked is the oldest segment with a chunk that waits.
func (b *buffer) oldestLiveLocked() int {
	cur := b.log.Current()
	for s := b.oldest; s < cur; s++ {
		if seg, ok := b.segs[s]; ok && seg.live > 0 {
			return s
		}
	}
	return cur
}

// collectLocked deletes files from the oldest on while nothing in them
// waits. The file being written is kept.
func (b *buffer) collectLocked() {
	if b.log == nil {
		return
	}
	cur := b.log.Current()
	for ; b.oldest < cur; b.oldest++ {
		seg, ok := b.segs[b.oldest]
		if !ok {
			continue // a gap: a file an earlier run removed
		}
		if seg.live > 0 {
			return
		}
		if seg.file != nil {
			seg.file.Close()
		}
		if err := os.Remove(wal.SegmentPath(b.opts.dir, b.oldest)); err != nil && !errors.Is(err, os.ErrNotExist) {
			b.stats.writeErrors++
			return
		}
		b.bytes -= seg.size
		delete(b.segs, b.oldest)
	}
}

func (b *buffer) fileLocked(s int) (*os.File, error) {
	seg := b.segs[s]
	if seg == nil {
		return nil, fmt.Errorf("tail sampling buffer file %d is gone", s)
	}
	if seg.file == nil {
		f, err := os.Open(wal.SegmentPath(b.opts.dir, s))
		if err != nil {
			return nil, fmt.Errorf("open tail sampling buffer file: %w", err)
		}
		seg.file = f
	}
	return seg.file, nil
}

type bufferSnapshot struct {
	bufferStats
	pending  int // waiting on disk
	released int // with the decider
	bytes    int64
	files    int
}

func (b *buffer) snapshot() bufferSnapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bufferSnapshot{
		bufferStats: b.stats,
		pending:     len(b.pending),
		released:    len(b.traces) - len(b.pending),
		bytes:       b.bytes,
		files:       len(b.segs),
	}
}

// close closes the log; what waits stays on disk for the next start.
func (b *buffer) close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var err error
	if b.log != nil {
		err = b.log.Close()
		b.log = nil
	}
	b.closeFiles()
	return err
}

func (b *buffer) closeFiles() {
	for _, seg := range b.segs {
		if seg.file != nil {
			seg.file.Close()
			seg.file = nil
		}
	}
	if b.lock != nil {
		b.lock.Close() // releases the flock
		b.lock = nil
	}
}

// deadlineHeap orders pending traces by deadline, then first arrival,
// then where their first chunk is in the log: the traces of one request
// share a deadline, and the last key keeps those of the oldest file on
// top, which is what a release for buffer::max_size takes.
type deadlineHeap []*trace

func (h deadlineHeap) Len() int { return len(h) }
func (h deadlineHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.deadline != b.deadline {
		return a.deadline < b.deadline
	}
	if a.first != b.first {
		return a.first < b.first
	}
	pa, pb := a.chunks[0], b.chunks[0]
	if pa.Segment != pb.Segment {
		return pa.Segment < pb.Segment
	}
	return pa.Offset < pb.Offset
}
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *deadlineHeap) Push(x any) {
	t := x.(*trace)
	t.idx = len(*h)
	*h = append(*h, t)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.idx = -1
	return t
}

// recentDecisions remembers the last n decisions, as the decider's own
// table of traces does when no decision cache is configured: a late span
// of a trace in it goes to the decider, which applies the decision.
type recentDecisions struct {
	ring []pcommon.TraceID
	next int
	kind map[pcommon.TraceID]decisionKind
}

func newRecentDecisions(n int) recentDecisions {
	return recentDecisions{ring: make([]pcommon.TraceID, 0, n), kind: make(map[pcommon.TraceID]decisionKind, n)}
}

func (r *recentDecisions) put(id pcommon.TraceID, k decisionKind) {
	if _, ok := r.kind[id]; ok {
		r.kind[id] = k
		return
	}
	if len(r.ring) < cap(r.ring) {
		r.ring = append(r.ring, id)
	} else if len(r.ring) > 0 {
		delete(r.kind, r.ring[r.next])
		r.ring[r.next] = id
		r.next = (r.next + 1) % len(r.ring)
	} else {
		return
	}
	r.kind[id] = k
}

func (r *recentDecisions) get(id pcommon.TraceID) (decisionKind, bool) {
	k, ok := r.kind[id]
	return k, ok
}
