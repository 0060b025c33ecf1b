package store

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/sightlinehq/sightline/internal/store/block"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// An ingester of a shared bucket holds data a querier may not read from
// the bucket yet: its live head, the heads it has cut and is writing, and
// its level-0 blocks that the querier has not polled, or whose merge it has
// not. Queriers ask ingesters for it (internal/store/headproto), and must
// get each span exactly once across the bucket and the ingesters. Names
// make that possible:
//
//   - a head is named, when it is cut, after the blocks it will be
//     written as (head.blockIDs), so a cut head and its block are one part;
//   - a merge lists every level-0 block it holds (Meta.Level0);
//   - an ingester keeps serving its level-0 blocks for handoffPolls poll
//     intervals after they were replaced in its own view, by which time
//     every querier that polls on the same interval sees what replaced
//     them.
//
// A querier reads its bucket snapshot, and from each ingester only the
// parts its snapshot does not cover (Covering): the live head always, a
// cut head or level-0 block unless that block or a merge of it is in the
// snapshot.
const handoffPolls = 2

// handoffBlock is a replaced level-0 block an ingester still serves.
type handoffBlock struct {
	ref   *blockRef
	until time.Time
}

// retireOwn moves this ingester's replaced level-0 blocks from the set to
// the handoff list and releases those past their time.
func (db *DB) retireOwn(gone []*blockRef) {
	now := db.opts.Now()
	until := now.Add(handoffPolls * db.opts.PollInterval)
	db.mu.Lock()
	for _, b := range gone {
		if i := slices.Index(db.blocks, b); i >= 0 {
			db.blocks = slices.Delete(db.blocks, i, i+1)
			db.handoff = append(db.handoff, handoffBlock{ref: b, until: until})
		}
	}
	db.countLevel0()
	var expired []*blockRef
	db.handoff = slices.DeleteFunc(db.handoff, func(h handoffBlock) bool {
		if now.After(h.until) {
			expired = append(expired, h.ref)
			return true
		}
		return false
	})
	db.mu.Unlock()
	for _, b := range expired {
		b.release()
	}
}

// Handoff is a snapshot of what this ingester holds that queriers may not
// find in the bucket yet. It keeps its blocks open until Close.
type Handoff struct {
	live   *head
	cut    []*head
	blocks []*blockRef
	db     *DB
	once   sync.Once
}

// Handoff opens a snapshot of the ingester's heads and own level-0 blocks.
func (db *DB) Handoff() *Handoff {
	db.mu.RLock()
	defer db.mu.RUnlock()
	h := &Handoff{db: db, live: db.head, cut: slices.Clone(db.flushing)}
	for _, b := range db.blocks {
		if db.ownLevel0(b.Meta) {
			h.blocks = append(h.blocks, b)
		}
	}
	for _, hb := range db.handoff {
		h.blocks = append(h.blocks, hb.ref)
	}
	for _, b := range h.blocks {
		b.acquire()
	}
	return h
}

// Writer is the ingester's instance ID (Options.Writer).
func (db *DB) Writer() string { return db.opts.Writer }

// Parts names what the snapshot holds: "" for the live head, then the
// blocks cut heads will be written as and the level-0 blocks, trace
// blocks and log blocks alike.
func (h *Handoff) Parts() []string {
	ids := []string{""}
	for _, c := range h.cut {
		ids = append(ids, c.blockIDs[:]...)
	}
	for _, b := range h.blocks {
		ids = append(ids, b.Meta.ID)
	}
	return ids
}

// Querier reads the snapshot's parts of one signal that covered does not
// cover; the live head is always read. Close it before the Handoff.
func (h *Handoff) Querier(sig block.Signal, covered func(id string) bool) storage.Querier {
	q := &querier{db: h.db}
	i := signalIndex(sig)
	for _, c := range h.cut {
		if !covered(c.blockIDs[i]) {
			q.heads = append(q.heads, c)
		}
	}
	q.heads = append(q.heads, h.live)
	for _, b := range h.blocks {
		if b.Meta.Signal == sig && !covered(b.Meta.ID) {
			b.acquire()
			q.blocks = append(q.blocks, b)
		}
	}
	return q
}

// Close releases the snapshot's blocks. It is idempotent.
func (h *Handoff) Close() {
	h.once.Do(func() {
		for _, b := range h.blocks {
			b.release()
		}
	})
}

// Covering opens a querier over the store's blocks and heads, as Querier
// does, with a function that reports whether its blocks hold the data of
// a block ID: a block it reads, or a level-0 block merged into one. A
// querier of a shared bucket reads ingesters' parts that it does not
// cover.
func (db *DB) Covering(ctx context.Context) (storage.Querier, func(id string) bool) {
	q, _ := db.Querier(ctx)
	set := map[string]struct{}{}
	for _, b := range q.(*querier).blocks {
		set[b.Meta.ID] = struct{}{}
		for _, id := range b.Meta.Level0 {
			set[id] = struct{}{}
		}
	}
	return q, func(id string) bool {
		_, ok := set[id]
		return ok
	}
}
