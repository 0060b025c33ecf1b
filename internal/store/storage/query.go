package storage

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
)

// Scope says where an attribute lives.
type Scope uint8

// Attribute scopes. ScopeAny matches span attributes first, then resource
// attributes, as TraceQL's unscoped `.key` does.
const (
	ScopeAny Scope = iota
	ScopeSpan
	ScopeResource
)

// Op is a comparison operator.
type Op uint8

// Comparison operators.
const (
	OpEqual Op = iota
	OpNotEqual
	OpRegexp
	OpNotRegexp
	OpGreater
	OpGreaterEqual
	OpLess
	OpLessEqual
	OpExists
)

var opNames = [...]string{"=", "!=", "=~", "!~", ">", ">=", "<", "<=", "exists"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", o)
}

// Matcher compares one attribute with a value. Build it with NewMatcher so
// that regular expressions are compiled once.
type Matcher struct {
	Scope Scope
	Key   string
	Op    Op
	Value Value
	re    *regexp.Regexp
}

// NewMatcher returns a matcher; regexps are anchored like PromQL's.
func NewMatcher(scope Scope, key string, op Op, v Value) (*Matcher, error) {
	m := &Matcher{Scope: scope, Key: key, Op: op, Value: v}
	if op == OpRegexp || op == OpNotRegexp {
		re, err := regexp.Compile("^(?:" + v.Str + ")$")
		if err != nil {
			return nil, fmt.Errorf("attribute %q: bad regexp: %w", key, err)
		}
		m.re = re
	}
	return m, nil
}

// MatchValue reports whether an attribute value satisfies the matcher. ok is
// false when the attribute is absent; absent attributes only match !=, !~.
func (m *Matcher) MatchValue(v Value, ok bool) bool {
	if !ok {
		return m.Op == OpNotEqual || m.Op == OpNotRegexp
	}
	switch m.Op {
	case OpExists:
		return true
	case OpEqual:
		return equalValues(v, m.Value)
	case OpNotEqual:
		return !equalValues(v, m.Value)
	case OpRegexp:
		return m.re.MatchString(v.AsString())
	case OpNotRegexp:
		return !m.re.MatchString(v.AsString())
	}
	a, aok := v.AsFloat()
	b, bok := m.Value.AsFloat()
	if v.Type == TypeStr && m.Value.Type == TypeStr {
		return compareOrdered(v.Str, m.Value.Str, m.Op)
	}
	if !aok || !bok {
		return false
	}
	return compareOrdered(a, b, m.Op)
}

func compareOrdered[T int64 | float64 | string](a, b T, op Op) bool {
	switch op {
	case OpGreater:
		return a > b
	case OpGreaterEqual:
		return a >= b
	case OpLess:
		return a < b
	case OpLessEqual:
		return a <= b
	}
	return false
}

func equalValues(a, b Value) bool {
	if a.Type == b.Type {
		return a == b
	}
	// 200 and 200.0 are equal, as in TraceQL.
	x, xok := a.AsFloat()
	y, yok := b.AsFloat()
	return xok && yok && a.Type != TypeStr && b.Type != TypeStr && x == y
}

// Lookup finds the matcher's attribute on a span.
func (m *Matcher) Lookup(attrs Attrs, res *Resource) (Value, bool) {
	if m.Scope != ScopeResource {
		if v, ok := attrs.Get(m.Key); ok {
			return v, true
		}
		if m.Scope == ScopeSpan {
			return Value{}, false
		}
	}
	if res == nil {
		return Value{}, false
	}
	return res.Attrs.Get(m.Key)
}

// SpanQuery selects spans. Zero fields do not filter. All conditions must
// hold (AND); engines evaluate OR and structural operators themselves.
type SpanQuery struct {
	// Start and End bound span start times, in unix nanoseconds.
	Start, End int64
	// TraceID restricts the query to one trace.
	TraceID TraceID
	// TraceIDs, when not empty, restricts the query to these traces. They
	// must be sorted (bytewise) and distinct: a store merges them with its
	// own trace order instead of looking each up.
	TraceIDs []TraceID
	// ServiceName matches resource service.name exactly.
	ServiceName string
	// Name matches the span name exactly.
	Name string
	// Kind matches when HasKind is set.
	Kind    SpanKind
	HasKind bool
	// Status matches when HasStatus is set.
	Status    StatusCode
	HasStatus bool
	// MinDuration and MaxDuration bound the duration in nanoseconds
	// (inclusive); 0 leaves a side open.
	MinDuration, MaxDuration int64
	// Matchers compare attributes.
	Matchers []*Matcher
	// Projection says which parts of each span the caller reads, and
	// Fields, with ProjectCore, which of the core ones.
	Projection Projection
	Fields     CoreFields
	// Floor, when not nil, is a start time below which the caller no
	// longer wants spans, raised while the query runs: a store may skip a
	// part (a block, a row group) whose spans all start before it, and
	// need not skip anything. A search for the most recent traces raises
	// it to the start of the oldest of the ones it would answer with, so
	// that blocks too old to change its answer are not read.
	Floor *StartFloor
}

// StartFloor is SpanQuery.Floor: a time that only rises, safe for
// concurrent use. Nil or zero excludes nothing.
type StartFloor struct{ v atomic.Int64 }

// Raise sets the floor to t if t is higher.
func (f *StartFloor) Raise(t int64) {
	for {
		old := f.v.Load()
		if t <= old || f.v.CompareAndSwap(old, t) {
			return
		}
	}
}

// Load returns the floor; 0 when f is nil.
func (f *StartFloor) Load() int64 {
	if f == nil {
		return 0
	}
	return f.v.Load()
}

// Excludes reports whether spans that all start (and end) at or before
// maxTime are below the floor.
func (f *StartFloor) Excludes(maxTime int64) bool {
	return f != nil && maxTime < f.v.Load()
}

// Projection lets a reader ask for less than whole spans, so that the store
// can read a few flat columns instead of decoding every row in full.
type Projection uint8

const (
	// ProjectAll fills every field.
	ProjectAll Projection = iota
	// ProjectCore fills the trace, span and parent IDs, name, kind, status
	// code, start and end, and a Resource holding only service.name. The
	// store may leave everything else empty, and may reuse the Span it
	// hands to Spans' callback (see Querier.Spans). Conditions of the
	// query are still applied in full.
	ProjectCore
)

// CoreFields narrows a ProjectCore read to some of its fields, so that a
// store reads fewer columns: a search that only needs each match's trace
// and start, a metrics query grouped by service. Zero means all of them.
// Conditions of the query are applied in full whatever is filled.
type CoreFields uint16

const (
	FieldTraceID CoreFields = 1 << iota
	FieldSpanID
	FieldParentSpanID
	FieldName
	FieldKind
	FieldStatus
	FieldStart
	// FieldDuration fills EndUnixNano; it implies FieldStart.
	FieldDuration
	// FieldService fills a Resource holding only service.name.
	FieldService
)

// Match evaluates every condition on s.
func (q *SpanQuery) Match(s *Span) bool {
	if q.Start != 0 && s.StartUnixNano < q.Start {
		return false
	}
	if q.End != 0 && s.StartUnixNano > q.End {
		return false
	}
	if !q.TraceID.IsEmpty() && s.TraceID != q.TraceID {
		return false
	}
	if len(q.TraceIDs) > 0 && !q.HasTrace(s.TraceID) {
		return false
	}
	if q.ServiceName != "" && s.Resource.ServiceName() != q.ServiceName {
		return false
	}
	if q.Name != "" && s.Name != q.Name {
		return false
	}
	if q.HasKind && s.Kind != q.Kind {
		return false
	}
	if q.HasStatus && s.StatusCode != q.Status {
		return false
	}
	d := s.Duration()
	if q.MinDuration != 0 && d < q.MinDuration {
		return false
	}
	if q.MaxDuration != 0 && d > q.MaxDuration {
		return false
	}
	for _, m := range q.Matchers {
		v, ok := m.Lookup(s.Attrs, s.Resource)
		if !m.MatchValue(v, ok) {
			return false
		}
	}
	return true
}

// HasTrace reports whether id is one of TraceIDs.
func (q *SpanQuery) HasTrace(id TraceID) bool {
	_, ok := slices.BinarySearchFunc(q.TraceIDs, id, func(a, b TraceID) int { return bytes.Compare(a[:], b[:]) })
	return ok
}

// LogQuery selects log records; zero fields do not filter.
type LogQuery struct {
	Start, End  int64
	ServiceName string
	TraceID     TraceID
	SpanID      SpanID
	// MinSeverity keeps records with SeverityNumber >= MinSeverity.
	MinSeverity int32
	// BodyContains keeps records whose body text contains the substring.
	BodyContains string
	Matchers     []*Matcher
}

// Match evaluates every condition on l.
func (q *LogQuery) Match(l *LogRecord) bool {
	ts := l.Timestamp()
	if q.Start != 0 && ts < q.Start {
		return false
	}
	if q.End != 0 && ts > q.End {
		return false
	}
	if q.ServiceName != "" && l.Resource.ServiceName() != q.ServiceName {
		return false
	}
	if !q.TraceID.IsEmpty() && l.TraceID != q.TraceID {
		return false
	}
	if !q.SpanID.IsEmpty() && l.SpanID != q.SpanID {
		return false
	}
	if q.MinSeverity != 0 && l.SeverityNumber < q.MinSeverity {
		return false
	}
	if q.BodyContains != "" && !strings.Contains(l.Body.AsString(), q.BodyContains) {
		return false
	}
	for _, m := range q.Matchers {
		v, ok := m.Lookup(l.Attrs, l.Resource)
		if !m.MatchValue(v, ok) {
			return false
		}
	}
	return true
}
