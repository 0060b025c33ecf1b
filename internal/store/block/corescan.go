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
// and the rows read, column by column, of its two windows. One per part
// in flight.
type coreScratch struct {
	rows      rowScratch
	head      *coreRows // made for the first part with a kept row
	rest      *coreRows // made for the first part read in two windows
	restFlags []bool    // the flags of the rest while the head is read
}

// coreScratches keeps scratches from one scan to the next. A search
// reads a few parts and then stops; made anew, their row flags and
// positions, sized by row group, were most of what it allocated (half
// a megabyte per search on row groups of 24k rows), and the collector's
// time went with them. What the pool holds is what scans in flight held,
// until the next collections empty it.
var coreScratches = sync.Pool{New: func() any { return &coreScratch{} }}

// A part read before fn has asked for more than one read at a time has
// its kept rows read in two windows: the first eighth of them, handed on
// as soon as they are read, then the rest. A search that has what it
// wants a few rows into a part (it stops, typically, in the part after
// the newest block's) has not decoded the result columns of its whole
// row group. The cost is a page of each column but trace IDs decoded
// twice, which is why parts read once a scan is running ahead are read
// whole. Parts that keep fewer than headMin*2 rows are read whole too.
const (
	headShare = 8
	headMin   = 256
)

// read reads the part's matching rows in block order into sc, calling
// head with the first window's, and whether a rest follows, before it
// reads the rest; it returns the rest's (nil when the part was read
// whole, or has no match). Without split it reads one window. The rows
// are valid until sc is used again. The Stats of ctx account the bytes
// read, a page that both windows need twice.
func (p *CorePart) read(ctx context.Context, sc *coreScratch, split bool, head func(rows *coreRows, more bool)) (rest *coreRows, err error) {
	defer p.b.guard(&err)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := p.b.data()
	if err != nil {
		return nil, err
	}
	stats := storage.StatsFrom(ctx)
	rg := f.RowGroups()[p.i]
	keep, any, err := p.b.prefilterSpans(ctx, rg, p.i, &p.b.Index.RowGroups[p.i], p.q, stats, &sc.rows)
	if err != nil || !any {
		return nil, p.b.readErr(err)
	}
	if sc.head == nil {
		sc.head = &coreRows{}
	}
	// The cut is the first row of the rest: the head window's flags are
	// keep's up to it, the rest's keep's from it. It is where a page of
	// trace IDs, the widest core column, begins, so that no page of it is
	// read twice.
	cut := len(keep)
	if split {
		if kept := sc.rows.keptRows(keep); len(kept) >= 2*headMin {
			cut = p.b.pageStart(rg, "trace_id", int(kept[max(len(kept)/headShare, headMin)]))
		}
	}
	if cut < len(keep) {
		sc.restFlags = append(sc.restFlags[:0], keep[cut:]...)
		clear(keep[cut:])
	}
	if err := p.b.coreRead(ctx, rg, p.i, keep, p.q, stats, sc.head, &sc.rows); err != nil {
		return nil, p.b.readErr(err)
	}
	head(sc.head, cut < len(keep))
	if cut == len(keep) {
		return nil, nil
	}
	clear(keep[:cut])
	copy(keep[cut:], sc.restFlags)
	if sc.rest == nil {
		sc.rest = &coreRows{}
	}
	if err := p.b.coreRead(ctx, rg, p.i, keep, p.q, stats, sc.rest, &sc.rows); err != nil {
		return nil, p.b.readErr(err)
	}
	return sc.rest, nil
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
// shows it wants more than a part's head (it takes a head that a rest
// follows, or the whole of a part after the first), up to 2*scanParallel
// parts, which bounds the memory held: a scan that reads everything has
// both cores busy from the first part's rest on, while a search that
// stops in the head of the part after the newest block (the usual case)
// has read nothing past it. A read of given traces (SpanQuery.TraceIDs
// or TraceID), which wants all of its parts, runs ahead in full from the
// start. A read that the scan's end cancels stops between pages.
//
// A part that the query's floor (SpanQuery.Floor) has risen past is not
// read if it has not started, and not handed on if it has.
//
// A part that fails goes to fail with its block: fail returns nil to skip
// the rest of that block and go on with the others, or an error to end
// the scan with it. A part that fails in its rest has handed on its head.
// No read is in flight when ReadCoreParts returns.
func ReadCoreParts(ctx context.Context, parts []CorePart, fn func(*storage.Span) bool, fail func(*Block, error) error) error {
	if len(parts) == 0 {
		return nil
	}
	// A part's head rows, and more, may be taken once ready is closed; its
	// rest, and its error, once done is.
	type result struct {
		head, rest *coreRows
		more       bool // a rest follows the head
		sc         *coreScratch
		err        error
		ready      chan struct{}
		done       chan struct{}
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
		results[k].ready, results[k].done = make(chan struct{}), make(chan struct{})
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
					close(results[j].ready)
					close(results[j].done)
				}
				return
			}
			if parts[k].belowFloor() {
				// Nothing in it is wanted any more: no read. The floor is
				// looked at once the part could start, the latest it can.
				<-slots
				free <- sc
				close(results[k].ready)
				close(results[k].done)
				continue
			}
			// Not yet running ahead: this part may be where fn stops.
			split := granted.Load() == 1
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := &results[k]
				r.sc = sc
				ready := false
				r.rest, r.err = parts[k].read(ctx, sc, split, func(head *coreRows, more bool) {
					r.head, r.more, ready = head, more, true
					close(r.ready)
				})
				<-slots
				if !ready {
					close(r.ready)
				}
				close(r.done)
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
		<-r.ready
		// The floor may have risen past the part while it was read.
		below := parts[k].belowFloor()
		if !failed[b] && !below && !hand(r.head) {
			return nil
		}
		if r.more && !below {
			grant() // fn wants more than a head: the next part may start
		}
		<-r.done
		switch {
		case failed[b], below:
		case r.err != nil:
			if err := fail(b, r.err); err != nil {
				return err
			}
			failed[b] = true
		case !hand(r.rest):
			return nil
		}
		r.head, r.rest = nil, nil
		if r.sc != nil {
			free <- r.sc
		}
		if k > 0 && !r.more && !below {
			grant() // a part after the first taken whole
		}
	}
	return nil
}
