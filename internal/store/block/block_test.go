package block

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/klauspost/compress/s2"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/snappy"
	"github.com/parquet-go/parquet-go/format"
	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/workload"
)

func genSpans(t testing.TB, traces int) ([]storage.Span, []storage.LogRecord) {
	g := workload.New(7, time.Unix(1_700_000_000, 0), workload.Options{})
	td, ld := g.Batch(traces)
	spans := storage.AppendTraces(nil, td)
	logs := storage.AppendLogs(nil, ld)
	slices.SortFunc(spans, func(a, b storage.Span) int { return CompareSpans(&a, &b) })
	slices.SortStableFunc(logs, func(a, b storage.LogRecord) int { return CompareLogs(&a, &b) })
	return spans, logs
}

func seqSpans(s []storage.Span) func(func(*storage.Span) bool) {
	return func(yield func(*storage.Span) bool) {
		for i := range s {
			if !yield(&s[i]) {
				return
			}
		}
	}
}

func seqLogs(s []storage.LogRecord) func(func(*storage.LogRecord) bool) {
	return func(yield func(*storage.LogRecord) bool) {
		for i := range s {
			if !yield(&s[i]) {
				return
			}
		}
	}
}

// normalize sorts attributes so that spans compare equal regardless of the
// order dedicated columns restore them in.
func normalize(s storage.Span) storage.Span {
	s.Attrs = slices.Clone(s.Attrs)
	slices.SortFunc(s.Attrs, func(a, b storage.Attr) int { return cmpString(a.Key, b.Key) })
	r := *s.Resource
	r.Attrs = slices.Clone(r.Attrs)
	slices.SortFunc(r.Attrs, func(a, b storage.Attr) int { return cmpString(a.Key, b.Key) })
	s.Resource = &r
	return s
}

func writeTestBlock(t testing.TB, st *objstore.Store, spans []storage.Span, rg int) *Block {
	ctx := context.Background()
	m, err := WriteSpans(ctx, st, seqSpans(spans), WriteOptions{RowGroupRows: rg, TempDir: t.TempDir()})
	require.NoError(t, err)
	b, err := Open(ctx, st, Traces, m.ID)
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	return b
}

func TestSpansRoundTrip(t *testing.T) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 3000)
	b := writeTestBlock(t, st, spans, 5000)
	require.Equal(t, int64(len(spans)), b.Meta.Rows)
	require.Equal(t, int64(3000), b.Meta.Traces)
	require.Greater(t, b.Meta.RowGroups, 3)
	require.Contains(t, b.Meta.Services, "checkout")
	require.Contains(t, b.Meta.AttributeNames, "http.route")

	var got []storage.Span
	require.NoError(t, b.AllSpans(context.Background(), func(s *storage.Span) bool {
		got = append(got, *s)
		return true
	}))
	require.Len(t, got, len(spans))
	for i := range spans {
		require.Equal(t, normalize(spans[i]), normalize(got[i]), "span %d", i)
	}

	// Every trace is found whole, whichever row group it is in.
	for _, i := range []int{0, len(spans) / 3, len(spans) / 2, len(spans) - 1} {
		id := spans[i].TraceID
		tr, err := b.TraceByID(context.Background(), id, nil)
		require.NoError(t, err)
		var want int
		for j := range spans {
			if spans[j].TraceID == id {
				want++
			}
		}
		require.Len(t, tr, want)
		for _, s := range tr {
			require.Equal(t, id, s.TraceID)
		}
	}
	tr, err := b.TraceByID(context.Background(), storage.TraceID{1, 2, 3}, nil)
	require.NoError(t, err)
	require.Empty(t, tr)
}

func TestSpansPushdownMatchesFullScan(t *testing.T) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 2000)
	b := writeTestBlock(t, st, spans, 4000)
	m, err := storage.NewMatcher(storage.ScopeSpan, "http.route", storage.OpRegexp, storage.Str("/oteldemo.*"))
	require.NoError(t, err)
	queries := []*storage.SpanQuery{
		{ServiceName: "checkout", HasStatus: true, Status: storage.StatusError},
		{ServiceName: "frontend", MinDuration: int64(2 * time.Millisecond)},
		{HasKind: true, Kind: 3, Name: "SELECT shop"},
		{Matchers: []*storage.Matcher{m}, MaxDuration: int64(time.Millisecond)},
		{Start: spans[0].StartUnixNano + int64(500*time.Millisecond), End: spans[0].StartUnixNano + int64(700*time.Millisecond)},
		{TraceID: spans[77].TraceID},
	}
	for i, q := range queries {
		want := 0
		for j := range spans {
			if q.Match(&spans[j]) {
				want++
			}
		}
		require.NotZero(t, want, "query %d must match something", i)
		got := 0
		_, err := b.Spans(context.Background(), q, func(s *storage.Span) bool {
			require.True(t, q.Match(s))
			got++
			return true
		})
		require.NoError(t, err)
		require.Equal(t, want, got, "query %d", i)
	}
}

func TestLogsRoundTrip(t *testing.T) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	_, logs := genSpans(t, 1000)
	ctx := context.Background()
	m, err := WriteLogs(ctx, st, seqLogs(logs), WriteOptions{RowGroupRows: 500, TempDir: t.TempDir()})
	require.NoError(t, err)
	b, err := Open(ctx, st, Logs, m.ID)
	require.NoError(t, err)
	defer b.Close()
	require.Equal(t, int64(len(logs)), m.Rows)
	n := 0
	require.NoError(t, b.AllLogs(ctx, func(l *storage.LogRecord) bool {
		require.Equal(t, logs[n].Body, l.Body)
		require.Equal(t, logs[n].SpanID, l.SpanID)
		require.Equal(t, logs[n].Resource.ServiceName(), l.Resource.ServiceName())
		// Numbers are formatted into a buffer reused from one batch of
		// rows to the next (encoder.value): each must read back as its own.
		if len(logs[n].Attrs) == 0 {
			require.Empty(t, l.Attrs)
		} else {
			require.Equal(t, logs[n].Attrs, l.Attrs)
		}
		n++
		return true
	}))
	require.Equal(t, len(logs), n)
	target := logs[len(logs)/2]
	var got []storage.LogRecord
	_, err = b.Logs(ctx, &storage.LogQuery{TraceID: target.TraceID, SpanID: target.SpanID}, func(l *storage.LogRecord) bool {
		got = append(got, *l)
		return true
	})
	require.NoError(t, err)
	require.NotEmpty(t, got)
	for _, l := range got {
		require.Equal(t, target.SpanID, l.SpanID)
	}
	cnt := 0
	_, err = b.Logs(ctx, &storage.LogQuery{ServiceName: "cart", MinSeverity: 17}, func(l *storage.LogRecord) bool {
		require.Equal(t, "cart", l.Resource.ServiceName())
		require.Equal(t, "ERROR", l.SeverityText)
		cnt++
		return true
	})
	require.NoError(t, err)
	require.NotZero(t, cnt)
}

func TestCorruptDataFileIsReported(t *testing.T) {
	dir := t.TempDir()
	st, err := objstore.OpenFilesystem(dir)
	require.NoError(t, err)
	spans, _ := genSpans(t, 200)
	b := writeTestBlock(t, st, spans, 1000)
	b.Close()
	path := filepath.Join(dir, "traces", b.Meta.ID, DataFile)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	for i := len(data) - 64; i < len(data); i++ {
		data[i] ^= 0x5a
	}
	require.NoError(t, os.WriteFile(path, data, 0o644))
	_, err = Open(context.Background(), st, Traces, b.Meta.ID)
	require.ErrorIs(t, err, storage.ErrCorrupt)
}

func TestBloom(t *testing.T) {
	spans, _ := genSpans(t, 5000)
	bl := NewBloom(5000, 0.01)
	for i := range spans {
		bl.Add(spans[i].TraceID)
	}
	enc, _ := bl.MarshalBinary()
	bl, err := UnmarshalBloom(enc)
	require.NoError(t, err)
	for i := range spans {
		require.True(t, bl.MayContain(spans[i].TraceID))
	}
	fp := 0
	g := workload.New(99, time.Unix(0, 0), workload.Options{})
	td, _ := g.Batch(10000)
	other := storage.AppendTraces(nil, td)
	seen := map[storage.TraceID]bool{}
	for i := range other {
		if !seen[other[i].TraceID] {
			seen[other[i].TraceID] = true
			if bl.MayContain(other[i].TraceID) {
				fp++
			}
		}
	}
	require.Less(t, float64(fp)/float64(len(seen)), 0.02)
}

// TestCoreProjection checks that a ProjectCore query returns the same spans
// with the same core fields as a full read, from flat columns only.
func TestCoreProjection(t *testing.T) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 2000)
	b := writeTestBlock(t, st, spans, 3000)
	// Reads of given traces take their trace IDs from the lookup that
	// found their rows, or from the query when it names one trace.
	var ids []storage.TraceID
	for i := 0; i < len(spans); i += 97 {
		ids = append(ids, spans[i].TraceID)
	}
	slices.SortFunc(ids, cmpID)
	ids = slices.Compact(ids)
	for _, q := range []storage.SpanQuery{
		{},
		{ServiceName: "checkout", HasStatus: true, Status: storage.StatusError},
		{HasKind: true, Kind: 2, MinDuration: int64(time.Millisecond)},
		{TraceIDs: ids},
		{TraceIDs: ids, MinDuration: int64(time.Millisecond)},
		{TraceID: spans[77].TraceID},
	} {
		full := map[storage.SpanID]storage.Span{}
		fullStats := &storage.Stats{}
		_, err := b.Spans(storage.WithStats(context.Background(), fullStats), &q, func(s *storage.Span) bool { full[s.SpanID] = *s; return true })
		require.NoError(t, err)
		require.NotEmpty(t, full)
		core := q
		core.Projection = storage.ProjectCore
		stats := &storage.Stats{}
		n := 0
		_, err = b.Spans(storage.WithStats(context.Background(), stats), &core, func(s *storage.Span) bool {
			f, ok := full[s.SpanID]
			require.True(t, ok)
			require.Equal(t, f.TraceID, s.TraceID)
			require.Equal(t, f.ParentSpanID, s.ParentSpanID)
			require.Equal(t, f.Name, s.Name)
			require.Equal(t, f.Kind, s.Kind)
			require.Equal(t, f.StatusCode, s.StatusCode)
			require.Equal(t, f.StartUnixNano, s.StartUnixNano)
			require.Equal(t, f.EndUnixNano, s.EndUnixNano)
			require.Equal(t, f.Resource.ServiceName(), s.Resource.ServiceName())
			require.Empty(t, s.Attrs, "core reads leave attributes out")
			n++
			return true
		})
		require.NoError(t, err)
		require.Equal(t, len(full), n)
		require.Less(t, stats.BytesRead(), fullStats.BytesRead(), "core reads read less than whole rows")
	}
}

// TestTraceByIDReadsItsPages looks up every trace of a block whose
// trace_id column has many pages per row group: each is found whole from
// the pages the column index names, including traces that straddle two
// pages, and a lookup reads less of the column than a scan would.
func TestTraceByIDReadsItsPages(t *testing.T) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 3000)
	b := writeTestBlock(t, st, spans, 20000)
	want := map[storage.TraceID]int{}
	byTrace := map[storage.TraceID][]storage.Span{}
	for i := range spans {
		want[spans[i].TraceID]++
		byTrace[spans[i].TraceID] = append(byTrace[spans[i].TraceID], normalize(spans[i]))
	}
	// The attribute values outgrow the dictionary cap in a row group of
	// 20k spans, so their chunk mixes dictionary and PLAIN pages, and both
	// must read back.
	mixed := false
	for _, c := range b.pinned[dataFile].Metadata().RowGroups[0].Columns {
		if slices.Equal(c.MetaData.PathInSchema, []string{"attrs", "value"}) {
			mixed = slices.Contains(c.MetaData.Encoding, format.Plain) && slices.Contains(c.MetaData.Encoding, format.RLEDictionary)
		}
	}
	require.True(t, mixed, "span attribute values use both encodings")
	straddling := 0
	for i, e := range b.Index.RowGroups {
		cc := b.pinned[dataFile].RowGroups()[i].ColumnChunks()[b.cols["trace_id"]]
		oi, err := cc.OffsetIndex()
		require.NoError(t, err)
		if e.Rows >= 20000 {
			require.Greater(t, oi.NumPages(), 2, "row group %d", i)
		}
		for id := range want {
			if cmpID(id, e.MinTraceID) < 0 || cmpID(id, e.MaxTraceID) > 0 {
				continue
			}
			first, last, size, ok := idPages(cc, id)
			require.True(t, ok, "the trace_id column has a page index")
			require.LessOrEqual(t, first, last)
			if oi.NumPages() > 2 {
				require.Less(t, size, b.colBytes(b.pinned[dataFile].RowGroups()[i], i, "trace_id"))
			}
			if last > first {
				straddling++
			}
		}
	}
	require.Positive(t, straddling, "some trace spans two pages")
	for id, n := range want {
		stats := &storage.Stats{}
		tr, err := b.TraceByID(storage.WithStats(context.Background(), stats), id, nil)
		require.NoError(t, err)
		require.Len(t, tr, n, "trace %s", id)
		for k := range tr {
			require.Equal(t, byTrace[id][k], normalize(tr[k]), "trace %s span %d", id, k)
		}
		// What is accounted is the pages that hold the trace, less than
		// any full row group.
		require.Positive(t, stats.BytesRead())
		require.Less(t, stats.BytesRead(), rgBytes(b.pinned[dataFile].RowGroups()[0], 0))
	}
}

// A block written for speed (Fast, Snappy) reads back the same spans as
// one written for size, and is larger: the option reaches the codec.
func TestFastBlocksReadBackTheSame(t *testing.T) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 2000)
	ctx := context.Background()
	read := func(fast bool) (*Meta, []storage.Span) {
		m, err := WriteSpans(ctx, st, seqSpans(spans), WriteOptions{TempDir: t.TempDir(), Fast: fast})
		require.NoError(t, err)
		b, err := Open(ctx, st, Traces, m.ID)
		require.NoError(t, err)
		var got []storage.Span
		require.NoError(t, b.AllSpans(ctx, func(s *storage.Span) bool {
			got = append(got, normalize(*s))
			return true
		}))
		return m, got
	}
	small, want := read(false)
	fast, got := read(true)
	require.Equal(t, want, got)
	require.Greater(t, fast.DataBytes, small.DataBytes)
}

// TestColumnCodecs checks the codec each column chunk names, as
// docs/storage-format.md documents it: the core columns that searches
// decompress around scattered rows are Snappy (span IDs, which nothing
// shrinks, uncompressed), the bulky rest zstd in a block that stays and
// Snappy in one written fast (level 0, merged again); the trace table
// likewise. It holds for writes from a head and for merges.
func TestColumnCodecs(t *testing.T) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 500)
	ctx := context.Background()
	var blocks []*Block
	for _, fast := range []bool{false, true} {
		m, err := WriteSpans(ctx, st, seqSpans(spans), WriteOptions{TempDir: t.TempDir(), Fast: fast})
		require.NoError(t, err)
		b, err := Open(ctx, st, Traces, m.ID)
		require.NoError(t, err)
		t.Cleanup(func() { b.Close() })
		blocks = append(blocks, b)
	}
	m, err := MergeSpans(ctx, st, blocks, WriteOptions{TempDir: t.TempDir(), Level: 1})
	require.NoError(t, err)
	merged, err := Open(ctx, st, Traces, m.ID)
	require.NoError(t, err)
	t.Cleanup(func() { merged.Close() })
	want := map[string]format.CompressionCodec{
		"trace_id": format.Snappy, "span_id": format.Uncompressed, "parent_span_id": format.Snappy,
		"start_unix_nano": format.Snappy, "duration_nano": format.Snappy, "name": format.Snappy,
		"kind": format.Snappy, "status_code": format.Snappy, "service_name": format.Snappy,
		"attrs.value": format.Zstd, "resource": format.Zstd, "status_message": format.Zstd,
	}
	wantTable := map[string]format.CompressionCodec{
		"trace_id": format.Uncompressed, "start_unix_nano": format.Uncompressed, "has_root": format.Snappy,
		"service_set": format.Uncompressed, "service_counts": format.Uncompressed,
	}
	codecs := func(f *parquet.File) map[string]format.CompressionCodec {
		got := map[string]format.CompressionCodec{}
		for _, c := range f.Metadata().RowGroups[0].Columns {
			got[strings.Join(c.MetaData.PathInSchema, ".")] = c.MetaData.Codec
		}
		return got
	}
	for i, b := range append(blocks, merged) {
		got := codecs(b.pinned[dataFile])
		fast := i == 1 // the second written, Fast
		for col, codec := range want {
			if fast && codec == format.Zstd {
				codec = format.Snappy
			}
			require.Equal(t, codec, got[col], "data column %s of block %d (level %d)", col, i, b.Meta.Level)
		}
		require.NotNil(t, b.pinned[traceTableFile])
		got = codecs(b.pinned[traceTableFile])
		for col, codec := range wantTable {
			require.Equal(t, codec, got[col], "trace table column %s of block level %d", col, b.Meta.Level)
		}
	}
}

// s2Codec writes what Snappy decodes, into the buffer it is given when
// that has room: the point of it over parquet-go's Snappy codec, which
// allocated one per page.
func TestS2Codec(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var c s2Codec
	dst := make([]byte, 0, s2.MaxEncodedLen(64<<10))
	for _, n := range []int{0, 1, 100, 4096, 64 << 10} {
		// Compressible as column pages are: a few values, repeated.
		words := []uint64{r.Uint64(), r.Uint64(), r.Uint64()}
		src := make([]byte, 0, n+8)
		for len(src) < n {
			src = binary.LittleEndian.AppendUint64(src, words[r.IntN(len(words))])
		}
		src = src[:n]
		enc, err := c.Encode(dst, src)
		require.NoError(t, err)
		require.Equal(t, unsafe.SliceData(dst), unsafe.SliceData(enc), "a page of %d bytes was encoded into a new buffer", n)
		var sc snappy.Codec
		dec, err := sc.Decode(nil, enc)
		require.NoError(t, err)
		require.Equal(t, src, append([]byte{}, dec...))
		if n >= 4096 {
			require.Less(t, len(enc), n/2)
		}
	}
	enc, err := c.Encode(nil, []byte("grows when it must"))
	require.NoError(t, err)
	dec, err := (&snappy.Codec{}).Decode(nil, enc)
	require.NoError(t, err)
	require.Equal(t, "grows when it must", string(dec))
}
