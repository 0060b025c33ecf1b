package traceql

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// ErrTooManyTraces is returned when a query would have to assemble more
// traces than SearchRequest.MaxInspectedTraces allows.
var ErrTooManyTraces = errors.New("query inspects too many traces")

// ErrTooManySeries is returned when a metrics query yields more series
// than MetricsRequest.MaxSeries.
var ErrTooManySeries = errors.New("query yields too many series")

// ErrTooManyValues is returned when a metrics query would hold more
// values than its bound (quantile_over_time's sketches, maxSketchSlots).
var ErrTooManyValues = errors.New("query holds too many values")

// NoRoot is the root service and name of a trace whose root span has not
// been stored, as Tempo spells it.
const NoRoot = "<root span not yet received>"

// SearchRequest is a TraceQL search.
type SearchRequest struct {
	Query *Query
	// Start and End bound span start times (unix ns); 0 leaves a side open.
	Start, End int64
	// Limit is the number of traces to return.
	Limit int
	// SpansPerSpanset bounds the spans returned per spanset; 0 means all.
	SpansPerSpanset int
	// MaxInspectedTraces bounds the traces assembled to evaluate structural
	// and trace-level queries; 0 means no bound.
	MaxInspectedTraces int
	// FullTraces returns every span of each matching trace in
	// TraceResult.Spans, as the Jaeger API answers a search. The traces
	// are assembled to evaluate the query anyway; this keeps them.
	FullTraces bool
	// MaxResultSpans bounds, with FullTraces, the spans of all the
	// traces returned (0: no bound): the search ends before the trace
	// that would pass it, as at its limit, and sets
	// SearchResult.Truncated.
	MaxResultSpans int
}

// SearchResult holds the matching traces, most recent first.
type SearchResult struct {
	Traces          []TraceResult
	InspectedTraces int
	InspectedSpans  int64
	// SkippedTraces counts candidate traces left out for holding more
	// spans than the query's bound (storage.Stats.MaxTraceSpans).
	SkippedTraces int
	// Truncated reports that the search ended at
	// SearchRequest.MaxResultSpans, with fewer traces than its limit.
	Truncated bool

	spans int // of the full traces returned
}

// enough reports whether the search has what it may return: its limit
// of traces, or its bound on their spans.
func (r *SearchResult) enough(limit int) bool { return len(r.Traces) >= limit || r.Truncated }

// TraceResult is one matching trace.
type TraceResult struct {
	TraceID      storage.TraceID
	RootService  string
	RootName     string
	Start        int64 // unix ns
	Duration     int64 // ns
	Spansets     []ResultSpanset
	ServiceStats map[string]ServiceStats
	// Spans is the whole trace, with SearchRequest.FullTraces.
	Spans []storage.Span
}

// ServiceStats counts a trace's spans per service.
type ServiceStats struct{ SpanCount, ErrorCount int }

// ResultSpanset is a matching spanset.
type ResultSpanset struct {
	Spans   []ResultSpan
	Matched int
	Attrs   []Label
}

// ResultSpan is a matching span with the fields the query referenced.
type ResultSpan struct {
	SpanID   storage.SpanID
	Name     string
	Start    int64
	Duration int64
	Attrs    []Label
}

// recentFloor raises a spanwise search's floor (storage.SpanQuery.Floor)
// to the oldest start among its limit most recent traces, so that the
// store skips blocks and row groups too old to change the answer: the
// oversampling of a search past its first block, and a most_recent
// search's scan of everything, stop at the blocks that can still matter.
//
// It keeps, in a min-heap, the largest first-seen starts of limit
// traces. A trace's latest matching start only rises from its first, so
// the limit-th largest first-seen start is at most the limit-th largest
// latest: a span starting before it can neither make its trace one of
// the limit most recent nor reorder them.
type recentFloor struct {
	h     startHeap
	limit int
	f     *storage.StartFloor
}

func newRecentFloor(limit int) *recentFloor {
	return &recentFloor{limit: limit, h: make(startHeap, 0, min(limit, 1024)), f: &storage.StartFloor{}}
}

// add records the first matching start of a trace new to the search.
func (r *recentFloor) add(t int64) {
	switch {
	case len(r.h) < r.limit:
		heap.Push(&r.h, t)
		if len(r.h) < r.limit {
			return
		}
	case t > r.h[0]:
		r.h[0] = t
		heap.Fix(&r.h, 0)
	default:
		return
	}
	r.f.Raise(r.h[0])
}

// recentTraces is a spanwise search's latest matching start per trace,
// and the floor those starts raise (recentFloor).
//
// A most_recent search reads every match above its floor, and latest
// kept every trace it saw: with trace IDs that grow with time (X-Ray's
// begin with the second), each span raised the floor and added a trace,
// all of them. With sweep set, the traces whose latest start lies below
// the floor, which cannot be among the limit most recent, are dropped
// whenever latest has doubled since the last sweep (and is at least
// 4096, or four times the limit); a trace that matches again later is
// added again, as new. A search that stops at its oversampling holds a
// bounded number of traces already.
type recentTraces struct {
	latest  map[storage.TraceID]int64
	floor   *recentFloor
	sweep   bool
	sweepAt int
}

func newRecentTraces(limit int, sweep bool) *recentTraces {
	return &recentTraces{latest: map[storage.TraceID]int64{}, floor: newRecentFloor(limit), sweep: sweep, sweepAt: max(4*limit, 4096)}
}

// see records a match of trace id that starts at t.
func (r *recentTraces) see(id storage.TraceID, t int64) {
	if old, ok := r.latest[id]; ok {
		r.latest[id] = max(old, t)
		return
	}
	r.latest[id] = t
	r.floor.add(t)
	if r.sweep && len(r.latest) >= r.sweepAt {
		fl := r.floor.f.Load()
		maps.DeleteFunc(r.latest, func(_ storage.TraceID, t int64) bool { return t < fl })
		r.sweepAt = max(2*len(r.latest), r.sweepAt)
	}
}

// startHeap is a min-heap of starts (container/heap).
type startHeap []int64

func (h startHeap) Len() int           { return len(h) }
func (h startHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h startHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *startHeap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *startHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// oversample is how many times its limit a spanwise search reads
// candidate traces before it keeps the latest, reading at most
// oversampleSpans spans more once it has its limit.
const (
	oversample      = 10
	oversampleSpans = 10_000
)

// Search runs a spanset query. The querier is the only thing it reads.
func Search(ctx context.Context, sq storage.Querier, req SearchRequest) (*SearchResult, error) {
	q := req.Query
	if q.IsMetrics() {
		return nil, errors.New("metrics queries are answered by the metrics API, not search")
	}
	if req.Limit <= 0 {
		req.Limit = 20
	}
	res := &SearchResult{}
	fields := outputFields(q)
	var ids []storage.TraceID
	seen := map[storage.TraceID]bool{}

	// Without with(most_recent=true), the search stops once it has found
	// enough traces, as Tempo's does; the store yields recent data first,
	// so these are recent ones. Inside a block the order is the block's,
	// not time's, so a spanwise search reads candidates for oversample
	// times the limit and keeps the latest of them: the cost is scanning
	// spans, not fetching traces. With the hint it finds them all and keeps
	// the most recent.
	mostRecent := false
	if h, ok := q.Hint("most_recent"); ok && h.IsTrue() {
		mostRecent = true
	}
	if f, ok := q.spanwise(); ok {
		// Every span that passes the filter makes its trace a result; the
		// most recent matching start decides the order.
		recent := newRecentTraces(req.Limit, mostRecent)
		latest := recent.latest
		pq, _ := pushdown(f.Expr, req.Start, req.End)
		exact := exactPushdown(f.Expr)
		floor := recent.floor
		pq.Floor = floor.f
		// A search for many traces keeps each match as a result shows it
		// while it scans, and answers the traces the store summarizes
		// from that (see scanHits).
		var pre *scanHits
		summarize := req.Limit >= scanHitsLimit && req.SpansPerSpanset <= scanHitsMaxSpss && summarizable(sq, req, fields)
		if summarize {
			pre = newScanHits(req.Start, req.End)
			pre.floor = floor.f
		}
		switch {
		case exact && pre != nil && coreOnly(fields...):
			pq.Projection, pq.Fields = storage.ProjectCore, resultFields(fields)
		case exact && pre != nil:
			// Results show attributes: whole spans.
		case exact:
			// The store applies the whole filter: discovery reads each
			// match's trace and start only.
			pq.Projection, pq.Fields = storage.ProjectCore, storage.FieldTraceID|storage.FieldStart
		case coreOnly(f.Expr) && (pre == nil || coreOnly(fields...)):
			// Discovery needs the filter's fields only; results are
			// assembled from whole traces afterwards.
			pq.Projection = storage.ProjectCore
		}
		ev, lk := false, false
		if f.Expr != nil {
			ev, lk = iterates(f.Expr)
		}
		one := newSingle()
		// The oversampling reads at most oversampleSpans spans past the
		// point where the limit was reached, so that a selective filter
		// does not scan ten times as deep for it.
		atLimit := int64(-1)
		more := func() bool {
			return mostRecent || len(latest) < req.Limit*oversample && (atLimit < 0 || res.InspectedSpans-atLimit < oversampleSpans)
		}
		err := sq.Spans(ctx, pq, func(s *storage.Span) bool {
			res.InspectedSpans++
			if f.Expr != nil && !exact && !matchSpan(f.Expr, one.with(s), 0, ev, lk) {
				return pre.more(s, more())
			}
			recent.see(s.TraceID, s.StartUnixNano)
			pre.add(one.with(s), fields, req.SpansPerSpanset)
			if atLimit < 0 && len(latest) >= req.Limit {
				atLimit = res.InspectedSpans
			}
			return pre.more(s, more())
		})
		if err != nil {
			return nil, err
		}
		for id := range latest {
			ids = append(ids, id)
		}
		slices.SortFunc(ids, func(a, b storage.TraceID) int {
			if c := cmp.Compare(latest[b], latest[a]); c != 0 {
				return c
			}
			return slices.Compare(a[:], b[:])
		})
		// ids are in recency order and all match: the first Limit are it.
		// Those the store summarizes are answered from their summaries
		// and their matching spans; the rest are assembled.
		if summarize {
			n := min(req.Limit, len(ids))
			done, rest, err := summarizedResults(ctx, sq, f, fields, req.SpansPerSpanset, ids[:n], pre, &res.InspectedSpans)
			if err != nil {
				return nil, err
			}
			res.Traces = append(res.Traces, done...)
			res.InspectedTraces += len(done)
			ids = append(rest, ids[n:]...)
		}
		err = evalCandidates(ctx, sq, q, ids, fields, req, res, false)
		if err != nil {
			return nil, err
		}
	} else {
		// Candidates come in rounds of growing size: a selective filter
		// yields Limit traces from the first; each later round rescans,
		// skipping what it has seen, and the last is unbounded.
		first := q.Pipeline.Stages[0].(stageExpr).expr()
		qs, _ := candidates(first, req.Start, req.End)
		conds := requiredTraceConds(first)
		bounds := []int{req.Limit * 2, req.Limit * 20, 0}
		if mostRecent {
			bounds = []int{0}
		}
		// A filter that requires a long trace finds its first candidates
		// among the traces the store knows to be long, in rounds as the
		// scan does (see tableCandidates); if they make the limit, no
		// span is scanned.
		tried := map[storage.TraceID]bool{}
		for _, want := range []int{req.Limit * 2, req.Limit * 20} {
			if mostRecent {
				break // it needs every candidate: the scan finds them all
			}
			fresh, more, err := tableCandidates(ctx, sq, conds, qs, req.Start, req.End, want, tried, seen, &res.InspectedSpans)
			if err != nil {
				return nil, err
			}
			if fresh, err = pruneByTraceConds(ctx, sq, conds, fresh); err != nil {
				return nil, err
			}
			if err = evalCandidates(ctx, sq, q, fresh, fields, req, res, false); err != nil {
				return nil, err
			}
			if res.enough(req.Limit) {
				bounds = nil
			}
			if res.enough(req.Limit) || !more {
				break
			}
		}
		// An unbounded round (the last, or most_recent's only one) still
		// keeps at most maxCandidates(req) trace IDs: a scan of
		// everything collected every trace it saw, tens of millions in
		// a query's timeout. Past the cap, a round that does not make
		// the limit (or must see everything) fails as one that
		// inspects too many traces does.
		maxCands := maxCandidates(req)
		for _, bound := range bounds {
			capped := bound > 0
			atCap := maxCands > 0 && (!capped || bound > maxCands)
			if atCap {
				capped, bound = true, maxCands
			}
			var fresh []storage.TraceID
			full := true
			for _, pq := range qs {
				err := sq.Spans(ctx, pq, func(s *storage.Span) bool {
					res.InspectedSpans++
					if !seen[s.TraceID] {
						seen[s.TraceID] = true
						fresh = append(fresh, s.TraceID)
					}
					if capped && len(fresh) >= bound {
						full = false
						return false
					}
					return true
				})
				if err != nil {
					return nil, err
				}
				if !full {
					break
				}
			}
			// Trace-level conditions rule out candidates by their
			// summaries before any is assembled.
			fresh, err := pruneByTraceConds(ctx, sq, conds, fresh)
			if err != nil {
				return nil, err
			}
			err = evalCandidates(ctx, sq, q, fresh, fields, req, res, mostRecent)
			if err != nil {
				return nil, err
			}
			if full || res.enough(req.Limit) && !mostRecent {
				break
			}
			if atCap {
				return nil, tooManyCandidates(maxCands)
			}
		}
	}
	slices.SortStableFunc(res.Traces, func(a, b TraceResult) int { return cmp.Compare(b.Start, a.Start) })
	if len(res.Traces) > req.Limit {
		res.Traces = res.Traces[:req.Limit]
	}
	return res, nil
}

// tooManyCandidates is the error of a query with more than n candidate
// traces.
func tooManyCandidates(n int) error {
	return fmt.Errorf("%w: more than %d candidate traces; narrow the time range or the filter", ErrTooManyTraces, n)
}

// maxCandidates bounds the trace IDs a search collects in one round of
// candidates: four times what it may inspect, since trace-level
// conditions rule some out before any is inspected; 0 when inspection
// is unbounded.
func maxCandidates(req SearchRequest) int {
	return 4 * req.MaxInspectedTraces
}

// evalCandidates assembles candidate traces and adds those the pipeline
// matches to res.Traces, until it holds Limit traces.
// With exhaustive set it evaluates them all (most_recent over candidates
// in no particular order). A candidate past the query's bound on spans a
// trace (storage.Stats.MaxTraceSpans) is not assembled: it is left out
// and counted in res.SkippedTraces, as a lookup of it by ID is refused.
func evalCandidates(ctx context.Context, sq storage.Querier, q *Query, ids []storage.TraceID, fields []Expr, req SearchRequest, res *SearchResult, exhaustive bool) error {
	// Traces are fetched and evaluated fetchParallel at a time (lookups
	// are I/O and decode bound); results keep candidate order.
	type result struct {
		tr      *TraceResult
		skipped bool
		err     error
	}
	if !req.FullTraces && coreTrace(q) {
		return evalCandidatesCore(ctx, sq, q, ids, fields, req, res, exhaustive)
	}
	for i := 0; i < len(ids); i += fetchParallel {
		if res.Truncated || len(res.Traces) >= req.Limit && !exhaustive {
			break
		}
		batch := ids[i:min(i+fetchParallel, len(ids))]
		if req.MaxInspectedTraces > 0 && res.InspectedTraces+len(batch) > req.MaxInspectedTraces {
			return tooManyCandidates(req.MaxInspectedTraces)
		}
		results := make([]result, len(batch))
		var wg sync.WaitGroup
		for k, id := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tr, err := fetchTrace(ctx, sq, id, false)
				switch {
				case errors.Is(err, storage.ErrTraceTooLarge):
					results[k].skipped = true
					return
				case errors.Is(err, storage.ErrNotFound):
					return
				case err != nil:
					results[k].err = err
					return
				}
				if sets := evalPipeline(q.Pipeline, tr, []Spanset{{Spans: allSpans(tr)}}); len(sets) > 0 {
					r := traceResult(tr, sets, fields, req.SpansPerSpanset, req.FullTraces)
					results[k].tr = &r
				}
			}()
		}
		wg.Wait()
		res.InspectedTraces += len(batch)
		for _, r := range results {
			if r.err != nil {
				return r.err
			}
			if r.skipped {
				res.SkippedTraces++
			}
			if r.tr == nil || res.Truncated || len(res.Traces) >= req.Limit && !exhaustive {
				continue
			}
			if req.FullTraces && req.MaxResultSpans > 0 && res.spans+len(r.tr.Spans) > req.MaxResultSpans {
				res.Truncated = true
				continue
			}
			res.spans += len(r.tr.Spans)
			res.Traces = append(res.Traces, *r.tr)
		}
	}
	return nil
}

// evalCandidatesCore is evalCandidates for a pipeline over core fields:
// candidates are assembled in batches from one store query for all their
// traces (storage.SpanQuery.TraceIDs), which reads each page of the core
// columns once however many of the traces it holds. A batch is what is
// still missing of the limit, at least fetchParallel and at most
// coreBatch traces. A trace whose spans pass the query's bound stops
// being collected there and is left out. A batch of several traces that
// passes coreBatchSpans in all is given up and read again in halves, so
// large traces are assembled fewer at a time.
func evalCandidatesCore(ctx context.Context, sq storage.Querier, q *Query, ids []storage.TraceID, fields []Expr, req SearchRequest, res *SearchResult, exhaustive bool) error {
	size := coreBatch
	for len(ids) > 0 {
		if len(res.Traces) >= req.Limit && !exhaustive {
			break
		}
		n := min(len(ids), size, max(fetchParallel, req.Limit-len(res.Traces)))
		batch := ids[:n]
		if req.MaxInspectedTraces > 0 && res.InspectedTraces+len(batch) > req.MaxInspectedTraces {
			return tooManyCandidates(req.MaxInspectedTraces)
		}
		byTrace, tooLarge, err := collectCore(ctx, sq, batch)
		if errors.Is(err, errBatchTooLarge) {
			size = max(1, n/2)
			continue
		}
		if err != nil {
			return err
		}
		ids = ids[n:]
		res.InspectedTraces += len(batch)
		for _, id := range batch {
			if tooLarge[id] {
				res.SkippedTraces++
				delete(tooLarge, id) // a batch may name a trace twice
				continue
			}
			spans := dedupeSpans(byTrace[id])
			if len(spans) == 0 || len(res.Traces) >= req.Limit && !exhaustive {
				continue
			}
			tr := NewTrace(spans)
			if sets := evalPipeline(q.Pipeline, tr, []Spanset{{Spans: allSpans(tr)}}); len(sets) > 0 {
				res.Traces = append(res.Traces, traceResult(tr, sets, fields, req.SpansPerSpanset, req.FullTraces))
			}
		}
	}
	return nil
}

// errBatchTooLarge is collectCore giving up a batch of several traces
// whose spans pass coreBatchSpans.
var errBatchTooLarge = errors.New("candidate batch too large")

// collectCore reads the core fields of the spans of batch's traces, by
// trace. A trace past the query's bound on spans a trace
// (storage.Stats.MaxTraceSpans) is dropped as soon as it passes it and
// marked in tooLarge. Repeats of a span (retries) count: the bounds are
// on what is held, before they are dropped.
//
// The spans are copied into chunks of spanChunk, each trace's list
// pointing into them: copied into a growing slice per trace, as they
// were, they allocated twice the bytes they kept (a span is 200 bytes),
// and were half of what a limit-20 search allocated.
func collectCore(ctx context.Context, sq storage.Querier, batch []storage.TraceID) (byTrace map[storage.TraceID][]*storage.Span, tooLarge map[storage.TraceID]bool, err error) {
	stats := storage.StatsFrom(ctx)
	sorted := slices.Clone(batch)
	slices.SortFunc(sorted, func(a, b storage.TraceID) int { return slices.Compare(a[:], b[:]) })
	sorted = slices.Compact(sorted)
	byTrace = make(map[storage.TraceID][]*storage.Span, len(sorted))
	tooLarge = map[storage.TraceID]bool{}
	held := 0
	var chunk []storage.Span
	err = sq.Spans(ctx, &storage.SpanQuery{TraceIDs: sorted, Projection: storage.ProjectCore}, func(s *storage.Span) bool {
		if tooLarge[s.TraceID] {
			return true
		}
		if len(chunk) == cap(chunk) {
			chunk = make([]storage.Span, 0, spanChunk)
		}
		chunk = append(chunk, *s)
		spans := append(byTrace[s.TraceID], &chunk[len(chunk)-1])
		if stats.CheckTraceSpans(len(spans)) != nil {
			tooLarge[s.TraceID] = true
			held -= len(spans) - 1
			delete(byTrace, s.TraceID)
			return true
		}
		byTrace[s.TraceID] = spans
		held++
		return held <= coreBatchSpans || len(sorted) == 1
	})
	if err == nil && held > coreBatchSpans && len(sorted) > 1 {
		err = errBatchTooLarge
	}
	return byTrace, tooLarge, err
}

// coreBatch bounds the traces one batch of evalCandidatesCore assembles,
// and coreBatchSpans the spans a batch of several holds at once (core
// fields only: about 40 MB). A search's thousand traces of the usual
// dozens of spans are a tenth of it; a few traces near
// max_spans_per_trace make the batch shrink.
const coreBatch = 1000

var coreBatchSpans = 200_000 // a variable for tests

// spanChunk is how many spans collectCore copies into one allocation.
const spanChunk = 64

// fetchParallel is how many candidate traces a search assembles at once.
const fetchParallel = 4

// stageExpr is implemented by stages that begin with a spanset expression.
type stageExpr interface{ expr() SpansetExpr }

func (s *SpansetStage) expr() SpansetExpr { return s.Expr }
func (s *ScalarFilter) expr() SpansetExpr { return &SpansetFilter{} }
func (s *GroupBy) expr() SpansetExpr      { return &SpansetFilter{} }
func (s *Coalesce) expr() SpansetExpr     { return &SpansetFilter{} }
func (s *Select) expr() SpansetExpr       { return &SpansetFilter{} }

// fetchTrace assembles a trace: whole, or, with core set, only its spans'
// core fields (IDs, name, kind, status, timing, service), which is what a
// pipeline over core fields and its search result read. A core fetch reads
// a few columns of the trace's rows instead of all of them. Either fails
// with storage.ErrTraceTooLarge past the query's bound on spans a trace
// (storage.Stats.MaxTraceSpans), without holding more than that.
func fetchTrace(ctx context.Context, sq storage.Querier, id storage.TraceID, core bool) (*Trace, error) {
	var spans []storage.Span
	var err error
	if core {
		stats := storage.StatsFrom(ctx)
		var tooLarge error
		err = sq.Spans(ctx, &storage.SpanQuery{TraceID: id, Projection: storage.ProjectCore}, func(s *storage.Span) bool {
			if tooLarge = stats.CheckTraceSpans(len(spans) + 1); tooLarge != nil {
				return false
			}
			spans = append(spans, *s)
			return true
		})
		if err == nil && tooLarge != nil {
			return nil, tooLarge
		}
		if err == nil && len(spans) == 0 {
			err = storage.ErrNotFound
		}
	} else {
		spans, err = sq.TraceByID(ctx, id, 0, 0)
	}
	if err != nil && len(spans) == 0 {
		return nil, err
	}
	ptrs := make([]*storage.Span, len(spans))
	for i := range spans {
		ptrs[i] = &spans[i]
	}
	if core {
		ptrs = dedupeSpans(ptrs)
	}
	return NewTrace(ptrs), nil
}

// dedupeSpans drops repeats of a span (same ID and start: a retry stored
// twice), as TraceByID does, leaving the spans in order of start and ID.
func dedupeSpans(spans []*storage.Span) []*storage.Span {
	slices.SortFunc(spans, func(a, b *storage.Span) int {
		if c := cmp.Compare(a.StartUnixNano, b.StartUnixNano); c != 0 {
			return c
		}
		return slices.Compare(a.SpanID[:], b.SpanID[:])
	})
	return slices.CompactFunc(spans, func(a, b *storage.Span) bool {
		return a.SpanID == b.SpanID && a.StartUnixNano == b.StartUnixNano
	})
}

// coreTrace reports whether every field the pipeline reads, and the
// extra fields given, are core ones or ones the trace's tree gives
// (trace-level intrinsics, child counts, nested sets), so that candidate
// traces can be fetched with core fields only.
func coreTrace(q *Query, extra ...Expr) bool {
	ok := true
	var field func(Expr)
	field = func(e Expr) {
		switch x := e.(type) {
		case nil, *Literal:
		case *IntrinsicRef:
			switch x.Intrinsic {
			case IntrinsicDuration, IntrinsicName, IntrinsicStatus, IntrinsicKind, IntrinsicSpanID, IntrinsicTraceID, IntrinsicParentID,
				IntrinsicChildCount, IntrinsicTraceDuration, IntrinsicRootName, IntrinsicRootService,
				IntrinsicNestedSetLeft, IntrinsicNestedSetRight, IntrinsicNestedSetParent:
			default:
				ok = false
			}
		case *Attribute:
			ok = ok && !x.Parent && x.Scope == ScopeResource && x.Name == "service.name"
		case *BinaryExpr:
			field(x.LHS)
			field(x.RHS)
		case *UnaryExpr:
			field(x.Expr)
		default:
			ok = false
		}
	}
	eachPipelineExpr(q.Pipeline, func(e Expr, _ bool) { field(e) })
	for _, e := range extra {
		field(e)
	}
	return ok
}

// eachPipelineExpr calls fn with every expression a pipeline holds, in
// nested pipelines too: its filters' and select()'s (output set: what a
// result shows), and its aggregates' and by()'s.
func eachPipelineExpr(p *Pipeline, fn func(e Expr, output bool)) {
	var scalar func(ScalarExpr)
	scalar = func(e ScalarExpr) {
		switch x := e.(type) {
		case *Aggregate:
			if x.Expr != nil {
				fn(x.Expr, false)
			}
		case *ScalarBinary:
			scalar(x.LHS)
			scalar(x.RHS)
		}
	}
	var set func(SpansetExpr)
	set = func(e SpansetExpr) {
		switch x := e.(type) {
		case *SpansetFilter:
			if x.Expr != nil {
				fn(x.Expr, true)
			}
		case *SpansetOp:
			set(x.LHS)
			set(x.RHS)
		case *Pipeline:
			eachPipelineExpr(x, fn)
		}
	}
	for _, st := range p.Stages {
		switch s := st.(type) {
		case *SpansetStage:
			set(s.Expr)
		case *ScalarFilter:
			scalar(s.LHS)
			scalar(s.RHS)
		case *GroupBy:
			fn(s.Expr, false)
		case *Select:
			for _, f := range s.Fields {
				fn(f, true)
			}
		}
	}
}

func allSpans(tr *Trace) []int {
	out := make([]int, len(tr.Spans))
	for i := range out {
		out[i] = i
	}
	return out
}

// single is a one-span Trace reused while streaming spans; only span-level
// intrinsics are evaluated on it.
type single struct{ tr Trace }

func newSingle() *single {
	return &single{tr: Trace{Spans: make([]*storage.Span, 1), parent: []int{-1}, left: []int{0}, right: []int{0}, children: []int{0}, Root: -1}}
}

func (s *single) with(sp *storage.Span) *Trace {
	s.tr.Spans[0] = sp
	s.tr.Start, s.tr.End = sp.StartUnixNano, sp.EndUnixNano
	return &s.tr
}

// outputFields lists what each returned span carries: the fields the
// filters compare and the select()ed ones, as Tempo returns them.
func outputFields(q *Query) []Expr {
	var out []Expr
	seen := map[string]bool{}
	add := func(e Expr) {
		switch x := e.(type) {
		case *Attribute:
		case *IntrinsicRef:
			switch x.Intrinsic {
			case IntrinsicName, IntrinsicDuration, IntrinsicSpanID:
				return // carried by the span itself
			}
		default:
			return
		}
		if k := e.String(); !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	var walkExpr func(Expr)
	walkExpr = func(e Expr) {
		switch x := e.(type) {
		case *BinaryExpr:
			walkExpr(x.LHS)
			walkExpr(x.RHS)
		case *UnaryExpr:
			walkExpr(x.Expr)
		default:
			add(e)
		}
	}
	eachPipelineExpr(q.Pipeline, func(e Expr, output bool) {
		if output {
			walkExpr(e)
		}
	})
	return out
}

// FieldKey is the key a returned field carries: attribute names without
// their scope (as Tempo returns them), intrinsics by name.
func FieldKey(e Expr) string {
	if a, ok := e.(*Attribute); ok {
		return a.Name
	}
	return e.String()
}

func traceResult(tr *Trace, sets []Spanset, fields []Expr, spss int, full bool) TraceResult {
	r := TraceResult{
		TraceID:      tr.Spans[0].TraceID,
		RootService:  NoRoot,
		RootName:     NoRoot,
		Start:        tr.Start,
		Duration:     tr.End - tr.Start,
		ServiceStats: map[string]ServiceStats{},
	}
	if tr.Root >= 0 {
		r.RootService, r.RootName = tr.RootService(), tr.RootName()
	}
	if full {
		r.Spans = make([]storage.Span, len(tr.Spans))
		for i, s := range tr.Spans {
			r.Spans[i] = *s
		}
	}
	for _, s := range tr.Spans {
		st := r.ServiceStats[s.Resource.ServiceName()]
		st.SpanCount++
		if s.StatusCode == storage.StatusError {
			st.ErrorCount++
		}
		r.ServiceStats[s.Resource.ServiceName()] = st
	}
	for _, ss := range sets {
		rs := ResultSpanset{Matched: len(ss.Spans), Attrs: ss.Attrs}
		for k, i := range ss.Spans {
			if spss > 0 && k >= spss {
				break
			}
			rs.Spans = append(rs.Spans, resultSpan(tr, i, fields))
		}
		r.Spansets = append(r.Spansets, rs)
	}
	return r
}

// MetricsRequest is a TraceQL metrics query over [Start, End) in steps.
type MetricsRequest struct {
	Query      *Query
	Start, End int64 // unix ns
	Step       int64 // ns
	// Instant evaluates one value over the whole range.
	Instant bool
	// Exemplars is the most exemplars the result holds, over all of its
	// series (see capExemplars); a negative value leaves them unbounded.
	Exemplars          int
	MaxSeries          int
	MaxInspectedTraces int
	// MaxSamples bounds the samples compare() holds while it counts; 0
	// means a million.
	MaxSamples int
	// Cache, when set, keeps the partial series of immutable store parts
	// (blocks) between queries.
	Cache *MetricsCache
}

// Series is one time series of a metrics result.
type Series struct {
	Labels    []Label
	Samples   []Sample
	Exemplars []Exemplar
}

// Sample is one point; TimestampMs is the start of its step.
type Sample struct {
	TimestampMs int64
	Value       float64
}

// Exemplar is a span that contributed to a series.
type Exemplar struct {
	Labels      []Label
	Value       float64
	TimestampMs int64
}

// MetricsResult is what a metrics query returns.
type MetricsResult struct {
	Series          []Series
	InspectedTraces int
	InspectedSpans  int64
	// SkippedTraces counts the traces a structural query left out for
	// holding more spans than the query's bound
	// (storage.Stats.MaxTraceSpans).
	SkippedTraces int
}

// DefaultStep picks a step for a range the way Tempo does: about 240 points.
func DefaultStep(start, end int64) int64 {
	base := (end - start) / 240
	const ms, s = int64(1e6), int64(1e9)
	if end-start < 60*s {
		st := base / (50 * ms) * 50 * ms
		return max(st, 50*ms)
	}
	for _, c := range []int64{3600 * s, 300 * s, 60 * s, 15 * s, 5 * s, s} {
		if c < base {
			return base / c * c
		}
	}
	return s
}

// seriesAcc accumulates one series per step: counts, and sums, minima
// and maxima for the functions that measure, or the values themselves for
// quantiles.
type seriesAcc struct {
	labels []Label
	count  []float64
	sum    []float64
	min    []float64
	max    []float64
	values [][]float64
	// sketches replace values once a query holds too many (sketchAll):
	// one per step with spans.
	sketches []*sketch
	ex       []Exemplar
	exBkt    []int    // the step of each exemplar
	exIn     []uint64 // which steps have one, a bit each
	exWant   int      // exemplars wanted, in an exemplars' pass
}

// hasExemplar reports whether step b has an exemplar: one per step, so
// that a series' exemplars spread over its range.
func (acc *seriesAcc) hasExemplar(b int) bool {
	return b >= 0 && b>>6 < len(acc.exIn) && acc.exIn[b>>6]&(1<<(b&63)) != 0
}

// addExemplar adds e, of step b, to a series of n steps that keeps at
// most limit exemplars; the caller checks the limit.
func (acc *seriesAcc) addExemplar(e Exemplar, b, n, limit int) {
	if acc.exIn == nil {
		acc.exIn = make([]uint64, (n+63)>>6)
		// Sized for the usual limit (Tempo's default is 100), not for
		// whatever a request asks.
		c := min(limit, 128)
		acc.ex, acc.exBkt = make([]Exemplar, 0, c), make([]int, 0, c)
	}
	acc.ex = append(acc.ex, e)
	acc.exBkt = append(acc.exBkt, b)
	if b >= 0 && b>>6 < len(acc.exIn) {
		acc.exIn[b>>6] |= 1 << (b & 63)
	}
}

// Metrics runs a metrics query.
func Metrics(ctx context.Context, sq storage.Querier, req MetricsRequest) (*MetricsResult, error) {
	q := req.Query
	if q.Math != nil {
		return metricsMath(ctx, sq, req)
	}
	m := q.Metrics
	if m == nil {
		return nil, errors.New("not a metrics query: add a function such as | rate()")
	}
	if req.End <= req.Start {
		return nil, errors.New("end must be after start")
	}
	start, step, n := req.Start, req.Step, 1
	if req.Instant || step <= 0 {
		step = req.End - req.Start
	} else {
		start = req.Start - req.Start%step
		n = int((req.End - start + step - 1) / step)
	}
	res := &MetricsResult{}
	var cmpAcc *compareAcc
	if m.Compare != nil {
		cmpAcc = newCompareAcc(m, n, req.MaxSamples)
	}
	acc := newMetricsAcc(m, start, step, n, req.MaxSeries, req.Exemplars)
	add := func(tr *Trace, i int) {
		if cmpAcc != nil {
			t := tr.Spans[i].StartUnixNano
			if t >= start && t < req.End {
				if b := int((t - start) / step); b < n {
					cmpAcc.observe(tr, i, b)
				}
			}
			return
		}
		if tr.Spans[i].StartUnixNano < req.End {
			acc.add(tr, i)
		}
	}

	if f, ok := q.spanwise(); ok {
		pq, _ := pushdown(f.Expr, start, req.End-1)
		// countsOnly is pq without the exemplars' IDs, when they are all
		// it reads them for.
		var countsOnly storage.SpanQuery
		if m.Compare == nil && coreOnly(append([]Expr{f.Expr, m.Attr}, m.By...)...) {
			// Only the columns the series need: their start, what they
			// measure and group by, what the filter reads unless the store
			// applies it whole, and the IDs when exemplars are asked for.
			pq.Projection = storage.ProjectCore
			pq.Fields = storage.FieldStart | coreFields(append([]Expr{m.Attr}, m.By...)...)
			if !exactPushdown(f.Expr) {
				pq.Fields |= coreFields(f.Expr)
			}
			if ids := storage.FieldTraceID | storage.FieldSpanID; req.Exemplars > 0 && pq.Fields&ids != ids {
				// The IDs are for the exemplars alone: a block's counts
				// can be read without them (exemplarPass).
				countsOnly = *pq
				pq.Fields |= ids
			}
		}
		ev, lk := false, false
		if f.Expr != nil {
			ev, lk = iterates(f.Expr)
		}
		exact := exactPushdown(f.Expr)
		one := newSingle()
		// scanQ reads spans with q; a pass that only picks exemplars from
		// spans already counted does not count them as inspected again.
		scanQ := func(q *storage.SpanQuery, inspect bool, spans func(context.Context, *storage.SpanQuery, func(*storage.Span) bool) error, add func(*Trace, int), stop func() bool) error {
			return spans(ctx, q, func(s *storage.Span) bool {
				if inspect {
					res.InspectedSpans++
				}
				tr := one.with(s)
				if f.Expr == nil || exact || matchSpan(f.Expr, tr, 0, ev, lk) {
					add(tr, 0)
				}
				return !stop()
			})
		}
		scan := func(spans func(context.Context, *storage.SpanQuery, func(*storage.Span) bool) error, add func(*Trace, int), stop func() bool) error {
			return scanQ(pq, true, spans, add, stop)
		}
		stop := func() bool { return acc.tooMany != nil }
		parted, ok := sq.(storage.PartedQuerier)
		if ok && req.Cache != nil && cmpAcc == nil && cacheable(m) && !req.Instant {
			// Parts that lie inside the range whole are immutable blocks
			// whose partial series are kept by the block's ID; only what
			// changes, or straddles an end of the range, is read.
			key := "\x00" + q.Pipeline.String() + " | " + m.String() + "\x00" + strconv.FormatInt(step, 10) + "\x00" + strconv.Itoa(req.Exemplars)
			var errs []error
			for _, part := range parted.SpanParts(start, req.End-1) {
				if part.ID == "" || part.MinTime < start || part.MaxTime >= req.End {
					// Read every time, and merged as a cached part is, so
					// that exemplars are picked in part order.
					pa := newMetricsAcc(m, start, step, n, req.MaxSeries, req.Exemplars)
					if err := scan(part.Spans, func(tr *Trace, i int) {
						if tr.Spans[i].StartUnixNano < req.End {
							pa.add(tr, i)
						}
					}, func() bool { return pa.tooMany != nil }); err != nil {
						errs = append(errs, err)
						continue
					}
					if pa.tooMany != nil {
						acc.tooMany = pa.tooMany
						break
					}
					acc.merge(pa)
				} else {
					pa, ok := req.Cache.get(part.ID + key)
					if !ok {
						origin := part.MinTime - part.MinTime%step
						pa = newMetricsAcc(m, origin, step, int((part.MaxTime-origin)/step)+1, req.MaxSeries, req.Exemplars)
						tooMany := func() bool { return pa.tooMany != nil }
						var err error
						if countsOnly.Projection == storage.ProjectCore {
							// Counts from every span without its IDs, then
							// the exemplars from as few spans as fill them.
							// Both read in the same order, so the second
							// picks the spans one pass would have.
							pa.pass = passCounts
							err = scanQ(&countsOnly, true, part.Spans, pa.add, tooMany)
							if err == nil && !tooMany() && pa.exemplarPass() {
								err = scanQ(pq, false, part.Spans, pa.add, func() bool { return pa.exPending == 0 })
							}
							pa.pass = passAll
						} else {
							err = scan(part.Spans, pa.add, tooMany)
						}
						if err != nil {
							errs = append(errs, err)
							continue
						}
						if pa.tooMany != nil {
							acc.tooMany = pa.tooMany
							break
						}
						req.Cache.put(part.ID+key, pa)
					}
					acc.merge(pa)
				}
				if acc.tooMany != nil {
					break
				}
			}
			if err := errors.Join(errs...); err != nil {
				return nil, err
			}
		} else if err := scan(sq.Spans, add, stop); err != nil {
			return nil, err
		}
	} else {
		qs, _ := candidates(q.Pipeline.Stages[0].(stageExpr).expr(), start, req.End-1)
		seen := map[storage.TraceID]bool{}
		var ids []storage.TraceID
		// Every candidate is inspected: one past the bound settles the
		// answer, and the scan stops there rather than collecting every
		// trace ID in range first.
		over := func() bool { return req.MaxInspectedTraces > 0 && len(ids) > req.MaxInspectedTraces }
		for _, pq := range qs {
			if err := sq.Spans(ctx, pq, func(s *storage.Span) bool {
				res.InspectedSpans++
				if !seen[s.TraceID] {
					seen[s.TraceID] = true
					ids = append(ids, s.TraceID)
				}
				return !over()
			}); err != nil {
				return nil, err
			}
			if over() {
				return nil, tooManyCandidates(req.MaxInspectedTraces)
			}
		}
		core := m.Compare == nil && coreTrace(q, append([]Expr{m.Attr}, m.By...)...)
		for _, id := range ids {
			tr, err := fetchTrace(ctx, sq, id, core)
			switch {
			case errors.Is(err, storage.ErrTraceTooLarge):
				res.SkippedTraces++
				continue
			case errors.Is(err, storage.ErrNotFound):
				continue
			case err != nil:
				return nil, err
			}
			res.InspectedTraces++
			spans := make(set, len(tr.Spans))
			for _, ss := range evalPipeline(q.Pipeline, tr, []Spanset{{Spans: allSpans(tr)}}) {
				for _, i := range ss.Spans {
					spans[i] = true
				}
			}
			for _, i := range spans.list() {
				add(tr, i)
			}
			if acc.tooMany != nil {
				break
			}
		}
	}
	if acc.tooMany != nil {
		return nil, acc.tooMany
	}
	if len(acc.parts) > 0 {
		// The exemplars of merged parts: when capExemplars decides by
		// steps alone which it keeps, only those, with the series in
		// the order it sees them.
		keys, limit := acc.order, -1
		if len(q.Second) == 0 && (m.Attr == nil || m.Fn == "histogram_over_time") {
			keys, limit = slices.Clone(acc.order), req.Exemplars
			lk := make(map[string]string, len(keys))
			for _, k := range keys {
				lk[k] = labelsKey(acc.series[k].labels)
			}
			slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(lk[a], lk[b]) })
		}
		acc.pickExemplars(keys, limit)
	}
	for _, k := range acc.order {
		res.Series = append(res.Series, finish(m, acc.series[k], start, step, n, req.Instant)...)
	}
	if cmpAcc != nil {
		res.Series = cmpAcc.series(func(b int) int64 { return (start + int64(b)*step) / 1e6 })
	}
	// Sorting first makes topk/bottomk break ties by labels.
	sortSeries(res.Series)
	res.Series = secondStage(q.Second, res.Series)
	capExemplars(res.Series, req.Exemplars)
	return res, nil
}

// capExemplars leaves at most limit exemplars in all of series together,
// as Tempo's query frontend does: its exemplars parameter bounds a
// query's exemplars, not each series'. The series share the limit
// equally; one with fewer than its share keeps them all and leaves the
// rest to the others, so that every series shown has exemplars. Those a
// series keeps are spread evenly over its range, and are in time order.
func capExemplars(series []Series, limit int) {
	total := 0
	for i := range series {
		total += len(series[i].Exemplars)
	}
	if limit < 0 || total <= limit {
		return
	}
	lens := make([]int, len(series))
	for i := range series {
		lens[i] = len(series[i].Exemplars)
	}
	keep := exemplarShares(lens, limit)
	byTime := func(a, b Exemplar) int { return cmp.Compare(a.TimestampMs, b.TimestampMs) }
	for i := range series {
		ex := series[i].Exemplars
		if keep[i] == len(ex) {
			continue
		}
		// A single query's are in time order already (finish); an
		// arithmetic's are both sides' one after the other.
		if !slices.IsSortedFunc(ex, byTime) {
			slices.SortStableFunc(ex, byTime)
		}
		// The j-th kept is the (j*len/keep)-th: distinct, first to last.
		for j := range keep[i] {
			ex[j] = ex[j*len(ex)/keep[i]]
		}
		clear(ex[keep[i]:])
		series[i].Exemplars = ex[:keep[i]]
		if keep[i] == 0 {
			series[i].Exemplars = nil
		}
	}
}

// exemplarShares says how many exemplars each series keeps when the
// series, holding lens of them, may keep limit together, limit being
// less than their sum. The share q is the largest that fits: series
// with fewer keep all of theirs, the others q each, and the first
// extra of those (in the order given) one more.
func exemplarShares(lens []int, limit int) []int {
	sorted := slices.Sorted(slices.Values(lens))
	left, over := limit, len(sorted)
	for _, n := range sorted {
		if n > left/over {
			break
		}
		left -= n
		over--
	}
	q, extra := left/over, left%over
	keep := make([]int, len(lens))
	for i, n := range lens {
		keep[i] = n
		if n > q {
			keep[i] = q
			if extra > 0 {
				keep[i]++
				extra--
			}
		}
	}
	return keep
}

// sortSeries orders series by their labels, working out each one's key
// once rather than at every comparison.
func sortSeries(series []Series) {
	keys := make([]string, len(series))
	idx := make([]int, len(series))
	for i := range series {
		keys[i], idx[i] = labelsKey(series[i].Labels), i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(keys[a], keys[b]) })
	sorted := make([]Series, len(series))
	for i, j := range idx {
		sorted[i] = series[j]
	}
	copy(series, sorted)
}

// bucketUpper is histogram_over_time's bucket: the next power of two.
func bucketUpper(v float64) float64 {
	if v <= 0 {
		return 0
	}
	return math.Pow(2, math.Ceil(math.Log2(v)))
}

func labelsKey(ls []Label) string {
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(l.Key)
		b.WriteByte(0)
		if l.Value.Type == TypeFloat || l.Value.Type == TypeInt {
			f, _ := l.Value.Float()
			fmt.Fprintf(&b, "%020.6f", f)
		} else {
			b.WriteString(l.Value.Text())
		}
		b.WriteByte(0)
	}
	return b.String()
}

// finish turns an accumulator into series: one, or one per quantile.
func finish(m *MetricsAggregate, acc *seriesAcc, start, step int64, n int, instant bool) []Series {
	ts := func(b int) int64 { return (start + int64(b)*step) / 1e6 }
	value := func(b int) float64 {
		switch m.Fn {
		case "rate":
			return acc.count[b] / (float64(step) / 1e9)
		case "count_over_time", "histogram_over_time":
			return acc.count[b]
		}
		if acc.count[b] == 0 {
			return math.NaN()
		}
		switch m.Fn {
		case "min_over_time":
			return acc.min[b]
		case "max_over_time":
			return acc.max[b]
		case "sum_over_time":
			return acc.sum[b]
		case "avg_over_time":
			return acc.sum[b] / acc.count[b]
		}
		return math.NaN()
	}
	// Exemplars go out in time order, which is step order: a series has
	// at most one per step, found in whatever order the store read them.
	// A table by step orders them in one pass; it is the size of one of
	// the series' own per-step arrays.
	var order []int32
	if len(acc.ex) > 0 {
		bySlot := make([]int32, n)
		for i, b := range acc.exBkt {
			if b >= 0 && b < n { // always: b indexes the series' counts
				bySlot[b] = int32(i) + 1
			}
		}
		order = make([]int32, 0, len(acc.ex))
		for _, x := range bySlot {
			if x > 0 {
				order = append(order, x-1)
			}
		}
	}
	build := func(labels []Label, val func(int) float64) Series {
		s := Series{Labels: labels, Samples: make([]Sample, 0, n)}
		if len(acc.ex) > 0 {
			s.Exemplars = make([]Exemplar, 0, len(acc.ex))
		}
		for b := range n {
			v := val(b)
			if math.IsNaN(v) {
				continue
			}
			s.Samples = append(s.Samples, Sample{TimestampMs: ts(b), Value: v})
		}
		for _, i := range order {
			e := acc.ex[i]
			if m.Attr == nil || m.Fn == "histogram_over_time" {
				e.Value = val(acc.exBkt[i])
			}
			if !math.IsNaN(e.Value) {
				s.Exemplars = append(s.Exemplars, e)
			}
		}
		// Sized once above; empty stays nil, as before.
		if len(s.Samples) == 0 {
			s.Samples = nil
		}
		if len(s.Exemplars) == 0 {
			s.Exemplars = nil
		}
		return s
	}
	if m.Fn != "quantile_over_time" {
		return []Series{build(acc.labels, value)}
	}
	for b := range acc.values {
		slices.Sort(acc.values[b])
	}
	out := make([]Series, 0, len(m.Quantiles))
	for _, qv := range m.Quantiles {
		labels := append(slices.Clone(acc.labels), Label{Key: "p", Value: NewFloat(qv)})
		out = append(out, build(labels, func(b int) float64 {
			if acc.sketches != nil {
				if sk := acc.sketches[b]; sk != nil {
					return sk.quantile(qv)
				}
				return math.NaN()
			}
			return Quantile(acc.values[b], qv)
		}))
	}
	return out
}

// Quantile returns the q-quantile of sorted values by linear interpolation
// between closest ranks, as Prometheus's quantile() does. Tempo
// approximates with power-of-two buckets; Sightline keeps the values and
// answers exactly.
func Quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := q * float64(len(sorted)-1)
	lo := int(math.Floor(rank))
	hi := int(math.Ceil(rank))
	if lo == hi {
		return sorted[lo]
	}
	w := rank - float64(lo)
	return sorted[lo]*(1-w) + sorted[hi]*w
}

// secondStage applies topk/bottomk (per timestamp, as PromQL does) and
// value filters.
func secondStage(stages []SecondStage, series []Series) []Series {
	for _, st := range stages {
		switch st.Fn {
		case "topk", "bottomk":
			keep := map[int]map[int64]bool{}
			times := map[int64][]int{}
			vals := map[int64]map[int]float64{}
			for i, s := range series {
				for _, p := range s.Samples {
					times[p.TimestampMs] = append(times[p.TimestampMs], i)
					if vals[p.TimestampMs] == nil {
						vals[p.TimestampMs] = map[int]float64{}
					}
					vals[p.TimestampMs][i] = p.Value
				}
			}
			for t, idx := range times {
				sort.SliceStable(idx, func(a, b int) bool {
					va, vb := vals[t][idx[a]], vals[t][idx[b]]
					if st.Fn == "topk" {
						return va > vb
					}
					return va < vb
				})
				for _, i := range idx[:min(st.N, len(idx))] {
					if keep[i] == nil {
						keep[i] = map[int64]bool{}
					}
					keep[i][t] = true
				}
			}
			series = filterSamples(series, func(i int, p Sample) bool { return keep[i][p.TimestampMs] })
		default:
			series = filterSamples(series, func(_ int, p Sample) bool {
				o := cmpOrdered(p.Value, st.Value)
				return cmpHolds(st.Fn, o)
			})
		}
	}
	return series
}

func filterSamples(series []Series, keep func(int, Sample) bool) []Series {
	out := series[:0]
	for i, s := range series {
		samples := s.Samples[:0:0]
		for _, p := range s.Samples {
			if keep(i, p) {
				samples = append(samples, p)
			}
		}
		if len(samples) > 0 {
			s.Samples = samples
			out = append(out, s)
		}
	}
	return out
}
