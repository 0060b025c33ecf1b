package tailsamplingprocessor

import (
	"container/heap"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/store/wal"
)

// The buffer keeps every span that waits for a decision in a log on disk
// (records.go) and in memory only a summary per trace: its ID, when it was
// first seen, its deadline, and where its chunks are.
//
// A decided record ends every chunk of its trace logged before it. Replay
// reads the files in order and what is left are the traces that were
// pending when the process stopped, each with its first arrival time, so
// that it is decided at its original deadline. A file is deleted when no
// chunk in it, nor in an older file, still waits.

// ErrBufferFull is returned, retryably, while the buffer's files are over
// one and a half times buffer::max_size, or twice num_traces traces wait:
// decisions are not keeping up (the next consumer refuses, say), and the
// early decisions that normally hold both bounds are stuck behind them.
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
	chunks   []chunkRef
	state    traceState
	// sampled is set when the decider sampled it; the decision is
	// recorded once the spans were forwarded.
	sampled bool
	// late holds chunks that arrived while it was read back; they go to
	// the decider after the trace itself.
	late []ptrace.Traces
	// read are the chunks the decider was handed, in the order it holds
	// them; restore puts the spans of the summarized ones in place.
	read []readChunk
	idx  int // in the deadline heap; -1 when not pending
}

// readChunk is a chunk read back for the decider.
type readChunk struct {
	ref        chunkRef
	summarized bool // the decider has its summary, not its spans
}

// chunkRef is where a chunk and its request's skeleton are in the log.
type chunkRef struct {
	seg   int32
	n     uint32 // the record's length, header included
	off   int64
	back  uint32 // the skeleton starts this many bytes before
	skelN uint32
}

type segment struct {
	live int   // chunks not yet decided
	size int64 // bytes in the file
	file *os.File
}

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
	stats   bufferStats
	posBuf  []wal.Position
	// readBuf is release's read buffer, kept for the next: release runs
	// on one goroutine at a time. It holds at most one run of records.
	readBuf []byte
	recBuf  []wal.Record
}

type bufferStats struct {
	recovered     int64 // traces found pending at startup
	earlyTraces   int64 // decided before their deadline: num_traces
	earlyDisk     int64 // decided before their deadline: buffer::max_size
	refusedDisk   int64 // requests refused: files over 1.5x buffer::max_size
	refusedTraces int64 // requests refused: twice num_traces waiting
	decided       int64
	writeErrors   int64 // failed writes: refused requests, decisions to take again after a restart
	readErrors    int64 // chunks that could not be read back or restored
}

// openBuffer takes the directory (one process and instance at a time),
// replays what an earlier run left, and opens the log for writing.
func openBuffer(opts bufferOptions) (*buffer, error) {
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
	}
	if err := b.replay(); err != nil {
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

func (b *buffer) replay() error {
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
		skels := map[int64]uint32{} // skeleton offset -> record length
		err := wal.ReplayAt(b.opts.dir, s, func(off int64, typ byte, p []byte) error {
			switch typ {
			case recSkeleton:
				skels[off] = uint32(9 + len(p))
			case recChunk, recSummarized:
				h, err := parseChunk(typ, p)
				if err != nil {
					return err
				}
				skelN, ok := skels[off-int64(h.back)]
				if !ok {
					return fmt.Errorf("%w: chunk at %d without its skeleton", wal.ErrCorrupt, off)
				}
				ref := chunkRef{seg: int32(s), n: uint32(9 + len(p)), off: off, back: h.back, skelN: skelN}
				t := b.traces[h.id]
				if t == nil {
					t = &trace{id: h.id, first: h.arrival, deadline: h.arrival + int64(b.opts.wait), idx: -1}
					b.traces[h.id] = t
				}
				b.addChunkLocked(t, ref, h.arrival, h.root)
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

func (b *buffer) addChunkLocked(t *trace, ref chunkRef, now int64, root bool) {
	t.chunks = append(t.chunks, ref)
	if seg := b.segs[int(ref.seg)]; seg != nil {
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

// add logs the chunks that wait, after their request's skeleton, and
// indexes them. It returns the requests to send to the decider now: chunks
// of traces the decider holds or has decided (late spans, which its
// decision caches answer), with their resources. known says whether the
// decider remembers a trace's decision; it is called with the buffer
// locked and must not call back into it. req is the request, which is
// only read; skel and the chunks' records are built from it before the
// lock is taken (encodeRequest).
func (b *buffer) add(now time.Time, req ptrace.Traces, skel []byte, chunks []chunk, known func(pcommon.TraceID) bool) (direct []ptrace.Traces, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.opts.maxSize > 0 && b.bytes > b.opts.maxSize+b.opts.maxSize/2 {
		b.stats.refusedDisk++
		return nil, fmt.Errorf("%w: %d bytes, buffer::max_size %d", ErrBufferFull, b.bytes, b.opts.maxSize)
	}
	if len(b.pending) >= 2*b.opts.numTraces {
		// The summaries in memory are bounded too, not only the files.
		b.stats.refusedTraces++
		return nil, fmt.Errorf("%w: %d traces waiting, num_traces %d", ErrBufferFull, len(b.pending), b.opts.numTraces)
	}
	routes := make([]route, len(chunks))
	b.recBuf = append(b.recBuf[:0], wal.Record{Type: recSkeleton, Payload: skel})
	back := uint32(9 + len(skel))
	for i := range chunks {
		c := &chunks[i]
		t := b.traces[c.id]
		switch {
		case t == nil:
			if known(c.id) {
				routes[i] = toDecider
				continue
			}
			routes[i] = toDisk
		case t.state == statePending:
			routes[i] = toDisk
		default:
			routes[i] = toBoth
		}
		setBack(c.head, back)
		back += c.size()
		b.recBuf = append(b.recBuf, wal.Record{Type: c.typ, Payload: c.head, Tail: c.tail})
	}
	if len(b.recBuf) > 1 {
		pos, err := b.log.LogAll(b.recBuf, b.posBuf[:0])
		clear(b.recBuf) // hold no request after it is logged
		b.posBuf = pos[:0]
		if err != nil {
			b.stats.writeErrors++
			return nil, fmt.Errorf("write tail sampling buffer: %w", err)
		}
		if err := b.indexLocked(now, skel, chunks, routes, pos); err != nil {
			return nil, err
		}
	}
	var u ptrace.ProtoUnmarshaler
	for i := range chunks {
		if routes[i] != toDisk {
			c := &chunks[i]
			td, err := c.withResource(req, &u)
			if err != nil {
				// It was encoded from pdata just before: it cannot fail
				// to decode, short of a bug, which is counted.
				b.stats.readErrors++
				continue
			}
			switch t := b.traces[c.id]; {
			case routes[i] == toDecider:
				direct = append(direct, td)
			case t.state == stateReleasing:
				t.late = append(t.late, td)
			default:
				direct = append(direct, td)
			}
		}
	}
	return direct, nil
}

// indexLocked indexes the chunks just logged at pos (the skeleton first).
func (b *buffer) indexLocked(now time.Time, skel []byte, chunks []chunk, routes []route, pos []wal.Position) error {
	sp := pos[0]
	for _, p := range pos[1:] {
		if p.Segment != sp.Segment {
			// LogAll writes one round, to one file.
			return fmt.Errorf("tail sampling buffer: a request's chunks in file %d, its skeleton in %d", p.Segment, sp.Segment)
		}
	}
	skelN := uint32(9 + len(skel))
	b.segLocked(sp.Segment).size += int64(skelN)
	b.bytes += int64(skelN)
	ns := now.UnixNano()
	j := 1
	for i := range chunks {
		if routes[i] == toDecider {
			continue
		}
		c := &chunks[i]
		p := pos[j]
		j++
		n := c.size()
		b.segLocked(p.Segment).size += int64(n)
		b.bytes += int64(n)
		ref := chunkRef{seg: int32(p.Segment), n: n, off: p.Offset, back: uint32(p.Offset - sp.Offset), skelN: skelN}
		t := b.traces[c.id]
		if t == nil {
			t = &trace{id: c.id, first: ns, deadline: ns + int64(b.opts.wait), idx: -1}
			b.traces[c.id] = t
			b.addChunkLocked(t, ref, ns, c.root)
			heap.Push(&b.pending, t)
		} else {
			b.addChunkLocked(t, ref, ns, c.root)
		}
	}
	return nil
}

// release takes the traces that are due: past their deadline, or the
// oldest when more than num_traces wait or the files are over
// buffer::max_size. It reads their chunks back into one batch for the
// decider. At most max traces are taken per call. One goroutine calls it
// at a time.
func (b *buffer) release(now time.Time, max int) (ptrace.Traces, []pcommon.TraceID, error) {
	var (
		ids   []pcommon.TraceID
		refs  []chunkRef
		files = map[int32]*os.File{}
		err   error
	)
	b.mu.Lock()
	ns := now.UnixNano()
	// The decider holds what it is handed until its next tick and drops,
	// undecided, what it has no room for: it is handed at most num_traces
	// traces at a time. Past that, traces wait here, and requests are
	// refused once twice num_traces wait (add).
	max = min(max, b.opts.numTraces-(len(b.traces)-len(b.pending)))
take:
	for len(b.pending) > 0 && len(ids) < max {
		t := b.pending[0]
		switch {
		case t.deadline <= ns:
		case len(b.pending) > b.opts.numTraces:
			b.stats.earlyTraces++
		case b.opts.maxSize > 0 && b.bytes > b.opts.maxSize && int(t.chunks[0].seg) <= b.oldestLiveLocked():
			b.stats.earlyDisk++
		default:
			break take
		}
		heap.Pop(&b.pending)
		t.state = stateReleasing
		ids = append(ids, t.id)
		for _, c := range t.chunks {
			if _, ok := files[c.seg]; !ok {
				f, ferr := b.fileLocked(int(c.seg))
				if ferr != nil {
					err = errors.Join(err, ferr)
					continue
				}
				files[c.seg] = f
			}
			refs = append(refs, c)
		}
	}
	b.mu.Unlock()

	// Reading needs no lock: the files of chunks that wait are not
	// deleted, and the records are immutable.
	td, read, rerr := readBack(refs, files, &b.readBuf)
	b.mu.Lock()
	for _, r := range read {
		if t := b.traces[r.id]; t != nil && t.state == stateReleasing {
			t.read = append(t.read, r.readChunk)
		}
	}
	if j, ok := rerr.(interface{ Unwrap() []error }); ok {
		b.stats.readErrors += int64(len(j.Unwrap()))
	}
	b.mu.Unlock()
	return td, ids, errors.Join(err, rerr)
}

// tracedChunk is a chunk read back, with its trace.
type tracedChunk struct {
	id pcommon.TraceID
	readChunk
}

// readBack reads chunks and their skeletons, in log order, with one read
// for each run of nearby records (the chunks of traces that arrived
// together lie together), and assembles the decider's batch. A chunk that
// cannot be read is reported and left out: the rest of its trace is still
// decided, so that it is not held forever. read lists the chunks in the
// batch, in its order.
func readBack(refs []chunkRef, files map[int32]*os.File, scratch *[]byte) (_ ptrace.Traces, read []tracedChunk, _ error) {
	slices.SortFunc(refs, func(a, b chunkRef) int {
		if a.seg != b.seg {
			return int(a.seg - b.seg)
		}
		return int(a.off - b.off)
	})
	type extent struct {
		seg    int32
		lo, hi int64
	}
	// Runs of records closer than gap are read as one; a run stays under
	// maxRun, so that a release holds little more than its chunks.
	const gap, maxRun = 64 << 10, 8 << 20
	var runs []extent
	grow := func(seg int32, lo, hi int64) {
		if n := len(runs); n > 0 {
			r := &runs[n-1]
			if r.seg == seg && lo <= r.hi+gap && max(hi, r.hi)-r.lo <= maxRun {
				r.hi = max(r.hi, hi)
				return
			}
		}
		runs = append(runs, extent{seg, lo, hi})
	}
	skels := map[wal.Position]bool{}
	for _, c := range refs {
		// A skeleton comes before its chunks, and after every record of
		// earlier requests: adding it at its first chunk keeps the runs in
		// order.
		sp := wal.Position{Segment: int(c.seg), Offset: c.off - int64(c.back)}
		if !skels[sp] {
			skels[sp] = true
			grow(c.seg, sp.Offset, sp.Offset+int64(c.skelN))
		}
		grow(c.seg, c.off, c.off+int64(c.n))
	}
	var (
		errs []error
		a    = newAssembler()
		ri   = 0
		buf  = (*scratch)[:0]
		run  extent
	)
	// record returns the bytes of the record at [off, off+n) of seg from
	// the run that holds it, reading runs in order as they are reached.
	record := func(seg int32, off int64, n uint32) ([]byte, error) {
		for run.seg != seg || off < run.lo || off+int64(n) > run.hi || buf == nil {
			if ri == len(runs) {
				return nil, fmt.Errorf("tail sampling buffer: record at %d of file %d outside what was read", off, seg)
			}
			run = runs[ri]
			ri++
			if cap(buf) < int(run.hi-run.lo) {
				buf = make([]byte, run.hi-run.lo)
				*scratch = buf
			}
			buf = buf[:run.hi-run.lo]
			f := files[run.seg]
			if f == nil {
				buf = nil
				continue
			}
			if _, err := f.ReadAt(buf, run.lo); err != nil {
				buf = nil
				return nil, fmt.Errorf("read tail sampling buffer file %d at %d: %w", run.seg, run.lo, err)
			}
		}
		return buf[off-run.lo : off-run.lo+int64(n)], nil
	}
	for _, c := range refs {
		skelPos := wal.Position{Segment: int(c.seg), Offset: c.off - int64(c.back)}
		if !a.hasSkeleton(skelPos) {
			// Decoded at once: the next read may reuse its bytes.
			rec, err := record(c.seg, skelPos.Offset, c.skelN)
			if err == nil {
				var (
					typ byte
					p   []byte
				)
				typ, p, _, err = wal.ParseRecord(rec)
				if err == nil && typ != recSkeleton {
					err = fmt.Errorf("%w: record at %d of file %d is not a skeleton", wal.ErrCorrupt, skelPos.Offset, c.seg)
				}
				if err == nil {
					err = a.addSkeleton(skelPos, p)
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("chunk at %d of file %d: %w", c.off, c.seg, err))
				continue
			}
		}
		rec, err := record(c.seg, c.off, c.n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		typ, p, _, err := wal.ParseRecord(rec)
		var h chunkHeader
		if err == nil {
			h, err = parseChunk(typ, p)
		}
		if err == nil {
			err = a.add(h, skelPos)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("chunk at %d of file %d: %w", c.off, c.seg, err))
			continue
		}
		read = append(read, tracedChunk{h.id, readChunk{ref: c, summarized: h.summary != nil}})
	}
	return a.td, read, errors.Join(errs...)
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
		b.decideLocked(t)
	}
}

// restore puts the spans of trace id's summarized chunks in place of
// their summaries in td, the decider's output for a trace it sampled. The
// decider holds one ResourceSpans per chunk, in the order they were read
// back (t.read), then whatever came later, which it was handed whole; each
// of the first has the chunk's scopes in the chunk's order, since upstream
// groups a chunk's spans by scope as the chunk does. The resources and
// scopes stay the decider's, so that whatever it set on them is
// forwarded. A summary that cannot be restored is removed and reported:
// a summary is never forwarded.
func (b *buffer) restore(id pcommon.TraceID, td ptrace.Traces) error {
	var (
		read  []readChunk
		files = map[int32]*os.File{}
		errs  []error
	)
	b.mu.Lock()
	if t := b.traces[id]; t != nil && t.sampled {
		// t.read is complete once the trace is with the decider.
		read = t.read
		for _, r := range read {
			if _, ok := files[r.ref.seg]; r.summarized && !ok {
				f, err := b.fileLocked(int(r.ref.seg))
				if err != nil {
					errs = append(errs, err)
				}
				files[r.ref.seg] = f
			}
		}
	}
	b.mu.Unlock()

	rss := td.ResourceSpans()
	var (
		u   ptrace.ProtoUnmarshaler
		buf []byte
	)
	for i, r := range read {
		if !r.summarized || i >= rss.Len() {
			continue
		}
		if cap(buf) < int(r.ref.n) {
			buf = make([]byte, r.ref.n)
		}
		buf = buf[:r.ref.n]
		err := restoreChunk(files[r.ref.seg], r.ref, buf, &u, rss.At(i))
		if err != nil {
			errs = append(errs, fmt.Errorf("chunk at %d of file %d: %w", r.ref.off, r.ref.seg, err))
		}
	}
	rss.RemoveIf(func(rs ptrace.ResourceSpans) bool {
		for _, ss := range rs.ScopeSpans().All() {
			if ss.Spans().Len() > 0 && ss.Spans().At(0).Name() == summaryName {
				errs = append(errs, fmt.Errorf("tail sampling buffer: a summary of trace %s was not restored", id))
				return true
			}
		}
		return false
	})
	if len(errs) > 0 {
		b.mu.Lock()
		b.stats.readErrors += int64(len(errs))
		b.mu.Unlock()
	}
	return errors.Join(errs...)
}

// restoreChunk reads the chunk at ref into buf and moves its spans into
// rs, the decider's ResourceSpans for it, in place of the summaries there.
func restoreChunk(f *os.File, ref chunkRef, buf []byte, u *ptrace.ProtoUnmarshaler, rs ptrace.ResourceSpans) error {
	if f == nil {
		return errors.New("its file is gone")
	}
	if _, err := f.ReadAt(buf, ref.off); err != nil {
		return err
	}
	typ, p, _, err := wal.ParseRecord(buf)
	if err != nil {
		return err
	}
	h, err := parseChunk(typ, p)
	if err != nil {
		return err
	}
	body, err := u.UnmarshalTraces(h.body)
	if err != nil {
		return fmt.Errorf("decode chunk: %w", err)
	}
	if body.ResourceSpans().Len() != 1 {
		return fmt.Errorf("%w: chunk body with %d ResourceSpans", wal.ErrCorrupt, body.ResourceSpans().Len())
	}
	from, to := body.ResourceSpans().At(0).ScopeSpans(), rs.ScopeSpans()
	if from.Len() != to.Len() {
		return fmt.Errorf("%d scopes in the chunk, %d with the decider", from.Len(), to.Len())
	}
	for k := range from.Len() {
		if a, b := from.At(k).Spans().Len(), to.At(k).Spans().Len(); a != b {
			return fmt.Errorf("%d spans in scope %d of the chunk, %d with the decider", a, k, b)
		}
	}
	for k := range from.Len() {
		spans := to.At(k).Spans()
		spans.RemoveIf(func(ptrace.Span) bool { return true })
		from.At(k).Spans().MoveAndAppendTo(spans)
	}
	return nil
}

// decidedNotSampled records a trace the decider did not sample.
func (b *buffer) decidedNotSampled(id pcommon.TraceID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t := b.traces[id]; t != nil && t.state != statePending {
		b.decideLocked(t)
	}
}

func (b *buffer) decideLocked(t *trace) {
	if p, err := b.log.LogAt(recDecided, t.id[:]); err != nil {
		// The trace is decided again after a restart; nothing is lost.
		b.stats.writeErrors++
	} else {
		b.segLocked(p.Segment).size += 9 + 16
		b.bytes += 9 + 16
	}
	b.forgetLocked(t)
	b.stats.decided++
	b.collectLocked()
}

func (b *buffer) forgetLocked(t *trace) {
	for _, p := range t.chunks {
		if seg := b.segs[int(p.seg)]; seg != nil {
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
	if pa.seg != pb.seg {
		return pa.seg < pb.seg
	}
	return pa.off < pb.off
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
