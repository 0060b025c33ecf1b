package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sightlinehq/sightline/internal/objstore"
)

// Lease elects one holder among the processes that share a bucket: the
// compactor role takes one so that, of several compactors started on one
// bucket, exactly one merges blocks and applies retention while the others
// stay idle, and one of them takes over when the holder stops or dies.
//
// A lease is a series of generations, each one object:
//
//	leases/<name>/<generation, 20 decimal digits>
//	{"holder": "<id>", "renewed_unix_nano": <int>, "ttl_ns": <int>}
//
// Only the newest generation counts. Its holder renews it by rewriting it;
// anyone may start the next generation once the newest one has gone
// TTL without renewal, or was released (renewed 0), and creating a
// generation is the bucket's exclusive create (objstore.Store.Create), so
// that of several contenders exactly one wins. The generation number is a
// fencing token: a holder that finds a newer generation than its own has
// lost the lease, whatever its clock says.
//
// Expiry is judged on the reader's clock against the writer's, as
// Kubernetes leases are: clocks must agree to well within the TTL. A holder
// counts itself the holder only for half the TTL after its last renewal
// (Held), so that it stops before anyone may take over.
//
// Methods are safe for concurrent use.
type Lease struct {
	st     *objstore.Store
	prefix string
	holder string
	ttl    time.Duration
	now    func() time.Time

	mu      sync.Mutex
	gen     uint64    // the generation held, 0 for none
	renewed time.Time // when it was last written by us
}

type leaseRecord struct {
	Holder  string `json:"holder"`
	Renewed int64  `json:"renewed_unix_nano"`
	TTL     int64  `json:"ttl_ns"`
}

// NewLease returns the lease called name in st, contended for as holder.
// now defaults to time.Now.
func NewLease(st *objstore.Store, name, holder string, ttl time.Duration, now func() time.Time) *Lease {
	if now == nil {
		now = time.Now
	}
	return &Lease{st: st, prefix: "leases/" + name + "/", holder: holder, ttl: ttl, now: now}
}

// Held reports whether this process holds the lease now: it won or renewed
// it less than half the TTL ago.
func (l *Lease) Held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.gen != 0 && l.now().Before(l.renewed.Add(l.ttl/2))
}

// Holder is the current holder's ID and generation as the bucket has it,
// for logs and status pages; "" when no one holds it.
func (l *Lease) Holder(ctx context.Context) (string, uint64, error) {
	gen, rec, err := l.newest(ctx)
	if err != nil || gen == 0 || l.expired(rec) {
		return "", gen, err
	}
	return rec.Holder, gen, nil
}

// Try renews the lease if this process holds it, or takes it if its
// holder let it expire or released it, and reports whether this process
// holds it afterwards. Call it at least every quarter of the TTL.
func (l *Lease) Try(ctx context.Context) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	gen, rec, err := l.newest(ctx)
	if err != nil {
		return false, err
	}
	now := l.now()
	switch {
	case gen != 0 && gen == l.gen && rec.Holder == l.holder && !l.expired(rec):
		// Ours and still the newest: renew it. Once expired it is renewed
		// only by winning the next generation, as anyone would have to:
		// a contender may be creating that generation right now.
		if err := l.write(ctx, gen, now, false); err != nil {
			return false, err
		}
		l.renewed = now
		return true, nil
	case gen != 0 && !l.expired(rec):
		// Someone else's (or an earlier run of ours, which must expire
		// first: two processes given one ID must not both hold it).
		l.gen = 0
		return false, nil
	}
	l.gen = 0
	err = l.write(ctx, gen+1, now, true)
	if errors.Is(err, objstore.ErrExists) {
		return false, nil // another contender started it first
	}
	if err != nil {
		return false, err
	}
	l.gen, l.renewed = gen+1, now
	// Generations before the previous one are history.
	if keys, err := l.st.List(ctx, l.prefix, ""); err == nil {
		for _, k := range keys {
			if g, ok := l.generation(k); ok && g < gen {
				l.st.Delete(ctx, k)
			}
		}
	}
	return true, nil
}

// Release gives the lease up at once, so that another contender need not
// wait for it to expire. It is a no-op unless this process holds it.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gen == 0 {
		return nil
	}
	gen, rec, err := l.newest(ctx)
	if err != nil {
		return err
	}
	held := l.gen
	l.gen = 0
	if gen != held || rec.Holder != l.holder {
		return nil // already taken over
	}
	return l.write(ctx, held, time.Unix(0, 0), false)
}

func (l *Lease) expired(rec leaseRecord) bool {
	return rec.Renewed <= 0 || !l.now().Before(time.Unix(0, rec.Renewed).Add(time.Duration(rec.TTL)))
}

func (l *Lease) key(gen uint64) string { return fmt.Sprintf("%s%020d", l.prefix, gen) }

func (l *Lease) generation(key string) (uint64, bool) {
	g, err := strconv.ParseUint(path.Base(key), 10, 64)
	return g, err == nil && strings.HasPrefix(key, l.prefix) && g > 0
}

// newest returns the newest generation and its record; 0 when there is
// none. A generation whose record cannot be read or decoded counts as
// expired: it was being created or is damaged, and refusing to ever take
// over would leave the bucket without a compactor.
func (l *Lease) newest(ctx context.Context) (uint64, leaseRecord, error) {
	keys, err := l.st.List(ctx, l.prefix, "")
	if err != nil {
		return 0, leaseRecord{}, fmt.Errorf("lease %s: %w", l.prefix, err)
	}
	var gen uint64
	for _, k := range keys {
		if g, ok := l.generation(k); ok && g > gen {
			gen = g
		}
	}
	if gen == 0 {
		return 0, leaseRecord{}, nil
	}
	var rec leaseRecord
	b, err := l.st.Get(ctx, l.key(gen))
	if err != nil && !errors.Is(err, objstore.ErrNotExist) {
		return 0, leaseRecord{}, fmt.Errorf("lease %s: %w", l.prefix, err)
	}
	if err == nil {
		json.Unmarshal(b, &rec)
	}
	return gen, rec, nil
}

func (l *Lease) write(ctx context.Context, gen uint64, renewed time.Time, create bool) error {
	b, _ := json.Marshal(leaseRecord{Holder: l.holder, Renewed: renewed.UnixNano(), TTL: int64(l.ttl)})
	if create {
		return l.st.Create(ctx, l.key(gen), b)
	}
	return l.st.PutBytes(ctx, l.key(gen), b)
}
