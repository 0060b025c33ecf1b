package logql

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"unicode"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// Patterns groups log lines into templates, as Loki's pattern ingester
// does for Logs Drilldown: `<_>` stands where lines of one template
// differ. The grouping is Drain's (He et al., ICWS 2017) in its simplest
// form: lines are split into space-separated tokens; tokens with digits
// are variables from the start; a line joins the template of its length
// that shares the most tokens at the same positions, if at least half of
// them, and the positions where it differs become variables.
//
// The templates and the lines read are bounded (PatternsRequest), so a
// range of millions of lines costs a bounded scan and memory.

// PatternsRequest asks for the templates of the lines a selector picks.
type PatternsRequest struct {
	Selector   *LogExpr
	Start, End int64 // unix ns, [Start, End]
	// Step is the width of the buckets samples are counted in (unix ns).
	Step int64
	// MaxLines bounds the lines read (0: all).
	MaxLines int
	// MaxPatterns bounds the templates kept; lines that fit none once
	// it is reached are not counted (0: 300).
	MaxPatterns int
}

// Pattern is one template with its line counts per step.
type Pattern struct {
	Pattern string
	// Samples are (bucket start in unix ms, lines).
	Samples []Point
	Total   int
}

// variable is a template position where lines differ.
const variable = "<_>"

// similarity is the share of a template's tokens a line must match.
const similarity = 0.5

type patternTemplate struct {
	tokens []string
	counts map[int64]int
	total  int
}

// Patterns returns the templates of the lines in range, the most frequent
// first.
func Patterns(ctx context.Context, sq storage.Querier, req PatternsRequest) ([]Pattern, error) {
	maxPatterns := req.MaxPatterns
	if maxPatterns <= 0 {
		maxPatterns = 300
	}
	step := max(req.Step, 1)
	byLen := map[int][]*patternTemplate{}
	n := 0
	err := Streams(ctx, sq, req.Selector, req.Start, req.End, req.MaxLines, func(_ Labels, l *storage.LogRecord) {
		tokens := tokenize(l.Body.AsString())
		if len(tokens) == 0 {
			return
		}
		bucket := req.Start + (l.Timestamp()-req.Start)/step*step
		var best *patternTemplate
		bestSim := -1.0
		for _, t := range byLen[len(tokens)] {
			if s := match(t.tokens, tokens); s > bestSim {
				best, bestSim = t, s
			}
		}
		if best == nil || bestSim < similarity {
			if n >= maxPatterns {
				return
			}
			n++
			best = &patternTemplate{tokens: tokens, counts: map[int64]int{}}
			byLen[len(tokens)] = append(byLen[len(tokens)], best)
		} else {
			for i, tok := range tokens {
				if best.tokens[i] != tok {
					best.tokens[i] = variable
				}
			}
		}
		best.counts[bucket/1e6]++
		best.total++
	})
	if err != nil {
		return nil, err
	}
	var out []Pattern
	for _, ts := range byLen {
		for _, t := range ts {
			p := Pattern{Pattern: strings.Join(t.tokens, " "), Total: t.total}
			for at, c := range t.counts {
				p.Samples = append(p.Samples, Point{T: at, V: float64(c)})
			}
			slices.SortFunc(p.Samples, func(a, b Point) int { return cmp.Compare(a.T, b.T) })
			out = append(out, p)
		}
	}
	// Templates that became the same as they generalised are one.
	out = mergeSame(out)
	slices.SortFunc(out, func(a, b Pattern) int {
		if a.Total != b.Total {
			return b.Total - a.Total
		}
		return strings.Compare(a.Pattern, b.Pattern)
	})
	return out, nil
}

// tokenize splits a line at spaces and makes every token with a digit a
// variable: IDs, numbers, durations and times vary between lines of one
// template far more often than words do.
func tokenize(line string) []string {
	tokens := strings.Fields(line)
	for i, t := range tokens {
		if strings.IndexFunc(t, unicode.IsDigit) >= 0 {
			tokens[i] = variable
		}
	}
	return tokens
}

// match is the share of positions where a template and a line agree; a
// variable agrees with anything.
func match(tmpl, tokens []string) float64 {
	same := 0
	for i, t := range tmpl {
		if t == variable || t == tokens[i] {
			same++
		}
	}
	return float64(same) / float64(len(tmpl))
}

func mergeSame(ps []Pattern) []Pattern {
	byPattern := map[string]int{}
	out := ps[:0]
	for _, p := range ps {
		i, ok := byPattern[p.Pattern]
		if !ok {
			byPattern[p.Pattern] = len(out)
			out = append(out, p)
			continue
		}
		q := &out[i]
		q.Total += p.Total
		counts := map[int64]float64{}
		for _, s := range append(q.Samples, p.Samples...) {
			counts[s.T] += s.V
		}
		q.Samples = q.Samples[:0]
		for t, v := range counts {
			q.Samples = append(q.Samples, Point{T: t, V: v})
		}
		slices.SortFunc(q.Samples, func(a, b Point) int { return cmp.Compare(a.T, b.T) })
	}
	return out
}
