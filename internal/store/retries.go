package store

import (
	"hash/maphash"
	"sync"
)

// A client that sent a request and got no answer (a timeout, a dropped
// connection) sends the same request again, as OTLP asks it to; if the
// store took the first, it holds the spans twice. Searches drop repeats
// of a span when they assemble traces, and merges drop them within the
// blocks they merge, but a block cached for metrics counts what it holds,
// and two blocks that no merge joins keep their copies for good. So the
// store remembers the requests it took last, by a digest of their
// encoded payload, and answers a request it remembers as taken without
// storing it again.
//
// Only a request that was appended (WAL and head) is remembered, after
// its append returned: a repeat of it gets the same durability as the
// first had. Two copies in flight at once are both stored, as before. A
// request that overlaps an earlier one without being it (a collector
// that re-batched what it retries) is stored, and its repeats are
// dropped where they always were. The digests of the WAL's records are
// remembered again on replay, so a retry of a request the process took
// before a crash is recognised while that request is still in the WAL.

// maxRecentPayloads bounds the requests remembered: the oldest is
// forgotten as the next is added. At the workload's 280 spans a request,
// 20k spans/s is 70 requests a second, so the window is about eight
// minutes, past the five of the Collector's default retry policy
// (max_elapsed_time); it costs about 2.5 MB.
const maxRecentPayloads = 1 << 15

// payloadKey identifies an encoded request: its record type, length and
// two 64-bit digests under independent seeds, so that two different
// requests share a key with odds of about 2^-128 each.
type payloadKey struct {
	typ  byte
	n    int
	a, b uint64
}

// recentPayloads is the set of the last maxRecentPayloads requests taken,
// with the ring that orders them for eviction. Safe for concurrent use.
type recentPayloads struct {
	seedA, seedB maphash.Seed

	mu   sync.Mutex
	set  map[payloadKey]struct{}
	ring []payloadKey // eviction order; next is the slot to fill
	next int
}

func newRecentPayloads() *recentPayloads {
	return &recentPayloads{seedA: maphash.MakeSeed(), seedB: maphash.MakeSeed(), set: map[payloadKey]struct{}{}}
}

// key digests a record of type typ with payload p.
func (r *recentPayloads) key(typ byte, p []byte) payloadKey {
	return payloadKey{typ: typ, n: len(p), a: maphash.Bytes(r.seedA, p), b: maphash.Bytes(r.seedB, p)}
}

// has reports whether k was added and not yet forgotten.
func (r *recentPayloads) has(k payloadKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.set[k]
	return ok
}

// add remembers k, forgetting the oldest key once maxRecentPayloads are
// held.
func (r *recentPayloads) add(k payloadKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.set[k]; ok {
		return
	}
	if len(r.ring) < maxRecentPayloads {
		r.ring = append(r.ring, k)
	} else {
		delete(r.set, r.ring[r.next])
		r.ring[r.next] = k
		r.next = (r.next + 1) % maxRecentPayloads
	}
	r.set[k] = struct{}{}
}
