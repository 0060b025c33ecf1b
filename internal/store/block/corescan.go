package block

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/parquet-go/parquet-go"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// A core scan is a ProjectCore query without matchers: every condition is
// on a flat column, and each row group's kept rows are read from the core
// columns alone (coreSpans). Its unit of work is a CorePart, one row group
// of one block, read independently of every other; ReadCoreParts reads
// parts of any number of blocks at once and hands their spans on in
// order, so that a scan over many small blocks keeps both cores busy as a
// scan over one large block does.

// IsCoreScan reports whether q is a core scan.
func IsCoreScan(q *storage.SpanQuery) bool {
	return q.Projection == storage.ProjectCore && len(q.Matchers) == 0
}

// CorePart is one row group's share of a core scan.
type CorePart struct {
	b *Block
	i int
	q *storage.SpanQuery
}

// CoreParts returns b's parts of the core scan q in block order: none
// when b cannot hold a match (its time range, bloom filter, services or
// row groups' bounds rule it out). q must be a core scan (IsCoreScan).
func (b *Block) CoreParts(q *storage.SpanQuery) []CorePart {
	ids, ok := b.admits(q)
	if !ok {
		return nil
	}
	var parts []CorePart
	for i := range b.Index.RowGroups {
		if rq := rowGroupQuery(&b.Index.RowGroups[i], q, ids); rq != nil {
			parts = append(parts, CorePart{b: b, i: i, q: rq})
		}
	}
	return parts
}

// belowFloor reports whether the query's floor (SpanQuery.Floor) has
// risen past every span of the part.
func (p *CorePart) belowFloor() bool {
	return p.q.Floor.Excludes(p.b.Index.RowGroups[p.i].MaxTime)
}

// coreScratch is what reading a part reuses: the row flags and positions
// and the rows read, column by column, of two windows (one handed on
// while the next is read). One per part in flight.
type coreScratch struct {
	rows  rowScratch
	win   [2]*coreRows // made as first needed
	flags []bool       // the part's kept rows while a window's are read
}

// coreScratches keeps scratches from one scan to the next. A search
// reads a few parts and then stops; made anew, their row flags and
// positions, sized by row group, were most of what it allocated (half
// a megabyte per search on row groups of 24k rows), and the collector's
// time went with them. What the pool holds is what scans in flight held,
// until the next collections empty it.
var coreScratches = &sync.Pool{New: func() any { return &coreScratch{} }}

// A part read before fn has asked for more than one read at a time has
// its kept rows read in windows of growing size: the first eighth of
// them (at least headMin), as many again, then a quarter, then the rest,
// each handed on as soon as it is read while the next is read. A search
// that has what it wants a few rows into a part has not decoded the
// result columns of its whole row group: one that stops in the newest
// block, a fifth of the way in, reads two windows of it, not all. Each
// window begins where a page of trace IDs, the widest core column,
// begins, so no page of it is read twice; a page of each other column is
// read by both windows it straddles, which is why parts read once a scan
// is running ahead are read whole. Parts that keep fewer than headMin*2
// rows are read whole too.
const (
	headShare = 8
	headMin   = 256
)

// read reads the part's matching rows in block order into sc and calls
// emit with each window's, and whether it is the last; without split the
// part is one window. Two buffers alternate: before it reads the third
// window and each after it into the buffer of two windows back, read
// calls reuse, which returns once that window's rows have been taken, or
// false when ctx is done (the read then ends with ctx's error). The
// Stats of ctx account the bytes read, a page that two windows need
// twice.
func (p *CorePart) read(ctx context.Context, sc *coreScratch, split bool, emit func(rows *coreRows, last bool), reuse func() bool) (err error) {
	defer p.b.guard(&err)
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := p.b.data()
	if err != nil {
		return err
	}
	stats := storage.StatsFrom(ctx)
	rg := f.RowGroups()[p.i]
	keep, any, err := p.b.prefilterSpans(ctx, rg, p.i, &p.b.Index.RowGroups[p.i], p.q, stats, &sc.rows)
	if err != nil || !any {
		return p.b.readErr(err)
	}
	cuts := p.windows(rg, sc, keep, split)
	if len(cuts) > 0 {
		sc.flags = append(sc.flags[:0], keep...)
	}
	from := 0
	for w := 0; ; w++ {
		to := len(keep)
		if w < len(cuts) {
			to = cuts[w]
		}
		if len(cuts) > 0 {
			clear(keep)
			copy(keep[from:to], sc.flags[from:to])
		}
		if w >= 2 && !reuse() {
			return ctx.Err()
		}
		buf := sc.win[w%2]
		if buf == nil {
			buf = &coreRows{}
			sc.win[w%2] = buf
		}
		if err := p.b.coreRead(ctx, rg, p.i, keep, p.q, stats, buf, &sc.rows); err != nil {
			return p.b.readErr(err)
		}
		last := to == len(keep)
		emit(buf, last)
		if last {
			return nil
		}
		from = to
	}
}

// windows returns where the part's windows after the first begin, empty
// for a part read whole.
func (p *CorePart) windows(rg parquet.RowGroup, sc *coreScratch, keep []bool, split bool) []int {
	if !split {
		return nil
	}
	kept := sc.rows.keptRows(keep)
	if len(kept) < 2*headMin {
		return nil
	}
	var cuts []int
	for k := max(len(kept)/headShare, headMin); k < len(kept); k *= 2 {
		cut := p.b.pageStart(rg, "trace_id", int(kept[k]))
		if cut >= len(keep) {
			break
		}
		if len(cuts) == 0 || cut > cuts[len(cuts)-1] {
			cuts = append(cuts, cut)
		}
	}
	return cuts
}

// pageStart returns the first row at or after row that begins a page of
// col in rg, or rg's row count when none does (or col has no page index).
func (b *Block) pageStart(rg parquet.RowGroup, col string, row int) int {
	n := int(rg.NumRows())
	ci, ok := b.cols[col]
	if !ok {
		return n
	}
	oi, err := rg.ColumnChunks()[ci].OffsetIndex()
	if err != nil || oi == nil {
		return n
	}
	for pg := range oi.NumPages() {
		if from := int(oi.FirstRowIndex(pg)); from >= row {
			return min(from, n)
		}
	}
	return n
}

// scanParallel is how many parts a core scan reads at once: reading one
// is decompressing and decoding its pages, on one core.
var scanParallel = min(runtime.GOMAXPROCS(0), 4)

// ScanParallel is how many reads of blocks' pages a query runs at once,
// for callers that read several blocks themselves.
func ScanParallel() int { return scanParallel }

// ReadCoreParts reads parts, scanParallel at a time, and calls fn with
// their spans in the order of parts; fn returning false ends the scan.
// The spans are the store's to reuse once fn returns (ProjectCore's
// contract).
//
// The first part is read alone, since a search often stops inside it or
// just after it. The reads let run ahead of fn grow by one each time fn
// shows it wants more than a part's first two windows (it takes the
// second of windows that others follow, or the whole of a part after
// the first), up to 2*scanParallel parts, which bounds the memory held:
// a scan that reads everything has both cores busy from the first
// part's third window on, while a search that stops early in the part
// after the newest block has read nothing past it. Running ahead after
// the first window read the next row group whole for a limit-20 search
// that stopped in the second (on a load whose newest block was one
// flush's 1,416 spans): about an eighth of the server's CPU for it. A
// read of given traces (SpanQuery.TraceIDs or TraceID), which wants all
// of its parts, runs ahead in full from the
// start. A read that the scan's end cancels stops between pages.
//
// A part that the query's floor (SpanQuery.Floor) has risen past is not
// read if it has not started, and not handed on if it has.
//
// A part that fails goes to fail with its block: fail returns nil to skip
// the rest of that block and go on with the others, or an error to end
// the scan with it. A part that fails after its first window has handed
// on the windows before.
// No read is in flight when ReadCoreParts returns.
func ReadCoreParts(ctx context.Context, parts []CorePart, fn func(*storage.Span) bool, fail func(*Block, error) error) error {
	if len(parts) == 0 {
		return nil
	}
	// A part's windows come on wins, which is closed after the last, its
	// error set first. Each window taken is acknowledged on taken: the
	// reader reuses a window's buffer two windows later (CorePart.read).
	type window struct {
		rows *coreRows
		last bool
	}
	type result struct {
		wins  chan window
		taken chan struct{}
		sc    *coreScratch
		err   error
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var made []*coreScratch // the dispatcher's, until it is done
	defer func() {
		cancel()
		wg.Wait()
		for _, sc := range made {
			coreScratches.Put(sc)
		}
	}()
	results := make([]result, len(parts))
	for k := range results {
		results[k].wins, results[k].taken = make(chan window, 2), make(chan struct{}, 2)
	}
	// A scratch is a part's leave to be read ahead of fn: one to begin
	// with, one more as fn shows it wants more, up to ahead of them. Each
	// comes from the pool when first taken: a scan of few parts needs few.
	ahead := 2 * scanParallel
	free := make(chan *coreScratch, ahead)
	var granted atomic.Int32 // set by fn's side, read by the dispatcher
	granted.Store(1)
	if q := parts[0].q; len(q.TraceIDs) > 0 || !q.TraceID.IsEmpty() {
		// A read of given traces wants every part they are in.
		granted.Store(int32(ahead))
	}
	for range granted.Load() {
		free <- nil
	}
	slots := make(chan struct{}, scanParallel)

	// The dispatcher starts reads in order. Each holds a scratch until fn
	// has taken its spans, and a slot while it reads.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := range parts {
			var sc *coreScratch
			select {
			case sc = <-free:
				if sc == nil {
					sc = coreScratches.Get().(*coreScratch)
					made = append(made, sc)
				}
			case <-ctx.Done():
			}
			if sc != nil {
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					// The scratch goes back unused; nothing waits for
					// it, since the scan is ending, but free stays whole.
					free <- sc
					sc = nil
				}
			}
			if sc == nil {
				// Stopped: every part not started ends as cancelled.
				for j := k; j < len(parts); j++ {
					results[j].err = ctx.Err()
					close(results[j].wins)
				}
				return
			}
			if parts[k].belowFloor() {
				// Nothing in it is wanted any more: no read. The floor is
				// looked at once the part could start, the latest it can.
				<-slots
				free <- sc
				close(results[k].wins)
				continue
			}
			// Not yet running ahead: this part may be where fn stops.
			split := granted.Load() == 1
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := &results[k]
				r.sc = sc
				// wins never holds more than two windows: the third is
				// read only once the first has been taken.
				r.err = parts[k].read(ctx, sc, split, func(rows *coreRows, last bool) {
					r.wins <- window{rows, last}
				}, func() bool {
					select {
					case <-r.taken:
						return true
					case <-ctx.Done():
						return false
					}
				})
				<-slots
				close(r.wins)
			}()
		}
	}()

	failed := map[*Block]bool{}
	var span storage.Span // every row handed on, in turn
	hand := func(rows *coreRows) bool {
		if rows == nil {
			return true
		}
		span = storage.Span{}
		for j := range rows.n {
			rows.span(j, &span)
			if !fn(&span) {
				return false
			}
		}
		return true
	}
	grant := func() {
		if n := granted.Load(); n < int32(ahead) {
			free <- nil
			granted.Store(n + 1)
		}
	}
	for k := range parts {
		r := &results[k]
		b := parts[k].b
		windows, below := 0, false
		for w := range r.wins {
			// The floor may have risen past the part while it was read.
			below = below || parts[k].belowFloor()
			if !failed[b] && !below && !hand(w.rows) {
				return nil
			}
			r.taken <- struct{}{}
			if windows == 1 && !w.last && !below {
				grant() // fn wants more than two windows: the next part may start
			}
			windows++
		}
		if r.err != nil && !failed[b] && !below {
			if err := fail(b, r.err); err != nil {
				return err
			}
			failed[b] = true
		}
		if r.sc != nil {
			free <- r.sc
		}
		if k > 0 && windows <= 1 && !below {
			grant() // a part after the first taken whole
		}
	}
	return nil
}
