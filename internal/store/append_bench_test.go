package store

import (
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/store/wal"
	"github.com/sightlinehq/sightline/internal/workload"
)

// BenchmarkAppendTraces is the store's ingest path for one request of 20
// workload traces (about 280 spans): attribute limits, the WAL encoding,
// the conversion to stored spans and the head insert. The WAL does not
// fsync and the head is never cut, so this measures the CPU and the
// allocations per request, not the disk.
//
//	go test -run XXX -bench AppendTraces -benchtime 3000x ./internal/store/
func BenchmarkAppendTraces(b *testing.B) {
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
		td, _ = g.Batch(20)
		spans += td.SpanCount()
		b.StartTimer()
		if err := db.AppendTraces(td); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(spans), "ns/span")
}
