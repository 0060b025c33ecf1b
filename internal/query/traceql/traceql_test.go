package traceql

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// TestValid parses every query in testdata/valid.txt and checks that its
// printed form parses back to the same printed form.
func TestValid(t *testing.T) {
	for _, c := range readCases(t, "testdata/valid.txt") {
		t.Run(c.query, func(t *testing.T) {
			q, err := Parse(c.query)
			require.NoError(t, err, "line %d", c.line)
			q2, err := Parse(q.String())
			require.NoError(t, err, "reparse of %s", q)
			require.Equal(t, q.String(), q2.String())
		})
	}
}

// TestParseFails and TestValidateFails check the error and its position:
// each case is `query ⇥ line:col ⇥ message substring`.
func TestParseFails(t *testing.T)    { testFails(t, "testdata/parse_fails.txt") }
func TestValidateFails(t *testing.T) { testFails(t, "testdata/validate_fails.txt") }

func testFails(t *testing.T, file string) {
	for _, c := range readCases(t, file) {
		parts := strings.Split(c.query, "\t")
		require.Len(t, parts, 3, "%s:%d: want query<TAB>line:col<TAB>message", file, c.line)
		t.Run(parts[0], func(t *testing.T) {
			_, err := Parse(parts[0])
			require.Error(t, err, "%s:%d", file, c.line)
			var pe *Error
			require.True(t, errors.As(err, &pe), "error %v has no position", err)
			require.Equal(t, parts[1], pe.Pos.String(), "%s:%d: %v", file, c.line, err)
			require.Contains(t, pe.Msg, parts[2], "%s:%d", file, c.line)
		})
	}
}

type textCase struct {
	line  int
	query string
}

func readCases(t *testing.T, file string) []textCase {
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	var out []textCase
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		l := sc.Text()
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, textCase{n, strings.ReplaceAll(l, `\n`, "\n")})
	}
	require.NoError(t, sc.Err())
	return out
}

// memQuerier is a storage.Querier over an in-memory span list, so that
// evaluation tests exercise the engine alone; the store's own Querier is
// tested against the same queries in store_test.go.
type memQuerier struct{ spans []storage.Span }

func (m *memQuerier) TraceByID(_ context.Context, id storage.TraceID, _, _ int64) ([]storage.Span, error) {
	var out []storage.Span
	for _, s := range m.spans {
		if s.TraceID == id {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, storage.ErrNotFound
	}
	return out, nil
}

func (m *memQuerier) Spans(_ context.Context, q *storage.SpanQuery, fn func(*storage.Span) bool) error {
	for i := range m.spans {
		s := m.spans[i]
		if q.Match(&s) && !fn(&s) {
			return nil
		}
	}
	return nil
}

func (m *memQuerier) LogsByTrace(context.Context, storage.TraceID, storage.SpanID, int64, int64, int) ([]storage.LogRecord, error) {
	return nil, nil
}
func (m *memQuerier) Logs(context.Context, *storage.LogQuery, func(*storage.LogRecord) bool) error {
	return nil
}
func (m *memQuerier) Services(context.Context, int64, int64) ([]string, error) { return nil, nil }
func (m *memQuerier) Operations(context.Context, string, int64, int64) ([]storage.Operation, error) {
	return nil, nil
}
func (m *memQuerier) TagNames(context.Context, int64, int64) (storage.TagNames, error) {
	return storage.TagNames{}, nil
}
func (m *memQuerier) TagValues(context.Context, storage.Scope, string, int64, int64, int) ([]storage.Value, error) {
	return nil, nil
}
func (m *memQuerier) Close() error { return nil }

// TestEval runs the evaluation cases in testdata/eval/*.test. Each file
// loads a small dataset of named traces and spans, then lists queries with
// the spans (search) or series (metrics) they must return.
func TestEval(t *testing.T) {
	files, err := filepath.Glob("testdata/eval/*.test")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { runEvalFile(t, file) })
	}
}

// base is the dataset's time origin: span start offsets are milliseconds
// after it.
const base = int64(1_700_000_000) * 1e9

type evalFile struct {
	spans     []storage.Span
	traceName map[storage.TraceID]string
	spanName  map[storage.SpanID]string
}

func runEvalFile(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	lines := strings.Split(string(data), "\n")
	ef := &evalFile{traceName: map[storage.TraceID]string{}, spanName: map[storage.SpanID]string{}}
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
				ef.load(t, where, b)
			}
		case strings.HasPrefix(l, "search "):
			ef.search(t, where, strings.TrimPrefix(l, "search "), block)
			cases++
		case strings.HasPrefix(l, "metrics "):
			ef.metrics(t, where, strings.TrimPrefix(l, "metrics "), block)
			cases++
		default:
			t.Fatalf("%s: unknown command %q", where, l)
		}
		i = j - 1
	}
	require.Positive(t, cases, "%s has no cases", file)
}

// traceID and spanID derive stable IDs from the names used in the files.
func traceID(name string) storage.TraceID {
	var id storage.TraceID
	binary.BigEndian.PutUint64(id[8:], fnv(name))
	id[0] = 1
	return id
}

func spanID(name string) storage.SpanID {
	var id storage.SpanID
	binary.BigEndian.PutUint64(id[:], fnv(name))
	return id
}

func fnv(name string) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range []byte(name) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return h
}

// load parses `trace span parent service name kind status start_ms dur_ms attr...`.
// Attributes: span.k=v, resource.k=v, scope=name@version, event=name@ms,
// event.k=v (on the last event), link=trace/span, link.k=v, msg="status message".
func (ef *evalFile) load(t *testing.T, where, line string) {
	fields := splitFields(line)
	require.GreaterOrEqual(t, len(fields), 9, "%s: %s", where, line)
	s := storage.Span{
		TraceID: traceID(fields[0]),
		SpanID:  spanID(fields[1]),
		Name:    unq(fields[4]),
	}
	ef.traceName[s.TraceID] = fields[0]
	ef.spanName[s.SpanID] = fields[1]
	if fields[2] != "-" {
		s.ParentSpanID = spanID(fields[2])
	}
	s.Resource = &storage.Resource{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str(fields[3])}}}
	s.Scope = &storage.InstrumentationScope{}
	k, ok := kindNames[fields[5]]
	require.True(t, ok, "%s: kind %q", where, fields[5])
	s.Kind = k
	st, ok := statusNames[fields[6]]
	require.True(t, ok, "%s: status %q", where, fields[6])
	s.StatusCode = st
	startMs, err := strconv.ParseFloat(fields[7], 64)
	require.NoError(t, err, where)
	durMs, err := strconv.ParseFloat(fields[8], 64)
	require.NoError(t, err, where)
	s.StartUnixNano = base + int64(startMs*1e6)
	s.EndUnixNano = s.StartUnixNano + int64(durMs*1e6)
	for _, a := range fields[9:] {
		key, val, ok := strings.Cut(a, "=")
		require.True(t, ok, "%s: attribute %q", where, a)
		switch {
		case key == "scope":
			n, v, _ := strings.Cut(val, "@")
			s.Scope = &storage.InstrumentationScope{Name: n, Version: v}
		case key == "msg":
			s.StatusMessage = unq(val)
		case key == "event":
			n, at, _ := strings.Cut(val, "@")
			ms, _ := strconv.ParseFloat(at, 64)
			s.Events = append(s.Events, storage.Event{Name: n, TimeUnixNano: s.StartUnixNano + int64(ms*1e6)})
		case strings.HasPrefix(key, "event."):
			e := &s.Events[len(s.Events)-1]
			e.Attrs = append(e.Attrs, storage.Attr{Key: key[6:], Value: parseVal(t, where, val)})
		case key == "link":
			tn, sn, _ := strings.Cut(val, "/")
			s.Links = append(s.Links, storage.Link{TraceID: traceID(tn), SpanID: spanID(sn)})
		case strings.HasPrefix(key, "link."):
			l := &s.Links[len(s.Links)-1]
			l.Attrs = append(l.Attrs, storage.Attr{Key: key[5:], Value: parseVal(t, where, val)})
		case strings.HasPrefix(key, "span."):
			s.Attrs = append(s.Attrs, storage.Attr{Key: key[5:], Value: parseVal(t, where, val)})
		case strings.HasPrefix(key, "resource."):
			s.Resource.Attrs = append(s.Resource.Attrs, storage.Attr{Key: key[9:], Value: parseVal(t, where, val)})
		default:
			t.Fatalf("%s: unknown attribute %q", where, a)
		}
	}
	ef.spans = append(ef.spans, s)
}

func unq(s string) string {
	if u, err := strconv.Unquote(s); err == nil {
		return u
	}
	return s
}

func parseVal(t *testing.T, where, s string) storage.Value {
	switch {
	case strings.HasPrefix(s, `"`):
		return storage.Str(unq(s))
	case s == "true" || s == "false":
		return storage.Bool(s == "true")
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return storage.Int(i)
	}
	f, err := strconv.ParseFloat(s, 64)
	require.NoError(t, err, "%s: value %q", where, s)
	return storage.Double(f)
}

func splitFields(s string) []string {
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
		case (c == ' ' || c == '\t') && !inq:
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

// search checks `search <query>` against lines `trace: span span | span`,
// one per matching trace (spansets separated by |), sorted by trace name.
// A line may end with `{key=value ...}` spanset attributes for the first
// spanset. No lines means no match.
func (ef *evalFile) search(t *testing.T, where, query string, want []string) {
	q, err := Parse(query)
	require.NoError(t, err, where)
	res, err := Search(context.Background(), &memQuerier{spans: ef.spans}, SearchRequest{Query: q, Limit: 1000})
	require.NoError(t, err, where)
	var got []string
	for _, tr := range res.Traces {
		var sets []string
		for _, ss := range tr.Spansets {
			var names []string
			for _, sp := range ss.Spans {
				names = append(names, ef.spanName[sp.SpanID])
			}
			slices.Sort(names)
			desc := strings.Join(names, " ")
			if len(ss.Attrs) > 0 {
				var as []string
				for _, a := range ss.Attrs {
					as = append(as, a.Key+"="+a.Value.Text())
				}
				desc += " {" + strings.Join(as, " ") + "}"
			}
			sets = append(sets, desc)
		}
		slices.Sort(sets)
		got = append(got, ef.traceName[tr.TraceID]+": "+strings.Join(sets, " | "))
	}
	slices.Sort(got)
	w := slices.Clone(want)
	slices.Sort(w)
	require.Equal(t, w, got, "%s: search %s", where, query)
}

// metrics checks `metrics <start_ms> <end_ms> <step_ms> <query>` against
// lines `{labels} v v v`, with _ for an absent sample.
func (ef *evalFile) metrics(t *testing.T, where, spec string, want []string) {
	f := strings.SplitN(spec, " ", 4)
	require.Len(t, f, 4, where)
	ms := func(s string) int64 {
		v, err := strconv.ParseInt(s, 10, 64)
		require.NoError(t, err, where)
		return base + v*1e6
	}
	start, end := ms(f[0]), ms(f[1])
	step := ms(f[2]) - base
	q, err := Parse(f[3])
	require.NoError(t, err, where)
	res, err := Metrics(context.Background(), &memQuerier{spans: ef.spans}, MetricsRequest{Query: q, Start: start, End: end, Step: step})
	require.NoError(t, err, where)
	// Steps are aligned to multiples of step, as Tempo aligns them.
	start -= start % step
	n := int((end - start + step - 1) / step)
	var got []string
	for _, s := range res.Series {
		var ls []string
		for _, l := range s.Labels {
			ls = append(ls, l.Key+"="+l.Value.Text())
		}
		vals := make([]string, n)
		for i := range vals {
			vals[i] = "_"
		}
		for _, p := range s.Samples {
			i := int((p.TimestampMs*1e6 - start) / step)
			require.True(t, i >= 0 && i < n, "%s: sample at %d outside the range", where, p.TimestampMs)
			vals[i] = fmtVal(p.Value)
		}
		got = append(got, "{"+strings.Join(ls, ", ")+"} "+strings.Join(vals, " "))
	}
	require.Equal(t, want, got, "%s: metrics %s", where, f[3])
}

func fmtVal(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'f', 4, 64)
}

// A search without most_recent stops early, but reads candidates for ten
// times its limit and keeps the latest: inside a block the store's order
// is not time's, and the newest traces must not lose to the first found.
func TestSearchKeepsLatestCandidates(t *testing.T) {
	const base = int64(1_700_000_000) * 1e9
	m := &memQuerier{}
	span := func(i int) storage.Span {
		var id storage.TraceID
		id[15] = byte(i + 1)
		return storage.Span{TraceID: id, SpanID: storage.SpanID{byte(i + 1)}, Name: "op",
			StartUnixNano: base + int64(i)*1e9, EndUnixNano: base + int64(i)*1e9 + 1e6,
			Resource: &storage.Resource{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str("svc")}}}}
	}
	// Yielded: 45 older traces, then the 5 newest, then 50 in between.
	for i := range 45 {
		m.spans = append(m.spans, span(i))
	}
	for i := 95; i < 100; i++ {
		m.spans = append(m.spans, span(i))
	}
	for i := 45; i < 95; i++ {
		m.spans = append(m.spans, span(i))
	}
	q, err := Parse("{ }")
	require.NoError(t, err)
	res, err := Search(context.Background(), m, SearchRequest{Query: q, Limit: 5})
	require.NoError(t, err)
	var got []int64
	for _, tr := range res.Traces {
		got = append(got, (tr.Start-base)/1e9)
	}
	require.Equal(t, []int64{99, 98, 97, 96, 95}, got)
}
