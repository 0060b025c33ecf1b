package traceql

import "math"

// quantile_over_time answers exactly from every value while a query holds
// at most maxExactValues of them; past that, each step's values are
// folded into a sketch and later ones added to it, so that a p99 over a
// day of spans holds buckets, not a float per span (a hundred million
// spans, what one query may scan, were 800 MB). The sketch keeps counts
// in logarithmic buckets, as DDSketch does: a quantile it answers lies
// within sketchAlpha of the true value, relatively. Tempo answers every
// quantile from power-of-two buckets.
var maxExactValues = 1 << 20 // a variable for tests

// maxSketchSlots bounds the buckets a query's sketches hold together
// (8 bytes each): a step's sketch spans the magnitudes of its values, up
// to sketchMaxBuckets a sign, so steps times series of them could pass
// what the exact values held. Past it the query fails with
// ErrTooManyValues, as one with too many series does.
var maxSketchSlots = 1 << 22 // a variable for tests

const (
	sketchAlpha = 0.01
	// sketchMaxBuckets bounds a side's buckets; past it the lowest
	// magnitudes share one. Values from 1 ns to a day in seconds take
	// about 1,600.
	sketchMaxBuckets = 2048
)

var (
	sketchGamma       = (1 + sketchAlpha) / (1 - sketchAlpha)
	sketchInvLogGamma = 1 / math.Log(sketchGamma)
)

// sketch counts values in buckets of relative width sketchAlpha: positive
// and negative magnitudes apart, and zeros.
type sketch struct {
	pos, neg sketchBuckets
	zeros    float64
	n        float64
}

// sketchBuckets are dense counts by key from lo: key k holds magnitudes in
// (gamma^(k-1), gamma^k].
type sketchBuckets struct {
	lo     int
	counts []float64
}

// add counts v and returns how many bucket slots the sketch grew by.
func (s *sketch) add(v float64) int {
	before := len(s.pos.counts) + len(s.neg.counts)
	switch {
	case math.IsNaN(v):
		return 0 // a NaN has no rank; the exact path sorts it first
	case v > 0:
		s.pos.add(sketchKey(v))
	case v < 0:
		s.neg.add(sketchKey(-v))
	default:
		s.zeros++
	}
	s.n++
	return len(s.pos.counts) + len(s.neg.counts) - before
}

// sketchKey is the bucket of magnitude v > 0; infinities and magnitudes
// past float64's range share the end buckets.
func sketchKey(v float64) int {
	v = min(max(v, math.SmallestNonzeroFloat64), math.MaxFloat64)
	return int(math.Ceil(math.Log(v) * sketchInvLogGamma))
}

// sketchValue is the value that stands for bucket k: within sketchAlpha
// of every magnitude in it.
func sketchValue(k int) float64 {
	v := math.Exp(float64(k)/sketchInvLogGamma + math.Log(2/(sketchGamma+1)))
	// The bucket of magnitudes up to math.MaxFloat64 reaches past it.
	return min(v, math.MaxFloat64)
}

func (b *sketchBuckets) add(k int) {
	if len(b.counts) == 0 {
		b.lo, b.counts = k, append(b.counts[:0], 0)
	}
	hi := b.lo + len(b.counts) - 1
	switch {
	case k > hi:
		if lo := k - sketchMaxBuckets + 1; lo > b.lo {
			b.fold(lo)
		}
		for b.lo+len(b.counts)-1 < k {
			b.counts = append(b.counts, 0)
		}
	case k < b.lo:
		// Past the bound, the lowest magnitudes share the lowest bucket.
		if k = max(k, hi-sketchMaxBuckets+1); k < b.lo {
			grown := make([]float64, hi-k+1)
			copy(grown[b.lo-k:], b.counts)
			b.lo, b.counts = k, grown
		}
	}
	b.counts[k-b.lo]++
}

// fold raises the lowest key to lo, adding the counts below it to lo's.
func (b *sketchBuckets) fold(lo int) {
	drop := min(lo-b.lo, len(b.counts))
	below := 0.0
	for _, c := range b.counts[:drop] {
		below += c
	}
	n := copy(b.counts, b.counts[drop:])
	b.counts = b.counts[:n]
	if n == 0 {
		b.counts = append(b.counts, 0)
	}
	b.lo = lo
	b.counts[0] += below
}

// quantile is the q-quantile as Quantile ranks it (rank q*(n-1)), from
// the bucket that rank falls in.
func (s *sketch) quantile(q float64) float64 {
	if s.n == 0 {
		return math.NaN()
	}
	rank := q * (s.n - 1)
	seen := 0.0
	// Negative values, from the largest magnitude down.
	for i := len(s.neg.counts) - 1; i >= 0; i-- {
		if seen += s.neg.counts[i]; seen > rank {
			return -sketchValue(s.neg.lo + i)
		}
	}
	if seen += s.zeros; seen > rank {
		return 0
	}
	for i, c := range s.pos.counts {
		if seen += c; seen > rank {
			return sketchValue(s.pos.lo + i)
		}
	}
	return sketchValue(s.pos.lo + len(s.pos.counts) - 1)
}
