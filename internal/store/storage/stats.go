package storage

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
)

// ErrBytesLimit is returned when a query reads more than its Stats allow.
var ErrBytesLimit = errors.New("query read limit exceeded")

// ErrTraceTooLarge is returned when a trace looked up by ID has more spans
// than its query's Stats allow (MaxTraceSpans).
var ErrTraceTooLarge = errors.New("trace too large")

// Stats counts what a query read from storage. Attach one to the context
// with WithStats; the store adds the compressed size of every column chunk
// it scans and of every row group it decodes rows from. A Stats is safe for
// concurrent use.
type Stats struct {
	bytes  atomic.Int64
	cached atomic.Int64
	// MaxBytes, when positive, makes reads fail with ErrBytesLimit once
	// the total passes it.
	MaxBytes int64
	// MaxTraceSpans, when positive, makes a lookup of a trace by ID fail
	// with ErrTraceTooLarge once it would hold more spans: the store
	// checks before it decodes a row group's share of the trace. Query
	// engines that assemble candidate traces leave out one past it.
	MaxTraceSpans int
}

// CheckTraceSpans returns ErrTraceTooLarge when a trace of n spans passes
// MaxTraceSpans. It is a no-op on nil.
func (s *Stats) CheckTraceSpans(n int) error {
	if s == nil || s.MaxTraceSpans <= 0 || n <= s.MaxTraceSpans {
		return nil
	}
	return fmt.Errorf("%w: more than %d spans", ErrTraceTooLarge, s.MaxTraceSpans)
}

type statsKey struct{}

// WithStats returns a context whose queries account to s.
func WithStats(ctx context.Context, s *Stats) context.Context {
	return context.WithValue(ctx, statsKey{}, s)
}

// StatsFrom returns the context's Stats, or nil.
func StatsFrom(ctx context.Context) *Stats {
	s, _ := ctx.Value(statsKey{}).(*Stats)
	return s
}

// KeepCached reports whether the query may keep n more bytes of what it
// decoded in a cache shared with other queries, each query keeping at
// most limit: a query that reads more than the cache holds would only
// copy its pages in to push them out again. It is false on nil.
func (s *Stats) KeepCached(n, limit int64) bool {
	return s != nil && s.cached.Add(n) <= limit
}

// BytesRead returns the bytes accounted so far.
func (s *Stats) BytesRead() int64 {
	if s == nil {
		return 0
	}
	return s.bytes.Load()
}

// AddBytes accounts n bytes and enforces MaxBytes. It is a no-op on nil.
func (s *Stats) AddBytes(n int64) error {
	if s == nil {
		return nil
	}
	if t := s.bytes.Add(n); s.MaxBytes > 0 && t > s.MaxBytes {
		return fmt.Errorf("%w: read %d bytes, the limit is %d", ErrBytesLimit, t, s.MaxBytes)
	}
	return nil
}
