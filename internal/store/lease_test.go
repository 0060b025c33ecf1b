package store

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sightlinehq/sightline/internal/objstore"
)

// fakeClock is a clock tests move by hand, safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Add(d time.Duration) { c.ns.Add(int64(d)) }
func openBucket(t testing.TB, dir string) *objstore.Store {
	t.Helper()
	st, err := objstore.OpenFilesystem(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func try(t *testing.T, l *Lease) bool {
	t.Helper()
	ok, err := l.Try(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestLeaseOneHolder walks a compactor lease through its life between
// processes that each open the shared bucket themselves.
func TestLeaseOneHolder(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clock := newFakeClock()
	const ttl = time.Minute
	a := NewLease(openBucket(t, dir), "compactor", "a", ttl, clock.Now)
	b := NewLease(openBucket(t, dir), "compactor", "b", ttl, clock.Now)

	if !try(t, a) || try(t, b) {
		t.Fatal("the first contender must win and the second must not")
	}
	if holder, gen, err := b.Holder(ctx); err != nil || holder != "a" || gen != 1 {
		t.Fatalf("Holder = %q, %d, %v; want a, 1", holder, gen, err)
	}
	// Renewed in time, a keeps it.
	clock.Add(ttl / 4)
	if !try(t, a) || try(t, b) || !a.Held() || b.Held() {
		t.Fatal("a renewed in time and must keep the lease")
	}

	// a stops renewing (it hangs or dies). It stops counting itself the
	// holder at half the TTL, before b may take over at the whole TTL.
	clock.Add(ttl / 2)
	if a.Held() {
		t.Fatal("a still counts itself the holder half a TTL after its last renewal")
	}
	clock.Add(ttl/2 - time.Second)
	if try(t, b) {
		t.Fatal("b took the lease before it expired")
	}
	clock.Add(time.Second)
	if !try(t, b) || !b.Held() {
		t.Fatal("b did not take the expired lease")
	}
	// a comes back: the newer generation fences it off.
	if try(t, a) || a.Held() {
		t.Fatal("a still holds the lease after b took the next generation")
	}
	// A restart of b under the same ID must wait for the old one to
	// expire: two processes given one ID must not both hold it.
	b2 := NewLease(openBucket(t, dir), "compactor", "b", ttl, clock.Now)
	if try(t, b2) {
		t.Fatal("a second process with b's ID took b's live lease")
	}

	// Released, it is taken at once.
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if b.Held() {
		t.Fatal("b holds the lease after releasing it")
	}
	if !try(t, a) {
		t.Fatal("a did not take the released lease")
	}
	if holder, gen, _ := b.Holder(ctx); holder != "a" || gen != 3 {
		t.Fatalf("Holder = %q, %d; want a, 3", holder, gen)
	}
	// Generations before the previous one are removed.
	keys, err := openBucket(t, dir).List(ctx, "leases/compactor/", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Errorf("lease objects %v, want the last two generations", keys)
	}
}

// TestLeaseContendedTakeover has many contenders find the lease expired at
// once: exactly one may take it.
func TestLeaseContendedTakeover(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	const ttl = time.Minute
	first := NewLease(openBucket(t, dir), "compactor", "first", ttl, clock.Now)
	if !try(t, first) {
		t.Fatal("no holder")
	}
	clock.Add(ttl)
	var (
		wg  sync.WaitGroup
		won atomic.Int32
	)
	for i := range 8 {
		l := NewLease(openBucket(t, dir), "compactor", string(rune('a'+i)), ttl, clock.Now)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, err := l.Try(context.Background()); err != nil {
				t.Error(err)
			} else if ok {
				won.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := won.Load(); n != 1 {
		t.Fatalf("%d contenders took the expired lease, want exactly 1", n)
	}
	if try(t, first) {
		t.Fatal("the expired holder kept the lease after it was taken over")
	}
}
