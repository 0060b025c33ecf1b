package sightlinestorage

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

// seriesBytes is what one series of the metrics TSDB's head is taken to
// cost when its limit is sized from the budget: 876 bytes measured
// (docs/benchmarks.md, "Memory for 100k active series"), rounded up.
const seriesBytes = 1 << 10

// maxSeries resolves metrics::max_series for the store's memory budget:
// 0 is none for the metrics store.
func (c MetricsConfig) maxSeries(budget int64) int64 {
	switch {
	case c.MaxSeries < 0:
		return 0
	case c.MaxSeries > 0:
		return c.MaxSeries
	}
	return max(budget/seriesBytes, 1)
}
