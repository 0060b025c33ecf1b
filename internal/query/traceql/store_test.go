package traceql_test

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/query/traceql"
	"github.com/sightlinehq/sightline/internal/store"
	"github.com/sightlinehq/sightline/internal/store/block"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/workload"
)

// The evaluation suite runs TraceQL over the real store on a generated
// dataset. Expected results come from the oracles below: plain Go over the
// generated spans, sharing no code with the engine. The same queries run
// while the data sits in the head, after it is flushed into blocks of
// format 1 (no trace table) and of format 2 (answered from trace tables
// where a trace is in one block), and after blocks of both formats are
// compacted, and must give the same answers: the matching spans, and each
// trace's root, extent and spans per service as the whole trace has them.

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
	d := &dataset{traces: map[storage.TraceID][]*storage.Span{}}
	batches := func() []ptrace.Traces {
		gen := workload.New(42, t0, workload.Options{})
		var out []ptrace.Traces
		for range 4 {
			td, _ := gen.Batch(150)
			out = append(out, td)
		}
		return out
	}
	for _, td := range batches() {
		for _, s := range storage.AppendTraces(nil, td) {
			d.traces[s.TraceID] = append(d.traces[s.TraceID], &s)
		}
	}
	open := func(dir string, format int) *store.DB {
		bucket, err := objstore.OpenFilesystem(filepath.Join(dir, "blocks"))
		require.NoError(t, err)
		db, err := store.Open(ctx, store.Options{Dir: dir, Bucket: bucket, CompactionInterval: -1, MaxBlockDuration: time.Hour,
			CompactMinBlocks: 2, RowGroupRows: 1000, BlockFormat: format})
		require.NoError(t, err)
		return db
	}
	// check runs every case; summarized says whether searches must have
	// answered some traces from trace tables, or none. Metrics are
	// checked where no span is stored twice (see the duplicates phase).
	check := func(db *store.DB, phase string, summarized, metrics bool) {
		sq, err := db.Querier(ctx)
		require.NoError(t, err)
		defer sq.Close()
		q := &countingQuerier{Querier: sq}
		for _, c := range searchCases {
			checkSearch(t, phase, q, d, c)
		}
		if summarized {
			require.NotZero(t, q.summarized, "%s: no trace was answered from a trace table", phase)
		} else {
			require.Zero(t, q.summarized, "%s: traces answered from trace tables", phase)
		}
		// Each metrics query runs without a cache, then twice with one:
		// the first fills it with the blocks' partial series, the second
		// answers from them, and all three must equal the oracle.
		if !metrics {
			return
		}
		cache := traceql.NewMetricsCache(8 << 20)
		for _, c := range metricsCases {
			checkMetrics(t, phase, sq, d, c, nil)
			checkMetrics(t, phase+" (cache filled)", sq, d, c, cache)
			checkMetrics(t, phase+" (from cache)", sq, d, c, cache)
		}
		if phase != "head" {
			require.NotZero(t, cache.Len(), "%s: no block was cached", phase)
		}
	}

	// Format 1 blocks, as an older build wrote them.
	dir := t.TempDir()
	db := open(dir, 1)
	for _, td := range batches() {
		require.NoError(t, db.AppendTraces(td))
	}
	check(db, "head", false, true)
	require.NoError(t, db.Flush(ctx))
	require.Equal(t, 0, db.Stats().HeadSpans)
	for _, m := range db.BlockMetas() {
		require.Equal(t, 1, m.Format)
	}
	check(db, "format 1 blocks", false, true)
	require.NoError(t, db.Close())

	// Format 2 and 3 blocks of the same data, each in a store of its own.
	for _, format := range []int{2, 0} {
		db := open(t.TempDir(), format)
		for _, td := range batches() {
			require.NoError(t, db.AppendTraces(td))
		}
		require.NoError(t, db.Flush(ctx))
		for _, m := range db.BlockMetas() {
			require.Equal(t, cmp.Or(format, block.FormatVersion), m.Format)
		}
		check(db, fmt.Sprintf("format %d blocks", cmp.Or(format, block.FormatVersion)), true, true)
		require.NoError(t, db.Close())
	}

	// The format 1 store reopened by a build held at format 2, then by
	// this one: flushes of re-sent (duplicate) data make format 2 and 3
	// blocks for compaction to merge with the format 1 ones and
	// deduplicate.
	db = open(dir, 2)
	td, _ := workload.New(42, t0, workload.Options{}).Batch(150)
	require.NoError(t, db.AppendTraces(td))
	require.NoError(t, db.Flush(ctx))
	require.NoError(t, db.Close())
	db = open(dir, 0)
	defer db.Close()
	for i := range 2 {
		td, _ := workload.New(42, t0, workload.Options{}).Batch(150 * (i + 2))
		require.NoError(t, db.AppendTraces(td))
		require.NoError(t, db.Flush(ctx))
	}
	formats := map[int]bool{}
	for _, m := range db.BlockMetas() {
		formats[m.Format] = true
	}
	require.Equal(t, map[int]bool{1: true, 2: true, block.FormatVersion: true}, formats)
	// Searches deduplicate spans stored twice; metrics count them twice
	// until compaction merges them.
	check(db, "format 1, 2 and 3 blocks, duplicates", false, false)
	before := len(db.BlockMetas())
	db.Compact(ctx)
	require.Less(t, len(db.BlockMetas()), before, "compaction merged nothing")
	check(db, "compacted", true, true)
}

// countingQuerier counts the traces the store summarized.
type countingQuerier struct {
	storage.Querier
	summarized int
}

func (q *countingQuerier) TraceSummaries(ctx context.Context, ids []storage.TraceID, fn func(*storage.TraceSummary)) error {
	return q.Querier.(storage.TraceSummarizer).TraceSummaries(ctx, ids, func(s *storage.TraceSummary) {
		q.summarized++
		fn(s)
	})
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
	// Each search runs twice, accounted as the API accounts a query: the
	// second run reads the pages the first kept in the store's page
	// cache.
	passes := []string{"", " (pages cached)"}
	var res *traceql.SearchResult
	for _, pass := range passes {
		ctx := storage.WithStats(context.Background(), &storage.Stats{})
		res, err = traceql.Search(ctx, q, traceql.SearchRequest{Query: pq, Limit: 1 << 20})
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
		require.Equal(t, len(want), len(got), "%s%s: %s: trace count", phase, pass, c.query)
		require.Equal(t, want, got, "%s%s: %s", phase, pass, c.query)
	}
	for _, tr := range res.Traces {
		checkTraceLevel(t, phase+": "+c.query, d.trace(tr.TraceID), tr)
	}

	// As Tempo's API asks: three spans per spanset. A spanwise search
	// then answers traces from their summaries where the store has them;
	// the spans shown are the first three matches in span order, and
	// the match count is all of them.
	for _, pass := range passes {
		ctx := storage.WithStats(context.Background(), &storage.Stats{})
		res, err = traceql.Search(ctx, q, traceql.SearchRequest{Query: pq, Limit: 1 << 20, SpansPerSpanset: 3})
		require.NoError(t, err)
		checkSpanLimited(t, phase+pass, c.query, d, want, res)
	}
}

// checkSpanLimited checks a search for three spans per spanset: each
// result's trace level, its matches and the first three it shows.
func checkSpanLimited(t *testing.T, phase, query string, d *dataset, want map[string][]string, res *traceql.SearchResult) {
	t.Helper()
	require.Len(t, res.Traces, len(want), "%s: %s: trace count, 3 spans per spanset", phase, query)
	for _, tr := range res.Traces {
		what := phase + ": " + query + ", 3 spans per spanset"
		checkTraceLevel(t, what, d.trace(tr.TraceID), tr)
		matched := want[tr.TraceID.String()]
		require.NotNil(t, matched, "%s: trace %s does not match", what, tr.TraceID)
		if len(tr.Spansets) != 1 {
			continue // by() groups: covered by the full answer above
		}
		ss := tr.Spansets[0]
		require.Equal(t, len(matched), ss.Matched, "%s: trace %s: matched spans", what, tr.TraceID)
		var first []*storage.Span
		for _, s := range d.trace(tr.TraceID).spans {
			if slices.Contains(matched, s.SpanID.String()) {
				first = append(first, s)
			}
		}
		slices.SortFunc(first, func(a, b *storage.Span) int {
			if a.StartUnixNano != b.StartUnixNano {
				return cmp.Compare(a.StartUnixNano, b.StartUnixNano)
			}
			return slices.Compare(a.SpanID[:], b.SpanID[:])
		})
		first = slices.CompactFunc(first, func(a, b *storage.Span) bool { return a.SpanID == b.SpanID })
		var wantIDs, gotIDs []string
		for _, s := range first[:min(3, len(first))] {
			wantIDs = append(wantIDs, s.SpanID.String())
		}
		for _, s := range ss.Spans {
			gotIDs = append(gotIDs, s.SpanID.String())
		}
		require.Equal(t, wantIDs, gotIDs, "%s: trace %s: spans shown", what, tr.TraceID)
	}
}

// checkTraceLevel compares what a result says of its whole trace with
// the trace itself: root, extent, and spans and errors per service.
func checkTraceLevel(t *testing.T, what string, o *oTrace, tr traceql.TraceResult) {
	t.Helper()
	spans := slices.Clone(o.spans)
	slices.SortFunc(spans, func(a, b *storage.Span) int {
		if a.StartUnixNano != b.StartUnixNano {
			return cmp.Compare(a.StartUnixNano, b.StartUnixNano)
		}
		return slices.Compare(a.SpanID[:], b.SpanID[:])
	})
	rootSvc, rootName := traceql.NoRoot, traceql.NoRoot
	if i := slices.IndexFunc(spans, func(s *storage.Span) bool { return s.ParentSpanID.IsEmpty() }); i >= 0 {
		rootSvc, rootName = svc(spans[i]), spans[i].Name
	}
	stats := map[string]traceql.ServiceStats{}
	for _, s := range spans {
		st := stats[svc(s)]
		st.SpanCount++
		if s.StatusCode == storage.StatusError {
			st.ErrorCount++
		}
		stats[svc(s)] = st
	}
	require.Equal(t, rootSvc, tr.RootService, "%s: trace %s: root service", what, tr.TraceID)
	require.Equal(t, rootName, tr.RootName, "%s: trace %s: root name", what, tr.TraceID)
	require.Equal(t, o.start, tr.Start, "%s: trace %s: start", what, tr.TraceID)
	require.Equal(t, o.end-o.start, tr.Duration, "%s: trace %s: duration", what, tr.TraceID)
	require.Equal(t, stats, tr.ServiceStats, "%s: trace %s: spans per service", what, tr.TraceID)
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

// flushedStore is a store holding 600 workload traces in format 2
// blocks, and the traces.
func flushedStore(t *testing.T) (*store.DB, ptrace.Traces) {
	t.Helper()
	ctx := context.Background()
	db := openTestStore(t)
	td, _ := workload.New(42, t0, workload.Options{}).Batch(600)
	require.NoError(t, db.AppendTraces(td))
	require.NoError(t, db.Flush(ctx))
	return db, td
}

// openTestStore opens an empty store that compacts nothing, with row
// groups of 1,000 spans; it is closed when the test ends.
func openTestStore(t *testing.T) *store.DB {
	t.Helper()
	dir := t.TempDir()
	bucket, err := objstore.OpenFilesystem(filepath.Join(dir, "blocks"))
	require.NoError(t, err)
	db, err := store.Open(context.Background(), store.Options{Dir: dir, Bucket: bucket, CompactionInterval: -1, MaxBlockDuration: time.Hour, RowGroupRows: 1000})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// plainQuerier hides the store's trace summaries: every candidate trace
// is assembled from its spans.
type plainQuerier struct{ storage.Querier }

// A search over a time range finds traces by the spans that start inside
// it, but a result shows all of its trace's matches, inside the range or
// not, whether it is answered from a summary or assembled.
func TestSearchSummariesInTimeRange(t *testing.T) {
	ctx := context.Background()
	db, td := flushedStore(t)
	spans := storage.AppendTraces(nil, td)
	lo, hi := spans[0].StartUnixNano, spans[0].EndUnixNano
	for _, s := range spans {
		lo, hi = min(lo, s.StartUnixNano), max(hi, s.EndUnixNano)
	}
	start, end := lo+(hi-lo)/3, lo+2*(hi-lo)/3

	sq, err := db.Querier(ctx)
	require.NoError(t, err)
	defer sq.Close()
	counted := &countingQuerier{Querier: sq}
	for _, query := range []string{`{ }`, `{ status = error }`, `{ resource.service.name = "checkout" && duration > 1ms }`, `{ kind = server }`} {
		pq, err := traceql.Parse(query)
		require.NoError(t, err)
		req := traceql.SearchRequest{Query: pq, Start: start, End: end, Limit: 1 << 20, SpansPerSpanset: 3}
		got, err := traceql.Search(ctx, counted, req)
		require.NoError(t, err)
		want, err := traceql.Search(ctx, plainQuerier{sq}, req)
		require.NoError(t, err)
		require.NotEmpty(t, want.Traces, query)
		byID := func(a, b traceql.TraceResult) int { return slices.Compare(a.TraceID[:], b.TraceID[:]) }
		slices.SortFunc(got.Traces, byID)
		slices.SortFunc(want.Traces, byID)
		require.Equal(t, want.Traces, got.Traces, query)
	}
	require.NotZero(t, counted.summarized, "no trace was answered from its summary")
}

// Trace-level conditions rule candidates out by the trace tables'
// summaries: fewer traces are assembled, and the answer is the same.
func TestTraceConditionsPruneCandidates(t *testing.T) {
	ctx := context.Background()
	db, _ := flushedStore(t)
	sq, err := db.Querier(ctx)
	require.NoError(t, err)
	defer sq.Close()
	for _, query := range []string{
		`{ traceDuration > 40ms && status = error }`,
		`{ rootServiceName = "frontend" && rootName != "GET /" } >> { status = error }`,
		`{ kind = server } !>> { traceDuration < 40ms && status = error }`,
	} {
		pq, err := traceql.Parse(query)
		require.NoError(t, err)
		req := traceql.SearchRequest{Query: pq, Limit: 1 << 20, SpansPerSpanset: 3}
		got, err := traceql.Search(ctx, sq, req)
		require.NoError(t, err)
		want, err := traceql.Search(ctx, plainQuerier{sq}, req)
		require.NoError(t, err)
		byID := func(a, b traceql.TraceResult) int { return slices.Compare(a.TraceID[:], b.TraceID[:]) }
		slices.SortFunc(got.Traces, byID)
		slices.SortFunc(want.Traces, byID)
		require.NotEmpty(t, want.Traces, "%s matches nothing; the case tests little", query)
		require.Equal(t, want.Traces, got.Traces, query)
		require.Less(t, got.InspectedTraces, want.InspectedTraces, "%s: the summaries ruled out no candidate", query)
	}
}

// A search whose filter requires a long trace takes its first candidates
// from the trace tables: with a small limit it answers with matching
// traces, each as the full search shows it, without scanning spans for
// candidates, which the search without the tables must.
func TestTraceTablesFindLongTraces(t *testing.T) {
	ctx := context.Background()
	db, _ := flushedStore(t)
	sq, err := db.Querier(ctx)
	require.NoError(t, err)
	defer sq.Close()
	const query = `{ traceDuration > 15ms && status = error }`
	pq, err := traceql.Parse(query)
	require.NoError(t, err)
	all, err := traceql.Search(ctx, plainQuerier{sq}, traceql.SearchRequest{Query: pq, Limit: 1 << 20, SpansPerSpanset: 3})
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(all.Traces), 6, "too few matches for a limit of 3 to test anything")
	byID := map[storage.TraceID]traceql.TraceResult{}
	for _, tr := range all.Traces {
		byID[tr.TraceID] = tr
	}
	req := traceql.SearchRequest{Query: pq, Limit: 3, SpansPerSpanset: 3}
	counted := &scanCountingQuerier{Querier: sq}
	got, err := traceql.Search(ctx, counted, req)
	require.NoError(t, err)
	require.Len(t, got.Traces, 3)
	for _, tr := range got.Traces {
		want, ok := byID[tr.TraceID]
		require.True(t, ok, "%s is not a match", tr.TraceID)
		require.Equal(t, want, tr)
	}
	require.Zero(t, counted.scans, "spans were scanned for candidates")
	require.NotZero(t, counted.lookups, "the candidates' spans were not checked")

	plain := &scanCountingQuerier{Querier: plainQuerier{sq}}
	_, err = traceql.Search(ctx, plain, req)
	require.NoError(t, err)
	require.NotZero(t, plain.scans, "without the tables, the search scans for candidates")
}

// scanCountingQuerier counts span queries that scan (no trace IDs) and
// those that look traces up, passing the trace tables through when the
// querier it wraps has them.
type scanCountingQuerier struct {
	storage.Querier
	scans, lookups int
}

func (q *scanCountingQuerier) Spans(ctx context.Context, sq *storage.SpanQuery, fn func(*storage.Span) bool) error {
	if len(sq.TraceIDs) == 0 && sq.TraceID.IsEmpty() {
		q.scans++
	} else {
		q.lookups++
	}
	return q.Querier.Spans(ctx, sq, fn)
}

func (q *scanCountingQuerier) FindTraces(ctx context.Context, f *storage.TraceFilter, fn func(storage.TraceID) bool) error {
	tf, ok := q.Querier.(storage.TraceFinder)
	if !ok {
		return nil
	}
	return tf.FindTraces(ctx, f, fn)
}

func (q *scanCountingQuerier) TraceSummaries(ctx context.Context, ids []storage.TraceID, fn func(*storage.TraceSummary)) error {
	ts, ok := q.Querier.(storage.TraceSummarizer)
	if !ok {
		return nil
	}
	return ts.TraceSummaries(ctx, ids, fn)
}

// A trace split between two blocks, each part too short for the filter,
// is not in either block's trace table as a long trace; the scan for
// candidates that follows the tables still finds it.
func TestTraceTablesMissSplitTraces(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	bucket, err := objstore.OpenFilesystem(filepath.Join(dir, "blocks"))
	require.NoError(t, err)
	db, err := store.Open(ctx, store.Options{Dir: dir, Bucket: bucket, CompactionInterval: -1, MaxBlockDuration: time.Hour})
	require.NoError(t, err)
	defer db.Close()
	split := storage.TraceID{1, 2, 3}
	whole := storage.TraceID{4, 5, 6}
	part := func(id storage.TraceID, span byte, parent byte, at time.Duration, status ptrace.StatusCode) ptrace.Traces {
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", "checkout")
		s := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		s.SetTraceID([16]byte(id))
		s.SetSpanID([8]byte{span})
		if parent != 0 {
			s.SetParentSpanID([8]byte{parent})
		}
		s.SetName("op")
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(t0.Add(at)))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(t0.Add(at + 10*time.Millisecond)))
		s.Status().SetCode(status)
		return td
	}
	// Block 1: the split trace's error root (10 ms) and a whole long trace.
	require.NoError(t, db.AppendTraces(part(split, 1, 0, 0, ptrace.StatusCodeError)))
	require.NoError(t, db.AppendTraces(part(whole, 1, 0, 0, ptrace.StatusCodeError)))
	require.NoError(t, db.AppendTraces(part(whole, 2, 1, 90*time.Millisecond, ptrace.StatusCodeUnset)))
	require.NoError(t, db.Flush(ctx))
	// Block 2: the split trace's child, 100 ms later: 110 ms in all.
	require.NoError(t, db.AppendTraces(part(split, 2, 1, 100*time.Millisecond, ptrace.StatusCodeUnset)))
	require.NoError(t, db.Flush(ctx))

	sq, err := db.Querier(ctx)
	require.NoError(t, err)
	defer sq.Close()
	var tableIDs []storage.TraceID
	require.NoError(t, sq.(storage.TraceFinder).FindTraces(ctx, &storage.TraceFilter{MinDuration: 50 * int64(time.Millisecond), Errors: true}, func(id storage.TraceID) bool {
		tableIDs = append(tableIDs, id)
		return true
	}))
	require.Equal(t, []storage.TraceID{whole}, tableIDs, "only the whole trace is long in a table")

	pq, err := traceql.Parse(`{ traceDuration > 50ms && status = error }`)
	require.NoError(t, err)
	res, err := traceql.Search(ctx, sq, traceql.SearchRequest{Query: pq, Limit: 20})
	require.NoError(t, err)
	var got []storage.TraceID
	for _, tr := range res.Traces {
		got = append(got, tr.TraceID)
	}
	slices.SortFunc(got, func(a, b storage.TraceID) int { return slices.Compare(a[:], b[:]) })
	require.Equal(t, []storage.TraceID{split, whole}, got)
}

// noFloor hides the search's floor from the store, which then reads
// every block in range.
type noFloor struct{ storage.Querier }

func (q noFloor) Spans(ctx context.Context, sq *storage.SpanQuery, fn func(*storage.Span) bool) error {
	c := *sq
	c.Floor = nil
	return q.Querier.Spans(ctx, &c, fn)
}

// A search raises the store's floor to the oldest of the traces it would
// answer with, and the store skips the blocks below it: a most_recent
// search over blocks of four different hours reads the newest ones only,
// and answers exactly as it does reading them all. Summaries are hidden
// from both sides (noFloor hides them too), so that only the floor
// differs.
func TestSearchFloorSkipsOlderBlocks(t *testing.T) {
	ctx := context.Background()
	db := openTestStore(t)
	for h := range 4 {
		td, _ := workload.New(uint64(h), t0.Add(time.Duration(h)*time.Hour), workload.Options{}).Batch(150)
		require.NoError(t, db.AppendTraces(td))
		require.NoError(t, db.Flush(ctx))
	}
	require.GreaterOrEqual(t, len(db.BlockMetas()), 4)
	sq, err := db.Querier(ctx)
	require.NoError(t, err)
	defer sq.Close()
	for _, c := range []struct {
		query string
		limit int
	}{
		{`{ status = error } with(most_recent=true)`, 20},
		{`{ kind = server } with(most_recent=true)`, 50},
		{`{ span.http.request.method = "POST" } with(most_recent=true)`, 10},
		{`{ resource.service.name = "checkout" && duration > 1ms } with(most_recent=true)`, 5},
		{`{ }`, 20},
	} {
		pq, err := traceql.Parse(c.query)
		require.NoError(t, err)
		req := traceql.SearchRequest{Query: pq, Limit: c.limit, SpansPerSpanset: 3}
		got, err := traceql.Search(ctx, plainQuerier{sq}, req)
		require.NoError(t, err)
		want, err := traceql.Search(ctx, noFloor{sq}, req)
		require.NoError(t, err)
		require.Len(t, want.Traces, c.limit, c.query)
		require.Equal(t, want.Traces, got.Traces, c.query)
		if strings.Contains(c.query, "most_recent") {
			require.Less(t, got.InspectedSpans*2, want.InspectedSpans, "%s: the older blocks were read", c.query)
		}
	}
}
