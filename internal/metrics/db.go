// Package metrics is Sightline's metrics store: Prometheus's own TSDB,
// embedded, fed from OTLP through Prometheus's own OTLP translator, so
// names, units, _total suffixes, target_info and resource-attribute
// promotion follow Prometheus's OTLP ingestion exactly.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/otlptranslator"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	prw "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"github.com/prometheus/prometheus/tsdb"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// ErrWrite wraps failures to write to the TSDB; they are retryable.
var ErrWrite = errors.New("metrics write failed")

// ErrUnsupported wraps metrics that Prometheus's translator refuses, such
// as delta sums and histograms; they are permanent: resending cannot help.
// The rest of their batch is stored.
var ErrUnsupported = errors.New("metrics not stored")

// Options configure the store.
type Options struct {
	// Dir holds the TSDB: its WAL, head chunks and blocks.
	Dir string
	// Retention drops blocks older than this.
	Retention time.Duration
	// OTLP is Prometheus's otlp config section: resource-attribute
	// promotion, translation strategy and the like.
	OTLP config.OTLPConfig
	// MaxExemplars bounds the in-memory exemplar buffer.
	MaxExemplars int64
	// MaxSeries bounds the series in the TSDB's head; appends that would
	// create one more are refused with ErrSeriesLimit. 0 is no limit.
	MaxSeries  int64
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// OnProblem is called when writes start failing (with the error) and
	// when they succeed again (with nil), for health reporting.
	OnProblem func(error)
	// ReadFrom, if set, is what queries read instead of the embedded TSDB:
	// a Prometheus-compatible TSDB that the ingesters of a shared bucket
	// remote-write to, read by remote read (Queryable).
	ReadFrom storage.SampleAndChunkQueryable
}

// DB is an open metrics store. It is safe for concurrent use.
//
// A failed commit can leave a torn record in the TSDB's WAL: Prometheus's
// WAL writes a record split across pages page by page, and when a page
// write fails (a full disk) the record's first part stays in the page
// buffer while the rest is dropped. The next successful write puts that
// fragment on disk, followed by every later record, and on the next start
// the WAL repair truncates at the fragment: every sample acknowledged
// after the failure would be gone. So after a failed commit the store
// refuses writes (retryably) until it has reopened the TSDB, whose WAL
// repair then cuts only the unacknowledged record, and new records go to
// a fresh segment behind it.
type DB struct {
	opts Options

	// mu guards tsdb: appends and readers hold it shared, the repair
	// holds it to swap the TSDB.
	mu   sync.RWMutex
	tsdb *tsdb.DB
	// commitMu orders commits against the torn flag, so that no commit
	// follows a failed one into the same WAL. Lock order: mu, then
	// commitMu.
	commitMu sync.Mutex
	torn     bool

	failures      atomic.Int64
	seriesRefused atomic.Int64
	problem       atomic.Pointer[error]
	repairs       chan struct{}
	closed        chan struct{}
	done          chan struct{}

	// meta describes the metric families written (metadata.go).
	meta metadataStore
}

// repairInterval is how often a torn WAL is retried: the disk is probed,
// and once it takes writes again the TSDB is reopened.
var repairInterval = time.Second

// Open opens or creates the TSDB in o.Dir, replaying its WAL.
func Open(o Options) (*DB, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.OTLP.TranslationStrategy == "" {
		// Prometheus's default: classic names, with unit and _total suffixes.
		o.OTLP.TranslationStrategy = otlptranslator.UnderscoreEscapingWithSuffixes
	}
	if o.MaxExemplars == 0 {
		o.MaxExemplars = 100_000
	}
	d := &DB{opts: o, repairs: make(chan struct{}, 1), closed: make(chan struct{}), done: make(chan struct{})}
	db, err := d.open()
	if err != nil {
		return nil, err
	}
	d.tsdb = db
	go d.repairLoop()
	return d, nil
}

func (d *DB) open() (*tsdb.DB, error) {
	o := d.opts
	to := tsdb.DefaultOptions()
	to.RetentionDuration = o.Retention.Milliseconds()
	to.EnableExemplarStorage = true
	to.MaxExemplars = o.MaxExemplars
	// Span metrics arrive a flush interval late and OTLP clients retry;
	// accept samples up to 10 minutes out of order.
	to.OutOfOrderTimeWindow = (10 * time.Minute).Milliseconds()
	// A cumulative OTLP point carries its start time: store a zero there,
	// as Prometheus's created-timestamp-zero-ingestion does, so that
	// rate() and increase() count a new series from its start instead of
	// dropping everything up to its first export (a burst of calls then
	// silence would otherwise never show as an increase).
	to.EnableSTAsZeroSample = true
	var limit *seriesLimit
	if o.MaxSeries > 0 {
		limit = &seriesLimit{max: o.MaxSeries, refused: &d.seriesRefused}
		to.SeriesLifecycleCallback = limit
	}
	var skipped atomic.Int64
	db, err := tsdb.Open(o.Dir, slog.New(replayLog{next: o.Logger.Handler(), skipped: &skipped}), o.Registerer, to, nil)
	if err != nil {
		return nil, fmt.Errorf("open tsdb %s: %w", o.Dir, err)
	}
	if limit != nil {
		// From here on, not during the replay above (seriesLimit).
		limit.head.Store(db.Head())
	}
	if n := skipped.Load(); n > 0 {
		o.Logger.Info("metrics WAL replayed; exemplars older than their series' newest were skipped, as when they were written; samples are unaffected", "exemplars_skipped", n)
	}
	return db, nil
}

// TSDB returns the underlying Prometheus TSDB, for the PromQL engine and
// the Prometheus HTTP API. Write through Appender and AppenderV2, not
// through the TSDB's own: only they keep the WAL whole after a failure.
// After a write failure the TSDB is replaced; a caller holding the old
// one gets errors until it asks again.
func (d *DB) TSDB() *tsdb.DB {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.tsdb
}

// Queryable is what PromQL and the rules read: the remote TSDB of
// Options.ReadFrom, or else the embedded one.
func (d *DB) Queryable() storage.SampleAndChunkQueryable {
	if d.opts.ReadFrom != nil {
		return d.opts.ReadFrom
	}
	return d.TSDB()
}

// Problem is the current write failure, or nil when writes succeed.
func (d *DB) Problem() error {
	if p := d.problem.Load(); p != nil {
		return *p
	}
	return nil
}

// WriteFailures counts the commits that failed since the store opened.
func (d *DB) WriteFailures() int64 { return d.failures.Load() }

func (d *DB) setProblem(err error) {
	if err == nil {
		d.problem.Store(nil)
	} else {
		d.problem.Store(&err)
	}
	if d.opts.OnProblem != nil {
		d.opts.OnProblem(err)
	}
}

// commit commits app unless an earlier commit failed and the TSDB has not
// been reopened since; a failure marks the WAL torn and wakes the repair.
func (d *DB) commit(commit, rollback func() error) error {
	d.commitMu.Lock()
	defer d.commitMu.Unlock()
	if d.torn {
		_ = rollback()
		return fmt.Errorf("%w: a failed write left the WAL to be repaired; retry shortly", ErrWrite)
	}
	if err := commit(); err != nil {
		d.torn = true
		d.failures.Add(1)
		d.setProblem(fmt.Errorf("metrics writes failing: %w", err))
		select {
		case d.repairs <- struct{}{}:
		default:
		}
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	return nil
}

// repairLoop reopens the TSDB after a failed commit, once the disk takes
// a write again.
func (d *DB) repairLoop() {
	defer close(d.done)
	for {
		select {
		case <-d.closed:
			return
		case <-d.repairs:
		}
		for !d.repair() {
			select {
			case <-d.closed:
				return
			case <-time.After(repairInterval):
			}
		}
	}
}

// probeSize is written and removed to see whether the disk has room for
// the WAL again before the TSDB is closed for its repair.
const probeSize = 1 << 20

func (d *DB) repair() bool {
	if err := probeWrite(d.opts.Dir, probeSize); err != nil {
		d.opts.Logger.Warn("metrics WAL repair waits for disk space", "err", err)
		return false
	}
	// mu before commitMu, as appenders take them (an appender holds mu
	// shared from creation and takes commitMu to commit): the other
	// order deadlocks with an append in flight.
	d.mu.Lock()
	defer d.mu.Unlock()
	d.commitMu.Lock()
	defer d.commitMu.Unlock()
	if !d.torn {
		return true
	}
	// Closing flushes the torn fragment; opening replays the WAL and
	// truncates it at that fragment, which was never acknowledged.
	if err := d.tsdb.Close(); err != nil {
		d.opts.Logger.Warn("closing the metrics TSDB for its WAL repair", "err", err)
	}
	db, err := d.open()
	if err != nil {
		// Keep retrying; until then reads fail along with writes.
		d.opts.Logger.Error("reopening the metrics TSDB after a write failure", "err", err)
		d.setProblem(fmt.Errorf("metrics store closed after a write failure: %w", err))
		return false
	}
	d.tsdb, d.torn = db, false
	d.opts.Logger.Info("metrics TSDB reopened after a write failure; writes resume")
	d.setProblem(nil)
	return true
}

func probeWrite(dir string, n int) error {
	f, err := os.CreateTemp(dir, ".space-probe-*")
	if err != nil {
		return err
	}
	name := f.Name()
	defer os.Remove(name)
	_, err = f.Write(make([]byte, n))
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// OTLP returns the translation settings, so that other OTLP write paths
// into this TSDB translate as the exporter does.
func (d *DB) OTLP() config.OTLPConfig { return d.opts.OTLP }

// Retention is how long blocks are kept.
func (d *DB) Retention() time.Duration { return d.opts.Retention }

// Close closes the TSDB; the head is kept in its WAL.
func (d *DB) Close() error {
	close(d.closed)
	<-d.done
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tsdb.Close()
}

// Appender returns an appender of the TSDB whose Commit keeps the WAL
// whole (see DB). Hold it briefly: a repair waits for it.
func (d *DB) Appender(ctx context.Context) storage.Appender {
	d.mu.RLock()
	return &appender{Appender: d.tsdb.Appender(ctx), d: d}
}

// AppenderV2 is Appender for the TSDB's AppenderV2.
func (d *DB) AppenderV2(ctx context.Context) storage.AppenderV2 {
	d.mu.RLock()
	return &appenderV2{AppenderV2: d.tsdb.AppenderV2(ctx), d: d}
}

// appender and appenderV2 hold d.mu shared from creation to Commit or
// Rollback, so the TSDB they write to is not swapped under them.
type appender struct {
	storage.Appender
	d    *DB
	once sync.Once
}

func (a *appender) release() { a.once.Do(a.d.mu.RUnlock) }

func (a *appender) Commit() error {
	defer a.release()
	return a.d.commit(a.Appender.Commit, a.Appender.Rollback)
}

func (a *appender) Rollback() error {
	defer a.release()
	return a.Appender.Rollback()
}

type appenderV2 struct {
	storage.AppenderV2
	d    *DB
	once sync.Once
	// The family whose metadata was recorded last (metadata.go).
	lastFamily string
	lastMeta   metadata.Metadata
}

func (a *appenderV2) release() { a.once.Do(a.d.mu.RUnlock) }

func (a *appenderV2) Commit() error {
	defer a.release()
	return a.d.commit(a.AppenderV2.Commit, a.AppenderV2.Rollback)
}

func (a *appenderV2) Rollback() error {
	defer a.release()
	return a.AppenderV2.Rollback()
}

// AppendOTLP translates md and appends it in one TSDB transaction.
// Metrics the translator refuses (delta temporality, an invalid type) are
// left out and named in an error wrapping ErrUnsupported, and points of
// new series past Options.MaxSeries in one wrapping ErrSeriesLimit, while
// the rest is committed; a write failure commits nothing and wraps
// ErrWrite. Translation problems that drop single points are returned as
// warnings.
func (d *DB) AppendOTLP(ctx context.Context, md pmetric.Metrics) (warnings []string, err error) {
	var refused atomic.Int64
	app := SkipSeriesLimit(d.AppenderV2(ctx), &refused)
	conv := prw.NewPrometheusConverter(app)
	strategy := d.opts.OTLP.TranslationStrategy
	annots, err := conv.FromMetrics(ctx, md, prw.Settings{
		AddMetricSuffixes:                 strategy.ShouldAddSuffixes(),
		AllowUTF8:                         !strategy.ShouldEscape(),
		PromoteResourceAttributes:         prw.NewPromoteResourceAttributes(d.opts.OTLP),
		KeepIdentifyingResourceAttributes: d.opts.OTLP.KeepIdentifyingResourceAttributes,
		ConvertHistogramsToNHCB:           d.opts.OTLP.ConvertHistogramsToNHCB,
		PromoteScopeMetadata:              d.opts.OTLP.PromoteScopeMetadata,
		LookbackDelta:                     5 * time.Minute,
	})
	warnings, _ = annots.AsStrings("", 0, 0)
	if err != nil && ctx.Err() != nil {
		_ = app.Rollback()
		return warnings, err
	}
	if cerr := app.Commit(); cerr != nil {
		return warnings, cerr // wraps ErrWrite
	}
	var limited error
	if n := refused.Load(); n > 0 {
		limited = d.SeriesLimitError(n)
	}
	if err != nil {
		return warnings, errors.Join(fmt.Errorf("%w: %w", ErrUnsupported, err), limited)
	}
	return warnings, limited
}
