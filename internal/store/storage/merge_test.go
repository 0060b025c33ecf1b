package storage

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// finderPart is a merge part whose only capability is FindTraces.
type finderPart struct {
	Querier
	ids []TraceID
	err error
}

func (p finderPart) FindTraces(_ context.Context, _ *TraceFilter, fn func(TraceID) bool) error {
	for _, id := range p.ids {
		if !fn(id) {
			return nil
		}
	}
	return p.err
}

// A merge of a shared bucket's blocks and ingesters finds trace-level
// candidates in every part that keeps them, in the order Spans reads the
// parts (ingesters, then the blocks), skips the parts that keep none,
// stops when asked and joins a part's error with the others' IDs.
func TestMergeQuerierFindTraces(t *testing.T) {
	ctx := context.Background()
	primary := finderPart{ids: []TraceID{{1}, {2}}}
	ingester := finderPart{ids: []TraceID{{3}}}
	var plain struct{ Querier } // an ingester without trace tables
	m := NewMergeQuerier(primary, &plain, ingester)
	tf, ok := m.(TraceFinder)
	require.True(t, ok)

	var got []TraceID
	require.NoError(t, tf.FindTraces(ctx, &TraceFilter{}, func(id TraceID) bool { got = append(got, id); return true }))
	require.Equal(t, []TraceID{{3}, {1}, {2}}, got)

	got = nil
	require.NoError(t, tf.FindTraces(ctx, &TraceFilter{}, func(id TraceID) bool { got = append(got, id); return len(got) < 2 }))
	require.Equal(t, []TraceID{{3}, {1}}, got)

	boom := errors.New("ingester unreachable")
	m = NewMergeQuerier(primary, finderPart{err: boom})
	got = nil
	err := m.(TraceFinder).FindTraces(ctx, &TraceFilter{}, func(id TraceID) bool { got = append(got, id); return true })
	require.ErrorIs(t, err, boom)
	require.Equal(t, []TraceID{{1}, {2}}, got, "the other parts still answer")
}

// tracePart is a merge part that holds spans of one trace, or fails.
type tracePart struct {
	Querier
	spans []Span
	err   error
}

func (p tracePart) TraceByID(context.Context, TraceID, int64, int64) ([]Span, error) {
	return p.spans, p.err
}

// A trace assembled from several parts is held to the query's span bound
// over all of them, and a part that refuses the trace as too large
// refuses the answer: it is not one part's damage to report beside the
// others' spans.
func TestMergeQuerierTraceSpansLimit(t *testing.T) {
	part := func(from, n int) tracePart {
		var p tracePart
		for i := from; i < from+n; i++ {
			p.spans = append(p.spans, Span{SpanID: SpanID{byte(i)}, StartUnixNano: int64(i)})
		}
		return p
	}
	m := NewMergeQuerier(part(0, 60), part(60, 60))
	spans, err := m.TraceByID(WithStats(context.Background(), &Stats{MaxTraceSpans: 120}), TraceID{1}, 0, 0)
	require.NoError(t, err)
	require.Len(t, spans, 120)
	_, err = m.TraceByID(WithStats(context.Background(), &Stats{MaxTraceSpans: 100}), TraceID{1}, 0, 0)
	require.ErrorIs(t, err, ErrTraceTooLarge)

	m = NewMergeQuerier(part(0, 10), tracePart{err: fmt.Errorf("%w: more than 5 spans", ErrTraceTooLarge)})
	_, err = m.TraceByID(context.Background(), TraceID{1}, 0, 0)
	require.ErrorIs(t, err, ErrTraceTooLarge)
	m = NewMergeQuerier(part(0, 10), tracePart{err: errors.New("ingester unreachable")})
	spans, err = m.TraceByID(context.Background(), TraceID{1}, 0, 0)
	require.Error(t, err)
	require.Len(t, spans, 10, "other errors leave the answer partial")
}

// listPart is a merge part that lists n names of its own from from.
type listPart struct {
	Querier
	from, n int
}

func (p listPart) names(prefix string) []string {
	var out []string
	for i := p.from; i < p.from+p.n; i++ {
		out = append(out, fmt.Sprintf("%s%04d", prefix, i))
	}
	return out
}

func (p listPart) Services(context.Context, int64, int64) ([]string, error) {
	return p.names("svc-"), nil
}

func (p listPart) Operations(context.Context, string, int64, int64) ([]Operation, error) {
	var out []Operation
	for _, n := range p.names("op-") {
		out = append(out, Operation{Name: n})
	}
	return out, nil
}

func (p listPart) TagNames(context.Context, int64, int64) (TagNames, error) {
	return TagNames{Span: p.names("span."), Resource: p.names("res.")}, nil
}

// TestMergeQuerierListingsBounded merges parts whose listings are each
// within MaxListed but together past it: the merged listings stop at it,
// and without the bound they hold every name once.
func TestMergeQuerierListingsBounded(t *testing.T) {
	m := NewMergeQuerier(listPart{from: 0, n: 40}, listPart{from: 20, n: 40})
	lens := func() []int {
		svcs, err := m.Services(context.Background(), 0, 0)
		require.NoError(t, err)
		ops, err := m.Operations(context.Background(), "", 0, 0)
		require.NoError(t, err)
		names, err := m.TagNames(context.Background(), 0, 0)
		require.NoError(t, err)
		return []int{len(svcs), len(ops), len(names.Span), len(names.Resource)}
	}
	require.Equal(t, []int{60, 60, 60, 60}, lens())
	defer func(n int) { MaxListed = n }(MaxListed)
	MaxListed = 50
	require.Equal(t, []int{50, 50, 50, 50}, lens())
}
