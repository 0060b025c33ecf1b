package block

import (
	"context"
	"testing"

	"github.com/sightlinehq/sightline/internal/objstore"
)

// BenchmarkWriteSpans measures the flush path and reports the on-disk size
// per span of the workload.
func BenchmarkWriteSpans(b *testing.B) {
	spans, _ := genSpans(b, 20000)
	st, err := objstore.OpenFilesystem(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var m *Meta
	for range b.N {
		m, err = WriteSpans(context.Background(), st, seqSpans(spans), WriteOptions{TempDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(m.DataBytes)/float64(m.Rows), "B/span")
	b.ReportMetric(float64(len(spans))*float64(b.N)/b.Elapsed().Seconds(), "spans/s")
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
