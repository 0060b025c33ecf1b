package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/prometheus/promql"
	"go.opentelemetry.io/collector/component"
	"go.uber.org/zap"

	"github.com/sightlinehq/sightline/internal/alerting"
	"github.com/sightlinehq/sightline/internal/dashboard"
	"github.com/sightlinehq/sightline/internal/metrics"
	"github.com/sightlinehq/sightline/internal/query/logql"
	"github.com/sightlinehq/sightline/internal/query/traceql"
	"github.com/sightlinehq/sightline/internal/store"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/tenancyprocessor"
	"github.com/sightlinehq/sightline/internal/ui"
)

// Source opens a Querier per request. The query engines see only this.
type Source func(ctx context.Context) (storage.Querier, error)

// errNotReady is returned by an API that has no store to read (Stores
// left empty).
var errNotReady = errors.New("store not ready")

// StoreSource reads db.
func StoreSource(db *store.DB) Source {
	return db.Querier
}

// Stores are the stores of the storage extension, for what the query
// engines do not cover: the status page reads their figures, and the
// Prometheus API runs over the metrics TSDB. Either may be nil in tests.
type Stores struct {
	Traces     *store.DB
	Metrics    *metrics.DB
	Dashboards *dashboard.Store
}

// API holds the handlers.
type API struct {
	cfg    *Config
	source Source
	stores Stores
	build  component.BuildInfo
	logger *zap.Logger
	now    func() time.Time

	// promql is the PromQL engine of the Prometheus API and the rules;
	// metrics finds the embedded TSDB.
	promql  *promql.Engine
	metrics *lazyTSDB
	// rules evaluates the configured rule files; nil without any.
	rules *alerting.Manager
	// tails holds a token per live tail being served (loki_tail.go).
	tails chan struct{}
	// metricsCache keeps TraceQL metrics' partial series per block; nil
	// when limits::metrics_cache_bytes is 0.
	metricsCache *traceql.MetricsCache
}

// New returns the API over source and stores.
func New(cfg *Config, source Source, stores Stores, build component.BuildInfo, logger *zap.Logger) *API {
	a := &API{cfg: cfg, source: source, stores: stores, build: build, logger: logger, now: time.Now, promql: newPromEngine(cfg),
		tails: make(chan struct{}, maxTails)}
	a.metrics = &lazyTSDB{a: a}
	if cfg.Limits.MetricsCacheBytes > 0 {
		a.metricsCache = traceql.NewMetricsCache(cfg.Limits.MetricsCacheBytes)
	}
	return a
}

// StartRules starts evaluating the configured rule files, if any, over
// the metrics store. StopRules stops them.
func (a *API) StartRules(logger *slog.Logger) error {
	if !a.cfg.Rules.Enabled() && len(a.cfg.Rules.Alertmanagers) == 0 {
		return nil
	}
	m, err := alerting.New(a.cfg.Rules, a.promql, a.metrics, a.metrics, logger, nil)
	if err != nil {
		return err
	}
	if err := m.Start(); err != nil {
		return err
	}
	a.rules = m
	return nil
}

// StopRules stops rule evaluation and drains the alert queues.
func (a *API) StopRules() {
	if a.rules != nil {
		a.rules.Stop()
	}
}

// Handler returns the HTTP handler with every route.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	a.tempoRoutes(mux)
	a.jaegerRoutes(mux)
	a.lokiRoutes(mux)
	a.nativeRoutes(mux)
	a.prometheusRoutes(mux)
	a.dashboardRoutes(mux)
	mux.Handle(ui.Prefix, ui.Handler())
	mux.Handle("GET /{$}", http.RedirectHandler(ui.Prefix, http.StatusFound))
	return a.recoverPanics(mux)
}

// recoverPanics answers a request whose handler panicked (a bug, in ours
// or in a library's decoder) with a 500 and logs the stack, instead of
// net/http's default of closing the connection without a word. The
// process and every other request go on either way.
func (a *API) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil || v == http.ErrAbortHandler {
				if v != nil {
					panic(v)
				}
				return
			}
			a.logger.Error("query API handler panicked", zap.String("path", r.URL.Path), zap.Any("panic", v), zap.StackSkip("stack", 2))
			http.Error(w, fmt.Sprintf("internal error: %v", v), http.StatusInternalServerError)
		}()
		next.ServeHTTP(w, r)
	})
}

// style selects the error body format of the API family.
type style uint8

const (
	styleText   style = iota // Tempo and Loki: the message as text/plain
	styleJaeger              // {"data":null,"errors":[{"code","msg"}]}
	styleJaegerV3
	styleJSON // {"status":"error","errorType","error"}
)

// maxSteps bounds the points per series of a range query, as Prometheus
// and Loki bound them.
const maxSteps = 11_000

// errBadRequest marks problems with parameters.
var errBadRequest = errors.New("bad request")

// errLimit marks requests refused by a configured limit.
var errLimit = errors.New("limit exceeded")

// errTenant marks requests without the tenant header when tenancy is on.
var errTenant = errors.New("no tenant")

// errBusy marks requests refused because the server already serves as
// many of their kind as it allows (live tails).
var errBusy = errors.New("too many concurrent requests")

// errNotPerTenant marks server-wide views a tenant may not see.
var errNotPerTenant = errors.New("not available per tenant")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}

// status maps an error to its HTTP status. It is the only place that does.
func status(err error) int {
	var tqe *traceql.Error
	var lqe *logql.Error
	switch {
	case errors.As(err, &tqe), errors.As(err, &lqe), errors.Is(err, errBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, errTenant):
		return http.StatusUnauthorized
	case errors.Is(err, errNotPerTenant):
		return http.StatusForbidden
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, dashboard.ErrNotFound),
		errors.Is(err, dashboard.ErrQueryNotFound):
		return http.StatusNotFound
	case errors.Is(err, dashboard.ErrInvalid), errors.Is(err, dashboard.ErrProvisioned):
		return http.StatusBadRequest
	case errors.Is(err, dashboard.ErrVersionMismatch):
		return http.StatusPreconditionFailed
	case errors.Is(err, dashboard.ErrTooMany):
		return http.StatusUnprocessableEntity
	case errors.Is(err, errLimit), errors.Is(err, storage.ErrBytesLimit), errors.Is(err, storage.ErrTraceTooLarge),
		errors.Is(err, traceql.ErrTooManyTraces), errors.Is(err, traceql.ErrTooManySeries), errors.Is(err, traceql.ErrTooManyValues),
		errors.Is(err, logql.ErrTooManySeries):
		return http.StatusUnprocessableEntity
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled):
		return 499 // client closed request, as nginx and Loki report it
	case errors.Is(err, errNotReady):
		return http.StatusServiceUnavailable
	case errors.Is(err, errBusy):
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, st style, err error) {
	code := status(err)
	msg := err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		msg = fmt.Sprintf("query timed out after %s; narrow the time range or the query", a.cfg.Limits.Timeout)
	}
	if code >= 500 {
		a.logger.Warn("query failed", zap.String("path", r.URL.Path), zap.Error(err))
	}
	switch st {
	case styleJaeger:
		writeJSON(w, code, map[string]any{"data": nil, "total": 0, "limit": 0, "offset": 0,
			"errors": []map[string]any{{"code": code, "msg": msg}}})
	case styleJaegerV3:
		writeJSON(w, code, map[string]any{"error": map[string]any{"httpCode": code, "message": msg}})
	case styleJSON:
		writeJSON(w, code, map[string]any{"status": "error", "errorType": errorType(code), "error": msg})
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(code)
		fmt.Fprintln(w, msg)
	}
}

func errorType(code int) string {
	switch code {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
		return "bad_data"
	case http.StatusUnprocessableEntity:
		return "execution"
	case http.StatusServiceUnavailable:
		return "timeout"
	case 499:
		return "canceled"
	}
	return "internal"
}

// validUTF8 replaces invalid UTF-8 in OTLP JSON that pdata wrote with
// U+FFFD, as encoding/json does for everything else: telemetry strings are
// stored as sent, and a JSON reader (Grafana, a browser) may refuse a
// response that is not UTF-8. JSON's own syntax is ASCII, so only string
// contents change.
func validUTF8(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	return bytes.ToValidUTF8(b, []byte("\uFFFD"))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	// Encoded whole before the status is sent: a value encoding/json
	// refuses (a non-finite float a client sent) would otherwise leave a
	// 200 with an empty body, which clients read as an empty answer.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(true)
	if err := enc.Encode(v); err != nil {
		http.Error(w, fmt.Sprintf("encode response: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// query is the per-request context of a read: a Querier, scoped to the
// tenant when tenancy is on, with a deadline and read accounting.
type query struct {
	ctx    context.Context
	q      storage.Querier
	stats  *storage.Stats
	cancel context.CancelFunc
}

func (qr *query) close() {
	qr.q.Close()
	qr.cancel()
}

func (a *API) open(r *http.Request) (*query, error) {
	ctx := r.Context()
	cancel := context.CancelFunc(func() {})
	if a.cfg.Limits.Timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, a.cfg.Limits.Timeout)
	}
	// The bound on spans a trace holds the lookups by ID and the traces a
	// search or a structural metrics query assembles (ErrTraceTooLarge:
	// 422 by ID, left out of a search and logged by skipped).
	st := &storage.Stats{MaxBytes: a.cfg.Limits.MaxBytesScanned, MaxTraceSpans: a.cfg.Limits.MaxSpansPerTrace}
	ctx = storage.WithStats(ctx, st)
	tenant, err := a.tenant(r)
	if err != nil {
		cancel()
		return nil, err
	}
	q, err := a.source(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	if tenant != "" {
		q = newTenantQuerier(q, a.cfg.Tenancy.ResourceAttribute, tenant)
	}
	return &query{ctx: ctx, q: q, stats: st, cancel: cancel}, nil
}

// skipped logs the traces a query left out for holding more spans than
// limits::max_spans_per_trace. The answer is otherwise complete; each of
// them, asked for by ID, is refused with 422.
func (a *API) skipped(r *http.Request, traces int) {
	if traces > 0 {
		a.logger.Warn("traces left out of a query for holding more spans than limits::max_spans_per_trace",
			zap.String("path", r.URL.Path), zap.Int("traces", traces), zap.Int("max_spans_per_trace", a.cfg.Limits.MaxSpansPerTrace))
	}
}

// tenant returns the request's tenant when tenancy is on ("" when off):
// the tenant header, which the UI's session cookie also sets (session.go).
// A request without one is refused with errTenant (401), one naming
// several or an ID that tenancyprocessor.CheckTenant refuses with 400.
func (a *API) tenant(r *http.Request) (string, error) {
	if !a.cfg.Tenancy.Enabled {
		return "", nil
	}
	vals := r.Header.Values(a.cfg.Tenancy.Header)
	id := ""
	for _, v := range vals {
		if id != "" && v != id {
			return "", badRequest("the %s header names more than one tenant", a.cfg.Tenancy.Header)
		}
		id = v
	}
	if id == "" {
		return "", fmt.Errorf("%w: the %s header is required", errTenant, a.cfg.Tenancy.Header)
	}
	if err := tenancyprocessor.CheckTenant(id); err != nil {
		return "", badRequest("%v", err)
	}
	return id, nil
}

// checkRange enforces max_time_range on [start, end] (unix ns).
func (a *API) checkRange(start, end int64) error {
	if start != 0 && end != 0 && end < start {
		return badRequest("end must not be before start")
	}
	// The difference of two int64 can pass int64 (start -9e18, end 9e18
	// came out negative, under any limit); with end >= start, as uint64
	// it is exact.
	if m := a.cfg.Limits.MaxTimeRange; m > 0 && start != 0 && end != 0 && uint64(end-start) > uint64(m) {
		return fmt.Errorf("%w: the query time range %s exceeds the limit of %s", errLimit, time.Duration(end-start), m)
	}
	return nil
}

// defaultRange fills in a missing (zero) bound of a search's time range:
// the end is now, the start an hour before the end, as Tempo and Loki
// default.
func (a *API) defaultRange(start, end int64) (int64, int64) {
	if end == 0 {
		end = a.now().UnixNano()
	}
	if start == 0 {
		start = end - int64(time.Hour)
	}
	return start, end
}

// checkLimit enforces max_results on a requested result count.
func (a *API) checkLimit(n int) error {
	if m := a.cfg.Limits.MaxResults; m > 0 && n > m {
		return fmt.Errorf("%w: limit %d exceeds the maximum of %d results", errLimit, n, m)
	}
	return nil
}

// parseTime accepts what Loki, Prometheus and Tempo accept: unix seconds
// (with a fraction), unix nanoseconds (more than 10 integer digits) or
// RFC3339(Nano). It returns unix nanoseconds.
func parseTime(name, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	// RFC3339 always has a colon, a number never: a number is not handed
	// to time.Parse, whose failure allocates its error.
	if strings.IndexByte(s, ':') >= 0 {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t.UnixNano(), nil
		}
	}
	if !strings.ContainsAny(s, ".eE") && len(strings.TrimPrefix(s, "-")) > 10 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err == nil {
			return n, nil
		}
	}
	// Seconds past 9e9 (the year 2255) overflow int64 nanoseconds. The
	// whole seconds and the fraction are scaled apart: f*1e9 at once
	// rounds 1796510953.25 to ...249999872.
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 9e9 {
		return 0, badRequest("invalid %s %q: want unix seconds, unix nanoseconds or RFC3339", name, s)
	}
	sec, frac := math.Modf(f)
	return int64(sec)*1e9 + int64(math.Round(frac*1e9)), nil
}

// unixParam reads an integer unix time in the given unit (nanoseconds
// per unit) as unix nanoseconds; absent is 0.
func unixParam(r *http.Request, name string, nsPerUnit int64, unit string) (int64, error) {
	s := r.FormValue(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/nsPerUnit {
		return 0, badRequest("invalid %s %q: want unix %s", name, s, unit)
	}
	return n * nsPerUnit, nil
}

// parseStep accepts a Prometheus/Go duration or float seconds.
func parseStep(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return 0, badRequest("step must be positive")
		}
		return int64(d), nil
	}
	// Seconds whose nanoseconds int64 cannot hold (1e300) converted to a
	// negative step, and those under a nanosecond (1e-12) to 0: either
	// passed the points-per-series check, and the engines then took a
	// step of their own choosing, a second, over the whole range.
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || !(f*1e9 >= 1 && f*1e9 < math.MaxInt64) {
		return 0, badRequest("invalid step %q: want a duration or a number of seconds from 1e-9 to 9e9", s)
	}
	return int64(f * 1e9), nil
}

func parseInt(name, s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, badRequest("invalid %s %q", name, s)
	}
	return n, nil
}

func (a *API) buildinfo(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{
		"version":   a.build.Version,
		"revision":  "",
		"branch":    "",
		"buildUser": "",
		"buildDate": "",
		"goVersion": runtime.Version(),
	})
}
