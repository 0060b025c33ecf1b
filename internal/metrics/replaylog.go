package metrics

import (
	"context"
	"log/slog"
	"sync/atomic"
)

// exemplarReplayMsg is what Prometheus's head logs, once per exemplar, when
// an exemplar in its WAL is older than the newest one kept for its series.
// At append time the head drops such an exemplar without a word
// (storage.ErrOutOfOrderExemplar); on replay it warns about each one. Span
// metrics attach exemplars from spans that finish out of order, so a
// restart printed about a hundred warnings that read like corruption,
// though no sample is affected and the exemplar was never queryable.
const exemplarReplayMsg = "Unexpected error when replaying WAL on exemplar record"

// replayLog passes the TSDB's log records on, except the per-exemplar
// replay warnings, which it counts so that Open can say once how many
// there were.
type replayLog struct {
	next    slog.Handler
	skipped *atomic.Int64
}

func (h replayLog) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h replayLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == exemplarReplayMsg {
		h.skipped.Add(1)
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h replayLog) WithAttrs(a []slog.Attr) slog.Handler {
	return replayLog{next: h.next.WithAttrs(a), skipped: h.skipped}
}

func (h replayLog) WithGroup(name string) slog.Handler {
	return replayLog{next: h.next.WithGroup(name), skipped: h.skipped}
}
