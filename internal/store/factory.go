package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/prometheus/config"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"gocloud.dev/blob"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sightlinehq/sightline/internal/memlimit"
	"github.com/sightlinehq/sightline/internal/metrics"
	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/block"
	"github.com/sightlinehq/sightline/internal/store/wal"
)

// Type is the exporter's component type.
var Type = component.MustNewType("sightline")

// NewFactory returns the `sightline` exporter factory. One store serves
// every pipeline that names the same exporter ID.
func NewFactory() exporter.Factory {
	return exporter.NewFactory(Type, func() component.Config { return createDefaultConfig() },
		exporter.WithTraces(createTraces, component.StabilityLevelAlpha),
		exporter.WithLogs(createLogs, component.StabilityLevelAlpha),
		exporter.WithMetrics(createMetrics, component.StabilityLevelAlpha),
	)
}

// shared is one DB used by the traces and logs instances of an exporter ID.
type shared struct {
	id   component.ID
	cfg  *Config
	set  exporter.Settings
	mu   sync.Mutex // guards refs and db
	refs int
	db   *DB
	// mdb is the metrics TSDB, opened with db.
	mdb *metrics.DB
	// metricsReg is the self-metrics callback, unregistered at shutdown.
	metricsReg metric.Registration
	// hostMu guards hosts on its own: the store reports problems from
	// inside Open, while start holds mu.
	hostMu sync.Mutex
	hosts  []component.Host
	// problems are the trace and log store's, metricsProblem the metrics
	// store's write failure; both guarded by hostMu.
	problems       []error
	metricsProblem error
}

var (
	registryMu sync.Mutex
	registry   = map[component.ID]*shared{}
)

func getShared(set exporter.Settings, cfg *Config) *shared {
	registryMu.Lock()
	defer registryMu.Unlock()
	s, ok := registry[set.ID]
	if !ok {
		s = &shared{id: set.ID, cfg: cfg, set: set}
		registry[set.ID] = s
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		// Components are also built and dropped without being started (the
		// config dry run); the instances that start use their own settings.
		s.cfg, s.set = cfg, set
	}
	return s
}

// LookupMetrics returns the running metrics TSDB of exporter id.
func LookupMetrics(id component.ID) (*metrics.DB, bool) {
	registryMu.Lock()
	s, ok := registry[id]
	registryMu.Unlock()
	if !ok {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mdb, s.mdb != nil
}

// Lookup returns the running store of exporter id, for the query APIs.
func Lookup(id component.ID) (*DB, bool) {
	registryMu.Lock()
	s, ok := registry[id]
	registryMu.Unlock()
	if !ok {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db, s.db != nil
}

// Admit is the receivers' admission check (otlpguard.Admission,
// lokireceiver): it refuses a request of signal sig, before the request is
// read, while any store running in this process is at its memory budget
// or the process's live heap is over its admission threshold
// (memlimit.CheckHeap), with the same retryable status as the
// exporter's own refusal. Memory is the process's, so a store at its
// budget refuses for every pipeline; a process without a store (an agent)
// leaves its memory to the memory_limiter processor.
//
// It finds the stores through the same registry as Lookup; both go when
// the store becomes an extension found through the host.
func Admit(sig block.Signal) error {
	var first *DB
	registryMu.Lock()
	for _, s := range registry {
		s.mu.Lock()
		db := s.db
		s.mu.Unlock()
		if db == nil {
			continue
		}
		if err := db.Admit(sig); err != nil {
			registryMu.Unlock()
			return retryLater(err)
		}
		if first == nil {
			first = db
		}
	}
	registryMu.Unlock()
	if first == nil {
		return nil
	}
	if err := memlimit.CheckHeap(); err != nil {
		first.countRefusedRequest(sig, RefusedForMemory)
		return retryLater(err)
	}
	return nil
}

func (s *shared) start(ctx context.Context, host component.Host) error {
	s.hostMu.Lock()
	s.hosts = append(s.hosts, host)
	s.hostMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refs++
	if s.db != nil {
		// The second signal's instance: give it the current status too.
		s.report(s.db.Problems())
		return nil
	}
	bucket, err := openBucket(ctx, s.cfg)
	if err != nil {
		return err
	}
	sync := wal.SyncAlways
	if s.cfg.WAL.Sync == "interval" {
		sync = wal.SyncInterval
	}
	budget := s.cfg.Memory.budget(memlimit.Container(), memlimit.Host())
	s.set.Logger.Info("store memory budget", zap.Int64("budget_mib", budget>>20))
	db, err := Open(ctx, Options{
		Dir:                s.cfg.Path,
		Bucket:             bucket,
		WAL:                wal.Options{Sync: sync, SyncInterval: s.cfg.WAL.SyncInterval, SegmentSize: s.cfg.WAL.SegmentSize},
		MaxBlockBytes:      s.cfg.Block.MaxSize,
		MaxBlockDuration:   s.cfg.Block.MaxDuration,
		RowGroupRows:       s.cfg.Block.RowGroupSpans,
		MemoryBudget:       budget,
		Limits:             AttributeLimits{MaxAttributeBytes: s.cfg.Limits.MaxAttributeBytes, MaxAttributes: s.cfg.Limits.MaxAttributes},
		RetentionAge:       s.cfg.Retention.MaxAge,
		RetentionBytes:     s.cfg.Retention.MaxSize,
		CompactionInterval: s.cfg.Compaction.Interval,
		CompactMinBlocks:   s.cfg.Compaction.MinBlocks,
		CompactMaxBytes:    s.cfg.Compaction.MaxSize,
		StallBlocks:        s.cfg.Compaction.StallBlocks,
		Logger:             s.set.Logger,
		OnProblem:          s.report,
	})
	if err != nil {
		return fmt.Errorf("open store at %s: %w", s.cfg.Path, err)
	}
	mc := s.cfg.Metrics
	mdb, err := metrics.Open(metrics.Options{
		Dir:       filepath.Join(s.cfg.Path, "metrics"),
		Retention: mc.Retention,
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
	s.db, s.mdb = db, mdb
	if err := s.registerMetrics(); err != nil {
		s.set.Logger.Warn("store self-metrics", zap.Error(err))
	}
	s.report(db.Problems())
	return nil
}

// registerMetrics publishes the store's memory use and refusals among the
// Collector's own metrics (:8888), where the UI's Sightline page and
// alerts find them.
func (s *shared) registerMetrics() error {
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
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7); err != nil {
		return err
	}
	spans := metric.WithAttributes(attribute.String("signal", "traces"))
	logs := metric.WithAttributes(attribute.String("signal", "logs"))
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s.mu.Lock()
		db := s.db
		s.mu.Unlock()
		if db == nil {
			return nil
		}
		st := db.Stats()
		o.ObserveInt64(mem, st.MemoryBytes)
		o.ObserveInt64(budget, st.MemoryBudget)
		o.ObserveInt64(pending, int64(st.PendingHeads))
		o.ObserveInt64(refused, st.RefusedSpans, spans)
		o.ObserveInt64(refused, st.RefusedLogs, logs)
		for sig, name := range []string{"traces", "logs"} {
			for r, n := range st.RefusedRequests[sig] {
				o.ObserveInt64(refusedReqs, n, metric.WithAttributes(attribute.String("signal", name), attribute.String("reason", RefusalReason(r).String())))
			}
		}
		o.ObserveInt64(level0, st.Level0TraceBlocks, spans)
		o.ObserveInt64(level0, st.Level0LogBlocks, logs)
		o.ObserveInt64(stall, int64(st.StallBlocks))
		return nil
	}, mem, budget, pending, refused, refusedReqs, level0, stall)
	if err != nil {
		return err
	}
	s.metricsReg = reg
	return nil
}

// report publishes the store's problems as component status, which the
// health_check extension shows (see configs/all-in-one.yaml);
// reportMetrics adds the metrics store's write failure to them.
func (s *shared) report(problems []error) {
	s.hostMu.Lock()
	defer s.hostMu.Unlock()
	s.problems = problems
	s.publishLocked()
}

func (s *shared) reportMetrics(err error) {
	s.hostMu.Lock()
	defer s.hostMu.Unlock()
	s.metricsProblem = err
	s.publishLocked()
}

func (s *shared) publishLocked() {
	problems := s.problems
	if s.metricsProblem != nil {
		problems = append(slices.Clip(problems), s.metricsProblem)
	}
	ev := componentstatus.NewEvent(componentstatus.StatusOK)
	if len(problems) > 0 {
		ev = componentstatus.NewRecoverableErrorEvent(errors.Join(problems...))
	}
	for _, h := range s.hosts {
		componentstatus.ReportStatus(h, ev)
	}
}

func (s *shared) shutdown(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refs == 0 {
		return nil
	}
	s.refs--
	if s.refs > 0 || s.db == nil {
		return nil
	}
	if s.metricsReg != nil {
		s.metricsReg.Unregister()
		s.metricsReg = nil
	}
	err := errors.Join(s.db.Close(), s.mdb.Close())
	s.db, s.mdb = nil, nil
	s.hostMu.Lock()
	s.hosts = nil
	s.hostMu.Unlock()
	registryMu.Lock()
	delete(registry, s.id)
	registryMu.Unlock()
	return err
}

func openBucket(ctx context.Context, cfg *Config) (*objstore.Store, error) {
	sc := cfg.Storage
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

// consumeErr marks what a retry cannot fix as permanent; a failed write to
// disk is retryable (gRPC Unavailable, HTTP 503 at the OTLP receiver). A
// refusal for the memory budget or the compaction backlog is backpressure: Unavailable with
// RetryInfo, which the OTLP receiver also turns into HTTP 503 with
// Retry-After, so clients back off for that long.
func consumeErr(err error) error {
	switch {
	case err == nil || errors.Is(err, ErrWrite):
		return err
	case errors.Is(err, ErrOverBudget), errors.Is(err, ErrBacklog):
		return retryLater(err)
	}
	return consumererror.NewPermanent(err)
}

// backoff is the delay a refused client is asked to wait: about the time
// the block writer takes to free a head's worth of memory.
const backoff = time.Second

func retryLater(err error) error {
	st, derr := status.New(codes.Unavailable, err.Error()).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(backoff)})
	if derr != nil {
		return err
	}
	return st.Err()
}

func options(s *shared) []exporterhelper.Option {
	// No queue, no retry and no timeout: the exporter returns only once
	// the data is durable, so the receiver acknowledges nothing that could
	// be lost, and the client's own retry policy applies.
	return []exporterhelper.Option{
		exporterhelper.WithStart(s.start),
		exporterhelper.WithShutdown(s.shutdown),
		exporterhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}),
		exporterhelper.WithTimeout(exporterhelper.TimeoutConfig{}),
	}
}

func createTraces(ctx context.Context, set exporter.Settings, c component.Config) (exporter.Traces, error) {
	s := getShared(set, c.(*Config))
	return exporterhelper.NewTraces(ctx, set, c, func(_ context.Context, td ptrace.Traces) error {
		return consumeErr(s.db.AppendTraces(td))
	}, options(s)...)
}

func createLogs(ctx context.Context, set exporter.Settings, c component.Config) (exporter.Logs, error) {
	s := getShared(set, c.(*Config))
	return exporterhelper.NewLogs(ctx, set, c, func(_ context.Context, ld plog.Logs) error {
		return consumeErr(s.db.AppendLogs(ld))
	}, options(s)...)
}

func createMetrics(ctx context.Context, set exporter.Settings, c component.Config) (exporter.Metrics, error) {
	s := getShared(set, c.(*Config))
	return exporterhelper.NewMetrics(ctx, set, c, func(ctx context.Context, md pmetric.Metrics) error {
		warnings, err := s.mdb.AppendOTLP(ctx, md)
		for _, w := range warnings {
			s.set.Logger.Warn("metrics translation", zap.String("warning", w))
		}
		if err != nil && errors.Is(err, metrics.ErrWrite) {
			return fmt.Errorf("%w: %w", ErrWrite, err)
		}
		return consumeErr(err)
	}, options(s)...)
}
