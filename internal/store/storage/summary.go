package storage

import "context"

// TraceSummary is what a search result says about a whole trace: its
// extent, its root and its spans per service. It equals what assembling
// the trace's spans (deduplicated as TraceByID does) would give.
type TraceSummary struct {
	TraceID TraceID
	// Start is the earliest span start, End the latest span end (unix ns).
	Start, End int64
	// HasRoot is set when the trace has a span without a parent; Root*
	// then describe the first of them in (start, span ID) order.
	HasRoot               bool
	RootService, RootName string
	Spans, Errors         int
	Services              []ServiceSpans // by service name
}

// ServiceSpans counts a trace's spans, and those with status error, of
// one service.
type ServiceSpans struct {
	Service       string
	Spans, Errors int
}

// TraceSummarizer is a Querier that can summarize traces without handing
// out their spans. A search that has found its matches this way need not
// assemble each trace to describe it.
type TraceSummarizer interface {
	// TraceSummaries calls fn with the summary of each of ids (sorted
	// bytewise, distinct) that it can give exactly from what it stores
	// about whole traces, in no particular order. It is allowed to skip
	// any ID (a trace whose spans it holds in more than one place, or in
	// data without summaries): the caller assembles those itself. The
	// summary passed to fn is valid only until fn returns.
	TraceSummaries(ctx context.Context, ids []TraceID, fn func(*TraceSummary)) error
}

// TraceFilter selects traces by what a store keeps about whole traces.
// Zero fields select everything.
type TraceFilter struct {
	// MinDuration selects traces lasting at least this long (ns).
	MinDuration int64
	// Errors selects traces with at least one span with status error.
	Errors bool
	// End excludes traces that start after it (unix ns).
	End int64
	// Start excludes what holds no span starting at or after it (unix
	// ns); a store may apply it coarsely (by block), since what it gives
	// are candidates.
	Start int64
}

// TraceFinder is a Querier that can find traces by trace-level figures
// without scanning their spans. A search whose filter requires a long
// trace asks it for candidates before scanning spans for them.
type TraceFinder interface {
	// FindTraces calls fn with traces that f selects, from the most
	// recent data first, until fn returns false. It may give an ID twice
	// and may miss traces (those in data without trace-level figures, or
	// whose parts in several places each fall short of MinDuration):
	// callers take its IDs as likely candidates to check, never as the
	// whole answer. A querier that reads part of a store (one tenant's
	// spans) may pass on IDs of traces it cannot read: checking a
	// candidate reads through it, and finds nothing of those.
	FindTraces(ctx context.Context, f *TraceFilter, fn func(TraceID) bool) error
}
