package logql

import (
	"cmp"
	"context"
	"slices"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// TailCursor follows a log query forward in time, as Loki's tail does:
// each Next returns the entries from where the last one stopped up to a
// given time, oldest first, each entry once.
//
// A batch is at most Limit entries. When a batch fills, the next one
// starts at the time of its last entry and skips the entries already sent
// at that time, so entries sharing a timestamp are not lost across
// batches. An entry stamped before the cursor when it arrives is not
// seen: callers wait (Loki's delay_for) for late writers.
type TailCursor struct {
	Expr  *LogExpr
	From  int64 // unix ns: the next batch starts here
	Limit int

	sentAtFrom map[entryKey]bool
}

// Next returns the entries in [c.From, until] not yet returned.
func (c *TailCursor) Next(ctx context.Context, sq storage.Querier, until int64) ([]Stream, error) {
	if until < c.From {
		return nil, nil
	}
	limit := max(c.Limit, 1)
	streams, _, err := Select(ctx, sq, SelectRequest{Expr: c.Expr, Start: c.From, End: until + 1, Limit: limit + len(c.sentAtFrom), Forward: true})
	if err != nil {
		return nil, err
	}
	// Select groups by stream; the batch is the oldest limit entries of
	// all streams, without those sent before at c.From.
	type ref struct{ s, e int }
	var all []ref
	for si, s := range streams {
		for ei, e := range s.Entries {
			if e.Timestamp == c.From && c.sentAtFrom[entryKey{s.Labels.String(), e.Timestamp, e.Line}] {
				continue
			}
			all = append(all, ref{si, ei})
		}
	}
	if len(all) == 0 {
		c.From, c.sentAtFrom = until+1, nil
		return nil, nil
	}
	ts := func(r ref) int64 { return streams[r.s].Entries[r.e].Timestamp }
	// Stable: each stream's entries are oldest first already.
	slices.SortStableFunc(all, func(a, b ref) int { return cmp.Compare(ts(a), ts(b)) })
	full := len(all) > limit
	if full {
		all = all[:limit]
	}
	out := map[int]*Stream{}
	var order []int
	for _, r := range all {
		s := out[r.s]
		if s == nil {
			s = &Stream{Labels: streams[r.s].Labels}
			out[r.s] = s
			order = append(order, r.s)
		}
		s.Entries = append(s.Entries, streams[r.s].Entries[r.e])
	}
	if full || len(all) == limit {
		// Possibly more at or after the last time: continue from it.
		last := ts(all[len(all)-1])
		if last != c.From {
			c.sentAtFrom = map[entryKey]bool{}
		}
		c.From = last
		for _, r := range all {
			if e := streams[r.s].Entries[r.e]; e.Timestamp == last {
				c.sentAtFrom[entryKey{streams[r.s].Labels.String(), e.Timestamp, e.Line}] = true
			}
		}
	} else {
		c.From, c.sentAtFrom = until+1, nil
	}
	batch := make([]Stream, 0, len(order))
	for _, i := range order {
		batch = append(batch, *out[i])
	}
	return batch, nil
}
