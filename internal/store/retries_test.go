package store

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/workload"
)

// A request sent again after the store took it (a client's retry) is
// answered as taken and not stored again, even once the first copy has
// left the head for a block (the head drops repeats only of what it
// holds), and also after a restart that replays the request from the
// WAL. A request that differs in one span is stored.
func TestRetriedRequestIsStoredOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openTestDB(t, dir, nil)
	g := workload.New(4, time.Now(), workload.Options{})
	td, ld := g.Batch(20)
	require.NoError(t, db.AppendTraces(td))
	require.NoError(t, db.AppendLogs(ld))
	require.NoError(t, db.Flush(ctx))
	st := db.Stats()
	blocks, stored := st.Blocks, st.BlockSpans
	require.Equal(t, int64(td.SpanCount()), stored)

	require.NoError(t, db.AppendTraces(td))
	require.NoError(t, db.AppendLogs(ld))
	st = db.Stats()
	require.Zero(t, st.HeadSpans)
	require.Zero(t, st.HeadLogs)
	require.Equal(t, int64(td.SpanCount()), st.RetriedSpans)
	require.Equal(t, int64(ld.LogRecordCount()), st.RetriedLogs)
	require.NoError(t, db.Flush(ctx))
	require.Equal(t, blocks, db.Stats().Blocks, "nothing new to write")

	// Taken, then the process stops before a flush.
	td2, _ := g.Batch(20)
	require.NoError(t, db.AppendTraces(td2))
	require.NoError(t, db.Close())
	db = openTestDB(t, dir, nil)
	require.Equal(t, td2.SpanCount(), db.Stats().HeadSpans)
	require.NoError(t, db.Flush(ctx))
	require.NoError(t, db.AppendTraces(td2))
	st = db.Stats()
	require.Zero(t, st.HeadSpans, "a retry of a request replayed from the WAL")
	require.Equal(t, int64(td2.SpanCount()), st.RetriedSpans)

	changed := ptrace.NewTraces()
	td.CopyTo(changed)
	changed.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).SetName("another name")
	require.NoError(t, db.AppendTraces(changed))
	require.Equal(t, td.SpanCount(), db.Stats().HeadSpans)
	require.Equal(t, int64(td2.SpanCount()), db.Stats().RetriedSpans)
}

// The requests remembered are the last maxRecentPayloads: adding one more
// forgets the oldest.
func TestRecentPayloadsAreBounded(t *testing.T) {
	r := newRecentPayloads()
	key := func(i int) payloadKey { return r.key(recTraces, []byte{byte(i), byte(i >> 8), byte(i >> 16)}) }
	for i := range maxRecentPayloads {
		r.add(key(i))
	}
	r.add(key(0)) // already held: no eviction
	require.True(t, r.has(key(0)))
	require.True(t, r.has(key(1)))
	r.add(key(maxRecentPayloads))
	require.False(t, r.has(key(0)), "the oldest is forgotten")
	require.True(t, r.has(key(1)))
	require.True(t, r.has(key(maxRecentPayloads)))
	require.Len(t, r.set, maxRecentPayloads)
	require.Len(t, r.ring, maxRecentPayloads)
	require.False(t, r.has(r.key(recLogs, []byte{1, 0, 0})), "a log record payload is not a span one")
}
