package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/sightlinehq/sightline/internal/query/traceql"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// The Jaeger APIs live under /jaeger because Jaeger's /api/traces/{id}
// would collide with Tempo's. Grafana's Jaeger datasource and Jaeger UI
// take a base URL, so pointing them at http://host:3200/jaeger is all
// they need.
func (a *API) jaegerRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /jaeger/api/services", a.jaegerServices)
	mux.HandleFunc("GET /jaeger/api/services/{service}/operations", a.jaegerServiceOps)
	mux.HandleFunc("GET /jaeger/api/operations", a.jaegerOperations)
	mux.HandleFunc("GET /jaeger/api/traces", a.jaegerSearch)
	mux.HandleFunc("GET /jaeger/api/traces/{id}", a.jaegerTrace)
	mux.HandleFunc("GET /jaeger/api/dependencies", a.jaegerDependencies)
	mux.HandleFunc("GET /jaeger/api/v3/services", a.v3Services)
	mux.HandleFunc("GET /jaeger/api/v3/operations", a.v3Operations)
	mux.HandleFunc("GET /jaeger/api/v3/traces", a.v3Search)
	mux.HandleFunc("GET /jaeger/api/v3/traces/{id}", a.v3Trace)
}

type jaegerResponse struct {
	Data   any   `json:"data"`
	Total  int   `json:"total"`
	Limit  int   `json:"limit"`
	Offset int   `json:"offset"`
	Errors []any `json:"errors"`
}

func jaegerOK(w http.ResponseWriter, data any, n int) {
	writeJSON(w, http.StatusOK, jaegerResponse{Data: data, Total: n})
}

// jaegerTimes reads start/end (microseconds) or lookback, as unix ns.
func (a *API) jaegerTimes(r *http.Request) (int64, int64, error) {
	start, err := unixParam(r, "start", 1e3, "microseconds")
	if err != nil {
		return 0, 0, err
	}
	end, err := unixParam(r, "end", 1e3, "microseconds")
	if err != nil {
		return 0, 0, err
	}
	if end == 0 {
		end = a.now().UnixNano()
	}
	if start == 0 {
		lookback := 48 * time.Hour
		if s := r.FormValue("lookback"); s != "" && s != "custom" {
			if lookback, err = time.ParseDuration(s); err != nil {
				return 0, 0, badRequest("invalid lookback %q", s)
			}
		}
		start = end - int64(lookback)
	}
	return start, end, a.checkRange(start, end)
}

func (a *API) jaegerServices(w http.ResponseWriter, r *http.Request) {
	svcs, err := a.services(r)
	if err != nil {
		a.fail(w, r, styleJaeger, err)
		return
	}
	jaegerOK(w, svcs, len(svcs))
}

func (a *API) services(r *http.Request) ([]string, error) {
	qr, err := a.open(r)
	if err != nil {
		return nil, err
	}
	defer qr.close()
	svcs, err := qr.q.Services(qr.ctx, 0, 0)
	if svcs == nil {
		svcs = []string{}
	}
	return svcs, err
}

func (a *API) operations(r *http.Request, service, kind string) ([]storage.Operation, error) {
	qr, err := a.open(r)
	if err != nil {
		return nil, err
	}
	defer qr.close()
	ops, err := qr.q.Operations(qr.ctx, service, 0, 0)
	if err != nil {
		return nil, err
	}
	if kind != "" {
		ops = slices.DeleteFunc(ops, func(o storage.Operation) bool { return traceql.KindName(o.Kind) != kind })
	}
	return ops, nil
}

func (a *API) jaegerServiceOps(w http.ResponseWriter, r *http.Request) {
	ops, err := a.operations(r, r.PathValue("service"), "")
	if err != nil {
		a.fail(w, r, styleJaeger, err)
		return
	}
	names := []string{}
	for _, o := range ops {
		names = append(names, o.Name)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	jaegerOK(w, names, len(names))
}

type jaegerOperation struct {
	Name     string `json:"name"`
	SpanKind string `json:"spanKind"`
}

func (a *API) jaegerOperations(w http.ResponseWriter, r *http.Request) {
	ops, err := a.operations(r, r.FormValue("service"), r.FormValue("spanKind"))
	if err != nil {
		a.fail(w, r, styleJaeger, err)
		return
	}
	out := []jaegerOperation{}
	for _, o := range ops {
		out = append(out, jaegerOperation{o.Name, traceql.KindName(o.Kind)})
	}
	jaegerOK(w, out, len(out))
}

// jaegerQuery is a Jaeger search: one span of the trace must match all of
// its conditions. It runs as the TraceQL query { c1 && c2 && ... }, so it
// takes the engine's pushdown and limits like any TraceQL search.
type jaegerQuery struct {
	start, end int64
	conds      []traceql.Cond
	limit      int
}

func (jq *jaegerQuery) equal(field traceql.Expr, v traceql.Static) {
	jq.conds = append(jq.conds, traceql.Cond{Field: field, Op: "=", Value: v})
}

// names adds the service and operation tests; empty ones match all.
func (jq *jaegerQuery) names(service, operation string) {
	if service != "" {
		jq.equal(traceql.ResourceAttribute("service.name"), traceql.NewString(service))
	}
	if operation != "" {
		jq.equal(traceql.IntrinsicField(traceql.IntrinsicName), traceql.NewString(operation))
	}
}

// duration adds the bound of a minDuration (op >=) or maxDuration (op <=)
// parameter, if set.
func (jq *jaegerQuery) duration(param, s, op string) error {
	if s == "" {
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return badRequest("invalid %s %q", param, s)
	}
	jq.conds = append(jq.conds, traceql.Cond{Field: traceql.IntrinsicField(traceql.IntrinsicDuration), Op: op, Value: traceql.NewDuration(int64(d))})
	return nil
}

// tag adds a tag test. Jaeger's error=true and span.kind are the OTLP
// status and kind; any other tag is a span or resource attribute.
func (jq *jaegerQuery) tag(k, v string) error {
	switch {
	case k == "error" && v == "true":
		jq.equal(traceql.IntrinsicField(traceql.IntrinsicStatus), traceql.NewStatus(storage.StatusError))
		return nil
	case k == "span.kind":
		for n := range 6 {
			if traceql.KindName(storage.SpanKind(n)) == v {
				jq.equal(traceql.IntrinsicField(traceql.IntrinsicKind), traceql.NewKind(storage.SpanKind(n)))
				return nil
			}
		}
		return badRequest("unknown span.kind %q", v)
	}
	jq.equal(traceql.UnscopedAttribute(k), jaegerTagValue(v))
	return nil
}

// findTraces runs the search through the TraceQL engine, which assembles
// each matching trace whole. All the traces returned hold at most
// limits::max_spans_per_trace spans, as one trace does: the search ends
// before the trace that would pass it.
func (a *API) findTraces(r *http.Request, jq jaegerQuery) ([][]storage.Span, error) {
	q, err := traceql.AllOf(jq.conds...)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	qr, err := a.open(r)
	if err != nil {
		return nil, err
	}
	defer qr.close()
	res, err := traceql.Search(qr.ctx, qr.q, traceql.SearchRequest{Query: q, Start: jq.start, End: jq.end, Limit: jq.limit,
		MaxInspectedTraces: a.cfg.Limits.MaxInspectedTraces, FullTraces: true, MaxResultSpans: a.cfg.Limits.MaxSpansPerTrace})
	if err != nil {
		return nil, err
	}
	a.skipped(r, res.SkippedTraces)
	if res.Truncated {
		// Fewer traces than the limit, as a search may answer; the
		// answer holds no more spans than one trace may.
		a.logger.Warn("a Jaeger search answered with fewer traces than its limit: their spans reached limits::max_spans_per_trace",
			zap.Int("traces", len(res.Traces)), zap.Int("limit", jq.limit), zap.Int("max_spans_per_trace", a.cfg.Limits.MaxSpansPerTrace))
	}
	out := make([][]storage.Span, len(res.Traces))
	for i, t := range res.Traces {
		out[i] = t.Spans
	}
	return out, nil
}

func (a *API) parseJaegerSearch(r *http.Request) (jaegerQuery, error) {
	start, end, err := a.jaegerTimes(r)
	if err != nil {
		return jaegerQuery{}, err
	}
	limit, err := parseInt("limit", r.FormValue("limit"), 20)
	if err != nil {
		return jaegerQuery{}, err
	}
	if limit == 0 {
		limit = 20
	}
	if err := a.checkLimit(limit); err != nil {
		return jaegerQuery{}, err
	}
	jq := jaegerQuery{start: start, end: end, limit: limit}
	jq.names(r.FormValue("service"), r.FormValue("operation"))
	if err := jq.duration("minDuration", r.FormValue("minDuration"), ">="); err != nil {
		return jq, err
	}
	if err := jq.duration("maxDuration", r.FormValue("maxDuration"), "<="); err != nil {
		return jq, err
	}
	tags := map[string]string{}
	for _, t := range r.Form["tags"] {
		if err := json.Unmarshal([]byte(t), &tags); err != nil {
			return jq, badRequest("malformed tags parameter: %v", err)
		}
	}
	for _, t := range r.Form["tag"] { // the older key:value form
		k, v, ok := strings.Cut(t, ":")
		if !ok {
			return jq, badRequest("malformed tag %q: want key:value", t)
		}
		tags[k] = v
	}
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		if err := jq.tag(k, tags[k]); err != nil {
			return jq, err
		}
	}
	return jq, nil
}

// jaegerTagValue types a Jaeger tag value: Jaeger UI sends every value as text,
// while OTLP attributes keep their types.
func jaegerTagValue(s string) traceql.Static {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return traceql.NewInt(i)
	}
	if s == "true" || s == "false" {
		return traceql.NewBool(s == "true")
	}
	return traceql.NewString(s)
}

func (a *API) jaegerSearch(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	if ids := r.Form["traceID"]; len(ids) > 0 {
		// Each ID is a lookup and a whole trace in the answer: as many
		// as a search may return. A trace not found is left out, as
		// Jaeger does; any other failure (a malformed ID, the query's
		// timeout) fails the request rather than shortening the answer.
		if err := a.checkLimit(len(ids)); err != nil {
			a.fail(w, r, styleJaeger, err)
			return
		}
		qr, err := a.open(r)
		if err != nil {
			a.fail(w, r, styleJaeger, err)
			return
		}
		defer qr.close()
		// The answer as a whole holds no more spans than one trace may
		// (limits::max_spans_per_trace); past it the request is refused
		// rather than answered with traces missing.
		out := []jaegerTrace{}
		total := 0
		for _, s := range ids {
			spans, err := a.traceByID(r, qr, s, 0, 0)
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if err == nil {
				total += len(spans)
				if m := a.cfg.Limits.MaxSpansPerTrace; m > 0 && total > m {
					err = fmt.Errorf("%w: the traces asked for hold more than %d spans in all (limits::max_spans_per_trace)", errLimit, m)
				}
			}
			if err != nil {
				a.fail(w, r, styleJaeger, err)
				return
			}
			out = append(out, toJaeger(spans))
		}
		jaegerOK(w, out, len(out))
		return
	}
	jq, err := a.parseJaegerSearch(r)
	if err != nil {
		a.fail(w, r, styleJaeger, err)
		return
	}
	traces, err := a.findTraces(r, jq)
	if err != nil {
		a.fail(w, r, styleJaeger, err)
		return
	}
	out := make([]jaegerTrace, 0, len(traces))
	for _, t := range traces {
		out = append(out, toJaeger(t))
	}
	jaegerOK(w, out, len(out))
}

func (a *API) jaegerTrace(w http.ResponseWriter, r *http.Request) {
	qr, err := a.open(r)
	if err != nil {
		a.fail(w, r, styleJaeger, err)
		return
	}
	defer qr.close()
	spans, err := a.traceByID(r, qr, r.PathValue("id"), 0, 0)
	if err != nil {
		a.fail(w, r, styleJaeger, err)
		return
	}
	jaegerOK(w, []jaegerTrace{toJaeger(spans)}, 1)
}

type jaegerKV struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

type jaegerRef struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

type jaegerLog struct {
	Timestamp int64      `json:"timestamp"`
	Fields    []jaegerKV `json:"fields"`
}

type jaegerSpan struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []jaegerRef `json:"references"`
	StartTime     int64       `json:"startTime"`
	Duration      int64       `json:"duration"`
	Tags          []jaegerKV  `json:"tags"`
	Logs          []jaegerLog `json:"logs"`
	ProcessID     string      `json:"processID"`
	Warnings      []string    `json:"warnings"`
	Flags         uint32      `json:"flags"`
}

type jaegerProcess struct {
	ServiceName string     `json:"serviceName"`
	Tags        []jaegerKV `json:"tags"`
}

type jaegerTrace struct {
	TraceID   string                   `json:"traceID"`
	Spans     []jaegerSpan             `json:"spans"`
	Processes map[string]jaegerProcess `json:"processes"`
	Warnings  []string                 `json:"warnings"`
}

func jaegerKVs(attrs storage.Attrs) []jaegerKV {
	out := make([]jaegerKV, 0, len(attrs))
	for _, at := range attrs {
		out = append(out, jaegerValue(at.Key, at.Value))
	}
	return out
}

func jaegerValue(k string, v storage.Value) jaegerKV {
	switch v.Type {
	case storage.TypeInt:
		return jaegerKV{k, "int64", v.Int}
	case storage.TypeDouble:
		if math.IsNaN(v.Double) || math.IsInf(v.Double, 0) {
			// JSON has no number for them, and Jaeger's model no string
			// form of a float64: the tag says it as text, as Jaeger UI
			// would show it.
			return jaegerKV{k, "string", strconv.FormatFloat(v.Double, 'g', -1, 64)}
		}
		return jaegerKV{k, "float64", v.Double}
	case storage.TypeBool:
		return jaegerKV{k, "bool", v.Int != 0}
	case storage.TypeBytes:
		return jaegerKV{k, "binary", v.AsString()}
	}
	return jaegerKV{k, "string", v.AsString()}
}

// toJaeger converts a trace to Jaeger's JSON model the way Jaeger v2's
// OTLP translator does: kind and status become span.kind, otel.status_code
// and error tags; events become logs; links become FOLLOWS_FROM references.
func toJaeger(spans []storage.Span) jaegerTrace {
	t := jaegerTrace{Processes: map[string]jaegerProcess{}, Spans: []jaegerSpan{}}
	procs := map[*storage.Resource]string{}
	for i := range spans {
		s := &spans[i]
		t.TraceID = s.TraceID.String()
		pid, ok := procs[s.Resource]
		if !ok {
			pid = "p" + strconv.Itoa(len(procs)+1)
			procs[s.Resource] = pid
			p := jaegerProcess{ServiceName: s.Resource.ServiceName(), Tags: []jaegerKV{}}
			if s.Resource != nil {
				for _, at := range s.Resource.Attrs {
					if at.Key != "service.name" {
						p.Tags = append(p.Tags, jaegerValue(at.Key, at.Value))
					}
				}
			}
			t.Processes[pid] = p
		}
		js := jaegerSpan{
			TraceID:       s.TraceID.String(),
			SpanID:        s.SpanID.String(),
			OperationName: s.Name,
			References:    []jaegerRef{},
			StartTime:     s.StartUnixNano / 1e3,
			Duration:      s.Duration() / 1e3,
			Tags:          jaegerKVs(s.Attrs),
			Logs:          []jaegerLog{},
			ProcessID:     pid,
			Flags:         s.Flags,
		}
		if !s.ParentSpanID.IsEmpty() {
			js.References = append(js.References, jaegerRef{"CHILD_OF", s.TraceID.String(), s.ParentSpanID.String()})
		}
		for _, l := range s.Links {
			js.References = append(js.References, jaegerRef{"FOLLOWS_FROM", l.TraceID.String(), l.SpanID.String()})
		}
		if s.Kind != 0 {
			js.Tags = append(js.Tags, jaegerKV{"span.kind", "string", traceql.KindName(s.Kind)})
		}
		switch s.StatusCode {
		case storage.StatusError:
			js.Tags = append(js.Tags, jaegerKV{"otel.status_code", "string", "ERROR"}, jaegerKV{"error", "bool", true})
		case storage.StatusOK:
			js.Tags = append(js.Tags, jaegerKV{"otel.status_code", "string", "OK"})
		}
		if s.StatusMessage != "" {
			js.Tags = append(js.Tags, jaegerKV{"otel.status_description", "string", s.StatusMessage})
		}
		if s.Scope != nil && s.Scope.Name != "" {
			js.Tags = append(js.Tags, jaegerKV{"otel.scope.name", "string", s.Scope.Name})
			if s.Scope.Version != "" {
				js.Tags = append(js.Tags, jaegerKV{"otel.scope.version", "string", s.Scope.Version})
			}
		}
		for _, e := range s.Events {
			fields := append([]jaegerKV{{"event", "string", e.Name}}, jaegerKVs(e.Attrs)...)
			js.Logs = append(js.Logs, jaegerLog{Timestamp: e.TimeUnixNano / 1e3, Fields: fields})
		}
		t.Spans = append(t.Spans, js)
	}
	return t
}

type dependencyLink struct {
	Parent    string `json:"parent"`
	Child     string `json:"child"`
	CallCount int    `json:"callCount"`
}

// jaegerDependencies answers the service-to-service calls in
// (endTs - lookback, endTs] from the service graph's request counters
// (traces_service_graph_request_total, which the servicegraph connector
// writes to the metrics store; the all-in-one runs it), as Tempo's
// service graph does. It never pairs raw spans: over a day of millions
// of spans that held every client span in memory. A call between two
// services is counted once, by the counter's increase over the lookback;
// pipelines without the connector have no dependencies to show.
func (a *API) jaegerDependencies(w http.ResponseWriter, r *http.Request) {
	err := func() error {
		end := a.now().UnixNano()
		if s := r.FormValue("endTs"); s != "" {
			// Milliseconds past 9e12 (the year 2255) overflow nanoseconds.
			ms, err := strconv.ParseInt(s, 10, 64)
			if err != nil || ms < -9e12 || ms > 9e12 {
				return badRequest("invalid endTs %q", s)
			}
			end = ms * 1e6
		}
		lookback := int64(24 * time.Hour)
		if s := r.FormValue("lookback"); s != "" {
			ms, err := strconv.ParseInt(s, 10, 64)
			if err != nil || ms <= 0 || ms > 9e12 {
				return badRequest("invalid lookback %q", s)
			}
			lookback = ms * 1e6
		}
		if err := a.checkRange(end-lookback, end); err != nil {
			return err
		}
		tenant, err := a.tenant(r)
		if err != nil {
			return err
		}
		ctx := r.Context()
		if tenant != "" {
			ctx = context.WithValue(ctx, promTenantKey{}, tenant)
		}
		out, err := serviceGraphLinks(ctx, a.promql, a.metrics, time.Unix(0, end), time.Duration(lookback))
		if err != nil {
			return err
		}
		jaegerOK(w, out, len(out))
		return nil
	}()
	if err != nil {
		a.fail(w, r, styleJaeger, err)
	}
}

func (a *API) v3Services(w http.ResponseWriter, r *http.Request) {
	svcs, err := a.services(r)
	if err != nil {
		a.fail(w, r, styleJaegerV3, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"services": svcs})
}

func (a *API) v3Operations(w http.ResponseWriter, r *http.Request) {
	ops, err := a.operations(r, r.FormValue("service"), r.FormValue("span_kind"))
	if err != nil {
		a.fail(w, r, styleJaegerV3, err)
		return
	}
	out := []jaegerOperation{}
	for _, o := range ops {
		out = append(out, jaegerOperation{o.Name, traceql.KindName(o.Kind)})
	}
	writeJSON(w, http.StatusOK, map[string]any{"operations": out})
}

// v3Result writes api_v3's {"result": TracesData} in OTLP JSON.
func v3Result(w http.ResponseWriter, spans []storage.Span) error {
	b, err := (&ptrace.JSONMarshaler{}).MarshalTraces(storage.SpansToTraces(spans))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"result":%s}`, validUTF8(b))
	return nil
}

func (a *API) v3Search(w http.ResponseWriter, r *http.Request) {
	err := func() error {
		p := r.URL.Query()
		parseT := func(name string) (int64, error) {
			s := p.Get(name)
			if s == "" {
				return 0, nil
			}
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return 0, badRequest("invalid %s %q: want RFC3339", name, s)
			}
			return t.UnixNano(), nil
		}
		start, err := parseT("query.start_time_min")
		if err != nil {
			return err
		}
		end, err := parseT("query.start_time_max")
		if err != nil {
			return err
		}
		if start == 0 || end == 0 {
			return badRequest("query.start_time_min and query.start_time_max are required")
		}
		if err := a.checkRange(start, end); err != nil {
			return err
		}
		jq := jaegerQuery{start: start, end: end, limit: 20}
		jq.names(p.Get("query.service_name"), p.Get("query.operation_name"))
		if s := p.Get("query.num_traces"); s != "" {
			if jq.limit, err = parseInt("query.num_traces", s, 20); err != nil {
				return err
			}
		}
		if err := a.checkLimit(jq.limit); err != nil {
			return err
		}
		if err := jq.duration("query.duration_min", p.Get("query.duration_min"), ">="); err != nil {
			return err
		}
		if err := jq.duration("query.duration_max", p.Get("query.duration_max"), "<="); err != nil {
			return err
		}
		for _, k := range slices.Sorted(maps.Keys(p)) {
			if name, ok := strings.CutPrefix(k, "query.attributes."); ok {
				if err := jq.tag(name, p.Get(k)); err != nil {
					return err
				}
			}
		}
		traces, err := a.findTraces(r, jq)
		if err != nil {
			return err
		}
		var all []storage.Span
		for _, t := range traces {
			all = append(all, t...)
		}
		return v3Result(w, all)
	}()
	if err != nil {
		a.fail(w, r, styleJaegerV3, err)
	}
}

func (a *API) v3Trace(w http.ResponseWriter, r *http.Request) {
	err := func() error {
		qr, err := a.open(r)
		if err != nil {
			return err
		}
		defer qr.close()
		spans, err := a.traceByID(r, qr, r.PathValue("id"), 0, 0)
		if err != nil {
			return err
		}
		return v3Result(w, spans)
	}()
	if err != nil {
		a.fail(w, r, styleJaegerV3, err)
	}
}

// serviceGraphLinks evaluates the service graph's calls per client and
// server over the window ending at end, in whole calls, sorted by edge.
func serviceGraphLinks(ctx context.Context, eng *promql.Engine, q promstorage.Queryable, end time.Time, window time.Duration) ([]dependencyLink, error) {
	// The window in whole milliseconds: PromQL's duration syntax.
	expr := fmt.Sprintf(`sum by (client, server) (increase(traces_service_graph_request_total[%dms]))`, max(window.Milliseconds(), 1))
	qry, err := eng.NewInstantQuery(ctx, q, nil, expr, end)
	if err != nil {
		return nil, fmt.Errorf("service graph query: %w", err)
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return nil, promErr(res.Err)
	}
	vec, err := res.Vector()
	if err != nil {
		return nil, err
	}
	out := []dependencyLink{}
	for _, s := range vec {
		parent, child := s.Metric.Get("client"), s.Metric.Get("server")
		n := int(math.Round(s.F))
		if parent == "" || child == "" || parent == child || n <= 0 {
			continue
		}
		out = append(out, dependencyLink{parent, child, n})
	}
	slices.SortFunc(out, func(a, b dependencyLink) int {
		return strings.Compare(a.Parent+"\x00"+a.Child, b.Parent+"\x00"+b.Child)
	})
	return out, nil
}

// promErr marks the PromQL engine's limit errors as the API's: a query
// over its sample limit is a limit (422), a timeout a deadline (503).
func promErr(err error) error {
	var samples promql.ErrTooManySamples
	var timeout promql.ErrQueryTimeout
	switch {
	case errors.As(err, &samples):
		return fmt.Errorf("%w: %w", errLimit, err)
	case errors.As(err, &timeout):
		return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return err
}
