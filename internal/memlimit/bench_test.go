package memlimit

import (
	"runtime/debug"
	"testing"
)

// BenchmarkCheckHeap is the admission check's cost, paid once per request.
//
//	go test -run XXX -bench CheckHeap ./internal/memlimit/
func BenchmarkCheckHeap(b *testing.B) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(1 << 40))
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckHeap(); err != nil {
			b.Fatal(err)
		}
	}
}
