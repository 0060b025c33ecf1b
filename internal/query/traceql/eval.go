package traceql

import (
	"cmp"
	"math"
	"slices"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// Trace is one trace prepared for evaluation: spans sorted by start time
// with the tree and trace-level values that structural operators and
// trace intrinsics need. Build it with NewTrace; it is read-only after.
type Trace struct {
	Spans    []*storage.Span
	parent   []int // index of the parent span, -1 for roots and orphans
	left     []int // nested-set numbering (Tempo's nestedSetLeft/Right/Parent)
	right    []int
	children []int // child counts
	Root     int   // index of the root span, -1 when the root is missing
	Start    int64
	End      int64
}

// NewTrace indexes spans, which must all belong to one trace. It takes
// ownership of the slice.
func NewTrace(spans []*storage.Span) *Trace {
	slices.SortFunc(spans, func(a, b *storage.Span) int {
		if c := cmp.Compare(a.StartUnixNano, b.StartUnixNano); c != 0 {
			return c
		}
		return slices.Compare(a.SpanID[:], b.SpanID[:])
	})
	n := len(spans)
	// One array for the per-span numbers and the children lists: a search
	// assembles many small traces, each once.
	ints := make([]int, 7*n+1)
	t := &Trace{Spans: spans, parent: ints[:n:n], left: ints[n : 2*n : 2*n], right: ints[2*n : 3*n : 3*n], children: ints[3*n : 4*n : 4*n], Root: -1}
	byID := make(map[storage.SpanID]int, n)
	for i, s := range spans {
		byID[s.SpanID] = i
		if i == 0 || s.StartUnixNano < t.Start {
			t.Start = s.StartUnixNano
		}
		if s.EndUnixNano > t.End {
			t.End = s.EndUnixNano
		}
	}
	var roots []int
	for i, s := range spans {
		p, ok := byID[s.ParentSpanID]
		if s.ParentSpanID.IsEmpty() || !ok || p == i {
			t.parent[i] = -1
			roots = append(roots, i)
			if s.ParentSpanID.IsEmpty() && t.Root < 0 {
				t.Root = i
			}
			continue
		}
		t.parent[i] = p
		t.children[p]++
	}
	// The children of span p, in span order, are kidList[kidsAt[p]:kidsAt[p+1]].
	kidsAt, kidList, fill := ints[4*n:5*n+1], ints[5*n+1:6*n+1], ints[6*n+1:]
	for p := range n {
		kidsAt[p+1] = kidsAt[p] + t.children[p]
	}
	copy(fill, kidsAt[:n])
	for i, p := range t.parent {
		if p >= 0 {
			kidList[fill[p]] = i
			fill[p]++
		}
	}
	kids := func(p int) []int { return kidList[kidsAt[p]:kidsAt[p+1]] }
	// Nested-set numbering by depth-first walk, iterative so that deep
	// traces cannot overflow the stack. Parent cycles leave spans
	// unnumbered (0), which no structural operator then relates.
	counter := 0
	type frame struct{ span, next int }
	var stack []frame
	for _, r := range roots {
		stack = append(stack[:0], frame{r, 0})
		counter++
		t.left[r] = counter
		for len(stack) > 0 {
			f := &stack[len(stack)-1]
			if k := kids(f.span); f.next < len(k) {
				c := k[f.next]
				f.next++
				counter++
				t.left[c] = counter
				stack = append(stack, frame{c, 0})
				continue
			}
			counter++
			t.right[f.span] = counter
			stack = stack[:len(stack)-1]
		}
	}
	return t
}

// RootName and RootService describe the trace's root span; empty when it
// has not arrived (yet).
func (t *Trace) RootName() string {
	if t.Root < 0 {
		return ""
	}
	return t.Spans[t.Root].Name
}

// RootService returns the root span's service.name.
func (t *Trace) RootService() string {
	if t.Root < 0 {
		return ""
	}
	return t.Spans[t.Root].Resource.ServiceName()
}

// isAncestor reports whether a is an ancestor of b.
func (t *Trace) isAncestor(a, b int) bool {
	return t.left[a] != 0 && t.left[b] != 0 && t.left[a] < t.left[b] && t.right[b] < t.right[a]
}

// evalCtx is the span (and event or link, when the expression iterates
// them) an expression is evaluated against.
type evalCtx struct {
	tr    *Trace
	span  int
	event *storage.Event
	link  *storage.Link
}

func (c *evalCtx) s() *storage.Span { return c.tr.Spans[c.span] }

func lookupAttr(a *Attribute, c *evalCtx) Static {
	s := c.s()
	if a.Parent {
		p := c.tr.parent[c.span]
		if p < 0 {
			return Static{}
		}
		s = c.tr.Spans[p]
	}
	switch a.Scope {
	case ScopeSpan:
		if v, ok := s.Attrs.Get(a.Name); ok {
			return fromValue(v)
		}
	case ScopeResource:
		if s.Resource != nil {
			if v, ok := s.Resource.Attrs.Get(a.Name); ok {
				return fromValue(v)
			}
		}
	case ScopeNone:
		if v, ok := s.Attrs.Get(a.Name); ok {
			return fromValue(v)
		}
		if s.Resource != nil {
			if v, ok := s.Resource.Attrs.Get(a.Name); ok {
				return fromValue(v)
			}
		}
	case ScopeEvent:
		if c.event != nil {
			if v, ok := c.event.Attrs.Get(a.Name); ok {
				return fromValue(v)
			}
		}
	case ScopeLink:
		if c.link != nil {
			if v, ok := c.link.Attrs.Get(a.Name); ok {
				return fromValue(v)
			}
		}
	case ScopeInstrumentation:
		if s.Scope != nil {
			if v, ok := s.Scope.Attrs.Get(a.Name); ok {
				return fromValue(v)
			}
		}
	}
	return Static{}
}

func intrinsicValue(in Intrinsic, c *evalCtx) Static {
	s := c.s()
	switch in {
	case IntrinsicDuration:
		return NewDuration(s.Duration())
	case IntrinsicName:
		return NewString(s.Name)
	case IntrinsicStatus:
		return NewStatus(s.StatusCode)
	case IntrinsicStatusMessage:
		return NewString(s.StatusMessage)
	case IntrinsicKind:
		return NewKind(s.Kind)
	case IntrinsicSpanID:
		return NewString(s.SpanID.String())
	case IntrinsicParentID:
		if s.ParentSpanID.IsEmpty() {
			return Static{}
		}
		return NewString(s.ParentSpanID.String())
	case IntrinsicChildCount:
		return NewInt(int64(c.tr.children[c.span]))
	case IntrinsicTraceID:
		return NewString(s.TraceID.String())
	case IntrinsicTraceDuration:
		return NewDuration(c.tr.End - c.tr.Start)
	case IntrinsicRootName:
		if c.tr.Root < 0 {
			return Static{}
		}
		return NewString(c.tr.RootName())
	case IntrinsicRootService:
		if c.tr.Root < 0 {
			return Static{}
		}
		return NewString(c.tr.RootService())
	case IntrinsicEventName:
		if c.event == nil {
			return Static{}
		}
		return NewString(c.event.Name)
	case IntrinsicEventTimeSinceStart:
		if c.event == nil {
			return Static{}
		}
		return NewDuration(c.event.TimeUnixNano - s.StartUnixNano)
	case IntrinsicLinkTraceID:
		if c.link == nil {
			return Static{}
		}
		return NewString(c.link.TraceID.String())
	case IntrinsicLinkSpanID:
		if c.link == nil {
			return Static{}
		}
		return NewString(c.link.SpanID.String())
	case IntrinsicInstrumentationName:
		if s.Scope == nil {
			return Static{}
		}
		return NewString(s.Scope.Name)
	case IntrinsicInstrumentationVersion:
		if s.Scope == nil {
			return Static{}
		}
		return NewString(s.Scope.Version)
	case IntrinsicNestedSetLeft:
		return NewInt(int64(c.tr.left[c.span]))
	case IntrinsicNestedSetRight:
		return NewInt(int64(c.tr.right[c.span]))
	case IntrinsicNestedSetParent:
		if p := c.tr.parent[c.span]; p >= 0 {
			return NewInt(int64(c.tr.left[p]))
		}
		return NewInt(-1)
	}
	return Static{}
}

// eval computes e for the context. Absent attributes are nil, and any
// operation on nil other than = nil and != nil yields nil, which is false.
func eval(e Expr, c *evalCtx) Static {
	switch x := e.(type) {
	case *Literal:
		return x.Value
	case *Attribute:
		return lookupAttr(x, c)
	case *IntrinsicRef:
		return intrinsicValue(x.Intrinsic, c)
	case *UnaryExpr:
		v := eval(x.Expr, c)
		if x.Op == "!" {
			if v.Type != TypeBool {
				return Static{}
			}
			return NewBool(v.N == 0)
		}
		switch v.Type {
		case TypeInt, TypeDuration:
			v.N = -v.N
			return v
		case TypeFloat:
			v.F = -v.F
			return v
		}
		return Static{}
	case *BinaryExpr:
		return evalBinary(x, c)
	}
	return Static{}
}

func evalBinary(x *BinaryExpr, c *evalCtx) Static {
	switch x.Op {
	case "&&":
		l := eval(x.LHS, c)
		if !l.IsTrue() {
			return NewBool(false)
		}
		return NewBool(eval(x.RHS, c).IsTrue())
	case "||":
		if eval(x.LHS, c).IsTrue() {
			return NewBool(true)
		}
		return NewBool(eval(x.RHS, c).IsTrue())
	}
	l, r := eval(x.LHS, c), eval(x.RHS, c)
	switch x.Op {
	case "=~", "!~":
		if l.Type != TypeString {
			return NewBool(false)
		}
		m := x.re.MatchString(l.S)
		return NewBool(m == (x.Op == "=~"))
	case "=", "!=":
		if l.Type == TypeNil || r.Type == TypeNil {
			// Only "attr = nil" and "attr != nil" reach here with a nil
			// literal; they test presence.
			if isNilLiteral(x.LHS) || isNilLiteral(x.RHS) {
				present := l.Type != TypeNil || r.Type != TypeNil
				return NewBool(present == (x.Op == "!="))
			}
			return NewBool(false)
		}
		if _, ok := l.compare(r); !ok && !(l.Type == r.Type) {
			return NewBool(false)
		}
		return NewBool(l.Equal(r) == (x.Op == "="))
	case "<", "<=", ">", ">=":
		o, ok := l.compare(r)
		if !ok {
			return NewBool(false)
		}
		switch x.Op {
		case "<":
			return NewBool(o < 0)
		case "<=":
			return NewBool(o <= 0)
		case ">":
			return NewBool(o > 0)
		}
		return NewBool(o >= 0)
	}
	return arith(x.Op, l, r)
}

func isNilLiteral(e Expr) bool {
	l, ok := e.(*Literal)
	return ok && l.Value.Type == TypeNil
}

// arith applies an arithmetic operator. Integers stay integers except for
// ^, and integer division truncates, as in Tempo (7 / 2 is 3, 7 / 2.0 is
// 3.5); durations stay durations when one side is a plain number.
func arith(op string, l, r Static) Static {
	if !l.Type.numeric() || !r.Type.numeric() {
		return Static{}
	}
	intDiv := op == "/" && l.Type == TypeInt && r.Type == TypeInt
	if l.Type != TypeFloat && r.Type != TypeFloat && (op != "/" || intDiv) && op != "^" {
		var n int64
		switch op {
		case "+":
			n = l.N + r.N
		case "-":
			n = l.N - r.N
		case "*":
			n = l.N * r.N
		case "/":
			if r.N == 0 {
				return Static{}
			}
			n = l.N / r.N
		case "%":
			if r.N == 0 {
				return Static{}
			}
			n = l.N % r.N
		}
		if l.Type == TypeDuration || r.Type == TypeDuration {
			return NewDuration(n)
		}
		return NewInt(n)
	}
	a, _ := l.Float()
	b, _ := r.Float()
	var f float64
	switch op {
	case "+":
		f = a + b
	case "-":
		f = a - b
	case "*":
		f = a * b
	case "/":
		f = a / b
	case "%":
		f = math.Mod(a, b)
	case "^":
		f = math.Pow(a, b)
	}
	if (l.Type == TypeDuration) != (r.Type == TypeDuration) && op != "^" {
		return NewDuration(int64(f))
	}
	return NewFloat(f)
}

// iterates reports which per-span collections an expression ranges over:
// a filter over event or link fields matches a span when it holds for one
// of its events (links).
func iterates(e Expr) (events, links bool) {
	var walk func(Expr)
	walk = func(e Expr) {
		switch x := e.(type) {
		case *Attribute:
			events = events || x.Scope == ScopeEvent
			links = links || x.Scope == ScopeLink
		case *IntrinsicRef:
			events = events || x.Intrinsic == IntrinsicEventName || x.Intrinsic == IntrinsicEventTimeSinceStart
			links = links || x.Intrinsic == IntrinsicLinkTraceID || x.Intrinsic == IntrinsicLinkSpanID
		case *BinaryExpr:
			walk(x.LHS)
			walk(x.RHS)
		case *UnaryExpr:
			walk(x.Expr)
		}
	}
	walk(e)
	return
}

// matchSpan evaluates a filter expression on span i.
func matchSpan(e Expr, tr *Trace, i int, events, links bool) bool {
	c := evalCtx{tr: tr, span: i}
	s := tr.Spans[i]
	switch {
	case events && links:
		for ei := range s.Events {
			c.event = &s.Events[ei]
			for li := range s.Links {
				c.link = &s.Links[li]
				if eval(e, &c).IsTrue() {
					return true
				}
			}
		}
		return false
	case events:
		for ei := range s.Events {
			c.event = &s.Events[ei]
			if eval(e, &c).IsTrue() {
				return true
			}
		}
		return false
	case links:
		for li := range s.Links {
			c.link = &s.Links[li]
			if eval(e, &c).IsTrue() {
				return true
			}
		}
		return false
	}
	return eval(e, &c).IsTrue()
}

// Spanset is a set of spans of one trace, with the values that grouping
// and aggregates attached to it.
type Spanset struct {
	Spans []int // indexes into Trace.Spans, ascending
	Attrs []Label
}

// Label is a named value attached to a spanset or a series.
type Label struct {
	Key   string
	Value Static
}

// set is a membership bitmap over a trace's spans.
type set []bool

func (s set) list() []int {
	var out []int
	for i, ok := range s {
		if ok {
			out = append(out, i)
		}
	}
	return out
}

func (s set) empty() bool { return !slices.Contains(s, true) }

// evalSpanset returns the spans of in that the spanset expression yields.
func evalSpanset(e SpansetExpr, tr *Trace, in []int) set {
	out := make(set, len(tr.Spans))
	switch x := e.(type) {
	case *SpansetFilter:
		if x.Expr == nil {
			for _, i := range in {
				out[i] = true
			}
			return out
		}
		ev, lk := iterates(x.Expr)
		for _, i := range in {
			out[i] = matchSpan(x.Expr, tr, i, ev, lk)
		}
		return out
	case *Pipeline:
		for _, ss := range evalPipeline(x, tr, []Spanset{{Spans: in}}) {
			for _, i := range ss.Spans {
				out[i] = true
			}
		}
		return out
	case *SpansetOp:
		l := evalSpanset(x.LHS, tr, in)
		r := evalSpanset(x.RHS, tr, in)
		return structural(x.Op, tr, l, r)
	}
	return out
}

// structural combines the two sides of a spanset operator. For A op B the
// result is the B spans related to some A span as the operator says; the
// negated forms keep B spans with no such relation; the & forms also keep
// the related A spans.
func structural(op string, tr *Trace, l, r set) set {
	n := len(tr.Spans)
	out := make(set, n)
	switch op {
	case "&&":
		if l.empty() || r.empty() {
			return out
		}
		for i := range out {
			out[i] = l[i] || r[i]
		}
		return out
	case "||":
		for i := range out {
			out[i] = l[i] || r[i]
		}
		return out
	}
	negate := op[0] == '!'
	union := op[0] == '&'
	rel := op
	if negate || union {
		rel = op[1:]
	}
	// related(a, b): b stands in relation rel to a.
	related := func(a, b int) bool {
		switch rel {
		case ">":
			return tr.parent[b] == a
		case "<":
			return tr.parent[a] == b
		case ">>":
			return tr.isAncestor(a, b)
		case "<<":
			return tr.isAncestor(b, a)
		case "~":
			return a != b && tr.parent[a] >= 0 && tr.parent[a] == tr.parent[b]
		}
		return false
	}
	lhs := l.list()
	for b := range n {
		if !r[b] {
			continue
		}
		hit := false
		for _, a := range lhs {
			if related(a, b) {
				hit = true
				if union {
					out[a] = true
				} else {
					break
				}
			}
		}
		if hit != negate {
			out[b] = true
		}
	}
	return out
}

// evalPipeline runs the stages over the input spansets.
func evalPipeline(pl *Pipeline, tr *Trace, in []Spanset) []Spanset {
	cur := in
	for _, st := range pl.Stages {
		var next []Spanset
		switch s := st.(type) {
		case *SpansetStage:
			for _, ss := range cur {
				if m := evalSpanset(s.Expr, tr, ss.Spans).list(); len(m) > 0 {
					next = append(next, Spanset{Spans: m, Attrs: ss.Attrs})
				}
			}
		case *ScalarFilter:
			for _, ss := range cur {
				l := evalScalar(s.LHS, tr, ss.Spans)
				r := evalScalar(s.RHS, tr, ss.Spans)
				o, ok := l.compare(r)
				if !ok || !cmpHolds(s.Op, o) {
					continue
				}
				attrs := slices.Clone(ss.Attrs)
				for _, a := range aggregatesOf(s.LHS, s.RHS) {
					attrs = append(attrs, Label{Key: a.String(), Value: evalScalar(a, tr, ss.Spans)})
				}
				next = append(next, Spanset{Spans: ss.Spans, Attrs: attrs})
			}
		case *GroupBy:
			for _, ss := range cur {
				next = append(next, groupBy(s.Expr, tr, ss)...)
			}
		case *Coalesce:
			all := make(set, len(tr.Spans))
			for _, ss := range cur {
				for _, i := range ss.Spans {
					all[i] = true
				}
			}
			if m := all.list(); len(m) > 0 {
				next = []Spanset{{Spans: m}}
			}
		case *Select:
			next = cur
		}
		cur = next
		if len(cur) == 0 {
			return nil
		}
	}
	return cur
}

func cmpHolds(op string, o int) bool {
	switch op {
	case "=":
		return o == 0
	case "!=":
		return o != 0
	case "<":
		return o < 0
	case "<=":
		return o <= 0
	case ">":
		return o > 0
	}
	return o >= 0
}

func aggregatesOf(es ...ScalarExpr) []*Aggregate {
	var out []*Aggregate
	var walk func(ScalarExpr)
	walk = func(e ScalarExpr) {
		switch x := e.(type) {
		case *Aggregate:
			out = append(out, x)
		case *ScalarBinary:
			walk(x.LHS)
			walk(x.RHS)
		}
	}
	for _, e := range es {
		walk(e)
	}
	return out
}

func groupBy(e Expr, tr *Trace, ss Spanset) []Spanset {
	var keys []Static
	groups := map[Static][]int{}
	for _, i := range ss.Spans {
		v := eval(e, &evalCtx{tr: tr, span: i})
		if _, ok := groups[v]; !ok {
			keys = append(keys, v)
		}
		groups[v] = append(groups[v], i)
	}
	out := make([]Spanset, 0, len(keys))
	for _, k := range keys {
		attrs := slices.Clone(ss.Attrs)
		if k.Type != TypeNil {
			attrs = append(attrs, Label{Key: "by(" + e.String() + ")", Value: k})
		}
		out = append(out, Spanset{Spans: groups[k], Attrs: attrs})
	}
	return out
}

// evalScalar computes a scalar expression over a spanset.
func evalScalar(e ScalarExpr, tr *Trace, spans []int) Static {
	switch x := e.(type) {
	case *ScalarLiteral:
		return x.Value
	case *ScalarBinary:
		return arith(x.Op, evalScalar(x.LHS, tr, spans), evalScalar(x.RHS, tr, spans))
	case *Aggregate:
		if x.Fn == "count" {
			return NewInt(int64(len(spans)))
		}
		var (
			n       int
			sum     float64
			isum    int64
			lo, hi  Static
			allInts = true
			dur     = false
		)
		for _, i := range spans {
			v := eval(x.Expr, &evalCtx{tr: tr, span: i})
			f, ok := v.Float()
			if !ok {
				continue
			}
			if v.Type == TypeFloat {
				allInts = false
			}
			dur = dur || v.Type == TypeDuration
			if n == 0 || less(v, lo) {
				lo = v
			}
			if n == 0 || less(hi, v) {
				hi = v
			}
			n++
			sum += f
			isum += v.N
		}
		if n == 0 {
			return Static{}
		}
		switch x.Fn {
		case "min":
			return lo
		case "max":
			return hi
		case "sum":
			if allInts {
				if dur {
					return NewDuration(isum)
				}
				return NewInt(isum)
			}
			return NewFloat(sum)
		case "avg":
			if dur && allInts {
				return NewDuration(int64(sum / float64(n)))
			}
			return NewFloat(sum / float64(n))
		}
	}
	return Static{}
}

func less(a, b Static) bool {
	o, ok := a.compare(b)
	return ok && o < 0
}
