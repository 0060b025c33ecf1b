package otlpguard

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sightlinehq/sightline/internal/otlpguard/otlpguardtest"
)

// While admission refuses, the wrapped receiver answers every traces
// request with the refusal's retryable status, over gRPC (Unavailable with
// its RetryInfo) and HTTP (503, Retry-After, the status as the body),
// before reading it: a request that would be refused as malformed gets the
// retryable answer, not its 400, and nothing is delivered. Other signals
// and, once admission takes requests again, traces go through.
func TestAdmissionRefusesBeforeReading(t *testing.T) {
	var refusing atomic.Bool
	var asked [4]atomic.Int64
	admit := func(sig Signal) error {
		asked[sig].Add(1)
		if sig == Traces && refusing.Load() {
			st, _ := status.New(codes.Unavailable, "store memory budget reached").
				WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(3 * time.Second)})
			return st.Err()
		}
		return nil
	}
	grpcAddr, httpAddr, sink := startGuardedReceiver(t, 0, admit)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)

	td := ptrace.NewTraces()
	sp := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetName("admitted")
	sp.SetTraceID([16]byte{7})
	sp.SetSpanID([8]byte{7})
	good, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	deep := otlpguardtest.DeepTracesProto(1000, otlpguardtest.KVList)

	post := func(body []byte) (*http.Response, []byte) {
		resp, err := http.Post("http://"+httpAddr+"/v1/traces", "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	refusing.Store(true)
	for name, body := range map[string][]byte{"good": good, "too deep": deep} {
		var reply []byte
		err := conn.Invoke(context.Background(), "/opentelemetry.proto.collector.trace.v1.TraceService/Export", body, &reply, grpc.ForceCodecV2(otlpguardtest.RawCodec{}))
		st, _ := status.FromError(err)
		if st.Code() != codes.Unavailable || RetryDelay(err) != 3*time.Second {
			t.Errorf("gRPC %s: %v (retry delay %v), want Unavailable with a 3s RetryInfo", name, err, RetryDelay(err))
		}
		resp, b := post(body)
		var got spb.Status
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "3" ||
			proto.Unmarshal(b, &got) != nil || got.Code != int32(codes.Unavailable) || len(got.Details) != 1 {
			t.Errorf("HTTP %s: %d, Retry-After %q, body %q; want 503, 3 and the status with its RetryInfo", name, resp.StatusCode, resp.Header.Get("Retry-After"), b)
		}
	}
	if n := sink.SpanCount(); n != 0 {
		t.Fatalf("%d spans delivered while refusing", n)
	}
	if asked[Traces].Load() != 4 {
		t.Errorf("admission asked %d times for 4 traces requests", asked[Traces].Load())
	}

	refusing.Store(false)
	if _, err := client.Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(td)); err != nil {
		t.Errorf("gRPC once admitted: %v", err)
	}
	if resp, b := post(good); resp.StatusCode != http.StatusOK {
		t.Errorf("HTTP once admitted: %d %q", resp.StatusCode, b)
	}
	if n := sink.SpanCount(); n != 2 {
		t.Errorf("delivered %d spans once admitted, want 2", n)
	}
}
