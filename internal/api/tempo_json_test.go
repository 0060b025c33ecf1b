package api

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// encodingJSON is what writeJSON writes for a metrics response.
func encodingJSON(t testing.TB, series []tempoSeries, m searchMetrics) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(true)
	require.NoError(t, enc.Encode(map[string]any{"series": series, "metrics": m}))
	return buf.Bytes()
}

var jsonStrings = []string{"", "checkout", "GET /api/cart", `a"b\c`, "<script>&amp;</script>", "tab\there\nnew\rline", "\x00\x01\x1f\x7f",
	"héllo wörld", "日本語", "\u2028\u2029", "bad \xff\xfe utf8", "trace:id", "{ } | rate()"}

var jsonFloats = []float64{0, math.Copysign(0, -1), 1, -1, 0.5, 1.0 / 3, 123.33333333333333, 1e-6, 9.99e-7, 1e-7, 1.5e-300,
	1e20, 1e21, 12345678901234567890123.0, -2.5e-8, math.MaxFloat64, math.SmallestNonzeroFloat64, 100}

func randomSeries(r *rand.Rand) ([]tempoSeries, searchMetrics) {
	str := func() string { return jsonStrings[r.IntN(len(jsonStrings))] }
	flt := func() float64 {
		if r.IntN(3) == 0 {
			return r.NormFloat64() * math.Pow(10, float64(r.IntN(60)-30))
		}
		return jsonFloats[r.IntN(len(jsonFloats))]
	}
	kvs := func() []keyValue {
		n := r.IntN(4)
		if n == 3 {
			return nil
		}
		out := make([]keyValue, 0, n)
		for range n {
			var v anyValue
			switch r.IntN(4) {
			case 0:
				s := str()
				v.StringValue = &s
			case 1:
				s := strconv.FormatInt(r.Int64()-r.Int64(), 10)
				v.IntValue = &s
			case 2:
				f := flt()
				v.DoubleValue = &f
			default:
				b := r.IntN(2) == 0
				v.BoolValue = &b
			}
			out = append(out, keyValue{Key: str(), Value: v})
		}
		return out
	}
	var series []tempoSeries
	if r.IntN(8) > 0 {
		series = []tempoSeries{}
	}
	for range r.IntN(4) {
		s := tempoSeries{Labels: kvs()}
		for range r.IntN(5) {
			s.Samples = append(s.Samples, tempoSample{TimestampMs: strconv.FormatInt(r.Int64N(1<<45), 10), Value: flt()})
		}
		for range r.IntN(3) {
			s.Exemplars = append(s.Exemplars, tempoExemplar{Labels: kvs(), Value: flt(), TimestampMs: strconv.FormatInt(r.Int64N(1<<45), 10)})
		}
		if r.IntN(2) == 0 {
			s.PromLabels = str()
		}
		if r.IntN(3) == 0 {
			v := flt()
			s.Value = &v
		}
		series = append(series, s)
	}
	m := searchMetrics{InspectedBytes: strconv.Itoa(r.IntN(1 << 20)), CompletedJobs: 1, TotalJobs: 1}
	if r.IntN(2) == 0 {
		m.InspectedTraces = r.IntN(1000)
		m.InspectedSpans = strconv.Itoa(r.IntN(1 << 20))
	}
	return series, m
}

// TestTempoMetricsJSON holds the metrics encoder to encoding/json's
// bytes over random responses: every field, omitted ones, nil slices,
// strings that need escaping (HTML, control characters, bad UTF-8) and
// floats at the edges of the decimal and exponent forms.
func TestTempoMetricsJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		series, m := randomSeries(r)
		got, ok := appendTempoMetrics(nil, series, m)
		require.True(t, ok)
		want := encodingJSON(t, series, m)
		require.Equal(t, string(want), string(got), "case %d", i)
	}
}

// A value JSON cannot hold is reported, so the response falls back to
// encoding/json's handling of it.
func TestTempoMetricsJSONNotFinite(t *testing.T) {
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		v := f
		for _, series := range [][]tempoSeries{
			{{Labels: []keyValue{}, Samples: []tempoSample{{TimestampMs: "1", Value: f}}}},
			{{Labels: []keyValue{}, Value: &v}},
			{{Labels: []keyValue{{Key: "k", Value: anyValue{DoubleValue: &v}}}}},
		} {
			_, ok := appendTempoMetrics(nil, series, searchMetrics{})
			require.False(t, ok, "%v", f)
		}
	}
}

func FuzzTempoMetricsJSON(f *testing.F) {
	for _, s := range jsonStrings {
		f.Add(s, 1.5, int64(1700000000000))
	}
	for _, v := range jsonFloats {
		f.Add("svc", v, int64(0))
	}
	f.Fuzz(func(t *testing.T, s string, v float64, ts int64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		sv := s
		series := []tempoSeries{{
			Labels:     []keyValue{{Key: s, Value: anyValue{StringValue: &sv}}, {Key: "x", Value: anyValue{DoubleValue: &v}}},
			Samples:    []tempoSample{{TimestampMs: strconv.FormatInt(ts, 10), Value: v}},
			Exemplars:  []tempoExemplar{{Labels: []keyValue{}, Value: v, TimestampMs: s}},
			PromLabels: s,
		}}
		m := searchMetrics{InspectedBytes: s, InspectedSpans: s, CompletedJobs: 1, TotalJobs: 1}
		got, ok := appendTempoMetrics(nil, series, m)
		if !ok {
			t.Fatal("finite values refused")
		}
		if want := encodingJSON(t, series, m); !bytes.Equal(want, got) {
			t.Fatalf("\nwant %s\ngot  %s", want, got)
		}
	})
}

// BenchmarkTempoMetricsJSON encodes a rate() by service of 11 series over
// 288 steps with 100 exemplars each, the size of bench/sidebyside's
// metrics response (400 KB).
func BenchmarkTempoMetricsJSON(b *testing.B) {
	var series []tempoSeries
	for i := range 11 {
		svc := "service-" + strconv.Itoa(i)
		s := tempoSeries{Labels: []keyValue{{Key: "resource.service.name", Value: anyValue{StringValue: &svc}}}, PromLabels: `{resource.service.name="` + svc + `"}`}
		for k := range 288 {
			s.Samples = append(s.Samples, tempoSample{TimestampMs: strconv.Itoa(1796414580000 + 3000*k), Value: 100 + float64(k)/3})
		}
		for k := range 100 {
			id, span := "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
			s.Exemplars = append(s.Exemplars, tempoExemplar{Labels: []keyValue{{Key: "trace:id", Value: anyValue{StringValue: &id}}, {Key: "span:id", Value: anyValue{StringValue: &span}}}, Value: float64(k), TimestampMs: strconv.Itoa(1796414580000 + 3000*k)})
		}
		series = append(series, s)
	}
	m := searchMetrics{InspectedBytes: "0", InspectedSpans: "0", CompletedJobs: 1, TotalJobs: 1}
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			encodingJSON(b, series, m)
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 64<<10)
		for range b.N {
			buf, _ = appendTempoMetrics(buf[:0], series, m)
		}
	})
}
