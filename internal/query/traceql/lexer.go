package traceql

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Pos is a 1-based line and column (in runes) in the query text.
type Pos struct{ Line, Col int }

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Col) }

// Error is a parse or validation error at a position. Every error the
// package returns for a bad query is an *Error, so that the API and the UI
// can point at the offending text.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Pos, e.Msg) }

func errorf(p Pos, format string, args ...any) *Error {
	return &Error{Pos: p, Msg: fmt.Sprintf(format, args...)}
}

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tAttr // attribute reference; tok.attr holds the parsed form
	tString
	tInt
	tFloat
	tDuration
	tPunct
)

type token struct {
	kind tokKind
	pos  Pos
	text string // identifier, punctuation or raw literal text
	str  string // unquoted string value
	num  int64  // int value, or duration in nanoseconds
	flt  float64
	attr Attribute
}

// punctuation, longest first so that the lexer can match greedily.
var puncts = []string{
	"&>>", "&<<", "!>>", "!<<",
	"&&", "||", "!=", ">=", "<=", "=~", "!~", ">>", "<<", "!>", "!<", "&>", "&<", "&~",
	"{", "}", "(", ")", ",", "|", "=", ">", "<", "!", "+", "-", "*", "/", "%", "^", "~",
}

// Characters that end an attribute name, as in Tempo's lexer: whitespace
// and the operator characters that cannot be part of a dotted name.
func endsAttrName(r rune) bool {
	return unicode.IsSpace(r) || strings.ContainsRune("{}()=~!<>&|^,", r)
}

var scopePrefixes = map[string]AttrScope{
	"span":            ScopeSpan,
	"resource":        ScopeResource,
	"event":           ScopeEvent,
	"link":            ScopeLink,
	"instrumentation": ScopeInstrumentation,
}

type lexer struct {
	src  string
	off  int
	line int
	col  int
}

func lex(src string) ([]token, error) {
	l := &lexer{src: src, line: 1, col: 1}
	if !utf8.ValidString(src) {
		for l.off < len(src) {
			if r, n := utf8.DecodeRuneInString(src[l.off:]); r == utf8.RuneError && n == 1 {
				return nil, errorf(l.pos(), "invalid UTF-8")
			}
			l.advance(1)
		}
	}
	var toks []token
	for {
		t, err := l.next()
		if err != nil {
			return nil, err
		}
		toks = append(toks, t)
		if t.kind == tEOF {
			return toks, nil
		}
	}
}

func (l *lexer) pos() Pos { return Pos{l.line, l.col} }

func (l *lexer) peekRune(ahead int) rune {
	off := l.off
	for range ahead {
		if off >= len(l.src) {
			return 0
		}
		_, n := utf8.DecodeRuneInString(l.src[off:])
		off += n
	}
	if off >= len(l.src) {
		return 0
	}
	r, _ := utf8.DecodeRuneInString(l.src[off:])
	return r
}

func (l *lexer) advance(n int) {
	for i := 0; i < n && l.off < len(l.src); {
		r, sz := utf8.DecodeRuneInString(l.src[l.off:])
		l.off += sz
		i += sz
		if r == '\n' {
			l.line++
			l.col = 1
		} else {
			l.col++
		}
	}
}

func (l *lexer) next() (token, error) {
	for l.off < len(l.src) {
		r, _ := utf8.DecodeRuneInString(l.src[l.off:])
		if !unicode.IsSpace(r) {
			break
		}
		l.advance(utf8.RuneLen(r))
	}
	p := l.pos()
	if l.off >= len(l.src) {
		return token{kind: tEOF, pos: p}, nil
	}
	rest := l.src[l.off:]
	c := rest[0]
	switch {
	case c == '"' || c == '`':
		s, n, err := unquotePrefix(rest)
		if err != nil {
			return token{}, errorf(p, "%v", err)
		}
		l.advance(n)
		return token{kind: tString, pos: p, text: rest[:n], str: s}, nil
	case c >= '0' && c <= '9' || c == '.' && len(rest) > 1 && rest[1] >= '0' && rest[1] <= '9':
		return l.number(p)
	case c == '.':
		l.advance(1)
		name, err := l.attrName(p)
		if err != nil {
			return token{}, err
		}
		return token{kind: tAttr, pos: p, text: rest[:l.off-(len(l.src)-len(rest))], attr: Attribute{Scope: ScopeNone, Name: name, pos: p}}, nil
	case isIdentStart(firstRune(rest)):
		return l.word(p)
	}
	for _, pu := range puncts {
		if strings.HasPrefix(rest, pu) {
			l.advance(len(pu))
			return token{kind: tPunct, pos: p, text: pu}, nil
		}
	}
	r, _ := utf8.DecodeRuneInString(rest)
	return token{}, errorf(p, "unexpected character %q", r)
}

func firstRune(s string) rune { r, _ := utf8.DecodeRuneInString(s); return r }

func isIdentStart(r rune) bool { return r == '_' || unicode.IsLetter(r) }
func isIdentChar(r rune) bool  { return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) }

// word lexes keywords, intrinsics (name, span:duration) and scoped
// attributes (span.http.method, parent.resource.x).
func (l *lexer) word(p Pos) (token, error) {
	start := l.off
	for l.off < len(l.src) {
		r, n := utf8.DecodeRuneInString(l.src[l.off:])
		if !isIdentChar(r) {
			break
		}
		l.advance(n)
	}
	w := l.src[start:l.off]
	next := l.peekRune(0)
	if next == ':' && isIdentStart(l.peekRune(1)) {
		// scoped intrinsic: trace:id, span:duration, event:name ...
		l.advance(1)
		s := l.off
		for l.off < len(l.src) {
			r, n := utf8.DecodeRuneInString(l.src[l.off:])
			if !isIdentChar(r) {
				break
			}
			l.advance(n)
		}
		return token{kind: tIdent, pos: p, text: w + ":" + l.src[s:l.off]}, nil
	}
	if next == '.' {
		parent := false
		if w == "parent" {
			parent = true
			l.advance(1)
			// parent.span.x, parent.resource.x or parent.x (unscoped)
			s := l.off
			for l.off < len(l.src) {
				r, n := utf8.DecodeRuneInString(l.src[l.off:])
				if !isIdentChar(r) {
					break
				}
				l.advance(n)
			}
			sub := l.src[s:l.off]
			if sc, ok := scopePrefixes[sub]; ok && l.peekRune(0) == '.' && (sc == ScopeSpan || sc == ScopeResource) {
				l.advance(1)
				name, err := l.attrName(p)
				if err != nil {
					return token{}, err
				}
				return token{kind: tAttr, pos: p, text: l.src[start:l.off], attr: Attribute{Scope: sc, Name: name, Parent: true, pos: p}}, nil
			}
			// unscoped parent attribute: the word read so far starts the name
			l.off, l.col = s, l.col-len([]rune(sub))
			name, err := l.attrName(p)
			if err != nil {
				return token{}, err
			}
			return token{kind: tAttr, pos: p, text: l.src[start:l.off], attr: Attribute{Scope: ScopeNone, Name: name, Parent: parent, pos: p}}, nil
		}
		if sc, ok := scopePrefixes[w]; ok {
			l.advance(1)
			name, err := l.attrName(p)
			if err != nil {
				return token{}, err
			}
			return token{kind: tAttr, pos: p, text: l.src[start:l.off], attr: Attribute{Scope: sc, Name: name, pos: p}}, nil
		}
	}
	return token{kind: tIdent, pos: p, text: w}, nil
}

// attrName reads a dotted attribute name, which may be or contain a quoted
// part (span."name with spaces").
func (l *lexer) attrName(p Pos) (string, error) {
	var b strings.Builder
	for l.off < len(l.src) {
		rest := l.src[l.off:]
		if rest[0] == '"' {
			s, n, err := unquotePrefix(rest)
			if err != nil {
				return "", errorf(l.pos(), "%v", err)
			}
			b.WriteString(s)
			l.advance(n)
			continue
		}
		r, n := utf8.DecodeRuneInString(rest)
		if endsAttrName(r) {
			break
		}
		b.WriteRune(r)
		l.advance(n)
	}
	if b.Len() == 0 {
		return "", errorf(p, "attribute name expected")
	}
	return b.String(), nil
}

// unquotePrefix unquotes the Go string literal that starts s and returns
// its length in bytes.
func unquotePrefix(s string) (string, int, error) {
	q := s[0]
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if q == '"' {
				i++
			}
		case q:
			lit := s[:i+1]
			if q == '"' && strings.Contains(lit, "\n") {
				// A quoted name may span lines, as in Tempo; Go's
				// syntax wants the newline escaped.
				lit = strings.ReplaceAll(lit, "\n", `\n`)
			}
			v, err := strconv.Unquote(lit)
			if err != nil {
				return "", 0, fmt.Errorf("bad string literal %s", s[:i+1])
			}
			return v, i + 1, nil
		}
	}
	return "", 0, fmt.Errorf("unterminated string")
}

// durationUnits are the units a duration literal may use: Go's, plus
// Prometheus's d, w and y.
var durationUnits = map[string]float64{
	"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9,
	"d": 86400e9, "w": 7 * 86400e9, "y": 365 * 86400e9,
}

func isNumChar(c byte) bool { return c >= '0' && c <= '9' || c == '.' }

// number lexes ints, floats (1.5, 2e3) and durations, which are a number
// directly followed by a unit and may chain (1h30m).
func (l *lexer) number(p Pos) (token, error) {
	start := l.off
	end := start
	for end < len(l.src) {
		c := l.src[end]
		if isNumChar(c) || (c == 'e' || c == 'E') && end+1 < len(l.src) && (l.src[end+1] >= '0' && l.src[end+1] <= '9' || l.src[end+1] == '-' || l.src[end+1] == '+') && !hasLetterBefore(l.src[start:end]) {
			if c == 'e' || c == 'E' {
				end++ // the exponent sign or first digit
			}
			end++
			continue
		}
		r, n := utf8.DecodeRuneInString(l.src[end:])
		if unicode.IsLetter(r) {
			end += n
			continue
		}
		break
	}
	text := l.src[start:end]
	l.advance(end - start)
	if !hasLetterBefore(text) {
		i, err := strconv.ParseInt(text, 10, 64)
		if err == nil {
			return token{kind: tInt, pos: p, text: text, num: i, flt: float64(i)}, nil
		}
		if errors.Is(err, strconv.ErrRange) && !strings.ContainsAny(text, ".eE") {
			return token{}, errorf(p, "integer %s is out of range; write it with a decimal point for a float", text)
		}
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return token{}, errorf(p, "bad number %q", text)
		}
		return token{kind: tFloat, pos: p, text: text, flt: f}, nil
	}
	var total float64
	for rest := text; rest != ""; {
		i := 0
		for i < len(rest) && isNumChar(rest[i]) {
			i++
		}
		j := i
		for j < len(rest) && !isNumChar(rest[j]) {
			j++
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		unit, ok := durationUnits[rest[i:j]]
		if err != nil || !ok {
			return token{}, errorf(p, "bad duration %q", text)
		}
		total += n * unit
		rest = rest[j:]
	}
	if total >= 1<<63 {
		return token{}, errorf(p, "duration %q out of range", text)
	}
	return token{kind: tDuration, pos: p, text: text, num: int64(total)}, nil
}

func hasLetterBefore(s string) bool {
	for _, r := range s {
		if unicode.IsLetter(r) && r != 'e' && r != 'E' {
			return true
		}
	}
	// "1e" alone is not a float; treat a trailing e as a unit letter.
	return strings.ContainsAny(s, "eE") && !validFloat(s)
}

func validFloat(s string) bool { _, err := strconv.ParseFloat(s, 64); return err == nil }

// formatDuration prints nanoseconds the way Go does, for String().
func formatDuration(ns int64) string { return time.Duration(ns).String() }
