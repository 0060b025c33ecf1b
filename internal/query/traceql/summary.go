package traceql

import (
	"context"
	"slices"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// A spanwise search decides each trace by its spans alone, and the spans
// it scans are the trace's spanset. What a result shows beyond them (root,
// extent, spans per service) is the trace's summary, which a store with
// trace tables gives without handing out the trace's spans
// (storage.TraceSummarizer). hits keeps what the scan saw of each
// candidate trace, so that a summarized trace's result needs nothing
// more; a trace the store does not summarize is assembled as before.
type hits struct {
	fields []Expr
	spss   int
	byID   map[storage.TraceID]*traceHits
	// partial is the trace whose spans the scan was reading when it
	// stopped: it may have matches the scan did not reach.
	partial    storage.TraceID
	hasPartial bool
}

// traceHits is one trace's matches: how many, and the first spss of them
// in the trace's span order (start, span ID), as traceResult keeps them.
type traceHits struct {
	matched int
	spans   []ResultSpan
}

// newHits returns nil unless the search can be answered from summaries:
// the store gives them, the result does not carry whole traces, spansets
// are bounded (so that what is kept per trace is), and every field a
// result span shows is the span's own.
func newHits(sq storage.Querier, req SearchRequest, fields []Expr) *hits {
	if _, ok := sq.(storage.TraceSummarizer); !ok || req.FullTraces || req.SpansPerSpanset <= 0 {
		return nil
	}
	for _, f := range fields {
		if needsTrace(f) {
			return nil
		}
	}
	return &hits{fields: fields, spss: req.SpansPerSpanset, byID: map[storage.TraceID]*traceHits{}}
}

// coreFields are the core fields a summarized result needs of each
// matching span, given the fields it shows.
func (h *hits) coreFields() storage.CoreFields {
	f := storage.FieldTraceID | storage.FieldSpanID | storage.FieldName | storage.FieldStart | storage.FieldDuration |
		storage.FieldService | storage.FieldStatus | storage.FieldKind
	for _, e := range h.fields {
		if mentions(e, IntrinsicParentID) {
			f |= storage.FieldParentSpanID
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

// add records a matching span; tr is the one-span trace holding it.
func (h *hits) add(s *storage.Span, tr *Trace) {
	th := h.byID[s.TraceID]
	if th == nil {
		th = &traceHits{}
		h.byID[s.TraceID] = th
	}
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
	if k >= h.spss {
		return
	}
	th.spans = slices.Insert(th.spans, k, resultSpan(tr, 0, h.fields))
	if len(th.spans) > h.spss {
		th.spans = th.spans[:h.spss]
	}
}

// stopped marks the trace of the span at which the scan stopped.
func (h *hits) stopped(id storage.TraceID) {
	if h != nil {
		h.partial, h.hasPartial = id, true
	}
}

// results answers as many of ids (the chosen traces, most recent first)
// as the store summarizes, and returns them with the IDs still to
// assemble, in their order.
func (h *hits) results(ctx context.Context, sq storage.Querier, ids []storage.TraceID, start, end int64) ([]TraceResult, []storage.TraceID, error) {
	sorted := slices.Clone(ids)
	slices.SortFunc(sorted, func(a, b storage.TraceID) int { return slices.Compare(a[:], b[:]) })
	sorted = slices.Compact(sorted)
	done := map[storage.TraceID]TraceResult{}
	err := sq.(storage.TraceSummarizer).TraceSummaries(ctx, sorted, func(sum *storage.TraceSummary) {
		th := h.byID[sum.TraceID]
		if th == nil || h.hasPartial && sum.TraceID == h.partial {
			return
		}
		// The scan saw the trace's spans that start in [start, end]: all
		// of them only if the whole trace lies inside.
		if start != 0 && sum.Start < start || end != 0 && sum.End > end {
			return
		}
		done[sum.TraceID] = summaryResult(sum, th)
	})
	if err != nil {
		return nil, nil, err
	}
	var out []TraceResult
	var rest []storage.TraceID
	for _, id := range ids {
		if r, ok := done[id]; ok {
			out = append(out, r)
		} else {
			rest = append(rest, id)
		}
	}
	return out, rest, nil
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
