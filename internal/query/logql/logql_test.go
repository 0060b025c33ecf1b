package logql

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// memQuerier serves log records from memory so that these tests exercise
// the engine alone.
type memQuerier struct {
	storage.Querier
	logs []storage.LogRecord
}

func (m *memQuerier) Logs(_ context.Context, q *storage.LogQuery, fn func(*storage.LogRecord) bool) error {
	for i := range m.logs {
		l := m.logs[i]
		if q.Match(&l) && !fn(&l) {
			return nil
		}
	}
	return nil
}

const base = int64(1_700_000_000) * 1e9

func traceID(name string) storage.TraceID {
	var id storage.TraceID
	h := uint64(14695981039346656037)
	for _, c := range []byte(name) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	binary.BigEndian.PutUint64(id[8:], h)
	id[0] = 1
	return id
}

// TestEval runs testdata/*.test: `load` blocks of records
// (`service ms severity "body" key=value...`), `logs start end [forward]
// query` cases listing `{labels} ms line`, and `metrics start end step
// query` cases listing `{labels} v v v` (_ for no sample).
func TestEval(t *testing.T) {
	files, err := filepath.Glob("testdata/*.test")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			require.NoError(t, err)
			lines := strings.Split(string(data), "\n")
			m := &memQuerier{}
			cases := 0
			for i := 0; i < len(lines); i++ {
				l := strings.TrimSpace(lines[i])
				if l == "" || strings.HasPrefix(l, "#") {
					continue
				}
				var block []string
				j := i + 1
				for ; j < len(lines) && strings.HasPrefix(lines[j], "  "); j++ {
					if s := strings.TrimSpace(lines[j]); s != "" && !strings.HasPrefix(s, "#") {
						block = append(block, s)
					}
				}
				where := fmt.Sprintf("%s:%d", file, i+1)
				switch {
				case l == "load":
					for _, b := range block {
						m.logs = append(m.logs, parseRecord(t, where, b))
					}
				case strings.HasPrefix(l, "logs "):
					checkLogs(t, where, m, strings.TrimPrefix(l, "logs "), block)
					cases++
				case strings.HasPrefix(l, "metrics "):
					checkMetrics(t, where, m, strings.TrimPrefix(l, "metrics "), block)
					cases++
				case strings.HasPrefix(l, "volume "):
					checkVolume(t, where, m, strings.TrimPrefix(l, "volume "), block)
					cases++
				case strings.HasPrefix(l, "detected_labels "):
					checkDetectedLabels(t, where, m, strings.TrimPrefix(l, "detected_labels "), block)
					cases++
				case strings.HasPrefix(l, "detected_fields "):
					checkDetectedFields(t, where, m, strings.TrimPrefix(l, "detected_fields "), block)
					cases++
				case strings.HasPrefix(l, "patterns "):
					checkPatterns(t, where, m, strings.TrimPrefix(l, "patterns "), block)
					cases++
				case strings.HasPrefix(l, "fails "):
					f := strings.SplitN(strings.TrimPrefix(l, "fails "), "\t", 2)
					_, err := Parse(f[0])
					var pe *Error
					require.True(t, errors.As(err, &pe), "%s: want a parse error, got %v", where, err)
					require.Contains(t, pe.Error(), f[1], where)
					cases++
				default:
					t.Fatalf("%s: unknown command %q", where, l)
				}
				i = j - 1
			}
			require.Positive(t, cases)
		})
	}
}

func parseRecord(t *testing.T, where, line string) storage.LogRecord {
	f := fields(line)
	require.GreaterOrEqual(t, len(f), 4, where)
	ms, err := strconv.ParseInt(f[1], 10, 64)
	require.NoError(t, err, where)
	sev, err := strconv.Atoi(f[2])
	require.NoError(t, err, where)
	body, err := strconv.Unquote(f[3])
	require.NoError(t, err, where)
	r := storage.LogRecord{
		TimeUnixNano:   base + ms*1e6,
		SeverityNumber: int32(sev),
		Body:           storage.Str(body),
		Resource:       &storage.Resource{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str(f[0])}}},
	}
	for _, kv := range f[4:] {
		k, v, _ := strings.Cut(kv, "=")
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		}
		switch {
		case k == "trace":
			r.TraceID = traceID(v)
		case strings.HasPrefix(k, "resource."):
			r.Resource.Attrs = append(r.Resource.Attrs, storage.Attr{Key: k[9:], Value: storage.Str(v)})
		default:
			r.Attrs = append(r.Attrs, storage.Attr{Key: k, Value: storage.Str(v)})
		}
	}
	return r
}

func fields(s string) []string {
	var out []string
	var cur strings.Builder
	inq := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && inq && i+1 < len(s):
			cur.WriteByte(c)
			i++
			cur.WriteByte(s[i])
		case c == '"':
			inq = !inq
			cur.WriteByte(c)
		case c == ' ' && !inq:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// expandTrace lets expectations name traces: $t1 is traceID("t1") in hex.
func expandTrace(s string) string {
	for _, w := range strings.FieldsFunc(s, func(r rune) bool { return !(r == '$' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') }) {
		if strings.HasPrefix(w, "$") {
			s = strings.ReplaceAll(s, w, traceID(w[1:]).String())
		}
	}
	return s
}

func checkLogs(t *testing.T, where string, m *memQuerier, spec string, want []string) {
	f := strings.SplitN(spec, " ", 3)
	start, _ := strconv.ParseInt(f[0], 10, 64)
	end, _ := strconv.ParseInt(f[1], 10, 64)
	query, forward := f[2], false
	if strings.HasPrefix(query, "forward ") {
		query, forward = strings.TrimPrefix(query, "forward "), true
	}
	limit := 100
	if strings.HasPrefix(query, "limit=") {
		n, rest, _ := strings.Cut(strings.TrimPrefix(query, "limit="), " ")
		limit, _ = strconv.Atoi(n)
		query = rest
	}
	q, err := Parse(expandTrace(query))
	require.NoError(t, err, where)
	require.NotNil(t, q.Log, where)
	streams, _, err := Select(context.Background(), m, SelectRequest{Expr: q.Log, Start: base + start*1e6, End: base + end*1e6, Limit: limit, Forward: forward})
	require.NoError(t, err, where)
	var got []string
	for _, s := range streams {
		for _, e := range s.Entries {
			got = append(got, fmt.Sprintf("%s %d %s", s.Labels, (e.Timestamp-base)/1e6, e.Line))
		}
	}
	for i := range want {
		want[i] = expandTrace(want[i])
	}
	require.Equal(t, want, got, "%s: %s", where, query)
}

func checkMetrics(t *testing.T, where string, m *memQuerier, spec string, want []string) {
	f := strings.SplitN(spec, " ", 4)
	start, _ := strconv.ParseInt(f[0], 10, 64)
	end, _ := strconv.ParseInt(f[1], 10, 64)
	step, _ := strconv.ParseInt(f[2], 10, 64)
	q, err := Parse(f[3])
	require.NoError(t, err, where)
	require.NotNil(t, q.Metric, where)
	series, _, err := Eval(context.Background(), m, MetricRequest{Expr: q.Metric, Start: base + start*1e6, End: base + end*1e6, Step: step * 1e6})
	require.NoError(t, err, where)
	n := int((end-start)/step) + 1
	var got []string
	for _, s := range series {
		vals := make([]string, n)
		for i := range vals {
			vals[i] = "_"
		}
		for _, p := range s.Points {
			vals[(p.T-(base/1e6+start))/step] = strconv.FormatFloat(p.V, 'g', 4, 64)
		}
		got = append(got, s.Metric.String()+" "+strings.Join(vals, " "))
	}
	require.Equal(t, want, got, "%s: %s", where, f[3])
}

// Nested template functions multiply a line per level; the bound refuses
// the line (TemplateFormatErr, as a failing template does in Loki) before
// the query can build gigabytes.
func TestLineFormatIsBounded(t *testing.T) {
	r := strings.Repeat("a", 100)
	nested := "__line__"
	for range 12 { // 100 × 4^12 bytes unbounded
		nested = `Replace (` + nested + `) "a" "aaaa"`
	}
	for name, tmpl := range map[string]string{
		"nested Replace":  "{{ " + nested + " }}",
		"Replace of \"\"": `{{ Replace (Replace __line__ "" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx") "" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" }}`,
	} {
		q, err := Parse(`{service_name="x"} | line_format "` + strings.ReplaceAll(tmpl, `"`, `\"`) + `"`)
		require.NoError(t, err, name)
		p := newPipeline(q.Log)
		rec := &storage.LogRecord{Body: storage.Str(r)}
		line, labels, ok := p.run(rec, Labels{{"service_name", "x"}}, nil)
		require.True(t, ok, name)
		require.LessOrEqual(t, len(line), MaxFormattedLine, name)
		v, _ := labels.Get("__error__")
		require.Equal(t, "TemplateFormatErr", v, name)
	}
	// However the output grows, the writer stops it at the bound.
	var b bytes.Buffer
	_, err := capWriter{&b}.Write(make([]byte, MaxFormattedLine+1))
	require.ErrorIs(t, err, ErrLineTooLong)
	// Within the bound, line_format works as before.
	q, err := Parse(`{service_name="x"} | line_format "{{ Replace __line__ \"a\" \"b\" }}"`)
	require.NoError(t, err)
	line, _, _ := newPipeline(q.Log).run(&storage.LogRecord{Body: storage.Str("aXa")}, Labels{{"service_name", "x"}}, nil)
	require.Equal(t, "bXb", line)
}

func TestParsersAreBounded(t *testing.T) {
	var js, lf strings.Builder
	js.WriteString("{")
	for i := range 100_000 {
		if i > 0 {
			js.WriteString(",")
		}
		fmt.Fprintf(&js, `"k%06d":"v"`, i)
		fmt.Fprintf(&lf, "k%06d=v ", i)
	}
	js.WriteString("}")
	for name, c := range map[string]struct{ line, kind, errName string }{
		"json":   {js.String(), "json", "JSONParserErr"},
		"logfmt": {lf.String(), "logfmt", "LogfmtParserErr"},
	} {
		q, err := Parse(`{service_name="x"} | ` + c.kind)
		require.NoError(t, err)
		p := newPipeline(q.Log)
		_, labels, ok := p.run(&storage.LogRecord{Body: storage.Str(c.line)}, Labels{{"service_name", "x"}}, nil)
		require.True(t, ok, name)
		require.LessOrEqual(t, len(labels), MaxParsedLabels+3, name)
		v, _ := labels.Get("__error__")
		require.Equal(t, c.errName, v, name)
		v, _ = labels.Get("__error_details__")
		require.Contains(t, v, "more than 1024 fields", name)
	}
	// Within the bound, nested objects flatten as before.
	q, _ := Parse(`{service_name="x"} | json`)
	_, labels, _ := newPipeline(q.Log).run(&storage.LogRecord{Body: storage.Str(`{"a":{"b":"c"},"d":1}`)}, Labels{{"service_name", "x"}}, nil)
	v, _ := labels.Get("a_b")
	require.Equal(t, "c", v)
	_, hasErr := labels.Get("__error__")
	require.False(t, hasErr)
}

func checkVolume(t *testing.T, where string, m *memQuerier, spec string, want []string) {
	f := strings.SplitN(spec, " ", 4)
	start, _ := strconv.ParseInt(f[0], 10, 64)
	end, _ := strconv.ParseInt(f[1], 10, 64)
	step, _ := strconv.ParseInt(f[2], 10, 64)
	req := VolumeRequest{Start: base + start*1e6, End: base + end*1e6, Step: step * 1e6}
	rest := f[3]
	for !strings.HasPrefix(rest, "{") {
		opt, r, _ := strings.Cut(rest, " ")
		switch {
		case opt == "by=labels":
			req.ByLabels = true
		case strings.HasPrefix(opt, "targets="):
			req.TargetLabels = strings.Split(strings.TrimPrefix(opt, "targets="), ",")
		default:
			t.Fatalf("%s: unknown volume option %q", where, opt)
		}
		rest = r
	}
	q, err := Parse(rest)
	require.NoError(t, err, where)
	req.Selector = q.Log
	series, err := Volume(context.Background(), m, req)
	require.NoError(t, err, where)
	n := 1
	if step > 0 {
		n = int((end-start)/step) + 1
	}
	var got []string
	for _, s := range series {
		vals := make([]string, n)
		for i := range vals {
			vals[i] = "_"
		}
		for _, p := range s.Points {
			i := 0
			if step > 0 {
				i = int((p.T - (base/1e6 + start)) / step)
			} else {
				require.Equal(t, base/1e6+end, p.T, "%s: an instant volume is at the end", where)
			}
			vals[i] = strconv.FormatFloat(p.V, 'g', -1, 64)
		}
		got = append(got, s.Metric.String()+" "+strings.Join(vals, " "))
	}
	require.Equal(t, want, got, "%s: %s", where, spec)
}

func checkDetectedLabels(t *testing.T, where string, m *memQuerier, spec string, want []string) {
	f := strings.SplitN(spec, " ", 3)
	start, _ := strconv.ParseInt(f[0], 10, 64)
	end, _ := strconv.ParseInt(f[1], 10, 64)
	q, err := Parse(f[2])
	require.NoError(t, err, where)
	labels, err := DetectedLabels(context.Background(), m, q.Log, base+start*1e6, base+end*1e6, 0)
	require.NoError(t, err, where)
	var got []string
	for _, l := range labels {
		got = append(got, fmt.Sprintf("%s %d", l.Label, l.Cardinality))
	}
	require.Equal(t, want, got, "%s: %s", where, spec)
}

func checkDetectedFields(t *testing.T, where string, m *memQuerier, spec string, want []string) {
	f := strings.SplitN(spec, " ", 3)
	start, _ := strconv.ParseInt(f[0], 10, 64)
	end, _ := strconv.ParseInt(f[1], 10, 64)
	q, err := Parse(f[2])
	require.NoError(t, err, where)
	req := FieldsRequest{Expr: q.Log, Start: base + start*1e6, End: base + end*1e6}
	detected, err := DetectedFields(context.Background(), m, req)
	require.NoError(t, err, where)
	var got []string
	for _, d := range detected {
		parsers := "-"
		if len(d.Parsers) > 0 {
			parsers = strings.Join(d.Parsers, ",")
		}
		line := fmt.Sprintf("%s %s %d %s", d.Label, d.Type, d.Cardinality, parsers)
		if len(d.JSONPath) > 0 {
			line += " " + strings.Join(d.JSONPath, ".")
		}
		got = append(got, line)
		// The values endpoint lists as many values as the cardinality.
		values, err := DetectedFieldValues(context.Background(), m, req, d.Label)
		require.NoError(t, err, where)
		require.Len(t, values, d.Cardinality, "%s: values of %s", where, d.Label)
	}
	require.Equal(t, want, got, "%s: %s", where, spec)
}

func checkPatterns(t *testing.T, where string, m *memQuerier, spec string, want []string) {
	f := strings.SplitN(spec, " ", 4)
	start, _ := strconv.ParseInt(f[0], 10, 64)
	end, _ := strconv.ParseInt(f[1], 10, 64)
	step, _ := strconv.ParseInt(f[2], 10, 64)
	q, err := Parse(f[3])
	require.NoError(t, err, where)
	ps, err := Patterns(context.Background(), m, PatternsRequest{Selector: q.Log, Start: base + start*1e6, End: base + end*1e6, Step: step * 1e6})
	require.NoError(t, err, where)
	var got []string
	for _, p := range ps {
		line := strconv.Itoa(p.Total)
		for _, s := range p.Samples {
			line += fmt.Sprintf(" %d:%g", s.T-base/1e6, s.V)
		}
		got = append(got, line+" "+p.Pattern)
	}
	require.Equal(t, want, got, "%s: %s", where, spec)
}
