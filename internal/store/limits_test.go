package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// hugeSpan is one span with n attributes, a 1 MB value of three-byte
// runes, a long key and an array and a map of n entries each.
func hugeSpan(n int) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "huge")
	sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetName("huge")
	sp.SetTraceID([16]byte{0xbb, 1})
	sp.SetSpanID([8]byte{0xbb, 1})
	sp.SetStartTimestamp(1e18)
	sp.SetEndTimestamp(1e18 + 1e6)
	sp.SetDroppedAttributesCount(3)
	// Put checks for an existing key (quadratic at this size); a raw
	// map is taken as it is, in Go's random map order.
	arr := make([]any, n)
	m := make(map[string]any, n)
	raw := make(map[string]any, n+4)
	for i := range n {
		raw[fmt.Sprintf("attr.%06d", i)] = int64(i)
		arr[i] = int64(i)
		m[fmt.Sprintf("k%d", i)] = int64(i)
	}
	raw["array"], raw["map"] = arr, m
	raw[strings.Repeat("k", 100)+"-long-key"] = "v"
	raw["big"] = strings.Repeat("€", 1<<20/3)
	if err := sp.Attributes().FromRaw(raw); err != nil {
		panic(err)
	}
	ev := sp.Events().AppendEmpty()
	ev.SetName("exception")
	ev.Attributes().PutStr("exception.stacktrace", strings.Repeat("at frame\n", 10_000))
	return td
}

func TestAttributeLimitsTruncateAsTheSDKsDo(t *testing.T) {
	lim := AttributeLimits{MaxAttributeBytes: 1000, MaxAttributes: 100}
	td := hugeSpan(5000)
	before := td.SpanCount()
	l := limiter{AttributeLimits: lim}
	out := l.limitTraces(td)

	orig := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
	require.Equal(t, 5004, orig.Attributes().Len(), "the caller's data is not changed: other consumers share it")
	require.Equal(t, before, out.SpanCount())

	sp := out.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
	require.Equal(t, 100, sp.Attributes().Len())
	require.Equal(t, uint32(3+5004-100), sp.DroppedAttributesCount(), "dropped attributes are counted on top of the sender's")
	for k, v := range sp.Attributes().All() {
		if v.Type() == pcommon.ValueTypeStr {
			require.LessOrEqual(t, len(v.Str()), 1000, k)
			require.True(t, utf8.ValidString(v.Str()), "truncation keeps whole runes: %s", k)
			if k == "big" {
				require.Greater(t, len(v.Str()), 1000-utf8.UTFMax)
			}
		}
	}
	if arr, ok := sp.Attributes().Get("array"); ok {
		require.Equal(t, 100, arr.Slice().Len())
	}
	if m, ok := sp.Attributes().Get("map"); ok {
		require.Equal(t, 100, m.Map().Len())
	}
	// The limits apply inside values too, wherever the value was kept.
	nested := limiter{AttributeLimits: lim}
	v := pcommon.NewValueEmpty()
	require.NoError(t, v.SetEmptyMap().FromRaw(map[string]any{"inner": make([]any, 500), "s": strings.Repeat("x", 5000)}))
	nested.limitValue(v)
	inner, _ := v.Map().Get("inner")
	require.Equal(t, 100, inner.Slice().Len())
	sv, _ := v.Map().Get("s")
	require.Len(t, sv.Str(), 1000)
	st, _ := sp.Events().At(0).Attributes().Get("exception.stacktrace")
	require.Len(t, st.Str(), 1000)
	require.Positive(t, l.truncated)
	require.Positive(t, l.dropped)

	// Within the limits, the same data comes back, uncopied.
	small := ptrace.NewTraces()
	small.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().Attributes().PutStr("a", "b")
	l2 := limiter{AttributeLimits: lim}
	require.Equal(t, small, l2.limitTraces(small))
	require.Zero(t, l2.truncated+l2.dropped)
}

func TestLongKeysAreTruncated(t *testing.T) {
	l := limiter{AttributeLimits: AttributeLimits{MaxAttributeBytes: 64}}
	m := pcommon.NewMap()
	m.PutStr(strings.Repeat("a", 70), "1")
	m.PutStr(strings.Repeat("a", 80), "2") // truncates to the same key
	m.PutStr("short", "3")
	dropped := l.limitMap(m)
	require.Equal(t, uint32(1), dropped)
	require.Equal(t, 2, m.Len())
	v, ok := m.Get(strings.Repeat("a", 64))
	require.True(t, ok)
	require.Contains(t, []string{"1", "2"}, v.Str())
}

func TestTruncateUTF8(t *testing.T) {
	for _, c := range []struct {
		s    string
		n    int
		want string
	}{
		{"hello", 10, "hello"},
		{"hello", 3, "hel"},
		{"a€b", 2, "a"},  // € is 3 bytes: not split
		{"a€b", 4, "a€"}, // exactly after it
		{"\xff\xff\xff\xff\xff\xff", 4, "\xff\xff\xff\xff"},
		{"ab\xe2\x82", 3, "ab"},
	} {
		require.Equal(t, c.want, truncateUTF8(c.s, c.n), "%q %d", c.s, c.n)
	}
}

func TestStoreAppliesAttributeLimits(t *testing.T) {
	db := openTestDB(t, t.TempDir(), func(o *Options) { o.Limits = AttributeLimits{MaxAttributeBytes: 16 << 10, MaxAttributes: 1024} })
	require.NoError(t, db.AppendTraces(hugeSpan(100_000)))
	ld := plog.NewLogs()
	rec := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	rec.Body().SetStr(strings.Repeat("x", 100<<10))
	rec.Attributes().PutStr("big", strings.Repeat("y", 100<<10))
	require.NoError(t, db.AppendLogs(ld))

	q, err := db.Querier(context.Background())
	require.NoError(t, err)
	defer q.Close()
	spans, err := q.TraceByID(context.Background(), storage.TraceID{0xbb, 1}, 0, 0)
	require.NoError(t, err)
	require.Len(t, spans, 1)
	require.Len(t, spans[0].Attrs, 1024)
	st := db.Stats()
	require.Positive(t, st.TruncatedAttributes)
	require.GreaterOrEqual(t, st.DroppedAttributes, int64(100_004-1024))

	var logs []storage.LogRecord
	require.NoError(t, q.Logs(context.Background(), &storage.LogQuery{Start: 0, End: 1 << 62}, func(l *storage.LogRecord) bool {
		logs = append(logs, *l)
		return true
	}))
	require.Len(t, logs, 1)
	require.Len(t, logs[0].Body.Str, 100<<10, "a log line is kept whole")
	for _, a := range logs[0].Attrs {
		require.LessOrEqual(t, len(a.Value.Str), 16<<10)
	}
}

// BenchmarkTraceByIDHugeSpan fetches a trace whose one span was sent with
// 100,000 attributes, stored with and without the default limits.
func BenchmarkTraceByIDHugeSpan(b *testing.B) {
	for _, c := range []struct {
		name string
		lim  AttributeLimits
	}{{"unlimited", AttributeLimits{}}, {"default-limits", AttributeLimits{MaxAttributeBytes: 16 << 10, MaxAttributes: 1024}}} {
		b.Run(c.name, func(b *testing.B) {
			db := openTestDB(b, b.TempDir(), func(o *Options) { o.Limits = c.lim })
			require.NoError(b, db.AppendTraces(hugeSpan(100_000)))
			require.NoError(b, db.Flush(context.Background()))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				q, _ := db.Querier(context.Background())
				if _, err := q.TraceByID(context.Background(), storage.TraceID{0xbb, 1}, 0, 0); err != nil {
					b.Fatal(err)
				}
				q.Close()
			}
		})
	}
}

// TestTraceSpansLimit looks a trace of 300 spans up by ID under a query
// span bound, with the trace in the head, in a block, and split between
// the two: past the bound the lookup fails with ErrTraceTooLarge (a block
// before decoding its rows), within it the trace comes back whole.
func TestTraceSpansLimit(t *testing.T) {
	id := storage.TraceID{0xcc, 1}
	batch := func(from int) ptrace.Traces {
		td := ptrace.NewTraces()
		ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
		for i := from; i < from+150; i++ {
			s := ss.Spans().AppendEmpty()
			s.SetTraceID(pcommon.TraceID(id))
			s.SetSpanID(pcommon.SpanID{byte(i >> 8), byte(i), 1})
			s.SetName("op")
			s.SetStartTimestamp(pcommon.Timestamp(1_700_000_000_000_000_000 + int64(i)))
			s.SetEndTimestamp(pcommon.Timestamp(1_700_000_000_000_000_000 + int64(i) + 10))
		}
		return td
	}
	for _, where := range []string{"head", "block", "both"} {
		db := openTestDB(t, t.TempDir(), nil)
		require.NoError(t, db.AppendTraces(batch(0)))
		if where != "head" {
			require.NoError(t, db.Flush(t.Context()))
		}
		require.NoError(t, db.AppendTraces(batch(150)))
		if where == "block" {
			require.NoError(t, db.Flush(t.Context()))
		}
		q, err := db.Querier(t.Context())
		require.NoError(t, err)
		for _, c := range []struct {
			max  int
			fail bool
		}{{0, false}, {300, false}, {299, true}, {100, true}} {
			ctx := storage.WithStats(t.Context(), &storage.Stats{MaxTraceSpans: c.max})
			spans, err := q.TraceByID(ctx, id, 0, 0)
			if c.fail {
				require.ErrorIs(t, err, storage.ErrTraceTooLarge, "%s, max %d", where, c.max)
				require.Empty(t, spans)
				continue
			}
			require.NoError(t, err, "%s, max %d", where, c.max)
			require.Len(t, spans, 300, "%s, max %d", where, c.max)
		}
		q.Close()
	}
}

// TestLogsByTraceLimit reads a trace's log records, spread over a block
// and the head, with and without a limit: the limited answer is the
// oldest records of the whole one, in its order, whatever the part that
// held them.
func TestLogsByTraceLimit(t *testing.T) {
	id := storage.TraceID{0xdd, 2}
	batch := func(from int) plog.Logs {
		ld := plog.NewLogs()
		sl := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty()
		for i := from; i < from+400; i++ {
			r := sl.LogRecords().AppendEmpty()
			r.SetTraceID(pcommon.TraceID(id))
			r.SetSpanID(pcommon.SpanID{byte(i % 3), 1})
			// Interleaved across the two batches, with ties.
			r.SetTimestamp(pcommon.Timestamp(1_700_000_000_000_000_000 + int64(i%200)*1000))
			r.Body().SetStr(fmt.Sprintf("line %d", i))
		}
		return ld
	}
	db := openTestDB(t, t.TempDir(), nil)
	require.NoError(t, db.AppendLogs(batch(0)))
	require.NoError(t, db.Flush(t.Context()))
	require.NoError(t, db.AppendLogs(batch(400)))
	q, err := db.Querier(t.Context())
	require.NoError(t, err)
	defer q.Close()
	for _, span := range []storage.SpanID{{}, {1, 1}} {
		all, err := q.LogsByTrace(t.Context(), id, span, 0, 0, 0)
		require.NoError(t, err)
		wantN := 800
		if !span.IsEmpty() {
			wantN = 267
		}
		require.Equal(t, wantN, len(all))
		require.True(t, slices.IsSortedFunc(all, func(a, b storage.LogRecord) int { return cmp.Compare(a.Timestamp(), b.Timestamp()) }))
		for _, limit := range []int{1, 50, 799, 5000} {
			got, err := q.LogsByTrace(t.Context(), id, span, 0, 0, limit)
			require.NoError(t, err)
			want := all[:min(limit, len(all))]
			require.Len(t, got, len(want), "span %v, limit %d", span, limit)
			for i := range want {
				require.Equal(t, want[i].Timestamp(), got[i].Timestamp(), "span %v, limit %d, record %d", span, limit, i)
			}
		}
	}
}

// TestListingsBounded lists services, operations and tag names over a
// head and a block whose spans each carry names of their own: under a
// bound of 50 every list stops at it, and without it every name is
// listed.
func TestListingsBounded(t *testing.T) {
	batch := func(from int) ptrace.Traces {
		td := ptrace.NewTraces()
		for i := from; i < from+100; i++ {
			rs := td.ResourceSpans().AppendEmpty()
			rs.Resource().Attributes().PutStr("service.name", fmt.Sprintf("svc-%d", i))
			rs.Resource().Attributes().PutStr(fmt.Sprintf("pod.%d", i), "x")
			s := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
			s.SetTraceID(pcommon.TraceID{0xee, byte(i >> 8), byte(i)})
			s.SetSpanID(pcommon.SpanID{byte(i >> 8), byte(i), 1})
			s.SetName(fmt.Sprintf("GET /users/%d", i))
			s.Attributes().PutStr(fmt.Sprintf("user.%d", i), "y")
			s.SetStartTimestamp(pcommon.Timestamp(1_700_000_000_000_000_000 + int64(i)))
			s.SetEndTimestamp(pcommon.Timestamp(1_700_000_000_000_000_000 + int64(i) + 10))
		}
		return td
	}
	db := openTestDB(t, t.TempDir(), nil)
	require.NoError(t, db.AppendTraces(batch(0)))
	require.NoError(t, db.Flush(t.Context()))
	require.NoError(t, db.AppendTraces(batch(100)))
	q, err := db.Querier(t.Context())
	require.NoError(t, err)
	defer q.Close()
	lens := func() []int {
		svcs, err := q.Services(t.Context(), 0, 0)
		require.NoError(t, err)
		ops, err := q.Operations(t.Context(), "", 0, 0)
		require.NoError(t, err)
		names, err := q.TagNames(t.Context(), 0, 0)
		require.NoError(t, err)
		return []int{len(svcs), len(ops), len(names.Span), len(names.Resource)}
	}
	require.Equal(t, []int{200, 200, 200, 201}, lens(), "service.name is a resource key too")
	defer func(n int) { storage.MaxListed = n }(storage.MaxListed)
	storage.MaxListed = 50
	require.Equal(t, []int{50, 50, 50, 50}, lens())
}
