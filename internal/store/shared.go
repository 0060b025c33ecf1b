package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"go.uber.org/zap"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/block"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// A shared bucket (Options.Shared) is written, read and compacted by
// several processes, none of which knows what the others hold in memory.
// What keeps them consistent is the bucket alone:
//
//   - A block is visible once its meta.json exists; a directory without
//     one is being written, or was abandoned, and nobody reads it.
//   - A merge's output lists its sources in its meta. From the moment it is
//     visible, readers hide its sources, whether or not they are marked
//     yet: a span is never read twice from a merge and its inputs.
//   - A replaced block (merged, or removed by retention) gets a
//     compacted.json and leaves every reader's view at its next poll; its
//     objects stay for DeleteDelay, for queries that listed it before.
//   - Only the compactor deletes, and only the holder of its lease merges.
//
// errLeaseLost stops a merge whose compactor no longer holds the lease:
// its output is not published, and another compactor may merge the same
// blocks.
var errLeaseLost = errors.New("compactor lease lost")

// bucketBlock is one block directory as a listing finds it.
type bucketBlock struct {
	sig       block.Signal
	id        string
	complete  bool // meta.json is there
	compacted bool // compacted.json is there
}

// listBucket lists every block directory of the bucket.
func (db *DB) listBucket(ctx context.Context) ([]bucketBlock, error) {
	var out []bucketBlock
	for _, sig := range []block.Signal{block.Traces, block.Logs} {
		keys, err := db.opts.Bucket.List(ctx, string(sig)+"/", "")
		if err != nil {
			return nil, fmt.Errorf("list blocks: %w", err)
		}
		byID := map[string]int{}
		for _, k := range keys {
			parts := strings.Split(k, "/")
			if len(parts) != 3 {
				continue
			}
			i, ok := byID[parts[1]]
			if !ok {
				i = len(out)
				byID[parts[1]] = i
				out = append(out, bucketBlock{sig: sig, id: parts[1]})
			}
			switch parts[2] {
			case block.MetaFile:
				out[i].complete = true
			case block.CompactedFile:
				out[i].compacted = true
			}
		}
	}
	return out, nil
}

// syncBlocks brings the block set in line with the bucket: it opens the
// blocks other processes made visible and drops those they replaced or
// deleted. A block that fails to open is left out and reported, as at
// startup.
func (db *DB) syncBlocks(ctx context.Context) error {
	listed, err := db.listBucket(ctx)
	if err != nil {
		db.setProblem("poll", err)
		return err
	}
	db.setProblem("poll", nil)
	db.mu.RLock()
	have := make(map[string]*blockRef, len(db.blocks))
	for _, b := range db.blocks {
		have[b.Meta.ID] = b
	}
	db.mu.RUnlock()

	visible := map[string]bool{}
	for _, lb := range listed {
		if lb.complete && !lb.compacted {
			visible[lb.id] = true
		}
	}
	// Sources of any visible block are hidden, marked or not; those of the
	// blocks held already are known before anything is opened.
	replaced := map[string]bool{}
	for id, b := range have {
		if visible[id] {
			for _, s := range b.Meta.Sources {
				replaced[s] = true
			}
		}
	}
	var opened []*blockRef
	for _, lb := range listed {
		if !visible[lb.id] || have[lb.id] != nil || replaced[lb.id] {
			continue
		}
		b, err := block.OpenCached(ctx, db.opts.Bucket, lb.sig, lb.id, db.caches())
		switch {
		case errors.Is(err, objstore.ErrNotExist):
			// Deleted since the listing.
			delete(visible, lb.id)
			continue
		case errors.Is(err, storage.ErrCorrupt):
			db.setProblem("block/"+lb.id, fmt.Errorf("block %s/%s quarantined: %w", lb.sig, lb.id, err))
			delete(visible, lb.id)
			continue
		case err != nil:
			for _, r := range opened {
				r.release()
			}
			db.setProblem("poll", err)
			return err
		}
		r := &blockRef{Block: b, db: db}
		r.refs.Store(1)
		opened = append(opened, r)
	}
	for _, r := range opened {
		for _, s := range r.Meta.Sources {
			replaced[s] = true
		}
	}
	var add, gone []*blockRef
	for _, r := range opened {
		if replaced[r.Meta.ID] || db.ownLevel0(r.Meta) {
			r.release()
			continue
		}
		add = append(add, r)
	}
	db.mu.RLock()
	for id, b := range have {
		if (!visible[id] || replaced[id]) && !b.merging {
			gone = append(gone, b)
		}
	}
	db.mu.RUnlock()
	db.mu.Lock()
	db.addBlocksLocked(add)
	db.mu.Unlock()
	var own []*blockRef
	gone = slices.DeleteFunc(gone, func(b *blockRef) bool {
		if db.ownLevel0(b.Meta) {
			own = append(own, b)
			return true
		}
		return false
	})
	if len(gone) > 0 {
		db.removeBlocks(gone)
	}
	// An ingester keeps serving its own for a while (handoff.go).
	db.retireOwn(own)
	return nil
}

// ownLevel0 reports whether m is a level-0 block this process wrote: the
// flush that wrote it adds it to the set when it drops the head it came
// from, and a poll adding it earlier would show its spans twice.
func (db *DB) ownLevel0(m *block.Meta) bool {
	return db.opts.Writer != "" && m.Level == 0 && m.Writer == db.opts.Writer
}

// markReplaced writes compacted.json into each block replaced by into
// ("" for retention) and returns those it marked, and an error if it
// could not mark them all. A block left unmarked stays in the set; a
// merge's output hides it from readers while the output is visible, and
// the next cleanBucket marks it before anything merges that output.
func (db *DB) markReplaced(ctx context.Context, bs []*blockRef, into string) ([]*blockRef, error) {
	now := db.opts.Now()
	var (
		marked []*blockRef
		errs   []error
	)
	for _, b := range bs {
		if err := block.MarkCompacted(ctx, db.opts.Bucket, b.Meta.Signal, b.Meta.ID, into, now); err != nil {
			errs = append(errs, fmt.Errorf("mark replaced block %s: %w", b.Meta.ID, err))
			continue
		}
		marked = append(marked, b)
	}
	return marked, errors.Join(errs...)
}

// cleanBucket deletes what no reader needs any more: blocks replaced more
// than DeleteDelay ago, and incomplete blocks begun more than DeleteDelay
// ago (a writer that died mid-block). Replaced blocks whose mark is
// missing (the compactor died between publishing a merge and marking its
// sources) are marked now; an error says some could not be, and then
// nothing may be merged: merging the block that hides them would let
// them reappear. Only the compactor runs it, before it merges.
func (db *DB) cleanBucket(ctx context.Context) error {
	listed, err := db.listBucket(ctx)
	if err != nil {
		return err
	}
	now := db.opts.Now()
	cutoff := now.Add(-db.opts.DeleteDelay)
	db.mu.RLock()
	replaced := map[string]string{}
	for _, b := range db.blocks {
		for _, s := range b.Meta.Sources {
			replaced[s] = b.Meta.ID
		}
	}
	db.mu.RUnlock()
	for _, lb := range listed {
		var del bool
		switch {
		case lb.compacted:
			c, err := block.ReadCompacted(ctx, db.opts.Bucket, lb.sig, lb.id)
			del = err != nil || time.Unix(0, c.At).Before(cutoff)
		case !lb.complete:
			id, err := ulid.ParseStrict(lb.id)
			del = err != nil || time.UnixMilli(int64(id.Time())).Before(cutoff)
		case replaced[lb.id] != "":
			if err := block.MarkCompacted(ctx, db.opts.Bucket, lb.sig, lb.id, replaced[lb.id], now); err != nil {
				return fmt.Errorf("mark replaced block %s: %w", lb.id, err)
			}
		}
		if !del {
			continue
		}
		if !db.mayCompact() {
			return errLeaseLost
		}
		if err := block.Delete(ctx, db.opts.Bucket, lb.sig, lb.id); err != nil {
			db.log.Warn("delete block", zap.String("block", lb.id), zap.Error(err))
			continue
		}
		db.log.Info("deleted replaced block", zap.String("signal", string(lb.sig)), zap.String("block", lb.id), zap.Bool("incomplete", !lb.complete))
	}
	return nil
}

// mayCompact reports whether this process may merge, apply retention and
// delete: always, unless a lease gates it.
func (db *DB) mayCompact() bool {
	return db.opts.Lease == nil || db.opts.Lease.Held()
}

// holdLease renews or contends for the lease every quarter of its TTL
// until Close, and logs when this process gains or loses it.
func (db *DB) holdLease() {
	defer db.wg.Done()
	l := db.opts.Lease
	held, first := false, true
	tick := time.NewTicker(l.ttl / 4)
	defer tick.Stop()
	loop, stop := db.loopContext()
	defer stop()
	for {
		// A bucket that hangs must not hang Close: a renewal that takes a
		// quarter of the TTL has failed anyway.
		ctx, cancel := context.WithTimeout(loop, l.ttl/4)
		ok, err := l.Try(ctx)
		cancel()
		if err != nil {
			db.log.Warn("compactor lease", zap.Error(err))
		}
		if ok != held || first {
			held, first = ok, false
			if held {
				db.log.Info("compactor lease taken: this process compacts the bucket")
				db.kickLevel0()
			} else {
				hctx, cancel := context.WithTimeout(loop, l.ttl/4)
				holder, gen, _ := l.Holder(hctx)
				cancel()
				db.log.Info("compactor lease not held: standing by", zap.String("holder", holder), zap.Uint64("generation", gen))
			}
		}
		select {
		case <-db.done:
			return
		case <-tick.C:
		}
	}
}
