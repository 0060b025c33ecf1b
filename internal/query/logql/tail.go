package logql

import (
	"cmp"
	"context"
	"slices"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// TailCursor follows a log query forward in time, as Loki's tail does:
// each Next returns the entries from where the cursor stands up to a
// given time, oldest first, each entry once.
//
// A tail polls a store that entries reach a moment after their
// timestamps, so the cursor stays Lag behind the time it was asked for
// and remembers what it sent since: an entry that arrives up to Lag late
// is still sent, once. An entry later than that is not (Loki's delay_for
// waits longer). A batch is at most Limit entries; the rest follow in
// the next.
type TailCursor struct {
	Expr  *LogExpr
	From  int64 // unix ns: no entry before it is sent
	Limit int
	Lag   int64 // ns

	sent map[entryKey]bool // entries sent at or after From
}

// maxTailSent bounds the entries a cursor remembers having sent, and so
// the entries each Next selects again.
const maxTailSent = 10_000

// Next returns the entries in [c.From, until] not yet returned.
func (c *TailCursor) Next(ctx context.Context, sq storage.Querier, until int64) ([]Stream, error) {
	if until < c.From {
		return nil, nil
	}
	limit := max(c.Limit, 1)
	streams, _, err := Select(ctx, sq, SelectRequest{Expr: c.Expr, Start: c.From, End: until + 1, Limit: limit + len(c.sent) + 1, Forward: true})
	if err != nil {
		return nil, err
	}
	type ref struct {
		s   int
		e   Entry
		key entryKey
	}
	var fresh []ref
	for si, s := range streams {
		for _, e := range s.Entries {
			k := entryKey{s.Labels.String(), e.Timestamp, e.Line}
			if !c.sent[k] {
				fresh = append(fresh, ref{si, e, k})
			}
		}
	}
	// Oldest first; entries of one time in a fixed order, so that a batch
	// that ends among them is continued by the next.
	slices.SortFunc(fresh, func(a, b ref) int {
		return cmp.Or(cmp.Compare(a.e.Timestamp, b.e.Timestamp), cmp.Compare(a.key.labels, b.key.labels), cmp.Compare(a.e.Line, b.e.Line))
	})
	boundary := until
	if len(fresh) > limit {
		fresh = fresh[:limit]
		// Entries after the last one sent wait for the next batch.
		boundary = fresh[len(fresh)-1].e.Timestamp
	}
	if c.sent == nil {
		c.sent = map[entryKey]bool{}
	}
	out := map[int]*Stream{}
	var order []int
	for _, r := range fresh {
		c.sent[r.key] = true
		s := out[r.s]
		if s == nil {
			s = &Stream{Labels: streams[r.s].Labels}
			out[r.s] = s
			order = append(order, r.s)
		}
		s.Entries = append(s.Entries, r.e)
	}
	c.From = max(c.From, min(boundary, until-c.Lag))
	// What was sent is remembered for the lag, but for at most
	// maxTailSent entries: past that (a busy stream), the cursor moves up
	// to the oldest it can still remember, giving up lateness for memory.
	if len(c.sent) > maxTailSent {
		ts := make([]int64, 0, len(c.sent))
		for k := range c.sent {
			ts = append(ts, k.ts)
		}
		slices.Sort(ts)
		c.From = max(c.From, ts[len(ts)-maxTailSent])
	}
	for k := range c.sent {
		if k.ts < c.From {
			delete(c.sent, k)
		}
	}
	batch := make([]Stream, 0, len(order))
	for _, i := range order {
		batch = append(batch, *out[i])
	}
	return batch, nil
}
