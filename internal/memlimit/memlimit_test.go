package memlimit

import (
	"errors"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
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

// The binary's resident pages come off the soft limit once they take more
// than a fifth of the process's limit, down to half the limit at most.
func TestSoftLimit(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct{ limit, file, want int64 }{
		{400 * mib, 10 * mib, 300 * mib},
		{400 * mib, 80 * mib, 300 * mib},
		{400 * mib, 136 * mib, 244 * mib},
		{400 * mib, 300 * mib, 200 * mib},
		{4000 * mib, 136 * mib, 3000 * mib},
	} {
		if got := softLimit(c.limit, c.file); got != c.want {
			t.Errorf("limit %d MiB, %d MiB resident: soft limit %d MiB, want %d MiB", c.limit/mib, c.file/mib, got/mib, c.want/mib)
		}
	}
}

func TestParseRssFile(t *testing.T) {
	status := "Name:\tsightline\nVmRSS:\t  195208 kB\nRssAnon:\t   64044 kB\nRssFile:\t  131164 kB\nRssShmem:\t       0 kB\n"
	if got, ok := parseRssFile([]byte(status)); !ok || got != 131164<<10 {
		t.Errorf("RssFile %d, %v; want %d", got, ok, 131164<<10)
	}
	for _, bad := range []string{"", "VmRSS:\t 1 kB\n", "RssFile:\t12\n", "RssFile:\tx kB\n"} {
		if got, ok := parseRssFile([]byte(bad)); ok {
			t.Errorf("%q: RssFile %d, want none", bad, got)
		}
	}
	if _, ok := residentFile(); !ok {
		t.Error("no RssFile in /proc/self/status")
	}
}

// Follow moves the soft limit SetDefaults set as the binary's resident
// pages change, and leaves alone a limit set by anything else.
func TestRefreshFollowsResidentPages(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv(EnvLimitMiB, "1000")
	SetDefaults(false)
	defer func() {
		followed.Lock()
		followed.limit = 0
		followed.Unlock()
	}()
	const mib = 1 << 20
	if !refresh(400*mib) || debug.SetMemoryLimit(-1) != softLimit(1000*mib, 400*mib) {
		t.Fatalf("400 MiB resident: soft limit %d MiB, want %d MiB", debug.SetMemoryLimit(-1)/mib, softLimit(1000*mib, 400*mib)/mib)
	}
	if !refresh(100*mib) || debug.SetMemoryLimit(-1) != 750*mib {
		t.Fatalf("100 MiB resident: soft limit %d MiB, want 750 MiB", debug.SetMemoryLimit(-1)/mib)
	}
	debug.SetMemoryLimit(123 * mib)
	if refresh(400*mib) || debug.SetMemoryLimit(-1) != 123*mib {
		t.Errorf("a limit set elsewhere was changed to %d MiB", debug.SetMemoryLimit(-1)/mib)
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

// The memory the runtime holds is checked against the soft limit too: a
// limit over the live heap's threshold but under what the runtime holds
// (its metadata, stacks and free spans besides the live heap) refuses.
func TestCheckHeapRefusesWhatTheRuntimeHolds(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	live, held := int64(s[0].Value.Uint64()), int64(s[1].Value.Uint64()-s[2].Value.Uint64())
	soft := live * 100 / LivePercent * 11 / 10
	if held <= soft+soft/overPart {
		t.Fatalf("the runtime holds %d bytes, under %d: the test needs more", held, soft)
	}
	debug.SetMemoryLimit(soft)
	if err := CheckHeap(); !errors.Is(err, ErrHeap) || !strings.Contains(err.Error(), "held") {
		t.Errorf("soft limit %d, live %d, held %d: %v, want the held refusal", soft, live, held, err)
	}
}

// Refusing stops the allocation that would start a collection, so a
// refusal on figures no cycle has refreshed for staleGC starts one. With
// the collector otherwise off, only that can move the cycle count.
func TestCheckHeapCollectsWhenStale(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)
	debug.SetMemoryLimit(math.MaxInt64)
	cycles := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	before := cycles()
	gcWatch.mu.Lock()
	gcWatch.cycles = before + 1 // whatever earlier tests left
	gcWatch.mu.Unlock()
	forceGCIfStale(before) // first sight of this count: no collection
	gcWatch.mu.Lock()
	fresh := gcWatch.seen
	gcWatch.mu.Unlock()
	if cycles() != before || time.Since(fresh) > staleGC {
		t.Fatalf("a collection on a fresh count")
	}
	gcWatch.mu.Lock()
	gcWatch.seen = time.Now().Add(-2 * staleGC)
	gcWatch.mu.Unlock()
	forceGCIfStale(before)
	deadline := time.Now().Add(time.Minute)
	for cycles() == before {
		if time.Now().After(deadline) {
			t.Fatal("no collection started on a stale count")
		}
		runtime.Gosched()
	}
}
