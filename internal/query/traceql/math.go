package traceql

import (
	"context"
	"math"
	"slices"
	"strings"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// metricsMath evaluates metrics arithmetic: each distinct metrics query of
// the expression runs once over the request's range and steps (so
// (({ } | rate()) * 2) / ({ } | rate()) reads the data once for both),
// and the series are combined bottom-up. Combining never changes a
// query's series in place, since one result can feed several operands.
func metricsMath(ctx context.Context, sq storage.Querier, req MetricsRequest) (*MetricsResult, error) {
	res := &MetricsResult{}
	done := map[string][]Series{}
	var run func(MetricsExpr) ([]Series, error)
	run = func(e MetricsExpr) ([]Series, error) {
		switch x := e.(type) {
		case *MetricsLeaf:
			key := x.Query.String()
			if s, ok := done[key]; ok {
				return s, nil
			}
			sub := req
			sub.Query = x.Query
			r, err := Metrics(ctx, sq, sub)
			if err != nil {
				return nil, err
			}
			res.InspectedTraces += r.InspectedTraces
			res.InspectedSpans += r.InspectedSpans
			done[key] = r.Series
			return r.Series, nil
		case *MetricsScalarOp:
			in, err := run(x.Expr)
			if err != nil {
				return nil, err
			}
			return scalarSeries(x, in), nil
		case *MetricsBinary:
			l, err := run(x.LHS)
			if err != nil {
				return nil, err
			}
			r, err := run(x.RHS)
			if err != nil {
				return nil, err
			}
			return binarySeries(x.Op, l, r, req.Exemplars), nil
		}
		return nil, nil
	}
	series, err := run(req.Query.Math)
	if err != nil {
		return nil, err
	}
	sortSeries(series)
	res.Series = secondStage(req.Query.Second, series)
	capExemplars(res.Series, req.Exemplars)
	return res, nil
}

// seriesArith applies op to two sample values. Division by zero has no
// value (NaN), and a sample without a value is left out of the result, as
// a step without spans is.
func seriesArith(op string, l, r float64) float64 {
	switch op {
	case "+":
		return l + r
	case "-":
		return l - r
	case "*":
		return l * r
	case "/":
		if r == 0 {
			return math.NaN()
		}
		return l / r
	}
	return math.NaN()
}

func scalarSeries(x *MetricsScalarOp, in []Series) []Series {
	apply := func(v float64) float64 {
		if x.ScalarLeft {
			return seriesArith(x.Op, x.Value, v)
		}
		return seriesArith(x.Op, v, x.Value)
	}
	out := make([]Series, 0, len(in))
	for _, s := range in {
		o := Series{Labels: s.Labels}
		for _, p := range s.Samples {
			if v := apply(p.Value); !math.IsNaN(v) {
				o.Samples = append(o.Samples, Sample{TimestampMs: p.TimestampMs, Value: v})
			}
		}
		for _, e := range s.Exemplars {
			if v := apply(e.Value); !math.IsNaN(v) {
				e.Value = v
				o.Exemplars = append(o.Exemplars, e)
			}
		}
		if len(o.Samples) > 0 {
			out = append(out, o)
		}
	}
	return out
}

// matchKey identifies a series for matching: its labels but __name__, in
// key order, so that by (a, b) on one side meets by (b, a) on the other.
// The empty key is a series without labels, which matches every series.
func matchKey(ls []Label) string {
	kept := make([]Label, 0, len(ls))
	for _, l := range ls {
		if l.Key != "__name__" {
			kept = append(kept, l)
		}
	}
	slices.SortFunc(kept, func(a, b Label) int { return strings.Compare(a.Key, b.Key) })
	return labelsKey(kept)
}

// binarySeries combines two sets of series as Tempo does: series meet on
// their labels (one-to-one), and a side that holds a series without
// labels, such as an ungrouped rate(), has it applied to every series of
// the other side. Series that meet nothing are dropped, as in PromQL.
// Samples meet on their timestamp; both sides share the request's steps.
func binarySeries(op string, lhs, rhs []Series, maxExemplars int) []Series {
	index := func(ss []Series) map[string]*Series {
		m := make(map[string]*Series, len(ss))
		for i := range ss {
			m[matchKey(ss[i].Labels)] = &ss[i]
		}
		return m
	}
	li, ri := index(lhs), index(rhs)
	// The side that drives is the right one, unless it fans out.
	drive, driveLeft := rhs, false
	if _, ok := ri[""]; ok {
		drive, driveLeft = lhs, true
	}
	lookup := func(m map[string]*Series, k string) (*Series, bool) {
		if s, ok := m[k]; ok {
			return s, false
		}
		s := m[""]
		return s, true
	}
	out := make([]Series, 0, len(drive))
	for _, d := range drive {
		k := matchKey(d.Labels)
		l, lFan := lookup(li, k)
		r, rFan := lookup(ri, k)
		if driveLeft {
			l, lFan = &d, false
		} else {
			r, rFan = &d, false
		}
		if l == nil || r == nil {
			continue
		}
		o := Series{Labels: mergeLabels(op, l.Labels, r.Labels)}
		rv := make(map[int64]float64, len(r.Samples))
		for _, p := range r.Samples {
			rv[p.TimestampMs] = p.Value
		}
		for _, p := range l.Samples {
			b, ok := rv[p.TimestampMs]
			if !ok {
				continue
			}
			if v := seriesArith(op, p.Value, b); !math.IsNaN(v) {
				o.Samples = append(o.Samples, Sample{TimestampMs: p.TimestampMs, Value: v})
			}
		}
		// Exemplars come from the side(s) the series is about: a fanned-out
		// series contributes its own only when both sides fan out.
		if !lFan || rFan {
			o.Exemplars = append(o.Exemplars, l.Exemplars...)
		}
		if !rFan || lFan {
			o.Exemplars = append(o.Exemplars, r.Exemplars...)
		}
		if maxExemplars >= 0 && len(o.Exemplars) > maxExemplars {
			o.Exemplars = o.Exemplars[:maxExemplars]
		}
		if len(o.Samples) > 0 {
			out = append(out, o)
		}
	}
	return out
}

// mergeLabels is the left side's labels and those of the right it lacks.
// __name__ tells what was computed: "(rate / count_over_time)" when both
// sides have one, and nothing otherwise.
func mergeLabels(op string, l, r []Label) []Label {
	out := make([]Label, 0, len(l)+len(r))
	var ln, rn string
	for _, x := range l {
		if x.Key == "__name__" {
			ln = x.Value.Text()
			continue
		}
		out = append(out, x)
	}
	for _, x := range r {
		if x.Key == "__name__" {
			rn = x.Value.Text()
			continue
		}
		if !slices.ContainsFunc(out, func(y Label) bool { return y.Key == x.Key }) {
			out = append(out, x)
		}
	}
	if ln != "" && rn != "" {
		out = append([]Label{{Key: "__name__", Value: NewString("(" + ln + " " + op + " " + rn + ")")}}, out...)
	}
	return out
}
