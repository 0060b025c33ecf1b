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
