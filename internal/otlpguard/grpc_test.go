package otlpguard

import (
	"context"
	"net"
	"testing"

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
