// Package store is Sightline's embedded trace and log store and the
// `sightline` exporter that feeds it.
//
// Data flows WAL → head → blocks. An append is logged to the WAL (durable
// under the sync policy), then inserted into the in-memory head, where
// queries see it at once. The head is cut into immutable Parquet blocks by
// size or age; blocks are compacted and expire by age and total size. The
// formats are documented in docs/storage-format.md.
package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/block"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/store/wal"
)

// WAL record types.
const (
	recTraces byte = 1 // payload: OTLP ExportTraceServiceRequest protobuf
	recLogs   byte = 2 // payload: OTLP ExportLogsServiceRequest protobuf
)

// ErrWrite wraps failures to make an append durable (a full disk, an I/O
// error). Nothing of the failed append was acknowledged; it is safe and
// right for the client to retry.
var ErrWrite = errors.New("store cannot persist data")

// ErrOverBudget is returned, before anything is written, while the data
// held in memory (the head and the heads waiting to be written to blocks)
// is at the memory budget. It clears as blocks are written; the client
// should retry after a delay, as OTLP prescribes for backpressure.
var ErrOverBudget = errors.New("store memory budget reached")

// ErrBacklog is returned, before anything is written, while more level-0
// blocks of the signal wait for compaction than Options.StallBlocks: data
// arrives faster than it can be merged, and taking more would only grow
// the backlog (and the memory and CPU it costs) until the load stops. It
// clears as compaction catches up; the client should retry after a delay.
var ErrBacklog = errors.New("store compaction backlog")

// ErrSharedBucket is returned by Open when a store that is to be its
// bucket's only process (Options.Shared unset) finds that ingesters or a
// compactor share the bucket: it would delete and merge their blocks.
var ErrSharedBucket = errors.New("the bucket is shared by other processes")

// defaultBlockReaders bounds the open blocks' Parquet readers of a store
// without a memory budget: the footers of about 10M spans with all of
// their page index.
const defaultBlockReaders = 32 << 20

// defaultPageCache bounds the decoded pages a store without a memory
// budget keeps (Options.PageCache).
const defaultPageCache = 16 << 20

// Options configure a DB.
type Options struct {
	// Dir holds the WAL and temporary files; it is always local.
	Dir string
	// Bucket holds the blocks.
	Bucket *objstore.Store
	// WAL configures the write-ahead log; its Spares is defaultWALSpares
	// when 0 and none when negative.
	WAL wal.Options

	MaxBlockBytes    int64         // cut the head at this many OTLP bytes
	MaxBlockDuration time.Duration // or when it is this old
	RowGroupRows     int
	// BlockFormat is the block format version written, the newest when
	// 0 (block.WriteOptions.Format).
	BlockFormat int

	// MemoryBudget bounds the heap bytes held by the head and the cut heads
	// waiting to be written, as estimated while they fill. At the budget
	// appends are refused with ErrOverBudget. The head is also cut at a
	// quarter of it, so that one head can be written while the next fills
	// and a third waits. 0 means no bound.
	MemoryBudget int64
	// BlockReaders bounds the bytes the Parquet readers of open blocks
	// hold, their footers and page indexes (block.FileCache), which
	// otherwise grow with all the data the store keeps: about 1.7 MiB per
	// million spans. 0 is a quarter of MemoryBudget (32 MiB without one);
	// negative keeps every open block's readers.
	BlockReaders int64
	// PageCache bounds the bytes of the pages queries decoded that are
	// kept for the next (block.PageCache). 0 is an eighth of MemoryBudget
	// (16 MiB without one); negative keeps none.
	PageCache int64
	// Limits bound attribute sizes and counts; over them, data is
	// truncated on the way in (limits.go).
	Limits AttributeLimits

	RetentionAge   time.Duration // 0 keeps forever
	RetentionBytes int64         // 0 is unlimited

	// CompactionInterval is how often compaction of the upper levels and
	// retention run; level 0 is also merged whenever a flush leaves
	// CompactLevel0Blocks of it. Negative runs neither in the background:
	// only Compact and ApplyRetention do.
	CompactionInterval time.Duration
	// CompactMinBlocks blocks of one level are merged into one block of
	// the next level, up to CompactMaxBytes of data.
	CompactMinBlocks int
	CompactMaxBytes  int64
	// CompactLevel0Blocks level-0 blocks (one per cut head) are merged at
	// a time into one block of level 1; 0 is CompactMinBlocks. Level-0
	// blocks are small, so a larger fan-in there takes a level out of
	// every span's way to CompactMaxBytes for the price of more inputs'
	// read buffers in one merge of small blocks.
	CompactLevel0Blocks int
	// StallBlocks is the number of level-0 blocks of one signal waiting for
	// compaction at which its appends are refused with ErrBacklog, as
	// RocksDB stops writes at level0_stop_writes_trigger. It caps what is
	// taken at what compaction keeps up with, so an overload is refused as
	// it arrives instead of after a backlog has formed. 0 means 8 times
	// CompactMinBlocks or twice CompactLevel0Blocks, whichever is more; a
	// negative value never stalls.
	StallBlocks int

	// Shared says that other processes use the bucket too: ingesters
	// writing blocks, queriers reading them, a compactor merging them
	// (docs/scaling.md). The store then never deletes a block another
	// process may be reading: it marks what it replaces (compacted.json)
	// and only the compactor deletes marked blocks after DeleteDelay. It
	// reloads the bucket's block list every PollInterval.
	Shared bool
	// Writer names this process among the bucket's writers: its level-0
	// blocks carry it, and WAL replay trusts only its own blocks' claims.
	// Required when Shared and ingesting.
	Writer string
	// PollInterval is how often a shared store lists the bucket for blocks
	// written, merged and removed by other processes. 0 is 30 s.
	PollInterval time.Duration
	// DeleteDelay is how long a replaced block of a shared bucket, and an
	// incomplete one, stays before the compactor deletes it: longer than a
	// reader's PollInterval plus its longest query. 0 is 15 minutes.
	DeleteDelay time.Duration
	// Lease, if set, gates compaction and retention: they run only while
	// this process holds it, so that one of several compactors of a
	// shared bucket works and the others stand by.
	Lease *Lease

	Logger *zap.Logger
	// OnProblem is called whenever the set of problems changes.
	OnProblem func(problems []error)
	Now       func() time.Time
}

func (o *Options) setDefaults() {
	if o.MaxBlockBytes <= 0 {
		o.MaxBlockBytes = 256 << 20
	}
	if o.MaxBlockDuration <= 0 {
		o.MaxBlockDuration = 30 * time.Second
	}
	if o.CompactionInterval == 0 {
		o.CompactionInterval = time.Minute
	}
	if o.CompactMinBlocks <= 1 {
		o.CompactMinBlocks = 4
	}
	if o.CompactMaxBytes <= 0 {
		o.CompactMaxBytes = 1 << 30
	}
	if o.CompactLevel0Blocks <= 1 {
		o.CompactLevel0Blocks = o.CompactMinBlocks
	}
	if o.StallBlocks == 0 {
		o.StallBlocks = max(8*o.CompactMinBlocks, 2*o.CompactLevel0Blocks)
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 30 * time.Second
	}
	if o.DeleteDelay <= 0 {
		o.DeleteDelay = 15 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// DB is the store. All methods are safe for concurrent use.
type DB struct {
	opts Options
	wal  *wal.WAL
	log  *zap.Logger
	// pages are the files block writers buffer row groups' pages in,
	// shared by the head's flushes and the merges.
	pages *block.PageFiles
	// files holds the Parquet readers of the open blocks (nil: each block
	// holds its own).
	files     *block.FileCache
	pageCache *block.PageCache

	// appendMu orders appends against head cuts: an append holds it shared
	// from its WAL write to its head insert, a cut holds it exclusively, so
	// every record in a closed segment is in the head that was cut with it.
	appendMu sync.RWMutex

	// flushMu serialises head flushes, compactMu[0] merges of level 0 and
	// compactMu[1] merges of the upper levels: the background loops and
	// explicit calls (Flush, Compact) may overlap.
	flushMu   sync.Mutex
	compactMu [2]sync.Mutex

	mu       sync.RWMutex
	head     *head
	flushing []*head
	blocks   []*blockRef
	// handoff are this ingester's replaced level-0 blocks that it still
	// serves to queriers (handoff.go).
	handoff []handoffBlock

	probMu   sync.Mutex
	problems map[string]error

	// mem is the estimated heap bytes of the head and the cut heads.
	mem atomic.Int64
	// refused counts appends refused for the budget, per signal;
	// refusedRequests the requests refused by Admit, before decoding.
	refusedSpans, refusedLogs atomic.Int64
	refusedRequests           [2][numRefusalReasons]atomic.Int64
	// recent remembers the requests appended last, and retried counts the
	// spans and log records of repeats answered from it (retries.go).
	recent                    *recentPayloads
	retriedSpans, retriedLogs atomic.Int64
	// truncatedAttrs and droppedAttrs count the attribute limits' work.
	truncatedAttrs, droppedAttrs atomic.Int64

	// level0 counts each signal's level-0 blocks (written from heads, not
	// yet merged), for the stall check; kept by countLevel0 under mu.
	level0 [2]atomic.Int64

	kick        chan struct{}
	flushKick   chan struct{}
	compactKick chan struct{}
	done        chan struct{}
	wg          sync.WaitGroup
	closing     atomic.Bool
}

type blockRef struct {
	*block.Block
	refs    atomic.Int64
	deleted atomic.Bool
	db      *DB
	// merging marks a block in a running merge, so that no other merge
	// and no retention pass takes it. Guarded by DB.mu.
	merging bool
}

func (b *blockRef) acquire() { b.refs.Add(1) }

// release drops a reference. The last one closes the block and, if it was
// removed from the set meanwhile, deletes its objects: a block is never
// deleted under a reader.
func (b *blockRef) release() {
	if b.refs.Add(-1) != 0 {
		return
	}
	b.Close()
	if b.deleted.Load() && !b.db.opts.Shared {
		if err := block.Delete(context.Background(), b.db.opts.Bucket, b.Meta.Signal, b.Meta.ID); err != nil {
			b.db.log.Warn("delete block", zap.String("block", b.Meta.ID), zap.Error(err))
		}
	}
}

// Open opens or creates a store: it loads the blocks, replays the WAL into
// the head and starts the background cut, compaction and retention loop.
// Damage found on the way (a corrupt block, a torn WAL segment) does not
// stop it: the damaged part is left out, reported through Problems and
// OnProblem, and the rest is served.
func Open(ctx context.Context, opts Options) (*DB, error) {
	opts.setDefaults()
	if opts.Bucket == nil {
		return nil, errors.New("store: no bucket")
	}
	if opts.Lease != nil && !opts.Shared {
		return nil, errors.New("store: a lease is for a shared bucket")
	}
	if opts.Shared && opts.CompactionInterval > 0 && opts.Lease == nil {
		return nil, errors.New("store: background compaction of a shared bucket needs a lease")
	}
	db := &DB{opts: opts, log: opts.Logger, problems: map[string]error{}, kick: make(chan struct{}, 1), flushKick: make(chan struct{}, 1), compactKick: make(chan struct{}, 1), done: make(chan struct{}),
		recent: newRecentPayloads()}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	os.RemoveAll(db.tmpDir())
	db.pages = block.NewPageFiles(db.tmpDir())
	if n := opts.BlockReaders; n >= 0 {
		if n == 0 {
			n = cmp.Or(opts.MemoryBudget/4, defaultBlockReaders)
		}
		db.files = block.NewFileCache(n)
	}
	if n := opts.PageCache; n >= 0 {
		db.pageCache = block.NewPageCache(cmp.Or(n, opts.MemoryBudget/8, defaultPageCache))
	}
	if err := db.loadBlocks(ctx); err != nil {
		return nil, err
	}
	db.head = newHead(opts.Now().UnixNano())
	if err := db.replay(ctx); err != nil {
		return nil, err
	}
	if opts.WAL.Spares == 0 {
		opts.WAL.Spares = defaultWALSpares
	}
	w, err := wal.Open(db.walDir(), opts.WAL)
	if err != nil {
		return nil, err
	}
	db.wal = w
	db.wg.Add(2)
	// Cut the head when it is full (kick) or old.
	go db.every(min(opts.MaxBlockDuration/4, 15*time.Second), db.kick, func(context.Context) { db.maybeCut() })
	go db.every(0, db.flushKick, func(ctx context.Context) { db.FlushHeads(ctx) })
	if opts.Shared {
		db.wg.Add(1)
		go db.every(opts.PollInterval, nil, func(ctx context.Context) { db.syncBlocks(ctx) })
	}
	if opts.Lease != nil {
		db.wg.Add(1)
		go db.holdLease()
	}
	if opts.CompactionInterval > 0 {
		db.wg.Add(2)
		// Level 0 is merged as soon as a flush leaves enough of it, beside
		// the upper levels: a merge of large blocks takes minutes, and
		// level-0 blocks piling up behind it would stall ingest
		// (StallBlocks) for no lack of CPU.
		go db.every(opts.CompactionInterval, db.compactKick, func(ctx context.Context) { db.compactLevels(ctx, 0, 0) })
		go db.every(opts.CompactionInterval, nil, func(ctx context.Context) {
			db.compactLevels(ctx, 1, math.MaxInt)
			db.ApplyRetention(ctx)
		})
	}
	return db, nil
}

func (db *DB) walDir() string { return filepath.Join(db.opts.Dir, "wal") }
func (db *DB) tmpDir() string { return filepath.Join(db.opts.Dir, "tmp") }

func (db *DB) setProblem(key string, err error) {
	db.probMu.Lock()
	old, had := db.problems[key]
	switch {
	case err == nil && !had:
		db.probMu.Unlock()
		return
	case err == nil:
		delete(db.problems, key)
		db.log.Info("store problem cleared", zap.String("problem", key), zap.NamedError("was", old))
	default:
		if had && old.Error() == err.Error() {
			db.probMu.Unlock()
			return
		}
		db.problems[key] = err
		db.log.Error("store problem", zap.String("problem", key), zap.Error(err))
	}
	probs := db.problemsLocked()
	db.probMu.Unlock()
	if db.opts.OnProblem != nil {
		db.opts.OnProblem(probs)
	}
}

func (db *DB) problemsLocked() []error {
	keys := make([]string, 0, len(db.problems))
	for k := range db.problems {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]error, 0, len(keys))
	for _, k := range keys {
		out = append(out, db.problems[k])
	}
	return out
}

// Problems returns the current problems: damaged blocks and WAL segments,
// failed writes and flushes. Empty means healthy.
func (db *DB) Problems() []error {
	db.probMu.Lock()
	defer db.probMu.Unlock()
	return db.problemsLocked()
}

// loadBlocks opens every complete block, quarantines damaged ones, removes
// leftovers of interrupted writes and finishes interrupted compactions.
func (db *DB) loadBlocks(ctx context.Context) error {
	st := db.opts.Bucket
	if !db.opts.Shared {
		// A store that is its bucket's only process deletes what it finds
		// half-written and merges and expires what it finds: in a bucket
		// that roles share it would destroy their blocks.
		leases, err := st.List(ctx, "leases/", "")
		if err != nil {
			return fmt.Errorf("list leases: %w", err)
		}
		if len(leases) > 0 {
			return fmt.Errorf("%w: it holds a compactor lease (%s); run this process with role ingester, querier or compactor, or give it a bucket of its own", ErrSharedBucket, leases[0])
		}
	}
	var refs []*blockRef
	replaced := map[string]bool{}
	for _, sig := range []block.Signal{block.Traces, block.Logs} {
		keys, err := st.List(ctx, string(sig)+"/", "")
		if err != nil {
			return fmt.Errorf("list blocks: %w", err)
		}
		files := map[string][]string{}
		for _, k := range keys {
			parts := strings.Split(k, "/")
			if len(parts) != 3 {
				continue
			}
			files[parts[1]] = append(files[parts[1]], parts[2])
		}
		for id, names := range files {
			if db.opts.Shared && (!slices.Contains(names, block.MetaFile) || slices.Contains(names, block.CompactedFile)) {
				// Another process may be writing it, or still reading it:
				// the compactor deletes it when it is old enough.
				continue
			}
			if !slices.Contains(names, block.MetaFile) {
				// Written partly when the process stopped; the WAL still
				// holds its data, or a compaction's sources do.
				db.log.Info("removing incomplete block", zap.String("block", id))
				if err := block.Delete(ctx, st, sig, id); err != nil {
					return err
				}
				continue
			}
			b, err := block.OpenCached(ctx, st, sig, id, db.caches())
			if err != nil {
				if errors.Is(err, storage.ErrCorrupt) {
					db.setProblem("block/"+id, fmt.Errorf("block %s/%s quarantined: %w", sig, id, err))
					continue
				}
				return err
			}
			if !db.opts.Shared && (b.Meta.Writer != "" || len(b.Meta.WALSegments) > 0) {
				b.Close()
				for _, r := range refs {
					r.release()
				}
				return fmt.Errorf("%w: block %s/%s was written by ingester %q; run this process with role ingester, querier or compactor, or give it a bucket of its own", ErrSharedBucket, sig, id, b.Meta.Writer)
			}
			for _, s := range b.Meta.Sources {
				replaced[s] = true
			}
			r := &blockRef{Block: b, db: db}
			r.refs.Store(1)
			refs = append(refs, r)
		}
	}
	for _, r := range refs {
		if replaced[r.Meta.ID] {
			// A compaction finished writing its output but not deleting
			// (or, in a shared bucket, marking) its inputs.
			r.deleted.Store(true)
			r.release()
			continue
		}
		db.blocks = append(db.blocks, r)
	}
	db.sortBlocks()
	return nil
}

func (db *DB) sortBlocks() {
	slices.SortFunc(db.blocks, func(a, b *blockRef) int {
		return cmp.Or(cmp.Compare(a.Meta.MinTime, b.Meta.MinTime), strings.Compare(a.Meta.ID, b.Meta.ID))
	})
	db.countLevel0()
}

// countLevel0 recounts the level-0 blocks per signal, this writer's own in
// a shared bucket; the caller holds mu for writing and has just changed
// the block set.
func (db *DB) countLevel0() {
	var n [2]int64
	for _, b := range db.blocks {
		if b.Meta.Level == 0 && b.Meta.Writer == db.opts.Writer {
			n[signalIndex(b.Meta.Signal)]++
		}
	}
	for i := range n {
		db.level0[i].Store(n[i])
	}
}

func signalIndex(sig block.Signal) int {
	if sig == block.Logs {
		return 1
	}
	return 0
}

// replay loads WAL segments into the head, skipping records that blocks
// already hold (a crash between writing a block and deleting its segments).
// Within the memory budget: whenever the replayed head reaches the cut size
// it is written to a block on the spot, so a WAL of any length replays in
// the memory of one head. Such a block claims only the segments before the
// one being replayed (its WALSegment), so a crash before the rest of that
// segment reaches a block replays the segment again; the repeated records
// are duplicates that queries and compaction drop.
//
// A long replay (about 30 s a GiB, docs/benchmarks.md) reports how far it
// is every replayProgressEvery, so that a start that replays does not
// look like one that hangs.
func (db *DB) replay(ctx context.Context) error {
	done := map[block.Signal]int{}
	for _, b := range db.blocks {
		done[b.Meta.Signal] = max(done[b.Meta.Signal], b.Meta.WALClaim(db.opts.Writer))
	}
	segs, err := wal.Segments(db.walDir())
	if err != nil {
		return err
	}
	began := time.Now()
	var bytes, records, spans, logs int64
	// The segments' sizes, for the progress a long replay reports.
	var total, read int64
	sizes := make([]int64, len(segs))
	for i, seg := range segs {
		if fi, err := os.Stat(wal.SegmentPath(db.walDir(), seg)); err == nil {
			sizes[i] = fi.Size()
			total += fi.Size()
		}
	}
	if len(segs) > 0 {
		db.log.Info("replaying wal", zap.Int("segments", len(segs)), zap.Int("first", segs[0]), zap.Int("last", segs[len(segs)-1]),
			zap.Int64("bytes", total))
	}
	reported := db.opts.Now()
	tu, lu := ptrace.ProtoUnmarshaler{}, plog.ProtoUnmarshaler{}
	for i, seg := range segs {
		read += sizes[i]
		if now := db.opts.Now(); i > 0 && now.Sub(reported) >= replayProgressEvery {
			reported = now
			db.log.Info("replaying wal", zap.Int("segment", i+1), zap.Int("of", len(segs)),
				zap.String("done", fmt.Sprintf("%.0f%%", 100*float64(read-sizes[i])/float64(max(total, 1)))),
				zap.Int64("spans", spans), zap.Int64("log_records", logs))
		}
		err := wal.Replay(db.walDir(), seg, func(typ byte, p []byte) error {
			bytes += int64(len(p))
			records++
			if typ == recTraces || typ == recLogs {
				// Taken before the restart: a retry of it is a repeat.
				db.recent.add(db.recent.key(typ, p))
			}
			switch typ {
			case recTraces:
				if seg <= done[block.Traces] {
					return nil
				}
				td, err := tu.UnmarshalTraces(p)
				if err != nil {
					return fmt.Errorf("wal segment %d: decode traces: %w", seg, err)
				}
				spans += int64(td.SpanCount())
				db.mem.Add(db.head.appendSpans(storage.AppendTraces(nil, td), len(p)))
			case recLogs:
				if seg <= done[block.Logs] {
					return nil
				}
				ld, err := lu.UnmarshalLogs(p)
				if err != nil {
					return fmt.Errorf("wal segment %d: decode logs: %w", seg, err)
				}
				logs += int64(ld.LogRecordCount())
				db.mem.Add(db.head.appendLogs(storage.AppendLogs(nil, ld), len(p)))
			}
			if db.headFull(db.head) {
				return db.flushReplayed(ctx, seg-1)
			}
			return nil
		})
		var d *wal.Damage
		if errors.As(err, &d) {
			// Keep what was readable, cut off the rest so that later
			// segments stay replayable, and say so.
			msg := "torn at its end (normal after a crash)"
			if seg != segs[len(segs)-1] {
				msg = "damaged before its end"
			}
			db.setProblem(fmt.Sprintf("wal/%08d", seg), fmt.Errorf("%w; segment %s, truncated to %d bytes, %d bytes dropped", d, msg, d.Offset, d.Size-d.Offset))
			if rerr := wal.Repair(db.walDir(), d); rerr != nil {
				return rerr
			}
			continue
		}
		if err != nil {
			return err
		}
	}
	if len(segs) > 0 {
		db.head.lastSegment = segs[len(segs)-1]
		took := time.Since(began)
		db.log.Info("wal replayed", zap.Int("segments", len(segs)), zap.Int64("bytes", bytes), zap.Int64("records", records),
			zap.Int64("spans", spans), zap.Int64("log_records", logs), zap.Duration("took", took),
			zap.Float64("spans_per_second", float64(spans)/max(took.Seconds(), 1e-9)))
	}
	return nil
}

// defaultWALSpares is how many flushed WAL segments the store keeps to
// write new ones in (wal.Options.Spares): a flush gives back the head's
// segments and the next cut takes one, so one would do but for heads
// whose data rotated into a second segment by size. It costs up to that
// many segments of disk.
const defaultWALSpares = 2

// replayProgressEvery is how often a WAL replay logs its progress.
const replayProgressEvery = 5 * time.Second

// flushReplayed writes the replayed head to blocks that claim the WAL
// segments up to seg, removes those segments and starts a new head.
func (db *DB) flushReplayed(ctx context.Context, seg int) error {
	h := db.head
	h.lastSegment = seg
	refs, err := db.writeHead(ctx, h)
	if err != nil {
		return fmt.Errorf("write replayed wal to blocks: %w", err)
	}
	db.addBlocksLocked(refs)
	db.mem.Add(-h.mem)
	if seg > 0 {
		if err := wal.Remove(db.walDir(), seg); err != nil {
			db.log.Warn("remove replayed wal segments", zap.Error(err))
		}
	}
	db.log.Info("wal replay: head written to blocks", zap.Int("through_segment", seg), zap.Int("spans", h.spans.len()), zap.Int("log_records", h.logs.len()))
	db.head = newHead(db.opts.Now().UnixNano())
	return nil
}

// headFull reports whether h is due to be cut by size: its OTLP bytes, or
// its share of the memory budget.
func (db *DB) headFull(h *head) bool {
	otlp, mem := h.size()
	return otlp >= db.opts.MaxBlockBytes || (db.opts.MemoryBudget > 0 && mem >= db.opts.MemoryBudget/4)
}

// admit refuses an append of sig while the memory budget is spent or
// while sig's level-0 blocks are at the stall count.
func (db *DB) admit(sig block.Signal) error {
	if b := db.opts.MemoryBudget; b > 0 {
		if used := db.mem.Load(); used >= b {
			db.wakeup()
			return fmt.Errorf("%w (%d MiB of %d MiB held until blocks are written)", ErrOverBudget, used>>20, b>>20)
		}
	}
	if stall := db.opts.StallBlocks; stall > 0 {
		if n := db.level0[signalIndex(sig)].Load(); n >= int64(stall) {
			db.kickLevel0()
			return fmt.Errorf("%w (%d %s blocks wait to be merged)", ErrBacklog, n, sig)
		}
	}
	return nil
}

// Admit reports whether the store takes a request of signal sig now,
// before the request is read or decoded: ErrOverBudget while the memory
// budget is spent, as AppendTraces and AppendLogs would answer. A receiver
// that asks first refuses a flood for the price of reading its headers;
// the appends check again, since many admitted requests may arrive at
// once. Refusals are counted per signal (Stats.RefusedTraceRequests,
// RefusedLogRequests).
func (db *DB) Admit(sig block.Signal) error {
	err := db.admit(sig)
	if err != nil {
		reason := RefusedForBudget
		if errors.Is(err, ErrBacklog) {
			reason = RefusedForBacklog
		}
		db.CountRefusedRequest(sig, reason)
	}
	return err
}

// RefusalReason says why a request was refused before it was read.
type RefusalReason int

const (
	RefusedForBudget  RefusalReason = iota // the store's memory budget
	RefusedForBacklog                      // the level-0 compaction backlog
	RefusedForMemory                       // the process's memory (memlimit)
	numRefusalReasons
)

func (r RefusalReason) String() string {
	return [...]string{"budget", "backlog", "memory"}[r]
}

// CountRefusedRequest counts a request refused before it was read. Admit
// counts its own refusals; its caller counts those it makes for the
// process's memory (RefusedForMemory), which the store does not watch.
func (db *DB) CountRefusedRequest(sig block.Signal, reason RefusalReason) {
	db.refusedRequests[signalIndex(sig)][reason].Add(1)
}

// AppendTraces makes td durable and visible. On error nothing was
// acknowledged and the caller should retry (errors wrap ErrWrite or
// ErrOverBudget).
func (db *DB) AppendTraces(td ptrace.Traces) error {
	if err := db.admit(block.Traces); err != nil {
		db.refusedSpans.Add(int64(td.SpanCount()))
		return err
	}
	td = db.limitTraces(td)
	m := ptrace.ProtoMarshaler{}
	payload, err := m.MarshalTraces(td)
	if err != nil {
		return fmt.Errorf("encode traces: %w", err)
	}
	key := db.recent.key(recTraces, payload)
	if db.recent.has(key) {
		db.retriedSpans.Add(int64(td.SpanCount()))
		return nil
	}
	spans, attrs := storage.AppendTracesInto(spanBufs.get(td.SpanCount()), attrBufs.get(0), td)
	err = db.append(recTraces, payload, func(h *head) int64 { return h.appendSpans(spans, len(payload)) })
	spanBufs.put(spans)
	attrBufs.put(attrs)
	if err == nil {
		db.recent.add(key)
	}
	return err
}

// spanBufs and logBufs recycle the buffers a request is converted into
// before the head copies it in: one per request was a tenth of what
// ingest allocated. attrBufs does the same for the attributes of its
// spans or records (storage.AppendTracesInto, AppendLogsInto).
var (
	spanBufs bufPool[storage.Span]
	logBufs  bufPool[storage.LogRecord]
	attrBufs bufPool[storage.Attr]
)

// bufPool is a sync.Pool of slices with an explicit reset: put clears the
// elements, so a pooled buffer keeps no request's strings or attributes
// alive, and buffers past maxPooled elements are left to the collector.
type bufPool[T any] struct{ pool sync.Pool }

// maxPooled bounds a pooled buffer: a request of more (a large batch from
// a Collector) gets a buffer of its own.
const maxPooled = 1 << 14

// get returns an empty buffer with room for n.
func (p *bufPool[T]) get(n int) []T {
	if b, ok := p.pool.Get().(*[]T); ok && cap(*b) >= n {
		return *b
	}
	return make([]T, 0, n)
}

// put takes back used, a buffer from get as appended into.
func (p *bufPool[T]) put(used []T) {
	if cap(used) > maxPooled {
		return
	}
	clear(used)
	used = used[:0]
	p.pool.Put(&used)
}

func (db *DB) limitTraces(td ptrace.Traces) ptrace.Traces {
	if !db.opts.Limits.enabled() {
		return td
	}
	l := limiter{AttributeLimits: db.opts.Limits}
	td = l.limitTraces(td)
	db.countLimited(&l)
	return td
}

func (db *DB) limitLogs(ld plog.Logs) plog.Logs {
	if !db.opts.Limits.enabled() {
		return ld
	}
	l := limiter{AttributeLimits: db.opts.Limits}
	ld = l.limitLogs(ld)
	db.countLimited(&l)
	return ld
}

func (db *DB) countLimited(l *limiter) {
	db.truncatedAttrs.Add(l.truncated)
	db.droppedAttrs.Add(l.dropped)
}

// AppendLogs makes ld durable and visible.
func (db *DB) AppendLogs(ld plog.Logs) error {
	if err := db.admit(block.Logs); err != nil {
		db.refusedLogs.Add(int64(ld.LogRecordCount()))
		return err
	}
	ld = db.limitLogs(ld)
	m := plog.ProtoMarshaler{}
	payload, err := m.MarshalLogs(ld)
	if err != nil {
		return fmt.Errorf("encode logs: %w", err)
	}
	key := db.recent.key(recLogs, payload)
	if db.recent.has(key) {
		db.retriedLogs.Add(int64(ld.LogRecordCount()))
		return nil
	}
	logs, attrs := storage.AppendLogsInto(logBufs.get(ld.LogRecordCount()), attrBufs.get(0), ld)
	err = db.append(recLogs, payload, func(h *head) int64 { return h.appendLogs(logs, len(payload)) })
	logBufs.put(logs)
	attrBufs.put(attrs)
	if err == nil {
		db.recent.add(key)
	}
	return err
}

func (db *DB) append(typ byte, payload []byte, insert func(*head) int64) error {
	db.appendMu.RLock()
	err := db.wal.Log(typ, payload)
	if err != nil {
		db.appendMu.RUnlock()
		if errors.Is(err, wal.ErrClosed) {
			return fmt.Errorf("%w: %w", ErrWrite, err)
		}
		db.setProblem("wal", fmt.Errorf("wal write failed, ingest refused until it succeeds: %w", err))
		// A failed write that could not be undone leaves the segment
		// unusable; start a new one so the next attempt can succeed.
		if rerr := db.wal.Recover(); rerr != nil {
			db.log.Debug("wal recover", zap.Error(rerr))
		}
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	db.mu.RLock()
	h := db.head
	db.mu.RUnlock()
	db.mem.Add(insert(h))
	full := db.headFull(h)
	db.appendMu.RUnlock()
	db.setProblem("wal", nil)
	if full {
		db.wakeup()
	}
	return nil
}

func (db *DB) wakeup() {
	select {
	case db.kick <- struct{}{}:
	default:
	}
}

// every runs work whenever kick fires and, if interval is positive, every
// interval, until the DB closes; work's context is cancelled then. The
// store's background work runs on four of these (see Open), so that a long
// compaction never holds up the writes that free memory, and neither holds
// up a cut.
func (db *DB) every(interval time.Duration, kick <-chan struct{}, work func(context.Context)) {
	defer db.wg.Done()
	ctx, cancel := db.loopContext()
	defer cancel()
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-db.done:
			return
		case <-kick:
		case <-tick:
		}
		work(ctx)
	}
}

// kickLevel0 wakes the level-0 compactor if a signal has enough level-0
// blocks to merge.
func (db *DB) kickLevel0() {
	for i := range db.level0 {
		if db.level0[i].Load() >= int64(db.opts.CompactLevel0Blocks) {
			select {
			case db.compactKick <- struct{}{}:
			default:
			}
			return
		}
	}
}

// loopContext is cancelled when the DB closes.
func (db *DB) loopContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-db.done:
		case <-ctx.Done():
		}
		cancel()
	}()
	return ctx, cancel
}

func (db *DB) maybeCut() {
	db.mu.RLock()
	h := db.head
	pending := len(db.flushing)
	db.mu.RUnlock()
	full := db.headFull(h)
	otlp, _ := h.size()
	old := otlp > 0 && db.opts.Now().UnixNano()-h.createdNano >= int64(db.opts.MaxBlockDuration)
	if full || old {
		if err := db.CutHead(); err != nil {
			db.setProblem("cut", err)
			return
		}
		db.setProblem("cut", nil)
	}
	if full || old || pending > 0 {
		select {
		case db.flushKick <- struct{}{}:
		default:
		}
	}
}

// CutHead makes the current head immutable, queues it for flushing and
// starts a new head and WAL segment. It is a no-op on an empty head.
func (db *DB) CutHead() error {
	db.appendMu.Lock()
	defer db.appendMu.Unlock()
	if db.head.empty() {
		return nil
	}
	seg, err := db.wal.NextSegment()
	if err != nil {
		return fmt.Errorf("cut head: %w", err)
	}
	db.mu.Lock()
	old := db.head
	old.lastSegment = seg
	old.blockIDs = [2]string{block.NewID(), block.NewID()}
	db.head = newHead(db.opts.Now().UnixNano())
	db.flushing = append(db.flushing, old)
	db.mu.Unlock()
	return nil
}

// FlushHeads writes every cut head to blocks, oldest first. A head that
// fails to flush stays queryable and is retried; its WAL segments are kept.
func (db *DB) FlushHeads(ctx context.Context) error {
	db.flushMu.Lock()
	defer db.flushMu.Unlock()
	for {
		db.mu.RLock()
		if len(db.flushing) == 0 {
			db.mu.RUnlock()
			return nil
		}
		h := db.flushing[0]
		db.mu.RUnlock()
		refs, err := db.writeHead(ctx, h)
		if err != nil {
			err = fmt.Errorf("flush head to blocks (data stays in the WAL and is retried): %w", err)
			db.setProblem("flush", err)
			return err
		}
		db.setProblem("flush", nil)
		db.mu.Lock()
		db.flushing = db.flushing[1:]
		db.addBlocksLocked(refs)
		db.mu.Unlock()
		db.mem.Add(-h.mem)
		db.kickLevel0()
		if err := db.wal.Remove(h.lastSegment); err != nil {
			db.log.Warn("remove flushed wal segments", zap.Error(err))
		}
	}
}

// writeHead writes a cut head's spans and logs as blocks, the two at once.
func (db *DB) writeHead(ctx context.Context, h *head) ([]*blockRef, error) {
	// Level-0 blocks are merged again: compressed for speed.
	opts := block.WriteOptions{RowGroupRows: db.opts.RowGroupRows, TempDir: db.tmpDir(), PageFiles: db.pages, Writer: db.opts.Writer, WALSegment: h.lastSegment, Fast: true, Format: db.opts.BlockFormat}
	var (
		wg               sync.WaitGroup
		spanRef, logRef  *blockRef
		spanErr, logsErr error
	)
	if h.spans.len() > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var decodeErr error
			opts := opts
			opts.ID = h.blockIDs[0]
			m, err := block.WriteSpans(ctx, db.opts.Bucket, h.sortedSpans(&decodeErr), opts)
			if err == nil && decodeErr != nil {
				if m != nil {
					block.Delete(ctx, db.opts.Bucket, block.Traces, m.ID)
				}
				err = decodeErr
			}
			if err == nil {
				spanRef, err = db.openRef(ctx, m)
			}
			spanErr = err
		}()
	}
	if h.logs.len() > 0 {
		var decodeErr error
		opts := opts
		opts.ID = h.blockIDs[1]
		m, err := block.WriteLogs(ctx, db.opts.Bucket, h.sortedLogs(&decodeErr), opts)
		if err == nil && decodeErr != nil {
			if m != nil {
				block.Delete(ctx, db.opts.Bucket, block.Logs, m.ID)
			}
			err = decodeErr
		}
		if err == nil {
			logRef, err = db.openRef(ctx, m)
		}
		logsErr = err
	}
	wg.Wait()
	var refs []*blockRef
	for _, r := range []*blockRef{spanRef, logRef} {
		if r != nil {
			refs = append(refs, r)
		}
	}
	if err := errors.Join(spanErr, logsErr); err != nil {
		// Neither block is published; a retry writes both again, under
		// the same IDs. In a shared bucket a reader may have listed the
		// one that was written: it is deleted now rather than rewritten
		// under it.
		for _, r := range refs {
			r.deleted.Store(true)
			r.release()
			if db.opts.Shared {
				block.Delete(ctx, db.opts.Bucket, r.Meta.Signal, r.Meta.ID)
			}
		}
		return nil, err
	}
	return refs, nil
}

func (db *DB) openRef(ctx context.Context, m *block.Meta) (*blockRef, error) {
	b, err := block.OpenCached(ctx, db.opts.Bucket, m.Signal, m.ID, db.caches())
	if err != nil {
		return nil, err
	}
	r := &blockRef{Block: b, db: db}
	r.refs.Store(1)
	return r, nil
}

// Flush cuts the head and writes it to blocks now.
func (db *DB) Flush(ctx context.Context) error {
	if err := db.CutHead(); err != nil {
		return err
	}
	return db.FlushHeads(ctx)
}

// addBlocksLocked adds blocks to the set, but none whose ID it holds
// already (a shared store's poll may have found a block first): those
// references are released. The caller holds mu for writing.
func (db *DB) addBlocksLocked(refs []*blockRef) {
	for _, r := range refs {
		if slices.ContainsFunc(db.blocks, func(b *blockRef) bool { return b.Meta.ID == r.Meta.ID }) {
			r.release()
			continue
		}
		db.blocks = append(db.blocks, r)
	}
	db.sortBlocks()
}

// removeBlocks drops blocks from the set; their objects go when the last
// reader releases them (in a shared bucket, when the compactor deletes
// them after DeleteDelay). Blocks no longer in the set are skipped, so
// that a merge and a poll may both remove one.
func (db *DB) removeBlocks(gone []*blockRef) {
	db.mu.Lock()
	var removed []*blockRef
	db.blocks = slices.DeleteFunc(db.blocks, func(b *blockRef) bool {
		if slices.Contains(gone, b) {
			removed = append(removed, b)
			return true
		}
		return false
	})
	db.countLevel0()
	db.mu.Unlock()
	for _, b := range removed {
		b.deleted.Store(true)
		b.release()
	}
}

// ApplyRetention deletes blocks whose newest data is older than the
// retention age, then the oldest blocks while the total exceeds the
// retention size. Data inside the window is never deleted by age; the size
// limit takes whole blocks, oldest first.
func (db *DB) ApplyRetention(ctx context.Context) {
	if !db.mayCompact() {
		return
	}
	var gone []*blockRef
	// A block in a running merge is left to the next pass: the merge
	// removes it itself, and its output is judged then.
	merging := map[*blockRef]bool{}
	db.mu.RLock()
	blocks := slices.Clone(db.blocks)
	for _, b := range blocks {
		if b.merging {
			merging[b] = true
		}
	}
	db.mu.RUnlock()
	if db.opts.RetentionAge > 0 {
		cutoff := db.opts.Now().Add(-db.opts.RetentionAge).UnixNano()
		for _, b := range blocks {
			if !merging[b] && retentionTime(b.Meta) < cutoff {
				gone = append(gone, b)
			}
		}
	}
	if db.opts.RetentionBytes > 0 {
		var total int64
		live := slices.DeleteFunc(slices.Clone(blocks), func(b *blockRef) bool { return slices.Contains(gone, b) })
		for _, b := range live {
			total += b.Meta.DataBytes
		}
		slices.SortFunc(live, func(a, b *blockRef) int { return cmp.Compare(a.Meta.MaxTime, b.Meta.MaxTime) })
		for _, b := range live {
			if total <= db.opts.RetentionBytes {
				break
			}
			if merging[b] {
				continue
			}
			gone = append(gone, b)
			total -= b.Meta.DataBytes
		}
	}
	if len(gone) == 0 {
		return
	}
	for _, b := range gone {
		db.log.Info("retention: deleting block", zap.String("block", b.Meta.ID), zap.String("signal", string(b.Meta.Signal)),
			zap.Time("max_time", time.Unix(0, b.Meta.MaxTime)), zap.Int64("bytes", b.Meta.DataBytes))
	}
	if db.opts.Shared {
		var err error
		if gone, err = db.markReplaced(ctx, gone, ""); err != nil {
			db.log.Warn("retention", zap.Error(err))
		}
	}
	db.removeBlocks(gone)
}

// retentionTime is the time a block ages from: its newest data, but no
// later than when the block was written (its ULID's time). A span stamped
// in the year 2200 is stored as sent, but it cannot pin its block, and
// every block compacted with it, against age retention.
func retentionTime(m *block.Meta) int64 {
	id, err := ulid.ParseStrict(m.ID)
	if err != nil {
		return m.MaxTime
	}
	return min(m.MaxTime, int64(id.Time())*int64(time.Millisecond))
}

// Close stops background work and closes the WAL. Heads are not flushed:
// the WAL holds their data and the next Open replays it.
func (db *DB) Close() error {
	if !db.closing.CompareAndSwap(false, true) {
		return nil
	}
	close(db.done)
	db.wg.Wait()
	if db.opts.Lease != nil {
		if err := db.opts.Lease.Release(context.Background()); err != nil {
			db.log.Warn("release lease", zap.Error(err))
		}
	}
	db.pages.Close()
	err := db.wal.Close()
	db.mu.Lock()
	blocks := db.blocks
	for _, h := range db.handoff {
		blocks = append(blocks, h.ref)
	}
	db.blocks, db.handoff = nil, nil
	db.mu.Unlock()
	for _, b := range blocks {
		b.release()
	}
	return err
}

// Stats summarises the store for logs, metrics and tests.
type Stats struct {
	HeadSpans, HeadLogs int
	Blocks              int
	BlockBytes          int64
	BlockSpans          int64
	BlockLogs           int64
	RetentionAge        time.Duration // 0 keeps forever
	RetentionBytes      int64         // 0 is unlimited
	// MemoryBytes is the estimated heap held by the head and the cut
	// heads; MemoryBudget bounds it (0: unbounded).
	MemoryBytes, MemoryBudget int64
	// PendingHeads are cut heads not yet written to blocks.
	PendingHeads int
	// BlockReaderBytes is what the open blocks' Parquet readers are
	// charged in their cache, BlockReaderLimit its bound (0: none).
	BlockReaderBytes, BlockReaderLimit int64
	// PageCacheBytes is what the decoded pages kept take, PageCacheLimit
	// their bound (0: none kept), and PageCacheHits and PageCacheMisses
	// count the lookups of pages that found one kept and that did not.
	PageCacheBytes, PageCacheLimit int64
	PageCacheHits, PageCacheMisses int64
	// Level0TraceBlocks and Level0LogBlocks wait to be merged; at
	// StallBlocks of a signal its ingest is refused.
	Level0TraceBlocks, Level0LogBlocks int64
	StallBlocks                        int
	// RefusedSpans and RefusedLogs were refused for the budget after
	// decoding; RefusedTraceRequests and RefusedLogRequests before it
	// (Admit), when their size was not yet known.
	RefusedSpans, RefusedLogs                int64
	RefusedTraceRequests, RefusedLogRequests int64
	// RefusedRequests counts them by signal (0 traces, 1 logs) and
	// RefusalReason.
	RefusedRequests [2][numRefusalReasons]int64
	// TruncatedAttributes and DroppedAttributes were cut to the
	// attribute limits on the way in.
	TruncatedAttributes, DroppedAttributes int64
	// RetriedSpans and RetriedLogs came in requests the store had taken
	// already (a client's retry) and were not stored again (retries.go).
	RetriedSpans, RetriedLogs int64
}

// caches are what the store's blocks share.
func (db *DB) caches() block.Caches { return block.Caches{Files: db.files, Pages: db.pageCache} }

// Stats returns current counts.
func (db *DB) Stats() Stats {
	db.mu.RLock()
	defer db.mu.RUnlock()
	s := Stats{RetentionAge: db.opts.RetentionAge, RetentionBytes: db.opts.RetentionBytes,
		MemoryBytes: db.mem.Load(), MemoryBudget: db.opts.MemoryBudget, PendingHeads: len(db.flushing),
		BlockReaderBytes: db.files.Used(), BlockReaderLimit: db.files.Limit(),
		PageCacheBytes: db.pageCache.Used(), PageCacheLimit: db.pageCache.Limit(),
		PageCacheHits: db.pageCache.Hits(), PageCacheMisses: db.pageCache.Misses(),
		RefusedSpans: db.refusedSpans.Load(), RefusedLogs: db.refusedLogs.Load(),
		TruncatedAttributes: db.truncatedAttrs.Load(), DroppedAttributes: db.droppedAttrs.Load(),
		RetriedSpans: db.retriedSpans.Load(), RetriedLogs: db.retriedLogs.Load(),
		Level0TraceBlocks: db.level0[0].Load(), Level0LogBlocks: db.level0[1].Load(), StallBlocks: db.opts.StallBlocks}
	for sig := range s.RefusedRequests {
		for r := range s.RefusedRequests[sig] {
			s.RefusedRequests[sig][r] = db.refusedRequests[sig][r].Load()
		}
	}
	for _, n := range s.RefusedRequests[0] {
		s.RefusedTraceRequests += n
	}
	for _, n := range s.RefusedRequests[1] {
		s.RefusedLogRequests += n
	}
	for _, h := range append(slices.Clone(db.flushing), db.head) {
		h.mu.RLock()
		s.HeadSpans += h.spans.len()
		s.HeadLogs += h.logs.len()
		h.mu.RUnlock()
	}
	for _, b := range db.blocks {
		s.Blocks++
		s.BlockBytes += b.Meta.DataBytes
		if b.Meta.Signal == block.Traces {
			s.BlockSpans += b.Meta.Rows
		} else {
			s.BlockLogs += b.Meta.Rows
		}
	}
	return s
}

// BlockMetas returns the metadata of the live blocks.
func (db *DB) BlockMetas() []block.Meta {
	db.mu.RLock()
	defer db.mu.RUnlock()
	out := make([]block.Meta, 0, len(db.blocks))
	for _, b := range db.blocks {
		out = append(out, *b.Meta)
	}
	return out
}
