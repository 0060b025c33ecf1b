// Package memlimit finds the memory the process may use and sets the Go
// runtime's soft memory limit from it, so that garbage is collected before
// the heap reaches what the memory_limiter processor and the store's budget
// are sized against, instead of at twice the live heap (GOGC=100).
package memlimit

import (
	"bufio"
	"bytes"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// EnvLimitMiB is the process's memory limit in MiB. The all-in-one's
// memory_limiter reads it (configs/all-in-one.yaml); SetDefaults fills it
// in from the container's limit when it is unset.
const EnvLimitMiB = "SIGHTLINE_MEMORY_LIMIT_MIB"

// AllInOneLimitMiB is the all-in-one's limit outside a container: with the
// store's 128 MiB budget it keeps RSS under 512 MiB at 20k spans/s
// (docs/benchmarks.md). RSS is this plus about 100 MiB of the binary's
// own code and tables, mapped from its file (at 448 the peak was 543).
// It must match the default in all-in-one.yaml.
const AllInOneLimitMiB = 400

// SetDefaults sets the Go soft memory limit (unless GOMEMLIMIT is set) to
// 85% of the process's limit, leaving the memory_limiter's hard limit as
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
	soft := mib << 20 * 85 / 100
	debug.SetMemoryLimit(soft)
	return soft
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
