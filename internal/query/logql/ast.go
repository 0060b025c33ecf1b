// Package logql parses and evaluates the LogQL subset that Grafana's Loki
// datasource sends: stream selectors, line filters, json and logfmt
// parsers, label filters, line_format, drop/keep, and the metric functions
// count_over_time, rate, bytes_over_time and bytes_rate under sum, count,
// avg, min, max, topk and bottomk.
//
// OTLP log records map to Loki's model as Loki's own OTLP ingestion does:
// resource attributes are stream labels, log attributes, trace_id,
// span_id and the severity are structured metadata, the body is the line.
// Attribute names become label names by replacing every character that is
// not a letter, digit or underscore with an underscore.
package logql

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// Pos is a 1-based line and column in the query text.
type Pos struct{ Line, Col int }

// Error is a parse error, worded like Loki's so that Grafana shows it the
// way users know.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string {
	return fmt.Sprintf("parse error at line %d, col %d: %s", e.Pos.Line, e.Pos.Col, e.Msg)
}

// Label is one name/value pair.
type Label struct{ Name, Value string }

// Labels is a label set sorted by name.
type Labels []Label

// Get returns the value of name, or "".
func (ls Labels) Get(name string) (string, bool) {
	for _, l := range ls {
		if l.Name == name {
			return l.Value, true
		}
	}
	return "", false
}

func (ls Labels) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(l.Name + "=" + strconv.Quote(l.Value))
	}
	b.WriteByte('}')
	return b.String()
}

// Map returns the labels as a map.
func (ls Labels) Map() map[string]string {
	m := make(map[string]string, len(ls))
	for _, l := range ls {
		m[l.Name] = l.Value
	}
	return m
}

// MatchType is a label matcher operator.
type MatchType uint8

// Matcher operators.
const (
	MatchEqual MatchType = iota
	MatchNotEqual
	MatchRegexp
	MatchNotRegexp
)

var matchNames = [...]string{"=", "!=", "=~", "!~"}

// Matcher matches one label.
type Matcher struct {
	Name  string
	Type  MatchType
	Value string
	re    *regexp.Regexp
}

func newMatcher(name string, t MatchType, v string) (*Matcher, error) {
	m := &Matcher{Name: name, Type: t, Value: v}
	if t == MatchRegexp || t == MatchNotRegexp {
		re, err := regexp.Compile("^(?s:" + v + ")$")
		if err != nil {
			return nil, err
		}
		m.re = re
	}
	return m, nil
}

// Matches tests a label value ("" when absent, as in Prometheus).
func (m *Matcher) Matches(v string) bool {
	switch m.Type {
	case MatchEqual:
		return v == m.Value
	case MatchNotEqual:
		return v != m.Value
	case MatchRegexp:
		return m.re.MatchString(v)
	}
	return !m.re.MatchString(v)
}

func (m *Matcher) String() string {
	return m.Name + matchNames[m.Type] + strconv.Quote(m.Value)
}

// LogExpr is a stream selector with its pipeline.
type LogExpr struct {
	Matchers []*Matcher
	Stages   []Stage
}

func (e *LogExpr) String() string {
	ms := make([]string, len(e.Matchers))
	for i, m := range e.Matchers {
		ms[i] = m.String()
	}
	var b strings.Builder
	b.WriteString("{" + strings.Join(ms, ", ") + "}")
	for _, s := range e.Stages {
		b.WriteString(" " + s.String())
	}
	return b.String()
}

// Stage is one pipeline stage.
type Stage interface{ String() string }

// LineFilter is |= != |~ !~ on the line.
type LineFilter struct {
	Op    string
	Value string
	re    *regexp.Regexp
}

func (f *LineFilter) String() string { return f.Op + " " + strconv.Quote(f.Value) }

func (f *LineFilter) match(line string) bool {
	switch f.Op {
	case "|=":
		return strings.Contains(line, f.Value)
	case "!=":
		return !strings.Contains(line, f.Value)
	case "|~":
		return f.re.MatchString(line)
	}
	return !f.re.MatchString(line)
}

// Parser is | json or | logfmt.
type Parser struct{ Kind string }

func (p *Parser) String() string { return "| " + p.Kind }

// LabelFilter keeps entries whose labels satisfy an expression.
type LabelFilter struct{ Expr FilterExpr }

func (f *LabelFilter) String() string { return "| " + f.Expr.String() }

// FilterExpr is a label predicate: a comparison, or and/or of two.
type FilterExpr interface {
	String() string
	match(Labels) bool
}

// FilterBinary is `a and b` or `a or b` (a comma means and).
type FilterBinary struct {
	Op       string
	LHS, RHS FilterExpr
}

func (f *FilterBinary) String() string {
	return "(" + f.LHS.String() + " " + f.Op + " " + f.RHS.String() + ")"
}
func (f *FilterBinary) match(ls Labels) bool {
	if f.Op == "and" {
		return f.LHS.match(ls) && f.RHS.match(ls)
	}
	return f.LHS.match(ls) || f.RHS.match(ls)
}

// StringFilter compares a label with a string.
type StringFilter struct{ M *Matcher }

func (f *StringFilter) String() string { return f.M.String() }
func (f *StringFilter) match(ls Labels) bool {
	v, _ := ls.Get(f.M.Name)
	return f.M.Matches(v)
}

// NumberFilter compares a label, parsed as a number or duration, with a
// number or duration. Labels that do not parse fail the filter.
type NumberFilter struct {
	Name     string
	Op       string
	Value    float64
	Duration bool
	text     string
}

func (f *NumberFilter) String() string { return f.Name + " " + f.Op + " " + f.text }
func (f *NumberFilter) match(ls Labels) bool {
	s, ok := ls.Get(f.Name)
	if !ok {
		return false
	}
	var v float64
	if f.Duration {
		d, err := time.ParseDuration(s)
		if err != nil {
			return false
		}
		v = d.Seconds()
	} else {
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return false
		}
		v = x
	}
	switch f.Op {
	case ">":
		return v > f.Value
	case ">=":
		return v >= f.Value
	case "<":
		return v < f.Value
	case "<=":
		return v <= f.Value
	case "==", "=":
		return v == f.Value
	}
	return v != f.Value
}

// LineFormat rewrites the line from a text/template over the labels.
type LineFormat struct {
	Template string
	tmpl     *template.Template
}

func (f *LineFormat) String() string { return "| line_format " + strconv.Quote(f.Template) }

// DropKeep is | drop a, b="x" or | keep a, b.
type DropKeep struct {
	Keep  bool
	Names []string
	Match []*Matcher // nil entries: drop/keep by name alone
}

func (d *DropKeep) String() string {
	op := "drop"
	if d.Keep {
		op = "keep"
	}
	parts := make([]string, len(d.Names))
	for i, n := range d.Names {
		if d.Match[i] != nil {
			parts[i] = d.Match[i].String()
		} else {
			parts[i] = n
		}
	}
	return "| " + op + " " + strings.Join(parts, ", ")
}

// MetricExpr yields series.
type MetricExpr interface {
	String() string
	metric()
}

// RangeAggregation is count_over_time, rate, bytes_over_time or
// bytes_rate over a log expression and a range.
type RangeAggregation struct {
	Fn    string
	Log   *LogExpr
	Range time.Duration
}

func (r *RangeAggregation) String() string {
	return r.Fn + "(" + r.Log.String() + " [" + promDuration(r.Range) + "])"
}
func (*RangeAggregation) metric() {}

// VectorAggregation is sum, count, avg, min, max, topk or bottomk.
type VectorAggregation struct {
	Fn      string
	By      []string
	Without bool
	Param   int
	Inner   MetricExpr
}

func (v *VectorAggregation) String() string {
	var b strings.Builder
	b.WriteString(v.Fn)
	if v.By != nil {
		kw := " by "
		if v.Without {
			kw = " without "
		}
		b.WriteString(kw + "(" + strings.Join(v.By, ", ") + ") ")
	}
	b.WriteString("(")
	if v.Fn == "topk" || v.Fn == "bottomk" {
		b.WriteString(strconv.Itoa(v.Param) + ", ")
	}
	b.WriteString(v.Inner.String() + ")")
	return b.String()
}
func (*VectorAggregation) metric() {}

// Query is a parsed LogQL query: exactly one of Log and Metric is set.
type Query struct {
	Log    *LogExpr
	Metric MetricExpr
}

func (q *Query) String() string {
	if q.Log != nil {
		return q.Log.String()
	}
	return q.Metric.String()
}

func promDuration(d time.Duration) string {
	for _, u := range []struct {
		s string
		d time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}} {
		if d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.s
		}
	}
	return d.String()
}

// LabelName turns an OTLP attribute key into a Loki label name.
func LabelName(key string) string {
	ok := true
	for i, r := range key {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			ok = false
			break
		}
	}
	if ok && key != "" {
		return key
	}
	b := []byte(key)
	for i, c := range b {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

func sortLabels(ls Labels) Labels {
	slices.SortFunc(ls, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
	return ls
}
