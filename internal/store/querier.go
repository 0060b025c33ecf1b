package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/sightlinehq/sightline/internal/store/block"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// Querier opens a snapshot reader. See storage.Querier for the contract.
func (db *DB) Querier(context.Context) (storage.Querier, error) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	q := &querier{db: db, heads: append(slices.Clone(db.flushing), db.head), blocks: slices.Clone(db.blocks)}
	for _, b := range q.blocks {
		b.acquire()
	}
	return q, nil
}

var _ storage.Queryable = (*DB)(nil)

type querier struct {
	db     *DB
	heads  []*head
	blocks []*blockRef
	once   sync.Once
}

func (q *querier) Close() error {
	q.once.Do(func() {
		for _, b := range q.blocks {
			b.release()
		}
	})
	return nil
}

// blockErr records a read failure. Damage quarantines nothing at query
// time (the next restart does), but it is reported as a problem at once and
// the query carries on with the other blocks; the error is returned joined
// with any others so the API can answer with partial results and a warning.
func (q *querier) blockErr(b *blockRef, err error) error {
	if errors.Is(err, storage.ErrCorrupt) {
		q.db.setProblem("block/"+b.Meta.ID, fmt.Errorf("block %s/%s unreadable: %w", b.Meta.Signal, b.Meta.ID, err))
	}
	return err
}

func (q *querier) TraceByID(ctx context.Context, id storage.TraceID, start, end int64) ([]storage.Span, error) {
	var spans []storage.Span
	for _, h := range q.heads {
		spans = h.traceByID(id, spans)
	}
	if err := storage.StatsFrom(ctx).CheckTraceSpans(len(spans)); err != nil {
		return nil, err
	}
	var errs []error
	for _, b := range q.blocks {
		if b.Meta.Signal != block.Traces || !b.Overlaps(start, end) {
			continue
		}
		var err error
		spans, err = b.TraceByID(ctx, id, spans)
		if err != nil {
			if ferr := fatal(ctx, err); ferr != nil {
				return nil, ferr
			}
			errs = append(errs, q.blockErr(b, err))
		}
	}
	spans = dedupeSpans(spans)
	if len(spans) == 0 {
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return nil, storage.ErrNotFound
	}
	return spans, errors.Join(errs...)
}

// TraceSummaries answers from the blocks' trace tables. A trace table
// describes the trace as its block holds it, so only a trace that no head
// holds and that one block alone may hold (by the bloom filters: a false
// positive elsewhere only leaves the trace to the caller) is summarized;
// the caller assembles the others from their spans.
func (q *querier) TraceSummaries(ctx context.Context, ids []storage.TraceID, fn func(*storage.TraceSummary)) error {
	const none, several = -1, -2
	owner := make([]int, len(ids))
	for i, id := range ids {
		owner[i] = none
		for _, h := range q.heads {
			if h.holdsTrace(id) {
				owner[i] = several
				break
			}
		}
	}
	for bi, b := range q.blocks {
		if b.Meta.Signal != block.Traces {
			continue
		}
		for i, id := range ids {
			if owner[i] != several && b.MayContain(id) {
				if owner[i] == none {
					owner[i] = bi
				} else {
					owner[i] = several
				}
			}
		}
	}
	byBlock := map[int][]storage.TraceID{}
	for i, o := range owner {
		if o >= 0 && q.blocks[o].HasTraceTable() {
			byBlock[o] = append(byBlock[o], ids[i]) // ids are sorted, so each list is
		}
	}
	// Blocks are read a few at a time: a search for many traces finds
	// them spread over every block, and each block's read is page
	// decoding on one core. fn is called under a lock, so one summary at
	// a time, as from a single reader.
	var (
		mu     sync.Mutex
		failed = map[int]error{}
		wg     sync.WaitGroup
	)
	slots := make(chan struct{}, block.ScanParallel())
	locked := func(s *storage.TraceSummary) {
		mu.Lock()
		defer mu.Unlock()
		fn(s)
	}
	for bi, sub := range byBlock {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() {
				<-slots
				wg.Done()
			}()
			if err := q.blocks[bi].TraceSummaries(ctx, sub, locked); err != nil {
				mu.Lock()
				failed[bi] = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	var errs []error
	for _, bi := range slices.Sorted(maps.Keys(failed)) { // the order of the blocks, as one reader reports
		err := failed[bi]
		if ferr := fatal(ctx, err); ferr != nil {
			return ferr
		}
		errs = append(errs, q.blockErr(q.blocks[bi], err))
	}
	return errors.Join(errs...)
}

// FindTraces reads the blocks' trace tables, from the most recent block.
// Heads and blocks without a table give nothing: see storage.TraceFinder.
func (q *querier) FindTraces(ctx context.Context, f *storage.TraceFilter, fn func(storage.TraceID) bool) error {
	return q.traceBlocks(ctx, func(b *blockRef) (bool, error) {
		if !b.HasTraceTable() {
			return true, nil
		}
		return b.FindTraces(ctx, f, fn)
	})
}

// traceBlocks calls read with each trace block, the most recent first,
// until it returns false. A block's error is joined with what the others
// give, as damage is; cancellation and the read limit end the walk.
func (q *querier) traceBlocks(ctx context.Context, read func(*blockRef) (bool, error)) error {
	var errs []error
	for i := len(q.blocks) - 1; i >= 0; i-- {
		b := q.blocks[i]
		if b.Meta.Signal != block.Traces {
			continue
		}
		cont, err := read(b)
		if err != nil {
			if ferr := fatal(ctx, err); ferr != nil {
				return ferr
			}
			errs = append(errs, q.blockErr(b, err))
			continue
		}
		if !cont {
			break
		}
	}
	return errors.Join(errs...)
}

var (
	_ storage.TraceSummarizer = (*querier)(nil)
	_ storage.TraceFinder     = (*querier)(nil)
)

// dedupeSpans sorts a trace's spans by start time and drops repeats of a
// span ID with the same start (retries stored in two places).
func dedupeSpans(spans []storage.Span) []storage.Span {
	slices.SortFunc(spans, func(a, b storage.Span) int { return block.CompareSpans(&a, &b) })
	return slices.CompactFunc(spans, func(a, b storage.Span) bool {
		return a.TraceID == b.TraceID && a.SpanID == b.SpanID && a.StartUnixNano == b.StartUnixNano
	})
}

func (q *querier) Spans(ctx context.Context, sq *storage.SpanQuery, fn func(*storage.Span) bool) error {
	// Newest first: the head, then blocks from the most recent.
	for i := len(q.heads) - 1; i >= 0; i-- {
		if !q.heads[i].searchSpans(sq, fn) {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if block.IsCoreScan(sq) {
		return q.coreScan(ctx, sq, fn)
	}
	return q.traceBlocks(ctx, func(b *blockRef) (bool, error) { return b.Spans(ctx, sq, fn) })
}

// coreScan reads a core scan's row groups across every trace block at
// once, newest block first as traceBlocks does: the blocks a short window
// holds are small (level-0 blocks have one or two row groups), and read
// block by block they would leave a core idle.
func (q *querier) coreScan(ctx context.Context, sq *storage.SpanQuery, fn func(*storage.Span) bool) error {
	var parts []block.CorePart
	refs := map[*block.Block]*blockRef{}
	for i := len(q.blocks) - 1; i >= 0; i-- {
		b := q.blocks[i]
		if b.Meta.Signal != block.Traces {
			continue
		}
		if p := b.CoreParts(sq); len(p) > 0 {
			parts = append(parts, p...)
			refs[b.Block] = b
		}
	}
	var errs []error
	err := block.ReadCoreParts(ctx, parts, fn, func(b *block.Block, err error) error {
		if ferr := fatal(ctx, err); ferr != nil {
			return ferr
		}
		errs = append(errs, q.blockErr(refs[b], err))
		return nil
	})
	if err != nil {
		return err
	}
	return errors.Join(errs...)
}

// SpanParts hands out the heads as one changing part and every trace
// block as an immutable part named by its ID (block IDs are ULIDs, never
// reused; compaction writes new ones), in the order Spans reads them.
func (q *querier) SpanParts(start, end int64) []storage.SpanPart {
	parts := []storage.SpanPart{{Spans: func(ctx context.Context, sq *storage.SpanQuery, fn func(*storage.Span) bool) error {
		for i := len(q.heads) - 1; i >= 0; i-- {
			if !q.heads[i].searchSpans(sq, fn) {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return nil
	}}}
	for i := len(q.blocks) - 1; i >= 0; i-- {
		b := q.blocks[i]
		if b.Meta.Signal != block.Traces || !b.Overlaps(start, end) {
			continue
		}
		parts = append(parts, storage.SpanPart{ID: b.Meta.ID, MinTime: b.Meta.MinTime, MaxTime: b.Meta.MaxTime,
			Spans: func(ctx context.Context, sq *storage.SpanQuery, fn func(*storage.Span) bool) error {
				_, err := b.Spans(ctx, sq, fn)
				if err != nil {
					if ferr := fatal(ctx, err); ferr != nil {
						return ferr
					}
					return q.blockErr(b, err)
				}
				return nil
			}})
	}
	return parts
}

// LogsByTrace reads the heads' records of the trace (held in memory
// anyway), then each block's, keeping the limit oldest as it goes.
func (q *querier) LogsByTrace(ctx context.Context, id storage.TraceID, span storage.SpanID, start, end int64, limit int) ([]storage.LogRecord, error) {
	out := storage.OldestLogs{Limit: limit}
	var recs []storage.LogRecord
	for _, h := range q.heads {
		recs = h.logsByTraceID(id, span, recs[:0])
		for i := range recs {
			out.Add(&recs[i])
		}
	}
	var errs []error
	lq := &storage.LogQuery{TraceID: id, SpanID: span}
	for _, b := range q.blocks {
		if b.Meta.Signal != block.Logs || !b.Overlaps(start, end) {
			continue
		}
		if _, err := b.Logs(ctx, lq, func(l *storage.LogRecord) bool {
			out.Add(l)
			return true
		}); err != nil {
			if ferr := fatal(ctx, err); ferr != nil {
				return nil, ferr
			}
			errs = append(errs, q.blockErr(b, err))
		}
	}
	return out.Result(), errors.Join(errs...)
}

func (q *querier) Logs(ctx context.Context, lq *storage.LogQuery, fn func(*storage.LogRecord) bool) error {
	for i := len(q.heads) - 1; i >= 0; i-- {
		if !q.heads[i].searchLogs(lq, fn) {
			return nil
		}
	}
	var errs []error
	for i := len(q.blocks) - 1; i >= 0; i-- {
		b := q.blocks[i]
		if b.Meta.Signal != block.Logs {
			continue
		}
		cont, err := b.Logs(ctx, lq, fn)
		if err != nil {
			if ferr := fatal(ctx, err); ferr != nil {
				return ferr
			}
			errs = append(errs, q.blockErr(b, err))
			continue
		}
		if !cont {
			break
		}
	}
	return errors.Join(errs...)
}

func (q *querier) Services(ctx context.Context, start, end int64) ([]string, error) {
	set := map[string]struct{}{}
	for _, h := range q.heads {
		h.mu.RLock()
		if h.overlaps(start, end) {
			h.services(set)
		}
		h.mu.RUnlock()
	}
	for _, b := range q.blocks {
		if b.Meta.Signal == block.Traces && b.Overlaps(start, end) {
			for _, s := range b.Meta.Services {
				listName(set, s)
			}
		}
	}
	delete(set, "")
	return sortedSet(set), nil
}

func (q *querier) Operations(ctx context.Context, service string, start, end int64) ([]storage.Operation, error) {
	set := storage.OperationSet{}
	for _, h := range q.heads {
		h.mu.RLock()
		if h.overlaps(start, end) {
			h.operations(service, set)
		}
		h.mu.RUnlock()
	}
	for _, b := range q.blocks {
		if b.Meta.Signal == block.Traces && b.Overlaps(start, end) {
			for _, op := range b.Meta.SpanNames {
				if service == "" || op.Service == service {
					listName(set, storage.Operation{Name: op.Name, Kind: op.Kind})
				}
			}
		}
	}
	return set.Sorted(), nil
}

func (q *querier) TagNames(ctx context.Context, start, end int64) (storage.TagNames, error) {
	span, res := map[string]struct{}{}, map[string]struct{}{}
	for _, h := range q.heads {
		h.mu.RLock()
		if h.overlaps(start, end) {
			h.tagNames(span, res)
		}
		h.mu.RUnlock()
	}
	for _, b := range q.blocks {
		if b.Meta.Signal == block.Traces && b.Overlaps(start, end) {
			for _, k := range b.Meta.AttributeNames {
				listName(span, k)
			}
			for _, k := range b.Meta.ResourceAttributeNames {
				listName(res, k)
			}
		}
	}
	return storage.TagNames{Span: sortedSet(span), Resource: sortedSet(res)}, nil
}

func (q *querier) TagValues(ctx context.Context, scope storage.Scope, key string, start, end int64, limit int) ([]storage.Value, error) {
	m, err := storage.NewMatcher(scope, key, storage.OpExists, storage.Value{})
	if err != nil {
		return nil, err
	}
	seen := map[storage.Value]struct{}{}
	var out []storage.Value
	err = q.Spans(ctx, &storage.SpanQuery{Start: start, End: end, Matchers: []*storage.Matcher{m}}, func(s *storage.Span) bool {
		v, _ := m.Lookup(s.Attrs, s.Resource)
		if _, ok := seen[v]; !ok {
			seen[v] = struct{}{}
			out = append(out, v)
		}
		return limit <= 0 || len(out) < limit
	})
	slices.SortFunc(out, func(a, b storage.Value) int {
		as, bs := a.AsString(), b.AsString()
		switch {
		case as < bs:
			return -1
		case as > bs:
			return 1
		}
		return 0
	})
	return out, err
}

// listName adds k to a listing's set while it holds fewer than
// storage.MaxListed names.
func listName[K comparable](set map[K]struct{}, k K) {
	if len(set) < storage.MaxListed {
		set[k] = struct{}{}
	}
}

func sortedSet(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// fatal returns the error that must end a query rather than be reported
// as one damaged block among healthy ones: cancellation, deadline, and the
// query's read limit.
func fatal(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, storage.ErrBytesLimit) || errors.Is(err, storage.ErrTraceTooLarge) {
		return err
	}
	return nil
}
