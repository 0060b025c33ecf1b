package storage

import (
	"cmp"
	"context"
	"errors"
	"slices"
)

// NewMergeQuerier reads primary and others as one store, as Prometheus's
// storage.NewMergeQuerier does for series: a querier of a shared bucket
// reads its blocks (primary) and what each ingester holds that the blocks
// do not (others). The parts must not overlap: a span stored in two of
// them is yielded twice by Spans, though TraceByID removes such
// duplicates as it does for retries. An error from one part is joined
// with the others' results, as a damaged block's is, so that one
// unreachable ingester makes answers partial, not absent. Close closes
// them all.
func NewMergeQuerier(primary Querier, others ...Querier) Querier {
	return &mergeQuerier{all: append([]Querier{primary}, others...)}
}

type mergeQuerier struct {
	all []Querier
}

// recentFirst orders the parts as Spans promises: the others (ingesters'
// heads) before the primary's blocks.
func (m *mergeQuerier) recentFirst() []Querier {
	return append(slices.Clone(m.all[1:]), m.all[0])
}

func (m *mergeQuerier) TraceByID(ctx context.Context, id TraceID, start, end int64) ([]Span, error) {
	var (
		spans []Span
		errs  []error
	)
	stats := StatsFrom(ctx)
	for _, q := range m.all {
		s, err := q.TraceByID(ctx, id, start, end)
		if err != nil && !errors.Is(err, ErrNotFound) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if errors.Is(err, ErrTraceTooLarge) {
				return nil, err // not a part's damage: the answer is refused
			}
			errs = append(errs, err)
		}
		spans = append(spans, s...)
		if err := stats.CheckTraceSpans(len(spans)); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(spans, func(a, b Span) int {
		return cmp.Or(cmp.Compare(a.StartUnixNano, b.StartUnixNano), slices.Compare(a.SpanID[:], b.SpanID[:]))
	})
	spans = slices.CompactFunc(spans, func(a, b Span) bool {
		return a.SpanID == b.SpanID && a.StartUnixNano == b.StartUnixNano
	})
	if len(spans) == 0 {
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return nil, ErrNotFound
	}
	return spans, errors.Join(errs...)
}

// FindTraces asks each part that keeps trace-level figures (a shared
// bucket's blocks; not ingesters' heads), in the order Spans reads them.
func (m *mergeQuerier) FindTraces(ctx context.Context, f *TraceFilter, fn func(TraceID) bool) error {
	var errs []error
	for _, p := range m.recentFirst() {
		tf, ok := p.(TraceFinder)
		if !ok {
			continue
		}
		stopped := false
		err := tf.FindTraces(ctx, f, func(id TraceID) bool {
			if !fn(id) {
				stopped = true
			}
			return !stopped
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			errs = append(errs, err)
		}
		if stopped {
			break
		}
	}
	return errors.Join(errs...)
}

var _ TraceFinder = (*mergeQuerier)(nil)

func (m *mergeQuerier) Spans(ctx context.Context, q *SpanQuery, fn func(*Span) bool) error {
	return scan(ctx, m.recentFirst(), func(p Querier, f func(*Span) bool) error { return p.Spans(ctx, q, f) }, fn)
}

// scan reads each part in turn until fn stops it. One part's error is
// joined with the others' results; cancellation and the read limit end
// the scan.
func scan[T any](ctx context.Context, parts []Querier, read func(Querier, func(*T) bool) error, fn func(*T) bool) error {
	var errs []error
	for _, p := range parts {
		stopped := false
		err := read(p, func(v *T) bool {
			if !fn(v) {
				stopped = true
				return false
			}
			return true
		})
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrBytesLimit) {
				return err
			}
			errs = append(errs, err)
		}
		if stopped {
			break
		}
	}
	return errors.Join(errs...)
}

// SpanParts hands out the primary's parts, if it has any, after one
// changing part per other querier: what an ingester holds changes with
// every append.
func (m *mergeQuerier) SpanParts(start, end int64) []SpanPart {
	var parts []SpanPart
	for _, q := range m.all[1:] {
		parts = append(parts, SpanPart{Spans: q.Spans})
	}
	if pq, ok := m.all[0].(PartedQuerier); ok {
		return append(parts, pq.SpanParts(start, end)...)
	}
	return append(parts, SpanPart{Spans: m.all[0].Spans})
}

func (m *mergeQuerier) LogsByTrace(ctx context.Context, id TraceID, spanID SpanID, start, end int64, limit int) ([]LogRecord, error) {
	var errs []error
	out := OldestLogs{Limit: limit}
	for _, q := range m.all {
		recs, err := q.LogsByTrace(ctx, id, spanID, start, end, limit)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			errs = append(errs, err)
		}
		for i := range recs {
			out.Add(&recs[i])
		}
	}
	return out.Result(), errors.Join(errs...)
}

func (m *mergeQuerier) Logs(ctx context.Context, q *LogQuery, fn func(*LogRecord) bool) error {
	return scan(ctx, m.recentFirst(), func(p Querier, f func(*LogRecord) bool) error { return p.Logs(ctx, q, f) }, fn)
}

// union collects each part's list into one sorted, distinct list.
func union[T any](ctx context.Context, m *mergeQuerier, get func(Querier) ([]T, error), compare func(a, b T) int) ([]T, error) {
	var (
		out  []T
		errs []error
	)
	for _, q := range m.all {
		vs, err := get(q)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			errs = append(errs, err)
		}
		out = append(out, vs...)
	}
	slices.SortFunc(out, compare)
	out = slices.CompactFunc(out, func(a, b T) bool { return compare(a, b) == 0 })
	return out[:min(len(out), MaxListed)], errors.Join(errs...)
}

func (m *mergeQuerier) Services(ctx context.Context, start, end int64) ([]string, error) {
	return union(ctx, m, func(q Querier) ([]string, error) { return q.Services(ctx, start, end) }, cmp.Compare[string])
}

func (m *mergeQuerier) Operations(ctx context.Context, service string, start, end int64) ([]Operation, error) {
	return union(ctx, m, func(q Querier) ([]Operation, error) { return q.Operations(ctx, service, start, end) },
		func(a, b Operation) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Kind, b.Kind)) })
}

func (m *mergeQuerier) TagNames(ctx context.Context, start, end int64) (TagNames, error) {
	var (
		out  TagNames
		errs []error
	)
	for _, q := range m.all {
		n, err := q.TagNames(ctx, start, end)
		if err != nil {
			if ctx.Err() != nil {
				return TagNames{}, ctx.Err()
			}
			errs = append(errs, err)
		}
		out.Span = append(out.Span, n.Span...)
		out.Resource = append(out.Resource, n.Resource...)
	}
	for _, l := range []*[]string{&out.Span, &out.Resource} {
		slices.Sort(*l)
		*l = slices.Compact(*l)
		*l = (*l)[:min(len(*l), MaxListed)]
	}
	return out, errors.Join(errs...)
}

func (m *mergeQuerier) TagValues(ctx context.Context, scope Scope, key string, start, end int64, limit int) ([]Value, error) {
	vs, err := union(ctx, m, func(q Querier) ([]Value, error) { return q.TagValues(ctx, scope, key, start, end, limit) },
		func(a, b Value) int {
			return cmp.Or(cmp.Compare(a.AsString(), b.AsString()), cmp.Compare(a.Type, b.Type))
		})
	if limit > 0 && len(vs) > limit {
		vs = vs[:limit]
	}
	return vs, err
}

func (m *mergeQuerier) Close() error {
	var errs []error
	for _, q := range m.all {
		errs = append(errs, q.Close())
	}
	return errors.Join(errs...)
}

// FailingQuerier answers every call with err: a part of a merged view that
// could not be opened (an unreachable ingester), so that the merge reports
// it beside the other parts' results.
func FailingQuerier(err error) Querier { return failing{err} }

type failing struct{ err error }

func (f failing) TraceByID(context.Context, TraceID, int64, int64) ([]Span, error) {
	return nil, f.err
}
func (f failing) Spans(context.Context, *SpanQuery, func(*Span) bool) error { return f.err }
func (f failing) LogsByTrace(context.Context, TraceID, SpanID, int64, int64, int) ([]LogRecord, error) {
	return nil, f.err
}
func (f failing) Logs(context.Context, *LogQuery, func(*LogRecord) bool) error { return f.err }
func (f failing) Services(context.Context, int64, int64) ([]string, error)     { return nil, f.err }
func (f failing) Operations(context.Context, string, int64, int64) ([]Operation, error) {
	return nil, f.err
}
func (f failing) TagNames(context.Context, int64, int64) (TagNames, error) { return TagNames{}, f.err }
func (f failing) TagValues(context.Context, Scope, string, int64, int64, int) ([]Value, error) {
	return nil, f.err
}
func (f failing) Close() error { return nil }
