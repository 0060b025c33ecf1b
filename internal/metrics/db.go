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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/otlptranslator"
	"github.com/prometheus/prometheus/config"
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
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
}

// DB is an open metrics store. It is safe for concurrent use.
type DB struct {
	tsdb *tsdb.DB
	opts Options
}

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
	to := tsdb.DefaultOptions()
	to.RetentionDuration = o.Retention.Milliseconds()
	to.EnableExemplarStorage = true
	to.MaxExemplars = o.MaxExemplars
	// Span metrics arrive a flush interval late and OTLP clients retry;
	// accept samples up to 10 minutes out of order.
	to.OutOfOrderTimeWindow = (10 * time.Minute).Milliseconds()
	db, err := tsdb.Open(o.Dir, o.Logger, o.Registerer, to, nil)
	if err != nil {
		return nil, fmt.Errorf("open tsdb %s: %w", o.Dir, err)
	}
	return &DB{tsdb: db, opts: o}, nil
}

// TSDB returns the underlying Prometheus TSDB, for the PromQL engine and
// the Prometheus HTTP API.
func (d *DB) TSDB() *tsdb.DB { return d.tsdb }

// OTLP returns the translation settings, so that other OTLP write paths
// into this TSDB translate as the exporter does.
func (d *DB) OTLP() config.OTLPConfig { return d.opts.OTLP }

// Retention is how long blocks are kept.
func (d *DB) Retention() time.Duration { return d.opts.Retention }

// Close closes the TSDB; the head is kept in its WAL.
func (d *DB) Close() error { return d.tsdb.Close() }

// AppendOTLP translates md and appends it in one TSDB transaction.
// Metrics the translator refuses (delta temporality, an invalid type) are
// left out and named in an error wrapping ErrUnsupported, while the rest
// is committed; a write failure commits nothing and wraps ErrWrite.
// Translation problems that drop single points are returned as warnings.
func (d *DB) AppendOTLP(ctx context.Context, md pmetric.Metrics) (warnings []string, err error) {
	app := d.tsdb.AppenderV2(ctx)
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
		return warnings, fmt.Errorf("%w: %w", ErrWrite, cerr)
	}
	if err != nil {
		return warnings, fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return warnings, nil
}
