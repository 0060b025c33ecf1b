package otlpguard

import (
	"fmt"
	"math"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// A decoded OTLP request takes about eight times its encoded size on the
// heap (pdata's structs, strings and attribute maps), and it is held until
// the pipeline has taken it: under a flood, every client's request is
// decoded at once and waits for the store. Bounding the encoded bytes of
// the requests in flight bounds that memory before it is spent: a request
// past the bound is refused retryably, undecoded.

// inflightShare is the fraction of the Go runtime's soft memory limit that
// the encoded requests in flight may take by default: 1/128 of 300 MiB
// (the all-in-one's) is 2.3 MiB, about 20 MiB decoded, and enough for 20
// requests of 300 spans, several times what the store's group commit
// needs to stay busy. Unbounded, the 64 clients of a 2x flood held about
// 70 MiB of decoded requests at once (a heap profile).
const inflightShare = 128

// ErrInflight is the refusal of a request that would take the encoded
// bytes in flight past their bound. It is retryable: the bound frees as the
// requests in flight are answered.
var ErrInflight = fmt.Errorf("too many request bytes in flight")

// inflightRetryDelay is the delay a refused client is asked to wait: about
// the time the requests in flight take to be answered.
const inflightRetryDelay = 100 * time.Millisecond

// maxInflight resolves the bound: Limits.MaxInflightBytes when set (< 0:
// none), else a share of the Go soft memory limit, or none without one.
func (l Limits) maxInflight() int64 {
	if l.MaxInflightBytes != 0 {
		return max(l.MaxInflightBytes, 0)
	}
	soft := debug.SetMemoryLimit(-1)
	if soft == math.MaxInt64 {
		return 0
	}
	return soft / inflightShare
}

// inflight counts the encoded bytes of the requests being served.
type inflight struct {
	limit int64 // 0: unbounded
	bytes atomic.Int64
}

func newInflight(l Limits) *inflight { return &inflight{limit: l.maxInflight()} }

// acquire takes n bytes, or refuses with a retryable gRPC status when they
// would pass the limit. A request alone is always taken, however large:
// the receiver's own size limit bounds it, and it must be servable.
func (f *inflight) acquire(n int) error {
	if f == nil || f.limit == 0 {
		return nil
	}
	if now := f.bytes.Add(int64(n)); now > f.limit && now != int64(n) {
		f.bytes.Add(-int64(n))
		return RetryLater(fmt.Errorf("%w: %d MiB, the limit", ErrInflight, f.limit>>20), inflightRetryDelay)
	}
	return nil
}

func (f *inflight) release(n int) {
	if f == nil || f.limit == 0 {
		return
	}
	f.bytes.Add(-int64(n))
}
