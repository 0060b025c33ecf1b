package api

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sightlinehq/sightline/internal/query/traceql"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

func (a *API) tempoRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/echo", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("echo"))
	})
	mux.HandleFunc("GET /api/status/buildinfo", a.buildinfo)
	mux.HandleFunc("GET /api/traces/{id}", func(w http.ResponseWriter, r *http.Request) { a.tempoTrace(w, r, false) })
	mux.HandleFunc("GET /api/v2/traces/{id}", func(w http.ResponseWriter, r *http.Request) { a.tempoTrace(w, r, true) })
	mux.HandleFunc("GET /api/search", a.tempoSearch)
	mux.HandleFunc("GET /api/search/tags", func(w http.ResponseWriter, r *http.Request) { a.tempoTags(w, r, false) })
	mux.HandleFunc("GET /api/v2/search/tags", func(w http.ResponseWriter, r *http.Request) { a.tempoTags(w, r, true) })
	mux.HandleFunc("GET /api/search/tag/{rest...}", func(w http.ResponseWriter, r *http.Request) { a.tempoTagValues(w, r, false) })
	mux.HandleFunc("GET /api/v2/search/tag/{rest...}", func(w http.ResponseWriter, r *http.Request) { a.tempoTagValues(w, r, true) })
	mux.HandleFunc("GET /api/metrics/query_range", func(w http.ResponseWriter, r *http.Request) { a.tempoMetrics(w, r, false) })
	mux.HandleFunc("GET /api/metrics/query", func(w http.ResponseWriter, r *http.Request) { a.tempoMetrics(w, r, true) })
}

// tempoRange reads Tempo's start and end (unix seconds) as unix ns.
func tempoRange(r *http.Request) (int64, int64, error) {
	start, err := unixParam(r, "start", 1e9, "seconds")
	if err != nil {
		return 0, 0, err
	}
	end, err := unixParam(r, "end", 1e9, "seconds")
	if err != nil {
		return 0, 0, err
	}
	if start != 0 && end != 0 && end <= start {
		return 0, 0, badRequest("http parameter start must be before end. received start=%d end=%d", start/1e9, end/1e9)
	}
	return start, end, nil
}

func (a *API) traceByID(r *http.Request, qr *query, idText string, start, end int64) ([]storage.Span, error) {
	id, err := storage.ParseTraceID(idText)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	spans, err := qr.q.TraceByID(qr.ctx, id, start, end)
	if err != nil && len(spans) == 0 {
		return nil, err
	}
	if err != nil {
		// Some blocks could not be read; the store reports them as
		// damage. The spans that could be read are still the answer.
		a.logger.Warn("trace read partially", zap.String("trace_id", id.String()), zap.Error(err))
	}
	return spans, nil
}

func wantsProtobuf(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/protobuf")
}

// tempoTrace serves /api/traces/{id} (tempopb.Trace) and
// /api/v2/traces/{id} (tempopb.TraceByIDResponse). tempopb.Trace has the
// wire format of OTLP TracesData, so pdata's marshalers produce it; in JSON
// v1 names the list "batches".
func (a *API) tempoTrace(w http.ResponseWriter, r *http.Request, v2 bool) {
	start, end, err := tempoRange(r)
	if err != nil {
		a.fail(w, r, styleText, err)
		return
	}
	qr, err := a.open(r)
	if err != nil {
		a.fail(w, r, styleText, err)
		return
	}
	defer qr.close()
	spans, err := a.traceByID(r, qr, r.PathValue("id"), start, end)
	if err != nil {
		a.fail(w, r, styleText, err)
		return
	}
	td := storage.SpansToTraces(spans)
	if wantsProtobuf(r) {
		b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
		if err != nil {
			a.fail(w, r, styleText, err)
			return
		}
		if v2 {
			b = protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), b)
		}
		w.Header().Set("Content-Type", "application/protobuf")
		_, _ = w.Write(b)
		return
	}
	b, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	if err != nil {
		a.fail(w, r, styleText, err)
		return
	}
	var out bytes.Buffer
	if v2 {
		out.WriteString(`{"trace":`)
		out.Write(b)
		out.WriteString(`}`)
	} else {
		out.Write(bytes.Replace(b, []byte(`{"resourceSpans":`), []byte(`{"batches":`), 1))
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(validUTF8(out.Bytes()))
}

// anyValue is OTLP's AnyValue in JSON, as Tempo returns attribute values.
type anyValue struct {
	StringValue *string    `json:"stringValue,omitempty"`
	IntValue    *string    `json:"intValue,omitempty"`
	DoubleValue *jsonFloat `json:"doubleValue,omitempty"`
	BoolValue   *bool      `json:"boolValue,omitempty"`
}

// jsonFloat is a double as protobuf's JSON mapping writes it, and so as
// Tempo's responses have it: a number as encoding/json writes a float64
// when finite, else one of the strings "NaN", "Infinity" and
// "-Infinity". A client may send any of them as an attribute value, and
// encoding/json refuses them: a response holding one was a 200 with no
// body.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	switch v := float64(f); {
	case math.IsNaN(v):
		return []byte(`"NaN"`), nil
	case math.IsInf(v, 1):
		return []byte(`"Infinity"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Infinity"`), nil
	default:
		// encoding/json's own formatting, not appendJSONFloat's: these
		// structs are the oracle the appenders are tested against.
		return json.Marshal(v)
	}
}

type keyValue struct {
	Key   string   `json:"key"`
	Value anyValue `json:"value"`
}

func toAnyValue(v traceql.Static) anyValue {
	switch v.Type {
	case traceql.TypeInt:
		s := strconv.FormatInt(v.N, 10)
		return anyValue{IntValue: &s}
	case traceql.TypeFloat:
		f := jsonFloat(v.F)
		return anyValue{DoubleValue: &f}
	case traceql.TypeBool:
		b := v.N == 1
		return anyValue{BoolValue: &b}
	}
	s := v.Text()
	return anyValue{StringValue: &s}
}

func toKeyValues(ls []traceql.Label) []keyValue {
	out := make([]keyValue, 0, len(ls))
	for _, l := range ls {
		out = append(out, keyValue{Key: l.Key, Value: toAnyValue(l.Value)})
	}
	return out
}

type tempoSpan struct {
	SpanID            string     `json:"spanID"`
	Name              string     `json:"name,omitempty"`
	StartTimeUnixNano string     `json:"startTimeUnixNano"`
	DurationNanos     string     `json:"durationNanos"`
	Attributes        []keyValue `json:"attributes,omitempty"`
}

type tempoSpanset struct {
	Spans      []tempoSpan `json:"spans"`
	Matched    int         `json:"matched"`
	Attributes []keyValue  `json:"attributes,omitempty"`
}

type serviceStats struct {
	SpanCount  int `json:"spanCount"`
	ErrorCount int `json:"errorCount,omitempty"`
}

type tempoTraceMeta struct {
	TraceID           string                  `json:"traceID"`
	RootServiceName   string                  `json:"rootServiceName"`
	RootTraceName     string                  `json:"rootTraceName"`
	StartTimeUnixNano string                  `json:"startTimeUnixNano"`
	DurationMs        int64                   `json:"durationMs"`
	SpanSet           *tempoSpanset           `json:"spanSet,omitempty"`
	SpanSets          []tempoSpanset          `json:"spanSets,omitempty"`
	ServiceStats      map[string]serviceStats `json:"serviceStats,omitempty"`
}

type searchMetrics struct {
	InspectedTraces int    `json:"inspectedTraces,omitempty"`
	InspectedBytes  string `json:"inspectedBytes"`
	InspectedSpans  string `json:"inspectedSpans,omitempty"`
	CompletedJobs   int    `json:"completedJobs"`
	TotalJobs       int    `json:"totalJobs"`
}

// traceIDHex prints a trace ID as Tempo does: hex without leading zeros.
func traceIDHex(id storage.TraceID) string {
	s := strings.TrimLeft(id.String(), "0")
	if s == "" {
		return "0"
	}
	return s
}

// legacyQuery turns Tempo's pre-TraceQL search parameters (tags in logfmt,
// minDuration, maxDuration) into a TraceQL filter.
func legacyQuery(r *http.Request) (string, error) {
	var conds []string
	for _, kv := range splitLogfmt(r.FormValue("tags")) {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" {
			continue
		}
		switch k {
		case "name":
			conds = append(conds, "name = "+strconv.Quote(v))
		case "status", "kind":
			// Enum names go into the query as they are, so they are
			// checked: a value is never query text of its own.
			if !traceql.IsEnumName(k, v) {
				return "", badRequest("invalid %s %q: not a TraceQL %s name", k, v, k)
			}
			conds = append(conds, k+" = "+v)
		default:
			conds = append(conds, "."+quoteAttr(k)+" = "+strconv.Quote(v))
		}
	}
	for _, d := range []struct{ param, op string }{{"minDuration", ">="}, {"maxDuration", "<="}} {
		if s := r.FormValue(d.param); s != "" {
			dur, err := time.ParseDuration(s)
			if err != nil {
				return "", badRequest("invalid %s %q", d.param, s)
			}
			conds = append(conds, "duration "+d.op+" "+strconv.FormatInt(int64(dur), 10)+"ns")
		}
	}
	return "{ " + strings.Join(conds, " && ") + " }", nil
}

func quoteAttr(k string) string {
	if strings.ContainsAny(k, " {}()=~!<>&|^,\"") {
		return strconv.Quote(k)
	}
	return k
}

// splitLogfmt splits `k=v k2="v 2"` into k=v pairs with values unquoted.
func splitLogfmt(s string) []string {
	var out []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		k, rest, _ := strings.Cut(s, "=")
		v := ""
		if strings.HasPrefix(rest, `"`) {
			end := 1
			for end < len(rest) && rest[end] != '"' {
				if rest[end] == '\\' {
					end++
				}
				end++
			}
			if u, err := strconv.Unquote(rest[:min(end+1, len(rest))]); err == nil {
				v = u
			}
			s = rest[min(end+1, len(rest)):]
		} else {
			v, s, _ = strings.Cut(rest, " ")
		}
		out = append(out, k+"="+v)
	}
	return out
}

func (a *API) tempoSearch(w http.ResponseWriter, r *http.Request) {
	err := func() error {
		qtext := r.FormValue("q")
		if qtext != "" && r.FormValue("tags") != "" {
			return badRequest("can't specify tags and q in the same query")
		}
		if qtext == "" {
			var err error
			if qtext, err = legacyQuery(r); err != nil {
				return err
			}
		}
		limit, err := parseInt("limit", r.FormValue("limit"), 20)
		if err != nil {
			return err
		}
		if r.FormValue("limit") != "" && limit == 0 {
			return badRequest("invalid limit: must be a positive number")
		}
		if err := a.checkLimit(limit); err != nil {
			return err
		}
		spss, err := parseInt("spss", r.FormValue("spss"), 3)
		if err != nil {
			return err
		}
		if spss == 0 {
			spss = 3 // Tempo's default, as Tempo reads 0
		}
		if m := a.cfg.Limits.MaxSpansPerSpanset; m > 0 && spss > m {
			return badRequest("spans per span set exceeds %d. received %d", m, spss)
		}
		start, end, err := tempoRange(r)
		if err != nil {
			return err
		}
		// Tempo searches recent data when no range is given; a missing or
		// zero bound is filled in, never left unbounded, so that
		// max_time_range holds.
		start, end = a.defaultRange(start, end)
		if err := a.checkRange(start, end); err != nil {
			return err
		}
		q, err := traceql.Parse(qtext)
		if err != nil {
			return err
		}
		if q.IsMetrics() {
			return badRequest("%q is a metrics query: use /api/metrics/query_range", qtext)
		}
		qr, err := a.open(r)
		if err != nil {
			return err
		}
		defer qr.close()
		res, err := traceql.Search(qr.ctx, qr.q, traceql.SearchRequest{
			Query: q, Start: start, End: end, Limit: limit, SpansPerSpanset: spss,
			MaxInspectedTraces: a.cfg.Limits.MaxInspectedTraces,
		})
		if err != nil {
			return err
		}
		a.skipped(r, res.SkippedTraces)
		writeTempoSearch(w, res.Traces, searchMetrics{
			InspectedTraces: res.InspectedTraces,
			InspectedBytes:  strconv.FormatInt(qr.stats.BytesRead(), 10),
			InspectedSpans:  strconv.FormatInt(res.InspectedSpans, 10),
			CompletedJobs:   1, TotalJobs: 1,
		})
		return nil
	}()
	if err != nil {
		a.fail(w, r, styleText, err)
	}
}

func toTempoMeta(t traceql.TraceResult) tempoTraceMeta {
	m := tempoTraceMeta{
		TraceID:           traceIDHex(t.TraceID),
		RootServiceName:   t.RootService,
		RootTraceName:     t.RootName,
		StartTimeUnixNano: strconv.FormatInt(t.Start, 10),
		DurationMs:        t.Duration / 1e6,
		ServiceStats:      map[string]serviceStats{},
	}
	for svc, st := range t.ServiceStats {
		m.ServiceStats[svc] = serviceStats{SpanCount: st.SpanCount, ErrorCount: st.ErrorCount}
	}
	for _, ss := range t.Spansets {
		ts := tempoSpanset{Matched: ss.Matched, Attributes: toKeyValues(ss.Attrs), Spans: []tempoSpan{}}
		for _, sp := range ss.Spans {
			ts.Spans = append(ts.Spans, tempoSpan{
				SpanID:            sp.SpanID.String(),
				Name:              sp.Name,
				StartTimeUnixNano: strconv.FormatInt(sp.Start, 10),
				DurationNanos:     strconv.FormatInt(sp.Duration, 10),
				Attributes:        toKeyValues(sp.Attrs),
			})
		}
		m.SpanSets = append(m.SpanSets, ts)
	}
	if len(m.SpanSets) > 0 {
		first := m.SpanSets[0]
		m.SpanSet = &first
	}
	return m
}

var tagScopes = []string{"resource", "span", "intrinsic", "event", "link", "instrumentation", "trace", "none", ""}

func (a *API) tempoTags(w http.ResponseWriter, r *http.Request, v2 bool) {
	err := func() error {
		scope := r.FormValue("scope")
		if !slices.Contains(tagScopes, scope) {
			return badRequest("invalid scope: %s", scope)
		}
		start, end, err := tempoRange(r)
		if err != nil {
			return err
		}
		start, end = a.defaultRange(start, end)
		if err := a.checkRange(start, end); err != nil {
			return err
		}
		limit, err := parseInt("limit", r.FormValue("limit"), 0)
		if err != nil {
			return err
		}
		qr, err := a.open(r)
		if err != nil {
			return err
		}
		defer qr.close()
		names, err := qr.q.TagNames(qr.ctx, start, end)
		if err != nil {
			return err
		}
		cut := func(s []string) []string {
			s = slices.Clone(s)
			slices.Sort(s)
			s = slices.Compact(s)
			if limit > 0 && len(s) > limit {
				s = s[:limit]
			}
			if s == nil {
				s = []string{}
			}
			return s
		}
		metrics := searchMetrics{InspectedBytes: strconv.FormatInt(qr.stats.BytesRead(), 10), CompletedJobs: 1, TotalJobs: 1}
		if !v2 {
			var all []string
			if scope == "" || scope == "none" || scope == "span" {
				all = append(all, names.Span...)
			}
			if scope == "" || scope == "none" || scope == "resource" {
				all = append(all, names.Resource...)
			}
			writeJSON(w, http.StatusOK, map[string]any{"tagNames": cut(all), "metrics": metrics})
			return nil
		}
		type scopeTags struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		var scopes []scopeTags
		want := func(s string) bool { return scope == "" || scope == "none" || scope == s }
		if want("resource") {
			scopes = append(scopes, scopeTags{"resource", cut(names.Resource)})
		}
		if want("span") {
			scopes = append(scopes, scopeTags{"span", cut(names.Span)})
		}
		if want("intrinsic") {
			scopes = append(scopes, scopeTags{"intrinsic", cut(traceql.IntrinsicNames())})
		}
		if scopes == nil {
			scopes = []scopeTags{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"scopes": scopes, "metrics": metrics})
		return nil
	}()
	if err != nil {
		a.fail(w, r, styleText, err)
	}
}

type tagValue struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

func (a *API) tempoTagValues(w http.ResponseWriter, r *http.Request, v2 bool) {
	err := func() error {
		tag, ok := strings.CutSuffix(r.PathValue("rest"), "/values")
		if !ok || tag == "" {
			return badRequest("expected /search/tag/<tag>/values")
		}
		start, end, err := tempoRange(r)
		if err != nil {
			return err
		}
		start, end = a.defaultRange(start, end)
		if err := a.checkRange(start, end); err != nil {
			return err
		}
		limit, err := parseInt("limit", r.FormValue("limit"), 1000)
		if err != nil {
			return err
		}
		if limit == 0 {
			limit = 1000
		}
		// The distinct values are held until the answer: a tag as
		// varied as a URL gives as many as the limit allows. Grafana
		// asks for 5,000 whatever max_results is, so the limit is
		// lowered to it rather than refused.
		if m := a.cfg.Limits.MaxResults; m > 0 {
			limit = min(limit, m)
		}
		var field traceql.Expr
		if v2 {
			field, err = traceql.ParseField(tag)
			if err != nil {
				return err
			}
		} else {
			field = traceql.UnscopedAttribute(tag)
		}
		qr, err := a.open(r)
		if err != nil {
			return err
		}
		defer qr.close()
		// A q that does not parse (Grafana sends half-typed queries) falls
		// back to the unfiltered list, as Tempo does.
		var filter *traceql.SpansetFilter
		if q := r.FormValue("q"); q != "" {
			filter, _ = traceql.ParseFilter(q)
		}
		vals, err := traceql.TagValues(qr.ctx, qr.q, field, filter, start, end, limit)
		if err != nil {
			return err
		}
		metrics := searchMetrics{InspectedBytes: strconv.FormatInt(qr.stats.BytesRead(), 10), CompletedJobs: 1, TotalJobs: 1}
		if !v2 {
			out := make([]string, 0, len(vals))
			for _, v := range vals {
				out = append(out, v.Text())
			}
			writeJSON(w, http.StatusOK, map[string]any{"tagValues": out, "metrics": metrics})
			return nil
		}
		out := make([]tagValue, 0, len(vals))
		for _, v := range vals {
			out = append(out, tagValue{Type: v.Type.String(), Value: v.Text()})
		}
		writeJSON(w, http.StatusOK, map[string]any{"tagValues": out, "metrics": metrics})
		return nil
	}()
	if err != nil {
		a.fail(w, r, styleText, err)
	}
}

type tempoSample struct {
	TimestampMs string    `json:"timestampMs"`
	Value       jsonFloat `json:"value"`
}

type tempoExemplar struct {
	Labels      []keyValue `json:"labels"`
	Value       jsonFloat  `json:"value"`
	TimestampMs string     `json:"timestampMs"`
}

type tempoSeries struct {
	Labels     []keyValue      `json:"labels"`
	Samples    []tempoSample   `json:"samples,omitempty"`
	Exemplars  []tempoExemplar `json:"exemplars,omitempty"`
	PromLabels string          `json:"promLabels,omitempty"`
	Value      *jsonFloat      `json:"value,omitempty"`
}

func (a *API) tempoMetrics(w http.ResponseWriter, r *http.Request, instant bool) {
	err := func() error {
		qtext := r.FormValue("q")
		if qtext == "" {
			qtext = r.FormValue("query")
		}
		if qtext == "" {
			return badRequest("missing q")
		}
		q, err := traceql.Parse(qtext)
		if err != nil {
			return err
		}
		if !q.IsMetrics() {
			return badRequest("%q is not a metrics query: add a function such as | rate()", qtext)
		}
		end, err := parseTime("end", r.FormValue("end"))
		if err != nil {
			return err
		}
		if end == 0 {
			end = a.now().UnixNano()
		}
		start, err := parseTime("start", r.FormValue("start"))
		if err != nil {
			return err
		}
		if start == 0 {
			since := time.Hour
			if s := r.FormValue("since"); s != "" {
				if since, err = time.ParseDuration(s); err != nil {
					return badRequest("invalid since %q", s)
				}
			}
			start = end - int64(since)
		}
		if end <= start {
			return badRequest("end must be after start")
		}
		if err := a.checkRange(start, end); err != nil {
			return err
		}
		step, err := parseStep(r.FormValue("step"))
		if err != nil {
			return err
		}
		if step == 0 {
			step = traceql.DefaultStep(start, end)
		}
		if !instant && (end-start)/step > maxSteps {
			return badRequest("%d steps exceed the maximum of %d points per series; raise step", (end-start)/step, maxSteps)
		}
		exemplars, err := parseInt("exemplars", r.FormValue("exemplars"), 0)
		if err != nil {
			return err
		}
		if exemplars == 0 || exemplars > 100 {
			exemplars = 100
		}
		if h, ok := q.Hint("exemplars"); ok {
			switch {
			case h.Type == traceql.TypeBool && h.N == 0:
				exemplars = 0
			case h.Type == traceql.TypeInt:
				exemplars = int(min(max(h.N, 0), 100))
			}
		}
		if instant {
			exemplars = 0
		}
		qr, err := a.open(r)
		if err != nil {
			return err
		}
		defer qr.close()
		res, err := traceql.Metrics(qr.ctx, qr.q, traceql.MetricsRequest{
			Query: q, Start: start, End: end, Step: step, Instant: instant, Exemplars: exemplars,
			MaxSeries: a.cfg.Limits.MaxSeries, MaxInspectedTraces: a.cfg.Limits.MaxInspectedTraces,
			MaxSamples: a.cfg.Limits.MaxSamples, Cache: a.metricsCache,
		})
		if err != nil {
			return err
		}
		a.skipped(r, res.SkippedTraces)
		writeTempoMetrics(w, res.Series, instant, searchMetrics{
			InspectedTraces: res.InspectedTraces,
			InspectedBytes:  strconv.FormatInt(qr.stats.BytesRead(), 10),
			InspectedSpans:  strconv.FormatInt(res.InspectedSpans, 10),
			CompletedJobs:   1, TotalJobs: 1,
		})
		return nil
	}()
	if err != nil {
		a.fail(w, r, styleText, err)
	}
}
