package store

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// defaultBudget applies when the container sets no limit: sized so that
// the all-in-one at 20k spans/s stays under 512 MiB RSS
// (docs/benchmarks.md), leaving the rest to the runtime, the metrics TSDB,
// the query engines and the Collector's pipelines.
const defaultBudget = 128 << 20

// defaultBudgetShare of a container's memory limit is the store's when
// the config sets neither limit.
const defaultBudgetShare = 25

// budget resolves the memory budget in bytes. limit is the container's
// memory limit (0: none) and host the machine's memory.
func (c MemoryConfig) budget(limit, host uint64) int64 {
	switch {
	case c.LimitMiB > 0:
		return int64(c.LimitMiB) << 20
	case c.LimitPercentage > 0:
		total := host
		if limit > 0 {
			total = limit
		}
		return int64(total * uint64(c.LimitPercentage) / 100)
	case limit > 0:
		return int64(limit * defaultBudgetShare / 100)
	}
	return defaultBudget
}

// containerMemoryLimit returns the memory limit of the process's cgroup,
// v2 or v1, or 0 when none is set.
func containerMemoryLimit() uint64 {
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

// hostMemory returns MemTotal from /proc/meminfo, in bytes.
func hostMemory() uint64 {
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
