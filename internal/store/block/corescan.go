package block

import (
	"context"
	"runtime"
	"sync"

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

// coreScratch is what reading a part reuses: the row flags and positions
// and the rows read, column by column. One per part in flight.
type coreScratch struct {
	rows rowScratch
	out  *coreRows // made for the first part with a kept row
}

// read returns the part's matching rows in block order, built in sc:
// they are valid until sc is used again. The Stats of ctx account the
// bytes read.
func (p *CorePart) read(ctx context.Context, sc *coreScratch) (rows *coreRows, err error) {
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
	keep, any, err := p.b.prefilterSpans(rg, p.i, &p.b.Index.RowGroups[p.i], p.q, stats, &sc.rows)
	if err != nil || !any {
		return nil, p.b.readErr(err)
	}
	if sc.out == nil {
		sc.out = &coreRows{}
	}
	if err := p.b.coreRead(rg, p.i, keep, p.q, stats, sc.out, &sc.rows); err != nil {
		return nil, p.b.readErr(err)
	}
	return sc.out, nil
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
// The first part is read alone, since a search often stops inside it;
// after it, reads run ahead of fn by at most 2*scanParallel parts, which
// bounds both the memory held and what a scan that stops has read in
// vain. A part that fails goes to fail with its block: fail returns nil to
// skip the rest of that block and go on with the others, or an error to
// end the scan with it. No read is in flight when ReadCoreParts returns.
func ReadCoreParts(ctx context.Context, parts []CorePart, fn func(*storage.Span) bool, fail func(*Block, error) error) error {
	if len(parts) == 0 {
		return nil
	}
	type result struct {
		rows *coreRows
		sc   *coreScratch
		err  error
		done chan struct{}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	results := make([]result, len(parts))
	for k := range results {
		results[k].done = make(chan struct{})
	}
	ahead := 2 * scanParallel
	free := make(chan *coreScratch, ahead)
	for range ahead {
		free <- nil // made when first taken: a scan of few parts needs few
	}
	slots := make(chan struct{}, scanParallel)
	firstTaken := make(chan struct{})

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
					sc = &coreScratch{}
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
					close(results[j].done)
				}
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := &results[k]
				r.sc = sc
				r.rows, r.err = parts[k].read(ctx, sc)
				<-slots
				close(r.done)
			}()
			if k == 0 {
				select {
				case <-firstTaken:
				case <-ctx.Done():
				}
			}
		}
	}()

	failed := map[*Block]bool{}
	var span storage.Span // every row handed on, in turn
	for k := range parts {
		r := &results[k]
		<-r.done
		b := parts[k].b
		switch {
		case failed[b]:
		case r.err != nil:
			if err := fail(b, r.err); err != nil {
				return err
			}
			failed[b] = true
		default:
			if rows := r.rows; rows != nil {
				span = storage.Span{}
				for j := range rows.n {
					rows.span(j, &span)
					if !fn(&span) {
						return nil
					}
				}
			}
		}
		r.rows = nil
		if r.sc != nil {
			free <- r.sc
		}
		if k == 0 {
			close(firstTaken)
		}
	}
	return nil
}
