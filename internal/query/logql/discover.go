package logql

import (
	"cmp"
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// This file answers the questions Grafana asks before it queries: how much
// log volume each stream or label holds (Loki's index/volume and
// index/volume_range), which stream labels there are and how many values
// each has (detected_labels), and which fields the lines carry, of what
// type (detected_fields). Loki answers the first two from its index; here
// they read the records in range, so their callers bound the range and
// the records read.

// VolumeRequest asks how many bytes of log lines the streams a selector
// picks hold, grouped as Loki's volume endpoints group them.
type VolumeRequest struct {
	// Selector picks the streams; its pipeline, if any, is ignored.
	Selector   *LogExpr
	Start, End int64 // unix ns, [Start, End] as Streams reads
	// Step, when positive, splits the range: a point at Start, Start+Step
	// ... End, each summing (t-Step, t]. 0 gives one point, at End, for
	// the whole range.
	Step int64
	// TargetLabels are the labels series are made of. Empty: the names
	// of the selector's matchers.
	TargetLabels []string
	// ByLabels makes one series per label name, whatever its value, with
	// the value "" (aggregateBy=labels); otherwise one per combination of
	// values (aggregateBy=series).
	ByLabels bool
	// Limit keeps the largest series (0: 100, as Loki).
	Limit int
	// MaxSeries bounds the series held while reading (0: no bound).
	MaxSeries int
}

// Volume returns the bytes of log lines per series, largest first.
func Volume(ctx context.Context, sq storage.Querier, req VolumeRequest) ([]Series, error) {
	targets := req.TargetLabels
	if len(targets) == 0 && req.Selector != nil {
		for _, m := range req.Selector.Matchers {
			if !slices.Contains(targets, m.Name) {
				targets = append(targets, m.Name)
			}
		}
	}
	type acc struct {
		labels Labels
		total  float64
		points map[int64]float64 // point time (unix ms) -> bytes
	}
	series := map[string]*acc{}
	var tooMany bool
	add := func(ls Labels, t int64, bytes float64) {
		key := ls.String()
		a := series[key]
		if a == nil {
			if req.MaxSeries > 0 && len(series) >= req.MaxSeries {
				tooMany = true
				return
			}
			a = &acc{labels: ls, points: map[int64]float64{}}
			series[key] = a
		}
		a.total += bytes
		a.points[t] += bytes
	}
	err := Streams(ctx, sq, req.Selector, req.Start, req.End, 0, func(stream Labels, l *storage.LogRecord) {
		t := req.End
		if req.Step > 0 {
			k := max((l.Timestamp()-req.Start+req.Step-1)/req.Step, 0)
			t = req.Start + k*req.Step
		}
		t /= 1e6
		bytes := float64(len(l.Body.AsString()))
		if req.ByLabels {
			for _, name := range targets {
				if _, ok := stream.Get(name); ok {
					add(Labels{{name, ""}}, t, bytes)
				}
			}
			return
		}
		var ls Labels
		for _, name := range targets {
			if v, ok := stream.Get(name); ok {
				ls = append(ls, Label{name, v})
			}
		}
		add(sortLabels(ls), t, bytes)
	})
	if err != nil {
		return nil, err
	}
	if tooMany {
		return nil, ErrTooManySeries
	}
	accs := make([]*acc, 0, len(series))
	for _, a := range series {
		accs = append(accs, a)
	}
	slices.SortFunc(accs, func(a, b *acc) int {
		if a.total != b.total {
			if a.total > b.total {
				return -1
			}
			return 1
		}
		return strings.Compare(a.labels.String(), b.labels.String())
	})
	limit := req.Limit
	if limit <= 0 {
		limit = 100
	}
	out := make([]Series, 0, min(limit, len(accs)))
	for _, a := range accs[:min(limit, len(accs))] {
		s := Series{Metric: a.labels}
		for t, v := range a.points {
			s.Points = append(s.Points, Point{T: t, V: v})
		}
		slices.SortFunc(s.Points, func(x, y Point) int { return cmp.Compare(x.T, y.T) })
		out = append(out, s)
	}
	return out, nil
}

// maxDetectedValues bounds the distinct values counted per label or field:
// past it the cardinality is reported as the bound, which is all a picker
// needs to know.
const maxDetectedValues = 10_000

// DetectedLabel is a stream label and how many values it has in range.
type DetectedLabel struct {
	Label       string `json:"label"`
	Cardinality int    `json:"cardinality"`
}

// DetectedLabels returns the stream labels of the records in [start, end]
// that sel picks (all when nil), reading at most limit records (0: all),
// by name.
func DetectedLabels(ctx context.Context, sq storage.Querier, sel *LogExpr, start, end int64, limit int) ([]DetectedLabel, error) {
	values := map[string]map[string]struct{}{}
	err := Streams(ctx, sq, sel, start, end, limit, func(stream Labels, _ *storage.LogRecord) {
		for _, l := range stream {
			set := values[l.Name]
			if set == nil {
				set = map[string]struct{}{}
				values[l.Name] = set
			}
			if len(set) < maxDetectedValues {
				set[l.Value] = struct{}{}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	out := make([]DetectedLabel, 0, len(values))
	for name, set := range values {
		out = append(out, DetectedLabel{Label: name, Cardinality: len(set)})
	}
	slices.SortFunc(out, func(a, b DetectedLabel) int { return strings.Compare(a.Label, b.Label) })
	return out, nil
}

// DetectedField is a field of the log lines, as Loki's detected_fields
// reports it: from structured metadata (no parser) or parsed out of the
// line by json or logfmt.
type DetectedField struct {
	Label       string   `json:"label"`
	Type        string   `json:"type"` // string, int, float, boolean, duration or bytes
	Cardinality int      `json:"cardinality"`
	Parsers     []string `json:"parsers"`
	// JSONPath is the field's path in a JSON line, for `| json x="a.b"`.
	JSONPath []string `json:"jsonPath,omitempty"`

	values map[string]struct{}
	kinds  kindSet
}

// FieldsRequest asks for the fields of the newest lines a query selects.
type FieldsRequest struct {
	Expr       *LogExpr
	Start, End int64 // unix ns, [Start, End)
	// LineLimit is the number of lines read, newest first (0: 1000, as
	// Loki).
	LineLimit int
	// Limit is the number of fields returned (0: 1000, as Loki).
	Limit int
}

// DetectedFields returns the fields of the lines, by name. Stream labels
// are not fields; detected_level is left out, as Loki leaves it.
func DetectedFields(ctx context.Context, sq storage.Querier, req FieldsRequest) ([]DetectedField, error) {
	fields, err := detectFields(ctx, sq, req)
	if err != nil {
		return nil, err
	}
	out := make([]DetectedField, 0, len(fields))
	for _, f := range fields {
		f.Cardinality = len(f.values)
		f.Type = f.kinds.name()
		out = append(out, *f)
	}
	slices.SortFunc(out, func(a, b DetectedField) int { return strings.Compare(a.Label, b.Label) })
	limit := req.Limit
	if limit <= 0 {
		limit = 1000
	}
	return out[:min(limit, len(out))], nil
}

// DetectedFieldValues returns the distinct values of one field, sorted.
func DetectedFieldValues(ctx context.Context, sq storage.Querier, req FieldsRequest, name string) ([]string, error) {
	fields, err := detectFields(ctx, sq, req)
	if err != nil {
		return nil, err
	}
	out := []string{}
	if f, ok := fields[name]; ok {
		for v := range f.values {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	limit := req.Limit
	if limit <= 0 {
		limit = 1000
	}
	return out[:min(limit, len(out))], nil
}

func detectFields(ctx context.Context, sq storage.Querier, req FieldsRequest) (map[string]*DetectedField, error) {
	lines := req.LineLimit
	if lines <= 0 {
		lines = 1000
	}
	streams, _, err := Select(ctx, sq, SelectRequest{Expr: req.Expr, Start: req.Start, End: req.End, Limit: lines})
	if err != nil {
		return nil, err
	}
	fields := map[string]*DetectedField{}
	note := func(name, value, parser string, path []string) {
		f := fields[name]
		if f == nil {
			if len(fields) >= MaxParsedLabels {
				return
			}
			f = &DetectedField{Label: name, values: map[string]struct{}{}, kinds: allKinds, JSONPath: path}
			fields[name] = f
		}
		if parser != "" && !slices.Contains(f.Parsers, parser) {
			f.Parsers = append(f.Parsers, parser)
		}
		if len(f.values) < maxDetectedValues {
			f.values[value] = struct{}{}
		}
		f.kinds &= kindsOf(value)
	}
	for _, s := range streams {
		for _, e := range s.Entries {
			for _, m := range e.Metadata {
				if m.Name != "detected_level" && !strings.HasPrefix(m.Name, "__") {
					note(m.Name, m.Value, "", nil)
				}
			}
			line := strings.TrimSpace(e.Line)
			switch {
			case strings.HasPrefix(line, "{"):
				jsonFields(line, func(name, value string, path []string) { note(name, value, "json", path) })
			case strings.Contains(line, "="):
				for _, l := range parseLogfmt(line, nil) {
					// Words without '=' parse as keys without values.
					if l.Value != "" && !strings.HasPrefix(l.Name, "__") {
						note(l.Name, l.Value, "logfmt", nil)
					}
				}
			}
		}
	}
	return fields, nil
}

// jsonFields calls fn with each leaf of a JSON object line: its label name
// (nested keys joined with underscores, as the json parser names them),
// its value and its path. A line that is not an object yields nothing.
func jsonFields(line string, fn func(name, value string, path []string)) {
	var v map[string]any
	d := json.NewDecoder(strings.NewReader(line))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return
	}
	n := 0
	var walk func(path []string, m map[string]any)
	walk = func(path []string, m map[string]any) {
		for k, x := range m {
			if n >= MaxParsedLabels {
				return
			}
			p := append(slices.Clip(path), k)
			var s string
			switch x := x.(type) {
			case map[string]any:
				walk(p, x)
				continue
			case string:
				s = x
			case json.Number:
				s = x.String()
			case bool:
				s = strconv.FormatBool(x)
			case nil:
				continue
			default:
				b, _ := json.Marshal(x)
				s = string(b)
			}
			n++
			fn(LabelName(strings.Join(p, "_")), s, p)
		}
	}
	walk(nil, v)
}

// kindSet is the set of types every value of a field so far parses as.
type kindSet uint8

const (
	kindInt kindSet = 1 << iota
	kindFloat
	kindBool
	kindDuration
	kindBytes
	allKinds = kindInt | kindFloat | kindBool | kindDuration | kindBytes
)

var bytesValue = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?\s?[KMGTPE]?i?B$`)

func kindsOf(v string) kindSet {
	var k kindSet
	if _, err := strconv.ParseInt(v, 10, 64); err == nil {
		k |= kindInt | kindFloat
	} else if _, err := strconv.ParseFloat(v, 64); err == nil {
		k |= kindFloat
	}
	if strings.EqualFold(v, "true") || strings.EqualFold(v, "false") {
		k |= kindBool
	}
	if _, err := time.ParseDuration(v); err == nil && k&kindFloat == 0 {
		k |= kindDuration
	}
	if bytesValue.MatchString(v) {
		k |= kindBytes
	}
	return k
}

// name is the most specific type all values share, in Loki's names.
func (k kindSet) name() string {
	switch {
	case k&kindInt != 0:
		return "int"
	case k&kindFloat != 0:
		return "float"
	case k&kindBool != 0:
		return "boolean"
	case k&kindDuration != 0:
		return "duration"
	case k&kindBytes != 0:
		return "bytes"
	}
	return "string"
}
