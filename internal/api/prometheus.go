package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/grafana/regexp"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/route"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/notifications"
	v1 "github.com/prometheus/prometheus/web/api/v1"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.uber.org/zap/exp/zapslog"

	"github.com/sightlinehq/sightline/internal/metrics"
	"github.com/sightlinehq/sightline/internal/otlpguard"
)

// newPromEngine returns the PromQL engine of the API and its rules, with
// the query limits of cfg.
func newPromEngine(cfg *Config) *promql.Engine {
	return promql.NewEngine(promql.EngineOpts{
		MaxSamples:           cfg.Limits.MaxSamples,
		Timeout:              cfg.Limits.Timeout,
		LookbackDelta:        5 * time.Minute,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		EnablePerStepStats:   true,
		// A subquery without a step ([10m:]) steps at the global
		// evaluation interval, as in Prometheus.
		NoStepSubqueryIntervalFn: func(int64) int64 { return cfg.Rules.EvaluationInterval.Milliseconds() },
	})
}

// prometheusRoutes mounts Prometheus's own HTTP API (web/api/v1) at
// /api/v1 over the embedded TSDB, so that response shapes, parameter
// parsing and errors are Prometheus's by construction. Remote write
// (/api/v1/write) and OTLP (/api/v1/otlp/v1/metrics) append to it.
func (a *API) prometheusRoutes(mux *http.ServeMux) {
	src := a.metrics
	reg := prometheus.NewRegistry()
	p := v1.NewAPI(a.promql, src, src, src, src,
		func(context.Context) v1.ScrapePoolsRetriever { return noTargets{} },
		func(context.Context) v1.TargetRetriever { return noTargets{} },
		func(ctx context.Context) v1.AlertmanagerRetriever { return a.alertmanagers(ctx) },
		a.promConfig,
		map[string]string{},
		v1.GlobalURLOptions{ListenAddress: a.cfg.NetAddr.Endpoint, Host: a.cfg.NetAddr.Endpoint, Scheme: "http"},
		func(f http.HandlerFunc) http.HandlerFunc { return f },
		src, "", false, false, 0,
		// Its write handlers log every refused request; without a logger
		// a malformed remote write panicked on that log call.
		slog.New(zapslog.NewHandler(a.logger.Core())),
		func(ctx context.Context) v1.RulesRetriever { return a.ruleGroups(ctx) },
		0, 0, 0,
		false,
		regexp.MustCompile(`^$`),
		func() (v1.RuntimeInfo, error) { return v1.RuntimeInfo{GoroutineCount: runtime.NumGoroutine()}, nil },
		&v1.PrometheusVersion{Version: a.build.Version, GoVersion: runtime.Version()},
		func() []notifications.Notification { return nil },
		func() (<-chan notifications.Notification, func(), bool) { return nil, func() {}, false },
		reg, reg,
		v1.DefaultStatsRenderer,
		true, remoteapi.MessageTypes{remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType},
		true, false, false,
		false,
		5*time.Minute,
		false, false,
		nil,
		nil,
		v1.OpenAPIOptions{},
		parser.NewParser(parser.Options{}),
	)
	r := route.New()
	p.Register(r.WithPrefix("/api/v1"))
	api := a.limitPromQL(a.promTenancy(r))
	mux.Handle("/api/v1/", api)
	mux.Handle("GET /api/v1/metadata", a.promTenancy(http.HandlerFunc(a.promMetadata)))
	mux.Handle("/api/v1/write", remoteWriteGuard(api, otlpguard.NewInflight(otlpguard.Limits{})))
	// Prometheus's OTLP handler decodes with pdata: the same guard as the
	// OTLP receiver's keeps deep values from overflowing its stack.
	const otlpPath = "/api/v1/otlp/v1/metrics"
	mux.Handle(otlpPath, otlpguard.HTTPHandler(a.otlpStatus(api), map[string]otlpguard.Signal{otlpPath: otlpguard.Metrics}, otlpguard.Limits{}))
	// Prometheus bounds samples, points and time; max_time_range is ours.
	mux.Handle("/api/v1/query_range", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// start and end are required here, so 0 is the epoch, not
		// "unbounded": start=0 asks for the whole history, and the limit
		// applies to it as to any other range.
		start, err1 := parseTime("start", req.FormValue("start"))
		end, err2 := parseTime("end", req.FormValue("end"))
		// As checkRange: the length compared as unsigned is exact.
		if m := a.cfg.Limits.MaxTimeRange; err1 == nil && err2 == nil && m > 0 && end >= start && uint64(end-start) > uint64(m) {
			a.fail(w, req, styleJSON, fmt.Errorf("%w: the query time range %s exceeds the limit of %s", errLimit, time.Duration(end-start), m))
			return
		}
		api.ServeHTTP(w, req)
	}))
}

// otlpWriteKey carries an OTLP write's *otlpWrite, which the store's
// appenders fill in for otlpStatus.
type otlpWriteKey struct{}

// otlpWrite is what one request to Prometheus's OTLP handler did to the
// store: whether a commit failed, and how many samples the series limit
// refused (metrics.SkipSeriesLimit).
type otlpWrite struct {
	failed  atomic.Bool
	limited atomic.Int64
}

// otlpStatus corrects the status of Prometheus's OTLP handler, which
// answers 500 to anything that fails after decoding: metrics its
// translator refuses (an empty metric, delta temporality) are the
// client's and permanent, so 400, as OTLP asks; a failed write to the
// store is retryable, so 503, which OTLP clients retry (they do not
// retry a 500). Samples of new series past the series limit are skipped
// and the rest stored, and the answer is OTLP's partial success naming
// how many were rejected, where Prometheus would refuse the whole request.
func (a *API) otlpStatus(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wr := new(otlpWrite)
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), otlpWriteKey{}, wr)))
		code := rec.Code
		if code == http.StatusInternalServerError {
			code = http.StatusBadRequest
			if wr.failed.Load() {
				code = http.StatusServiceUnavailable
			}
		}
		body := rec.Body.Bytes()
		// Only the metrics store's appenders refuse for the series limit,
		// but a handler over another TSDB must not reach a nil store.
		if n := wr.limited.Load(); n > 0 && code == http.StatusOK && a.stores.Metrics != nil {
			if b, ct, err := partialSuccess(r.Header.Get("Content-Type"), n, a.stores.Metrics.SeriesLimitError(n)); err == nil {
				body = b
				rec.Header().Set("Content-Type", ct)
			}
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(code)
		_, _ = w.Write(body)
	})
}

// partialSuccess encodes an ExportMetricsServiceResponse that rejects n
// data points for reason, in the request's encoding.
func partialSuccess(contentType string, n int64, reason error) ([]byte, string, error) {
	resp := pmetricotlp.NewExportResponse()
	resp.PartialSuccess().SetRejectedDataPoints(n)
	resp.PartialSuccess().SetErrorMessage(reason.Error())
	if strings.HasPrefix(contentType, "application/json") {
		b, err := resp.MarshalJSON()
		return b, "application/json", err
	}
	b, err := resp.MarshalProto()
	return b, "application/x-protobuf", err
}

// failFlagAppenderV2 sets the request's failed flag when its commit
// fails.
type failFlagAppenderV2 struct {
	storage.AppenderV2
	failed *atomic.Bool
}

func (a failFlagAppenderV2) Commit() error {
	err := a.AppenderV2.Commit()
	if err != nil {
		a.failed.Store(true)
	}
	return err
}

// promConfig is the Prometheus config the API package reads: for the OTLP
// write path, the exporter's OTLP translation settings (resource
// attribute promotion, naming), so both OTLP paths store alike.
func (a *API) promConfig() config.Config {
	c := config.DefaultConfig
	if m := a.stores.Metrics; m != nil {
		c.OTLPConfig = m.OTLP()
	}
	return c
}

// ruleGroups and alertmanagers serve /api/v1/rules, /api/v1/alerts and
// /api/v1/alertmanagers from the rule manager, if rules are configured.
// Rules are the operator's and run over every tenant's series, so their
// alerts may carry any tenant's labels: a tenant's request sees none.
func (a *API) ruleGroups(ctx context.Context) v1.RulesRetriever {
	if _, tenant := promTenant(ctx); a.rules == nil || tenant {
		return noRules{}
	}
	return a.rules
}

func (a *API) alertmanagers(ctx context.Context) v1.AlertmanagerRetriever {
	if _, tenant := promTenant(ctx); a.rules == nil || tenant {
		return noAlertmanagers{}
	}
	return a.rules
}

// keepSnappy is the API server's decoder for Content-Encoding: snappy.
// confighttp would decode it and drop the header; Prometheus's remote
// write handler, the one client of snappy here, then decodes the body a
// second time. Passing the body through leaves the decoding to it (it
// takes a body without Content-Encoding as block snappy).
func keepSnappy(body io.ReadCloser) (io.ReadCloser, error) { return body, nil }

// lazyTSDB is the Prometheus API's and the rules' view of the storage
// extension's metrics TSDB (API.stores); without one, every call fails
// with errNotReady.
type lazyTSDB struct {
	a *API
	// open replaces the storage's TSDB in tests.
	open func() (*tsdb.DB, error)
}

func (l *lazyTSDB) db() (*tsdb.DB, error) {
	if l.open != nil {
		return l.open()
	}
	m := l.a.stores.Metrics
	if m == nil {
		return nil, errNotReady
	}
	return m.TSDB(), nil
}

// The queriers and appenders are scoped to the request's tenant when
// tenancy is on (tenant_metrics.go).

// queryable is what series are read from: the metrics store's
// (metrics.DB.Queryable, a remote TSDB for a querier of a shared bucket).
func (l *lazyTSDB) queryable() (storage.SampleAndChunkQueryable, error) {
	if l.open == nil && l.a.stores.Metrics != nil {
		return l.a.stores.Metrics.Queryable(), nil
	}
	return l.db()
}

func (l *lazyTSDB) Querier(mint, maxt int64) (storage.Querier, error) {
	db, err := l.queryable()
	if err != nil {
		return nil, err
	}
	q, err := db.Querier(mint, maxt)
	if err != nil || !l.a.cfg.Tenancy.Enabled {
		return q, err
	}
	return tenantSeriesQuerier{Querier: q, label: l.a.tenantLabel()}, nil
}

func (l *lazyTSDB) ChunkQuerier(mint, maxt int64) (storage.ChunkQuerier, error) {
	db, err := l.queryable()
	if err != nil {
		return nil, err
	}
	q, err := db.ChunkQuerier(mint, maxt)
	if err != nil || !l.a.cfg.Tenancy.Enabled {
		return q, err
	}
	return tenantChunkQuerier{ChunkQuerier: q, label: l.a.tenantLabel()}, nil
}

func (l *lazyTSDB) ExemplarQuerier(ctx context.Context) (storage.ExemplarQuerier, error) {
	db, err := l.db()
	if err != nil {
		return nil, err
	}
	q, err := db.ExemplarQuerier(ctx)
	if err != nil || !l.a.cfg.Tenancy.Enabled {
		return q, err
	}
	return tenantExemplarQuerier{ExemplarQuerier: q, ctx: ctx, label: l.a.tenantLabel()}, nil
}

func (l *lazyTSDB) CleanTombstones() error { return errAdminDisabled }
func (l *lazyTSDB) Delete(context.Context, int64, int64, ...*labels.Matcher) error {
	return errAdminDisabled
}
func (l *lazyTSDB) Snapshot(string, bool) error { return errAdminDisabled }

func (l *lazyTSDB) Stats(statsByLabelName string, limit int) (*tsdb.Stats, error) {
	db, err := l.db()
	if err != nil {
		return nil, err
	}
	return db.Head().Stats(statsByLabelName, limit), nil
}

func (l *lazyTSDB) WALReplayStatus() (tsdb.WALReplayStatus, error) {
	// The store opens the TSDB, WAL replay included, before it serves.
	_, err := l.db()
	return tsdb.WALReplayStatus{}, err
}

func (l *lazyTSDB) BlockMetas() ([]tsdb.BlockMeta, error) {
	db, err := l.db()
	if err != nil {
		return nil, err
	}
	var out []tsdb.BlockMeta
	for _, b := range db.Blocks() {
		out = append(out, b.Meta())
	}
	return out, nil
}

// Appender and AppenderV2 hand out the TSDB's appenders; before the
// store has opened, appends fail with errNotReady, which the write
// handlers answer with a 5xx for the sender to retry.
//
// They are the metrics store's, not the TSDB's own: only those keep the
// WAL whole after a failed write (metrics.DB).
func (l *lazyTSDB) Appender(ctx context.Context) storage.Appender {
	var app storage.Appender
	if l.open != nil {
		db, err := l.open()
		if err != nil {
			return notReadyAppender{err}
		}
		app = db.Appender(ctx)
	} else {
		m := l.a.stores.Metrics
		if m == nil {
			return notReadyAppender{errNotReady}
		}
		app = m.Appender(ctx)
	}
	if t, ok := promTenant(ctx); ok {
		return tenantAppender{Appender: app, label: l.a.tenantLabel(), tenant: t}
	}
	return app
}

func (l *lazyTSDB) AppenderV2(ctx context.Context) storage.AppenderV2 {
	var app storage.AppenderV2
	if l.open != nil {
		db, err := l.open()
		if err != nil {
			return notReadyAppenderV2{err}
		}
		app = db.AppenderV2(ctx)
	} else {
		m := l.a.stores.Metrics
		if m == nil {
			return notReadyAppenderV2{errNotReady}
		}
		app = m.AppenderV2(ctx)
	}
	if wr, ok := ctx.Value(otlpWriteKey{}).(*otlpWrite); ok {
		app = metrics.SkipSeriesLimit(failFlagAppenderV2{AppenderV2: app, failed: &wr.failed}, &wr.limited)
	}
	if t, ok := promTenant(ctx); ok {
		return tenantAppenderV2{AppenderV2: app, label: l.a.tenantLabel(), tenant: t}
	}
	return app
}

type notReadyAppender struct{ err error }

func (n notReadyAppender) Append(storage.SeriesRef, labels.Labels, int64, float64) (storage.SeriesRef, error) {
	return 0, n.err
}
func (n notReadyAppender) SetOptions(*storage.AppendOptions) {}
func (n notReadyAppender) AppendExemplar(storage.SeriesRef, labels.Labels, exemplar.Exemplar) (storage.SeriesRef, error) {
	return 0, n.err
}
func (n notReadyAppender) AppendHistogram(storage.SeriesRef, labels.Labels, int64, *histogram.Histogram, *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return 0, n.err
}
func (n notReadyAppender) AppendHistogramSTZeroSample(storage.SeriesRef, labels.Labels, int64, int64, *histogram.Histogram, *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return 0, n.err
}
func (n notReadyAppender) UpdateMetadata(storage.SeriesRef, labels.Labels, metadata.Metadata) (storage.SeriesRef, error) {
	return 0, n.err
}
func (n notReadyAppender) AppendSTZeroSample(storage.SeriesRef, labels.Labels, int64, int64) (storage.SeriesRef, error) {
	return 0, n.err
}
func (n notReadyAppender) Commit() error   { return n.err }
func (n notReadyAppender) Rollback() error { return nil }

type notReadyAppenderV2 struct{ err error }

func (n notReadyAppenderV2) Append(storage.SeriesRef, labels.Labels, int64, int64, float64, *histogram.Histogram, *histogram.FloatHistogram, storage.AppendV2Options) (storage.SeriesRef, error) {
	return 0, n.err
}
func (n notReadyAppenderV2) Commit() error   { return n.err }
func (n notReadyAppenderV2) Rollback() error { return nil }

var errAdminDisabled = fmt.Errorf("admin APIs are disabled")

type noTargets struct{}

func (noTargets) ScrapePools() []string                       { return nil }
func (noTargets) TargetsActive() map[string][]*scrape.Target  { return nil }
func (noTargets) TargetsDropped() map[string][]*scrape.Target { return nil }
func (noTargets) TargetsDroppedCounts() map[string]int        { return nil }
func (noTargets) ScrapePoolConfig(string) (*config.ScrapeConfig, error) {
	return nil, fmt.Errorf("no scrape pools")
}

type noAlertmanagers struct{}

func (noAlertmanagers) Alertmanagers() []*url.URL        { return nil }
func (noAlertmanagers) DroppedAlertmanagers() []*url.URL { return nil }

type noRules struct{}

func (noRules) RuleGroups() []*rules.Group           { return nil }
func (noRules) AlertingRules() []*rules.AlertingRule { return nil }
