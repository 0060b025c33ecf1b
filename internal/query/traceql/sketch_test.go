package traceql

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// TestSketchAccuracy holds the sketch to its promise over several
// distributions: the q-quantile it answers is within sketchAlpha
// (relatively) of the value Quantile ranks at q.
func TestSketchAccuracy(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	dists := map[string]func() float64{
		"lognormal durations": func() float64 { return math.Exp(r.NormFloat64()*2 - 6) },
		"uniform":             func() float64 { return r.Float64() * 1000 },
		"signed with zeros": func() float64 {
			if r.IntN(10) == 0 {
				return 0
			}
			return r.NormFloat64() * 50
		},
		"few distinct": func() float64 { return float64(r.IntN(4)) },
	}
	for name, next := range dists {
		for _, n := range []int{1, 2, 17, 1000, 20000} {
			vals := make([]float64, n)
			var sk sketch
			for i := range vals {
				vals[i] = next()
				sk.add(vals[i])
			}
			slices.Sort(vals)
			for _, q := range []float64{0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1} {
				want := vals[int(math.Floor(q*float64(n-1)))]
				got := sk.quantile(q)
				require.InDelta(t, want, got, sketchAlpha*math.Abs(want)+1e-12, "%s n=%d q=%v", name, n, q)
			}
		}
	}
	require.True(t, math.IsNaN((&sketch{}).quantile(0.5)), "no values, no quantile")
}

// TestSketchBounded adds magnitudes across float64's whole range: a side
// keeps at most sketchMaxBuckets buckets, the largest stay accurate, and
// infinities and NaN neither panic nor widen it.
func TestSketchBounded(t *testing.T) {
	var sk sketch
	for _, v := range []float64{1e-300, 5e-324, 1e300, math.Inf(1), math.Inf(-1), -1e-300, math.NaN(), 1, 2, 3} {
		sk.add(v)
	}
	r := rand.New(rand.NewPCG(7, 8))
	for range 10000 {
		sk.add(math.Exp(r.Float64()*1400 - 700))
	}
	require.LessOrEqual(t, len(sk.pos.counts), sketchMaxBuckets)
	require.LessOrEqual(t, len(sk.neg.counts), sketchMaxBuckets)
	require.Equal(t, float64(10009), sk.n, "NaN is not counted")
	require.InDelta(t, math.MaxFloat64, sk.quantile(1), sketchAlpha*math.MaxFloat64, "the largest magnitude keeps its bucket")
	require.Less(t, sk.quantile(0), -1e299)
}

// TestQuantileSketched runs quantile_over_time with so low a bound on
// exact values that the query folds into sketches part way through: its
// memory stops growing with its spans (values held stay at the bound),
// and every sample stays within the sketch's accuracy of the exact answer.
func TestQuantileSketched(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	svc := []*storage.Resource{
		{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str("a")}}},
		{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str("b")}}},
	}
	var spans []storage.Span
	for i := range 20000 {
		start := int64(i) * int64(time.Millisecond)
		spans = append(spans, storage.Span{TraceID: storage.TraceID{byte(i), byte(i >> 8)}, SpanID: storage.SpanID{byte(i), byte(i >> 8)},
			StartUnixNano: start, EndUnixNano: start + int64(math.Exp(r.NormFloat64()+12)), Resource: svc[i%2]})
	}
	q, err := Parse(`{ } | quantile_over_time(duration, .5, .9, .99) by (resource.service.name)`)
	require.NoError(t, err)
	req := MetricsRequest{Query: q, Start: 0, End: 20 * int64(time.Second), Step: 2 * int64(time.Second)}
	exact, err := Metrics(context.Background(), &memQuerier{spans: spans}, req)
	require.NoError(t, err)

	defer func(n int) { maxExactValues = n }(maxExactValues)
	maxExactValues = 500
	sketched, err := Metrics(context.Background(), &memQuerier{spans: spans}, req)
	require.NoError(t, err)
	require.Len(t, sketched.Series, len(exact.Series))
	for i, s := range exact.Series {
		require.Equal(t, s.Labels, sketched.Series[i].Labels)
		require.Len(t, sketched.Series[i].Samples, len(s.Samples))
		for k, p := range s.Samples {
			got := sketched.Series[i].Samples[k]
			require.Equal(t, p.TimestampMs, got.TimestampMs)
			// Exact interpolates between neighbouring ranks, which on
			// 1,000 values a step lie far closer than the sketch's width.
			require.InEpsilon(t, p.Value, got.Value, 2*sketchAlpha, "%v at %d", s.Labels, p.TimestampMs)
		}
	}

	// The accumulator itself: folded once past the bound, no values kept.
	m := q.Metrics
	acc := newMetricsAcc(m, 0, req.Step, 10, 0, 0)
	one := newSingle()
	for i := range spans {
		acc.add(one.with(&spans[i]), 0)
	}
	require.True(t, acc.sketched)
	require.Equal(t, maxExactValues+1, acc.held, "values stop being held once folded")
	for _, s := range acc.series {
		require.Nil(t, s.values)
		require.NotNil(t, s.sketches)
	}
}

// TestSketchSlotsBudget spreads each step's values over many magnitudes,
// so that the folded sketches hold more buckets than the values did:
// the query counts every bucket slot they take, and past maxSketchSlots
// it fails with ErrTooManyValues instead of growing with steps times
// series.
func TestSketchSlotsBudget(t *testing.T) {
	var spans []storage.Span
	for i := range 4000 {
		start := int64(i) * int64(10*time.Millisecond)
		dur := int64(1) << (i % 40) // 1 ns to 9 minutes within each step
		spans = append(spans, storage.Span{TraceID: storage.TraceID{byte(i), byte(i >> 8)}, SpanID: storage.SpanID{byte(i), byte(i >> 8)},
			StartUnixNano: start, EndUnixNano: start + dur})
	}
	q, err := Parse(`{ } | quantile_over_time(duration, .99)`)
	require.NoError(t, err)
	defer func(e, s int) { maxExactValues, maxSketchSlots = e, s }(maxExactValues, maxSketchSlots)
	maxExactValues = 100

	acc := newMetricsAcc(q.Metrics, 0, int64(time.Second), 40, 0, 0)
	one := newSingle()
	for i := range spans {
		acc.add(one.with(&spans[i]), 0)
	}
	require.NoError(t, acc.tooMany)
	held := 0
	for _, s := range acc.series {
		for _, sk := range s.sketches {
			if sk != nil {
				held += len(sk.pos.counts) + len(sk.neg.counts)
			}
		}
	}
	require.Equal(t, held, acc.slots, "every slot is counted")
	require.Greater(t, held, 4000, "wide steps take more slots than their values")

	maxSketchSlots = held / 2
	req := MetricsRequest{Query: q, Start: 0, End: int64(40 * time.Second), Step: int64(time.Second)}
	_, err = Metrics(context.Background(), &memQuerier{spans: spans}, req)
	require.ErrorIs(t, err, ErrTooManyValues)
	maxSketchSlots = held
	_, err = Metrics(context.Background(), &memQuerier{spans: spans}, req)
	require.NoError(t, err)
}
