package traceql

import (
	"math"
	"regexp"
	"slices"
	"strconv"
)

type regexpMatcher = *regexp.Regexp

// MaxQueryLength bounds the text Parse accepts, so that a pathological
// query cannot make the parser's recursion or the lexer's output grow
// without limit.
const MaxQueryLength = 64 << 10

// maxDepth bounds nesting of parentheses and braces.
const maxDepth = 200

// Parse parses and validates a TraceQL query. Errors are *Error values
// carrying the line and column of the problem.
func Parse(src string) (*Query, error) {
	if len(src) > MaxQueryLength {
		return nil, errorf(Pos{1, 1}, "query is %d bytes, the limit is %d", len(src), MaxQueryLength)
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	q, err := p.parseQuery()
	if err != nil {
		return nil, err
	}
	if err := validate(q); err != nil {
		return nil, err
	}
	return q, nil
}

// ParseFilter parses a single spanset filter such as the q parameter of
// the tag APIs.
func ParseFilter(src string) (*SpansetFilter, error) {
	q, err := Parse(src)
	if err != nil {
		return nil, err
	}
	if !q.IsMetrics() && len(q.Pipeline.Stages) == 1 {
		if st, ok := q.Pipeline.Stages[0].(*SpansetStage); ok {
			if f, ok := st.Expr.(*SpansetFilter); ok {
				return f, nil
			}
		}
	}
	return nil, errorf(Pos{1, 1}, "expected a single spanset filter")
}

type parser struct {
	toks  []token
	i     int
	depth int
}

// bail aborts parsing; parseQuery recovers it into an error. Panicking
// keeps the recursive descent free of error plumbing.
type bail struct{ err *Error }

func (p *parser) fail(t token, format string, args ...any) {
	panic(bail{errorf(t.pos, format, args...)})
}

func (p *parser) tok() token       { return p.toks[p.i] }
func (p *parser) peek(n int) token { return p.toks[min(p.i+n, len(p.toks)-1)] }
func (p *parser) next() token      { t := p.toks[p.i]; p.i = min(p.i+1, len(p.toks)-1); return t }
func (p *parser) at(text string) bool {
	t := p.tok()
	return t.kind == tPunct && t.text == text
}
func (p *parser) atIdent(text string) bool {
	t := p.tok()
	return t.kind == tIdent && t.text == text
}
func (p *parser) expect(text string) token {
	if !p.at(text) {
		p.fail(p.tok(), "expected %q, found %s", text, describe(p.tok()))
	}
	return p.next()
}

func (p *parser) enter() {
	p.depth++
	if p.depth > maxDepth {
		p.fail(p.tok(), "query nested deeper than %d levels", maxDepth)
	}
}
func (p *parser) leave() { p.depth-- }

func describe(t token) string {
	if t.kind == tEOF {
		return "end of query"
	}
	return strconv.Quote(t.text)
}

func (p *parser) parseQuery() (q *Query, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, ok := r.(bail)
			if !ok {
				panic(r)
			}
			q, err = nil, b.err
		}
	}()
	top, nested, bare := p.metricsPipes(p.i)
	if top && nested {
		// A spanset pipeline never holds a metrics function inside
		// parentheses, so this is arithmetic with an operand left bare.
		p.fail(p.toks[bare], "metrics queries combined by arithmetic each need parentheses, as in ({ } | rate()) / ({ } | count_over_time())")
	}
	if nested {
		q = &Query{Math: p.parseMath(0).series(p)}
		q.Second = p.parseSecondStages()
		if l, ok := q.Math.(*MetricsLeaf); ok {
			// ({ } | rate()) | topk(5) is { } | rate() | topk(5).
			q = &Query{Pipeline: l.Query.Pipeline, Metrics: l.Query.Metrics, Second: append(l.Query.Second, q.Second...)}
		}
	} else {
		q = p.parseSingle()
	}
	if p.atIdent("with") {
		q.Hints = p.parseHints()
	}
	if t := p.tok(); t.kind != tEOF {
		p.fail(t, "unexpected %s", describe(t))
	}
	return q, nil
}

// parseSingle parses a spanset pipeline and, when one follows, its
// metrics aggregate and second stages.
func (p *parser) parseSingle() *Query {
	q := &Query{Pipeline: p.parsePipeline()}
	if p.at("|") && isMetricsFn(p.peek(1)) {
		p.next()
		q.Metrics = p.parseMetrics()
		q.Second = p.parseSecondStages()
	}
	return q
}

// parseSecondStages parses what follows a metrics query: | topk(n),
// | bottomk(n) and comparisons with a number, in any order.
func (p *parser) parseSecondStages() []SecondStage {
	var out []SecondStage
	for {
		if p.at("|") && (p.peek(1).text == "topk" || p.peek(1).text == "bottomk") && p.peek(1).kind == tIdent {
			p.next()
			t := p.next()
			p.expect("(")
			n := p.expectInt()
			p.expect(")")
			out = append(out, SecondStage{Fn: t.text, N: int(n), pos: t.pos})
			continue
		}
		if t := p.tok(); t.kind == tPunct && isComparison(t.text) {
			p.next()
			out = append(out, SecondStage{Fn: t.text, Value: p.parseNumber(), pos: t.pos})
			continue
		}
		return out
	}
}

// metricsPipes looks ahead from token i to the end of the group it is in
// (the unmatched ")" or the end of the query) for "| fn" with fn a metrics
// function, directly in that group (top) or inside parentheses (nested).
// Spanset pipelines never hold a metrics function inside parentheses, so
// a query or group with nested ones and no top one is metrics arithmetic,
// and a group with a top one is a parenthesized metrics query. Deciding
// up front keeps the parser free of backtracking.
// bare is the token index of the first top one.
func (p *parser) metricsPipes(i int) (top, nested bool, bare int) {
	depth := 0
	for ; i < len(p.toks) && p.toks[i].kind != tEOF; i++ {
		t := p.toks[i]
		if t.kind != tPunct {
			continue
		}
		switch t.text {
		case "(":
			depth++
		case ")":
			if depth == 0 {
				return
			}
			depth--
		case "|":
			if i+1 < len(p.toks) && isMetricsFn(p.toks[i+1]) {
				if depth == 0 && !top {
					top, bare = true, i
				} else if depth > 0 {
					nested = true
				}
			}
		}
	}
	return
}

// mathOperand is what metrics arithmetic combines: series, or a number
// folded from constants.
type mathOperand struct {
	expr   MetricsExpr // nil for a number
	scalar Static
	pos    Pos
}

// series returns the operand's series, failing on a bare number: a
// metrics query has to have at least one metrics query in it.
func (o mathOperand) series(p *parser) MetricsExpr {
	if o.expr == nil {
		panic(bail{errorf(o.pos, "expected a metrics query such as ({ } | rate()), found the number %s", o.scalar)})
	}
	return o.expr
}

var mathOpPrec = map[string]int{"+": 1, "-": 1, "*": 2, "/": 2}

// parseMath parses metrics arithmetic by precedence climbing: * and /
// bind tighter than + and -, all left-associative, unary minus tightest.
func (p *parser) parseMath(minPrec int) mathOperand {
	p.enter()
	defer p.leave()
	lhs := p.parseMathPrimary()
	for {
		t := p.tok()
		if t.kind == tPunct && (t.text == "%" || t.text == "^") {
			p.fail(t, "metrics queries combine with +, -, * and /, not %s", t.text)
		}
		prec, ok := mathOpPrec[t.text]
		if t.kind != tPunct || !ok || prec < minPrec {
			return lhs
		}
		p.next()
		rhs := p.parseMath(prec + 1)
		lhs = p.combine(t, lhs, rhs)
	}
}

func (p *parser) combine(op token, l, r mathOperand) mathOperand {
	switch {
	case l.expr == nil && r.expr == nil:
		return mathOperand{scalar: p.fold(op, l.scalar, r.scalar), pos: l.pos}
	case l.expr != nil && r.expr != nil:
		return mathOperand{expr: &MetricsBinary{Op: op.text, LHS: l.expr, RHS: r.expr, pos: op.pos}, pos: l.pos}
	case l.expr == nil:
		return mathOperand{expr: &MetricsScalarOp{Op: op.text, Value: p.seriesScalar(l), ScalarLeft: true, Expr: r.expr, pos: op.pos}, pos: l.pos}
	default:
		return mathOperand{expr: &MetricsScalarOp{Op: op.text, Value: p.seriesScalar(r), Expr: l.expr, pos: op.pos}, pos: l.pos}
	}
}

// seriesScalar is the value a number contributes to series arithmetic.
// Series values of durations are seconds, so 2 * duration would be
// ambiguous; Tempo refuses it, and so does Sightline.
func (p *parser) seriesScalar(o mathOperand) float64 {
	if o.scalar.Type == TypeDuration {
		panic(bail{errorf(o.pos, "a duration cannot be a number in metrics arithmetic; write it in seconds")})
	}
	f, _ := o.scalar.Float()
	return f
}

// fold computes constant arithmetic when the query is parsed, with the
// integer semantics of filters: 7 / 2 is 3, 7 / 2.0 is 3.5.
func (p *parser) fold(op token, l, r Static) Static {
	if l.Type == TypeDuration || r.Type == TypeDuration {
		p.fail(op, "durations cannot be used in constant arithmetic here")
	}
	if op.text == "/" && r.Type == TypeInt && r.N == 0 && l.Type == TypeInt {
		p.fail(op, "division by zero")
	}
	v := arith(op.text, l, r)
	if f, _ := v.Float(); math.IsInf(f, 0) || math.IsNaN(f) {
		p.fail(op, "%s %s %s has no finite value", l, op.text, r)
	}
	return v
}

func (p *parser) parseMathPrimary() mathOperand {
	t := p.tok()
	switch {
	case p.at("-"):
		p.next()
		p.enter()
		o := p.parseMathPrimary()
		p.leave()
		if o.expr != nil {
			p.fail(t, "only a number can be negated here; write -1 * (...)")
		}
		o.scalar = arith("-", Static{Type: o.scalar.Type}, o.scalar)
		o.pos = t.pos
		return o
	case t.kind == tInt:
		p.next()
		return mathOperand{scalar: NewInt(t.num), pos: t.pos}
	case t.kind == tFloat:
		p.next()
		return mathOperand{scalar: NewFloat(t.flt), pos: t.pos}
	case t.kind == tDuration:
		p.next()
		return mathOperand{scalar: NewDuration(t.num), pos: t.pos}
	case p.at("("):
		p.next()
		var o mathOperand
		if top, _, _ := p.metricsPipes(p.i); top {
			q := p.parseSingle()
			if q.Metrics == nil {
				p.fail(p.tok(), "expected | and a metrics function such as rate(), found %s", describe(p.tok()))
			}
			o = mathOperand{expr: &MetricsLeaf{Query: q, pos: t.pos}, pos: t.pos}
		} else {
			o = p.parseMath(0)
			o.pos = t.pos
		}
		p.expect(")")
		return o
	}
	p.fail(t, "expected a number or a parenthesized metrics query such as ({ } | rate()), found %s", describe(t))
	return mathOperand{}
}

// parseNumber parses the number a second-stage comparison takes: a
// constant expression, or a duration, compared in seconds.
func (p *parser) parseNumber() float64 {
	t := p.tok()
	o := p.parseMath(0)
	if o.expr != nil {
		p.fail(t, "a metrics query can only be compared with a number")
	}
	f, _ := o.scalar.Float()
	if o.scalar.Type == TypeDuration {
		f = float64(o.scalar.N) / 1e9 // series values of durations are in seconds
	}
	return f
}

func (p *parser) expectInt() int64 {
	t := p.next()
	if t.kind != tInt {
		p.fail(t, "expected an integer, found %s", describe(t))
	}
	return t.num
}

func (p *parser) expectNumber() float64 {
	neg := false
	if p.at("-") {
		p.next()
		neg = true
	}
	t := p.next()
	var v float64
	switch t.kind {
	case tInt, tFloat:
		v = t.flt
	case tDuration:
		v = float64(t.num) / 1e9 // series values of durations are in seconds
	default:
		p.fail(t, "expected a number, found %s", describe(t))
	}
	if neg {
		v = -v
	}
	return v
}

var metricsFns = []string{"rate", "count_over_time", "min_over_time", "max_over_time", "avg_over_time", "sum_over_time", "quantile_over_time", "histogram_over_time", "compare"}

func isMetricsFn(t token) bool { return t.kind == tIdent && slices.Contains(metricsFns, t.text) }

func isComparison(op string) bool {
	switch op {
	case "=", "!=", "<", "<=", ">", ">=":
		return true
	}
	return false
}

func (p *parser) parsePipeline() *Pipeline {
	pl := &Pipeline{pos: p.tok().pos}
	first := p.tok()
	pl.Stages = append(pl.Stages, p.parseStage())
	if _, ok := pl.Stages[0].(*Coalesce); ok {
		p.fail(first, "a pipeline cannot start with coalesce(): there are no spansets to merge yet")
	}
	for p.at("|") && !isMetricsFn(p.peek(1)) && !(p.peek(1).kind == tIdent && (p.peek(1).text == "topk" || p.peek(1).text == "bottomk")) {
		p.next()
		pl.Stages = append(pl.Stages, p.parseStage())
	}
	return pl
}

var aggregateFns = []string{"count", "avg", "min", "max", "sum"}

func (p *parser) parseStage() Stage {
	t := p.tok()
	switch {
	case p.at("{"):
		return &SpansetStage{Expr: p.parseSpansetExpr(0)}
	case p.at("("):
		// ( starts a spanset expression when the first thing inside the
		// parentheses is a spanset filter, and a scalar filter otherwise.
		k := 1
		for p.peek(k).kind == tPunct && p.peek(k).text == "(" {
			k++
		}
		if n := p.peek(k); n.kind == tPunct && n.text == "{" {
			return &SpansetStage{Expr: p.parseSpansetExpr(0)}
		}
		return p.parseScalarFilter()
	case t.kind == tIdent && slices.Contains(aggregateFns, t.text), t.kind == tInt, t.kind == tFloat, t.kind == tDuration:
		return p.parseScalarFilter()
	case p.atIdent("by"):
		p.next()
		p.expect("(")
		e := p.parseExpr(0)
		p.expect(")")
		return &GroupBy{Expr: e}
	case p.atIdent("coalesce"):
		p.next()
		p.expect("(")
		p.expect(")")
		return &Coalesce{}
	case p.atIdent("select"):
		p.next()
		p.expect("(")
		s := &Select{}
		for {
			s.Fields = append(s.Fields, p.parseExpr(0))
			if !p.at(",") {
				break
			}
			p.next()
		}
		p.expect(")")
		return s
	}
	p.fail(t, "expected a spanset filter, an aggregate, by(), select() or coalesce(), found %s", describe(t))
	return nil
}

var spansetOpPrec = map[string]int{
	"&&": 1, "||": 1,
	">": 2, ">>": 2, "<": 2, "<<": 2, "~": 2,
	"!>": 2, "!>>": 2, "!<": 2, "!<<": 2, "!~": 2,
	"&>": 2, "&>>": 2, "&<": 2, "&<<": 2, "&~": 2,
}

func (p *parser) parseSpansetExpr(minPrec int) SpansetExpr {
	p.enter()
	defer p.leave()
	lhs := p.parseSpansetPrimary()
	for {
		t := p.tok()
		prec, ok := spansetOpPrec[t.text]
		if t.kind != tPunct || !ok || prec < minPrec {
			return lhs
		}
		p.next()
		rhs := p.parseSpansetExpr(prec + 1)
		lhs = &SpansetOp{Op: t.text, LHS: lhs, RHS: rhs, pos: t.pos}
	}
}

func (p *parser) parseSpansetPrimary() SpansetExpr {
	t := p.tok()
	switch {
	case p.at("{"):
		p.next()
		if p.at("}") {
			p.next()
			return &SpansetFilter{pos: t.pos}
		}
		e := p.parseExpr(0)
		p.expect("}")
		return &SpansetFilter{Expr: e, pos: t.pos}
	case p.at("("):
		p.next()
		pl := p.parsePipeline()
		p.expect(")")
		if len(pl.Stages) == 1 {
			if s, ok := pl.Stages[0].(*SpansetStage); ok {
				return s.Expr
			}
		}
		pl.pos = t.pos
		return pl
	}
	p.fail(t, "expected a spanset filter, found %s", describe(t))
	return nil
}

var fieldOpPrec = map[string]int{
	"&&": 1, "||": 1,
	"=": 2, "!=": 2, "<": 2, "<=": 2, ">": 2, ">=": 2, "=~": 2, "!~": 2,
	"+": 3, "-": 3,
	"*": 4, "/": 4, "%": 4,
	"^": 5,
}

func (p *parser) parseExpr(minPrec int) Expr {
	p.enter()
	defer p.leave()
	lhs := p.parseUnary()
	for {
		t := p.tok()
		prec, ok := fieldOpPrec[t.text]
		if t.kind != tPunct || !ok || prec < minPrec {
			return lhs
		}
		p.next()
		next := prec + 1
		if t.text == "^" {
			next = prec // right-associative
		}
		rhs := p.parseExpr(next)
		lhs = &BinaryExpr{Op: t.text, LHS: lhs, RHS: rhs, pos: t.pos}
	}
}

func (p *parser) parseUnary() Expr {
	t := p.tok()
	if p.at("!") {
		p.next()
		return &UnaryExpr{Op: "!", Expr: p.parseExpr(4), pos: t.pos}
	}
	if p.at("-") {
		p.next()
		e := p.parseExpr(6)
		if l, ok := e.(*Literal); ok {
			switch l.Value.Type {
			case TypeInt, TypeDuration:
				l.Value.N = -l.Value.N
				l.pos = t.pos
				return l
			case TypeFloat:
				l.Value.F = -l.Value.F
				l.pos = t.pos
				return l
			}
		}
		return &UnaryExpr{Op: "-", Expr: e, pos: t.pos}
	}
	return p.parsePrimary()
}

func (p *parser) parsePrimary() Expr {
	t := p.next()
	switch t.kind {
	case tPunct:
		if t.text == "(" {
			e := p.parseExpr(0)
			p.expect(")")
			return e
		}
	case tString:
		return &Literal{Value: NewString(t.str), pos: t.pos}
	case tInt:
		return &Literal{Value: NewInt(t.num), pos: t.pos}
	case tFloat:
		return &Literal{Value: NewFloat(t.flt), pos: t.pos}
	case tDuration:
		return &Literal{Value: NewDuration(t.num), pos: t.pos}
	case tAttr:
		a := t.attr
		return &a
	case tIdent:
		switch t.text {
		case "true", "false":
			return &Literal{Value: NewBool(t.text == "true"), pos: t.pos}
		case "nil":
			return &Literal{Value: Static{Type: TypeNil}, pos: t.pos}
		}
		if c, ok := statusNames[t.text]; ok {
			return &Literal{Value: NewStatus(c), pos: t.pos}
		}
		if k, ok := kindNames[t.text]; ok {
			return &Literal{Value: NewKind(k), pos: t.pos}
		}
		if in, ok := intrinsicByName[t.text]; ok {
			return &IntrinsicRef{Intrinsic: in, pos: t.pos}
		}
		p.fail(t, "unknown identifier %q; attributes start with a scope or a dot, e.g. span.%s or .%s", t.text, t.text, t.text)
	}
	p.fail(t, "expected a value, attribute or intrinsic, found %s", describe(t))
	return nil
}

func (p *parser) parseScalarFilter() Stage {
	pos := p.tok().pos
	lhs := p.parseScalarExpr(0)
	t := p.next()
	if t.kind != tPunct || !isComparison(t.text) {
		p.fail(t, "expected a comparison after %s, found %s", lhs, describe(t))
	}
	rhs := p.parseScalarExpr(0)
	return &ScalarFilter{Op: t.text, LHS: lhs, RHS: rhs, pos: pos}
}

var scalarOpPrec = map[string]int{"+": 1, "-": 1, "*": 2, "/": 2, "%": 2, "^": 3}

func (p *parser) parseScalarExpr(minPrec int) ScalarExpr {
	p.enter()
	defer p.leave()
	lhs := p.parseScalarPrimary()
	for {
		t := p.tok()
		prec, ok := scalarOpPrec[t.text]
		if t.kind != tPunct || !ok || prec < minPrec {
			return lhs
		}
		p.next()
		rhs := p.parseScalarExpr(prec + 1)
		lhs = &ScalarBinary{Op: t.text, LHS: lhs, RHS: rhs}
	}
}

func (p *parser) parseScalarPrimary() ScalarExpr {
	t := p.next()
	switch {
	case t.kind == tPunct && t.text == "(":
		e := p.parseScalarExpr(0)
		p.expect(")")
		return e
	case t.kind == tPunct && t.text == "-":
		n := p.next()
		switch n.kind {
		case tInt:
			return &ScalarLiteral{Value: NewInt(-n.num)}
		case tFloat:
			return &ScalarLiteral{Value: NewFloat(-n.flt)}
		case tDuration:
			return &ScalarLiteral{Value: NewDuration(-n.num)}
		}
		p.fail(n, "expected a number, found %s", describe(n))
	case t.kind == tInt:
		return &ScalarLiteral{Value: NewInt(t.num)}
	case t.kind == tFloat:
		return &ScalarLiteral{Value: NewFloat(t.flt)}
	case t.kind == tDuration:
		return &ScalarLiteral{Value: NewDuration(t.num)}
	case t.kind == tIdent && slices.Contains(aggregateFns, t.text):
		p.expect("(")
		a := &Aggregate{Fn: t.text}
		if t.text != "count" {
			a.Expr = p.parseExpr(0)
		}
		p.expect(")")
		return a
	}
	p.fail(t, "expected an aggregate such as count() or avg(duration), found %s", describe(t))
	return nil
}

func (p *parser) parseMetrics() *MetricsAggregate {
	t := p.next()
	m := &MetricsAggregate{Fn: t.text, pos: t.pos}
	p.expect("(")
	switch t.text {
	case "rate", "count_over_time":
	case "compare":
		// compare({ filter } [, topN [, from, to]]), as in Tempo; it
		// groups by every attribute itself, so it takes no by().
		f, ok := p.parseSpansetPrimary().(*SpansetFilter)
		if !ok {
			p.fail(t, "compare() takes a spanset filter such as { status = error }")
		}
		m.Compare, m.TopN = f, DefaultCompareTopN
		if p.at(",") {
			p.next()
			m.TopN = int(p.expectInt())
			if p.at(",") {
				p.next()
				m.From = p.expectInt()
				p.expect(",")
				m.To = p.expectInt()
			}
		}
		p.expect(")")
		if p.atIdent("by") {
			p.fail(p.tok(), "compare() groups by every attribute and takes no by()")
		}
		return m
	case "quantile_over_time":
		m.Attr = p.parseExpr(0)
		if !p.at(",") {
			p.fail(p.tok(), "quantile_over_time needs at least one quantile, e.g. quantile_over_time(duration, .99)")
		}
		for p.at(",") {
			p.next()
			m.Quantiles = append(m.Quantiles, p.expectNumber())
		}
	default:
		m.Attr = p.parseExpr(0)
	}
	p.expect(")")
	if p.atIdent("by") {
		p.next()
		p.expect("(")
		for {
			m.By = append(m.By, p.parseExpr(0))
			if !p.at(",") {
				break
			}
			p.next()
		}
		p.expect(")")
	}
	return m
}

func (p *parser) parseHints() []Hint {
	p.next()
	p.expect("(")
	var hints []Hint
	for {
		k := p.next()
		if k.kind != tIdent {
			p.fail(k, "expected a hint name, found %s", describe(k))
		}
		p.expect("=")
		v := p.parsePrimary()
		l, ok := v.(*Literal)
		if !ok {
			p.fail(k, "hint %s needs a literal value", k.text)
		}
		hints = append(hints, Hint{Key: k.text, Value: l.Value})
		if !p.at(",") {
			break
		}
		p.next()
	}
	p.expect(")")
	return hints
}

// validate type-checks the query and compiles its regular expressions.
func validate(q *Query) error {
	if q.Math != nil {
		return validateMath(q)
	}
	v := &validator{}
	v.pipeline(q.Pipeline)
	if m := q.Metrics; m != nil && v.err == nil {
		if m.Attr != nil {
			v.fieldRef(m.Attr, m.Fn)
			if t := m.Attr.exprType(); t != TypeAttribute && !t.numeric() && m.Fn != "histogram_over_time" {
				v.fail(m.Attr.Pos(), "%s needs a numeric field, %s is %s", m.Fn, m.Attr, t)
			}
		}
		for _, qv := range m.Quantiles {
			if qv < 0 || qv > 1 {
				v.fail(m.pos, "quantile %g is outside [0, 1]", qv)
			}
		}
		for _, b := range m.By {
			v.fieldRef(b, "by")
		}
		if m.Compare != nil {
			v.spanset(m.Compare)
			switch {
			case m.TopN <= 0:
				v.fail(m.pos, "compare() keeps a positive number of values per attribute, not %d", m.TopN)
			case (m.From != 0 || m.To != 0) && (m.From <= 0 || m.To <= 0):
				v.fail(m.pos, "compare()'s window is two unix timestamps in nanoseconds")
			case m.To <= m.From && (m.From != 0 || m.To != 0):
				v.fail(m.pos, "compare()'s window must end after it starts")
			}
			if len(q.Second) > 0 {
				v.fail(q.Second[0].pos, "compare() cannot be followed by %s: its series are counts per attribute value, kept by compare()'s own top N", q.Second[0])
			}
		}
		for _, s := range q.Second {
			if (s.Fn == "topk" || s.Fn == "bottomk") && s.N <= 0 {
				v.fail(m.pos, "%s needs a positive count", s.Fn)
			}
		}
	}
	if v.err != nil {
		return v.err
	}
	return nil
}

// validateMath validates every metrics query of an arithmetic one, and
// what follows it.
func validateMath(q *Query) error {
	var err error
	var walk func(MetricsExpr)
	walk = func(e MetricsExpr) {
		switch x := e.(type) {
		case *MetricsLeaf:
			if err == nil && x.Query.Metrics.Compare != nil {
				err = errorf(x.Query.Metrics.pos, "compare() cannot be combined with arithmetic: its series are counts per attribute value")
			}
			if err == nil {
				err = validate(x.Query)
			}
		case *MetricsBinary:
			walk(x.LHS)
			walk(x.RHS)
		case *MetricsScalarOp:
			walk(x.Expr)
		}
	}
	walk(q.Math)
	if err != nil {
		return err
	}
	for _, s := range q.Second {
		if (s.Fn == "topk" || s.Fn == "bottomk") && s.N <= 0 {
			return errorf(s.pos, "%s needs a positive count", s.Fn)
		}
	}
	return nil
}

type validator struct{ err *Error }

func (v *validator) fail(p Pos, format string, args ...any) {
	if v.err == nil {
		v.err = errorf(p, format, args...)
	}
}

func (v *validator) fieldRef(e Expr, what string) {
	switch e.(type) {
	case *Attribute, *IntrinsicRef:
	default:
		v.fail(e.Pos(), "%s takes an attribute or intrinsic, not %s", what, e)
	}
}

func (v *validator) pipeline(pl *Pipeline) {
	for _, st := range pl.Stages {
		switch s := st.(type) {
		case *SpansetStage:
			v.spanset(s.Expr)
		case *ScalarFilter:
			if !s.LHS.hasAggregate() && !s.RHS.hasAggregate() {
				v.fail(s.pos, "a scalar filter needs an aggregate such as count() or avg(duration)")
			}
			v.scalar(s.LHS)
			v.scalar(s.RHS)
		case *GroupBy:
			v.expr(s.Expr)
			if !refsField(s.Expr) {
				v.fail(s.Expr.Pos(), "by() needs an attribute or intrinsic to group on, %s is the same for every span", s.Expr)
			}
		case *Select:
			for _, f := range s.Fields {
				v.fieldRef(f, "select")
			}
		}
	}
}

func (v *validator) scalar(e ScalarExpr) {
	switch s := e.(type) {
	case *Aggregate:
		if s.Expr != nil {
			v.expr(s.Expr)
			if !refsField(s.Expr) {
				v.fail(s.Expr.Pos(), "%s() aggregates a field of the spans, %s names none", s.Fn, s.Expr)
			}
			if t := s.Expr.exprType(); t != TypeAttribute && !t.numeric() {
				v.fail(s.Expr.Pos(), "%s() needs a numeric field, %s is %s", s.Fn, s.Expr, t)
			}
		}
	case *ScalarBinary:
		v.scalar(s.LHS)
		v.scalar(s.RHS)
	}
}

func (v *validator) spanset(e SpansetExpr) {
	switch s := e.(type) {
	case *SpansetFilter:
		if s.Expr == nil {
			return
		}
		v.expr(s.Expr)
		// An attribute alone selects the spans where it is true, as in
		// Tempo: its type is only known per span.
		if t := s.Expr.exprType(); t != TypeBool && t != TypeAttribute {
			v.fail(s.Expr.Pos(), "a spanset filter must be a boolean expression, %s is %s", s.Expr, t)
		}
	case *SpansetOp:
		v.spanset(s.LHS)
		v.spanset(s.RHS)
	case *Pipeline:
		v.pipeline(s)
	}
}

func (v *validator) expr(e Expr) {
	switch x := e.(type) {
	case *UnaryExpr:
		v.expr(x.Expr)
		t := x.Expr.exprType()
		if x.Op == "!" && t != TypeBool && t != TypeAttribute {
			v.fail(x.pos, "! needs a boolean, %s is %s", x.Expr, t)
		}
		if x.Op == "-" && t != TypeAttribute && !t.numeric() {
			v.fail(x.pos, "unary minus needs a number, %s is %s", x.Expr, t)
		}
	case *BinaryExpr:
		v.expr(x.LHS)
		v.expr(x.RHS)
		v.binary(x)
	}
}

func (v *validator) binary(x *BinaryExpr) {
	l, r := x.LHS.exprType(), x.RHS.exprType()
	switch x.Op {
	case "&&", "||":
		for _, s := range []Expr{x.LHS, x.RHS} {
			if t := s.exprType(); t != TypeBool && t != TypeAttribute {
				v.fail(s.Pos(), "%s needs boolean operands, %s is %s", x.Op, s, t)
			}
		}
	case "=~", "!~":
		lit, ok := x.RHS.(*Literal)
		if !ok || lit.Value.Type != TypeString {
			v.fail(x.RHS.Pos(), "%s needs a string literal on the right", x.Op)
			return
		}
		if l != TypeAttribute && l != TypeString {
			v.fail(x.LHS.Pos(), "%s needs a string on the left, %s is %s", x.Op, x.LHS, l)
		}
		re, err := regexp.Compile("^(?:" + lit.Value.S + ")$")
		if err != nil {
			v.fail(x.RHS.Pos(), "bad regular expression: %v", err)
			return
		}
		x.re = re
	case "=", "!=", "<", "<=", ">", ">=":
		if l == TypeNil || r == TypeNil {
			other, otherT := x.LHS, l
			if l == TypeNil {
				other, otherT = x.RHS, r
			}
			if x.Op != "=" && x.Op != "!=" {
				v.fail(x.pos, "nil can only be compared with = or !=")
			}
			switch o := other.(type) {
			case *Attribute:
				// Every span has a service; Tempo refuses to test it.
				if o.Scope == ScopeResource && !o.Parent && o.Name == "service.name" {
					v.fail(o.Pos(), "%s is never nil", o)
				}
			case *IntrinsicRef:
				// A status or kind always has a value (unset and
				// unspecified are values), as Tempo validates.
				if otherT == TypeStatus || otherT == TypeKind {
					v.fail(o.Pos(), "%s is never nil: compare it with a %s such as %s", o, otherT, map[Type]string{TypeStatus: "unset", TypeKind: "unspecified"}[otherT])
				}
			case *Literal:
				// nil = nil is true and nil != nil false, as in Tempo.
			default:
				v.fail(other.Pos(), "only attributes can be compared with nil, %s is %s", other, otherT)
			}
			return
		}
		if !comparable(l, r) {
			v.fail(x.pos, "cannot compare %s (%s) with %s (%s)", x.LHS, l, x.RHS, r)
			return
		}
		if x.Op != "=" && x.Op != "!=" {
			for _, s := range []Expr{x.LHS, x.RHS} {
				if t := s.exprType(); t == TypeStatus || t == TypeKind || t == TypeBool {
					v.fail(s.Pos(), "%s has no order: %s compares only with = and !=", s, t)
					return
				}
			}
		}
	default: // arithmetic
		for _, s := range []Expr{x.LHS, x.RHS} {
			if t := s.exprType(); t != TypeAttribute && !t.numeric() {
				v.fail(s.Pos(), "%s needs numbers, %s is %s", x.Op, s, t)
			}
		}
	}
}

// refsField reports whether e reads a field of the span (an attribute or
// intrinsic), rather than being the same value for every span.
func refsField(e Expr) bool {
	switch x := e.(type) {
	case *Attribute, *IntrinsicRef:
		return true
	case *UnaryExpr:
		return refsField(x.Expr)
	case *BinaryExpr:
		return refsField(x.LHS) || refsField(x.RHS)
	}
	return false
}

func comparable(a, b Type) bool {
	switch {
	case a == TypeAttribute || b == TypeAttribute:
		return true
	case a.numeric() && b.numeric():
		return true
	}
	return a == b
}
