package otlpguard

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sightlinehq/sightline/internal/otlpguard/otlpguardtest"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startGuardedReceiver runs upstream's otlp receiver, wrapped, on real
// sockets (gRPC limited to maxRecvMiB when not 0) into a sink.
func startGuardedReceiver(t *testing.T, maxRecvMiB int, admit Admission) (grpcAddr, httpAddr string, sink *consumertest.TracesSink) {
	t.Helper()
	sink = new(consumertest.TracesSink)
	grpcAddr, httpAddr = startGuardedReceiverInto(t, maxRecvMiB, Limits{}, admit, sink)
	return grpcAddr, httpAddr, sink
}

// startGuardedReceiverInto runs upstream's otlp receiver, wrapped with lim
// and admit, on real sockets into next.
func startGuardedReceiverInto(t *testing.T, maxRecvMiB int, lim Limits, admit Admission, next consumer.Traces) (grpcAddr, httpAddr string) {
	t.Helper()
	f := WrapReceiverFactory(otlpreceiver.NewFactory(), lim)
	cfg := f.CreateDefaultConfig().(*otlpreceiver.Config)
	grpcAddr, httpAddr = freeAddr(t), freeAddr(t)
	gc := cfg.Protocols.GRPC.GetOrInsertDefault()
	gc.NetAddr.Endpoint = grpcAddr
	if maxRecvMiB > 0 {
		gc.MaxRecvMsgSizeMiB = maxRecvMiB
	}
	cfg.Protocols.HTTP = configoptional.Some(*cfg.Protocols.HTTP.GetOrInsertDefault())
	cfg.Protocols.HTTP.Get().ServerConfig.NetAddr.Endpoint = httpAddr
	r, err := f.CreateTraces(context.Background(), receivertest.NewNopSettings(f.Type()), cfg, next)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background(), admitHost(admit)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Shutdown(context.Background()) })
	return grpcAddr, httpAddr
}

// The upstream receiver, wrapped, on real sockets: a million levels over
// HTTP (protobuf, gzipped protobuf, JSON) and over gRPC under the seed
// gateway's 16 MiB limit are refused as client errors, and the receiver
// goes on taking good requests.
func TestGuardedReceiver(t *testing.T) {
	grpcAddr, httpAddr, sink := startGuardedReceiver(t, 16, nil)

	// A million key/value lists: enough to overflow pdata's decoder stack
	// unguarded, and under the 16 MiB gRPC limit.
	deep := otlpguardtest.DeepTracesProto(1_000_000, otlpguardtest.KVList)
	if len(deep) >= 16<<20 {
		t.Fatalf("payload is %d bytes, over the 16 MiB limit it must pass", len(deep))
	}
	post := func(body []byte, ct, enc string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+httpAddr+"/v1/traces", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		if enc != "" {
			req.Header.Set("Content-Encoding", enc)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(otlpguardtest.DeepTracesProto(1_000_000, otlpguardtest.Array))
	zw.Close()
	for name, c := range map[string]struct {
		body     []byte
		ct, enc  string
		wantBody string
	}{
		"protobuf":      {deep, "application/x-protobuf", "", "nested too deeply"},
		"gzip protobuf": {gz.Bytes(), "application/x-protobuf", "gzip", "nested too deeply"},
		"json":          {otlpguardtest.DeepTracesJSON(500_000), "application/json", "", `"code":3`},
	} {
		code, body := post(c.body, c.ct, c.enc)
		if code != http.StatusBadRequest || !bytes.Contains([]byte(body), []byte(c.wantBody)) {
			t.Errorf("%s: %d %.200q, want 400 containing %q", name, code, body, c.wantBody)
		}
	}

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var reply []byte
	err = conn.Invoke(context.Background(), "/opentelemetry.proto.collector.trace.v1.TraceService/Export", deep, &reply, grpc.ForceCodecV2(otlpguardtest.RawCodec{}))
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("gRPC: got %v, want InvalidArgument", err)
	}

	// Good requests still go through both protocols.
	td := ptrace.NewTraces()
	fine := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	fine.SetName("fine")
	fine.SetTraceID([16]byte{1})
	fine.SetSpanID([8]byte{1})
	if _, err := ptraceotlp.NewGRPCClient(conn).Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(td)); err != nil {
		t.Errorf("gRPC good request: %v", err)
	}
	good, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if code, body := post(good, "application/x-protobuf", ""); code != http.StatusOK {
		t.Errorf("HTTP good request: %d %s", code, body)
	}
	if got := sink.SpanCount(); got != 2 {
		t.Errorf("delivered %d spans, want 2", got)
	}
	if n := len(sink.AllTraces()); n != 2 {
		t.Errorf("delivered %d batches, want 2: %v", n, fmt.Sprint(sink.AllTraces()))
	}
}

// mixedIDs has spans named ok-* with valid IDs and bad-* with a zero or
// missing trace or span ID.
func mixedIDs(ok int) ptrace.Traces {
	td := ptrace.NewTraces()
	spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	for i := range ok {
		s := spans.AppendEmpty()
		s.SetName(fmt.Sprintf("ok-%d", i))
		s.SetTraceID([16]byte{2, byte(i)})
		s.SetSpanID([8]byte{2, byte(i)})
	}
	s := spans.AppendEmpty()
	s.SetName("bad-zero-trace")
	s.SetSpanID([8]byte{3})
	s = spans.AppendEmpty()
	s.SetName("bad-zero-span")
	s.SetTraceID([16]byte{3})
	spans.AppendEmpty().SetName("bad-no-ids")
	return td
}

// Spans with zero or missing IDs are rejected with OTLP's partial success
// over every transport; the rest of the request is stored. A request of
// nothing but such spans is refused.
func TestInvalidSpanIDsArePartiallyRejected(t *testing.T) {
	grpcAddr, httpAddr, sink := startGuardedReceiver(t, 0, nil)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	resp, err := ptraceotlp.NewGRPCClient(conn).Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(mixedIDs(2)))
	if err != nil {
		t.Fatalf("gRPC: %v", err)
	}
	if ps := resp.PartialSuccess(); ps.RejectedSpans() != 3 || !strings.Contains(ps.ErrorMessage(), "3 spans rejected") {
		t.Errorf("gRPC partial success: %d %q", ps.RejectedSpans(), ps.ErrorMessage())
	}

	post := func(body []byte, ct string) (int, []byte) {
		hr, err := http.Post("http://"+httpAddr+"/v1/traces", ct, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer hr.Body.Close()
		b, _ := io.ReadAll(hr.Body)
		return hr.StatusCode, b
	}
	pb, _ := ptraceotlp.NewExportRequestFromTraces(mixedIDs(2)).MarshalProto()
	code, body := post(pb, "application/x-protobuf")
	got := ptraceotlp.NewExportResponse()
	if code != http.StatusOK || got.UnmarshalProto(body) != nil || got.PartialSuccess().RejectedSpans() != 3 {
		t.Errorf("HTTP protobuf: %d %q", code, body)
	}
	js, _ := ptraceotlp.NewExportRequestFromTraces(mixedIDs(2)).MarshalJSON()
	code, body = post(js, "application/json")
	got = ptraceotlp.NewExportResponse()
	if code != http.StatusOK || got.UnmarshalJSON(body) != nil || got.PartialSuccess().RejectedSpans() != 3 {
		t.Errorf("HTTP JSON: %d %q", code, body)
	}

	if n := sink.SpanCount(); n != 6 {
		t.Errorf("stored %d spans, want the 2 valid ones of each of 3 requests", n)
	}
	for _, td := range sink.AllTraces() {
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, s := range ss.Spans().All() {
					if !strings.HasPrefix(s.Name(), "ok-") {
						t.Errorf("stored %s", s.Name())
					}
				}
			}
		}
	}

	// Nothing valid at all: refused whole.
	_, err = ptraceotlp.NewGRPCClient(conn).Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(mixedIDs(0)))
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("gRPC, all invalid: %v, want InvalidArgument", err)
	}
	pb, _ = ptraceotlp.NewExportRequestFromTraces(mixedIDs(0)).MarshalProto()
	if code, body := post(pb, "application/x-protobuf"); code != http.StatusBadRequest {
		t.Errorf("HTTP, all invalid: %d %q, want 400", code, body)
	}
	if n := sink.SpanCount(); n != 6 {
		t.Errorf("stored %d spans after refused requests", n)
	}
}
