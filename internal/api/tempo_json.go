package api

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"unicode/utf8"
)

// Tempo's metrics responses are large: a rate() by service over a few
// minutes is thousands of samples and up to 100 exemplars a series, and
// encoding/json's reflection over them took three quarters of a cached
// query's time. writeTempoMetrics appends the same bytes directly; a
// differential test (tempo_json_test.go) holds it to encoding/json's
// output, HTML escaping and float formatting included.

// writeTempoMetrics writes {"metrics":m,"series":series} as writeJSON
// would.
func writeTempoMetrics(w http.ResponseWriter, series []tempoSeries, m searchMetrics) {
	b, ok := appendTempoMetrics(make([]byte, 0, 64<<10), series, m)
	if !ok {
		// A value JSON cannot hold (NaN, ±Inf): encoding/json decides.
		writeJSON(w, http.StatusOK, map[string]any{"series": series, "metrics": m})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// appendTempoMetrics appends the response and a newline, as
// json.Encoder does; ok is false if a float is not finite.
func appendTempoMetrics(b []byte, series []tempoSeries, m searchMetrics) (_ []byte, ok bool) {
	ok = true
	b = append(b, `{"metrics":{`...)
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
	b = append(b, `},"series":`...)
	if series == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range series {
			if i > 0 {
				b = append(b, ',')
			}
			s := &series[i]
			b = append(b, `{"labels":`...)
			b = appendKeyValues(b, s.Labels, &ok)
			if len(s.Samples) > 0 {
				b = append(b, `,"samples":[`...)
				for k := range s.Samples {
					if k > 0 {
						b = append(b, ',')
					}
					b = append(b, `{"timestampMs":`...)
					b = appendJSONString(b, s.Samples[k].TimestampMs)
					b = append(b, `,"value":`...)
					b = appendJSONFloat(b, s.Samples[k].Value, &ok)
					b = append(b, '}')
				}
				b = append(b, ']')
			}
			if len(s.Exemplars) > 0 {
				b = append(b, `,"exemplars":[`...)
				for k := range s.Exemplars {
					if k > 0 {
						b = append(b, ',')
					}
					e := &s.Exemplars[k]
					b = append(b, `{"labels":`...)
					b = appendKeyValues(b, e.Labels, &ok)
					b = append(b, `,"value":`...)
					b = appendJSONFloat(b, e.Value, &ok)
					b = append(b, `,"timestampMs":`...)
					b = appendJSONString(b, e.TimestampMs)
					b = append(b, '}')
				}
				b = append(b, ']')
			}
			if s.PromLabels != "" {
				b = append(b, `,"promLabels":`...)
				b = appendJSONString(b, s.PromLabels)
			}
			if s.Value != nil {
				b = append(b, `,"value":`...)
				b = appendJSONFloat(b, *s.Value, &ok)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, "}\n"...), ok
}

func appendKeyValues(b []byte, kvs []keyValue, ok *bool) []byte {
	if kvs == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i := range kvs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"key":`...)
		b = appendJSONString(b, kvs[i].Key)
		b = append(b, `,"value":{`...)
		v := &kvs[i].Value
		comma := false
		field := func(name string) {
			if comma {
				b = append(b, ',')
			}
			comma = true
			b = append(b, '"')
			b = append(b, name...)
			b = append(b, `":`...)
		}
		if v.StringValue != nil {
			field("stringValue")
			b = appendJSONString(b, *v.StringValue)
		}
		if v.IntValue != nil {
			field("intValue")
			b = appendJSONString(b, *v.IntValue)
		}
		if v.DoubleValue != nil {
			field("doubleValue")
			b = appendJSONFloat(b, *v.DoubleValue, ok)
		}
		if v.BoolValue != nil {
			field("boolValue")
			b = strconv.AppendBool(b, *v.BoolValue)
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
// string of plain printable ASCII, nearly every label and number here, is
// copied; any other goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
