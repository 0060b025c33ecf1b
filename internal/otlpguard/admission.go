package otlpguard

import (
	"context"
	"maps"
	"math"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Admission decides, before a request's body is read, whether the process
// takes a request of signal sig now. It is called once per export request
// on the receiver's hot path, so it must be cheap and must not block.
//
// A refusal must be retryable and should be a gRPC status: Unavailable
// with RetryInfo (the delay the client is asked to wait), as OTLP
// specifies for a server that is temporarily overloaded. Over HTTP the
// guard answers it 503 with Retry-After and the status as the body.
//
// Refusing here costs the server almost nothing: the body is neither read
// nor decoded. A refusal after decoding (a memory_limiter processor, an
// exporter at its budget) costs as much CPU and memory as accepting, which
// under a flood leaves less of both for the data already accepted.
type Admission func(sig Signal) error

// Admitter is an extension that takes part in admission: the storage
// extension, whose memory budget and compaction backlog decide whether the
// process takes more data. Receivers find the admitters among the
// extensions of their host (HostAdmission), as they find authenticators;
// nothing registers itself anywhere else.
type Admitter interface {
	// Admit has Admission's contract.
	Admit(sig Signal) error
}

// HostAdmission is the admission of the extensions on host that implement
// Admitter, asked in the order of their IDs until one refuses. It is nil
// (admit everything) when there are none, as in an agent without a store,
// which leaves its memory to the memory_limiter processor.
func HostAdmission(host component.Host) Admission {
	exts := host.GetExtensions()
	ids := slices.SortedFunc(maps.Keys(exts), func(a, b component.ID) int { return strings.Compare(a.String(), b.String()) })
	var as []Admitter
	for _, id := range ids {
		if a, ok := exts[id].(Admitter); ok {
			as = append(as, a)
		}
	}
	switch len(as) {
	case 0:
		return nil
	case 1:
		return as[0].Admit
	}
	return func(sig Signal) error {
		for _, a := range as {
			if err := a.Admit(sig); err != nil {
				return err
			}
		}
		return nil
	}
}

// grpcMethods maps the OTLP export methods to their signals.
var grpcMethods = map[string]Signal{
	"/opentelemetry.proto.collector.trace.v1.TraceService/Export":     Traces,
	"/opentelemetry.proto.collector.metrics.v1.MetricsService/Export": Metrics,
	"/opentelemetry.proto.collector.logs.v1.LogsService/Export":       Logs,
}

// admitTap is a gRPC InTapHandle: it runs when a stream's headers arrive,
// before the server reads the message. A refused stream is ended with
// trailers carrying the status (RetryInfo included) and reset, so the
// client's message is never read into memory.
func admitTap(admit Admission) tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		sig, ok := grpcMethods[info.FullMethodName]
		if !ok {
			return ctx, nil
		}
		if err := admit(sig); err != nil {
			if _, ok := status.FromError(err); !ok {
				// gRPC would answer a plain error PermissionDenied, which
				// clients do not retry.
				err = status.Error(codes.Unavailable, err.Error())
			}
			return ctx, err
		}
		return ctx, nil
	}
}

// admitHTTP answers the OTLP requests that next serves at paths with 503
// and Retry-After while admit refuses them, without reading their bodies.
func admitHTTP(next http.Handler, paths map[string]Signal, admit Admission) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sig, ok := exportRequest(r, paths)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if err := admit(sig); err != nil {
			ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
			writeRetryable(w, ct, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// writeRetryable answers a refusal with 503 (429 for ResourceExhausted, as
// OTLP maps it), with Retry-After when err carries RetryInfo, and with
// err's google.rpc.Status, details included, as the body.
func writeRetryable(w http.ResponseWriter, contentType string, err error) {
	st, ok := status.FromError(err)
	if !ok {
		st = status.New(codes.Unavailable, err.Error())
	}
	code := http.StatusServiceUnavailable
	if st.Code() == codes.ResourceExhausted {
		code = http.StatusTooManyRequests
	}
	SetRetryAfter(w.Header(), err)
	writeStatus(w, contentType, code, st.Proto())
}

// SetRetryAfter sets h's Retry-After to the delay in err's RetryInfo,
// rounded up to whole seconds, if it has one: how HTTP says what the
// status says to gRPC clients.
func SetRetryAfter(h http.Header, err error) {
	if d := RetryDelay(err); d > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
	}
}

// RetryLater is err as OTLP's answer from a server that is temporarily
// overloaded: gRPC Unavailable, with RetryInfo asking the client to wait
// delay before it retries. The receivers answer it over HTTP with 503 and
// Retry-After. The status carries err's message; err itself is not
// wrapped, since the status is what crosses the wire.
func RetryLater(err error, delay time.Duration) error {
	st, derr := status.New(codes.Unavailable, err.Error()).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
	if derr != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	return st.Err()
}

// RetryDelay is the delay in err's gRPC RetryInfo, or 0.
func RetryDelay(err error) time.Duration {
	st, ok := status.FromError(err)
	if !ok {
		return 0
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}
