package sightlinestorage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/prometheus/config"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"gocloud.dev/blob"

	"github.com/sightlinehq/sightline/internal/dashboard"
	"github.com/sightlinehq/sightline/internal/memlimit"
	"github.com/sightlinehq/sightline/internal/metrics"
	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/otlpguard"
	"github.com/sightlinehq/sightline/internal/store"
	"github.com/sightlinehq/sightline/internal/store/block"
	"github.com/sightlinehq/sightline/internal/store/headproto"
	"github.com/sightlinehq/sightline/internal/store/wal"
)

// ErrNoStorage is returned by GetStorage when the host has no started
// storage extension of that ID.
var ErrNoStorage = errors.New("no sightline_storage extension")

// Storage is the running extension: the trace and log store and the
// metrics TSDB of one data directory, open between Start and Shutdown.
type Storage struct {
	cfg *Config
	set extension.Settings

	// db and mdb are opened by Start and closed by Shutdown. Every
	// component that uses them starts after Start returns (exporters and
	// receivers after every extension, the query extension after its
	// dependency) and stops before Shutdown is called.
	db  *store.DB
	mdb *metrics.DB
	// dash keeps dashboards in the store's bucket, beside its blocks.
	dash *dashboard.Store
	// metricsReg is the self-metrics callback, unregistered at shutdown.
	metricsReg metric.Registration
	// handoff serves an ingester's heads to queriers; ingesters are what a
	// querier reads them with (role.go).
	handoff   *http.Server
	ingesters []*headproto.Client
	dns       *dnsIngesters
	dnsDone   chan struct{}

	// mu guards host and the problems: the store reports problems from
	// inside Open, before Start has returned.
	mu   sync.Mutex
	host component.Host
	// problems are the trace and log store's, metricsProblem the metrics
	// store's write failure.
	problems       []error
	metricsProblem error
}

var _ otlpguard.Admitter = (*Storage)(nil)

// GetStorage finds the started storage extension id among host's
// extensions: the exporter and the query extension call it from Start.
func GetStorage(host component.Host, id component.ID) (*Storage, error) {
	ext, ok := host.GetExtensions()[id]
	if !ok {
		return nil, fmt.Errorf("%w %q: configure it under extensions and list it in service::extensions", ErrNoStorage, id)
	}
	s, ok := ext.(*Storage)
	if !ok {
		return nil, fmt.Errorf("%w %q: that extension is a %s", ErrNoStorage, id, id.Type())
	}
	if s.db == nil {
		return nil, fmt.Errorf("%w %q: it has not started", ErrNoStorage, id)
	}
	return s, nil
}

// Store is the trace and log store.
func (s *Storage) Store() *store.DB { return s.db }

// Metrics is the metrics TSDB.
func (s *Storage) Metrics() *metrics.DB { return s.mdb }

// Dashboards keeps the UI's dashboards.
func (s *Storage) Dashboards() *dashboard.Store { return s.dash }

// Admit is the receivers' admission check (otlpguard.Admitter): it refuses
// a request of signal sig, before the request is read, while the store is
// at its memory budget or its level-0 backlog, or the process's live heap
// is over its admission threshold (memlimit.CheckHeap), with the same
// retryable status as the exporter's own refusal. Memory is the
// process's, so a store at its budget refuses for every receiver of the
// process; a process without a storage extension (an agent) leaves its
// memory to the memory_limiter processor. Metrics go to the TSDB, which
// the budget does not cover, and pass.
func (s *Storage) Admit(sig otlpguard.Signal) error {
	var bs block.Signal
	switch sig {
	case otlpguard.Traces:
		bs = block.Traces
	case otlpguard.Logs:
		bs = block.Logs
	default:
		return nil
	}
	if err := s.db.Admit(bs); err != nil {
		return otlpguard.RetryLater(err, Backoff)
	}
	if err := memlimit.CheckHeap(); err != nil {
		s.db.CountRefusedRequest(bs, store.RefusedForMemory)
		return otlpguard.RetryLater(err, Backoff)
	}
	return nil
}

// Backoff is the delay a refused client is asked to wait: about the time
// the block writer takes to free a head's worth of memory.
const Backoff = time.Second

// Start opens the stores. A damaged block or WAL segment does not stop
// it: the store sets it aside, serves the rest and reports the problem as
// the extension's status, which the health_check extension shows.
func (s *Storage) Start(ctx context.Context, host component.Host) error {
	s.mu.Lock()
	s.host = host
	s.mu.Unlock()
	cfg := s.cfg
	bucket, err := openBucket(ctx, cfg)
	if err != nil {
		return err
	}
	sync := wal.SyncAlways
	if cfg.WAL.Sync == "interval" {
		sync = wal.SyncInterval
	}
	budget := cfg.Memory.budget(memlimit.Container(), memlimit.Host())
	s.set.Logger.Info("store memory budget", zap.Int64("budget_mib", budget>>20), zap.Int64("metrics_max_series", cfg.Metrics.maxSeries(budget)))
	opts := store.Options{
		Dir:                 cfg.Path,
		Bucket:              bucket,
		WAL:                 wal.Options{Sync: sync, SyncInterval: cfg.WAL.SyncInterval, SegmentSize: cfg.WAL.SegmentSize},
		MaxBlockBytes:       cfg.Block.MaxSize,
		MaxBlockDuration:    cfg.Block.MaxDuration,
		RowGroupRows:        cfg.Block.RowGroupSpans,
		BlockFormat:         cfg.Block.Format,
		MemoryBudget:        budget,
		Limits:              store.AttributeLimits{MaxAttributeBytes: cfg.Limits.MaxAttributeBytes, MaxAttributes: cfg.Limits.MaxAttributes},
		RetentionAge:        cfg.Retention.MaxAge,
		RetentionBytes:      cfg.Retention.MaxSize,
		CompactionInterval:  cfg.Compaction.Interval,
		CompactMinBlocks:    cfg.Compaction.MinBlocks,
		CompactMaxBytes:     cfg.Compaction.MaxSize,
		CompactLevel0Blocks: cfg.Compaction.Level0Blocks,
		StallBlocks:         cfg.Compaction.StallBlocks,
		Logger:              s.set.Logger,
		OnProblem:           s.report,
	}
	if err := cfg.applyRole(&opts, bucket); err != nil {
		return err
	}
	db, err := store.Open(ctx, opts)
	if err != nil {
		return fmt.Errorf("open store at %s: %w", cfg.Path, err)
	}
	mc := cfg.Metrics
	readFrom, err := cfg.remoteRead()
	if err != nil {
		db.Close()
		return err
	}
	mdb, err := metrics.Open(metrics.Options{
		ReadFrom:  readFrom,
		Dir:       filepath.Join(cfg.Path, "metrics"),
		Retention: mc.Retention,
		MaxSeries: mc.maxSeries(budget),
		OTLP: config.OTLPConfig{
			PromoteResourceAttributes:         mc.PromoteResourceAttributes,
			PromoteAllResourceAttributes:      mc.PromoteAllResourceAttributes,
			IgnoreResourceAttributes:          mc.IgnoreResourceAttributes,
			KeepIdentifyingResourceAttributes: mc.KeepIdentifyingResourceAttributes,
		},
		Logger:    slog.New(zapslog.NewHandler(s.set.Logger.Core())),
		OnProblem: s.reportMetrics,
	})
	if err != nil {
		db.Close()
		return err
	}
	builtin, err := dashboard.Builtin()
	if err != nil {
		db.Close()
		mdb.Close()
		return fmt.Errorf("built-in dashboards: %w", err)
	}
	s.db, s.mdb, s.dash = db, mdb, dashboard.New(bucket, builtin)
	if err := s.startRole(ctx, host); err != nil {
		db.Close()
		mdb.Close()
		return err
	}
	if err := s.registerMetrics(); err != nil {
		s.set.Logger.Warn("store self-metrics", zap.Error(err))
	}
	s.report(db.Problems())
	return nil
}

// registerMetrics publishes the store's memory use and refusals among the
// Collector's own metrics (:8888), where the UI's Sightline page and
// alerts find them.
func (s *Storage) registerMetrics() error {
	m := s.set.MeterProvider.Meter("github.com/sightlinehq/sightline/internal/store")
	mem, err1 := m.Int64ObservableGauge("sightline_store_memory", metric.WithUnit("By"),
		metric.WithDescription("Estimated heap held by the store's head and the heads waiting to be written to blocks."))
	budget, err2 := m.Int64ObservableGauge("sightline_store_memory_budget", metric.WithUnit("By"),
		metric.WithDescription("The store's memory budget; ingest is refused while sightline_store_memory is at it."))
	pending, err3 := m.Int64ObservableGauge("sightline_store_pending_heads",
		metric.WithDescription("Cut heads waiting to be written to blocks."))
	refused, err4 := m.Int64ObservableCounter("sightline_store_refused",
		metric.WithDescription("Spans and log records refused, retryably, because the store's memory budget was reached."))
	refusedReqs, err5 := m.Int64ObservableCounter("sightline_store_refused_requests",
		metric.WithDescription("OTLP and Loki push requests refused, retryably and before they were read, by signal and reason: budget (the store's memory budget), backlog (level-0 blocks at compaction::stall_blocks) or memory (the process's live heap)."))
	level0, err6 := m.Int64ObservableGauge("sightline_store_level0_blocks",
		metric.WithDescription("Blocks written from heads and not yet merged; at sightline_store_stall_blocks ingest of the signal is refused until compaction catches up."))
	stall, err7 := m.Int64ObservableGauge("sightline_store_stall_blocks",
		metric.WithDescription("The level-0 block count at which ingest stalls (compaction::stall_blocks)."))
	series, err8 := m.Int64ObservableGauge("sightline_metrics_head_series",
		metric.WithDescription("Series in the metrics TSDB's head."))
	maxSeries, err9 := m.Int64ObservableGauge("sightline_metrics_max_series",
		metric.WithDescription("The limit on sightline_metrics_head_series (metrics::max_series); 0 is none."))
	refusedSamples, err10 := m.Int64ObservableCounter("sightline_metrics_refused_samples",
		metric.WithDescription("Metric samples refused, permanently, because they would have created a series past metrics::max_series."))
	readers, err11 := m.Int64ObservableGauge("sightline_store_block_readers", metric.WithUnit("By"),
		metric.WithDescription("What the open blocks' Parquet readers (footers and page indexes) are charged in their cache; past a quarter of the store's budget the least recently used are dropped and reopened when read."))
	retried, err12 := m.Int64ObservableCounter("sightline_store_retried",
		metric.WithDescription("Spans and log records sent again in a request the store had taken already (a client's retry), answered as taken and not stored twice."))
	pageCache, err13 := m.Int64ObservableGauge("sightline_store_page_cache", metric.WithUnit("By"),
		metric.WithDescription("What the pages queries decoded and kept for the next take; past an eighth of the store's budget the least recently used are dropped."))
	pageLookups, err14 := m.Int64ObservableCounter("sightline_store_page_cache_lookups",
		metric.WithDescription("Lookups of decoded pages in the page cache, by result (hit, miss)."))
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7, err8, err9, err10, err11, err12, err13, err14); err != nil {
		return err
	}
	spans := metric.WithAttributes(attribute.String("signal", "traces"))
	logs := metric.WithAttributes(attribute.String("signal", "logs"))
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := s.db.Stats()
		o.ObserveInt64(mem, st.MemoryBytes)
		o.ObserveInt64(budget, st.MemoryBudget)
		o.ObserveInt64(pending, int64(st.PendingHeads))
		o.ObserveInt64(readers, st.BlockReaderBytes)
		o.ObserveInt64(pageCache, st.PageCacheBytes)
		o.ObserveInt64(pageLookups, st.PageCacheHits, metric.WithAttributes(attribute.String("result", "hit")))
		o.ObserveInt64(pageLookups, st.PageCacheMisses, metric.WithAttributes(attribute.String("result", "miss")))
		o.ObserveInt64(refused, st.RefusedSpans, spans)
		o.ObserveInt64(refused, st.RefusedLogs, logs)
		o.ObserveInt64(retried, st.RetriedSpans, spans)
		o.ObserveInt64(retried, st.RetriedLogs, logs)
		for sig, name := range []string{"traces", "logs"} {
			for r, n := range st.RefusedRequests[sig] {
				o.ObserveInt64(refusedReqs, n, metric.WithAttributes(attribute.String("signal", name), attribute.String("reason", store.RefusalReason(r).String())))
			}
		}
		o.ObserveInt64(level0, st.Level0TraceBlocks, spans)
		o.ObserveInt64(level0, st.Level0LogBlocks, logs)
		o.ObserveInt64(stall, int64(st.StallBlocks))
		o.ObserveInt64(series, int64(s.mdb.HeadSeries()))
		o.ObserveInt64(maxSeries, s.mdb.MaxSeries())
		o.ObserveInt64(refusedSamples, s.mdb.SeriesLimitRefusals(), metric.WithAttributes(attribute.String("reason", "series_limit")))
		return nil
	}, mem, budget, pending, refused, refusedReqs, level0, stall, series, maxSeries, refusedSamples, readers, retried, pageCache, pageLookups)
	if err != nil {
		return err
	}
	s.metricsReg = reg
	return nil
}

// report publishes the store's problems as the extension's status, which
// the health_check extension shows (see configs/all-in-one.yaml);
// reportMetrics adds the metrics store's write failure to them.
func (s *Storage) report(problems []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.problems = problems
	s.publishLocked()
}

func (s *Storage) reportMetrics(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.metricsProblem = err
	s.publishLocked()
}

func (s *Storage) publishLocked() {
	problems := s.problems
	if s.metricsProblem != nil {
		problems = append(slices.Clip(problems), s.metricsProblem)
	}
	ev := componentstatus.NewEvent(componentstatus.StatusOK)
	if len(problems) > 0 {
		ev = componentstatus.NewRecoverableErrorEvent(errors.Join(problems...))
	}
	if s.host != nil {
		componentstatus.ReportStatus(s.host, ev)
	}
}

// Shutdown closes the stores: everything acknowledged is in the WAL, and
// the head is written to a block if it can be.
func (s *Storage) Shutdown(context.Context) error {
	if s.db == nil {
		return nil
	}
	if s.metricsReg != nil {
		s.metricsReg.Unregister()
		s.metricsReg = nil
	}
	var herr error
	if s.handoff != nil {
		herr = s.handoff.Close()
	}
	if s.dnsDone != nil {
		close(s.dnsDone)
		s.dnsDone = nil
	}
	err := errors.Join(herr, s.db.Close(), s.mdb.Close())
	s.mu.Lock()
	s.host = nil
	s.mu.Unlock()
	return err
}

func openBucket(ctx context.Context, cfg *Config) (*objstore.Store, error) {
	sc, err := cfg.Storage.resolved()
	if err != nil {
		return nil, fmt.Errorf("storage::bucket_url: %w", err)
	}
	prefixed := func(st *objstore.Store, prefix string) *objstore.Store {
		if prefix == "" {
			return st
		}
		return objstore.NewStore(blob.PrefixedBucket(st.Bucket(), prefix+"/"), st.String()+"/"+prefix)
	}
	switch sc.Backend {
	case "s3":
		b, err := objstore.OpenS3(ctx, objstore.S3Options{Bucket: sc.S3.Bucket, Region: sc.S3.Region, Endpoint: sc.S3.Endpoint, PathStyle: sc.S3.ForcePathStyle, DisableHTTPS: sc.S3.Insecure})
		if err != nil {
			return nil, err
		}
		return prefixed(objstore.NewStore(b, "s3 "+sc.S3.Bucket), sc.S3.Prefix), nil
	case "gcs":
		st, err := objstore.OpenGCS(ctx, sc.GCS.Bucket)
		if err != nil {
			return nil, err
		}
		return prefixed(st, sc.GCS.Prefix), nil
	case "azure":
		st, err := objstore.OpenAzure(ctx, sc.Azure.StorageAccount, sc.Azure.Container)
		if err != nil {
			return nil, err
		}
		return prefixed(st, sc.Azure.Prefix), nil
	}
	dir := sc.Filesystem.Path
	if dir == "" {
		dir = filepath.Join(cfg.Path, "blocks")
	}
	return objstore.OpenFilesystem(dir)
}
