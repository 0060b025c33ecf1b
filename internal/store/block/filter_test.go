package block

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// TestSpansMatchOracle checks the pushed-down column predicates against
// the query's own Match over the spans written: a predicate that dropped
// a matching row (a page skipped wrongly, a dictionary entry mistested, a
// bound misread) would lose a span here, which Match after the prefilter
// cannot catch. Row groups of 5,000 rows hold several pages per column,
// and each query runs in full and with the core projection.
func TestSpansMatchOracle(t *testing.T) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 3000)
	b := writeTestBlock(t, st, spans, 5000)
	first, last := spans[0].StartUnixNano, spans[0].StartUnixNano
	for _, s := range spans {
		first, last = min(first, s.StartUnixNano), max(last, s.StartUnixNano)
	}
	mid := first + (last-first)/2
	some := spans[len(spans)/3]
	ms := int64(time.Millisecond)
	// Traces from all over the block, sorted, with one that is not in it.
	var ids []storage.TraceID
	for i := 0; i < len(spans); i += len(spans) / 40 {
		ids = append(ids, spans[i].TraceID)
	}
	ids = append(ids, storage.TraceID{0xff, 0xff})
	slices.SortFunc(ids, func(a, b storage.TraceID) int { return slices.Compare(a[:], b[:]) })
	ids = slices.Compact(ids)
	queries := []storage.SpanQuery{
		{TraceIDs: ids},
		{TraceIDs: ids, HasStatus: true, Status: storage.StatusError},
		{TraceIDs: ids, TraceID: ids[0]},
		{ServiceName: "checkout"},
		{HasStatus: true, Status: storage.StatusError},
		{ServiceName: "checkout", HasStatus: true, Status: storage.StatusError, MinDuration: 5 * ms},
		{HasKind: true, Kind: storage.SpanKind(2), MaxDuration: 2 * ms},
		{Name: some.Name},
		{Start: mid, End: mid + (last-first)/10},
		{TraceID: some.TraceID},
		{TraceID: some.TraceID, Name: some.Name},
		{MinDuration: 10 * ms, MaxDuration: 20 * ms, ServiceName: some.Resource.ServiceName()},
	}
	byID := map[storage.SpanID]*storage.Span{}
	for i := range spans {
		byID[spans[i].SpanID] = &spans[i]
	}
	for _, q := range queries {
		var want []storage.SpanID
		for i := range spans {
			if q.Match(&spans[i]) {
				want = append(want, spans[i].SpanID)
			}
		}
		require.NotEmpty(t, want, "%+v matches nothing; the case tests nothing", q)
		slices.SortFunc(want, func(a, b storage.SpanID) int { return slices.Compare(a[:], b[:]) })
		for _, proj := range []storage.Projection{storage.ProjectAll, storage.ProjectCore} {
			q := q
			q.Projection = proj
			var got []storage.SpanID
			_, err := b.Spans(context.Background(), &q, func(s *storage.Span) bool {
				got = append(got, s.SpanID)
				// Start and end too: a core read takes them from the
				// values its prefilter decoded when it filtered on them.
				w := byID[s.SpanID]
				require.Equal(t, [2]int64{w.StartUnixNano, w.EndUnixNano}, [2]int64{s.StartUnixNano, s.EndUnixNano}, "%+v", q)
				return true
			})
			require.NoError(t, err)
			slices.SortFunc(got, func(a, b storage.SpanID) int { return slices.Compare(a[:], b[:]) })
			require.Equal(t, want, got, "%+v", q)
		}
	}
}

// TestSpansPruneByPageBounds checks that a duration no span reaches is
// decided by the column index alone: nothing is returned and no page is
// read.
func TestSpansPruneByPageBounds(t *testing.T) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 2000)
	b := writeTestBlock(t, st, spans, 5000)
	var longest int64
	for i := range spans {
		longest = max(longest, spans[i].Duration())
	}
	stats := &storage.Stats{}
	q := storage.SpanQuery{ServiceName: "checkout", HasStatus: true, Status: storage.StatusError, MinDuration: longest + 1}
	n := 0
	_, err = b.Spans(storage.WithStats(context.Background(), stats), &q, func(*storage.Span) bool { n++; return true })
	require.NoError(t, err)
	require.Zero(t, n)
	require.Zero(t, stats.BytesRead(), "every duration page is ruled out by its bounds")

	// Decided by the page index, the row groups cost no flag per row:
	// the usual miss of a search stays cheap on blocks of millions of
	// rows. A flag per row would allocate at least a byte per span.
	for _, proj := range []storage.Projection{storage.ProjectAll, storage.ProjectCore} {
		q := q
		q.Projection = proj
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 10 {
			_, err = b.Spans(context.Background(), &q, func(*storage.Span) bool { return true })
			require.NoError(t, err)
		}
		runtime.ReadMemStats(&after)
		perScan := (after.TotalAlloc - before.TotalAlloc) / 10
		require.Less(t, perScan, uint64(len(spans)/4), "bytes allocated by a scan that the page bounds decide (projection %v)", proj)
	}

	// One nanosecond less admits the longest span, and pages are read.
	q.MinDuration = longest
	_, err = b.Spans(storage.WithStats(context.Background(), stats), &q, func(*storage.Span) bool { return true })
	require.NoError(t, err)
	require.NotZero(t, stats.BytesRead())
}

// TestCoreFields reads a block with the core projection narrowed to some
// fields: those asked for equal a full read, the others stay empty, and
// fewer bytes are read. The positions of coreColumns must follow the
// CoreFields bits.
func TestCoreFields(t *testing.T) {
	require.Equal(t, storage.FieldService, storage.CoreFields(1)<<coreService)
	require.Equal(t, storage.FieldDuration, storage.CoreFields(1)<<coreDuration)
	require.Equal(t, storage.FieldTraceID, storage.CoreFields(1)<<coreTraceID)
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 2000)
	b := writeTestBlock(t, st, spans, 5000)
	full := map[storage.SpanID]storage.Span{}
	fullStats := &storage.Stats{}
	q := storage.SpanQuery{HasStatus: true, Status: storage.StatusError, Projection: storage.ProjectCore}
	_, err = b.Spans(storage.WithStats(context.Background(), fullStats), &q, func(s *storage.Span) bool { full[s.SpanID] = *s; return true })
	require.NoError(t, err)
	require.NotEmpty(t, full)

	q.Fields = storage.FieldSpanID | storage.FieldDuration | storage.FieldService
	stats := &storage.Stats{}
	n := 0
	_, err = b.Spans(storage.WithStats(context.Background(), stats), &q, func(s *storage.Span) bool {
		f, ok := full[s.SpanID]
		require.True(t, ok)
		require.Equal(t, f.StartUnixNano, s.StartUnixNano, "duration implies start")
		require.Equal(t, f.EndUnixNano, s.EndUnixNano)
		require.Equal(t, f.Resource.ServiceName(), s.Resource.ServiceName())
		require.True(t, s.TraceID.IsEmpty())
		require.Empty(t, s.Name)
		require.Zero(t, s.StatusCode, "the condition held, but the field was not asked for")
		n++
		return true
	})
	require.NoError(t, err)
	require.Equal(t, len(full), n)
	require.Less(t, stats.BytesRead(), fullStats.BytesRead())
}

// appendKept, countKept and keptIn must agree with a plain walk over the
// flags, for sparse and dense flags and lengths that are not a multiple of
// eight.
func TestKeptRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 7, 8, 9, 63, 1000} {
		for _, density := range []float64{0, 0.01, 0.5, 1} {
			keep := make([]bool, n)
			var want []int32
			for i := range keep {
				keep[i] = rng.Float64() < density
				if keep[i] {
					want = append(want, int32(i))
				}
			}
			got := appendKept([]int32{-1}, keep)
			require.Equal(t, append([]int32{-1}, want...), got, "n=%d density=%v", n, density)
			require.Equal(t, len(want), countKept(keep), "n=%d density=%v", n, density)
			got = got[1:]
			for range 20 {
				from := rng.IntN(n + 1)
				to := from + rng.IntN(n-from+1)
				var in []int32
				off := -1
				for j, r := range want {
					if int(r) >= from && int(r) < to {
						if off < 0 {
							off = j
						}
						in = append(in, r)
					}
				}
				j0, gotIn := keptIn(got, from, to)
				require.Equal(t, len(in), len(gotIn))
				if len(in) > 0 {
					require.Equal(t, in, gotIn)
					require.Equal(t, off, j0)
				}
			}
		}
	}
}

// Integer columns read alike whatever encoding their writer chose: the
// format leaves it to the writer, and Sightline's own blocks write kind
// and status_code PLAIN, so a dictionary-encoded one (another writer's,
// or a later one's) must not read as zeros.
func TestPageValuesIntEncodings(t *testing.T) {
	type plain struct {
		A int32 `parquet:"a"`
		B int64 `parquet:"b"`
	}
	type dict struct {
		A int32 `parquet:"a,dict"`
		B int64 `parquet:"b,dict"`
	}
	rng := rand.New(rand.NewPCG(1, 2))
	want := make([]plain, 3000)
	for i := range want {
		want[i] = plain{A: int32(rng.IntN(5)), B: rng.Int64N(7) - 3}
	}
	check := func(data []byte) {
		f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err)
		for col := range 2 {
			var pv pageValues
			pages := f.RowGroups()[0].ColumnChunks()[col].Pages()
			row := 0
			for {
				pg, err := pages.ReadPage()
				if err == io.EOF {
					break
				}
				require.NoError(t, err)
				pv.load(pg, nil)
				for k := range int(pg.NumRows()) {
					w := int64(want[row].A)
					if col == 1 {
						w = want[row].B
					}
					require.Equal(t, w, pv.int64At(k), "column %d row %d", col, row)
					row++
				}
			}
			require.NoError(t, pages.Close())
			require.Equal(t, len(want), row)
		}
	}
	var buf bytes.Buffer
	require.NoError(t, parquet.Write(&buf, want, parquet.PageBufferSize(1024)))
	check(buf.Bytes())
	d := make([]dict, len(want))
	for i, p := range want {
		d[i] = dict(p)
	}
	buf.Reset()
	require.NoError(t, parquet.Write(&buf, d, parquet.PageBufferSize(1024)))
	check(buf.Bytes())
}
