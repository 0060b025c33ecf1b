// Package storage defines the data the trace and log store holds and the
// interface the query engines read it through. It is shaped after
// Prometheus's storage/interface.go: engines depend on Querier, never on the
// store that implements it, and every filter a query can express is handed
// to the store (SpanQuery, LogQuery) so that it can skip blocks, row groups
// and rows before anything is decoded into a Span.
package storage

import (
	"context"
	"errors"
	"slices"
	"strings"
)

// ErrNotFound is returned by TraceByID when no span of the trace is stored.
var ErrNotFound = errors.New("trace not found")

// ErrCorrupt wraps read errors from damaged storage. The store quarantines a
// block when it sees one and keeps serving the rest; queries that touched the
// block report it in their error list (see Querier).
var ErrCorrupt = errors.New("corrupt data")

// Querier reads a consistent snapshot of the store: data acknowledged before
// the Querier was opened is visible, and blocks it reads are not deleted by
// compaction or retention until Close. A Querier is safe for concurrent use.
type Querier interface {
	// TraceByID returns every span of the trace, merged across the head and
	// all blocks, with duplicates (same span ID, e.g. from client retries)
	// removed. start and end (unix nanoseconds, 0 for unbounded) only narrow
	// which blocks are read. It returns ErrNotFound when nothing matches.
	TraceByID(ctx context.Context, id TraceID, start, end int64) ([]Span, error)

	// Spans calls fn for every span that matches q until fn returns false.
	// The Span passed to fn, and everything it points to, may be retained
	// by fn, except with q.Projection set to ProjectCore: then the Span
	// itself is valid only until fn returns (a store may reuse it for the
	// next), and fn copies what it keeps; its strings and Resource may
	// still be retained. Order is unspecified, except that a store yields recent data
	// first as far as it cheaply can (the embedded store: its heads newest
	// span first, then its blocks from the latest start), so that a search
	// that stops at its limit finds recent traces.
	Spans(ctx context.Context, q *SpanQuery, fn func(*Span) bool) error

	// LogsByTrace returns the log records with this trace ID, and span ID
	// when spanID is not the zero SpanID, oldest first: the limit oldest
	// when limit is positive (OldestLogs), every one otherwise. A
	// positive limit bounds what the call holds beyond the
	// implementation's own memory, however many records the trace has.
	LogsByTrace(ctx context.Context, id TraceID, spanID SpanID, start, end int64, limit int) ([]LogRecord, error)

	// Logs calls fn for every log record that matches q until fn returns false.
	Logs(ctx context.Context, q *LogQuery, fn func(*LogRecord) bool) error

	// Services returns the service.name values of spans in [start, end].
	Services(ctx context.Context, start, end int64) ([]string, error)

	// Operations returns span names seen for service (all when empty).
	Operations(ctx context.Context, service string, start, end int64) ([]Operation, error)

	// TagNames returns the attribute keys seen on spans, by scope.
	TagNames(ctx context.Context, start, end int64) (TagNames, error)

	// TagValues returns up to limit distinct values of one attribute.
	TagValues(ctx context.Context, scope Scope, key string, start, end int64, limit int) ([]Value, error)

	// Close releases the snapshot. It is idempotent.
	Close() error
}

// MaxListed bounds each list Services, Operations and TagNames return
// (each scope's, in TagNames): past it a Querier stops adding names, so
// that a listing of names with IDs in them is not as large as the data
// itself. Which names are kept then is unspecified. A variable for tests.
var MaxListed = 100_000

// SpanPart is one part of a Querier's spans. A part with an ID never
// changes while it exists, and no other part ever has its ID, so that a
// reader may keep what it derives from the part's spans (a metrics query's
// partial series) under that ID and reuse it instead of reading the part
// again. The part without an ID is the data still changing (the heads).
// MinTime and MaxTime bound the starts of its spans (unix ns).
type SpanPart struct {
	ID               string
	MinTime, MaxTime int64
	// Spans is Querier.Spans over this part alone.
	Spans func(ctx context.Context, q *SpanQuery, fn func(*Span) bool) error
}

// PartedQuerier is a Querier that can hand out its spans part by part.
// SpanParts returns the parts that may hold spans starting in [start,
// end] (0 = unbounded); their spans together are what Spans yields, in the
// same order.
type PartedQuerier interface {
	Querier
	SpanParts(start, end int64) []SpanPart
}

// Queryable opens Queriers.
type Queryable interface {
	Querier(ctx context.Context) (Querier, error)
}

// Operation is a span name with its kind, as Jaeger's operations API lists it.
type Operation struct {
	Name string
	Kind SpanKind
}

// OperationSet collects distinct operations.
type OperationSet map[Operation]struct{}

// Sorted returns the operations by name, then kind: the order every
// Querier's Operations answers in.
func (s OperationSet) Sorted() []Operation {
	out := make([]Operation, 0, len(s))
	for op := range s {
		out = append(out, op)
	}
	slices.SortFunc(out, func(a, b Operation) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return int(a.Kind) - int(b.Kind)
	})
	return out
}

// TagNames lists attribute keys by where they were seen.
type TagNames struct {
	Resource []string
	Span     []string
}
