package store

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"

	"go.uber.org/zap"

	"github.com/sightlinehq/sightline/internal/store/block"
)

// Compact merges small blocks. Blocks of one signal and level, in time
// order, are merged CompactMinBlocks at a time (CompactLevel0Blocks at
// level 0), up to CompactMaxBytes, into one block of the next level;
// duplicate spans from retries are dropped on the way. The new block
// lists its sources, so that a crash between writing it and deleting them
// is finished at startup. Compact runs every level until nothing is left
// to merge; the background loops split the same work in two
// (compactLevels).
func (db *DB) Compact(ctx context.Context) {
	db.compactLevels(ctx, 0, math.MaxInt)
}

// compactLevels merges blocks of levels lo to hi until none are left to
// merge. Level 0 and the upper levels are merged by one call each at a
// time, and the two at once; a block belongs to one merge at a time
// (blockRef.merging), which also keeps retention off it.
func (db *DB) compactLevels(ctx context.Context, lo, hi int) {
	// A call waits for merges already running in its levels, so that an
	// explicit Compact returns with everything merged.
	if lo == 0 {
		db.compactMu[0].Lock()
		defer db.compactMu[0].Unlock()
	}
	if hi > 0 {
		db.compactMu[1].Lock()
		defer db.compactMu[1].Unlock()
	}
	if !db.mayCompact() {
		return
	}
	if db.opts.Shared {
		// Merge what the bucket holds now: a compactor that has just
		// taken over must not merge blocks its predecessor merged.
		if err := db.syncBlocks(ctx); err != nil {
			return
		}
		if err := db.cleanBucket(ctx); err != nil {
			if !errors.Is(err, errLeaseLost) && ctx.Err() == nil {
				db.setProblem("compaction", err)
			}
			return
		}
	}
	for _, sig := range []block.Signal{block.Traces, block.Logs} {
		for {
			group := db.pickCompaction(sig, lo, hi)
			if group == nil {
				break
			}
			if err := db.compact(ctx, sig, group); err != nil {
				if errors.Is(err, errLeaseLost) {
					db.log.Info("compaction stopped: the lease was lost", zap.Error(err))
					return
				}
				if ctx.Err() == nil {
					db.setProblem("compaction", err)
				}
				return
			}
			db.setProblem("compaction", nil)
		}
	}
}

// A merge takes CompactMinBlocks blocks of one level (CompactLevel0Blocks
// of level 0), or up to minFanIn when that is fewer (tests merge pairs).
// The fan-in is the size ratio between levels, so it sets how often a
// span is rewritten before it rests in a block of CompactMaxBytes:
// log_fanin(final/level-0 size) times. It also sizes a merge's memory:
// each input holds the pages of its three sort columns and of the column
// being copied while a merge of local blocks runs, and a page and its
// buffers for every column in a merge of blocks in a bucket
// (block.MergeSpans).
const minFanIn = 4

func (db *DB) pickCompaction(sig block.Signal, lo, hi int) []*blockRef {
	db.mu.Lock()
	defer db.mu.Unlock()
	byLevel := map[int][]*blockRef{}
	for _, b := range db.blocks {
		if b.Meta.Signal == sig && b.Meta.Level >= lo && b.Meta.Level <= hi && !b.merging && b.Meta.DataBytes < db.opts.CompactMaxBytes/2 {
			byLevel[b.Meta.Level] = append(byLevel[b.Meta.Level], b)
		}
	}
	levels := make([]int, 0, len(byLevel))
	for l := range byLevel {
		levels = append(levels, l)
	}
	slices.Sort(levels)
	for _, l := range levels {
		need := db.opts.CompactMinBlocks
		if l == 0 {
			need = db.opts.CompactLevel0Blocks
		}
		fanIn := max(need, minFanIn)
		bs := byLevel[l]
		var group []*blockRef
		var size int64
		full := false // the next block would take the group over CompactMaxBytes
		for _, b := range bs {
			if size+b.Meta.DataBytes > db.opts.CompactMaxBytes {
				full = true
				break
			}
			if len(group) == fanIn {
				break
			}
			group = append(group, b)
			size += b.Meta.DataBytes
		}
		// Level 0 merges a group that CompactMaxBytes filled before it
		// had CompactLevel0Blocks: large heads and a wide level-0 fan-in
		// would otherwise never merge, and ingest would stall for good
		// at StallBlocks. Above level 0 such blocks stay as they are.
		if len(group) >= need || (l == 0 && full && len(group) >= 2) {
			for _, b := range group {
				b.acquire()
				b.merging = true
			}
			return group
		}
	}
	return nil
}

func (db *DB) compact(ctx context.Context, sig block.Signal, group []*blockRef) error {
	defer func() {
		db.mu.Lock()
		for _, b := range group {
			b.merging = false
		}
		db.mu.Unlock()
		for _, b := range group {
			b.release()
		}
	}()
	opts := block.WriteOptions{RowGroupRows: db.opts.RowGroupRows, TempDir: db.tmpDir(), PageFiles: db.pages, Format: db.opts.BlockFormat}
	if db.opts.Lease != nil {
		opts.Commit = func(context.Context) error {
			if !db.opts.Lease.Held() {
				return errLeaseLost
			}
			return nil
		}
	}
	var (
		rows, size int64
		metas      []*block.Meta
	)
	for _, b := range group {
		opts.Level = max(opts.Level, b.Meta.Level+1)
		opts.Sources = append(opts.Sources, b.Meta.ID)
		metas = append(metas, b.Meta)
		rows += b.Meta.Rows
		size += b.Meta.DataBytes
	}
	block.MergeWALClaims(&opts, metas)
	opts.Level0 = block.MergeLevel0(metas)
	// A block is merged again when CompactMinBlocks of its level fit in
	// CompactMaxBytes together (pickCompaction); only the blocks that stay
	// are worth zstd's default level. Under half of CompactMaxBytes, as
	// this read before, also took the blocks that no group of
	// CompactMinBlocks can hold: at 20k spans/s the 10M-span blocks of
	// level 3, which stayed at the fast codec's size.
	opts.Fast = size*int64(db.opts.CompactMinBlocks) <= db.opts.CompactMaxBytes
	var (
		m       *block.Meta
		err     error
		readErr error
	)
	if sig == block.Traces {
		blocks := make([]*block.Block, len(group))
		for i, b := range group {
			blocks[i] = b.Block
		}
		m, err = block.MergeSpans(ctx, db.opts.Bucket, blocks, opts)
		if errors.Is(err, block.ErrNotMergeable) {
			m, err = block.WriteSpans(ctx, db.opts.Bucket, mergeSorted(ctx, group, (*block.Block).AllSpans, block.CompareSpans, &readErr), opts)
		}
	} else {
		m, err = block.WriteLogs(ctx, db.opts.Bucket, mergeSorted(ctx, group, (*block.Block).AllLogs, block.CompareLogs, &readErr), opts)
	}
	if err == nil && readErr != nil {
		// The output misses whatever could not be read: keep the sources.
		// A merge stopped before its first row (shutdown cancels ctx)
		// wrote no block at all.
		if m != nil {
			block.Delete(ctx, db.opts.Bucket, sig, m.ID)
		}
		err = readErr
	}
	if err == nil && m == nil {
		err = errors.New("the sources yielded no rows")
	}
	if err != nil {
		return fmt.Errorf("compact %d %s blocks: %w", len(group), sig, err)
	}
	ref, err := db.openRef(ctx, m)
	if err != nil {
		return err
	}
	db.mu.Lock()
	db.addBlocksLocked([]*blockRef{ref})
	db.mu.Unlock()
	var markErr error
	if db.opts.Shared {
		group, markErr = db.markReplaced(ctx, group, m.ID)
	}
	db.removeBlocks(group)
	db.log.Info("compacted blocks", zap.String("signal", string(sig)), zap.Strings("sources", opts.Sources),
		zap.String("block", m.ID), zap.Int("level", m.Level), zap.Int64("rows_in", rows), zap.Int64("rows_out", m.Rows))
	return markErr
}

// mergeSorted merges the blocks' rows, each already in block order, into
// one sequence in block order. The first read error is stored in *errp.
func mergeSorted[T any](ctx context.Context, group []*blockRef, all func(*block.Block, context.Context, func(*T) bool) error, less func(a, b *T) int, errp *error) iter.Seq[*T] {
	return func(yield func(*T) bool) {
		type cursor struct {
			next func() (*T, bool)
			stop func()
			cur  *T
		}
		var cs []*cursor
		for _, b := range group {
			seq := func(y func(*T) bool) {
				if err := all(b.Block, ctx, func(v *T) bool { c := *v; return y(&c) }); err != nil && *errp == nil {
					*errp = err
				}
			}
			next, stop := iter.Pull(seq)
			defer stop()
			c := &cursor{next: next, stop: stop}
			if v, ok := next(); ok {
				c.cur = v
				cs = append(cs, c)
			}
		}
		for len(cs) > 0 {
			i := 0
			for j := 1; j < len(cs); j++ {
				if less(cs[j].cur, cs[i].cur) < 0 {
					i = j
				}
			}
			if !yield(cs[i].cur) {
				return
			}
			if v, ok := cs[i].next(); ok {
				cs[i].cur = v
			} else {
				cs = slices.Delete(cs, i, i+1)
			}
		}
	}
}
