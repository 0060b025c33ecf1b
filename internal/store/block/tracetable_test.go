package block

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// oracleSummaries describes each trace of spans (deduplicated by trace,
// start and span ID, as blocks store them) the way a search result does,
// from the spans alone.
func oracleSummaries(spans []storage.Span) map[storage.TraceID]storage.TraceSummary {
	all := slices.Clone(spans)
	sortSpans(all)
	all = slices.CompactFunc(all, func(a, b storage.Span) bool { return CompareSpans(&a, &b) == 0 })
	out := map[storage.TraceID]storage.TraceSummary{}
	for _, s := range all {
		sum, ok := out[s.TraceID]
		if !ok {
			sum = storage.TraceSummary{TraceID: s.TraceID, Start: s.StartUnixNano, End: s.EndUnixNano}
		}
		sum.Start = min(sum.Start, s.StartUnixNano)
		sum.End = max(sum.End, s.EndUnixNano)
		if s.ParentSpanID.IsEmpty() && !sum.HasRoot { // spans are in (start, span ID) order
			sum.HasRoot, sum.RootService, sum.RootName = true, s.Resource.ServiceName(), s.Name
		}
		sum.Spans++
		isErr := s.StatusCode == storage.StatusError
		if isErr {
			sum.Errors++
		}
		svc := s.Resource.ServiceName()
		k := slices.IndexFunc(sum.Services, func(x storage.ServiceSpans) bool { return x.Service == svc })
		if k < 0 {
			sum.Services = append(sum.Services, storage.ServiceSpans{Service: svc})
			k = len(sum.Services) - 1
		}
		sum.Services[k].Spans++
		if isErr {
			sum.Services[k].Errors++
		}
		out[s.TraceID] = sum
	}
	for id, sum := range out {
		slices.SortFunc(sum.Services, func(a, b storage.ServiceSpans) int { return cmpString(a.Service, b.Service) })
		out[id] = sum
	}
	return out
}

func readSummaries(t *testing.T, b *Block, ids []storage.TraceID) map[storage.TraceID]storage.TraceSummary {
	t.Helper()
	got := map[storage.TraceID]storage.TraceSummary{}
	require.NoError(t, b.TraceSummaries(context.Background(), ids, func(s *storage.TraceSummary) {
		_, dup := got[s.TraceID]
		require.False(t, dup, "trace %s summarized twice", s.TraceID)
		c := *s
		c.Services = slices.Clone(s.Services)
		got[s.TraceID] = c
	}))
	return got
}

func sortedIDs(m map[storage.TraceID]storage.TraceSummary) []storage.TraceID {
	var ids []storage.TraceID
	for id := range m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, cmpID)
	return ids
}

// oddTraces bends some generated traces into the shapes a trace table
// must still describe exactly: two parentless spans (the earlier is the
// root, whichever comes first in the data), no root at all (it has not
// arrived), a span without service.name, and a span ending after its
// root.
func oddTraces(spans []storage.Span) []storage.Span {
	var ids []storage.TraceID
	for _, s := range spans {
		if len(ids) == 0 || ids[len(ids)-1] != s.TraceID {
			ids = append(ids, s.TraceID)
		}
	}
	noService := &storage.Resource{}
	for i := range spans {
		s := &spans[i]
		switch s.TraceID {
		case ids[1]: // every parentless span gone: no root
			if s.ParentSpanID.IsEmpty() {
				s.ParentSpanID = storage.SpanID{1, 2, 3}
			}
		case ids[2]: // a second root, later than the first
			if !s.ParentSpanID.IsEmpty() && s.StartUnixNano > spans[i-1].StartUnixNano {
				s.ParentSpanID = storage.SpanID{}
				ids[2] = storage.TraceID{} // once
			}
		case ids[3]:
			s.Resource = noService
			s.StatusCode = storage.StatusError
			s.EndUnixNano += 1e9
		}
	}
	return spans
}

// The trace table of a written block holds, for every trace, what its
// spans say, and TraceSummaries finds any subset of them.
func TestTraceTable(t *testing.T) {
	for _, format := range []int{2, FormatVersion} {
		t.Run(fmt.Sprintf("format %d", format), func(t *testing.T) { testTraceTable(t, format) })
	}
}

func testTraceTable(t *testing.T, format int) {
	ctx := context.Background()
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 3000)
	spans = oddTraces(spans)
	sortSpans(spans)
	m, err := WriteSpans(ctx, st, seqSpans(spans), WriteOptions{RowGroupRows: 5000, TempDir: t.TempDir(), Format: format})
	require.NoError(t, err)
	b, err := Open(ctx, st, Traces, m.ID)
	require.NoError(t, err)
	defer b.Close()
	require.Equal(t, format, b.Meta.Format)
	require.True(t, b.HasTraceTable())
	require.NotZero(t, b.Meta.TraceTableBytes)
	require.Len(t, b.traceCols, map[int]int{2: len(traceColumnNamesV2), FormatVersion: len(traceColumnNames)}[format])

	want := oracleSummaries(spans)
	ids := sortedIDs(want)
	require.Equal(t, want, readSummaries(t, b, ids))

	// Every third trace, and IDs the block does not hold.
	var some []storage.TraceID
	wantSome := map[storage.TraceID]storage.TraceSummary{}
	for i, id := range ids {
		if i%3 == 0 {
			some = append(some, id)
			wantSome[id] = want[id]
		}
	}
	some = append(some, storage.TraceID{0xff, 0xfe}, storage.TraceID{})
	slices.SortFunc(some, cmpID)
	require.Equal(t, wantSome, readSummaries(t, b, some))

	rootless := 0
	for _, s := range want {
		if !s.HasRoot {
			rootless++
		}
	}
	require.NotZero(t, rootless, "the data has no rootless trace; the case tests nothing")
}

// Format 1 blocks have no trace table and answer no summaries, format 2
// blocks describe their own traces; merged, with traces split between
// them and a retried batch, either make a block of the current format
// whose table describes the merged traces.
func TestTraceTableOfMergedOlderBlocks(t *testing.T) {
	for _, format := range []int{1, 2} {
		t.Run(fmt.Sprintf("format %d", format), func(t *testing.T) { testTraceTableOfMerged(t, format) })
	}
}

func testTraceTableOfMerged(t *testing.T, format int) {
	ctx := context.Background()
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 2000)
	spans = oddTraces(spans)
	parts := make([][]storage.Span, 3)
	for i, s := range spans {
		p := int(s.TraceID[0]) % 3
		if i%7 == 0 {
			p = (p + 1) % 3 // a late span in another block
		}
		parts[p] = append(parts[p], s)
	}
	parts[2] = append(parts[2], parts[0][:200]...) // a retry
	var blocks []*Block
	for _, p := range parts {
		sortSpans(p)
		m, err := WriteSpans(ctx, st, seqSpans(p), WriteOptions{RowGroupRows: 1000, TempDir: t.TempDir(), Format: format})
		require.NoError(t, err)
		require.Equal(t, format, m.Format)
		b, err := Open(ctx, st, Traces, m.ID)
		require.NoError(t, err)
		defer b.Close()
		want := oracleSummaries(p)
		if format == 1 {
			require.False(t, b.HasTraceTable())
			require.Empty(t, readSummaries(t, b, sortedIDs(want)))
		} else {
			require.Equal(t, want, readSummaries(t, b, sortedIDs(want)))
		}
		blocks = append(blocks, b)
	}
	m, err := MergeSpans(ctx, st, blocks, WriteOptions{RowGroupRows: 1000, TempDir: t.TempDir(), Level: 1})
	require.NoError(t, err)
	require.Equal(t, FormatVersion, m.Format)
	merged, err := Open(ctx, st, Traces, m.ID)
	require.NoError(t, err)
	defer merged.Close()
	want := oracleSummaries(spans)
	require.Equal(t, want, readSummaries(t, merged, sortedIDs(want)))
}

// A trace table that does not match its meta is damage: the block does
// not open, and says so as corruption.
func TestTraceTableDamage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := objstore.OpenFilesystem(dir)
	require.NoError(t, err)
	spans, _ := genSpans(t, 200)
	b := writeTestBlock(t, st, spans, 1000)
	b.Close()
	path := filepath.Join(dir, Key(Traces, b.Meta.ID, TraceTableFile))
	require.NoError(t, os.Truncate(path, b.Meta.TraceTableBytes/2))
	_, err = Open(ctx, st, Traces, b.Meta.ID)
	require.ErrorIs(t, err, storage.ErrCorrupt)
	require.ErrorContains(t, err, "trace table")
}

// A trace table is read by its columns' names: one with a column added
// reads, one missing a column or with one of another type is left
// unused (the block reads as format 1 does), never taken for damage.
func TestTraceTableColumnsByName(t *testing.T) {
	cols, ok := traceColumnsOf(traceSchema, FormatVersion)
	require.True(t, ok)
	require.Len(t, cols, len(traceColumnNames))
	cols, ok = traceColumnsOf(traceSchemaV2, 2)
	require.True(t, ok)
	require.Len(t, cols, len(traceColumnNamesV2))
	// Each format's table is read by its own names only.
	_, ok = traceColumnsOf(traceSchemaV2, FormatVersion)
	require.False(t, ok)
	_, ok = traceColumnsOf(traceSchema, 2)
	require.False(t, ok)

	type withExtra struct {
		TraceID     [16]byte `parquet:"trace_id"`
		FirstRow    int64    `parquet:"first_row,delta"`
		Start       int64    `parquet:"start_unix_nano"`
		Duration    int64    `parquet:"duration_nano"`
		HasRoot     bool     `parquet:"has_root"`
		RootService string   `parquet:"root_service,dict"`
		RootName    string   `parquet:"root_name,dict"`
		Spans       int32    `parquet:"span_count"`
		Errors      int32    `parquet:"error_count"`
		Services    []byte   `parquet:"service_set,dict"`
		Counts      []byte   `parquet:"service_counts"`
	}
	sch := parquet.SchemaOf(withExtra{})
	cols, ok = traceColumnsOf(sch, FormatVersion)
	require.True(t, ok)
	leaf, _ := sch.Lookup("service_set")
	require.Equal(t, leaf.ColumnIndex, cols[ttServices])
	leaf, _ = sch.Lookup("service_counts")
	require.Equal(t, leaf.ColumnIndex, cols[ttServiceCounts])

	type missing struct {
		TraceID [16]byte `parquet:"trace_id"`
		Start   int64    `parquet:"start_unix_nano"`
	}
	_, ok = traceColumnsOf(parquet.SchemaOf(missing{}), FormatVersion)
	require.False(t, ok)

	type otherType struct {
		TraceID     [16]byte `parquet:"trace_id"`
		Start       string   `parquet:"start_unix_nano"`
		Duration    int64    `parquet:"duration_nano"`
		HasRoot     bool     `parquet:"has_root"`
		RootService string   `parquet:"root_service,dict"`
		RootName    string   `parquet:"root_name,dict"`
		Spans       int32    `parquet:"span_count"`
		Errors      int32    `parquet:"error_count"`
		Services    []byte   `parquet:"service_set,dict"`
		Counts      []byte   `parquet:"service_counts"`
	}
	_, ok = traceColumnsOf(parquet.SchemaOf(otherType{}), FormatVersion)
	require.False(t, ok)
}

// TestFindTraces checks the trace table's filter against the traces
// written: every trace whose extent, errors and start the filter admits,
// and no other, over row groups of several pages, and that fn can stop
// the search.
func TestFindTraces(t *testing.T) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 3000)
	b := writeTestBlock(t, st, spans, 5000)
	type fig struct {
		start, end int64
		errors     bool
	}
	figs := map[storage.TraceID]*fig{}
	for i := range spans {
		s := &spans[i]
		f := figs[s.TraceID]
		if f == nil {
			f = &fig{start: s.StartUnixNano, end: s.EndUnixNano}
			figs[s.TraceID] = f
		}
		f.start, f.end = min(f.start, s.StartUnixNano), max(f.end, s.EndUnixNano)
		f.errors = f.errors || s.StatusCode == storage.StatusError
	}
	var mid int64
	for _, f := range figs {
		mid = max(mid, f.start)
	}
	mid -= (mid - spans[0].StartUnixNano) / 2
	ms := int64(1_000_000)
	for _, filter := range []storage.TraceFilter{
		{MinDuration: 15 * ms},
		{MinDuration: 5 * ms, Errors: true},
		{Errors: true, End: mid},
		{MinDuration: 2 * ms, End: mid},
	} {
		var want []storage.TraceID
		for id, f := range figs {
			if f.end-f.start >= filter.MinDuration && (!filter.Errors || f.errors) && (filter.End == 0 || f.start <= filter.End) {
				want = append(want, id)
			}
		}
		require.NotEmpty(t, want, "%+v selects nothing; the case tests nothing", filter)
		require.Less(t, len(want), len(figs), "%+v selects everything; the case tests nothing", filter)
		var got []storage.TraceID
		cont, err := b.FindTraces(context.Background(), &filter, func(id storage.TraceID) bool {
			got = append(got, id)
			return true
		})
		require.NoError(t, err)
		require.True(t, cont)
		cmp := func(a, b storage.TraceID) int { return slices.Compare(a[:], b[:]) }
		slices.SortFunc(want, cmp)
		require.True(t, slices.IsSortedFunc(got, cmp), "table order is trace ID order")
		require.Equal(t, want, got, "%+v", filter)

		n := 0
		cont, err = b.FindTraces(context.Background(), &filter, func(storage.TraceID) bool { n++; return false })
		require.NoError(t, err)
		require.False(t, cont)
		require.Equal(t, 1, n, "fn asked to stop")
	}

	// A window that starts after the block ends rules the block out.
	count := func(f storage.TraceFilter) int {
		n := 0
		_, err := b.FindTraces(context.Background(), &f, func(storage.TraceID) bool { n++; return true })
		require.NoError(t, err)
		return n
	}
	require.Zero(t, count(storage.TraceFilter{Start: b.Meta.MaxTime + 1}))
	require.Equal(t, len(figs), count(storage.TraceFilter{Start: b.Meta.MaxTime}))
}
