package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store"
	"github.com/sightlinehq/sightline/internal/store/wal"
	"github.com/sightlinehq/sightline/internal/workload"
)

// peakRSS is the process's peak resident set (VmHWM), in bytes.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// openDefaults opens a store as the sightline exporter does by default:
// 128 MiB budget, compaction of 4 blocks up to 1 GiB; compaction is run
// by hand here.
func openDefaults(dir string, mod func(*store.Options)) (*store.DB, error) {
	st, err := objstore.OpenFilesystem(filepath.Join(dir, "blocks"))
	if err != nil {
		return nil, err
	}
	o := store.Options{Dir: dir, Bucket: st, CompactionInterval: -1, MemoryBudget: 128 << 20,
		MaxBlockDuration: 30 * time.Second, MaxBlockBytes: 64 << 20, WAL: wal.Options{Sync: wal.SyncInterval}}
	if mod != nil {
		mod(&o)
	}
	return store.Open(context.Background(), o)
}

// compactBench measures compaction of n spans written as the all-in-one
// writes them at 20k spans/s: level-0 blocks of about 160,000 spans (a
// head cut at a quarter of the 128 MiB budget, every 8 s; 30,000 before
// the head held records encoded). The fill runs once per data dir; the compaction runs
// in a fresh process (-measure), so its peak RSS is compaction's own.
func compactBench(args []string) error {
	fset := flag.NewFlagSet("compact", flag.ExitOnError)
	n := fset.Int("spans", 10_000_000, "spans to store")
	data := fset.String("data", "", "data dir")
	headSpans := fset.Int("head-spans", 160_000, "spans per level-0 block")
	level0 := fset.Int("level0", 0, "level-0 blocks a merge (compaction::level0_blocks); 0 is the store's default, min_blocks")
	measure := fset.Bool("measure", false, "compact (internal: the child process)")
	fset.Parse(args)
	if *data == "" {
		return fmt.Errorf("-data is required")
	}
	ctx := context.Background()
	if *measure {
		db, err := openDefaults(*data, func(o *store.Options) { o.CompactLevel0Blocks = *level0 })
		if err != nil {
			return err
		}
		before := db.Stats()
		rssOpen := peakRSS()
		t0 := time.Now()
		db.Compact(ctx)
		took := time.Since(t0)
		after := db.Stats()
		fmt.Printf("compacted %d spans: %d blocks (%d MiB) to %d blocks (%d MiB) in %.1f s; peak RSS %d MiB (%d MiB after opening)\n",
			after.BlockSpans, before.Blocks, before.BlockBytes>>20, after.Blocks, after.BlockBytes>>20, took.Seconds(), peakRSS()>>20, rssOpen>>20)
		if p := db.Problems(); len(p) > 0 {
			return fmt.Errorf("problems: %v", p)
		}
		return db.Close()
	}
	if _, err := os.Stat(filepath.Join(*data, "filled")); err != nil {
		db, err := openDefaults(*data, func(o *store.Options) {
			o.MemoryBudget = 0
			o.MaxBlockDuration = time.Hour
			o.MaxBlockBytes = 1 << 40
			o.StallBlocks = -1
		})
		if err != nil {
			return err
		}
		g := workload.New(5, time.Now().Add(-time.Hour), workload.Options{})
		t0 := time.Now()
		total := 0
		for total < *n {
			td, _ := g.Batch(500)
			if err := db.AppendTraces(td); err != nil {
				return err
			}
			total += td.SpanCount()
			if db.Stats().HeadSpans >= *headSpans {
				if err := db.Flush(ctx); err != nil {
					return err
				}
			}
		}
		if err := db.Flush(ctx); err != nil {
			return err
		}
		st := db.Stats()
		fmt.Printf("filled: %d spans in %d level-0 blocks (%d MiB) in %.0f s\n", st.BlockSpans, st.Blocks, st.BlockBytes>>20, time.Since(t0).Seconds())
		if err := db.Close(); err != nil {
			return err
		}
		os.WriteFile(filepath.Join(*data, "filled"), nil, 0o644)
	}
	cmd := exec.Command(os.Args[0], "compact", "-measure", "-data", *data, "-level0", strconv.Itoa(*level0))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

// fillWAL appends to a store that never cuts its head until its WAL holds
// the given bytes, then exits without closing: what a crash leaves.
func fillWAL(args []string) error {
	fset := flag.NewFlagSet("fill-wal", flag.ExitOnError)
	data := fset.String("data", "", "data dir")
	target := fset.Int64("wal-bytes", 1<<30, "WAL size to write")
	fset.Parse(args)
	db, err := openDefaults(*data, func(o *store.Options) {
		o.MemoryBudget = 0
		o.MaxBlockDuration = 24 * time.Hour
		o.MaxBlockBytes = 1 << 40
	})
	if err != nil {
		return err
	}
	g := workload.New(7, time.Now().Add(-time.Hour), workload.Options{})
	spans := 0
	walDir := filepath.Join(*data, "wal")
	for i := 0; ; i++ {
		td, ld := g.Batch(500)
		if err := db.AppendTraces(td); err != nil {
			return err
		}
		if err := db.AppendLogs(ld); err != nil {
			return err
		}
		spans += td.SpanCount()
		if i%20 == 0 && dirSize(walDir) >= *target {
			break
		}
	}
	fmt.Printf("wrote a %d MiB WAL: %d spans and their logs; exiting without closing\n", dirSize(walDir)>>20, spans)
	os.Exit(0)
	return nil
}

// replayBench writes a WAL of -wal-bytes in a child process that exits
// without closing, then opens the store with the default memory budget and
// reports how long the replay took and the peak RSS.
func replayBench(args []string) error {
	fset := flag.NewFlagSet("replay", flag.ExitOnError)
	data := fset.String("data", "", "data dir (emptied first)")
	target := fset.Int64("wal-bytes", 1<<30, "WAL size to replay")
	fset.Parse(args)
	if *data == "" {
		return fmt.Errorf("-data is required")
	}
	os.RemoveAll(*data)
	fill := exec.Command(os.Args[0], "fill-wal", "-data", *data, "-wal-bytes", strconv.FormatInt(*target, 10))
	fill.Stdout, fill.Stderr = os.Stdout, os.Stderr
	if err := fill.Run(); err != nil {
		return err
	}
	walBytes := dirSize(filepath.Join(*data, "wal"))
	t0 := time.Now()
	db, err := openDefaults(*data, nil)
	if err != nil {
		return err
	}
	took := time.Since(t0)
	st := db.Stats()
	fmt.Printf("replayed a %d MiB WAL in %.1f s (%.0f MiB/s): %d spans and %d log records in %d blocks and the head; peak RSS %d MiB with a 128 MiB budget\n",
		walBytes>>20, took.Seconds(), float64(walBytes>>20)/took.Seconds(), st.BlockSpans+int64(st.HeadSpans), st.BlockLogs+int64(st.HeadLogs), st.Blocks, peakRSS()>>20)
	return db.Close()
}
