package logql

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// A tail returns each entry once, oldest first, in batches of at most its
// limit, including entries that share a timestamp across a batch's end
// and entries written after an earlier batch.
func TestTailCursor(t *testing.T) {
	m := &memQuerier{}
	add := func(ms int64, line string) {
		m.logs = append(m.logs, storage.LogRecord{TimeUnixNano: base + ms*1e6, Body: storage.Str(line),
			Resource: &storage.Resource{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str("api")}}}})
	}
	add(100, "a")
	add(500, "b1")
	add(500, "b2")
	add(500, "b3")
	add(700, "c")
	q, err := Parse(`{service_name="api"} | keep service_name`)
	require.NoError(t, err)
	c := &TailCursor{Expr: q.Log, From: base, Limit: 2}
	next := func(untilMs int64) []string {
		batch, err := c.Next(context.Background(), m, base+untilMs*1e6)
		require.NoError(t, err)
		var got []string
		for _, s := range batch {
			for _, e := range s.Entries {
				got = append(got, fmt.Sprintf("%d %s", (e.Timestamp-base)/1e6, e.Line))
			}
		}
		return got
	}
	require.Equal(t, []string{"100 a", "500 b1"}, next(1000))
	require.Equal(t, []string{"500 b2", "500 b3"}, next(1000))
	require.Equal(t, []string{"700 c"}, next(1000))
	require.Empty(t, next(1000))
	// Written since; and nothing after until is returned before its time.
	add(1500, "d")
	add(2500, "e")
	require.Equal(t, []string{"1500 d"}, next(2000))
	require.Equal(t, []string{"2500 e"}, next(3000))
	require.Empty(t, next(3000))

	// With a lag, an entry stored after the cursor passed its time is
	// still sent, once; one later than the lag is not.
	c.Lag = 1000 * 1e6
	require.Empty(t, next(4000))
	add(3500, "late by less than the lag")
	add(2900, "late by more than the lag")
	require.Equal(t, []string{"3500 late by less than the lag"}, next(4200))
	require.Empty(t, next(5000))
}

// A busy stream cannot make the cursor remember more than maxTailSent
// entries: it moves up instead, and still sends each entry once.
func TestTailCursorRemembersABoundedWindow(t *testing.T) {
	m := &memQuerier{}
	for i := range maxTailSent + 500 {
		m.logs = append(m.logs, storage.LogRecord{TimeUnixNano: base + int64(i)*1e3, Body: storage.Str(fmt.Sprint(i)),
			Resource: &storage.Resource{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str("api")}}}})
	}
	q, err := Parse(`{service_name="api"}`)
	require.NoError(t, err)
	// A lag longer than the whole stream: without the bound, everything
	// would be remembered.
	c := &TailCursor{Expr: q.Log, From: base, Limit: maxTailSent + 1000, Lag: int64(time.Hour)}
	batch, err := c.Next(context.Background(), m, base+int64(time.Second))
	require.NoError(t, err)
	n := 0
	for _, s := range batch {
		n += len(s.Entries)
	}
	require.Equal(t, maxTailSent+500, n)
	require.LessOrEqual(t, len(c.sent), maxTailSent)
	again, err := c.Next(context.Background(), m, base+int64(time.Second))
	require.NoError(t, err)
	require.Empty(t, again, "an entry was sent twice")
}
