package otlpguard

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sightlinehq/sightline/internal/otlpguard/otlpguardtest"
)

type nopTraces struct {
	ptraceotlp.UnimplementedGRPCServer
}

func (*nopTraces) Export(context.Context, ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	return ptraceotlp.NewExportResponse(), nil
}

// The guard's interceptor runs before the interceptors configgrpc chains
// (authentication among them), so a refusal it remembers is always taken
// back: a stream of deep requests that authentication would also refuse
// leaves nothing behind.
func TestGRPCGuardRunsFirst(t *testing.T) {
	g := newGRPCGuard(Limits{}, nil)
	deny := func(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error) {
		return nil, status.Error(codes.Unauthenticated, "no token")
	}
	// configgrpc's order: its own chained interceptors, then middlewares.
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(deny)}, g.ServerOptions()...)...)
	ptraceotlp.RegisterGRPCServer(srv, &nopTraces{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Stop()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deep := otlpguardtest.DeepTracesProto(1000, otlpguardtest.KVList)
	for range 20 {
		var reply []byte
		err := conn.Invoke(context.Background(), "/opentelemetry.proto.collector.trace.v1.TraceService/Export", deep, &reply, grpc.ForceCodecV2(otlpguardtest.RawCodec{}))
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("got %v, want InvalidArgument from the guard before authentication", err)
		}
	}
	n := 0
	g.refused.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Errorf("%d refusals left behind", n)
	}
}

// recordTraces keeps the encoding of every request it is given.
type recordTraces struct {
	ptraceotlp.UnimplementedGRPCServer
	got [][]byte
}

func (r *recordTraces) Export(_ context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	b, err := req.MarshalProto()
	if err != nil {
		return ptraceotlp.NewExportResponse(), err
	}
	r.got = append(r.got, b)
	return ptraceotlp.NewExportResponse(), nil
}

// Requests of many HTTP/2 frames are copied into reused buffers that are
// not cleared: each must decode to exactly what was sent, whatever a
// buffer held before (a longer request of the same size class, then a
// shorter one).
func TestGRPCGuardMultiFrameRequests(t *testing.T) {
	g := newGRPCGuard(Limits{}, nil)
	srv := grpc.NewServer(g.ServerOptions()...)
	rec := &recordTraces{}
	ptraceotlp.RegisterGRPCServer(srv, rec)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Stop()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)
	var sent [][]byte
	for i, spans := range []int{300, 200, 2000, 300, 1} {
		td := ptrace.NewTraces()
		ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
		for j := range spans {
			sp := ss.AppendEmpty()
			sp.SetName(fmt.Sprintf("request %d span %d", i, j))
			sp.SetTraceID([16]byte{byte(i), byte(j), byte(j >> 8), 1})
			sp.SetSpanID([8]byte{byte(j), byte(j >> 8), 1})
			sp.Attributes().PutStr("payload", fmt.Sprintf("%0100d", i*10000+j))
		}
		req := ptraceotlp.NewExportRequestFromTraces(td)
		b, err := req.MarshalProto()
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, b)
		if _, err := client.Export(context.Background(), req); err != nil {
			t.Fatalf("request %d (%d bytes): %v", i, len(b), err)
		}
	}
	if len(sent[0]) <= 32<<10 || len(sent[1]) >= len(sent[0]) || len(sent[1]) <= 16<<10 {
		t.Fatalf("requests of %d and %d bytes do not test a shorter request after a longer one of several frames", len(sent[0]), len(sent[1]))
	}
	if len(rec.got) != len(sent) {
		t.Fatalf("server got %d requests, want %d", len(rec.got), len(sent))
	}
	for i := range sent {
		if !bytes.Equal(rec.got[i], sent[i]) {
			t.Errorf("request %d (%d bytes) decoded to %d different bytes", i, len(sent[i]), len(rec.got[i]))
		}
	}
}

func TestRequestBufSizes(t *testing.T) {
	for _, n := range []int{1, 16<<10 + 1, 32 << 10, 32<<10 + 1, 1 << 20, 16 << 20, 16<<20 + 1} {
		p := getRequestBuf(n)
		if len(*p) != n {
			t.Errorf("getRequestBuf(%d) has length %d", n, len(*p))
		}
		if c := cap(*p); n <= 16<<20 && (c&(c-1) != 0 || c < 32<<10 || c >= 2*max(n, 32<<10)) {
			t.Errorf("getRequestBuf(%d) has capacity %d, want the power of two at or above it, at least 32 KiB", n, c)
		}
		putRequestBuf(p)
	}
}
