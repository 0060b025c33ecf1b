// Package memlimit finds the memory the process may use and sets the Go
// runtime's soft memory limit from it, so that garbage is collected before
// the heap reaches what the memory_limiter processor and the store's budget
// are sized against, instead of at twice the live heap (GOGC=100).
package memlimit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"
)

// EnvLimitMiB is the process's memory limit in MiB. The all-in-one's
// memory_limiter reads it (configs/all-in-one.yaml); SetDefaults fills it
// in from the container's limit when it is unset.
const EnvLimitMiB = "SIGHTLINE_MEMORY_LIMIT_MIB"

// AllInOneLimitMiB is the all-in-one's limit outside a container: with the
// store's 128 MiB budget it keeps RSS under 400 MiB at 20k spans/s and
// under a 2x flood (docs/benchmarks.md).
// It must match the default in all-in-one.yaml.
const AllInOneLimitMiB = 400

// softPercent of the process's limit is the most the Go soft memory limit
// is. It is below the memory_limiter's soft limit (the limit less its
// spike, 85% in all-in-one.yaml), so that the garbage collector runs
// before the memory_limiter sees garbage as usage: the other way round,
// the memory_limiter refused data whenever the heap neared the collector's
// goal, in bursts, while the live heap was well under its limit.
const softPercent = 75

// residentPercent of the process's limit is what the Go soft limit and the
// binary's resident pages share. The runtime governs only the memory it
// allocates; the binary's code and tables, mapped from its file, are
// resident beside it (130-140 MiB of the all-in-one's, RssFile) and count
// in its RSS and in a container's memory as much. At 75% of 400 MiB with
// nothing taken off, RSS peaked at 422-431 MiB at 20k spans/s. The rest of
// the limit is the margin for pages mapped between two looks (Follow).
const residentPercent = 95

// minSoftPercent of the limit is the least the soft limit is, whatever
// the binary maps: under it the collector would run without pause.
const minSoftPercent = 50

// softLimit is the Go soft limit for a process limited to limit bytes
// whose binary has file bytes resident.
func softLimit(limit, file int64) int64 {
	soft := min(limit/100*softPercent, limit/100*residentPercent-file)
	return max(soft, limit/100*minSoftPercent)
}

// followed is the process limit SetDefaults derived the soft limit from
// (0: none), and set the soft limit it last set, which Follow keeps while
// nothing else changes it.
var followed struct {
	sync.Mutex
	limit, set int64
}

// SetDefaults sets the Go soft memory limit (unless GOMEMLIMIT is set) to
// 75% of the process's limit, less what the binary's resident pages take
// past 20% of it (softLimit), leaving the memory_limiter's hard limit as
// the backstop. The limit is EnvLimitMiB if set; else 80% of the
// container's memory limit, which is also exported as EnvLimitMiB so the
// config sees it; else AllInOneLimitMiB when allInOne, and none otherwise.
// It returns the soft limit set, in bytes (0: none).
func SetDefaults(allInOne bool) int64 {
	var mib int64
	if v, err := strconv.ParseInt(os.Getenv(EnvLimitMiB), 10, 64); err == nil && v > 0 {
		mib = v
	} else if c := Container(); c > 0 {
		mib = int64(c>>20) * 80 / 100
		os.Setenv(EnvLimitMiB, strconv.FormatInt(mib, 10))
	} else if allInOne {
		mib = AllInOneLimitMiB
	}
	if mib == 0 || os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	file, _ := residentFile()
	soft := softLimit(mib<<20, file)
	followed.Lock()
	followed.limit, followed.set = mib<<20, soft
	followed.Unlock()
	debug.SetMemoryLimit(soft)
	return soft
}

// followInterval is how often Follow looks at the binary's resident pages.
const followInterval = 10 * time.Second

// Follow keeps the soft limit SetDefaults set in step with the binary's
// resident pages until ctx is done: they grow after startup as code runs
// for the first time, and the kernel may reclaim them. It stops early if
// nothing was set, or once something else sets the limit.
func Follow(ctx context.Context) {
	t := time.NewTicker(followInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		file, ok := residentFile()
		if !ok || !refresh(file) {
			return
		}
	}
}

// refresh sets the soft limit for file bytes resident, unless the runtime's
// limit is no longer the one last set; it reports whether to go on.
func refresh(file int64) bool {
	followed.Lock()
	defer followed.Unlock()
	if followed.limit == 0 || debug.SetMemoryLimit(-1) != followed.set {
		return false
	}
	followed.set = softLimit(followed.limit, file)
	debug.SetMemoryLimit(followed.set)
	return true
}

// residentFile returns the process's resident file-backed memory, RssFile
// in /proc/self/status.
func residentFile() (int64, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	return parseRssFile(b)
}

func parseRssFile(status []byte) (int64, bool) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("RssFile:"))
		if !ok {
			continue
		}
		fields := strings.Fields(string(rest))
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, false
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		return kb << 10, err == nil
	}
	return 0, false
}

// LivePercent of the Go soft memory limit is the most live heap at which
// CheckHeap admits more data. Past about half, the collector runs so often
// to stay under the soft limit that it takes the CPU the data already
// accepted needs (at 2x the sustainable ingest rate, GC and scavenging took
// half the CPU); below it, GOGC's doubling fits under the limit. The live
// heap peaks when a head at its cut meets a level-0 merge and a long
// upper-level one (heap profiles at 20k spans/s: 50, 25 and 40 MiB of the
// 162 MiB live); with a cgo build's lower soft limit (202 MiB) 70%
// refused 1-2% of that load for seconds at a time, and 75% 0.1%. 75%
// leaves the collector a quarter of the soft limit to allocate into
// between cycles; under a 2x flood the check on what the runtime holds
// bounds RSS as before (docs/benchmarks.md, "The admission at 75% of the
// soft limit").
const LivePercent = 75

// ErrHeap is CheckHeap's refusal: retryable, it clears as the data held in
// memory is written out and collected.
var ErrHeap = errors.New("process memory at its limit")

// overPart: CheckHeap refuses once the runtime holds 1/overPart more than
// the soft limit.
const overPart = 16

// heapSamples are the runtime metrics CheckHeap reads.
// The soft limit is read here too: debug.SetMemoryLimit(-1) takes the
// heap lock, which the allocator needs, once per request.
var heapSamples = [...]string{"/gc/heap/live:bytes", "/memory/classes/total:bytes", "/memory/classes/heap/released:bytes", "/gc/cycles/total:gc-cycles", "/gc/gomemlimit:bytes"}

// staleGC is how long CheckHeap refuses on measures that no collection has
// refreshed before it starts one. Refusing stops the allocation that would
// start one: without this, a heap freed by the block writer after the last
// cycle would go on being refused, with the CPU idle.
const staleGC = 500 * time.Millisecond

// gcWatch is the process's garbage collection as CheckHeap sees it. It is
// the runtime's own state, one per process, like the soft limit itself.
var gcWatch struct {
	mu      sync.Mutex
	cycles  uint64    // the last cycle count seen
	seen    time.Time // when it was first seen
	running bool      // a forced collection is under way
}

// forceGCIfStale starts a collection, in the background and one at a
// time, when no cycle has completed for staleGC.
func forceGCIfStale(cycles uint64) {
	gcWatch.mu.Lock()
	defer gcWatch.mu.Unlock()
	now := time.Now()
	if cycles != gcWatch.cycles {
		gcWatch.cycles, gcWatch.seen = cycles, now
		return
	}
	if gcWatch.running || now.Sub(gcWatch.seen) < staleGC {
		return
	}
	gcWatch.running = true
	go func() {
		runtime.GC()
		gcWatch.mu.Lock()
		gcWatch.running = false
		gcWatch.mu.Unlock()
	}()
}

// CheckHeap refuses more data while the process's memory is at its Go soft
// limit; with no soft limit it admits everything. It refuses on either of
// two measures:
//
//   - the live heap, as marked by the last collection, over LivePercent of
//     the limit: memory held, which only writing data out frees. It
//     changes once per cycle, so the refusal does not come and go in
//     bursts, as one on the heap in use (garbage included) does.
//   - the memory the runtime holds from the OS (as GOMEMLIMIT counts it)
//     past the limit by 1/overPart: the collector is not keeping up with the
//     allocation rate, and past the limit the runtime lets the heap grow
//     rather than spend more than half the CPU collecting. Refusing until
//     a cycle catches up is what keeps the process's RSS near its limit
//     under a flood. At the limit itself the collector is merely due: with
//     a live heap over half the limit, GOGC's doubling reaches it before
//     every cycle, and refusing there refused a steady 20k spans/s.
//
// It is cheap enough to ask once per request.
func CheckHeap() error {
	var s [len(heapSamples)]metrics.Sample
	for i, name := range heapSamples {
		s[i].Name = name
	}
	metrics.Read(s[:])
	for i := range s {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return nil
		}
	}
	soft := int64(s[4].Value.Uint64())
	if soft == math.MaxInt64 || soft <= 0 {
		return nil
	}
	live := int64(s[0].Value.Uint64())
	held := int64(s[1].Value.Uint64() - s[2].Value.Uint64())
	var err error
	if threshold := soft / 100 * LivePercent; live > threshold {
		err = fmt.Errorf("%w: %d MiB live, over %d%% of the %d MiB Go soft limit", ErrHeap, live>>20, LivePercent, soft>>20)
	} else if held > soft+soft/overPart {
		err = fmt.Errorf("%w: %d MiB held, over the %d MiB Go soft limit; waiting for garbage collection", ErrHeap, held>>20, soft>>20)
	}
	if err != nil {
		forceGCIfStale(s[3].Value.Uint64())
	}
	return err
}

// Container returns the memory limit of the process's cgroup,
// v2 or v1, or 0 when none is set.
func Container() uint64 {
	// cgroup v2: memory.max of the process's own group.
	if path := cgroupPath("0::"); path != "" {
		if v, ok := readLimit("/sys/fs/cgroup" + path + "/memory.max"); ok {
			return v
		}
	}
	if v, ok := readLimit("/sys/fs/cgroup/memory.max"); ok {
		return v
	}
	// cgroup v1: the memory controller's group, then the root; a limit of
	// (almost) 2^63 means none.
	for _, dir := range []string{"/sys/fs/cgroup/memory" + cgroupPath(":memory:"), "/sys/fs/cgroup/memory"} {
		if v, ok := readLimit(dir + "/memory.limit_in_bytes"); ok && v < 1<<62 {
			return v
		}
	}
	return 0
}

// cgroupPath returns the group path of the /proc/self/cgroup line that
// starts with prefix ("0::" for v2) or contains it (":memory:" for v1).
func cgroupPath(marker string) string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		i := strings.Index(line, marker)
		if i < 0 || (marker == "0::" && i != 0) {
			continue
		}
		if rest := line[i+len(marker):]; rest != "/" {
			return rest
		}
	}
	return ""
}

func readLimit(path string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil && v > 0
}

// Host returns MemTotal from /proc/meminfo, in bytes.
func Host() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("MemTotal:")); ok {
			fields := strings.Fields(string(rest))
			if len(fields) > 0 {
				kb, _ := strconv.ParseUint(fields[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
