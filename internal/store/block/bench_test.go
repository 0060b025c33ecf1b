package block

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/workload"
)

// BenchmarkWriteSpans measures the flush path and reports the on-disk size
// per span of the workload.
// The fast variant is how level-0 and intermediate blocks are written.
func BenchmarkWriteSpans(b *testing.B) {
	spans, _ := genSpans(b, 20000)
	st, err := objstore.OpenFilesystem(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	eachCodec(b, func(b *testing.B, fast bool) {
		b.ReportAllocs()
		var m *Meta
		for range b.N {
			m, err = WriteSpans(context.Background(), st, seqSpans(spans), WriteOptions{TempDir: b.TempDir(), Fast: fast})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(m.DataBytes)/float64(m.Rows), "B/span")
		b.ReportMetric(float64(len(spans))*float64(b.N)/b.Elapsed().Seconds(), "spans/s")
	})
}

// eachCodec runs fn as two sub-benchmarks: "default" writes blocks that
// stay (zstd), "fast" blocks that will be merged again (Snappy).
func eachCodec(b *testing.B, fn func(b *testing.B, fast bool)) {
	for _, fast := range []bool{false, true} {
		name := "default"
		if fast {
			name = "fast"
		}
		b.Run(name, func(b *testing.B) { fn(b, fast) })
	}
}

func BenchmarkWriteLogs(b *testing.B) {
	_, logs := genSpans(b, 20000)
	st, err := objstore.OpenFilesystem(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var m *Meta
	for range b.N {
		m, err = WriteLogs(context.Background(), st, seqLogs(logs), WriteOptions{TempDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(m.DataBytes)/float64(m.Rows), "B/record")
	b.ReportMetric(float64(len(logs))*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkTraceByID looks up stored traces, one at a time, in a block of
// about 200k spans (two full row groups): the bloom filter, the row-group
// index, the trace_id column and the trace's rows.
func BenchmarkTraceByID(b *testing.B) {
	spans, _ := genSpans(b, 14000)
	st, err := objstore.OpenFilesystem(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	m, err := WriteSpans(context.Background(), st, seqSpans(spans), WriteOptions{TempDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	blk, err := Open(context.Background(), st, Traces, m.ID)
	if err != nil {
		b.Fatal(err)
	}
	defer blk.Close()
	var ids []storage.TraceID
	for i := 0; i < len(spans); i += 997 {
		ids = append(ids, spans[i].TraceID)
	}
	var dst []storage.Span
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		dst, err = blk.TraceByID(context.Background(), ids[i%len(ids)], dst[:0])
		if err != nil || len(dst) == 0 {
			b.Fatalf("trace %d: %d spans, %v", i, len(dst), err)
		}
	}
	b.ReportMetric(float64(len(spans)), "spans")
}

// BenchmarkTraceSummaries describes 1,000 traces spread over a block of
// 30,000 (about 420k spans) from its trace table, as a search for 1,000
// traces does, in each format with a trace table: every page of the
// table's columns holds some of them.
func BenchmarkTraceSummaries(b *testing.B) {
	spans, _ := genSpans(b, 30000)
	st, err := objstore.OpenFilesystem(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	var ids []storage.TraceID
	for i := 0; i < len(spans); i++ {
		if i == 0 || spans[i].TraceID != spans[i-1].TraceID {
			ids = append(ids, spans[i].TraceID)
		}
	}
	slices.SortFunc(ids, cmpID)
	ids = slices.Compact(ids)
	var want []storage.TraceID
	for i := 0; i < len(ids); i += len(ids) / 1000 {
		want = append(want, ids[i])
	}
	for _, format := range []int{2, FormatVersion} {
		b.Run(fmt.Sprintf("format%d", format), func(b *testing.B) {
			m, err := WriteSpans(context.Background(), st, seqSpans(spans), WriteOptions{TempDir: b.TempDir(), Format: format})
			if err != nil {
				b.Fatal(err)
			}
			blk, err := Open(context.Background(), st, Traces, m.ID)
			if err != nil {
				b.Fatal(err)
			}
			defer blk.Close()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				n, services := 0, 0
				err := blk.TraceSummaries(context.Background(), want, func(s *storage.TraceSummary) {
					n++
					services += len(s.Services)
				})
				if err != nil || n != len(want) || services < n {
					b.Fatalf("%d summaries of %d, %d services: %v", n, len(want), services, err)
				}
			}
			b.ReportMetric(float64(m.TraceTableBytes)/float64(m.Traces), "table-B/trace")
		})
	}
}

// BenchmarkWriteLevel0 writes small blocks (about 24k spans, one row
// group: the all-in-one's level-0 size before its head held records
// encoded), where the per-column page files are the largest share of the
// fixed cost: one file per column from
// parquet-go's pool, or files reused from a PageFiles as the store does.
func BenchmarkWriteLevel0(b *testing.B) {
	spans, _ := genSpans(b, 1700)
	st, err := objstore.OpenFilesystem(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	for _, shared := range []bool{false, true} {
		name := "file-per-column"
		if shared {
			name = "pagefiles"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			var pages *PageFiles
			if shared {
				pages = NewPageFiles(dir)
				defer pages.Close()
			}
			b.ReportAllocs()
			for range b.N {
				if _, err := WriteSpans(context.Background(), st, seqSpans(spans), WriteOptions{TempDir: dir, Fast: true, PageFiles: pages}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(spans))*float64(b.N)/b.Elapsed().Seconds(), "spans/s")
		})
	}
}

// BenchmarkMergeSpans merges four level-0-sized blocks (about 24k spans
// each) into one, as the store's first compaction level does; it is where
// most of the all-in-one's CPU goes under steady ingest.
func BenchmarkMergeSpans(b *testing.B) {
	st, err := objstore.OpenFilesystem(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	pages := NewPageFiles(dir)
	defer pages.Close()
	var blocks []*Block
	var rows int64
	for i := range 4 {
		g := workload.New(uint64(11+i), time.Unix(1_700_000_000+int64(i)*2, 0), workload.Options{})
		td, _ := g.Batch(1700)
		spans := storage.AppendTraces(nil, td)
		slices.SortFunc(spans, func(a, b storage.Span) int { return CompareSpans(&a, &b) })
		m, err := WriteSpans(context.Background(), st, seqSpans(spans), WriteOptions{TempDir: dir, Fast: true, PageFiles: pages})
		if err != nil {
			b.Fatal(err)
		}
		blk, err := Open(context.Background(), st, Traces, m.ID)
		if err != nil {
			b.Fatal(err)
		}
		defer blk.Close()
		blocks = append(blocks, blk)
		rows += m.Rows
	}
	eachCodec(b, func(b *testing.B, fast bool) {
		b.ReportAllocs()
		var m *Meta
		for range b.N {
			if m, err = MergeSpans(context.Background(), st, blocks, WriteOptions{TempDir: dir, Fast: fast, PageFiles: pages, Level: 1}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "spans/s")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e3/(float64(rows)*float64(b.N)), "µs/span")
		b.ReportMetric(float64(m.DataBytes)/float64(m.Rows), "B/span")
	})
}

// BenchmarkCoreScan reads a core scan over three blocks of about 70k
// spans each (row groups of 25k rows): a search's discovery, which asks
// for each match's trace and start. "all" takes every match, as a
// most_recent search or an uncached metrics query does; "stop" stops
// after the first 500, as a search for a few traces does, which is what
// the read-ahead and the windows of a part are for. "sparse" is a
// search for many traces of a selective filter, which reads a result's
// fields for a few rows of every page.
func BenchmarkCoreScan(b *testing.B) {
	spans, _ := genSpans(b, 15000)
	st, err := objstore.OpenFilesystem(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	q := &storage.SpanQuery{MinDuration: int64(time.Millisecond), Projection: storage.ProjectCore, Fields: storage.FieldTraceID | storage.FieldStart}
	var parts []CorePart
	var blocks []*Block
	for k := range 3 {
		blk := writeTestBlock(b, st, spans[k*len(spans)/3:(k+1)*len(spans)/3], 25_000)
		parts = append(parts, blk.CoreParts(q)...)
		blocks = append(blocks, blk)
	}
	// A search for many traces of one service's slow errors keeps a
	// few rows scattered over every page, and reads what a result span
	// shows of each.
	sparse := &storage.SpanQuery{ServiceName: "checkout", HasStatus: true, Status: storage.StatusError, MinDuration: int64(5 * time.Millisecond),
		Projection: storage.ProjectCore, Fields: storage.FieldTraceID | storage.FieldSpanID | storage.FieldName | storage.FieldStart | storage.FieldDuration | storage.FieldKind}
	var sparseParts []CorePart
	for _, blk := range blocks {
		sparseParts = append(sparseParts, blk.CoreParts(sparse)...)
	}
	fail := func(_ *Block, err error) error { return err }
	for _, c := range []struct {
		name  string
		stop  int
		parts []CorePart
	}{{"all", -1, parts}, {"stop", 500, parts}, {"sparse", -1, sparseParts}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var st storage.Stats
			ctx := storage.WithStats(context.Background(), &st)
			for range b.N {
				n := 0
				if err := ReadCoreParts(ctx, c.parts, func(*storage.Span) bool { n++; return n != c.stop }, fail); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(st.BytesRead())/float64(b.N), "bytes/op")
		})
	}
}
