package api

import (
	"fmt"
	"net/http"
)

// Prometheus's parser and engine take a query of any length and nesting,
// and parse it before the query timeout starts: 40k nested parentheses
// took 48 s to answer, and 100k kept a core busy for minutes after the
// client left. These checks run first, in linear time.

// Defaults for limits::max_query_bytes and limits::max_query_depth.
const (
	defaultMaxQueryBytes = 64 << 10
	defaultMaxQueryDepth = 128
)

// checkPromQL refuses a PromQL expression longer than maxBytes or nesting
// brackets ((, [, {) deeper than maxDepth. Brackets inside string literals
// and comments do not count. Zero disables a limit.
func checkPromQL(q string, maxBytes, maxDepth int) error {
	if maxBytes > 0 && len(q) > maxBytes {
		return fmt.Errorf("%w: the query is %d bytes, over limits::max_query_bytes (%d)", errLimit, len(q), maxBytes)
	}
	if maxDepth <= 0 {
		return nil
	}
	depth := 0
	for i := 0; i < len(q); i++ {
		switch c := q[i]; c {
		case '"', '\'', '`':
			// Skip the literal; backquoted strings have no escapes.
			for i++; i < len(q) && q[i] != c; i++ {
				if c != '`' && q[i] == '\\' {
					i++
				}
			}
		case '#':
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case '(', '[', '{':
			depth++
			if depth > maxDepth {
				return fmt.Errorf("%w: the query nests brackets deeper than limits::max_query_depth (%d) at byte %d", errLimit, maxDepth, i)
			}
		case ')', ']', '}':
			depth--
		}
	}
	return nil
}

// promQueryParams are the parameters of Prometheus's API that hold PromQL
// expressions or series selectors.
var promQueryParams = []string{"query", "match[]"}

// limitPromQL checks every PromQL expression of a request before
// Prometheus's handler parses it, answering 422 in Prometheus's error
// format when one is over a limit.
func (a *API) limitPromQL(next http.Handler) http.Handler {
	l := a.cfg.Limits
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			a.fail(w, r, styleJSON, badRequest("%v", err))
			return
		}
		for _, p := range promQueryParams {
			for _, q := range r.Form[p] {
				if err := checkPromQL(q, l.MaxQueryBytes, l.MaxQueryDepth); err != nil {
					a.fail(w, r, styleJSON, err)
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}
