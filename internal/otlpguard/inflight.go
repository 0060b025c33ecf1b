package otlpguard

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sightlinehq/sightline/internal/memlimit"
)

// A decoded OTLP request takes several times its encoded size on the heap
// (pdata's structs, strings and attribute maps; Report.Decoded estimates
// it), and it is held until the pipeline has taken it: under a flood,
// every client's request is decoded at once and waits for the store.
// Bounding the estimated decoded bytes of the requests in flight bounds
// that memory before it is spent: a request past the bound is refused
// retryably, undecoded. The estimate, not the encoded size, is what counts:
// the workload generator's spans take 3.4 times their size decoded, but a
// request of empty messages up to a hundred times (4 MiB of empty spans,
// 460 MiB).

// inflightShare is the fraction of the Go runtime's soft memory limit that
// the requests in flight may take decoded by default: 1/32 of 300 MiB (the
// all-in-one's) is about 9 MiB, some 20 requests of 300 spans, several
// times what the store's group commit needs to stay busy. (It was 1/128 in
// encoded bytes, 2.3 MiB: 7.8 MiB of such requests decoded.) Unbounded, the
// 64 clients of a 2x flood held about 70 MiB of decoded requests at once
// (a heap profile).
const inflightShare = 32

// requestShare is the fraction of the soft memory limit that one request
// may take decoded by default: half of it, 150 MiB in the all-in-one,
// which the workload generator's spans reach at about 44 MiB encoded,
// past the receivers' default size limits (4 MiB over gRPC, 20 MiB over
// HTTP).
const requestShare = 2

// ErrInflight is the refusal of a request that would take the bytes in
// flight past their bound. It is retryable: the bound frees as the
// requests in flight are answered.
var ErrInflight = fmt.Errorf("too many request bytes in flight")

// ErrTooLarge is the refusal of a request that alone would take more
// memory decoded than a request may (Limits.MaxRequestBytes). It is
// permanent: gRPC ResourceExhausted without RetryInfo, HTTP 413, which
// OTLP clients do not retry. Smaller requests are taken.
var ErrTooLarge = errors.New("request too large to decode")

// tooLarge is Acquire's ErrTooLarge: errors.Is finds ErrTooLarge in it,
// and gRPC answers it ResourceExhausted, without RetryInfo.
type tooLarge string

func (e tooLarge) Error() string              { return string(e) }
func (e tooLarge) Unwrap() error              { return ErrTooLarge }
func (e tooLarge) GRPCStatus() *status.Status { return status.New(codes.ResourceExhausted, string(e)) }

// inflightRetryDelay is the delay a refused client is asked to wait: about
// the time the requests in flight take to be answered.
const inflightRetryDelay = 100 * time.Millisecond

// maxInflight resolves the bound: Limits.MaxInflightBytes when set (< 0:
// none), else a share of the Go soft memory limit (memoryBound).
func (l Limits) maxInflight() int64 {
	return share(l.MaxInflightBytes, inflightShare)
}

// maxRequest resolves a request's bound as maxInflight does.
func (l Limits) maxRequest() int64 {
	return share(l.MaxRequestBytes, requestShare)
}

// share is set if set, else memoryBound's 1/of; < 0 and 0 are none.
func share(set, of int64) int64 {
	if set != 0 {
		return max(set, 0)
	}
	return memoryBound() / of
}

// memoryBound is the Go soft memory limit, or without one (a process that
// knows no limit of its own: not the all-in-one, not in a container) the
// 75% of the host's memory that memlimit would make it; 0 if neither is
// known.
func memoryBound() int64 {
	if soft := debug.SetMemoryLimit(-1); soft != math.MaxInt64 {
		return soft
	}
	return int64(hostMemory() / 4 * 3)
}

// hostMemory is read once per process.
var hostMemory = sync.OnceValue(memlimit.Host)

// Inflight bounds the estimated decoded bytes of the requests being
// served at once, and of one request. The OTLP guard holds one per
// receiver; other receivers hold their own, with their own estimates.
type Inflight struct {
	limit   int64 // 0: unbounded
	request int64 // a request's bound; 0: unbounded
	bytes   atomic.Int64
}

// NewInflight returns the bounds of l (MaxInflightBytes, MaxRequestBytes).
func NewInflight(l Limits) *Inflight {
	return &Inflight{limit: l.maxInflight(), request: l.maxRequest()}
}

// Full reports whether the bound is taken, so that a request can be
// refused (ErrFull) before it is even read or scanned: Acquire would
// refuse any request while it holds.
func (f *Inflight) Full() bool {
	return f != nil && f.limit > 0 && f.bytes.Load() >= f.limit
}

// Acquire takes n bytes (an estimate such as Report.Decoded), or refuses:
// permanently for a request over its own bound (ErrTooLarge), retryably
// when the bytes in flight would pass theirs (ErrFull). A request alone is taken
// whatever its size below its own bound, since it must be servable.
// What it takes is given back by Release.
func (f *Inflight) Acquire(n int64) error {
	return f.Take(0, n)
}

// bound refuses for good (ErrTooLarge) a request that alone would take
// more than a request may: n bytes, what of it says what.
func (f *Inflight) bound(n int64, what string) error {
	if f != nil && f.request > 0 && n > f.request {
		return tooLarge(fmt.Sprintf("%v: about %d MiB %s, over the %d MiB a request may take; send smaller requests", ErrTooLarge, n>>20, what, f.request>>20))
	}
	return nil
}

// Grow takes n more bytes for a request that holds held already, for a
// receiver that learns what a request takes as it decodes it: refused,
// retryably (ErrFull), when the bytes in flight would pass their bound
// while others than this request hold some of them. Alone, a request
// grows to whatever its caller allows: the caller bounds one request
// (RequestLimit). Release gives back what Acquire, Take, Grow and
// ReadBody took.
func (f *Inflight) Grow(held, n int64) error {
	if f == nil || f.limit == 0 {
		return nil
	}
	if now := f.bytes.Add(n); now > f.limit && now != held+n {
		f.bytes.Add(-n)
		return f.ErrFull()
	}
	return nil
}

// ErrFull is Acquire's retryable refusal: errors.Is finds ErrInflight in
// it, and gRPC answers it Unavailable with RetryInfo (RetryLater).
func (f *Inflight) ErrFull() error {
	return inflightFull(fmt.Sprintf("%v: %d MiB, the limit", ErrInflight, f.limit>>20))
}

// inflightFull is ErrFull's error.
type inflightFull string

func (e inflightFull) Error() string { return string(e) }
func (e inflightFull) Unwrap() error { return ErrInflight }
func (e inflightFull) GRPCStatus() *status.Status {
	return status.Convert(RetryLater(errors.New(string(e)), inflightRetryDelay))
}

// Take holds n more bytes, what a request takes decoded, for a request
// that holds held already (its body, ReadBody), refusing as Acquire does.
func (f *Inflight) Take(held, n int64) error {
	if err := f.bound(n, "decoded"); err != nil {
		return err
	}
	return f.Grow(held, n)
}

// ReadBody reads r's body while holding its bytes: the length the body
// declares before any is read (refused unread past a request's bound,
// ErrTooLarge), and more as more arrives, in steps of readStep (a chunked
// or decompressed body); past the bound in flight, while other requests
// hold part of it, it stops with ErrFull. It returns the bytes it holds,
// which the caller gives back (Release), on error too. A request is read
// whole before it is scanned; read without a hold, the bodies being read
// were held by nothing, each up to the server's body limit, as many as
// arrived at once.
func (f *Inflight) ReadBody(r *http.Request) ([]byte, int64, error) {
	h := &heldReader{r: r.Body, fl: f}
	if n := r.ContentLength; n > 0 {
		if err := h.hold(n); err != nil {
			return nil, h.held, err
		}
	}
	body, err := io.ReadAll(h)
	return body, h.held, err
}

// readStep is the least a body takes of the bound in flight at a time as
// it is read.
const readStep = 64 << 10

type heldReader struct {
	r          io.Reader
	fl         *Inflight
	read, held int64
}

func (h *heldReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.read += int64(n)
	if h.read > h.held {
		if herr := h.hold(max(h.read-h.held, readStep)); herr != nil {
			return n, herr
		}
	}
	return n, err
}

// hold takes n more bytes of the bound in flight.
func (h *heldReader) hold(n int64) error {
	if err := h.fl.bound(max(h.read, n), "of body"); err != nil {
		return err
	}
	if err := h.fl.Grow(h.held, n); err != nil {
		return err
	}
	h.held += n
	return nil
}

// RequestLimit is the bound on one request; 0 is none.
func (f *Inflight) RequestLimit() int64 {
	if f == nil {
		return 0
	}
	return f.request
}

// Release gives back n bytes that Acquire took.
func (f *Inflight) Release(n int64) {
	if f == nil || f.limit == 0 {
		return
	}
	f.bytes.Add(-n)
}
