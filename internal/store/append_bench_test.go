package store

import (
	"context"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/store/block"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/store/wal"
	"github.com/sightlinehq/sightline/internal/workload"
)

// BenchmarkAppendTraces is the store's ingest path for one request:
// attribute limits, the WAL encoding, the conversion to stored spans and
// the head insert. A request is 20 workload traces (about 280 spans), as
// an SDK or bench/ingest sends them, or 600 (about 8,400 spans), a
// Collector's batch. The WAL does not fsync and the head is never cut, so
// this measures the CPU and the allocations per request, not the disk.
//
//	go test -run XXX -bench AppendTraces -benchtime 3000x ./internal/store/
func BenchmarkAppendTraces(b *testing.B) {
	for _, traces := range []int{20, 600} {
		b.Run("traces="+strconv.Itoa(traces), func(b *testing.B) { benchmarkAppendTraces(b, traces) })
	}
}

func benchmarkAppendTraces(b *testing.B, traces int) {
	db := openTestDB(b, b.TempDir(), func(o *Options) {
		o.WAL = wal.Options{Sync: wal.SyncInterval, SyncInterval: time.Hour}
		o.MaxBlockBytes = 1 << 40
		o.MaxBlockDuration = 24 * time.Hour
	})
	// Fresh traces for every request, as clients send them: made with the
	// timer stopped.
	g := workload.New(9, time.Now(), workload.Options{})
	var td ptrace.Traces
	spans := 0
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		td, _ = g.Batch(traces)
		spans += td.SpanCount()
		b.StartTimer()
		if err := db.AppendTraces(td); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(spans), "ns/span")
}

// openFullHead opens a store whose head holds about 160k workload spans,
// the all-in-one's head at its cut at 20k spans/s, and is never cut.
func openFullHead(b *testing.B) *DB {
	db := openTestDB(b, b.TempDir(), func(o *Options) {
		o.WAL = wal.Options{Sync: wal.SyncInterval, SyncInterval: time.Hour}
		o.MaxBlockBytes = 1 << 40
		o.MaxBlockDuration = 24 * time.Hour
	})
	g := workload.New(9, time.Now(), workload.Options{})
	for db.Stats().HeadSpans < 160_000 {
		td, _ := g.Batch(100)
		if err := db.AppendTraces(td); err != nil {
			b.Fatal(err)
		}
	}
	return db
}

// BenchmarkHeadScan reads every span of a head of about 160k spans (the
// all-in-one's head size at 20k spans/s) as a metrics query and a search
// do, in full and with the core projection. Every query reads the head:
// its blocks may be cached, its head never is.
//
//	go test -run XXX -bench HeadScan ./internal/store/
func BenchmarkHeadScan(b *testing.B) {
	db := openFullHead(b)
	n := db.Stats().HeadSpans
	for _, proj := range []storage.Projection{storage.ProjectAll, storage.ProjectCore} {
		b.Run([]string{"all", "core"}[proj], func(b *testing.B) {
			q, err := db.Querier(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			b.ReportAllocs()
			for range b.N {
				seen := 0
				err := q.Spans(context.Background(), &storage.SpanQuery{Projection: proj}, func(*storage.Span) bool { seen++; return true })
				if err != nil || seen != n {
					b.Fatal(err, seen, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/span")
		})
	}
}

// BenchmarkHeadDecode decodes every span of a head of about 160k spans in
// block order, as a flush reads them before block.WriteSpans: the records
// in an order unrelated to the one they were written in.
//
//	go test -run XXX -bench HeadDecode -benchtime 20x ./internal/store/
func BenchmarkHeadDecode(b *testing.B) {
	db := openFullHead(b)
	h := db.head
	order := h.spans.sorted()
	var s storage.Span
	attrs := 0
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for _, i := range order {
			if err := h.spans.decode(int(i), &s); err != nil {
				b.Fatal(err)
			}
			attrs += len(s.Attrs)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(order)), "ns/span")
	b.ReportMetric(float64(attrs)/float64(b.N*len(order)), "attrs/span")
}

// BenchmarkWriteHead writes a head of about 160k spans (the all-in-one's
// head at its cut at 20k spans/s) as a level-0 block, as a flush does:
// the head's records in block order, decoded and written by
// block.WriteSpans with the flush's options. The head's keys are interned,
// as they are in the store, which block.BenchmarkWriteSpans's spans are
// not.
//
//	go test -run XXX -bench WriteHead -benchtime 10x ./internal/store/
func BenchmarkWriteHead(b *testing.B) {
	benchWriteHead(b, block.WriteOptions{Fast: true})
}

// BenchmarkKeptFromHead writes the same head as BenchmarkWriteHead, but as
// a block that stays (zstd, 64 KiB pages, level 1), as a merge's output
// is written. Against BenchmarkWriteHead plus a merge of sixty-four
// level-0 blocks (storebench compact), it is what a span would cost to
// reach a kept block if level 0 were not a Parquet block that is read
// back: the bound on what a cheaper level 0 could save.
//
//	go test -run XXX -bench KeptFromHead -benchtime 10x ./internal/store/
func BenchmarkKeptFromHead(b *testing.B) {
	benchWriteHead(b, block.WriteOptions{Level: 1})
}

// benchWriteHead writes a full head as a block with opts, b.N times.
func benchWriteHead(b *testing.B, opts block.WriteOptions) {
	db := openFullHead(b)
	h := db.head
	opts.TempDir, opts.PageFiles = db.tmpDir(), db.pages
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		var decodeErr error
		m, err := block.WriteSpans(context.Background(), db.opts.Bucket, h.sortedSpans(&decodeErr), opts)
		if err != nil || decodeErr != nil || m.Rows != int64(h.spans.len()) {
			b.Fatal(err, decodeErr, m)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*h.spans.len()), "ns/span")
}
