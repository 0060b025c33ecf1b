package memlimit

import (
	"errors"
	"math"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestSetDefaults(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv(EnvLimitMiB, "1000")
	if got, want := SetDefaults(false), int64(1000<<20*softPercent/100); got != want || debug.SetMemoryLimit(-1) != want {
		t.Errorf("explicit limit: soft limit %d (runtime %d), want %d", got, debug.SetMemoryLimit(-1), want)
	}
	if Container() == 0 {
		debug.SetMemoryLimit(math.MaxInt64)
		t.Setenv(EnvLimitMiB, "")
		if got := SetDefaults(false); got != 0 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
			t.Errorf("no limit anywhere: set %d", got)
		}
		if got, want := SetDefaults(true), int64(AllInOneLimitMiB<<20*softPercent/100); got != want {
			t.Errorf("all-in-one: %d, want %d", got, want)
		}
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	t.Setenv(EnvLimitMiB, "1000")
	if got := SetDefaults(true); got != 0 {
		t.Errorf("GOMEMLIMIT set: SetDefaults changed the limit to %d", got)
	}
}

// The live heap is checked against the Go soft limit: a limit far under
// this test's live heap refuses, a limit far over it admits, and no limit
// admits.
func TestCheckHeap(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)
	runtime.GC() // the live heap is measured by a completed cycle
	debug.SetMemoryLimit(64 << 10)
	if err := CheckHeap(); !errors.Is(err, ErrHeap) {
		t.Errorf("64 KiB soft limit: %v, want ErrHeap", err)
	}
	debug.SetMemoryLimit(1 << 40)
	if err := CheckHeap(); err != nil {
		t.Errorf("1 TiB soft limit: %v", err)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	if err := CheckHeap(); err != nil {
		t.Errorf("no soft limit: %v", err)
	}
}
