package logql

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// ErrTooManySeries is returned when a metric query yields more series than
// the request allows.
var ErrTooManySeries = errors.New("query yields too many series")

// Entry is one log line.
type Entry struct {
	Timestamp int64 // unix ns
	Line      string
	// Metadata is the structured metadata (log attributes, trace and span
	// IDs, severity) that is not part of the stream labels.
	Metadata Labels
}

// Stream is the entries of one label set.
type Stream struct {
	Labels  Labels
	Entries []Entry
}

// Point is one sample; T is unix milliseconds.
type Point struct {
	T int64
	V float64
}

// Series is one metric result.
type Series struct {
	Metric Labels
	Points []Point
}

// Stats counts what a query looked at.
type Stats struct {
	Entries int64
	Bytes   int64
}

// StreamLabels returns the stream labels of a record: its resource
// attributes, with names made label-safe.
func StreamLabels(l *storage.LogRecord) Labels {
	var ls Labels
	if l.Resource != nil {
		for _, a := range l.Resource.Attrs {
			ls = append(ls, Label{LabelName(a.Key), a.Value.AsString()})
		}
	}
	return sortLabels(dedupe(ls))
}

// Metadata returns a record's structured metadata: attributes, trace and
// span IDs, and severity, as Loki's OTLP ingestion stores them.
func Metadata(l *storage.LogRecord) Labels {
	var ls Labels
	for _, a := range l.Attrs {
		ls = append(ls, Label{LabelName(a.Key), a.Value.AsString()})
	}
	if !l.TraceID.IsEmpty() {
		ls = append(ls, Label{"trace_id", l.TraceID.String()})
	}
	if !l.SpanID.IsEmpty() {
		ls = append(ls, Label{"span_id", l.SpanID.String()})
	}
	if l.SeverityText != "" {
		ls = append(ls, Label{"severity_text", l.SeverityText})
	}
	if l.SeverityNumber != 0 {
		ls = append(ls, Label{"severity_number", strconv.Itoa(int(l.SeverityNumber))})
	}
	ls = append(ls, Label{"detected_level", Level(l)})
	if l.Scope != nil && l.Scope.Name != "" {
		ls = append(ls, Label{"scope_name", l.Scope.Name})
	}
	return sortLabels(dedupe(ls))
}

// Level is the record's level as Grafana names levels.
func Level(l *storage.LogRecord) string {
	switch n := l.SeverityNumber; {
	case n >= 21:
		return "fatal"
	case n >= 17:
		return "error"
	case n >= 13:
		return "warn"
	case n >= 9:
		return "info"
	case n >= 5:
		return "debug"
	case n >= 1:
		return "trace"
	}
	if l.SeverityText != "" {
		return strings.ToLower(l.SeverityText)
	}
	return "unknown"
}

func dedupe(ls Labels) Labels {
	seen := map[string]bool{}
	out := ls[:0]
	for _, l := range ls {
		if !seen[l.Name] {
			seen[l.Name] = true
			out = append(out, l)
		}
	}
	return out
}

// Streams calls fn with the stream labels of each log record in
// [start, end) that the selector's matchers select (every record when sel
// is nil), reading at most limit records (0: all). It answers Loki's
// label, label values and series APIs, which take a selector but no
// pipeline; its stages, if any, are ignored.
func Streams(ctx context.Context, sq storage.Querier, sel *LogExpr, start, end int64, limit int, fn func(stream Labels, l *storage.LogRecord)) error {
	lq := &storage.LogQuery{Start: start, End: end}
	if sel != nil {
		lq = pushdown(&LogExpr{Matchers: sel.Matchers}, start, end)
	}
	n := 0
	return sq.Logs(ctx, lq, func(l *storage.LogRecord) bool {
		n++
		ls := StreamLabels(l)
		if sel != nil {
			for _, m := range sel.Matchers {
				v, _ := ls.Get(m.Name)
				if !m.Matches(v) {
					return limit == 0 || n < limit
				}
			}
		}
		fn(ls, l)
		return limit == 0 || n < limit
	})
}

// pushdown derives the store query: service_name equality from the
// selector, the first literal line filter, and a trace_id label filter
// placed before any parser.
func pushdown(e *LogExpr, start, end int64) *storage.LogQuery {
	q := &storage.LogQuery{Start: start, End: end}
	for _, m := range e.Matchers {
		if m.Name == "service_name" && m.Type == MatchEqual {
			q.ServiceName = m.Value
		}
	}
	for _, s := range e.Stages {
		switch x := s.(type) {
		case *LineFilter:
			if x.Op == "|=" && q.BodyContains == "" {
				q.BodyContains = x.Value
			}
			continue
		case *LabelFilter:
			if sf, ok := x.Expr.(*StringFilter); ok && sf.M.Type == MatchEqual {
				switch sf.M.Name {
				case "trace_id":
					if id, err := storage.ParseTraceID(sf.M.Value); err == nil && len(sf.M.Value) == 32 {
						q.TraceID = id
					}
				}
			}
			continue
		}
		break
	}
	return q
}

// pipeline evaluates the stages for one record.
type pipeline struct {
	e     *LogExpr
	line  string
	ts    int64
	tmpls map[*LineFormat]*template.Template
	buf   bytes.Buffer
}

func newPipeline(e *LogExpr) *pipeline {
	p := &pipeline{e: e, tmpls: map[*LineFormat]*template.Template{}}
	for _, s := range e.Stages {
		if lf, ok := s.(*LineFormat); ok {
			t := template.Must(lf.tmpl.Clone())
			t.Funcs(template.FuncMap{
				"__line__":      func() string { return p.line },
				"__timestamp__": func() time.Time { return time.Unix(0, p.ts).UTC() },
			})
			p.tmpls[lf] = t
		}
	}
	return p
}

// run returns the output line and labels, or ok=false when a stage drops
// the entry. stream and meta are not modified.
func (p *pipeline) run(l *storage.LogRecord, stream, meta Labels) (line string, labels Labels, ok bool) {
	for _, m := range p.e.Matchers {
		v, _ := stream.Get(m.Name)
		if !m.Matches(v) {
			return "", nil, false
		}
	}
	p.line = l.Body.AsString()
	p.ts = l.Timestamp()
	labels = append(append(make(Labels, 0, len(stream)+len(meta)), stream...), meta...)
	for _, s := range p.e.Stages {
		switch x := s.(type) {
		case *LineFilter:
			if !x.match(p.line) {
				return "", nil, false
			}
		case *Parser:
			if x.Kind == "json" {
				labels = parseJSON(p.line, labels)
			} else {
				labels = parseLogfmt(p.line, labels)
			}
		case *LabelFilter:
			if !x.Expr.match(labels) {
				return "", nil, false
			}
		case *LineFormat:
			p.buf.Reset()
			if err := p.tmpls[x].Execute(capWriter{&p.buf}, labels.Map()); err != nil {
				labels = setLabel(labels, "__error__", "TemplateFormatErr")
				continue
			}
			p.line = p.buf.String()
		case *DropKeep:
			labels = dropKeep(x, labels)
		}
	}
	return p.line, sortLabels(labels), true
}

// capWriter refuses to grow a formatted line past MaxFormattedLine, however
// the template gets there (a long range, repeated literals).
type capWriter struct{ b *bytes.Buffer }

func (w capWriter) Write(p []byte) (int, error) {
	if w.b.Len()+len(p) > MaxFormattedLine {
		return 0, ErrLineTooLong
	}
	return w.b.Write(p)
}

func setLabel(ls Labels, name, value string) Labels {
	for i := range ls {
		if ls[i].Name == name {
			ls[i].Value = value
			return ls
		}
	}
	return append(ls, Label{name, value})
}

func dropKeep(d *DropKeep, ls Labels) Labels {
	out := ls[:0:0]
	for _, l := range ls {
		hit := false
		for i, n := range d.Names {
			if n == l.Name && (d.Match[i] == nil || d.Match[i].Matches(l.Value)) {
				hit = true
				break
			}
		}
		if hit == d.Keep {
			out = append(out, l)
		}
	}
	return out
}

// parseJSON adds the line's JSON fields as labels, flattening nested
// objects with underscores as Loki does. A line that is not a JSON object
// gets __error__="JSONParserErr".
func parseJSON(line string, ls Labels) Labels {
	var v map[string]any
	d := json.NewDecoder(strings.NewReader(line))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return setLabel(ls, "__error__", "JSONParserErr")
	}
	n := 0
	var walk func(prefix string, m map[string]any) bool
	walk = func(prefix string, m map[string]any) bool {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			name := LabelName(prefix + k)
			if _, nested := m[k].(map[string]any); !nested {
				if n++; n > MaxParsedLabels {
					return false
				}
			}
			switch x := m[k].(type) {
			case map[string]any:
				if !walk(name+"_", x) {
					return false
				}
			case string:
				ls = setLabel(ls, name, x)
			case json.Number:
				ls = setLabel(ls, name, x.String())
			case bool:
				ls = setLabel(ls, name, strconv.FormatBool(x))
			case nil:
			default:
				b, _ := json.Marshal(x)
				ls = setLabel(ls, name, string(b))
			}
		}
		return true
	}
	if !walk("", v) {
		ls = setLabel(ls, "__error__", "JSONParserErr")
		ls = setLabel(ls, "__error_details__", errTooManyFields)
	}
	return ls
}

// MaxParsedLabels bounds the labels json and logfmt take from one line:
// each is set by a search of the line's labels, so a line of 100,000
// fields would cost every query that parses it quadratic time. Past it
// the line keeps the first ones and gets __error__, with
// __error_details__ saying why.
const MaxParsedLabels = 1024

var errTooManyFields = fmt.Sprintf("more than %d fields", MaxParsedLabels)

// parseLogfmt adds key=value pairs of the line as labels.
func parseLogfmt(line string, ls Labels) Labels {
	i, n := 0, 0
	for i < len(line) {
		for i < len(line) && unicode.IsSpace(rune(line[i])) {
			i++
		}
		ks := i
		for i < len(line) && line[i] != '=' && !unicode.IsSpace(rune(line[i])) {
			i++
		}
		key := line[ks:i]
		if key == "" {
			i++
			continue
		}
		val := ""
		if i < len(line) && line[i] == '=' {
			i++
			if i < len(line) && line[i] == '"' {
				j := i + 1
				for j < len(line) && line[j] != '"' {
					if line[j] == '\\' {
						j++
					}
					j++
				}
				if j >= len(line) {
					return setLabel(ls, "__error__", "LogfmtParserErr")
				}
				u, err := strconv.Unquote(line[i : j+1])
				if err != nil {
					return setLabel(ls, "__error__", "LogfmtParserErr")
				}
				val = u
				i = j + 1
			} else {
				vs := i
				for i < len(line) && !unicode.IsSpace(rune(line[i])) {
					i++
				}
				val = line[vs:i]
			}
		}
		if n++; n > MaxParsedLabels {
			ls = setLabel(ls, "__error__", "LogfmtParserErr")
			return setLabel(ls, "__error_details__", errTooManyFields)
		}
		ls = setLabel(ls, LabelName(key), val)
	}
	return ls
}

// SelectRequest asks for log lines.
type SelectRequest struct {
	Expr       *LogExpr
	Start, End int64 // unix ns, inclusive start, exclusive end
	Limit      int
	Forward    bool // oldest first; the default is newest first
}

type entryHeap struct {
	items   []heapItem
	forward bool
}

type heapItem struct {
	e      Entry
	labels Labels
}

func (h *entryHeap) Len() int { return len(h.items) }
func (h *entryHeap) Less(i, j int) bool {
	// The root is the entry to evict: the oldest when newest-first.
	if h.forward {
		return h.items[i].e.Timestamp > h.items[j].e.Timestamp
	}
	return h.items[i].e.Timestamp < h.items[j].e.Timestamp
}
func (h *entryHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *entryHeap) Push(x any)    { h.items = append(h.items, x.(heapItem)) }
func (h *entryHeap) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}

// Select returns up to Limit entries, newest first (or oldest first when
// Forward), grouped into streams by their final labels.
func Select(ctx context.Context, sq storage.Querier, req SelectRequest) ([]Stream, Stats, error) {
	var st Stats
	if req.Limit <= 0 {
		req.Limit = 100
	}
	h := &entryHeap{forward: req.Forward}
	p := newPipeline(req.Expr)
	// Identical entries (same labels, time and line) are one entry, as in
	// Loki: client retries and replicas must not show a line twice.
	seen := map[entryKey]bool{}
	err := sq.Logs(ctx, pushdown(req.Expr, req.Start, req.End-1), func(l *storage.LogRecord) bool {
		st.Entries++
		st.Bytes += int64(len(l.Body.Str))
		stream := StreamLabels(l)
		meta := Metadata(l)
		line, labels, ok := p.run(l, stream, meta)
		if !ok {
			return true
		}
		k := entryKey{labels.String(), l.Timestamp(), line}
		if seen[k] {
			return true
		}
		seen[k] = true
		item := heapItem{e: Entry{Timestamp: l.Timestamp(), Line: line, Metadata: meta}, labels: labels}
		if h.Len() < req.Limit {
			heap.Push(h, item)
		} else if better(item.e.Timestamp, h.items[0].e.Timestamp, req.Forward) {
			h.items[0] = item
			heap.Fix(h, 0)
		}
		return true
	})
	if err != nil {
		return nil, st, err
	}
	byKey := map[string]*Stream{}
	var keys []string
	for _, it := range h.items {
		k := it.labels.String()
		s, ok := byKey[k]
		if !ok {
			s = &Stream{Labels: it.labels}
			byKey[k] = s
			keys = append(keys, k)
		}
		s.Entries = append(s.Entries, it.e)
	}
	slices.Sort(keys)
	out := make([]Stream, 0, len(keys))
	for _, k := range keys {
		s := byKey[k]
		slices.SortFunc(s.Entries, func(a, b Entry) int {
			if req.Forward {
				return cmp.Compare(a.Timestamp, b.Timestamp)
			}
			return cmp.Compare(b.Timestamp, a.Timestamp)
		})
		out = append(out, *s)
	}
	return out, st, nil
}

type entryKey struct {
	labels string
	ts     int64
	line   string
}

func better(ts, worst int64, forward bool) bool {
	if forward {
		return ts < worst
	}
	return ts > worst
}

// MetricRequest evaluates a metric query at Start, Start+Step, ... <= End
// (unix ns), as Loki and Prometheus range queries do. An instant query has
// Start == End.
type MetricRequest struct {
	Expr       MetricExpr
	Start, End int64
	Step       int64
	MaxSeries  int
}

// Eval runs a metric query.
func Eval(ctx context.Context, sq storage.Querier, req MetricRequest) ([]Series, Stats, error) {
	var st Stats
	if req.Step <= 0 {
		req.Step = int64(time.Second)
	}
	steps := int((req.End-req.Start)/req.Step) + 1
	out, err := evalMetric(ctx, sq, req, req.Expr, steps, &st)
	if err != nil {
		return nil, st, err
	}
	slices.SortFunc(out, func(a, b Series) int { return strings.Compare(a.Metric.String(), b.Metric.String()) })
	return out, st, nil
}

type sampleSeries struct {
	labels Labels
	ts     []int64
	size   []int
	hash   []uint64
	vals   []float64 // per step; NaN = absent
}

func evalMetric(ctx context.Context, sq storage.Querier, req MetricRequest, e MetricExpr, steps int, st *Stats) ([]Series, error) {
	switch x := e.(type) {
	case *RangeAggregation:
		return evalRange(ctx, sq, req, x, steps, st, nil)
	case *VectorAggregation:
		// A sum of an additive range aggregation is grouped while the
		// records stream: summing per group first gives the same numbers,
		// and the per-stream series (one per trace_id, say) that the
		// series limit would refuse are never built.
		if r, ok := x.Inner.(*RangeAggregation); ok && x.Fn == "sum" {
			return evalRange(ctx, sq, req, r, steps, st, func(ls Labels) Labels { return groupLabels(x, ls) })
		}
		inner, err := evalMetric(ctx, sq, req, x.Inner, steps, st)
		if err != nil {
			return nil, err
		}
		// Sorted input makes topk/bottomk break ties by labels.
		slices.SortFunc(inner, func(a, b Series) int { return strings.Compare(a.Metric.String(), b.Metric.String()) })
		return aggregate(x, inner), nil
	}
	return nil, fmt.Errorf("unknown expression %T", e)
}

// evalRange evaluates a range aggregation. With group, records are
// counted into the series of their group's labels instead of their own;
// identical entries are still recognised per original stream.
func evalRange(ctx context.Context, sq storage.Querier, req MetricRequest, x *RangeAggregation, steps int, st *Stats, group func(Labels) Labels) ([]Series, error) {
	rng := int64(x.Range)
	series := map[string]*sampleSeries{}
	over := false
	var keys []string
	p := newPipeline(x.Log)
	err := sq.Logs(ctx, pushdown(x.Log, req.Start-rng+1, req.End), func(l *storage.LogRecord) bool {
		st.Entries++
		st.Bytes += int64(len(l.Body.Str))
		line, labels, ok := p.run(l, StreamLabels(l), Metadata(l))
		if !ok {
			return true
		}
		h := hashLine(line)
		if group != nil {
			h ^= hashLine(labels.String())
			labels = group(labels)
		}
		k := labels.String()
		s, ok := series[k]
		if !ok {
			if req.MaxSeries > 0 && len(series) >= req.MaxSeries {
				over = true
				return false
			}
			s = &sampleSeries{labels: labels}
			series[k] = s
			keys = append(keys, k)
		}
		s.ts = append(s.ts, l.Timestamp())
		s.size = append(s.size, len(line))
		s.hash = append(s.hash, h)
		return true
	})
	if err != nil {
		return nil, err
	}
	if over {
		return nil, fmt.Errorf("%w: the limit is %d", ErrTooManySeries, req.MaxSeries)
	}
	out := make([]Series, 0, len(keys))
	for _, k := range keys {
		s := series[k]
		idx := make([]int, len(s.ts))
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(a, b int) int {
			if c := cmp.Compare(s.ts[a], s.ts[b]); c != 0 {
				return c
			}
			return cmp.Compare(s.hash[a], s.hash[b])
		})
		// Drop identical entries, as Select does.
		idx = slices.CompactFunc(idx, func(a, b int) bool { return s.ts[a] == s.ts[b] && s.hash[a] == s.hash[b] })
		res := Series{Metric: s.labels}
		lo, hi := 0, 0
		for i := range steps {
			t := req.Start + int64(i)*req.Step
			// window (t - range, t]
			for hi < len(idx) && s.ts[idx[hi]] <= t {
				hi++
			}
			for lo < hi && s.ts[idx[lo]] <= t-rng {
				lo++
			}
			if hi == lo {
				continue
			}
			var v float64
			switch x.Fn {
			case "count_over_time", "rate":
				v = float64(hi - lo)
			default:
				for _, j := range idx[lo:hi] {
					v += float64(s.size[j])
				}
			}
			if x.Fn == "rate" || x.Fn == "bytes_rate" {
				v /= x.Range.Seconds()
			}
			res.Points = append(res.Points, Point{T: t / 1e6, V: v})
		}
		if len(res.Points) > 0 {
			out = append(out, res)
		}
	}
	return out, nil
}

func groupLabels(v *VectorAggregation, ls Labels) Labels {
	if v.By == nil {
		return Labels{}
	}
	out := Labels{}
	for _, l := range ls {
		if slices.Contains(v.By, l.Name) != v.Without {
			out = append(out, l)
		}
	}
	return out
}

func aggregate(v *VectorAggregation, in []Series) []Series {
	if v.Fn == "topk" || v.Fn == "bottomk" {
		return topk(v, in)
	}
	type acc struct {
		labels Labels
		vals   map[int64][]float64
	}
	groups := map[string]*acc{}
	var keys []string
	for _, s := range in {
		g := groupLabels(v, s.Metric)
		k := g.String()
		a, ok := groups[k]
		if !ok {
			a = &acc{labels: g, vals: map[int64][]float64{}}
			groups[k] = a
			keys = append(keys, k)
		}
		for _, p := range s.Points {
			a.vals[p.T] = append(a.vals[p.T], p.V)
		}
	}
	out := make([]Series, 0, len(keys))
	for _, k := range keys {
		a := groups[k]
		ts := make([]int64, 0, len(a.vals))
		for t := range a.vals {
			ts = append(ts, t)
		}
		slices.Sort(ts)
		s := Series{Metric: a.labels}
		for _, t := range ts {
			vs := a.vals[t]
			var r float64
			switch v.Fn {
			case "sum", "avg":
				for _, x := range vs {
					r += x
				}
				if v.Fn == "avg" {
					r /= float64(len(vs))
				}
			case "count":
				r = float64(len(vs))
			case "min":
				r = slices.Min(vs)
			case "max":
				r = slices.Max(vs)
			}
			s.Points = append(s.Points, Point{T: t, V: r})
		}
		out = append(out, s)
	}
	return out
}

// topk keeps, at every step and within every group, the k largest
// (smallest) series values, as PromQL does.
func topk(v *VectorAggregation, in []Series) []Series {
	type ref struct {
		series int
		v      float64
	}
	at := map[string]map[int64][]ref{}
	for i, s := range in {
		g := groupLabels(v, s.Metric).String()
		if at[g] == nil {
			at[g] = map[int64][]ref{}
		}
		for _, p := range s.Points {
			at[g][p.T] = append(at[g][p.T], ref{i, p.V})
		}
	}
	keep := make([]map[int64]bool, len(in))
	for _, byT := range at {
		for t, refs := range byT {
			slices.SortStableFunc(refs, func(a, b ref) int {
				if v.Fn == "topk" {
					return cmp.Compare(b.v, a.v)
				}
				return cmp.Compare(a.v, b.v)
			})
			for _, r := range refs[:min(v.Param, len(refs))] {
				if keep[r.series] == nil {
					keep[r.series] = map[int64]bool{}
				}
				keep[r.series][t] = true
			}
		}
	}
	var out []Series
	for i, s := range in {
		var pts []Point
		for _, p := range s.Points {
			if keep[i][p.T] && !math.IsNaN(p.V) {
				pts = append(pts, p)
			}
		}
		if len(pts) > 0 {
			out = append(out, Series{Metric: s.Metric, Points: pts})
		}
	}
	return out
}

// hashLine is FNV-1a; equal hashes at the same timestamp in the same
// series are taken as the same entry.
func hashLine(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}
