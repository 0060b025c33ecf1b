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
	if err := f.bound(n, "decoded"); err != nil {
		return err
	}
	return f.grow(0, n)
}

// bound refuses for good (ErrTooLarge) a request that alone would take
// more than a request may: n bytes, what of it says what.
func (f *Inflight) bound(n int64, what string) error {
	if f != nil && f.request > 0 && n > f.request {
		return tooLarge(fmt.Sprintf("%v: about %d MiB %s, over the %d MiB a request may take; send smaller requests", ErrTooLarge, n>>20, what, f.request>>20))
	}
	return nil
}

// grow takes n more bytes for a request that holds held already: refused,
// retryably (ErrFull), when the bytes in flight would pass their bound
// while others than this request hold some of them. Alone, a request
// grows to whatever its caller allows.
func (f *Inflight) grow(held, n int64) error {
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

// Hold is what one request holds of an Inflight while it learns what it
// takes: as its body is read (ReadBody), as it decodes (To), and once an
// estimate of its decoded size is known (Take). It grows in steps of at
// least holdStep, one atomic add a step. Its owner gives it back with
// Release; it is not safe for concurrent use.
type Hold struct {
	f    *Inflight
	held int64
}

// holdStep is the least a Hold grows by: at most 64 KiB held beyond what
// a request has taken.
const holdStep = 64 << 10

// Hold returns an empty hold on f; on a nil f it holds and refuses
// nothing.
func (f *Inflight) Hold() Hold { return Hold{f: f} }

// To makes the hold at least n bytes, refused as Acquire refuses a
// request past the bytes in flight (ErrFull), but never for a request
// alone: its caller bounds one request.
func (h *Hold) To(n int64) error {
	if n <= h.held {
		return nil
	}
	add := max(n-h.held, holdStep)
	if err := h.f.grow(h.held, add); err != nil {
		return err
	}
	h.held += add
	return nil
}

// Take adds n bytes, what the request takes decoded, to the hold (its
// body, ReadBody), refusing as Acquire does.
func (h *Hold) Take(n int64) error {
	if err := h.f.bound(n, "decoded"); err != nil {
		return err
	}
	return h.To(h.held + n)
}

// Trim gives back what the hold has beyond n bytes.
func (h *Hold) Trim(n int64) {
	if h.held > n {
		h.f.Release(h.held - n)
		h.held = n
	}
}

// Release gives back all of the hold.
func (h *Hold) Release() { h.Trim(0) }

// ReadBody reads r's body into the hold: the length the body declares
// before any is read (refused unread past a request's bound,
// ErrTooLarge), and more as more arrives (a chunked or decompressed
// body); past the bound in flight, while other requests hold part of it,
// it stops with ErrFull. A request is read whole before it is scanned;
// read without a hold, the bodies being read were held by nothing, each
// up to the server's body limit, as many as arrived at once.
func (h *Hold) ReadBody(r *http.Request) ([]byte, error) {
	br := &heldReader{r: r.Body, h: h}
	if n := r.ContentLength; n > 0 {
		if err := br.hold(n); err != nil {
			return nil, err
		}
	}
	return io.ReadAll(br)
}

// heldReader holds what it reads in h.
type heldReader struct {
	r    io.Reader
	h    *Hold
	read int64
}

func (br *heldReader) Read(p []byte) (int, error) {
	n, err := br.r.Read(p)
	br.read += int64(n)
	if herr := br.hold(br.read); herr != nil {
		return n, herr
	}
	return n, err
}

// hold makes the hold at least n bytes of body.
func (br *heldReader) hold(n int64) error {
	if n <= br.h.held {
		return nil
	}
	if err := br.h.f.bound(n, "of body"); err != nil {
		return err
	}
	return br.h.To(n)
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
