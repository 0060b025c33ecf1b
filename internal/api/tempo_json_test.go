package api

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/query/traceql"
	"github.com/sightlinehq/sightline/internal/store/storage"
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
	1e20, 1e21, 12345678901234567890123.0, -2.5e-8, math.MaxFloat64, math.SmallestNonzeroFloat64, 100,
	1<<53 - 1, 1 << 53, -(1<<53 - 1), 1<<53 + 2, 1e15, -123456, 695}

func randomSeries(r *rand.Rand) ([]traceql.Series, bool, searchMetrics) {
	str := func() string { return jsonStrings[r.IntN(len(jsonStrings))] }
	flt := func() float64 {
		switch r.IntN(4) {
		case 0:
			return r.NormFloat64() * math.Pow(10, float64(r.IntN(60)-30))
		case 1: // whole numbers, which take a path of their own
			return float64(r.Int64N(1<<r.IntN(62)+1) - r.Int64N(1<<r.IntN(62)+1))
		}
		return jsonFloats[r.IntN(len(jsonFloats))]
	}
	labels := func() []traceql.Label {
		var out []traceql.Label
		for range r.IntN(4) {
			var v traceql.Static
			switch r.IntN(6) {
			case 0:
				v = traceql.NewString(str())
			case 1:
				v = traceql.NewInt(r.Int64() - r.Int64())
			case 2:
				v = traceql.NewFloat(flt())
			case 3:
				v = traceql.NewBool(r.IntN(2) == 0)
			case 4:
				v = traceql.NewDuration(r.Int64N(1 << 40))
			default:
				v = traceql.NewStatus(storage.StatusCode(r.IntN(3)))
			}
			out = append(out, traceql.Label{Key: str(), Value: v})
		}
		return out
	}
	var series []traceql.Series
	for range r.IntN(4) {
		s := traceql.Series{Labels: labels()}
		for range r.IntN(5) {
			s.Samples = append(s.Samples, traceql.Sample{TimestampMs: r.Int64N(1<<45) - 1<<44, Value: flt()})
		}
		for range r.IntN(3) {
			s.Exemplars = append(s.Exemplars, traceql.Exemplar{Labels: labels(), Value: flt(), TimestampMs: r.Int64N(1 << 45)})
		}
		series = append(series, s)
	}
	m := searchMetrics{InspectedBytes: strconv.Itoa(r.IntN(1 << 20)), CompletedJobs: 1, TotalJobs: 1}
	if r.IntN(2) == 0 {
		m.InspectedTraces = r.IntN(1000)
		m.InspectedSpans = str()
	}
	return series, r.IntN(4) == 0, m
}

// TestTempoMetricsJSON holds the metrics encoder to encoding/json's
// bytes for the same series as structs, over random responses: every
// field, omitted ones, empty slices, instant and range queries, strings
// that need escaping (quotes, HTML, control characters, bad UTF-8) and
// floats at the edges of the decimal and exponent forms.
func TestTempoMetricsJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		series, instant, m := randomSeries(r)
		got, ok := appendMetricsResult(nil, series, instant, m)
		require.True(t, ok)
		want := encodingJSON(t, toTempoSeries(series, instant), m)
		require.Equal(t, string(want), string(got), "case %d", i)
	}
}

// TestMsFormatter holds msFormatter to strconv.AppendInt over runs of
// timestamps one formatter carries its state through: a series' steps,
// the edges of its six-digit split, and random values in any order.
func TestMsFormatter(t *testing.T) {
	vals := []int64{0, 1, 9, 10, 999_999, 1_000_000, 1_000_001, 1_999_999, 2_000_000, 10_000_000, -1, -999_999, -1_000_000, -1_000_001, math.MinInt64, math.MaxInt64, math.MaxInt64 - 1}
	for k := range 300 {
		vals = append(vals, 1796510953000+int64(k)*1000, 1796510953000+int64(k)*333_333)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 3000 {
		vals = append(vals, r.Int64N(1<<62), -r.Int64N(1<<62), r.Int64N(1e7), 1_000_000*r.Int64N(1e7)+r.Int64N(3)-1)
	}
	var f msFormatter
	var got, want []byte
	for _, v := range vals {
		got, want = f.append(got[:0], v), strconv.AppendInt(want[:0], v, 10)
		require.Equal(t, string(want), string(got), "%d", v)
	}
}

// BenchmarkMsFormatter formats a series' 288 step timestamps.
func BenchmarkMsFormatter(b *testing.B) {
	buf := make([]byte, 0, 8<<10)
	b.Run("AppendInt", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			buf = buf[:0]
			for k := range int64(288) {
				buf = strconv.AppendInt(buf, 1796510953000+k*1000, 10)
			}
		}
	})
	b.Run("msFormatter", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			buf = buf[:0]
			var f msFormatter
			for k := range int64(288) {
				buf = f.append(buf, 1796510953000+k*1000)
			}
		}
	})
}

// A value JSON cannot hold is reported, so the response falls back to
// encoding/json's handling of it.
func TestTempoMetricsJSONNotFinite(t *testing.T) {
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		for _, c := range []struct {
			series  []traceql.Series
			instant bool
		}{
			{[]traceql.Series{{Samples: []traceql.Sample{{TimestampMs: 1, Value: f}}}}, false},
			{[]traceql.Series{{Samples: []traceql.Sample{{TimestampMs: 1, Value: f}}}}, true},
			{[]traceql.Series{{Exemplars: []traceql.Exemplar{{Value: f}}}}, false},
			{[]traceql.Series{{Labels: []traceql.Label{{Key: "k", Value: traceql.NewFloat(f)}}}}, false},
		} {
			_, ok := appendMetricsResult(nil, c.series, c.instant, searchMetrics{})
			require.False(t, ok, "%v %+v", f, c)
		}
	}
}

// An appended response says its length, so that it is not sent in
// chunks; one that falls back to encoding/json (a value JSON cannot
// hold) is the same response as before, streamed.
func TestTempoMetricsContentLength(t *testing.T) {
	series := []traceql.Series{{Labels: []traceql.Label{{Key: "k", Value: traceql.NewString("v")}},
		Samples: []traceql.Sample{{TimestampMs: 1700000000000, Value: 2.5}}}}
	w := httptest.NewRecorder()
	writeTempoMetrics(w, series, false, searchMetrics{InspectedBytes: "1"})
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, strconv.Itoa(w.Body.Len()), w.Header().Get("Content-Length"))
	require.True(t, json.Valid(w.Body.Bytes()))

	series[0].Samples[0].Value = math.Inf(1)
	w = httptest.NewRecorder()
	writeTempoMetrics(w, series, false, searchMetrics{InspectedBytes: "1"})
	require.Equal(t, http.StatusOK, w.Code)
	require.Empty(t, w.Header().Get("Content-Length"), "the fallback streams")
	require.True(t, json.Valid(w.Body.Bytes()))
}

// A value a client may send that JSON has no number for (NaN, ±Inf, as
// an attribute's double) is written as protobuf's JSON mapping writes it,
// as Tempo does, in metrics and search responses alike; before, the
// response was a 200 with no body.
func TestTempoNonFiniteValues(t *testing.T) {
	for _, c := range []struct {
		f    float64
		want string
	}{{math.NaN(), `"NaN"`}, {math.Inf(1), `"Infinity"`}, {math.Inf(-1), `"-Infinity"`}} {
		label := []traceql.Label{{Key: "x", Value: traceql.NewFloat(c.f)}}
		w := httptest.NewRecorder()
		writeTempoMetrics(w, []traceql.Series{{Labels: label,
			Samples:   []traceql.Sample{{TimestampMs: 1000, Value: c.f}},
			Exemplars: []traceql.Exemplar{{Labels: label, Value: c.f, TimestampMs: 1000}}}}, false, searchMetrics{InspectedBytes: "0"})
		require.Equal(t, http.StatusOK, w.Code)
		var m struct {
			Series []struct {
				Labels    []json.RawMessage                 `json:"labels"`
				Samples   []struct{ Value json.RawMessage } `json:"samples"`
				Exemplars []struct{ Value json.RawMessage } `json:"exemplars"`
			} `json:"series"`
		}
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &m), "%s", w.Body)
		require.Len(t, m.Series, 1)
		require.Equal(t, c.want, string(m.Series[0].Samples[0].Value))
		require.Equal(t, c.want, string(m.Series[0].Exemplars[0].Value))
		require.Equal(t, `{"key":"x","value":{"doubleValue":`+c.want+`}}`, string(m.Series[0].Labels[0]))

		w = httptest.NewRecorder()
		writeTempoSearch(w, []traceql.TraceResult{{Spansets: []traceql.ResultSpanset{{Matched: 1, Spans: []traceql.ResultSpan{{Name: "op", Attrs: label}}}}}}, searchMetrics{InspectedBytes: "0"})
		require.Equal(t, http.StatusOK, w.Code)
		require.True(t, json.Valid(w.Body.Bytes()), "%s", w.Body)
		require.Contains(t, w.Body.String(), `{"key":"x","value":{"doubleValue":`+c.want+`}}`)
	}
}

// writeJSON never sends a 200 it cannot follow with its body.
func TestWriteJSONRefusedValue(t *testing.T) {
	w := httptest.NewRecorder()
	writeJSON(w, http.StatusOK, map[string]any{"v": math.NaN()})
	require.Equal(t, http.StatusInternalServerError, w.Code)
	require.Contains(t, w.Body.String(), "encode response")
}

func FuzzTempoMetricsJSON(f *testing.F) {
	for _, s := range jsonStrings {
		f.Add(s, 1.5, int64(1700000000000))
	}
	for _, v := range append(jsonFloats, math.NaN(), math.Inf(1), math.Inf(-1)) {
		f.Add("svc", v, int64(0))
	}
	f.Fuzz(func(t *testing.T, s string, v float64, ts int64) {
		series := []traceql.Series{{
			Labels:    []traceql.Label{{Key: s, Value: traceql.NewString(s)}, {Key: "x", Value: traceql.NewFloat(v)}},
			Samples:   []traceql.Sample{{TimestampMs: ts, Value: v}},
			Exemplars: []traceql.Exemplar{{Labels: []traceql.Label{{Key: "trace:id", Value: traceql.NewString(s)}}, Value: v, TimestampMs: ts}},
		}}
		m := searchMetrics{InspectedBytes: s, InspectedSpans: s, CompletedJobs: 1, TotalJobs: 1}
		// Whatever the values, the response is a 200 of valid JSON.
		for _, instant := range []bool{false, true} {
			w := httptest.NewRecorder()
			writeTempoMetrics(w, series, instant, m)
			if w.Code != http.StatusOK || !json.Valid(w.Body.Bytes()) {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return // the appender leaves these to encoding/json's structs
		}
		for _, instant := range []bool{false, true} {
			got, ok := appendMetricsResult(nil, series, instant, m)
			if !ok {
				t.Fatal("finite values refused")
			}
			if want := encodingJSON(t, toTempoSeries(series, instant), m); !bytes.Equal(want, got) {
				t.Fatalf("\nwant %s\ngot  %s", want, got)
			}
		}
	})
}

// BenchmarkTempoMetricsJSON encodes a rate() by service of 11 series over
// 288 steps with 100 exemplars each, the size of bench/sidebyside's
// metrics response (400 KB): through structs and encoding/json, and
// straight from the series.
func BenchmarkTempoMetricsJSON(b *testing.B) {
	var series []traceql.Series
	for i := range 11 {
		svc := "service-" + strconv.Itoa(i)
		s := traceql.Series{Labels: []traceql.Label{{Key: "resource.service.name", Value: traceql.NewString(svc)}}}
		for k := range 288 {
			s.Samples = append(s.Samples, traceql.Sample{TimestampMs: int64(1796414580000 + 3000*k), Value: 100 + float64(k)/3})
		}
		for k := range 100 {
			s.Exemplars = append(s.Exemplars, traceql.Exemplar{Labels: []traceql.Label{
				{Key: "trace:id", Value: traceql.NewString("4bf92f3577b34da6a3ce929d0e0e4736")},
				{Key: "span:id", Value: traceql.NewString("00f067aa0ba902b7")},
			}, Value: float64(k), TimestampMs: int64(1796414580000 + 3000*k)})
		}
		series = append(series, s)
	}
	m := searchMetrics{InspectedBytes: "0", InspectedSpans: "0", CompletedJobs: 1, TotalJobs: 1}
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			encodingJSON(b, toTempoSeries(series, false), m)
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 64<<10)
		for range b.N {
			buf, _ = appendMetricsResult(buf[:0], series, false, m)
		}
	})
}

// searchJSON is what writeJSON writes for a search response.
func searchJSON(t testing.TB, traces []traceql.TraceResult, m searchMetrics) []byte {
	metas := []tempoTraceMeta{}
	for _, tr := range traces {
		metas = append(metas, toTempoMeta(tr))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(true)
	require.NoError(t, enc.Encode(tempoSearchResponse{Traces: metas, Metrics: m}))
	return buf.Bytes()
}

func randomTraces(r *rand.Rand) []traceql.TraceResult {
	str := func() string { return jsonStrings[r.IntN(len(jsonStrings))] }
	labels := func() []traceql.Label {
		series, _, _ := randomSeries(r)
		for _, s := range series {
			if len(s.Labels) > 0 {
				return s.Labels
			}
		}
		return nil
	}
	var out []traceql.TraceResult
	for range r.IntN(4) {
		var id storage.TraceID
		for k := range id[r.IntN(len(id)):] {
			id[k] = byte(r.IntN(256))
		}
		t := traceql.TraceResult{TraceID: id, RootService: str(), RootName: str(), Start: r.Int64() - r.Int64(), Duration: r.Int64N(1 << 40)}
		for range r.IntN(3) {
			ss := traceql.ResultSpanset{Matched: r.IntN(50), Attrs: labels()}
			for range r.IntN(4) {
				var sid storage.SpanID
				for k := range sid {
					sid[k] = byte(r.IntN(256))
				}
				ss.Spans = append(ss.Spans, traceql.ResultSpan{SpanID: sid, Name: str(), Start: r.Int64(), Duration: r.Int64N(1 << 40), Attrs: labels()})
			}
			t.Spansets = append(t.Spansets, ss)
		}
		if n := r.IntN(4); n > 0 {
			t.ServiceStats = map[string]traceql.ServiceStats{}
			for range n {
				t.ServiceStats[str()] = traceql.ServiceStats{SpanCount: r.IntN(100), ErrorCount: r.IntN(3)}
			}
		}
		out = append(out, t)
	}
	return out
}

// TestTempoSearchJSON holds the search encoder to encoding/json's bytes
// for the same traces as toTempoMeta's structs: trace IDs with leading
// zero bytes, omitted names, attributes and spansets, service stats in
// key order, and strings that need escaping.
func TestTempoSearchJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 3000 {
		traces := randomTraces(r)
		_, _, m := randomSeries(r)
		got, ok := appendSearchResult(nil, traces, m)
		require.True(t, ok)
		require.Equal(t, string(searchJSON(t, traces, m)), string(got), "case %d", i)
	}
	// A float JSON cannot hold is reported, for encoding/json's handling.
	for _, f := range []float64{math.NaN(), math.Inf(1)} {
		nan := []traceql.Label{{Key: "x", Value: traceql.NewFloat(f)}}
		for _, tr := range []traceql.TraceResult{
			{Spansets: []traceql.ResultSpanset{{Attrs: nan}}},
			{Spansets: []traceql.ResultSpanset{{Spans: []traceql.ResultSpan{{Attrs: nan}}}}},
		} {
			_, ok := appendSearchResult(nil, []traceql.TraceResult{tr}, searchMetrics{})
			require.False(t, ok)
		}
	}
}

func FuzzTempoSearchJSON(f *testing.F) {
	for _, s := range jsonStrings {
		f.Add(s, int64(1700000000000000000), 2.5)
	}
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		f.Add("x", int64(0), v)
	}
	f.Fuzz(func(t *testing.T, s string, ts int64, v float64) {
		attrs := []traceql.Label{{Key: s, Value: traceql.NewString(s)}, {Key: "x", Value: traceql.NewFloat(v)}}
		traces := []traceql.TraceResult{{
			RootService: s, RootName: s, Start: ts, Duration: ts,
			Spansets:     []traceql.ResultSpanset{{Spans: []traceql.ResultSpan{{Name: s, Start: ts, Attrs: attrs}}, Matched: 1, Attrs: attrs}},
			ServiceStats: map[string]traceql.ServiceStats{s: {SpanCount: 1}, "b": {SpanCount: 2, ErrorCount: 1}},
		}}
		m := searchMetrics{InspectedBytes: s, InspectedSpans: s, CompletedJobs: 1, TotalJobs: 1}
		// Whatever the values, the response is a 200 of valid JSON.
		w := httptest.NewRecorder()
		writeTempoSearch(w, traces, m)
		if w.Code != http.StatusOK || !json.Valid(w.Body.Bytes()) {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return // the appender leaves these to encoding/json's structs
		}
		got, ok := appendSearchResult(nil, traces, m)
		if !ok {
			t.Fatal("finite values refused")
		}
		if want := searchJSON(t, traces, m); !bytes.Equal(want, got) {
			t.Fatalf("\nwant %s\ngot  %s", want, got)
		}
	})
}

// BenchmarkTempoSearchJSON encodes a limit-20 answer of
// `{ status = error }` as bench/sidebyside gets it (about 22 KB): 20
// traces of three matching spans each with their status, and the
// services of each trace.
func BenchmarkTempoSearchJSON(b *testing.B) {
	var traces []traceql.TraceResult
	for i := range 20 {
		t := traceql.TraceResult{TraceID: storage.TraceID{byte(i), 0xbf, 0x92, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47},
			RootService: "frontend", RootName: "GET /api/cart", Start: 1796414580000000000 + int64(i)*1e6, Duration: 12345678,
			ServiceStats: map[string]traceql.ServiceStats{}}
		ss := traceql.ResultSpanset{Matched: 3}
		for k := range 3 {
			ss.Spans = append(ss.Spans, traceql.ResultSpan{SpanID: storage.SpanID{byte(k), 1, 2, 3, 4, 5, 6, 7}, Name: "oteldemo.CartService/GetCart",
				Start: t.Start + int64(k)*1000, Duration: 2345678, Attrs: []traceql.Label{{Key: "status", Value: traceql.NewStatus(storage.StatusError)}}})
		}
		t.Spansets = []traceql.ResultSpanset{ss}
		for _, svc := range []string{"frontend", "cart", "checkout", "payment", "currency"} {
			t.ServiceStats[svc] = traceql.ServiceStats{SpanCount: 3, ErrorCount: 1}
		}
		traces = append(traces, t)
	}
	m := searchMetrics{InspectedTraces: 20, InspectedBytes: "1153433", InspectedSpans: "415", CompletedJobs: 1, TotalJobs: 1}
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			searchJSON(b, traces, m)
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 64<<10)
		for range b.N {
			buf, _ = appendSearchResult(buf[:0], traces, m)
		}
	})
}
