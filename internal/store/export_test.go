package store

import (
	"context"
	"testing"
)

// Helpers for the external tests (package store_test), which run the
// store behind the storage extension and the exporter.

// HoldBlockWriter stops cut heads from being written to blocks until the
// returned function is called (it may be called more than once).
func (db *DB) HoldBlockWriter() (release func()) {
	db.flushMu.Lock()
	held := true
	return func() {
		if held {
			held = false
			db.flushMu.Unlock()
		}
	}
}

// WaitUntil polls cond until it holds, failing t after 30 s.
func WaitUntil(t *testing.T, what string, cond func() bool) { waitUntil(t, what, cond) }

// SyncBlocks polls the bucket now, as a shared store does every
// PollInterval.
func (db *DB) SyncBlocks(ctx context.Context) error { return db.syncBlocks(ctx) }
