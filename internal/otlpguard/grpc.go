package otlpguard

import (
	"context"
	"fmt"
	"math/bits"
	"reflect"
	"sync"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// grpcGuard checks OTLP export requests in the gRPC server's codec, the
// last point before pdata decodes them: a unary interceptor runs only after
// the request is decoded, too late for a request that crashes the decoder.
//
// A codec error would reach the client as codes.Internal (gRPC wraps every
// unmarshal failure so), which misstates a client error. So a refused
// request is left undecoded (its zero value) and remembered, and the
// interceptor, which gRPC calls next on the same request value, answers
// InvalidArgument without calling the service.
type grpcGuard struct {
	lim      Limits
	delegate encoding.CodecV2
	inflight *Inflight
	// held maps a request value to the bytes it holds of the in-flight
	// bound (Report.Decoded), for the interceptor to give back once the
	// request is answered. gRPC calls the interceptor for every request the
	// codec decoded without error, so nothing is held past its request.
	held    sync.Map // request value → int64
	refused sync.Map // request value → gRPC status error
	// partial holds the rejection of a request decoded without its
	// invalid spans, for the interceptor to put in the response.
	partial sync.Map // request value → rejection
}

func newGRPCGuard(lim Limits, fl *Inflight) *grpcGuard {
	// pdata registers its own "proto" codec, which knows its request types.
	return &grpcGuard{lim: lim, delegate: encoding.GetCodecV2("proto"), inflight: fl}
}

// ServerOptions returns the options that install the guard on a server.
// The interceptor is the server's first (grpc.UnaryInterceptor runs before
// every chained one, and configgrpc chains its own, authentication among
// them): if an interceptor before it refused the request, the refusal it
// remembers would never be taken back, and an unauthenticated client could
// grow the map without bound.
func (g *grpcGuard) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(g), grpc.UnaryInterceptor(g.intercept)}
}

func (g *grpcGuard) Name() string { return "proto" }

func (g *grpcGuard) Marshal(v any) (mem.BufferSlice, error) { return g.delegate.Marshal(v) }

func (g *grpcGuard) Unmarshal(data mem.BufferSlice, v any) (err error) {
	sig := grpcSignal(v)
	if sig == 0 {
		return g.delegate.Unmarshal(data, v)
	}
	if g.inflight.Full() {
		// Refused as Acquire would, without the scan's work.
		g.refused.Store(v, g.inflight.ErrFull())
		return nil
	}
	var b []byte
	if len(data) == 1 {
		b = data[0].ReadOnlyData()
	} else {
		p := getRequestBuf(data.Len())
		defer putRequestBuf(p)
		b = (*p)[:data.CopyTo(*p)]
		// pdata's codec reads one buffer in place.
		data = mem.BufferSlice{mem.SliceBuffer(b)}
	}
	rep, err := ScanProto(sig, b, g.lim)
	if err != nil {
		g.refused.Store(v, status.Error(codes.InvalidArgument, fmt.Sprintf("otlp %s request refused: %v", sig, err)))
		return nil
	}
	n := rep.Decoded
	if err := g.inflight.Acquire(n); err != nil {
		g.refused.Store(v, err)
		return nil
	}
	defer func() {
		if err != nil {
			// gRPC answers a decoding error without calling the
			// interceptor, which would have released the bytes.
			g.inflight.Release(n)
			return
		}
		g.held.Store(v, n)
	}()
	if sig == Traces && rep.InvalidSpans > 0 {
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(b); err != nil {
			return g.delegate.Unmarshal(data, v) // fails as it would have
		}
		rejected, kept := filterInvalidSpans(req)
		if kept == 0 {
			g.refused.Store(v, status.Error(codes.InvalidArgument, fmt.Sprintf("otlp traces request refused: %v", errAllInvalid(rejected))))
			return nil
		}
		nb, err := req.MarshalProto()
		if err != nil {
			return err
		}
		if err := g.delegate.Unmarshal(mem.BufferSlice{mem.SliceBuffer(nb)}, v); err != nil {
			return err // gRPC answers it without calling the interceptor
		}
		// Only for a request the interceptor will see, which takes it back.
		g.partial.Store(v, rejection{spans: int64(rejected)})
		return nil
	}
	return g.delegate.Unmarshal(data, v)
}

// protoResponse is what pdata's gRPC response types have in common.
type protoResponse interface {
	UnmarshalProto([]byte) error
}

func (g *grpcGuard) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if n, ok := g.held.LoadAndDelete(req); ok {
		defer g.inflight.Release(n.(int64))
	}
	if err, ok := g.refused.LoadAndDelete(req); ok {
		return nil, err.(error)
	}
	rej, partial := g.partial.LoadAndDelete(req)
	resp, err := handler(ctx, req)
	if partial && err == nil {
		// The receiver answers an empty response; this one says which
		// spans were not taken.
		if pr, ok := resp.(protoResponse); ok {
			if b, merr := partialResponse(rej.(rejection)).MarshalProto(); merr == nil {
				_ = pr.UnmarshalProto(b)
			}
		}
	}
	return resp, err
}

// grpcSignal tells pdata's OTLP request types apart without importing its
// internal package; TestGRPCSignalNames keeps the names honest across
// pdata upgrades.
func grpcSignal(v any) Signal {
	switch reflect.TypeOf(v).String() {
	case "*internal.ExportTraceServiceRequest":
		return Traces
	case "*internal.ExportMetricsServiceRequest":
		return Metrics
	case "*internal.ExportLogsServiceRequest":
		return Logs
	}
	return 0
}

// A request larger than an HTTP/2 frame (16 KiB) reaches the codec as
// several buffers, and the scan and pdata each need it in one. It is copied
// once, into a buffer of requestBufs, and handed on as that one buffer,
// which pdata's codec reads in place. Each used to materialize it through
// gRPC's pools, which clear a buffer's whole capacity before use (1 MiB
// for a 100 KiB request): the two copies and their clearing were 2.8% of
// the all-in-one's CPU at 20k spans/s. These buffers are not cleared: the
// copy writes every byte that is read.
//
// requestBufs[i] holds buffers of 1<<(minRequestShift+i) bytes. The
// buffers in use are bounded by the bytes in flight (inflight), at most
// twice over for the rounding; idle ones go at the next garbage
// collections, as a sync.Pool's do; past 1<<maxRequestShift a request's
// buffer is its own.
const (
	minRequestShift = 15 // 32 KiB
	maxRequestShift = 24 // 16 MiB
)

var requestBufs [maxRequestShift - minRequestShift + 1]sync.Pool

// getRequestBuf returns a buffer of length n with unspecified contents.
func getRequestBuf(n int) *[]byte {
	shift := max(bits.Len(uint(n-1)), minRequestShift)
	if shift > maxRequestShift {
		b := make([]byte, n)
		return &b
	}
	if p, ok := requestBufs[shift-minRequestShift].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, 1<<shift)
	return &b
}

// putRequestBuf takes back a buffer from getRequestBuf once nothing reads
// it: pdata copies what it decodes.
func putRequestBuf(p *[]byte) {
	c := cap(*p)
	shift := bits.Len(uint(c)) - 1
	if c != 1<<shift || shift < minRequestShift || shift > maxRequestShift {
		return
	}
	requestBufs[shift-minRequestShift].Put(p)
}
