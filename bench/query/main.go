// Command query measures TraceQL and LogQL over a store of workload
// telemetry: latency (p50, p99) and the block bytes each query reads. See
// docs/benchmarks.md for the figures and the command that produced them.
//
//	go run ./bench/query -spans 10000000 -data DIR
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/query/logql"
	"github.com/sightlinehq/sightline/internal/query/traceql"
	"github.com/sightlinehq/sightline/internal/store"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/store/wal"
	"github.com/sightlinehq/sightline/internal/workload"
)

func main() {
	n := flag.Int("spans", 10_000_000, "spans to store")
	data := flag.String("data", "", "data dir (reused when it already holds the data)")
	runs := flag.Int("runs", 20, "runs per query")
	flag.StringVar(&only, "only", "", "run only the queries whose name contains this")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(*data, *n, *runs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

var only string

// meta is what the load leaves for later runs: the data's time range and
// a sample of trace IDs to look up.
type meta struct {
	start, end int64
	ids        []storage.TraceID
}

func run(dir string, n, runs int) error {
	if dir == "" {
		return fmt.Errorf("-data is required")
	}
	st, err := objstore.OpenFilesystem(filepath.Join(dir, "blocks"))
	if err != nil {
		return err
	}
	// One sequential writer: sync on an interval, as the store benchmark
	// does. Compaction runs once, after loading, so the stall that protects
	// a live store from a level-0 backlog is off.
	db, err := store.Open(context.Background(), store.Options{Dir: dir, Bucket: st, CompactionInterval: -1, MaxBlockDuration: 2 * time.Hour,
		CompactMinBlocks: 2, CompactMaxBytes: 8 << 30, StallBlocks: -1, WAL: wal.Options{Sync: wal.SyncInterval}})
	if err != nil {
		return err
	}
	defer db.Close()
	ctx := context.Background()
	m, err := loadOrRead(ctx, db, dir, n)
	if err != nil {
		return err
	}
	s := db.Stats()
	fmt.Printf("store: %d blocks, %d spans, %d bytes; data spans %s\n", s.Blocks, s.BlockSpans, s.BlockBytes, time.Duration(m.end-m.start).Round(time.Second))

	fmt.Println("| query | runs | p50 | p99 | bytes read (median) | result |")
	fmt.Println("|---|---|---|---|---|---|")
	measure := func(name string, runs int, fn func(ctx context.Context, q storage.Querier, i int) (string, error)) error {
		var lat []time.Duration
		var read []int64
		var res string
		for i := range runs {
			stats := &storage.Stats{}
			qctx := storage.WithStats(ctx, stats)
			q, err := db.Querier(qctx)
			if err != nil {
				return err
			}
			t0 := time.Now()
			res, err = fn(qctx, q, i)
			lat = append(lat, time.Since(t0))
			q.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			read = append(read, stats.BytesRead())
		}
		slices.Sort(lat)
		slices.Sort(read)
		fmt.Printf("| %s | %d | %s | %s | %s | %s |\n", name, runs, round(lat[len(lat)/2]), round(lat[(len(lat)*99)/100]), mib(read[len(read)/2]), res)
		return nil
	}
	search := func(q string, limit int) func(context.Context, storage.Querier, int) (string, error) {
		pq, err := traceql.Parse(q)
		if err != nil {
			panic(err)
		}
		return func(ctx context.Context, sq storage.Querier, _ int) (string, error) {
			r, err := traceql.Search(ctx, sq, traceql.SearchRequest{Query: pq, Start: m.start, End: m.end, Limit: limit, SpansPerSpanset: 3})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%d traces", len(r.Traces)), nil
		}
	}
	// metrics runs q over the data's first hour; with a cache, as the API
	// keeps one, every run after the first reads the blocks' partial
	// series from it.
	metrics := func(q string, cache *traceql.MetricsCache) func(context.Context, storage.Querier, int) (string, error) {
		pq, err := traceql.Parse(q)
		if err != nil {
			panic(err)
		}
		return func(ctx context.Context, sq storage.Querier, _ int) (string, error) {
			end := m.start + int64(time.Hour)
			r, err := traceql.Metrics(ctx, sq, traceql.MetricsRequest{Query: pq, Start: m.start, End: end, Step: traceql.DefaultStep(m.start, end), Cache: cache})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%d series × %d steps", len(r.Series), len(r.Series[0].Samples)), nil
		}
	}
	logs := func(q string, limit int, vary func(i int) string) func(context.Context, storage.Querier, int) (string, error) {
		return func(ctx context.Context, sq storage.Querier, i int) (string, error) {
			text := q
			if vary != nil {
				text = vary(i)
			}
			pq, err := logql.Parse(text)
			if err != nil {
				return "", err
			}
			streams, _, err := logql.Select(ctx, sq, logql.SelectRequest{Expr: pq.Log, Start: m.start, End: m.end + 1, Limit: limit})
			if err != nil {
				return "", err
			}
			lines := 0
			for _, s := range streams {
				lines += len(s.Entries)
			}
			return fmt.Sprintf("%d lines", lines), nil
		}
	}
	steps := []struct {
		name string
		runs int
		fn   func(context.Context, storage.Querier, int) (string, error)
	}{
		{"trace by ID", len(m.ids), func(ctx context.Context, q storage.Querier, i int) (string, error) {
			spans, err := q.TraceByID(ctx, m.ids[i], 0, 0)
			return fmt.Sprintf("%d spans", len(spans)), err
		}},
		{"`{ resource.service.name = \"checkout\" && status = error && duration > 500ms }`, limit 20", runs, search(`{ resource.service.name = "checkout" && status = error && duration > 500ms }`, 20)},
		{"`{ resource.service.name = \"checkout\" && status = error && duration > 5ms }`, limit 20", runs, search(`{ resource.service.name = "checkout" && status = error && duration > 5ms }`, 20)},
		{"same, limit 1000", max(runs/4, 3), search(`{ resource.service.name = "checkout" && status = error && duration > 5ms }`, 1000)},
		{"`{ status = error }`, limit 20", runs, search(`{ status = error }`, 20)},
		{"`{ resource.service.name = \"frontend\" } >> { resource.service.name = \"payment\" && status = error }`, limit 20", runs, search(`{ resource.service.name = "frontend" } >> { resource.service.name = "payment" && status = error }`, 20)},
		{"`{ resource.service.name = \"checkout\" } >> { status = error }`, limit 20", runs, search(`{ resource.service.name = "checkout" } >> { status = error }`, 20)},
		{"`{ status = error } | by(resource.service.name) | count() > 2`, limit 20", runs, search(`{ status = error } | by(resource.service.name) | count() > 2`, 20)},
		{"trace-level `{ traceDuration > 50ms && status = error }`, limit 20", runs, search(`{ traceDuration > 50ms && status = error }`, 20)},
		{"`{ } | rate() by (resource.service.name)` over 1 h", max(runs/4, 3), metrics(`{ } | rate() by (resource.service.name)`, nil)},
		{"`{ } | rate() by (resource.service.name)` over 1 h, repeated with the block cache", runs, metrics(`{ } | rate() by (resource.service.name)`, traceql.NewMetricsCache(32<<20))},
		{"`{service_name=\"checkout\"} |= \"failed\"`, limit 100", runs, logs(`{service_name="checkout"} |= "failed"`, 100, nil)},
		{"`{service_name=~\".+\"} | trace_id=\"…\"`, one trace", len(m.ids), logs("", 1000, func(i int) string {
			return fmt.Sprintf(`{service_name=~".+"} | trace_id=%q`, m.ids[i].String())
		})},
	}
	for _, s := range steps {
		if !strings.Contains(s.name, only) {
			continue
		}
		if err := measure(s.name, s.runs, s.fn); err != nil {
			return err
		}
	}
	return nil
}

func loadOrRead(ctx context.Context, db *store.DB, dir string, n int) (meta, error) {
	var m meta
	path := filepath.Join(dir, "bench-meta")
	if b, err := os.ReadFile(path); err == nil && len(b) >= 16 {
		m.start = int64(binary.LittleEndian.Uint64(b))
		m.end = int64(binary.LittleEndian.Uint64(b[8:]))
		for i := 16; i+16 <= len(b); i += 16 {
			m.ids = append(m.ids, storage.TraceID(b[i:i+16]))
		}
		return m, nil
	}
	// 5 ms between traces: 10M spans cover about an hour.
	t0 := time.Now().Add(-3 * time.Hour).Truncate(time.Minute)
	g := workload.New(11, t0, workload.Options{TraceInterval: 5 * time.Millisecond})
	m.start = t0.UnixNano()
	began := time.Now()
	total, logsN, batches := 0, 0, 0
	for total < n {
		td, ld := g.Batch(1000)
		if batches%7 == 0 {
			m.ids = append(m.ids, storage.TraceID(td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).TraceID()))
		}
		batches++
		if err := db.AppendTraces(td); err != nil {
			return m, err
		}
		if err := db.AppendLogs(ld); err != nil {
			return m, err
		}
		total += td.SpanCount()
		logsN += ld.LogRecordCount()
		if db.Stats().HeadSpans > 1_000_000 {
			if err := db.Flush(ctx); err != nil {
				return m, err
			}
		}
	}
	if err := db.Flush(ctx); err != nil {
		return m, err
	}
	for {
		before := len(db.BlockMetas())
		db.Compact(ctx)
		if len(db.BlockMetas()) >= before {
			break
		}
	}
	for _, bm := range db.BlockMetas() {
		m.end = max(m.end, bm.MaxTime)
	}
	fmt.Printf("stored %d spans and %d log records in %.0fs\n", total, logsN, time.Since(began).Seconds())
	b := binary.LittleEndian.AppendUint64(nil, uint64(m.start))
	b = binary.LittleEndian.AppendUint64(b, uint64(m.end))
	for _, id := range m.ids {
		b = append(b, id[:]...)
	}
	return m, os.WriteFile(path, b, 0o644)
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(10 * time.Millisecond)
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func mib(b int64) string {
	if b < 1<<20 {
		return fmt.Sprintf("%.0f KiB", float64(b)/1024)
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}
