package store

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/store/block"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/workload"
)

// log draws a record that uses every field.
func (g gen) log() storage.LogRecord {
	r := g.r
	l := storage.LogRecord{
		TimeUnixNano: r.Int64N(1 << 62), ObservedTimeUnixNano: r.Int64N(1 << 62),
		SeverityNumber: int32(r.IntN(50)) - 10, SeverityText: g.str(), Body: g.value(),
		Flags: r.Uint32(), EventName: g.str(), Attrs: g.attrs(),
		Resource: testResources[r.IntN(len(testResources))], Scope: testScopes[r.IntN(len(testScopes))],
	}
	if r.IntN(4) == 0 {
		l.TimeUnixNano = 0 // the observed time stands in
	}
	g.id(l.TraceID[:])
	g.id(l.SpanID[:])
	return l
}

func requireSameLog(t *testing.T, want, got *storage.LogRecord) {
	t.Helper()
	requireSameRecord(t, want, got, func(l *storage.LogRecord) (**storage.Resource, **storage.InstrumentationScope, *storage.Attrs) {
		return &l.Resource, &l.Scope, &l.Attrs
	})
}

func checkHeadLogs(t *testing.T, seed uint64, n int) {
	g := gen{rand.New(rand.NewPCG(seed, 2))}
	h := headLogs{a: newArena()}
	var want []storage.LogRecord
	for range n {
		l := g.log()
		h.push(&l)
		want = append(want, l)
	}
	require.Equal(t, n, h.len())
	var got storage.LogRecord
	for i := range want {
		require.NoError(t, h.decode(i, &got))
		requireSameLog(t, &want[i], &got)
		require.Equal(t, want[i].Timestamp(), h.entry(i).TS)
	}
}

func TestHeadLogsRoundTrip(t *testing.T) {
	for seed := range uint64(20) {
		checkHeadLogs(t, seed, 500)
	}
}

func FuzzHeadLogs(f *testing.F) {
	f.Add(uint64(0), uint8(1))
	f.Add(uint64(7), uint8(40))
	f.Fuzz(func(t *testing.T, seed uint64, n uint8) {
		checkHeadLogs(t, seed, int(n))
	})
}

// The flush reads log records in block order, equal ones in arrival order
// (block.CompareLogs, stable), as the sort of decoded records did.
func TestHeadSortedLogs(t *testing.T) {
	_, ld := workload.New(9, time.Unix(1_700_000_000, 0), workload.Options{}).Batch(300)
	logs := storage.AppendLogs(nil, ld)
	// Records at one time, to see that ties keep their order.
	for i := range logs[:50] {
		logs[i].TimeUnixNano = logs[0].TimeUnixNano
	}
	h := newHead(0)
	h.appendLogs(logs, 0)
	want := slices.Clone(logs)
	slices.SortStableFunc(want, func(a, b storage.LogRecord) int { return block.CompareLogs(&a, &b) })
	var (
		err error
		k   int
	)
	for l := range h.sortedLogs(&err) {
		requireSameLog(t, &want[k], l)
		k++
	}
	require.NoError(t, err)
	require.Equal(t, len(want), k)
}
