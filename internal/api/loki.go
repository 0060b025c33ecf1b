package api

import (
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sightlinehq/sightline/internal/query/logql"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// labelScanLimit bounds the log records the label APIs read to list names
// and values: they feed pickers, and a sample of recent records is what
// Grafana needs from them.
const labelScanLimit = 100_000

func (a *API) lokiRoutes(mux *http.ServeMux) {
	for _, m := range []string{"GET", "POST"} {
		mux.HandleFunc(m+" /loki/api/v1/query_range", func(w http.ResponseWriter, r *http.Request) { a.lokiQuery(w, r, false) })
		mux.HandleFunc(m+" /loki/api/v1/query", func(w http.ResponseWriter, r *http.Request) { a.lokiQuery(w, r, true) })
		mux.HandleFunc(m+" /loki/api/v1/series", a.lokiSeries)
		mux.HandleFunc(m+" /loki/api/v1/index/volume", func(w http.ResponseWriter, r *http.Request) { a.lokiVolume(w, r, true) })
		mux.HandleFunc(m+" /loki/api/v1/index/volume_range", func(w http.ResponseWriter, r *http.Request) { a.lokiVolume(w, r, false) })
	}
	mux.HandleFunc("GET /loki/api/v1/tail", a.lokiTail)
	mux.HandleFunc("GET /loki/api/v1/patterns", a.lokiPatterns)
	mux.HandleFunc("GET /loki/api/v1/detected_labels", a.lokiDetectedLabels)
	mux.HandleFunc("GET /loki/api/v1/detected_fields", func(w http.ResponseWriter, r *http.Request) { a.lokiDetectedFields(w, r, "") })
	mux.HandleFunc("GET /loki/api/v1/detected_field/{name}/values", func(w http.ResponseWriter, r *http.Request) { a.lokiDetectedFields(w, r, r.PathValue("name")) })
	mux.HandleFunc("GET /loki/api/v1/labels", a.lokiLabels)
	mux.HandleFunc("GET /loki/api/v1/label/{name}/values", a.lokiLabelValues)
	mux.HandleFunc("GET /loki/api/v1/index/stats", a.lokiIndexStats)
	mux.HandleFunc("GET /loki/api/v1/status/buildinfo", a.buildinfo)
}

func lokiSuccess(w http.ResponseWriter, data any) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": data})
}

// lokiRange reads start and end with Loki's defaults: the last hour.
func (a *API) lokiRange(r *http.Request) (int64, int64, error) {
	end, err := parseTime("end", r.FormValue("end"))
	if err != nil {
		return 0, 0, err
	}
	if end == 0 {
		end = a.now().UnixNano()
	}
	start, err := parseTime("start", r.FormValue("start"))
	if err != nil {
		return 0, 0, err
	}
	if start == 0 {
		since := time.Hour
		if s := r.FormValue("since"); s != "" {
			if since, err = time.ParseDuration(s); err != nil {
				return 0, 0, badRequest("invalid since %q", s)
			}
		}
		start = end - int64(since)
	}
	if end < start {
		return 0, 0, badRequest("end timestamp must not be before or equal to start time")
	}
	return start, end, a.checkRange(start, end)
}

type lokiStream struct {
	Stream map[string]string `json:"stream"`
	Values [][2]string       `json:"values"`
}

type lokiMatrix struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"`
}

type lokiVector struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func lokiStats(st logql.Stats, took time.Duration, bytesRead int64) map[string]any {
	return map[string]any{"summary": map[string]any{
		"totalBytesProcessed":     st.Bytes,
		"totalLinesProcessed":     st.Entries,
		"totalEntriesReturned":    0,
		"execTime":                took.Seconds(),
		"bytesProcessedPerSecond": int64(float64(st.Bytes) / math.Max(took.Seconds(), 1e-9)),
		"totalStorageBytesRead":   bytesRead,
	}}
}

func (a *API) lokiQuery(w http.ResponseWriter, r *http.Request, instant bool) {
	began := time.Now()
	err := func() error {
		q, err := logql.Parse(r.FormValue("query"))
		if err != nil {
			return err
		}
		var start, end int64
		if instant {
			if end, err = parseTime("time", r.FormValue("time")); err != nil {
				return err
			}
			if end == 0 {
				end = a.now().UnixNano()
			}
			start = end - int64(time.Hour)
			if q.Metric != nil {
				start = end
			}
		} else if start, end, err = a.lokiRange(r); err != nil {
			return err
		}
		limit, err := parseInt("limit", r.FormValue("limit"), 100)
		if err != nil {
			return err
		}
		if err := a.checkLimit(limit); err != nil {
			return err
		}
		qr, err := a.open(r)
		if err != nil {
			return err
		}
		defer qr.close()
		if q.Log != nil {
			forward := r.FormValue("direction") == "forward"
			streams, st, err := logql.Select(qr.ctx, qr.q, logql.SelectRequest{Expr: q.Log, Start: start, End: end + 1, Limit: limit, Forward: forward})
			if err != nil {
				return err
			}
			out := make([]lokiStream, 0, len(streams))
			for _, s := range streams {
				ls := lokiStream{Stream: s.Labels.Map(), Values: make([][2]string, 0, len(s.Entries))}
				for _, e := range s.Entries {
					ls.Values = append(ls.Values, [2]string{strconv.FormatInt(e.Timestamp, 10), e.Line})
				}
				out = append(out, ls)
			}
			lokiSuccess(w, map[string]any{"resultType": "streams", "result": out, "stats": lokiStats(st, time.Since(began), qr.stats.BytesRead())})
			return nil
		}
		step := int64(0)
		if !instant {
			if step, err = parseStep(r.FormValue("step")); err != nil {
				return err
			}
			if step == 0 {
				step = defaultStep(start, end)
			}
			if (end-start)/step > maxSteps {
				return badRequest("exceeded maximum resolution of 11,000 points per time series. Try increasing the value of the step parameter")
			}
		}
		series, st, err := logql.Eval(qr.ctx, qr.q, logql.MetricRequest{Expr: q.Metric, Start: start, End: end, Step: step, MaxSeries: a.cfg.Limits.MaxSeries})
		if err != nil {
			return err
		}
		stats := lokiStats(st, time.Since(began), qr.stats.BytesRead())
		data := lokiSeries(series, instant)
		data["stats"] = stats
		lokiSuccess(w, data)
		return nil
	}()
	if err != nil {
		a.fail(w, r, styleText, err)
	}
}

// lokiSeries is the data of a metric answer: a vector of each series'
// point for an instant query, a matrix otherwise.
func lokiSeries(series []logql.Series, instant bool) map[string]any {
	if instant {
		out := make([]lokiVector, 0, len(series))
		for _, s := range series {
			for _, p := range s.Points {
				out = append(out, lokiVector{Metric: s.Metric.Map(), Value: [2]any{float64(p.T) / 1e3, formatFloat(p.V)}})
			}
		}
		return map[string]any{"resultType": "vector", "result": out}
	}
	out := make([]lokiMatrix, 0, len(series))
	for _, s := range series {
		m := lokiMatrix{Metric: s.Metric.Map()}
		for _, p := range s.Points {
			m.Values = append(m.Values, [2]any{float64(p.T) / 1e3, formatFloat(p.V)})
		}
		out = append(out, m)
	}
	return map[string]any{"resultType": "matrix", "result": out}
}

// formatFloat prints sample values as Prometheus and Loki do.
func formatFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func optionalSelector(r *http.Request, param string) (*logql.LogExpr, error) {
	s := r.FormValue(param)
	if s == "" {
		return nil, nil
	}
	q, err := logql.Parse(s)
	if err != nil {
		return nil, err
	}
	if q.Log == nil {
		return nil, badRequest("%s must be a stream selector", param)
	}
	return q.Log, nil
}

// openLokiScan reads the range and optional selector of the label and
// stats endpoints and opens the querier they scan.
func (a *API) openLokiScan(r *http.Request) (qr *query, sel *logql.LogExpr, start, end int64, err error) {
	if start, end, err = a.lokiRange(r); err != nil {
		return nil, nil, 0, 0, err
	}
	if sel, err = optionalSelector(r, "query"); err != nil {
		return nil, nil, 0, 0, err
	}
	qr, err = a.open(r)
	return qr, sel, start, end, err
}

func (a *API) lokiLabels(w http.ResponseWriter, r *http.Request) {
	err := func() error {
		qr, sel, start, end, err := a.openLokiScan(r)
		if err != nil {
			return err
		}
		defer qr.close()
		set := map[string]bool{}
		if err := logql.Streams(qr.ctx, qr.q, sel, start, end, labelScanLimit, func(ls logql.Labels, _ *storage.LogRecord) {
			for _, l := range ls {
				set[l.Name] = true
			}
		}); err != nil {
			return err
		}
		lokiSuccess(w, sortedKeys(set))
		return nil
	}()
	if err != nil {
		a.fail(w, r, styleText, err)
	}
}

func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (a *API) lokiLabelValues(w http.ResponseWriter, r *http.Request) {
	err := func() error {
		name := r.PathValue("name")
		qr, sel, start, end, err := a.openLokiScan(r)
		if err != nil {
			return err
		}
		defer qr.close()
		set := map[string]bool{}
		if err := logql.Streams(qr.ctx, qr.q, sel, start, end, labelScanLimit, func(ls logql.Labels, l *storage.LogRecord) {
			if v, ok := ls.Get(name); ok {
				set[v] = true
			} else if v, ok := logql.Metadata(l).Get(name); ok {
				set[v] = true
			}
		}); err != nil {
			return err
		}
		lokiSuccess(w, sortedKeys(set))
		return nil
	}()
	if err != nil {
		a.fail(w, r, styleText, err)
	}
}

func (a *API) lokiSeries(w http.ResponseWriter, r *http.Request) {
	err := func() error {
		if err := r.ParseForm(); err != nil {
			return badRequest("%v", err)
		}
		start, end, err := a.lokiRange(r)
		if err != nil {
			return err
		}
		var sels []*logql.LogExpr
		for _, m := range r.Form["match[]"] {
			q, err := logql.Parse(m)
			if err != nil {
				return err
			}
			if q.Log == nil {
				return badRequest("match[] must be a stream selector")
			}
			sels = append(sels, q.Log)
		}
		if len(sels) == 0 {
			sels = []*logql.LogExpr{nil}
		}
		qr, err := a.open(r)
		if err != nil {
			return err
		}
		defer qr.close()
		seen := map[string]bool{}
		out := []map[string]string{}
		for _, sel := range sels {
			if err := logql.Streams(qr.ctx, qr.q, sel, start, end, labelScanLimit, func(ls logql.Labels, _ *storage.LogRecord) {
				if k := ls.String(); !seen[k] {
					seen[k] = true
					out = append(out, ls.Map())
				}
			}); err != nil {
				return err
			}
		}
		lokiSuccess(w, out)
		return nil
	}()
	if err != nil {
		a.fail(w, r, styleText, err)
	}
}

func (a *API) lokiIndexStats(w http.ResponseWriter, r *http.Request) {
	err := func() error {
		qr, sel, start, end, err := a.openLokiScan(r)
		if err != nil {
			return err
		}
		defer qr.close()
		streams := map[string]bool{}
		var entries, bytes int64
		err = logql.Streams(qr.ctx, qr.q, sel, start, end, 0, func(ls logql.Labels, l *storage.LogRecord) {
			streams[ls.String()] = true
			entries++
			bytes += int64(len(l.Body.AsString()))
		})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]int64{"streams": int64(len(streams)), "chunks": int64(len(streams)), "entries": entries, "bytes": bytes})
		return nil
	}()
	if err != nil {
		a.fail(w, r, styleText, err)
	}
}

// defaultStep is Loki's step for a range of end-start ns when none is
// given: about 250 points, at least a second.
func defaultStep(start, end int64) int64 {
	return max(int64(math.Floor(float64(end-start)/250/1e9))*1e9, 1e9)
}

// lokiVolume answers index/volume (instant: one value per series over the
// range) and index/volume_range (a matrix), Loki's log volume endpoints
// that Grafana's Logs Drilldown and volume panels use.
func (a *API) lokiVolume(w http.ResponseWriter, r *http.Request, instant bool) {
	err := func() error {
		if r.FormValue("query") == "" {
			return badRequest("query is required")
		}
		qr, sel, start, end, err := a.openLokiScan(r)
		if err != nil {
			return err
		}
		defer qr.close()
		limit, err := parseInt("limit", r.FormValue("limit"), 100)
		if err != nil {
			return err
		}
		if err := a.checkLimit(limit); err != nil {
			return err
		}
		req := logql.VolumeRequest{Selector: sel, Start: start, End: end, Limit: limit, MaxSeries: a.cfg.Limits.MaxSeries}
		if t := r.FormValue("targetLabels"); t != "" {
			req.TargetLabels = strings.Split(t, ",")
		}
		switch r.FormValue("aggregateBy") {
		case "", "series":
		case "labels":
			req.ByLabels = true
		default:
			return badRequest("aggregateBy must be series or labels")
		}
		if !instant {
			if req.Step, err = parseStep(r.FormValue("step")); err != nil {
				return err
			}
			if req.Step == 0 {
				req.Step = defaultStep(start, end)
			}
			if (end-start)/req.Step > maxSteps {
				return badRequest("exceeded maximum resolution of 11,000 points per time series. Try increasing the value of the step parameter")
			}
		}
		series, err := logql.Volume(qr.ctx, qr.q, req)
		if err != nil {
			return err
		}
		lokiSuccess(w, lokiSeries(series, instant))
		return nil
	}()
	if err != nil {
		a.fail(w, r, styleText, err)
	}
}

// lokiDetectedLabels answers detected_labels: the stream labels in range
// with their cardinality, in Loki's shape (no status envelope).
func (a *API) lokiDetectedLabels(w http.ResponseWriter, r *http.Request) {
	err := func() error {
		qr, sel, start, end, err := a.openLokiScan(r)
		if err != nil {
			return err
		}
		defer qr.close()
		labels, err := logql.DetectedLabels(qr.ctx, qr.q, sel, start, end, labelScanLimit)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"detectedLabels": labels})
		return nil
	}()
	if err != nil {
		a.fail(w, r, styleText, err)
	}
}

// lokiDetectedFields answers detected_fields, and with a field name
// detected_field/{name}/values, from the newest line_limit lines the
// query selects, in Loki's shapes.
func (a *API) lokiDetectedFields(w http.ResponseWriter, r *http.Request, field string) {
	err := func() error {
		q, err := logql.Parse(r.FormValue("query"))
		if err != nil {
			return err
		}
		if q.Log == nil {
			return badRequest("query must be a log query")
		}
		start, end, err := a.lokiRange(r)
		if err != nil {
			return err
		}
		lines, err := parseInt("line_limit", r.FormValue("line_limit"), 1000)
		if err != nil {
			return err
		}
		limit, err := parseInt("limit", r.FormValue("limit"), 1000)
		if err != nil {
			return err
		}
		if err := a.checkLimit(lines); err != nil {
			return err
		}
		if err := a.checkLimit(limit); err != nil {
			return err
		}
		qr, err := a.open(r)
		if err != nil {
			return err
		}
		defer qr.close()
		req := logql.FieldsRequest{Expr: q.Log, Start: start, End: end + 1, LineLimit: lines, Limit: limit}
		if field != "" {
			values, err := logql.DetectedFieldValues(qr.ctx, qr.q, req, field)
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, map[string]any{"values": values, "limit": limit})
			return nil
		}
		fields, err := logql.DetectedFields(qr.ctx, qr.q, req)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"fields": fields, "limit": limit})
		return nil
	}()
	if err != nil {
		a.fail(w, r, styleText, err)
	}
}

// lokiPatterns answers /loki/api/v1/patterns, the templates of the lines
// a selector picks with their counts per step, for Logs Drilldown's
// patterns tab. It reads at most labelScanLimit records.
func (a *API) lokiPatterns(w http.ResponseWriter, r *http.Request) {
	err := func() error {
		if r.FormValue("query") == "" {
			return badRequest("query is required")
		}
		qr, sel, start, end, err := a.openLokiScan(r)
		if err != nil {
			return err
		}
		defer qr.close()
		step, err := parseStep(r.FormValue("step"))
		if err != nil {
			return err
		}
		if step == 0 {
			step = max(defaultStep(start, end), 10e9)
		}
		if (end-start)/step > maxSteps {
			return badRequest("exceeded maximum resolution of 11,000 points per time series. Try increasing the value of the step parameter")
		}
		ps, err := logql.Patterns(qr.ctx, qr.q, logql.PatternsRequest{Selector: sel, Start: start, End: end, Step: step, MaxLines: labelScanLimit})
		if err != nil {
			return err
		}
		type pattern struct {
			Pattern string     `json:"pattern"`
			Samples [][2]int64 `json:"samples"`
		}
		out := make([]pattern, 0, len(ps))
		for _, p := range ps {
			s := make([][2]int64, 0, len(p.Samples))
			for _, pt := range p.Samples {
				s = append(s, [2]int64{pt.T / 1e3, int64(pt.V)})
			}
			out = append(out, pattern{Pattern: p.Pattern, Samples: s})
		}
		lokiSuccess(w, out)
		return nil
	}()
	if err != nil {
		a.fail(w, r, styleText, err)
	}
}
