package otlpguard

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/consumer"
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

// The decoded bytes of the requests in flight are bounded: while one
// request is held by the pipeline, a second that would pass the bound is
// refused retryably, undecoded, over gRPC and HTTP; a request alone is
// taken whatever its size below a request's own bound, and refused for
// good above it; once the first is answered, the bound is free again, and
// refused or malformed requests give back what they took.
func TestInflightBytesAreBounded(t *testing.T) {
	held := make(chan struct{})
	release := make(chan struct{})
	var consumed atomic.Int64
	next, _ := consumer.NewTraces(func(_ context.Context, td ptrace.Traces) error {
		if td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Name() == "hold" {
			held <- struct{}{}
			<-release
		}
		consumed.Add(int64(td.SpanCount()))
		return nil
	})
	request := func(name string, spans int) []byte {
		td := ptrace.NewTraces()
		ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
		for i := range spans {
			sp := ss.AppendEmpty()
			sp.SetName(name)
			sp.SetTraceID([16]byte{8, byte(i)})
			sp.SetSpanID([8]byte{8, byte(i)})
		}
		b, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
		return b
	}
	decoded := func(b []byte) int64 {
		rep, err := ScanProto(Traces, b, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		return rep.Decoded
	}
	hold := request("hold", 100)
	small := request("small", 100)
	big := request("big", 400)
	// 5,000 empty spans: 10 KB that pdata decodes to 1.2 MB, smaller than
	// the big request encoded and ten times its size decoded.
	empty := nested([]int{1, 2}, []byte{2<<3 | 2, 0}, 5_000)
	// The held request fits alone; the two together do not. The empty
	// spans are over a request's bound, the big request is not.
	lim := Limits{MaxInflightBytes: decoded(hold) + decoded(small)/2, MaxRequestBytes: decoded(big) + 1}
	if decoded(empty) <= lim.MaxRequestBytes || len(empty) >= len(big) {
		t.Fatalf("empty spans: %d bytes, %d decoded; the bound is %d", len(empty), decoded(empty), lim.MaxRequestBytes)
	}
	grpcAddr, httpAddr := startGuardedReceiverInto(t, 0, lim, nil, next)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	export := func(body []byte) error {
		var reply []byte
		return conn.Invoke(context.Background(), "/opentelemetry.proto.collector.trace.v1.TraceService/Export", body, &reply, grpc.ForceCodecV2(otlpguardtest.RawCodec{}))
	}
	post := func(body []byte) *http.Response {
		resp, err := http.Post("http://"+httpAddr+"/v1/traces", "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	// A request over the bound on its own is taken.
	if decoded(big) <= lim.MaxInflightBytes {
		t.Fatalf("big request is %d bytes decoded, not over the %d bound", decoded(big), lim.MaxInflightBytes)
	}
	if err := export(big); err != nil {
		t.Fatalf("a request alone: %v", err)
	}
	// A smaller request that would take more than a request may decoded
	// is refused for good: ResourceExhausted without RetryInfo, and 413.
	if err := export(empty); status.Code(err) != codes.ResourceExhausted || RetryDelay(err) != 0 || !strings.Contains(err.Error(), ErrTooLarge.Error()) {
		t.Errorf("gRPC, too large decoded: %v, want ResourceExhausted without RetryInfo", err)
	}
	if resp := post(empty); resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("Retry-After") != "" {
		t.Errorf("HTTP, too large decoded: %d, Retry-After %q; want 413 and none", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	done := make(chan error, 1)
	go func() { done <- export(hold) }()
	<-held
	err = export(small)
	if status.Code(err) != codes.Unavailable || RetryDelay(err) != inflightRetryDelay {
		t.Errorf("gRPC past the bound: %v, want Unavailable with RetryInfo", err)
	}
	if resp := post(small); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("HTTP past the bound: %d, Retry-After %q; want 503, 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("held request: %v", err)
	}
	// Undecodable and too-deep requests give their bytes back as well.
	if err := export([]byte{0xff, 0xff}); status.Code(err) == codes.OK {
		t.Errorf("garbage accepted")
	}
	if err := export(otlpguardtest.DeepTracesProto(1000, otlpguardtest.KVList)); status.Code(err) != codes.InvalidArgument {
		t.Errorf("too deep: %v", err)
	}
	for range 3 {
		if err := export(small); err != nil {
			t.Fatalf("gRPC once the bound is free: %v", err)
		}
		if resp := post(small); resp.StatusCode != http.StatusOK {
			t.Fatalf("HTTP once the bound is free: %d", resp.StatusCode)
		}
	}
	if got := consumed.Load(); got != 400+100+6*100 {
		t.Errorf("consumed %d spans, want 1100", got)
	}
}

// An OTLP/HTTP request's body is held in flight as it is read, before it
// can be scanned: while other requests hold most of the bound, a body of
// no declared length (chunked, or decompressed on the way) is refused
// retryably once it would pass the bound, a megabyte into 4 MiB; a
// declared length past a request's bound is refused unread, for good.
// Alone, the same body is taken, and every byte held is given back.
func TestHTTPHoldsBodiesBeingRead(t *testing.T) {
	fl := NewInflight(Limits{MaxInflightBytes: 1 << 20, MaxRequestBytes: 64 << 20})
	var served atomic.Int64
	h := httpHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		io.Copy(io.Discard, r.Body)
	}), map[string]Signal{"/v1/logs": Logs}, Limits{}, fl)
	// 4 MiB of one log record's body: a request that scans cleanly.
	record := field(5, field(1, []byte(strings.Repeat("x", 4<<20)))) // body: a string
	req := nested([]int{1, 2, 2}, record, 1)
	post := func(body io.Reader, length int64) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/v1/logs", body)
		r.Header.Set("Content-Type", "application/x-protobuf")
		r.ContentLength = length
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}

	if err := fl.Acquire(512 << 10); err != nil { // another request's
		t.Fatal(err)
	}
	body := &otlpguardtest.CountingReader{R: bytes.NewReader(req)}
	if w := post(body, -1); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("a body past the bound in flight: %d, Retry-After %q; want 503 and a delay", w.Code, w.Header().Get("Retry-After"))
	}
	if body.N >= 1<<20 {
		t.Errorf("read %d bytes of a body refused at a 1 MiB bound", body.N)
	}
	body = &otlpguardtest.CountingReader{R: bytes.NewReader(req)}
	if w := post(body, 100<<20); w.Code != http.StatusRequestEntityTooLarge || body.N != 0 {
		t.Errorf("100 MiB declared: %d after reading %d bytes; want 413 unread", w.Code, body.N)
	}
	fl.Release(512 << 10)

	if w := post(bytes.NewReader(req), -1); w.Code != http.StatusOK || served.Load() != 1 {
		t.Errorf("alone: %d, served %d; want 200, 1", w.Code, served.Load())
	}
	if w := post(bytes.NewReader(req), int64(len(req))); w.Code != http.StatusOK || served.Load() != 2 {
		t.Errorf("alone, of a declared length: %d, served %d; want 200, 2", w.Code, served.Load())
	}
	if n := fl.bytes.Load(); n != 0 {
		t.Errorf("%d bytes still held", n)
	}
}
