package metrics

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// ErrSeriesLimit wraps appends refused because they would create a series
// past Options.MaxSeries. Samples of series the head already holds are
// still taken. Resending cannot help until series go stale and leave the
// head at its next compaction, so the refusal is permanent: the errors
// also match storage.ErrOutOfBounds, which Prometheus's remote-write
// handler answers with 400, as Mimir answers its per-tenant series limit.
var ErrSeriesLimit = errors.New("series limit reached")

// seriesLimitError is what the head's appenders return for a series the
// limit refuses.
type seriesLimitError struct{ max int64 }

func (e seriesLimitError) Error() string {
	return fmt.Sprintf("%s: the head holds %d active series (metrics::max_series)", ErrSeriesLimit, e.max)
}

func (e seriesLimitError) Is(target error) bool {
	return target == ErrSeriesLimit || target == storage.ErrOutOfBounds
}

// seriesLimit bounds the series in the TSDB's head, which hold about
// 0.9 KiB each (docs/benchmarks.md) and are otherwise the one part of the
// metrics store that grows with what is sent: a label with a value per
// request or per pod makes a series each. The head calls PreCreation for
// every series it is about to create, from appends and from WAL replay.
//
// The limit holds only once the TSDB is open (head set): replay restores
// what was acknowledged even when the limit was lowered since. Concurrent
// appends may pass it by the series they create at the same moment.
type seriesLimit struct {
	max  int64
	head atomic.Pointer[tsdb.Head]
	// refused counts the samples refused for the limit, across reopens.
	refused *atomic.Int64
}

func (l *seriesLimit) PreCreation(labels.Labels) error {
	h := l.head.Load()
	if h == nil || int64(h.NumSeries()) < l.max {
		return nil
	}
	l.refused.Add(1)
	return seriesLimitError{max: l.max}
}

func (*seriesLimit) PostCreation(labels.Labels)                          {}
func (*seriesLimit) PostDeletion(map[chunks.HeadSeriesRef]labels.Labels) {}

// SeriesLimitRefusals counts the samples refused because they would have
// created a series past Options.MaxSeries.
func (d *DB) SeriesLimitRefusals() int64 { return d.seriesRefused.Load() }

// HeadSeries is the number of series in the TSDB's head.
func (d *DB) HeadSeries() uint64 { return d.TSDB().Head().NumSeries() }

// MaxSeries is the limit on the head's series; 0 is none.
func (d *DB) MaxSeries() int64 { return d.opts.MaxSeries }

// SkipSeriesLimit wraps app for the OTLP translator, so that it goes on
// past a sample the series limit refuses and the rest of the request,
// series the head already holds among them, is stored; each such sample
// is counted in refused. For it, Append answers ref 0 and no error, which
// only a caller that ignores refs, as the translator does, may be given.
func SkipSeriesLimit(app storage.AppenderV2, refused *atomic.Int64) storage.AppenderV2 {
	return &limitedAppender{AppenderV2: app, refused: refused}
}

type limitedAppender struct {
	storage.AppenderV2
	refused *atomic.Int64
}

func (a *limitedAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	r, err := a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
	if err != nil && errors.Is(err, ErrSeriesLimit) {
		a.refused.Add(1)
		return 0, nil
	}
	return r, err
}

// SeriesLimitError describes n samples refused for the series limit, as
// AppendOTLP reports them; it wraps ErrSeriesLimit.
func (d *DB) SeriesLimitError(n int64) error {
	return fmt.Errorf("%d samples of new series refused: %w", n, seriesLimitError{max: d.opts.MaxSeries})
}
