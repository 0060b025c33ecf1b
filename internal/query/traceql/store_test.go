package traceql_test

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/query/traceql"
	"github.com/sightlinehq/sightline/internal/store"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/workload"
)

// The evaluation suite runs TraceQL over the real store on a generated
// dataset. Expected results come from the oracles below: plain Go over the
// generated spans, sharing no code with the engine. The same queries run
// while the data sits in the head, after it is flushed into blocks, and
// after the blocks are compacted, and must give the same answers.

var t0 = time.Unix(1_700_000_000, 0)

// dataset is the generated spans grouped by trace, with the tree.
type dataset struct {
	traces map[storage.TraceID][]*storage.Span
}

type oTrace struct {
	spans  []*storage.Span
	byID   map[storage.SpanID]*storage.Span
	root   *storage.Span
	start  int64
	end    int64
	childs map[storage.SpanID]int
}

func (d *dataset) trace(id storage.TraceID) *oTrace {
	t := &oTrace{spans: d.traces[id], byID: map[storage.SpanID]*storage.Span{}, childs: map[storage.SpanID]int{}}
	for i, s := range t.spans {
		t.byID[s.SpanID] = s
		if s.ParentSpanID.IsEmpty() {
			t.root = s
		}
		if i == 0 || s.StartUnixNano < t.start {
			t.start = s.StartUnixNano
		}
		t.end = max(t.end, s.EndUnixNano)
	}
	for _, s := range t.spans {
		if _, ok := t.byID[s.ParentSpanID]; ok {
			t.childs[s.ParentSpanID]++
		}
	}
	return t
}

func (t *oTrace) parent(s *storage.Span) *storage.Span { return t.byID[s.ParentSpanID] }

func (t *oTrace) ancestors(s *storage.Span) []*storage.Span {
	var out []*storage.Span
	for p := t.parent(s); p != nil && len(out) <= len(t.spans); p = t.parent(p) {
		out = append(out, p)
	}
	return out
}

func svc(s *storage.Span) string { return s.Resource.ServiceName() }

func attr(s *storage.Span, k string) (storage.Value, bool) { return s.Attrs.Get(k) }

func intAttr(s *storage.Span, k string) (int64, bool) {
	v, ok := attr(s, k)
	return v.Int, ok && v.Type == storage.TypeInt
}

// each returns an oracle that selects spans by a per-span predicate.
func each(pred func(t *oTrace, s *storage.Span) bool) func(*oTrace) []*storage.Span {
	return func(t *oTrace) []*storage.Span {
		var out []*storage.Span
		for _, s := range t.spans {
			if pred(t, s) {
				out = append(out, s)
			}
		}
		return out
	}
}

type searchCase struct {
	query  string
	oracle func(*oTrace) []*storage.Span // matched spans; none = no match
}

var searchCases = []searchCase{
	{`{ resource.service.name = "cart" }`, each(func(_ *oTrace, s *storage.Span) bool { return svc(s) == "cart" })},
	{`{ status = error }`, each(func(_ *oTrace, s *storage.Span) bool { return s.StatusCode == storage.StatusError })},
	{`{ resource.service.name = "checkout" && status = error && duration > 1ms }`, each(func(_ *oTrace, s *storage.Span) bool {
		return svc(s) == "checkout" && s.StatusCode == storage.StatusError && s.Duration() > 1e6
	})},
	{`{ span.http.request.method = "POST" }`, each(func(_ *oTrace, s *storage.Span) bool {
		v, ok := attr(s, "http.request.method")
		return ok && v.Str == "POST"
	})},
	// A boolean attribute alone: pushed down as `= true`.
	{`{ span.app.cache.hit && duration > 100us }`, each(func(_ *oTrace, s *storage.Span) bool {
		v, ok := attr(s, "app.cache.hit")
		return ok && v.Type == storage.TypeBool && v.Int == 1 && s.Duration() > 100e3
	})},
	{`{ span.http.response.status_code >= 500 }`, each(func(_ *oTrace, s *storage.Span) bool {
		n, ok := intAttr(s, "http.response.status_code")
		return ok && n >= 500
	})},
	{`{ kind = client && span.db.system = "postgresql" }`, each(func(_ *oTrace, s *storage.Span) bool {
		v, ok := attr(s, "db.system")
		return s.Kind == 3 && ok && v.Str == "postgresql"
	})},
	{`{ name =~ ".*Cart.*" }`, each(func(_ *oTrace, s *storage.Span) bool { return strings.Contains(s.Name, "Cart") })},
	{`{ span.app.user.id < 100 && kind = server }`, each(func(_ *oTrace, s *storage.Span) bool {
		n, ok := intAttr(s, "app.user.id")
		return ok && n < 100 && s.Kind == 2
	})},
	{`{ .app.user.id = 7 || resource.service.name = "email" }`, each(func(_ *oTrace, s *storage.Span) bool {
		n, ok := intAttr(s, "app.user.id")
		return ok && n == 7 || svc(s) == "email"
	})},
	{`{ event:name = "exception" && event.exception.type != nil }`, each(func(_ *oTrace, s *storage.Span) bool {
		for _, e := range s.Events {
			if _, ok := e.Attrs.Get("exception.type"); ok && e.Name == "exception" {
				return true
			}
		}
		return false
	})},
	{`{ resource.service.name = "frontend" } >> { status = error }`, each(func(t *oTrace, s *storage.Span) bool {
		return s.StatusCode == storage.StatusError && slices.ContainsFunc(t.ancestors(s), func(a *storage.Span) bool { return svc(a) == "frontend" })
	})},
	{`{ resource.service.name = "checkout" } > { kind = server }`, each(func(t *oTrace, s *storage.Span) bool {
		p := t.parent(s)
		return s.Kind == 2 && p != nil && svc(p) == "checkout"
	})},
	{`{ kind = client } ~ { kind = client && status = error }`, each(func(t *oTrace, s *storage.Span) bool {
		if s.Kind != 3 || s.StatusCode != storage.StatusError || s.ParentSpanID.IsEmpty() {
			return false
		}
		for _, o := range t.spans {
			if o != s && o.Kind == 3 && o.ParentSpanID == s.ParentSpanID {
				return true
			}
		}
		return false
	})},
	{`{ status = error } !>> { status = error }`, each(func(t *oTrace, s *storage.Span) bool {
		return s.StatusCode == storage.StatusError && !slices.ContainsFunc(t.ancestors(s), func(a *storage.Span) bool { return a.StatusCode == storage.StatusError })
	})},
	{`{ resource.service.name = "payment" } || { resource.service.name = "email" }`, each(func(_ *oTrace, s *storage.Span) bool {
		return svc(s) == "payment" || svc(s) == "email"
	})},
	{`{ resource.service.name = "cart" } && { resource.service.name = "currency" }`, func(t *oTrace) []*storage.Span {
		c := each(func(_ *oTrace, s *storage.Span) bool { return svc(s) == "cart" })(t)
		u := each(func(_ *oTrace, s *storage.Span) bool { return svc(s) == "currency" })(t)
		if len(c) == 0 || len(u) == 0 {
			return nil
		}
		return append(c, u...)
	}},
	{`{ rootServiceName = "frontend" && span:childCount = 0 && duration > 5ms }`, each(func(t *oTrace, s *storage.Span) bool {
		return t.root != nil && svc(t.root) == "frontend" && t.childs[s.SpanID] == 0 && s.Duration() > 5e6
	})},
	{`{ traceDuration > 10ms && span:parentID = nil }`, each(func(t *oTrace, s *storage.Span) bool {
		return t.end-t.start > 10e6 && s.ParentSpanID.IsEmpty()
	})},
	{`{ } | count() > 17`, func(t *oTrace) []*storage.Span {
		if len(t.spans) > 17 {
			return t.spans
		}
		return nil
	}},
	{`{ status = error } | by(resource.service.name) | count() >= 2`, func(t *oTrace) []*storage.Span {
		groups := map[string][]*storage.Span{}
		for _, s := range t.spans {
			if s.StatusCode == storage.StatusError {
				groups[svc(s)] = append(groups[svc(s)], s)
			}
		}
		var out []*storage.Span
		for _, g := range groups {
			if len(g) >= 2 {
				out = append(out, g...)
			}
		}
		return out
	}},
	{`{ kind = server } | avg(duration) > 3ms`, func(t *oTrace) []*storage.Span {
		var sum, n int64
		var out []*storage.Span
		for _, s := range t.spans {
			if s.Kind == 2 {
				sum += s.Duration()
				n++
				out = append(out, s)
			}
		}
		if n == 0 || float64(sum)/float64(n) <= 3e6 {
			return nil
		}
		return out
	}},
}

type metricsCase struct {
	query string
	// oracle returns series keyed by their label text, one value per step.
	oracle func(d *dataset, start, step int64, n int) map[string][]float64
}

// bucketed builds a counting or measuring oracle over selected spans.
func bucketed(sel func(t *oTrace, s *storage.Span) bool, key func(s *storage.Span) string, agg func(vals []float64) float64, val func(s *storage.Span) float64) func(*dataset, int64, int64, int) map[string][]float64 {
	return func(d *dataset, start, step int64, n int) map[string][]float64 {
		vals := map[string][][]float64{}
		for id := range d.traces {
			t := d.trace(id)
			for _, s := range t.spans {
				if !sel(t, s) || s.StartUnixNano < start || s.StartUnixNano >= start+int64(n)*step {
					continue
				}
				k := key(s)
				if vals[k] == nil {
					vals[k] = make([][]float64, n)
				}
				b := (s.StartUnixNano - start) / step
				vals[k][b] = append(vals[k][b], val(s))
			}
		}
		out := map[string][]float64{}
		for k, bs := range vals {
			row := make([]float64, n)
			for i, b := range bs {
				row[i] = agg(b)
			}
			out[k] = row
		}
		return out
	}
}

func count(v []float64) float64 { return float64(len(v)) }
func maxOf(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	return slices.Max(v)
}
func one(*storage.Span) float64       { return 1 }
func seconds(s *storage.Span) float64 { return float64(s.Duration()) / 1e9 }
func bySvc(s *storage.Span) string    { return "resource.service.name=" + svc(s) }
func noKey(fn string) func(*storage.Span) string {
	return func(*storage.Span) string { return "__name__=" + fn }
}

// quantile interpolates between closest ranks (numpy's default method).
func quantile(q float64) func([]float64) float64 {
	return func(v []float64) float64 {
		if len(v) == 0 {
			return math.NaN()
		}
		s := slices.Clone(v)
		sort.Float64s(s)
		pos := q * float64(len(s)-1)
		i := int(pos)
		if i+1 >= len(s) {
			return s[i]
		}
		return s[i] + (s[i+1]-s[i])*(pos-float64(i))
	}
}

// percentOf is the oracle of metrics arithmetic: 100 × num / den for the
// series num has, with no value where den is 0.
func percentOf(num, den func(*dataset, int64, int64, int) map[string][]float64) func(*dataset, int64, int64, int) map[string][]float64 {
	return func(d *dataset, start, step int64, n int) map[string][]float64 {
		a, b := num(d, start, step, n), den(d, start, step, n)
		out := map[string][]float64{}
		for k, row := range a {
			r := make([]float64, n)
			for i, v := range row {
				r[i] = math.NaN()
				if b[k] != nil && b[k][i] != 0 {
					r[i] = 100 * v / b[k][i]
				}
			}
			out[k] = r
		}
		return out
	}
}

func isError(_ *oTrace, s *storage.Span) bool { return s.StatusCode == storage.StatusError }
func anySpan(*oTrace, *storage.Span) bool     { return true }

var metricsCases = []metricsCase{
	{`({ status = error } | count_over_time() by (resource.service.name)) / ({ } | count_over_time() by (resource.service.name)) * 100`,
		percentOf(bucketed(isError, bySvc, count, one), bucketed(anySpan, bySvc, count, one))},
	{`{ status = error } | count_over_time() by (resource.service.name)`,
		bucketed(func(_ *oTrace, s *storage.Span) bool { return s.StatusCode == storage.StatusError }, bySvc, count, one)},
	{`{ kind = server } | rate() by (resource.service.name)`,
		bucketed(func(_ *oTrace, s *storage.Span) bool { return s.Kind == 2 }, bySvc, func(v []float64) float64 { return float64(len(v)) / 0.1 }, one)},
	{`{ resource.service.name = "frontend" && kind = server } | quantile_over_time(duration, 0.9)`,
		bucketed(func(_ *oTrace, s *storage.Span) bool { return svc(s) == "frontend" && s.Kind == 2 }, func(*storage.Span) string { return "__name__=quantile_over_time p=0.9" }, quantile(0.9), seconds)},
	{`{ } | max_over_time(duration) by (resource.service.name)`,
		bucketed(func(*oTrace, *storage.Span) bool { return true }, bySvc, maxOf, seconds)},
	{`{ resource.service.name = "frontend" } >> { status = error } | count_over_time()`,
		bucketed(func(t *oTrace, s *storage.Span) bool {
			return s.StatusCode == storage.StatusError && slices.ContainsFunc(t.ancestors(s), func(a *storage.Span) bool { return svc(a) == "frontend" })
		}, noKey("count_over_time"), count, one)},
}

func TestEvalOverStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	bucket, err := objstore.OpenFilesystem(filepath.Join(dir, "blocks"))
	require.NoError(t, err)
	db, err := store.Open(ctx, store.Options{Dir: dir, Bucket: bucket, CompactionInterval: -1, MaxBlockDuration: time.Hour, CompactMinBlocks: 2, RowGroupRows: 1000})
	require.NoError(t, err)
	defer db.Close()

	d := &dataset{traces: map[storage.TraceID][]*storage.Span{}}
	gen := workload.New(42, t0, workload.Options{})
	for range 4 {
		td, ld := gen.Batch(150)
		require.NoError(t, db.AppendTraces(td))
		require.NoError(t, db.AppendLogs(ld))
		for _, s := range storage.AppendTraces(nil, td) {
			d.traces[s.TraceID] = append(d.traces[s.TraceID], &s)
		}
	}

	check := func(phase string) {
		q, err := db.Querier(ctx)
		require.NoError(t, err)
		defer q.Close()
		for _, c := range searchCases {
			checkSearch(t, phase, q, d, c)
		}
		// Each metrics query runs without a cache, then twice with one:
		// the first fills it with the blocks' partial series, the second
		// answers from them, and all three must equal the oracle.
		cache := traceql.NewMetricsCache(8 << 20)
		for _, c := range metricsCases {
			checkMetrics(t, phase, q, d, c, nil)
			checkMetrics(t, phase+" (cache filled)", q, d, c, cache)
			checkMetrics(t, phase+" (from cache)", q, d, c, cache)
		}
		if phase != "head" {
			require.NotZero(t, cache.Len(), "%s: no block was cached", phase)
		}
	}
	check("head")
	require.NoError(t, db.Flush(ctx))
	require.Equal(t, 0, db.Stats().HeadSpans)
	check("blocks")
	// Four more flushes of re-sent (duplicate) data make blocks for
	// compaction to merge and deduplicate.
	for i := range 3 {
		td, _ := workload.New(42, t0, workload.Options{}).Batch(150 * (i + 1))
		require.NoError(t, db.AppendTraces(td))
		require.NoError(t, db.Flush(ctx))
	}
	before := len(db.BlockMetas())
	db.Compact(ctx)
	require.Less(t, len(db.BlockMetas()), before, "compaction merged nothing")
	check("compacted")
}

func checkSearch(t *testing.T, phase string, q storage.Querier, d *dataset, c searchCase) {
	t.Helper()
	want := map[string][]string{}
	for id := range d.traces {
		if spans := c.oracle(d.trace(id)); len(spans) > 0 {
			var ids []string
			for _, s := range spans {
				ids = append(ids, s.SpanID.String())
			}
			slices.Sort(ids)
			want[id.String()] = slices.Compact(ids)
		}
	}
	require.NotEmpty(t, want, "%s: the dataset has no match for %s; the case tests nothing", phase, c.query)
	pq, err := traceql.Parse(c.query)
	require.NoError(t, err)
	res, err := traceql.Search(context.Background(), q, traceql.SearchRequest{Query: pq, Limit: 1 << 20})
	require.NoError(t, err)
	got := map[string][]string{}
	for _, tr := range res.Traces {
		var ids []string
		for _, ss := range tr.Spansets {
			for _, sp := range ss.Spans {
				ids = append(ids, sp.SpanID.String())
			}
		}
		slices.Sort(ids)
		got[tr.TraceID.String()] = slices.Compact(ids)
	}
	require.Equal(t, len(want), len(got), "%s: %s: trace count", phase, c.query)
	require.Equal(t, want, got, "%s: %s", phase, c.query)
}

func checkMetrics(t *testing.T, phase string, q storage.Querier, d *dataset, c metricsCase, cache *traceql.MetricsCache) {
	t.Helper()
	start, step, n := t0.UnixNano(), int64(100*time.Millisecond), 30
	want := c.oracle(d, start, step, n)
	require.NotEmpty(t, want, "%s: %s: no data", phase, c.query)
	pq, err := traceql.Parse(c.query)
	require.NoError(t, err)
	res, err := traceql.Metrics(context.Background(), q, traceql.MetricsRequest{Query: pq, Start: start, End: start + int64(n)*step, Step: step, Cache: cache})
	require.NoError(t, err)
	got := map[string][]float64{}
	for _, s := range res.Series {
		var ks []string
		for _, l := range s.Labels {
			ks = append(ks, l.Key+"="+l.Value.Text())
		}
		row := make([]float64, n)
		for i := range row {
			row[i] = math.NaN()
		}
		for _, p := range s.Samples {
			row[(p.TimestampMs*1e6-start)/step] = p.Value
		}
		got[strings.Join(ks, " ")] = row
	}
	require.Equal(t, len(want), len(got), "%s: %s: series %v vs %v", phase, c.query, keys(want), keys(got))
	for k, w := range want {
		g, ok := got[k]
		require.True(t, ok, "%s: %s: missing series %s", phase, c.query, k)
		for i := range w {
			wv, gv := w[i], g[i]
			// Count-type series report 0 for empty steps; the oracle's
			// NaN-free counts agree with that.
			if math.IsNaN(wv) && math.IsNaN(gv) {
				continue
			}
			require.InDelta(t, wv, gv, 1e-9, "%s: %s: series %s step %d", phase, c.query, k, i)
		}
	}
}

func keys(m map[string][]float64) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
