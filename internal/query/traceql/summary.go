package traceql

import (
	"context"
	"slices"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// A spanwise search decides each trace by its spans alone: a trace's
// spanset is its spans that pass the filter. What a result shows beyond
// them (root, extent, spans per service) is the trace's summary, which a
// store with trace tables gives without handing out the trace's spans
// (storage.TraceSummarizer). So the traces the store summarizes need
// only their matching spans, which a search for many traces keeps while
// it scans (scanHits), and are not assembled.

// summarizable reports whether a spanwise search can answer from
// summaries: the store gives them, the result does not carry whole
// traces, spansets are bounded (so that what is kept per trace is), and
// every field a result span shows is the span's own.
func summarizable(sq storage.Querier, req SearchRequest, fields []Expr) bool {
	if _, ok := sq.(storage.TraceSummarizer); !ok || req.FullTraces || req.SpansPerSpanset <= 0 {
		return false
	}
	for _, f := range fields {
		if needsTrace(f) {
			return false
		}
	}
	return true
}

// scanHits keeps, during a spanwise search's scan, each candidate trace's
// matches as a result shows them, so that a summarized trace needs no
// second read of its spans. That pays when most candidates become
// results: a search for many traces (scanHitsLimit), whose scan reads
// the matches' result fields once instead of reading the chosen traces'
// pages again. For a few traces out of an oversampled scan it would read
// those fields for ten times the traces it returns; and reading a few
// traces' matches after the scan costs what assembling them does (on
// the workload's traces of ~15 spans, a limit-20 search took 20-50%
// longer that way, with the trace table lookups), so a search for fewer
// traces assembles them as before.
//
// What a scan saw of a trace is all of its matches unless the scan
// stopped inside the trace, the trace reaches outside the search's time
// range (the scan sees only spans starting inside it), or it starts
// below the search's floor (the store may have skipped spans that old);
// such traces are read again.
type scanHits struct {
	byID       map[storage.TraceID]*traceHits
	start, end int64
	partial    storage.TraceID
	stopped    bool
	// floor is the search's: the store may have skipped spans below it.
	floor *storage.StartFloor
}

// scanHitsLimit is the smallest limit for which a search keeps hits
// while it scans, and scanHitsMaxSpss the most spans per spanset it keeps
// them for (Tempo's API asks for 3): what it holds is at most
// scanHitsMaxTraces traces of that many result spans each, whatever the
// limit or a most_recent scan of everything. A trace past that bound is
// not kept, and has its matches read after the scan.
const (
	scanHitsLimit   = 100
	scanHitsMaxSpss = 20
)

var scanHitsMaxTraces = 10_000 // a variable for tests

func newScanHits(start, end int64) *scanHits {
	return &scanHits{byID: map[storage.TraceID]*traceHits{}, start: start, end: end}
}

// add records a match; tr is the one-span trace holding it. Nil-safe.
func (h *scanHits) add(tr *Trace, fields []Expr, spss int) {
	if h == nil {
		return
	}
	id := tr.Spans[0].TraceID
	th := h.byID[id]
	if th == nil {
		if len(h.byID) >= scanHitsMaxTraces {
			return
		}
		th = &traceHits{}
		h.byID[id] = th
	}
	th.add(tr, fields, spss)
}

// more passes the scan's decision on, noting the trace it stops inside.
// Nil-safe.
func (h *scanHits) more(s *storage.Span, more bool) bool {
	if h != nil && !more {
		h.partial, h.stopped = s.TraceID, true
	}
	return more
}

// complete returns the trace's hits if the scan saw all its matches.
func (h *scanHits) complete(sum *storage.TraceSummary) *traceHits {
	if h == nil || h.stopped && sum.TraceID == h.partial ||
		h.start != 0 && sum.Start < h.start || h.end != 0 && sum.End > h.end ||
		sum.Start < h.floor.Load() {
		return nil
	}
	return h.byID[sum.TraceID]
}

// traceHits is one trace's matches: how many, and the first spss of them
// in the trace's span order (start, span ID), as traceResult keeps them.
type traceHits struct {
	matched int
	spans   []ResultSpan
}

// add records a matching span; tr is the one-span trace holding it.
func (th *traceHits) add(tr *Trace, fields []Expr, spss int) {
	s := tr.Spans[0]
	th.matched++
	before := func(r *ResultSpan) bool {
		if r.Start != s.StartUnixNano {
			return s.StartUnixNano < r.Start
		}
		return slices.Compare(s.SpanID[:], r.SpanID[:]) < 0
	}
	k := len(th.spans)
	for k > 0 && before(&th.spans[k-1]) {
		k--
	}
	if k >= spss {
		return
	}
	th.spans = slices.Insert(th.spans, k, resultSpan(tr, 0, fields))
	if len(th.spans) > spss {
		th.spans = th.spans[:spss]
	}
}

// summarizedResults answers those of ids (the chosen traces, most recent
// first) that the store summarizes, and returns them with the IDs still
// to assemble, in their order. Their matching spans are those the scan
// kept (pre, which may be nil) where it saw them all, and otherwise come
// from one store query over the summarized traces with the filter pushed
// down and no time bounds: a result's spanset is all of its trace's
// matches, as an assembled trace's is.
//
// A trace of more spans than the query's bound (Stats.MaxTraceSpans) is
// left to be assembled, which leaves it out and counts it: answered from
// its summary it would cost nothing, but a search would then return it
// or not by its limit (summaries serve limits of scanHitsLimit and more),
// and a lookup of it by ID is refused.
func summarizedResults(ctx context.Context, sq storage.Querier, f *SpansetFilter, fields []Expr, spss int, ids []storage.TraceID, pre *scanHits, inspected *int64) ([]TraceResult, []storage.TraceID, error) {
	sorted := slices.Clone(ids)
	slices.SortFunc(sorted, func(a, b storage.TraceID) int { return slices.Compare(a[:], b[:]) })
	sorted = slices.Compact(sorted)
	sums := map[storage.TraceID]*storage.TraceSummary{}
	hits := make(map[storage.TraceID]*traceHits, len(sorted))
	stats := storage.StatsFrom(ctx)
	err := sq.(storage.TraceSummarizer).TraceSummaries(ctx, sorted, func(sum *storage.TraceSummary) {
		if stats.CheckTraceSpans(sum.Spans) != nil {
			return
		}
		c := *sum
		c.Services = slices.Clone(sum.Services)
		sums[sum.TraceID] = &c
		if th := pre.complete(sum); th != nil {
			hits[sum.TraceID] = th
		}
	})
	if err != nil || len(sums) == 0 {
		return nil, ids, err
	}
	// The summarized traces whose matches are still to read.
	sorted = slices.DeleteFunc(sorted, func(id storage.TraceID) bool { return sums[id] == nil || hits[id] != nil })
	if len(sorted) > 0 {
		if err := readHits(ctx, sq, f, fields, spss, sorted, hits, inspected); err != nil {
			return nil, nil, err
		}
	}
	var out []TraceResult
	var rest []storage.TraceID
	for _, id := range ids {
		if sum, th := sums[id], hits[id]; sum != nil && th != nil {
			out = append(out, summaryResult(sum, th))
		} else {
			rest = append(rest, id)
		}
	}
	return out, rest, nil
}

// readHits reads the matches of traces ids (sorted) into hits.
func readHits(ctx context.Context, sq storage.Querier, f *SpansetFilter, fields []Expr, spss int, ids []storage.TraceID, hits map[storage.TraceID]*traceHits, inspected *int64) error {
	pq, _ := pushdown(f.Expr, 0, 0)
	pq.TraceIDs = ids
	exact := exactPushdown(f.Expr)
	if coreOnly(f.Expr) && coreOnly(fields...) {
		pq.Projection = storage.ProjectCore
		if exact {
			pq.Fields = resultFields(fields)
		}
	}
	ev, lk := false, false
	if f.Expr != nil {
		ev, lk = iterates(f.Expr)
	}
	one := newSingle()
	return sq.Spans(ctx, pq, func(s *storage.Span) bool {
		*inspected++
		tr := one.with(s)
		if f.Expr != nil && !exact && !matchSpan(f.Expr, tr, 0, ev, lk) {
			return true
		}
		th := hits[s.TraceID]
		if th == nil {
			th = &traceHits{}
			hits[s.TraceID] = th
		}
		th.add(tr, fields, spss)
		return true
	})
}

// resultFields are the core fields a result span needs, given the fields
// it shows: its own (ID, name, start, duration, service) and the
// intrinsics those fields name. Kind and status are read only when named:
// a search for many traces reads them for a few rows of every page.
func resultFields(fields []Expr) storage.CoreFields {
	f := storage.FieldTraceID | storage.FieldSpanID | storage.FieldName | storage.FieldStart | storage.FieldDuration |
		storage.FieldService
	for _, e := range fields {
		if mentions(e, IntrinsicParentID) {
			f |= storage.FieldParentSpanID
		}
		if mentions(e, IntrinsicKind) {
			f |= storage.FieldKind
		}
		if mentions(e, IntrinsicStatus) {
			f |= storage.FieldStatus
		}
	}
	return f
}

func mentions(e Expr, in Intrinsic) bool {
	switch x := e.(type) {
	case *IntrinsicRef:
		return x.Intrinsic == in
	case *BinaryExpr:
		return mentions(x.LHS, in) || mentions(x.RHS, in)
	case *UnaryExpr:
		return mentions(x.Expr, in)
	}
	return false
}

// summaryResult is traceResult for a trace known by its summary and its
// matching spans.
func summaryResult(sum *storage.TraceSummary, th *traceHits) TraceResult {
	r := TraceResult{
		TraceID:      sum.TraceID,
		RootService:  NoRoot,
		RootName:     NoRoot,
		Start:        sum.Start,
		Duration:     sum.End - sum.Start,
		ServiceStats: make(map[string]ServiceStats, len(sum.Services)),
		Spansets:     []ResultSpanset{{Spans: th.spans, Matched: th.matched}},
	}
	if sum.HasRoot {
		r.RootService, r.RootName = sum.RootService, sum.RootName
	}
	for _, s := range sum.Services {
		r.ServiceStats[s.Service] = ServiceStats{SpanCount: s.Spans, ErrorCount: s.Errors}
	}
	return r
}

// resultSpan is span i of tr as a result shows it: its own fields and
// the values of fields.
func resultSpan(tr *Trace, i int, fields []Expr) ResultSpan {
	s := tr.Spans[i]
	span := ResultSpan{SpanID: s.SpanID, Name: s.Name, Start: s.StartUnixNano, Duration: s.Duration()}
	if svc := s.Resource.ServiceName(); svc != "" {
		span.Attrs = append(span.Attrs, Label{Key: "service.name", Value: NewString(svc)})
	}
	c := evalCtx{tr: tr, span: i}
	for _, f := range fields {
		if a, ok := f.(*Attribute); ok && a.Scope == ScopeResource && a.Name == "service.name" {
			continue
		}
		if v := eval(f, &c); v.Type != TypeNil {
			span.Attrs = append(span.Attrs, Label{Key: FieldKey(f), Value: v})
		}
	}
	return span
}

// Trace-level conditions prune candidates by their summaries. A filter
// conjunct that reads nothing but trace:duration, trace:rootName and
// trace:rootService (and literals) holds for every span of a trace or
// for none, so a trace whose summary fails it has no span that passes
// the filter; where the filter must match for the query to (see
// requiredTraceConds), the trace cannot match and is not assembled. A
// summary describes the whole trace, so this is exact.

// requiredTraceConds returns the trace-level conjuncts of the filters
// that must match something for e to match: a filter, both sides of &&
// and of the structural operators, the right side of the negated ones,
// and the first stage of a nested pipeline.
func requiredTraceConds(e SpansetExpr) []Expr {
	switch x := e.(type) {
	case *SpansetFilter:
		var out []Expr
		if x.Expr != nil {
			for _, c := range conjuncts(x.Expr, nil) {
				if traceLevelOnly(c) {
					out = append(out, c)
				}
			}
		}
		return out
	case *SpansetOp:
		switch x.Op {
		case "&&", ">", ">>", "<", "<<", "~":
			return append(requiredTraceConds(x.LHS), requiredTraceConds(x.RHS)...)
		case "!>", "!>>", "!<", "!<<", "!~":
			return requiredTraceConds(x.RHS)
		}
	case *Pipeline:
		if st, ok := x.Stages[0].(*SpansetStage); ok {
			return requiredTraceConds(st.Expr)
		}
	}
	return nil
}

// traceLevelOnly reports whether e reads only the trace-level intrinsics
// a summary holds, and reads at least one.
func traceLevelOnly(e Expr) bool {
	some := false
	var walk func(Expr) bool
	walk = func(e Expr) bool {
		switch x := e.(type) {
		case *Literal:
			return true
		case *IntrinsicRef:
			switch x.Intrinsic {
			case IntrinsicTraceDuration, IntrinsicRootName, IntrinsicRootService:
				some = true
				return true
			}
			return false
		case *BinaryExpr:
			return walk(x.LHS) && walk(x.RHS)
		case *UnaryExpr:
			return walk(x.Expr)
		}
		return false
	}
	return walk(e) && some
}

// summaryTrace is a trace with only what a summary says: its extent and
// its root span's name and service, enough to evaluate trace-level
// conditions on.
func summaryTrace(sum *storage.TraceSummary) *Trace {
	root := &storage.Span{TraceID: sum.TraceID, Name: sum.RootName, StartUnixNano: sum.Start, EndUnixNano: sum.End, Resource: &storage.Resource{}}
	if sum.RootService != "" {
		root.Resource.Attrs = storage.Attrs{{Key: "service.name", Value: storage.Str(sum.RootService)}}
	}
	tr := &Trace{Spans: []*storage.Span{root}, parent: []int{-1}, left: []int{0}, right: []int{0}, children: []int{0}, Root: -1, Start: sum.Start, End: sum.End}
	if sum.HasRoot {
		tr.Root = 0
	}
	return tr
}

// pruneByTraceConds drops from ids the traces whose summaries fail one of
// conds; traces the store does not summarize stay.
func pruneByTraceConds(ctx context.Context, sq storage.Querier, conds []Expr, ids []storage.TraceID) ([]storage.TraceID, error) {
	ts, ok := sq.(storage.TraceSummarizer)
	if !ok || len(conds) == 0 || len(ids) == 0 {
		return ids, nil
	}
	sorted := slices.Clone(ids)
	slices.SortFunc(sorted, func(a, b storage.TraceID) int { return slices.Compare(a[:], b[:]) })
	sorted = slices.Compact(sorted)
	fail := map[storage.TraceID]bool{}
	err := ts.TraceSummaries(ctx, sorted, func(sum *storage.TraceSummary) {
		c := evalCtx{tr: summaryTrace(sum)}
		for _, cond := range conds {
			if !eval(cond, &c).IsTrue() {
				fail[sum.TraceID] = true
				return
			}
		}
	})
	if err != nil || len(fail) == 0 {
		return ids, err
	}
	return slices.DeleteFunc(slices.Clone(ids), func(id storage.TraceID) bool { return fail[id] }), nil
}

// tableCandidates finds candidates for a search whose filter requires
// trace:duration above a bound, from the traces the store knows to last
// that long (storage.TraceFinder): up to want traces not yet in tried,
// adding them to it. It keeps those that also have a span the
// candidate queries qs select, the candidates the span scan would have
// found among them, and marks them in seen. more reports whether the
// store may hold further such traces. It finds none when the filter has
// no such bound or the store keeps no trace-level figures.
//
// Every trace it returns is a candidate the scan would give as well, so
// evaluating these first changes which matching traces fill the limit,
// never whether a returned trace matches. What it misses (traces in
// heads, or split between blocks) the scan finds afterwards.
func tableCandidates(ctx context.Context, sq storage.Querier, conds []Expr, qs []*storage.SpanQuery, start, end int64, want int, tried, seen map[storage.TraceID]bool, inspected *int64) (fresh []storage.TraceID, more bool, err error) {
	tf, ok := sq.(storage.TraceFinder)
	if !ok || len(qs) == 0 {
		return nil, false, nil
	}
	f := storage.TraceFilter{MinDuration: minTraceDuration(conds), Start: start, End: end, Errors: true}
	if f.MinDuration <= 0 {
		return nil, false, nil
	}
	for _, pq := range qs {
		// An error span is required only if every candidate query asks
		// for one.
		f.Errors = f.Errors && pq.HasStatus && pq.Status == storage.StatusError
	}
	var ids []storage.TraceID
	err = tf.FindTraces(ctx, &f, func(id storage.TraceID) bool {
		if !tried[id] {
			tried[id] = true
			ids = append(ids, id)
		}
		more = len(ids) >= want
		return !more
	})
	if err != nil || len(ids) == 0 {
		return nil, false, err
	}
	slices.SortFunc(ids, func(a, b storage.TraceID) int { return slices.Compare(a[:], b[:]) })
	for _, pq := range qs {
		q := *pq
		q.TraceIDs = ids
		err := sq.Spans(ctx, &q, func(s *storage.Span) bool {
			*inspected++
			if !seen[s.TraceID] {
				seen[s.TraceID] = true
				fresh = append(fresh, s.TraceID)
			}
			return true
		})
		if err != nil {
			return nil, false, err
		}
	}
	return fresh, more, nil
}

// minTraceDuration returns the lower bound that conds (all required)
// put on trace:duration: the largest of their trace:duration > d and
// >= d comparisons with a literal, 0 when none.
func minTraceDuration(conds []Expr) int64 {
	var lo int64
	for _, c := range conds {
		b, ok := c.(*BinaryExpr)
		if !ok {
			continue
		}
		field, l, op, ok := comparison(b)
		ref, isRef := field.(*IntrinsicRef)
		if !ok || !isRef || ref.Intrinsic != IntrinsicTraceDuration || l.Value.Type != TypeDuration && l.Value.Type != TypeInt {
			continue
		}
		switch op {
		case ">":
			if l.Value.N < 1<<63-1 {
				lo = max(lo, l.Value.N+1)
			}
		case ">=", "=":
			lo = max(lo, l.Value.N)
		}
	}
	return lo
}
