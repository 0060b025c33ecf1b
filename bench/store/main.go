// Command store measures the trace and log store on the workload generator's
// telemetry. See docs/benchmarks.md for the figures and how they were run.
//
//	go run ./bench/store load  -addr 127.0.0.1:24317 -duration 60s -data DIR
//	go run ./bench/store query -spans 10000000 -data DIR
//	go run ./bench/store compact -spans 10000000 -data DIR
//	go run ./bench/store replay -wal-bytes 1073741824 -data DIR
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/store/wal"
	"github.com/sightlinehq/sightline/internal/workload"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: store load|query [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "load":
		err = load(os.Args[2:])
	case "query":
		err = query(os.Args[2:])
	case "compact":
		err = compactBench(os.Args[2:])
	case "replay":
		err = replayBench(os.Args[2:])
	case "fill-wal":
		err = fillWAL(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// openDB opens a store for offline work. The bulk load of the query
// benchmark is one sequential writer, so it syncs on an interval: per-append
// fsync would measure the disk's fsync latency, not the store.
func openDB(dir string) (*store.DB, error) {
	st, err := objstore.OpenFilesystem(filepath.Join(dir, "blocks"))
	if err != nil {
		return nil, err
	}
	// Compaction runs once, after loading, so level-0 blocks pile up on
	// purpose: the stall that protects a live store would refuse the load.
	return store.Open(context.Background(), store.Options{Dir: dir, Bucket: st, CompactionInterval: -1, MaxBlockDuration: time.Hour,
		CompactMinBlocks: 2, CompactMaxBytes: 8 << 30, StallBlocks: -1, WAL: wal.Options{Sync: wal.SyncInterval}})
}

// load sends pre-generated batches over OTLP/gRPC with many concurrent
// clients and counts what the server acknowledged. Batches are generated
// before the clock starts so that the generator's cost is not measured.
func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:24317", "OTLP gRPC address")
	workers := fs.Int("workers", 16, "concurrent clients")
	duration := fs.Duration("duration", 30*time.Second, "how long to send")
	batch := fs.Int("batch", 40, "traces per request (about 14 spans each)")
	withLogs := fs.Bool("logs", true, "send each batch's log records after its spans")
	fs.Parse(args)

	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	tc, lc := ptraceotlp.NewGRPCClient(conn), plogotlp.NewGRPCClient(conn)

	// Each worker pre-generates its batches before the clock starts, so the
	// generator's cost is not measured, and gives every request fresh trace
	// IDs (the originals XOR a per-request salt; logs get the same salt and
	// stay linked), so that the store sees new traces and nothing is
	// deduplicated away.
	const pregen = 8
	var spans, logs, errs atomic.Int64
	start := time.Now()
	deadline := start.Add(*duration)
	var wg sync.WaitGroup
	for w := range *workers {
		g := workload.New(uint64(w+1), time.Now(), workload.Options{})
		type req struct {
			td      ptrace.Traces
			ld      plog.Logs
			spanIDs []pcommon.TraceID
			logIDs  []pcommon.TraceID
		}
		reqs := make([]req, pregen)
		for i := range reqs {
			td, ld := g.Batch(*batch)
			r := req{td: td, ld: ld}
			for _, rs := range td.ResourceSpans().All() {
				for _, ss := range rs.ScopeSpans().All() {
					for _, sp := range ss.Spans().All() {
						r.spanIDs = append(r.spanIDs, sp.TraceID())
					}
				}
			}
			for _, rl := range ld.ResourceLogs().All() {
				for _, sl := range rl.ScopeLogs().All() {
					for _, l := range sl.LogRecords().All() {
						r.logIDs = append(r.logIDs, l.TraceID())
					}
				}
			}
			reqs[i] = r
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				r := &reqs[i%pregen]
				salt := uint64(w)<<40 | uint64(i)
				k := 0
				for _, rs := range r.td.ResourceSpans().All() {
					for _, ss := range rs.ScopeSpans().All() {
						for _, sp := range ss.Spans().All() {
							sp.SetTraceID(salted(r.spanIDs[k], salt))
							k++
						}
					}
				}
				k = 0
				for _, rl := range r.ld.ResourceLogs().All() {
					for _, sl := range rl.ScopeLogs().All() {
						for _, l := range sl.LogRecords().All() {
							l.SetTraceID(salted(r.logIDs[k], salt))
							k++
						}
					}
				}
				if _, err := tc.Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(r.td)); err != nil {
					errs.Add(1)
					continue
				}
				spans.Add(int64(len(r.spanIDs)))
				if !*withLogs {
					continue
				}
				if _, err := lc.Export(context.Background(), plogotlp.NewExportRequestFromLogs(r.ld)); err != nil {
					errs.Add(1)
					continue
				}
				logs.Add(int64(len(r.logIDs)))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	fmt.Printf("acknowledged: %d spans (%.0f spans/s), %d log records (%.0f records/s), %d failed requests, %.1fs\n",
		spans.Load(), float64(spans.Load())/el, logs.Load(), float64(logs.Load())/el, errs.Load(), el)
	return nil
}

// query fills a store with n spans straight through the DB (no network),
// compacts it, then measures trace-by-ID and a filtered span search.
func query(args []string) error {
	fs := flag.NewFlagSet("query", flag.ExitOnError)
	n := fs.Int("spans", 10_000_000, "spans to store")
	data := fs.String("data", "", "data dir (reused when it already holds the data)")
	lookups := fs.Int("lookups", 2000, "trace-by-ID lookups")
	fs.Parse(args)
	if *data == "" {
		return fmt.Errorf("-data is required")
	}
	db, err := openDB(*data)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx := context.Background()
	// The IDs to look up are regenerated from the same seed: every 97th
	// trace of the stream.
	var ids []storage.TraceID
	g := workload.New(3, time.Now().Add(-2*time.Hour), workload.Options{})
	if st := db.Stats(); st.BlockSpans+int64(st.HeadSpans) < int64(*n) {
		t0 := time.Now()
		var total int
		for total < *n {
			td, _ := g.Batch(1000)
			for _, rs := range td.ResourceSpans().All() {
				for _, ss := range rs.ScopeSpans().All() {
					for i, s := range ss.Spans().All() {
						if i == 0 && rand.IntN(40) == 0 {
							ids = append(ids, storage.TraceID(s.TraceID()))
						}
					}
				}
			}
			if err := db.AppendTraces(td); err != nil {
				return err
			}
			total += td.SpanCount()
			if db.Stats().HeadSpans > 1_000_000 {
				if err := db.Flush(ctx); err != nil {
					return err
				}
			}
		}
		if err := db.Flush(ctx); err != nil {
			return err
		}
		fmt.Printf("stored %d spans in %.0fs\n", total, time.Since(t0).Seconds())
		db.Compact(ctx)
		os.WriteFile(filepath.Join(*data, "ids"), idsBytes(ids), 0o644)
	} else {
		b, err := os.ReadFile(filepath.Join(*data, "ids"))
		if err != nil {
			return err
		}
		for i := 0; i+16 <= len(b); i += 16 {
			ids = append(ids, storage.TraceID(b[i:i+16]))
		}
	}
	st := db.Stats()
	fmt.Printf("store: %d blocks, %d spans, %d bytes (%.1f B/span)\n", st.Blocks, st.BlockSpans, st.BlockBytes, float64(st.BlockBytes)/float64(st.BlockSpans))

	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	var lat []time.Duration
	for i := 0; i < *lookups && i < len(ids); i++ {
		q, _ := db.Querier(ctx)
		t0 := time.Now()
		spans, err := q.TraceByID(ctx, ids[i], 0, 0)
		lat = append(lat, time.Since(t0))
		q.Close()
		if err != nil || len(spans) < 8 {
			return fmt.Errorf("trace %s: %d spans, %v", ids[i], len(spans), err)
		}
	}
	p50, p99 := pct(lat, 50), pct(lat, 99)
	fmt.Printf("trace by ID: %d lookups, p50 %v, p99 %v\n", len(lat), p50, p99)

	// Span search: service + status + duration, Tempo's default limit of
	// 20 traces, and the same search to exhaustion.
	search := &storage.SpanQuery{ServiceName: "checkout", HasStatus: true, Status: storage.StatusError, MinDuration: int64(5 * time.Millisecond)}
	for _, limit := range []int{20, 0} {
		var lat []time.Duration
		var found int
		for range 5 {
			q, _ := db.Querier(ctx)
			traces := map[storage.TraceID]struct{}{}
			t0 := time.Now()
			err := q.Spans(ctx, search, func(s *storage.Span) bool {
				traces[s.TraceID] = struct{}{}
				return limit == 0 || len(traces) < limit
			})
			lat = append(lat, time.Since(t0))
			q.Close()
			if err != nil {
				return err
			}
			found = len(traces)
		}
		fmt.Printf("search service=checkout status=error duration>5ms limit=%d: %d traces, median %v\n", limit, found, pct(lat, 50))
	}
	return nil
}

func idsBytes(ids []storage.TraceID) []byte {
	out := make([]byte, 0, 16*len(ids))
	for _, id := range ids {
		out = append(out, id[:]...)
	}
	return out
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func salted(id pcommon.TraceID, salt uint64) pcommon.TraceID {
	for i := range 8 {
		id[8+i] ^= byte(salt >> (8 * i))
	}
	return id
}
