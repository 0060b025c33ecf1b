package api

import (
	"encoding/hex"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/sightlinehq/sightline/internal/query/traceql"
)

// Tempo's metrics responses are large: a rate() by service over a few
// minutes is thousands of samples and up to 100 exemplars a series, and
// encoding/json's reflection over them took three quarters of a cached
// query's time; building the response's structs first (a string per
// timestamp, a pointer per label value) took half of what was left.
// appendMetricsResult appends the same bytes straight from the engine's
// series; a differential test (tempo_json_test.go) holds it to
// encoding/json's output of toTempoSeries, HTML escaping and float
// formatting included.

// responseBufs recycles response buffers: a cached rate() answers in tens
// of microseconds, and growing a fresh buffer to a few hundred KiB cost
// more than that. Buffers past maxPooledBuf are left to the collector, so
// that one huge response does not stay held.
var responseBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

const maxPooledBuf = 4 << 20

// writeAppended writes, as a 200 JSON response, what appendTo appends to
// a pooled buffer; if appendTo reports a value it does not write (NaN,
// ±Inf), fallback writes the response instead, through encoding/json,
// whose structs write them as protobuf's JSON mapping does (jsonFloat).
func writeAppended(w http.ResponseWriter, appendTo func([]byte) ([]byte, bool), fallback func()) {
	buf := responseBufs.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= maxPooledBuf {
			*buf = (*buf)[:0]
			responseBufs.Put(buf)
		}
	}()
	b, ok := appendTo((*buf)[:0])
	*buf = b
	if !ok {
		fallback()
		return
	}
	// The length lets net/http send the body as it is instead of in
	// chunks: a tenth of the server's CPU for a cached rate() (89 KB).
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// writeTempoMetrics writes {"metrics":m,"series":series} as writeJSON
// would with toTempoSeries(series, instant).
func writeTempoMetrics(w http.ResponseWriter, series []traceql.Series, instant bool, m searchMetrics) {
	writeAppended(w, func(b []byte) ([]byte, bool) { return appendMetricsResult(b, series, instant, m) }, func() {
		writeJSON(w, http.StatusOK, map[string]any{"series": toTempoSeries(series, instant), "metrics": m})
	})
}

// toTempoSeries is the response's series as structs, for encoding/json.
func toTempoSeries(series []traceql.Series, instant bool) []tempoSeries {
	out := make([]tempoSeries, 0, len(series))
	for _, s := range series {
		ts := tempoSeries{Labels: toKeyValues(s.Labels), PromLabels: string(appendPromLabels(nil, s.Labels))}
		if instant {
			v := 0.0
			if len(s.Samples) > 0 {
				v = s.Samples[0].Value
			}
			jv := jsonFloat(v)
			ts.Value = &jv
		} else {
			for _, p := range s.Samples {
				ts.Samples = append(ts.Samples, tempoSample{TimestampMs: strconv.FormatInt(p.TimestampMs, 10), Value: jsonFloat(p.Value)})
			}
			for _, e := range s.Exemplars {
				ts.Exemplars = append(ts.Exemplars, tempoExemplar{Labels: toKeyValues(e.Labels), Value: jsonFloat(e.Value), TimestampMs: strconv.FormatInt(e.TimestampMs, 10)})
			}
		}
		out = append(out, ts)
	}
	return out
}

// appendPromLabels appends a series' labels as Tempo's promLabels has
// them: {key="value", ...}, values Go-quoted.
func appendPromLabels(b []byte, ls []traceql.Label) []byte {
	b = append(b, '{')
	for i, l := range ls {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, l.Key...)
		b = append(b, '=')
		b = strconv.AppendQuote(b, l.Value.Text())
	}
	return append(b, '}')
}

// appendMetricsResult appends the response and a newline, as
// json.Encoder does; ok is false if a float is not finite. An instant
// query's series carry their first sample as value, and no samples nor
// exemplars.
func appendMetricsResult(b []byte, series []traceql.Series, instant bool, m searchMetrics) (_ []byte, ok bool) {
	ok = true
	b = append(b, `{"metrics":`...)
	b = appendSearchMetrics(b, m)
	b = append(b, `,"series":[`...)
	var ms msFormatter
	for i := range series {
		if i > 0 {
			b = append(b, ',')
		}
		s := &series[i]
		b = append(b, `{"labels":`...)
		b = appendLabels(b, s.Labels, &ok)
		if !instant && len(s.Samples) > 0 {
			b = append(b, `,"samples":[`...)
			for k := range s.Samples {
				if k > 0 {
					b = append(b, ',')
				}
				b = append(b, `{"timestampMs":"`...)
				b = ms.append(b, s.Samples[k].TimestampMs)
				b = append(b, `","value":`...)
				b = appendJSONFloat(b, s.Samples[k].Value, &ok)
				b = append(b, '}')
			}
			b = append(b, ']')
		}
		if !instant && len(s.Exemplars) > 0 {
			b = append(b, `,"exemplars":[`...)
			for k := range s.Exemplars {
				if k > 0 {
					b = append(b, ',')
				}
				e := &s.Exemplars[k]
				b = append(b, `{"labels":`...)
				b = appendLabels(b, e.Labels, &ok)
				b = append(b, `,"value":`...)
				b = appendJSONFloat(b, e.Value, &ok)
				b = append(b, `,"timestampMs":"`...)
				b = ms.append(b, e.TimestampMs)
				b = append(b, `"}`...)
			}
			b = append(b, ']')
		}
		// promLabels is never empty ("{}" at least), so never omitted.
		// It is built at the end of b, then quoted into place.
		b = append(b, `,"promLabels":`...)
		n := len(b)
		b = appendPromLabels(b, s.Labels)
		raw := string(b[n:]) // a copy: b is appended to below
		b = appendJSONString(b[:n], raw)
		if instant {
			v := 0.0
			if len(s.Samples) > 0 {
				v = s.Samples[0].Value
			}
			b = append(b, `,"value":`...)
			b = appendJSONFloat(b, v, &ok)
		}
		b = append(b, '}')
	}
	return append(b, "]}\n"...), ok
}

// appendSearchMetrics appends m as encoding/json does.
func appendSearchMetrics(b []byte, m searchMetrics) []byte {
	b = append(b, '{')
	if m.InspectedTraces != 0 {
		b = append(b, `"inspectedTraces":`...)
		b = strconv.AppendInt(b, int64(m.InspectedTraces), 10)
		b = append(b, ',')
	}
	b = append(b, `"inspectedBytes":`...)
	b = appendJSONString(b, m.InspectedBytes)
	if m.InspectedSpans != "" {
		b = append(b, `,"inspectedSpans":`...)
		b = appendJSONString(b, m.InspectedSpans)
	}
	b = append(b, `,"completedJobs":`...)
	b = strconv.AppendInt(b, int64(m.CompletedJobs), 10)
	b = append(b, `,"totalJobs":`...)
	b = strconv.AppendInt(b, int64(m.TotalJobs), 10)
	return append(b, '}')
}

// writeTempoSearch writes a search response as writeJSON would with the
// traces as toTempoMeta makes them. A search answers in a few
// milliseconds, and encoding/json's reflection over the response's
// structs (built first, a string per number) was a tenth of the server's
// CPU for a limit-20 search.
func writeTempoSearch(w http.ResponseWriter, traces []traceql.TraceResult, m searchMetrics) {
	writeAppended(w, func(b []byte) ([]byte, bool) { return appendSearchResult(b, traces, m) }, func() {
		metas := make([]tempoTraceMeta, 0, len(traces))
		for _, t := range traces {
			metas = append(metas, toTempoMeta(t))
		}
		writeJSON(w, http.StatusOK, tempoSearchResponse{Traces: metas, Metrics: m})
	})
}

// tempoSearchResponse is a search response as structs, for encoding/json.
type tempoSearchResponse struct {
	Traces  []tempoTraceMeta `json:"traces"`
	Metrics searchMetrics    `json:"metrics"`
}

// appendSearchResult appends the search response and a newline, as
// json.Encoder does with toTempoMeta's structs; ok is false if an
// attribute's float is not finite.
func appendSearchResult(b []byte, traces []traceql.TraceResult, m searchMetrics) (_ []byte, ok bool) {
	ok = true
	b = append(b, `{"traces":[`...)
	var svcs []string
	for i := range traces {
		if i > 0 {
			b = append(b, ',')
		}
		t := &traces[i]
		b = append(b, `{"traceID":`...)
		b = appendJSONString(b, traceIDHex(t.TraceID))
		b = append(b, `,"rootServiceName":`...)
		b = appendJSONString(b, t.RootService)
		b = append(b, `,"rootTraceName":`...)
		b = appendJSONString(b, t.RootName)
		b = append(b, `,"startTimeUnixNano":"`...)
		b = strconv.AppendInt(b, t.Start, 10)
		b = append(b, `","durationMs":`...)
		b = strconv.AppendInt(b, t.Duration/1e6, 10)
		if len(t.Spansets) > 0 {
			// spanSet repeats the first of spanSets.
			b = append(b, `,"spanSet":`...)
			b = appendSpanset(b, &t.Spansets[0], &ok)
			b = append(b, `,"spanSets":[`...)
			for k := range t.Spansets {
				if k > 0 {
					b = append(b, ',')
				}
				b = appendSpanset(b, &t.Spansets[k], &ok)
			}
			b = append(b, ']')
		}
		if len(t.ServiceStats) > 0 {
			// In key order, as encoding/json writes a map.
			svcs = svcs[:0]
			for svc := range t.ServiceStats {
				svcs = append(svcs, svc)
			}
			slices.Sort(svcs)
			b = append(b, `,"serviceStats":{`...)
			for k, svc := range svcs {
				if k > 0 {
					b = append(b, ',')
				}
				st := t.ServiceStats[svc]
				b = appendJSONString(b, svc)
				b = append(b, `:{"spanCount":`...)
				b = strconv.AppendInt(b, int64(st.SpanCount), 10)
				if st.ErrorCount != 0 {
					b = append(b, `,"errorCount":`...)
					b = strconv.AppendInt(b, int64(st.ErrorCount), 10)
				}
				b = append(b, '}')
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	b = append(b, `],"metrics":`...)
	b = appendSearchMetrics(b, m)
	return append(b, "}\n"...), ok
}

// appendSpanset appends a spanset as toTempoMeta's tempoSpanset.
func appendSpanset(b []byte, ss *traceql.ResultSpanset, ok *bool) []byte {
	b = append(b, `{"spans":[`...)
	for i := range ss.Spans {
		if i > 0 {
			b = append(b, ',')
		}
		sp := &ss.Spans[i]
		b = append(b, `{"spanID":"`...)
		b = hex.AppendEncode(b, sp.SpanID[:])
		b = append(b, '"')
		if sp.Name != "" {
			b = append(b, `,"name":`...)
			b = appendJSONString(b, sp.Name)
		}
		b = append(b, `,"startTimeUnixNano":"`...)
		b = strconv.AppendInt(b, sp.Start, 10)
		b = append(b, `","durationNanos":"`...)
		b = strconv.AppendInt(b, sp.Duration, 10)
		b = append(b, '"')
		if len(sp.Attrs) > 0 {
			b = append(b, `,"attributes":`...)
			b = appendLabels(b, sp.Attrs, ok)
		}
		b = append(b, '}')
	}
	b = append(b, `],"matched":`...)
	b = strconv.AppendInt(b, int64(ss.Matched), 10)
	if len(ss.Attrs) > 0 {
		b = append(b, `,"attributes":`...)
		b = appendLabels(b, ss.Attrs, ok)
	}
	return append(b, '}')
}

// appendLabels appends labels as toKeyValues makes them: OTLP's AnyValue
// in JSON, integers as strings.
func appendLabels(b []byte, ls []traceql.Label, ok *bool) []byte {
	b = append(b, '[')
	for i := range ls {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"key":`...)
		b = appendJSONString(b, ls[i].Key)
		v := &ls[i].Value
		switch v.Type {
		case traceql.TypeInt:
			b = append(b, `,"value":{"intValue":"`...)
			b = strconv.AppendInt(b, v.N, 10)
			b = append(b, '"')
		case traceql.TypeFloat:
			b = append(b, `,"value":{"doubleValue":`...)
			b = appendJSONFloat(b, v.F, ok)
		case traceql.TypeBool:
			b = append(b, `,"value":{"boolValue":`...)
			b = strconv.AppendBool(b, v.N == 1)
		default:
			b = append(b, `,"value":{"stringValue":`...)
			b = appendJSONString(b, v.Text())
		}
		b = append(b, "}}"...)
	}
	return append(b, ']')
}

// appendJSONFloat formats f as encoding/json does a float64: the
// shortest representation, in exponent form below 1e-6 and from 1e21,
// with a one-digit negative exponent unpadded. A value JSON cannot hold
// clears *ok.
func appendJSONFloat(b []byte, f float64, ok *bool) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		*ok = false
		return append(b, '0')
	}
	// Whole numbers, most samples of a count or rate per second and
	// most exemplar values, print as integers: the same digits, without
	// the shortest-float search (a fifth of a cached answer's CPU).
	// Negative zero keeps its sign through the general path.
	if abs := math.Abs(f); abs < 1<<53 && f == math.Trunc(f) && (f != 0 || !math.Signbit(f)) {
		return strconv.AppendInt(b, int64(f), 10)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendJSONString quotes s as encoding/json does with HTML escaping: a
// string of printable ASCII, nearly every label and number here, is
// copied, with '"' and '\\' escaped as encoding/json escapes them; any
// other goes through encoding/json. The common case, nothing to escape,
// is one table lookup per byte (trace and span IDs fill most of a
// metrics response).
func appendJSONString(b []byte, s string) []byte {
	i := 0
	for i < len(s) && jsonPlain[s[i]] {
		i++
	}
	if i == len(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, '\\', c)
		} else {
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// jsonPlain marks the bytes appendJSONString copies as they are:
// printable ASCII but the quote, the backslash and the three that
// encoding/json escapes for HTML.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

// msFormatter formats millisecond timestamps in decimal as
// strconv.AppendInt does, faster for a run that shares its leading
// digits, as the steps of a series do: the digits above the last six
// (which change every 17 minutes) are formatted once per change, the
// last six as digit pairs. A metrics response's timestamps were a tenth
// of a cached rate()'s CPU with AppendInt. The zero value is ready.
type msFormatter struct {
	hi   int64
	n    int      // len of hi in text; 0 until the first call
	text [20]byte // hi in decimal
}

// digitPairs holds "00" to "99" back to back.
const digitPairs = "00010203040506070809" + "10111213141516171819" + "20212223242526272829" +
	"30313233343536373839" + "40414243444546474849" + "50515253545556575859" +
	"60616263646566676869" + "70717273747576777879" + "80818283848586878889" + "90919293949596979899"

func (f *msFormatter) append(b []byte, ms int64) []byte {
	if ms < 1e6 {
		return strconv.AppendInt(b, ms, 10)
	}
	hi, lo := ms/1e6, ms%1e6
	if hi != f.hi || f.n == 0 {
		f.hi, f.n = hi, len(strconv.AppendInt(f.text[:0], hi, 10))
	}
	b = append(b, f.text[:f.n]...)
	x, y, z := 2*(lo/1e4), 2*(lo/100%100), 2*(lo%100)
	return append(b, digitPairs[x], digitPairs[x+1], digitPairs[y], digitPairs[y+1], digitPairs[z], digitPairs[z+1])
}
