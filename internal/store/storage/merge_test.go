package storage

import (
	"context"
	"errors"
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
