package traceql

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// Type is the static type of a TraceQL value.
type Type uint8

// Value types. TypeAttribute is the type of an attribute reference, which
// is only known per span.
const (
	TypeNil Type = iota
	TypeInt
	TypeFloat
	TypeString
	TypeBool
	TypeDuration
	TypeStatus
	TypeKind
	TypeAttribute
)

var typeNames = [...]string{"nil", "int", "float", "string", "bool", "duration", "status", "kind", "attribute"}

func (t Type) String() string { return typeNames[t] }

func (t Type) numeric() bool { return t == TypeInt || t == TypeFloat || t == TypeDuration }

// Static is a typed TraceQL value: a typed union, not an interface, so that
// evaluating a filter over millions of spans does not allocate.
// N holds ints, durations (ns), bools (0/1), status codes and kinds; F
// floats; S strings.
type Static struct {
	Type Type
	N    int64
	F    float64
	S    string
}

// Constructors for Static values.
func NewInt(i int64) Static                 { return Static{Type: TypeInt, N: i} }
func NewFloat(f float64) Static             { return Static{Type: TypeFloat, F: f} }
func NewString(s string) Static             { return Static{Type: TypeString, S: s} }
func NewDuration(ns int64) Static           { return Static{Type: TypeDuration, N: ns} }
func NewStatus(c storage.StatusCode) Static { return Static{Type: TypeStatus, N: int64(c)} }
func NewKind(k storage.SpanKind) Static     { return Static{Type: TypeKind, N: int64(k)} }
func NewBool(b bool) Static {
	if b {
		return Static{Type: TypeBool, N: 1}
	}
	return Static{Type: TypeBool}
}

// Float returns numeric values as float64; durations are in nanoseconds.
func (s Static) Float() (float64, bool) {
	switch s.Type {
	case TypeInt, TypeDuration:
		return float64(s.N), true
	case TypeFloat:
		return s.F, true
	}
	return 0, false
}

// IsTrue reports whether s is the boolean true.
func (s Static) IsTrue() bool { return s.Type == TypeBool && s.N == 1 }

var statusNames = map[string]storage.StatusCode{"unset": storage.StatusUnset, "ok": storage.StatusOK, "error": storage.StatusError}
var kindNames = map[string]storage.SpanKind{"unspecified": 0, "internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}

// IsEnumName reports whether name is TraceQL's name for a value of the
// intrinsic status or kind: what may stand unquoted after "status =" or
// "kind =" in a query.
func IsEnumName(intrinsic, name string) bool {
	switch intrinsic {
	case "status":
		_, ok := statusNames[name]
		return ok
	case "kind":
		_, ok := kindNames[name]
		return ok
	}
	return false
}

// StatusName and KindName are the TraceQL spellings.
func StatusName(c storage.StatusCode) string {
	for k, v := range statusNames {
		if v == c {
			return k
		}
	}
	return "unset"
}

// KindName returns the TraceQL name of a span kind.
func KindName(k storage.SpanKind) string {
	for n, v := range kindNames {
		if v == k {
			return n
		}
	}
	return "unspecified"
}

func (s Static) String() string {
	switch s.Type {
	case TypeNil:
		return "nil"
	case TypeInt:
		return strconv.FormatInt(s.N, 10)
	case TypeFloat:
		return strconv.FormatFloat(s.F, 'g', -1, 64)
	case TypeString:
		return strconv.Quote(s.S)
	case TypeBool:
		return strconv.FormatBool(s.N == 1)
	case TypeDuration:
		return formatDuration(s.N)
	case TypeStatus:
		return StatusName(storage.StatusCode(s.N))
	case TypeKind:
		return KindName(storage.SpanKind(s.N))
	}
	return "?"
}

// appendKey appends an unambiguous encoding of s, for grouping keys.
func (s Static) appendKey(b []byte) []byte {
	b = append(b, byte(s.Type))
	switch s.Type {
	case TypeString:
		b = strconv.AppendInt(b, int64(len(s.S)), 10)
		b = append(b, ':')
		b = append(b, s.S...)
	case TypeFloat:
		b = strconv.AppendFloat(b, s.F, 'g', -1, 64)
	default:
		b = strconv.AppendInt(b, s.N, 10)
	}
	return append(b, 0xff)
}

// Text renders s without quotes, as the APIs return attribute values.
func (s Static) Text() string {
	if s.Type == TypeString {
		return s.S
	}
	return s.String()
}

// Equal compares values the way = does: numbers across int, float and
// duration; everything else by type and value.
func (s Static) Equal(o Static) bool {
	if s.Type.numeric() && o.Type.numeric() {
		a, _ := s.Float()
		b, _ := o.Float()
		return a == b
	}
	return s.Type == o.Type && s.N == o.N && s.S == o.S && (s.F == o.F || math.IsNaN(s.F) && math.IsNaN(o.F))
}

// compare orders two values of comparable types; ok is false otherwise.
func (s Static) compare(o Static) (int, bool) {
	switch {
	case s.Type.numeric() && o.Type.numeric():
		if s.Type != TypeFloat && o.Type != TypeFloat {
			return cmpOrdered(s.N, o.N), true
		}
		a, _ := s.Float()
		b, _ := o.Float()
		return cmpOrdered(a, b), true
	case s.Type == TypeString && o.Type == TypeString:
		return strings.Compare(s.S, o.S), true
	case s.Type == o.Type && (s.Type == TypeStatus || s.Type == TypeKind || s.Type == TypeBool):
		return cmpOrdered(s.N, o.N), true
	}
	return 0, false
}

func cmpOrdered[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// fromValue converts a stored attribute value.
func fromValue(v storage.Value) Static {
	switch v.Type {
	case storage.TypeStr, storage.TypeSlice, storage.TypeMap:
		return NewString(v.Str)
	case storage.TypeBytes:
		return NewString(v.AsString())
	case storage.TypeInt:
		return NewInt(v.Int)
	case storage.TypeDouble:
		return NewFloat(v.Double)
	case storage.TypeBool:
		return NewBool(v.Int != 0)
	}
	return Static{}
}

// AttrScope is where an attribute reference looks.
type AttrScope uint8

// Attribute scopes.
const (
	ScopeNone AttrScope = iota // .x: span, then resource
	ScopeSpan
	ScopeResource
	ScopeEvent
	ScopeLink
	ScopeInstrumentation
)

var scopeNames = [...]string{"", "span", "resource", "event", "link", "instrumentation"}

func (s AttrScope) String() string { return scopeNames[s] }

// Intrinsic identifies a built-in span or trace field.
type Intrinsic uint8

// Intrinsics.
const (
	IntrinsicNone Intrinsic = iota
	IntrinsicDuration
	IntrinsicName
	IntrinsicStatus
	IntrinsicStatusMessage
	IntrinsicKind
	IntrinsicSpanID
	IntrinsicParentID
	IntrinsicChildCount
	IntrinsicTraceID
	IntrinsicTraceDuration
	IntrinsicRootName
	IntrinsicRootService
	IntrinsicEventName
	IntrinsicEventTimeSinceStart
	IntrinsicLinkTraceID
	IntrinsicLinkSpanID
	IntrinsicInstrumentationName
	IntrinsicInstrumentationVersion
	IntrinsicNestedSetLeft
	IntrinsicNestedSetRight
	IntrinsicNestedSetParent
)

type intrinsicInfo struct {
	name string // canonical spelling
	typ  Type
}

var intrinsics = [...]intrinsicInfo{
	{"", TypeNil},
	{"duration", TypeDuration},
	{"name", TypeString},
	{"status", TypeStatus},
	{"statusMessage", TypeString},
	{"kind", TypeKind},
	{"span:id", TypeString},
	{"span:parentID", TypeString},
	{"span:childCount", TypeInt},
	{"trace:id", TypeString},
	{"trace:duration", TypeDuration},
	{"trace:rootName", TypeString},
	{"trace:rootService", TypeString},
	{"event:name", TypeString},
	{"event:timeSinceStart", TypeDuration},
	{"link:traceID", TypeString},
	{"link:spanID", TypeString},
	{"instrumentation:name", TypeString},
	{"instrumentation:version", TypeString},
	{"nestedSetLeft", TypeInt},
	{"nestedSetRight", TypeInt},
	{"nestedSetParent", TypeInt},
}

// intrinsicByName maps every accepted spelling, scoped and unscoped.
var intrinsicByName = map[string]Intrinsic{
	"duration": IntrinsicDuration, "span:duration": IntrinsicDuration,
	"name": IntrinsicName, "span:name": IntrinsicName,
	"status": IntrinsicStatus, "span:status": IntrinsicStatus,
	"statusMessage": IntrinsicStatusMessage, "span:statusMessage": IntrinsicStatusMessage,
	"kind": IntrinsicKind, "span:kind": IntrinsicKind,
	"span:id": IntrinsicSpanID, "spanID": IntrinsicSpanID,
	"span:parentID": IntrinsicParentID, "parentID": IntrinsicParentID,
	"span:childCount": IntrinsicChildCount, "childCount": IntrinsicChildCount,
	"trace:id": IntrinsicTraceID, "traceID": IntrinsicTraceID,
	"trace:duration": IntrinsicTraceDuration, "traceDuration": IntrinsicTraceDuration,
	"trace:rootName": IntrinsicRootName, "rootName": IntrinsicRootName,
	"trace:rootService": IntrinsicRootService, "rootServiceName": IntrinsicRootService, "rootService": IntrinsicRootService,
	"event:name":              IntrinsicEventName,
	"event:timeSinceStart":    IntrinsicEventTimeSinceStart,
	"link:traceID":            IntrinsicLinkTraceID,
	"link:spanID":             IntrinsicLinkSpanID,
	"instrumentation:name":    IntrinsicInstrumentationName,
	"instrumentation:version": IntrinsicInstrumentationVersion,
	"nestedSetLeft":           IntrinsicNestedSetLeft,
	"nestedSetRight":          IntrinsicNestedSetRight,
	"nestedSetParent":         IntrinsicNestedSetParent,
}

// IntrinsicNames lists the canonical names, for the tags API.
func IntrinsicNames() []string {
	var out []string
	for _, in := range intrinsics[1:] {
		out = append(out, in.name)
	}
	out = append(out, "rootName", "rootServiceName", "traceDuration", "statusMessage")
	return out
}

func (i Intrinsic) String() string { return intrinsics[i].name }

// traceLevel reports intrinsics that need the whole trace.
func (i Intrinsic) traceLevel() bool {
	switch i {
	case IntrinsicTraceDuration, IntrinsicRootName, IntrinsicRootService, IntrinsicChildCount,
		IntrinsicNestedSetLeft, IntrinsicNestedSetRight, IntrinsicNestedSetParent:
		return true
	}
	return false
}

// Expr is a field expression: what goes between { and }.
type Expr interface {
	Pos() Pos
	String() string
	exprType() Type
}

// Literal is a static value in a query.
type Literal struct {
	Value Static
	pos   Pos
}

// Attribute references an attribute; Parent looks it up on the parent span.
type Attribute struct {
	Scope  AttrScope
	Name   string
	Parent bool
	pos    Pos
}

// IntrinsicRef references an intrinsic.
type IntrinsicRef struct {
	Intrinsic Intrinsic
	pos       Pos
}

// BinaryExpr is an arithmetic, comparison or logical operation.
type BinaryExpr struct {
	Op       string
	LHS, RHS Expr
	pos      Pos
	re       regexpMatcher
}

// UnaryExpr is ! or unary minus.
type UnaryExpr struct {
	Op   string
	Expr Expr
	pos  Pos
}

func (e *Literal) Pos() Pos      { return e.pos }
func (e *Attribute) Pos() Pos    { return e.pos }
func (e *IntrinsicRef) Pos() Pos { return e.pos }
func (e *BinaryExpr) Pos() Pos   { return e.pos }
func (e *UnaryExpr) Pos() Pos    { return e.pos }

func (e *Literal) String() string { return e.Value.String() }
func (e *Attribute) String() string {
	var b strings.Builder
	if e.Parent {
		b.WriteString("parent")
	}
	if e.Scope != ScopeNone {
		if e.Parent {
			b.WriteByte('.')
		}
		b.WriteString(e.Scope.String())
	}
	b.WriteByte('.')
	// An unscoped name that starts with a digit would read back as a
	// number (.5), so it is quoted too.
	digit := e.Scope == ScopeNone && !e.Parent && e.Name != "" && e.Name[0] >= '0' && e.Name[0] <= '9'
	if digit || strings.ContainsFunc(e.Name, endsAttrName) || strings.Contains(e.Name, "\"") {
		b.WriteString(strconv.Quote(e.Name))
	} else {
		b.WriteString(e.Name)
	}
	return b.String()
}
func (e *IntrinsicRef) String() string { return e.Intrinsic.String() }
func (e *BinaryExpr) String() string {
	return "(" + e.LHS.String() + " " + e.Op + " " + e.RHS.String() + ")"
}
func (e *UnaryExpr) String() string { return e.Op + e.Expr.String() }

func (e *Literal) exprType() Type      { return e.Value.Type }
func (e *Attribute) exprType() Type    { return TypeAttribute }
func (e *IntrinsicRef) exprType() Type { return intrinsics[e.Intrinsic].typ }
func (e *BinaryExpr) exprType() Type {
	switch e.Op {
	case "=", "!=", "<", "<=", ">", ">=", "=~", "!~", "&&", "||":
		return TypeBool
	}
	l, r := e.LHS.exprType(), e.RHS.exprType()
	switch {
	case l == TypeAttribute || r == TypeAttribute:
		return TypeAttribute
	case l == TypeDuration || r == TypeDuration:
		if e.Op == "/" && l == TypeDuration && r == TypeDuration {
			return TypeFloat
		}
		return TypeDuration
	case l == TypeFloat || r == TypeFloat || e.Op == "/" || e.Op == "^":
		return TypeFloat
	}
	return TypeInt
}
func (e *UnaryExpr) exprType() Type {
	if e.Op == "!" {
		return TypeBool
	}
	return e.Expr.exprType()
}

// SpansetExpr produces spansets: a filter, an operation between spanset
// expressions, or a parenthesised pipeline.
type SpansetExpr interface {
	Pos() Pos
	String() string
	spanset()
}

// SpansetFilter is { expr }; Expr is nil for {}.
type SpansetFilter struct {
	Expr Expr
	pos  Pos
}

// SpansetOp is && || or a structural operator between spanset expressions.
type SpansetOp struct {
	Op       string
	LHS, RHS SpansetExpr
	pos      Pos
}

func (f *SpansetFilter) Pos() Pos { return f.pos }
func (f *SpansetFilter) String() string {
	if f.Expr == nil {
		return "{ }"
	}
	return "{ " + f.Expr.String() + " }"
}
func (*SpansetFilter) spanset() {}
func (o *SpansetOp) Pos() Pos   { return o.pos }
func (o *SpansetOp) String() string {
	return "(" + o.LHS.String() + " " + o.Op + " " + o.RHS.String() + ")"
}
func (*SpansetOp) spanset() {}

// Pipeline is a chain of stages separated by |. As a SpansetExpr it is a
// parenthesised pipeline.
type Pipeline struct {
	Stages []Stage
	pos    Pos
}

func (p *Pipeline) Pos() Pos { return p.pos }
func (p *Pipeline) String() string {
	parts := make([]string, len(p.Stages))
	for i, s := range p.Stages {
		parts[i] = s.String()
	}
	return "(" + strings.Join(parts, " | ") + ")"
}
func (*Pipeline) spanset() {}

// Stage is one pipeline element.
type Stage interface{ String() string }

// SpansetStage filters each spanset by a spanset expression.
type SpansetStage struct{ Expr SpansetExpr }

// ScalarFilter keeps spansets whose aggregate comparison holds.
type ScalarFilter struct {
	Op       string
	LHS, RHS ScalarExpr
	pos      Pos
}

// GroupBy splits spansets by the value of Expr.
type GroupBy struct{ Expr Expr }

// Coalesce merges spansets into one.
type Coalesce struct{}

// Select adds fields to the returned spans.
type Select struct{ Fields []Expr }

func (s *SpansetStage) String() string { return s.Expr.String() }
func (s *ScalarFilter) String() string { return s.LHS.String() + " " + s.Op + " " + s.RHS.String() }
func (g *GroupBy) String() string      { return "by(" + g.Expr.String() + ")" }
func (*Coalesce) String() string       { return "coalesce()" }
func (s *Select) String() string {
	parts := make([]string, len(s.Fields))
	for i, f := range s.Fields {
		parts[i] = f.String()
	}
	return "select(" + strings.Join(parts, ", ") + ")"
}

// ScalarExpr is an aggregate, a literal or arithmetic over them.
type ScalarExpr interface {
	String() string
	hasAggregate() bool
}

// Aggregate is count(), avg(x), min(x), max(x) or sum(x) over a spanset.
type Aggregate struct {
	Fn   string
	Expr Expr // nil for count()
}

// ScalarLiteral is a number or duration in a scalar expression.
type ScalarLiteral struct{ Value Static }

// ScalarBinary is arithmetic between scalar expressions.
type ScalarBinary struct {
	Op       string
	LHS, RHS ScalarExpr
}

func (a *Aggregate) String() string {
	if a.Expr == nil {
		return a.Fn + "()"
	}
	return a.Fn + "(" + a.Expr.String() + ")"
}
func (a *Aggregate) hasAggregate() bool     { return true }
func (l *ScalarLiteral) String() string     { return l.Value.String() }
func (l *ScalarLiteral) hasAggregate() bool { return false }
func (b *ScalarBinary) String() string {
	return "(" + b.LHS.String() + " " + b.Op + " " + b.RHS.String() + ")"
}
func (b *ScalarBinary) hasAggregate() bool { return b.LHS.hasAggregate() || b.RHS.hasAggregate() }

// MetricsAggregate turns matching spans into time series.
type MetricsAggregate struct {
	Fn        string // rate, count_over_time, min_over_time, ..., compare
	Attr      Expr   // the measured field for *_over_time
	Quantiles []float64
	By        []Expr
	// Compare is compare()'s selection: of the spans the pipeline yields,
	// those it matches are counted as the selection and the rest as the
	// baseline, per value of every attribute. TopN values of each
	// attribute are kept (10 unless given). When From and To (unix ns) are
	// set, only spans that start in (From, To] can be selected.
	Compare  *SpansetFilter
	TopN     int
	From, To int64
	pos      Pos
}

// DefaultCompareTopN is compare()'s number of values kept per attribute
// when the query does not give one, as in Tempo.
const DefaultCompareTopN = 10

func (m *MetricsAggregate) String() string {
	var b strings.Builder
	b.WriteString(m.Fn + "(")
	if m.Compare != nil {
		b.WriteString(m.Compare.String() + ", " + strconv.Itoa(m.TopN))
		if m.From != 0 || m.To != 0 {
			b.WriteString(", " + strconv.FormatInt(m.From, 10) + ", " + strconv.FormatInt(m.To, 10))
		}
	}
	if m.Attr != nil {
		b.WriteString(m.Attr.String())
		for _, q := range m.Quantiles {
			b.WriteString(", " + strconv.FormatFloat(q, 'g', -1, 64))
		}
	}
	b.WriteString(")")
	if len(m.By) > 0 {
		parts := make([]string, len(m.By))
		for i, e := range m.By {
			parts[i] = e.String()
		}
		b.WriteString(" by (" + strings.Join(parts, ", ") + ")")
	}
	return b.String()
}

// SecondStage post-processes series: topk/bottomk, or a value filter.
type SecondStage struct {
	Fn    string // topk, bottomk, or a comparison operator
	N     int
	Value float64
	pos   Pos
}

func (s SecondStage) String() string {
	if s.Fn == "topk" || s.Fn == "bottomk" {
		return fmt.Sprintf("%s(%d)", s.Fn, s.N)
	}
	return s.Fn + " " + formatNumber(s.Value)
}

// formatNumber prints a number the lexer reads back as the same value:
// without an exponent, which it does not read, and with a decimal point
// where the digits alone would overflow an integer.
func formatNumber(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if math.Abs(v) >= 1<<62 && !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// MetricsExpr combines metrics queries with arithmetic, as Tempo does:
// ({ status = error } | rate()) / ({ } | rate()) * 100. Its operands are
// parenthesized metrics queries (MetricsLeaf) and numbers; numbers next to
// each other are folded when the query is parsed, so an operation has a
// number on at most one side (MetricsScalarOp) or none (MetricsBinary).
type MetricsExpr interface {
	String() string
	Pos() Pos
	metricsExpr()
}

// MetricsLeaf is one parenthesized metrics query. Its own second stage
// (({ } | rate() > 6)) applies to its series before they are combined.
type MetricsLeaf struct {
	Query *Query // Pipeline, Metrics and Second; never Math or Hints
	pos   Pos
}

// MetricsBinary applies Op (+, -, * or /) to the samples of LHS and RHS
// that share labels (all but __name__) and a timestamp. A side that has a
// single series without labels is applied to every series of the other.
type MetricsBinary struct {
	Op       string
	LHS, RHS MetricsExpr
	pos      Pos
}

// MetricsScalarOp applies Op between every sample of Expr and Value;
// ScalarLeft keeps the order for - and /.
type MetricsScalarOp struct {
	Op         string
	Value      float64
	ScalarLeft bool
	Expr       MetricsExpr
	pos        Pos
}

func (l *MetricsLeaf) Pos() Pos       { return l.pos }
func (b *MetricsBinary) Pos() Pos     { return b.pos }
func (s *MetricsScalarOp) Pos() Pos   { return s.pos }
func (*MetricsLeaf) metricsExpr()     {}
func (*MetricsBinary) metricsExpr()   {}
func (*MetricsScalarOp) metricsExpr() {}

func (l *MetricsLeaf) String() string { return "(" + l.Query.String() + ")" }

// String parenthesizes every operand that is itself an operation, so
// that the printed form parses back to the same tree whatever the
// precedence.
func (b *MetricsBinary) String() string {
	return operandString(b.LHS) + " " + b.Op + " " + operandString(b.RHS)
}

func (s *MetricsScalarOp) String() string {
	v := formatNumber(s.Value)
	if s.ScalarLeft {
		return v + " " + s.Op + " " + operandString(s.Expr)
	}
	return operandString(s.Expr) + " " + s.Op + " " + v
}

func operandString(e MetricsExpr) string {
	if _, ok := e.(*MetricsLeaf); ok {
		return e.String()
	}
	return "(" + e.String() + ")"
}

// Hint is a with(key=value) query hint.
type Hint struct {
	Key   string
	Value Static
}

// Query is a parsed TraceQL query: a spanset pipeline, optionally turned
// into time series by a metrics aggregate, or metrics queries combined by
// arithmetic (Math; Pipeline and Metrics are then nil). Second applies to
// the series of the aggregate or of the arithmetic.
type Query struct {
	Pipeline *Pipeline
	Metrics  *MetricsAggregate
	Math     MetricsExpr
	Second   []SecondStage
	Hints    []Hint
}

func (q *Query) String() string {
	var out string
	if q.Math != nil {
		out = q.Math.String()
	} else {
		parts := make([]string, 0, len(q.Pipeline.Stages)+1)
		for _, s := range q.Pipeline.Stages {
			parts = append(parts, s.String())
		}
		if q.Metrics != nil {
			parts = append(parts, q.Metrics.String())
		}
		out = strings.Join(parts, " | ")
	}
	for _, s := range q.Second {
		if s.Fn == "topk" || s.Fn == "bottomk" {
			out += " | " + s.String()
		} else {
			out += " " + s.String()
		}
	}
	if len(q.Hints) > 0 {
		h := make([]string, len(q.Hints))
		for i, x := range q.Hints {
			h[i] = x.Key + "=" + x.Value.String()
		}
		out += " with(" + strings.Join(h, ", ") + ")"
	}
	return out
}

// IsMetrics reports whether q yields time series rather than traces.
func (q *Query) IsMetrics() bool { return q.Metrics != nil || q.Math != nil }

// Hint returns the value of a query hint.
func (q *Query) Hint(key string) (Static, bool) {
	for _, h := range q.Hints {
		if h.Key == key {
			return h.Value, true
		}
	}
	return Static{}, false
}
