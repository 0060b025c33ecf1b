package logql

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode/utf8"

	"github.com/prometheus/common/model"
)

// MaxQueryLength bounds the text Parse accepts.
const MaxQueryLength = 64 << 10

const maxDepth = 100

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tDuration
	tPunct
)

type token struct {
	kind tokKind
	pos  Pos
	text string
	str  string
	num  float64
	dur  time.Duration
}

var puncts = []string{"|=", "|~", "!=", "!~", "=~", "==", ">=", "<=", "{", "}", "(", ")", "[", "]", ",", "|", "=", ">", "<"}

func lex(src string) ([]token, error) {
	var toks []token
	line, col := 1, 1
	adv := func(s string) {
		for _, r := range s {
			if r == '\n' {
				line++
				col = 1
			} else {
				col++
			}
		}
	}
	for i := 0; i < len(src); {
		c := src[i]
		p := Pos{line, col}
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			adv(src[i : i+1])
			i++
			continue
		case c == '"' || c == '`':
			end := -1
			for j := i + 1; j < len(src); j++ {
				if src[j] == '\\' && c == '"' {
					j++
					continue
				}
				if src[j] == c {
					end = j
					break
				}
			}
			if end < 0 {
				return nil, &Error{p, "unterminated string"}
			}
			s, err := strconv.Unquote(src[i : end+1])
			if err != nil {
				return nil, &Error{p, "bad string literal " + src[i:end+1]}
			}
			toks = append(toks, token{kind: tString, pos: p, text: src[i : end+1], str: s})
			adv(src[i : end+1])
			i = end + 1
			continue
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.' || src[j] >= 'a' && src[j] <= 'z' || src[j] >= 'A' && src[j] <= 'Z' || src[j] == '_') {
				j++
			}
			text := src[i:j]
			t := token{pos: p, text: text}
			if f, err := strconv.ParseFloat(text, 64); err == nil {
				t.kind, t.num = tNumber, f
			} else if d, err := model.ParseDuration(text); err == nil {
				t.kind, t.dur = tDuration, time.Duration(d)
			} else if d, err := time.ParseDuration(text); err == nil {
				t.kind, t.dur = tDuration, d
			} else {
				return nil, &Error{p, "bad number or duration " + strconv.Quote(text)}
			}
			toks = append(toks, t)
			adv(text)
			i = j
			continue
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(src) && (src[j] == '_' || src[j] == '.' || src[j] >= 'a' && src[j] <= 'z' || src[j] >= 'A' && src[j] <= 'Z' || src[j] >= '0' && src[j] <= '9') {
				j++
			}
			toks = append(toks, token{kind: tIdent, pos: p, text: src[i:j]})
			adv(src[i:j])
			i = j
			continue
		}
		matched := false
		for _, pu := range puncts {
			if strings.HasPrefix(src[i:], pu) {
				toks = append(toks, token{kind: tPunct, pos: p, text: pu})
				adv(pu)
				i += len(pu)
				matched = true
				break
			}
		}
		if !matched {
			r, _ := utf8.DecodeRuneInString(src[i:])
			return nil, &Error{p, "syntax error: unexpected character " + strconv.QuoteRune(r)}
		}
	}
	return append(toks, token{kind: tEOF, pos: Pos{line, col}}), nil
}

// Parse parses a LogQL query.
func Parse(src string) (*Query, error) {
	if len(src) > MaxQueryLength {
		return nil, &Error{Pos{1, 1}, "query is longer than " + strconv.Itoa(MaxQueryLength) + " bytes"}
	}
	if !utf8.ValidString(src) {
		return nil, &Error{Pos{1, 1}, "query is not valid UTF-8"}
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	return p.parse()
}

type parser struct {
	toks  []token
	i     int
	depth int
}

type bail struct{ err *Error }

func (p *parser) fail(t token, msg string) { panic(bail{&Error{t.pos, msg}}) }
func (p *parser) tok() token               { return p.toks[p.i] }
func (p *parser) peek(n int) token         { return p.toks[min(p.i+n, len(p.toks)-1)] }
func (p *parser) next() token {
	t := p.toks[p.i]
	p.i = min(p.i+1, len(p.toks)-1)
	return t
}
func (p *parser) at(s string) bool { t := p.tok(); return t.kind == tPunct && t.text == s }
func (p *parser) atIdent(s string) bool {
	t := p.tok()
	return t.kind == tIdent && t.text == s
}
func (p *parser) expect(s string) token {
	if !p.at(s) {
		p.fail(p.tok(), "syntax error: unexpected "+describe(p.tok())+", expecting "+strconv.Quote(s))
	}
	return p.next()
}

func describe(t token) string {
	if t.kind == tEOF {
		return "end of input"
	}
	return t.text
}

func (p *parser) parse() (q *Query, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, ok := r.(bail)
			if !ok {
				panic(r)
			}
			q, err = nil, b.err
		}
	}()
	q = &Query{}
	if p.at("{") {
		q.Log = p.parseLog()
	} else {
		q.Metric = p.parseMetric()
	}
	if t := p.tok(); t.kind != tEOF {
		p.fail(t, "syntax error: unexpected "+describe(t))
	}
	return q, nil
}

var rangeFns = []string{"count_over_time", "rate", "bytes_over_time", "bytes_rate"}
var vectorFns = []string{"sum", "count", "avg", "min", "max", "topk", "bottomk"}

func (p *parser) parseMetric() MetricExpr {
	p.depth++
	if p.depth > maxDepth {
		p.fail(p.tok(), "query nested too deeply")
	}
	defer func() { p.depth-- }()
	t := p.next()
	switch {
	case t.kind == tIdent && slices.Contains(rangeFns, t.text):
		p.expect("(")
		log := p.parseLog()
		p.expect("[")
		d := p.next()
		if d.kind != tDuration {
			p.fail(d, "syntax error: unexpected "+describe(d)+", expecting a range such as [5m]")
		}
		if d.dur <= 0 {
			p.fail(d, "range must be positive")
		}
		p.expect("]")
		p.expect(")")
		return &RangeAggregation{Fn: t.text, Log: log, Range: d.dur}
	case t.kind == tIdent && slices.Contains(vectorFns, t.text):
		v := &VectorAggregation{Fn: t.text}
		grouping := func() {
			if p.atIdent("by") || p.atIdent("without") {
				v.Without = p.next().text == "without"
				p.expect("(")
				v.By = []string{}
				for !p.at(")") {
					n := p.next()
					if n.kind != tIdent {
						p.fail(n, "syntax error: unexpected "+describe(n)+", expecting a label name")
					}
					v.By = append(v.By, n.text)
					if !p.at(",") {
						break
					}
					p.next()
				}
				p.expect(")")
			}
		}
		grouping()
		p.expect("(")
		if v.Fn == "topk" || v.Fn == "bottomk" {
			n := p.next()
			if n.kind != tNumber || n.num < 1 || n.num != float64(int(n.num)) {
				p.fail(n, v.Fn+" needs a positive integer parameter")
			}
			v.Param = int(n.num)
			p.expect(",")
		}
		v.Inner = p.parseMetric()
		p.expect(")")
		if v.By == nil {
			grouping()
		}
		return v
	}
	p.fail(t, "syntax error: unexpected "+describe(t)+", expecting a stream selector {...} or a function such as count_over_time")
	return nil
}

func (p *parser) parseLog() *LogExpr {
	e := &LogExpr{}
	open := p.expect("{")
	for !p.at("}") {
		n := p.next()
		if n.kind != tIdent {
			p.fail(n, "syntax error: unexpected "+describe(n)+", expecting a label name")
		}
		op := p.next()
		var mt MatchType
		switch op.text {
		case "=":
			mt = MatchEqual
		case "!=":
			mt = MatchNotEqual
		case "=~":
			mt = MatchRegexp
		case "!~":
			mt = MatchNotRegexp
		default:
			p.fail(op, "syntax error: unexpected "+describe(op)+", expecting = != =~ or !~")
		}
		v := p.next()
		if v.kind != tString {
			p.fail(v, "syntax error: unexpected "+describe(v)+", expecting a string")
		}
		m, err := newMatcher(n.text, mt, v.str)
		if err != nil {
			p.fail(v, "invalid regular expression: "+err.Error())
		}
		e.Matchers = append(e.Matchers, m)
		if !p.at(",") {
			break
		}
		p.next()
	}
	p.expect("}")
	if !slices.ContainsFunc(e.Matchers, func(m *Matcher) bool { return !m.Matches("") }) {
		p.fail(open, "queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will")
	}
	for {
		t := p.tok()
		switch {
		case t.kind == tPunct && (t.text == "|=" || t.text == "!=" || t.text == "|~" || t.text == "!~"):
			p.next()
			v := p.next()
			if v.kind != tString {
				p.fail(v, "syntax error: unexpected "+describe(v)+", expecting a string")
			}
			f := &LineFilter{Op: t.text, Value: v.str}
			if t.text == "|~" || t.text == "!~" {
				re, err := regexp.Compile(v.str)
				if err != nil {
					p.fail(v, "invalid regular expression: "+err.Error())
				}
				f.re = re
			}
			e.Stages = append(e.Stages, f)
		case p.at("|"):
			p.next()
			e.Stages = append(e.Stages, p.parseStage())
		default:
			return e
		}
	}
}

func (p *parser) parseStage() Stage {
	t := p.tok()
	switch {
	case p.atIdent("json") || p.atIdent("logfmt"):
		p.next()
		return &Parser{Kind: t.text}
	case p.atIdent("line_format"):
		p.next()
		v := p.next()
		if v.kind != tString {
			p.fail(v, "syntax error: unexpected "+describe(v)+", expecting a template string")
		}
		tmpl, err := template.New("line").Option("missingkey=zero").Funcs(templateFuncs).Parse(v.str)
		if err != nil {
			p.fail(v, "invalid line template: "+err.Error())
		}
		return &LineFormat{Template: v.str, tmpl: tmpl}
	case (p.atIdent("drop") || p.atIdent("keep")) && p.peek(1).kind == tIdent && !isCmp(p.peek(2)):
		p.next()
		d := &DropKeep{Keep: t.text == "keep"}
		for {
			n := p.next()
			if n.kind != tIdent {
				p.fail(n, "syntax error: unexpected "+describe(n)+", expecting a label name")
			}
			var m *Matcher
			if op := p.tok(); op.kind == tPunct && (op.text == "=" || op.text == "!=" || op.text == "=~" || op.text == "!~") {
				p.next()
				v := p.next()
				if v.kind != tString {
					p.fail(v, "syntax error: unexpected "+describe(v)+", expecting a string")
				}
				var err error
				m, err = newMatcher(n.text, map[string]MatchType{"=": MatchEqual, "!=": MatchNotEqual, "=~": MatchRegexp, "!~": MatchNotRegexp}[op.text], v.str)
				if err != nil {
					p.fail(v, "invalid regular expression: "+err.Error())
				}
			}
			d.Names = append(d.Names, n.text)
			d.Match = append(d.Match, m)
			if !p.at(",") {
				break
			}
			p.next()
		}
		return d
	case t.kind == tIdent:
		return &LabelFilter{Expr: p.parseFilterOr()}
	case p.at("("):
		return &LabelFilter{Expr: p.parseFilterOr()}
	}
	p.fail(t, "syntax error: unexpected "+describe(t)+", expecting a parser, a label filter or line_format")
	return nil
}

func isCmp(t token) bool {
	return t.kind == tPunct && slices.Contains([]string{"=", "!=", "=~", "!~", ">", ">=", "<", "<=", "=="}, t.text)
}

func (p *parser) parseFilterOr() FilterExpr {
	l := p.parseFilterAnd()
	for p.atIdent("or") {
		p.next()
		l = &FilterBinary{Op: "or", LHS: l, RHS: p.parseFilterAnd()}
	}
	return l
}

func (p *parser) parseFilterAnd() FilterExpr {
	l := p.parseFilterPrimary()
	for p.atIdent("and") || p.at(",") {
		p.next()
		l = &FilterBinary{Op: "and", LHS: l, RHS: p.parseFilterPrimary()}
	}
	return l
}

func (p *parser) parseFilterPrimary() FilterExpr {
	p.depth++
	if p.depth > maxDepth {
		p.fail(p.tok(), "query nested too deeply")
	}
	defer func() { p.depth-- }()
	if p.at("(") {
		p.next()
		e := p.parseFilterOr()
		p.expect(")")
		return e
	}
	n := p.next()
	if n.kind != tIdent {
		p.fail(n, "syntax error: unexpected "+describe(n)+", expecting a label name")
	}
	op := p.next()
	if !isCmp(op) {
		p.fail(op, "syntax error: unexpected "+describe(op)+", expecting a comparison")
	}
	v := p.next()
	switch v.kind {
	case tString:
		var mt MatchType
		switch op.text {
		case "=", "==":
			mt = MatchEqual
		case "!=":
			mt = MatchNotEqual
		case "=~":
			mt = MatchRegexp
		case "!~":
			mt = MatchNotRegexp
		default:
			p.fail(op, op.text+" needs a number or duration, not a string")
		}
		m, err := newMatcher(n.text, mt, v.str)
		if err != nil {
			p.fail(v, "invalid regular expression: "+err.Error())
		}
		return &StringFilter{M: m}
	case tNumber, tDuration:
		if op.text == "=~" || op.text == "!~" {
			p.fail(op, op.text+" needs a string")
		}
		f := &NumberFilter{Name: n.text, Op: op.text, Value: v.num, text: v.text}
		if v.kind == tDuration {
			f.Duration, f.Value = true, v.dur.Seconds()
		}
		return f
	}
	p.fail(v, "syntax error: unexpected "+describe(v)+", expecting a string, number or duration")
	return nil
}

// MaxFormattedLine bounds what line_format may build: the formatted line,
// and every string a template function returns on the way. Without it a
// few nested Replace calls multiply a line's size per level (a 293-byte
// query reached 9.7 GB). An entry over the bound keeps its line and gets
// __error__="TemplateFormatErr", as in Loki for a failing template.
const MaxFormattedLine = 64 << 10

// ErrLineTooLong is the template error for output past MaxFormattedLine.
var ErrLineTooLong = fmt.Errorf("line_format output over %d bytes", MaxFormattedLine)

// bounded wraps a string function so that its result is refused, as a
// template error, once it is over MaxFormattedLine.
func bounded(f func(string) string) func(string) (string, error) {
	return func(s string) (string, error) {
		if len(s) > MaxFormattedLine {
			return "", ErrLineTooLong
		}
		r := f(s)
		if len(r) > MaxFormattedLine {
			return "", ErrLineTooLong
		}
		return r, nil
	}
}

// boundedReplace is strings.ReplaceAll that works out the result's size
// first and refuses to build one over MaxFormattedLine.
func boundedReplace(s, old, repl string) (string, error) {
	n := strings.Count(s, old) // for old == "", the rune boundaries
	if len(s)+n*(len(repl)-len(old)) > MaxFormattedLine {
		return "", ErrLineTooLong
	}
	return strings.ReplaceAll(s, old, repl), nil
}

var templateFuncs = template.FuncMap{
	"ToUpper":       bounded(strings.ToUpper),
	"ToLower":       bounded(strings.ToLower),
	"Title":         bounded(strings.ToTitle),
	"TrimSpace":     strings.TrimSpace,
	"Replace":       boundedReplace,
	"contains":      strings.Contains,
	"hasPrefix":     strings.HasPrefix,
	"hasSuffix":     strings.HasSuffix,
	"__line__":      func() string { return "" }, // replaced per entry
	"__timestamp__": func() time.Time { return time.Time{} },
}
