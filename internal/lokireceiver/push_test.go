package lokireceiver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sightlinehq/sightline/internal/otlpguard"
)

type entry struct {
	ts   time.Time
	line string
	meta [][2]string
}

// pushRequest encodes a logproto.PushRequest the way Promtail does.
func pushRequest(streams map[string][]entry) []byte {
	var req []byte
	for labels, entries := range streams {
		var s []byte
		s = protowire.AppendTag(s, 1, protowire.BytesType)
		s = protowire.AppendString(s, labels)
		for _, e := range entries {
			var ts []byte
			ts = protowire.AppendTag(ts, 1, protowire.VarintType)
			ts = protowire.AppendVarint(ts, uint64(e.ts.Unix()))
			ts = protowire.AppendTag(ts, 2, protowire.VarintType)
			ts = protowire.AppendVarint(ts, uint64(e.ts.Nanosecond()))
			var en []byte
			en = protowire.AppendTag(en, 1, protowire.BytesType)
			en = protowire.AppendBytes(en, ts)
			en = protowire.AppendTag(en, 2, protowire.BytesType)
			en = protowire.AppendString(en, e.line)
			for _, kv := range e.meta {
				var p []byte
				p = protowire.AppendTag(p, 1, protowire.BytesType)
				p = protowire.AppendString(p, kv[0])
				p = protowire.AppendTag(p, 2, protowire.BytesType)
				p = protowire.AppendString(p, kv[1])
				en = protowire.AppendTag(en, 3, protowire.BytesType)
				en = protowire.AppendBytes(en, p)
			}
			s = protowire.AppendTag(s, 2, protowire.BytesType)
			s = protowire.AppendBytes(s, en)
		}
		req = protowire.AppendTag(req, 1, protowire.BytesType)
		req = protowire.AppendBytes(req, s)
	}
	return snappy.Encode(nil, req)
}

func TestDecodeProtobuf(t *testing.T) {
	ts := time.Unix(1_700_000_000, 123)
	body := pushRequest(map[string][]entry{
		`{service_name="cart", env="prod"}`: {
			{ts, "GET /cart 200", [][2]string{{"trace_id", "0102030405060708090a0b0c0d0e0f10"}, {"span_id", "0102030405060708"}, {"user", "u1"}}},
			{ts.Add(time.Second), "GET /cart 500", nil},
		},
	})
	ld, err := DecodeProtobuf(body, true, time.Unix(1_800_000_000, 0), DefaultLimits)
	require.NoError(t, err)
	require.Equal(t, 2, ld.LogRecordCount())
	rl := ld.ResourceLogs().At(0)
	svc, _ := rl.Resource().Attributes().Get("service.name")
	require.Equal(t, "cart", svc.Str())
	env, _ := rl.Resource().Attributes().Get("env")
	require.Equal(t, "prod", env.Str())
	r := rl.ScopeLogs().At(0).LogRecords().At(0)
	require.Equal(t, "GET /cart 200", r.Body().Str())
	require.Equal(t, ts.UnixNano(), r.Timestamp().AsTime().UnixNano())
	require.Equal(t, "0102030405060708090a0b0c0d0e0f10", r.TraceID().String())
	require.Equal(t, "0102030405060708", r.SpanID().String())
	u, _ := r.Attributes().Get("user")
	require.Equal(t, "u1", u.Str())
	require.Equal(t, 1, r.Attributes().Len(), "trace and span IDs are not also attributes")

	// A line that is not UTF-8 is refused, not stored mangled.
	_, err = DecodeProtobuf(pushRequest(map[string][]entry{`{a="b"}`: {{ts, "bad \xff", nil}}}), true, time.Now(), DefaultLimits)
	require.ErrorIs(t, err, ErrMalformed)

	// Without use_incoming_timestamp only the arrival time is set.
	ld, err = DecodeProtobuf(body, false, time.Unix(1_800_000_000, 0), DefaultLimits)
	require.NoError(t, err)
	r = ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0)
	require.Zero(t, r.Timestamp())
	require.Equal(t, int64(1_800_000_000), r.ObservedTimestamp().AsTime().Unix())
}

func TestDecodeJSON(t *testing.T) {
	body := `{"streams":[{"stream":{"app":"api"},"values":[["1700000000000000001","hello",{"trace_id":"0102030405060708090a0b0c0d0e0f10"}],["1700000000000000002","world"]]}]}`
	ld, err := DecodeJSON([]byte(body), true, time.Now(), DefaultLimits)
	require.NoError(t, err)
	require.Equal(t, 2, ld.LogRecordCount())
	svc, _ := ld.ResourceLogs().At(0).Resource().Attributes().Get("service.name")
	require.Equal(t, "unknown_service", svc.Str())
	r := ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0)
	require.Equal(t, int64(1700000000000000001), int64(r.Timestamp()))
	require.Equal(t, "0102030405060708090a0b0c0d0e0f10", r.TraceID().String())

	for _, bad := range []string{
		`{"streams":[{"stream":{},"values":[["x","line"]]}]}`,
		`{"streams":[{"stream":{},"values":[["1"]]}]}`,
		`{"streams":[{"stream":{},"values":[["1",5]]}]}`,
		`{"streams":[{"stream":{},"values":[["1","a",{"k":1}]]}]}`,
		`not json`,
	} {
		_, err := DecodeJSON([]byte(bad), true, time.Now(), DefaultLimits)
		require.ErrorIs(t, err, ErrMalformed, bad)
	}
}

func TestParseLabels(t *testing.T) {
	ls, err := ParseLabels(`{a="b", c="with \"quote\", and comma"}`)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"a": "b", "c": `with "quote", and comma`}, ls)
	for _, bad := range []string{`a="b"`, `{a}`, `{a=b}`, `{a="b}`} {
		_, err := ParseLabels(bad)
		require.Error(t, err, bad)
	}
}

// TestReceiver pushes over HTTP: a good push is acknowledged with 204 and
// delivered; a malformed one gets 400 and delivers nothing; a retryable
// pipeline error is a 503 and a permanent one a 400. While admission
// refuses, every push, malformed or not, is answered 503 with the refusal's
// Retry-After before its body is read, and nothing is delivered.
func TestReceiver(t *testing.T) {
	cfg, addr := testConfig(t)
	cfg.UseIncomingTimestamp = true

	var refusing atomic.Bool
	admit := func(sig otlpguard.Signal) error {
		if sig != otlpguard.Logs {
			t.Errorf("asked to admit signal %v, want logs", sig)
		}
		if refusing.Load() {
			st, _ := status.New(codes.Unavailable, "store memory budget reached").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(2 * time.Second)})
			return st.Err()
		}
		return nil
	}
	var retryAfter string
	run := func(next *consumertest.LogsSink) func(ct string, body []byte) int {
		rcv, err := NewFactory().CreateLogs(context.Background(), receivertest.NewNopSettings(Type), cfg, next)
		require.NoError(t, err)
		require.NoError(t, rcv.Start(context.Background(), admitterHost{Host: componenttest.NewNopHost(), admit: admit}))
		t.Cleanup(func() { require.NoError(t, rcv.Shutdown(context.Background())) })
		return func(ct string, body []byte) int {
			resp, err := http.Post(fmt.Sprintf("http://%s/loki/api/v1/push", addr), ct, bytes.NewReader(body))
			require.NoError(t, err)
			resp.Body.Close()
			retryAfter = resp.Header.Get("Retry-After")
			return resp.StatusCode
		}
	}

	sink := &consumertest.LogsSink{}
	post := run(sink)
	good := pushRequest(map[string][]entry{`{service_name="x"}`: {{time.Unix(1, 0), "a", nil}}})
	refusing.Store(true)
	for _, body := range [][]byte{good, []byte("not snappy")} {
		require.Equal(t, http.StatusServiceUnavailable, post("application/x-protobuf", body))
		require.Equal(t, "2", retryAfter)
	}
	require.Equal(t, 0, sink.LogRecordCount())
	refusing.Store(false)
	require.Equal(t, http.StatusNoContent, post("application/x-protobuf", good))
	require.Equal(t, http.StatusNoContent, post("application/json", []byte(`{"streams":[{"stream":{"service_name":"x"},"values":[["2","b"]]}]}`)))
	require.Equal(t, http.StatusBadRequest, post("application/x-protobuf", []byte("not snappy")))
	require.Equal(t, http.StatusBadRequest, post("application/json", []byte(`{`)))
	require.Equal(t, 2, sink.LogRecordCount())
	var lines []string
	for _, ld := range sink.AllLogs() {
		lines = append(lines, body(ld))
	}
	require.Equal(t, []string{"a", "b"}, lines)
}

func TestReceiverErrors(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("disk full"), http.StatusServiceUnavailable},
		{consumererror.NewPermanent(fmt.Errorf("bad data")), http.StatusBadRequest},
	} {
		cfg, addr := testConfig(t)
		rcv, err := NewFactory().CreateLogs(context.Background(), receivertest.NewNopSettings(Type), cfg, consumertest.NewErr(c.err))
		require.NoError(t, err)
		require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
		resp, err := http.Post(fmt.Sprintf("http://%s/loki/api/v1/push", addr), "application/json", bytes.NewReader([]byte(`{"streams":[{"stream":{},"values":[["2","b"]]}]}`)))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, c.code, resp.StatusCode, c.err.Error())
		require.NoError(t, rcv.Shutdown(context.Background()))
	}
}

// A push's body is bounded before it is decoded: by the length it
// declares, refused unread past what a push may take; by the server's
// max_request_body_size as it is read, 413 as well. A body of no declared
// length (chunked) is taken within both.
func TestReceiverBoundsBodies(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(64 << 20)) // one push: 32 MiB
	cfg, addr := testConfig(t)
	cfg.Protocols.HTTP.MaxRequestBodySize = 1 << 10
	sink := new(consumertest.LogsSink)
	rcv, err := NewFactory().CreateLogs(context.Background(), receivertest.NewNopSettings(Type), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
	defer rcv.Shutdown(context.Background())
	url := fmt.Sprintf("http://%s/loki/api/v1/push", addr)
	push := func(body io.Reader) int {
		resp, err := http.Post(url, "application/json", body)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	line := `{"streams":[{"stream":{},"values":[["2","` + strings.Repeat("x", 2<<10) + `"]]}]}`
	require.Equal(t, http.StatusRequestEntityTooLarge, push(strings.NewReader(line)))
	require.Equal(t, http.StatusRequestEntityTooLarge, push(io.MultiReader(strings.NewReader(line))))
	require.Equal(t, http.StatusNoContent, push(io.MultiReader(strings.NewReader(`{"streams":[{"stream":{},"values":[["2","b"]]}]}`))))
	require.Equal(t, 1, sink.LogRecordCount())

	// 100 MB declared, 10 bytes sent: answered without waiting for the rest.
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(time.Minute))) // a receiver that waits for the body fails, not hangs
	_, err = fmt.Fprintf(conn, "POST /loki/api/v1/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{\"streams\"")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	require.Equal(t, 1, sink.LogRecordCount())
}

// testConfig is the default config, listening on a free local port, addr.
func testConfig(t *testing.T) (cfg *Config, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr = ln.Addr().String()
	ln.Close()
	cfg = createDefaultConfig().(*Config)
	cfg.Protocols.HTTP.NetAddr.Endpoint = addr
	return cfg, addr
}

func body(ld plog.Logs) string {
	return ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0).Body().Str()
}

// A stream's labels are bounded as in Loki: 15 names pass, 16 are refused,
// and 100k are refused without first being turned into attributes.
func TestLabelNamesPerStreamAreBounded(t *testing.T) {
	push := func(n int) error {
		labels := map[string]string{}
		for i := range n {
			labels[fmt.Sprintf("l%d", i)] = "v"
		}
		body, err := json.Marshal(map[string]any{"streams": []any{map[string]any{"stream": labels, "values": [][]string{{"1700000000000000000", "line"}}}}})
		require.NoError(t, err)
		_, err = DecodeJSON(body, true, time.Now(), DefaultLimits)
		return err
	}
	require.NoError(t, push(DefaultLimits.MaxLabelNamesPerSeries))
	require.ErrorIs(t, push(DefaultLimits.MaxLabelNamesPerSeries+1), ErrMalformed)
	require.ErrorIs(t, push(100_000), ErrMalformed)

	meta := func(n int, lim Limits) error {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("m%d", i)] = "v"
		}
		body, err := json.Marshal(map[string]any{"streams": []any{map[string]any{"stream": map[string]string{"a": "b"}, "values": [][]any{{"1700000000000000000", "line", m}}}}})
		require.NoError(t, err)
		_, err = DecodeJSON(body, true, time.Now(), lim)
		return err
	}
	require.NoError(t, meta(128, DefaultLimits))
	require.ErrorIs(t, meta(129, DefaultLimits), ErrMalformed)
	require.ErrorContains(t, meta(100_000, DefaultLimits), "max_structured_metadata_entries_count")
	require.NoError(t, meta(200, Limits{MaxLabelNamesPerSeries: 15, MaxStructuredMetadataEntries: 200}), "the limit is configurable")
}

// admitterHost is a host whose one extension is an otlpguard.Admitter, as
// the storage extension is.
type admitterHost struct {
	component.Host
	admit otlpguard.Admission
}

type admitterExt struct {
	component.StartFunc
	component.ShutdownFunc
	admit otlpguard.Admission
}

func (e admitterExt) Admit(sig otlpguard.Signal) error { return e.admit(sig) }

func (h admitterHost) GetExtensions() map[component.ID]component.Component {
	return map[component.ID]component.Component{component.MustNewID("sightline_storage"): admitterExt{admit: h.admit}}
}

// allocated returns the bytes fn allocated.
func allocated(fn func()) uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	before := m.TotalAlloc
	fn()
	runtime.ReadMemStats(&m)
	return m.TotalAlloc - before
}

// A push of empty entries, two bytes of protobuf each, takes about 160
// bytes of heap each decoded: 64 MiB of them decompressed would be 5 GB;
// streams of one label, 11 bytes each, take 350. The builder counts what it takes and refuses
// the push, ErrTooLarge, once over Limits.MaxDecodedBytes, having
// allocated about that much; an entry with a million structured metadata
// entries is refused before a list of them grows.
func TestPushDecodedSizeIsBounded(t *testing.T) {
	lim := DefaultLimits
	lim.MaxDecodedBytes = 4 << 20
	stream := func(entries, meta int) []byte {
		var s []byte
		s = protowire.AppendTag(s, 1, protowire.BytesType)
		s = protowire.AppendString(s, `{service_name="x"}`)
		var en []byte
		for range meta {
			en = append(en, 3<<3|2, 0) // structured_metadata: {}
		}
		for range entries {
			s = protowire.AppendTag(s, 2, protowire.BytesType)
			s = protowire.AppendBytes(s, en)
		}
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), s)
	}
	emptyEntries := stream(2<<20, 0) // 4 MiB: 2M entries
	var err error
	n := allocated(func() { _, err = DecodeProtobuf(snappy.Encode(nil, emptyEntries), true, time.Now(), lim) })
	require.ErrorIs(t, err, ErrTooLarge)
	require.Less(t, n, uint64(int64(len(emptyEntries))*3+3*lim.MaxDecodedBytes), "allocated %d bytes", n)

	// Streams of one label and no entries: 11 bytes, 350 of heap.
	oneStream := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), `{a="b"}`)
	tinyStreams := bytes.Repeat(protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), oneStream), 400_000)
	n = allocated(func() { _, err = DecodeProtobuf(snappy.Encode(nil, tinyStreams), true, time.Now(), lim) })
	require.ErrorIs(t, err, ErrTooLarge)
	require.Less(t, n, uint64(int64(len(tinyStreams))*3+3*lim.MaxDecodedBytes), "allocated %d bytes", n)

	manyMeta := stream(1, 1<<20)
	n = allocated(func() { _, err = DecodeProtobuf(snappy.Encode(nil, manyMeta), true, time.Now(), lim) })
	require.ErrorContains(t, err, "max_structured_metadata_entries_count")
	require.Less(t, n, uint64(len(manyMeta)*3+1<<20), "allocated %d bytes", n)

	json := []byte(`{"streams":[{"stream":{"a":"b"},"values":[` + strings.Repeat(`["1",""],`, 1<<20) + `["1",""]]}]}`)
	_, err = DecodeJSON(json, true, time.Now(), lim)
	require.ErrorIs(t, err, ErrTooLarge)

	// Under the bound, the same pushes are taken.
	ld, err := DecodeProtobuf(snappy.Encode(nil, stream(1000, 0)), true, time.Now(), lim)
	require.NoError(t, err)
	require.Equal(t, 1000, ld.LogRecordCount())
	ld, err = DecodeJSON([]byte(`{"streams":[{"stream":{"a":"b"},"values":[`+strings.Repeat(`["1",""],`, 1000)+`["1",""]]}]}`), true, time.Now(), lim)
	require.NoError(t, err)
	require.Equal(t, 1001, ld.LogRecordCount())
}

// The receiver bounds a push decoded as otlpguard bounds an OTLP request,
// by half the Go soft memory limit, and answers 413 past it, which
// shippers do not retry; nothing of the push reaches the pipeline.
func TestReceiverRefusesPushTooLargeDecoded(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(64 << 20))
	cfg, addr := testConfig(t)
	sink := new(consumertest.LogsSink)
	rcv, err := NewFactory().CreateLogs(context.Background(), receivertest.NewNopSettings(Type), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
	defer rcv.Shutdown(context.Background())
	// 1M empty entries: 2 MiB of protobuf, 160 MB decoded.
	var s []byte
	s = protowire.AppendTag(s, 1, protowire.BytesType)
	s = protowire.AppendString(s, `{service_name="x"}`)
	s = append(s, bytes.Repeat([]byte{2<<3 | 2, 0}, 1<<20)...)
	req := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), s)
	resp, err := http.Post(fmt.Sprintf("http://%s/loki/api/v1/push", addr), "application/x-protobuf", bytes.NewReader(snappy.Encode(nil, req)))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	require.Zero(t, sink.LogRecordCount())
}

// heldReceiver starts a receiver under a 64 MiB Go soft limit (in flight:
// 1/32 of it, 2 MiB; one push: 32 MiB) whose pipeline keeps the first push
// it is given until release is closed, and says so on held. post sends a
// push; records counts the records the pipeline took.
func heldReceiver(t *testing.T) (post func([]byte) *http.Response, held, release chan struct{}, records *atomic.Int64) {
	old := debug.SetMemoryLimit(64 << 20)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	cfg, addr := testConfig(t)
	held, release, records = make(chan struct{}), make(chan struct{}), new(atomic.Int64)
	var calls atomic.Int64
	next, err := consumer.NewLogs(func(_ context.Context, ld plog.Logs) error {
		if calls.Add(1) == 1 {
			held <- struct{}{}
			<-release
		}
		records.Add(int64(ld.LogRecordCount()))
		return nil
	})
	require.NoError(t, err)
	rcv, err := NewFactory().CreateLogs(context.Background(), receivertest.NewNopSettings(Type), cfg, next)
	require.NoError(t, err)
	require.NoError(t, rcv.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { rcv.Shutdown(context.Background()) })
	post = func(b []byte) *http.Response {
		resp, err := http.Post(fmt.Sprintf("http://%s/loki/api/v1/push", addr), "application/x-protobuf", bytes.NewReader(b))
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	return post, held, release, records
}

// linesPush is a push of n entries of 100-byte lines: about 115 bytes
// each decompressed, 260 decoded.
func linesPush(n int) []byte {
	es := make([]entry, n)
	for i := range es {
		es[i] = entry{ts: time.Now(), line: strings.Repeat("x", 100)}
	}
	return pushRequest(map[string][]entry{`{service_name="x"}`: es})
}

// The pushes held decoded at once are bounded as OTLP requests are: while
// one waits for the pipeline, a second that would pass the bound is
// answered 503 with Retry-After, and taken once the first is answered.
func TestReceiverBoundsPushesInFlight(t *testing.T) {
	post, held, release, records := heldReceiver(t)
	done := make(chan int)
	go func() { done <- post(linesPush(20_000)).StatusCode }() // about 5 MB decoded: alone, it is taken
	<-held
	if resp := post(linesPush(1)); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("past the bound in flight: %d, Retry-After %q; want 503, 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	close(release)
	require.Equal(t, http.StatusNoContent, <-done)
	require.Equal(t, http.StatusNoContent, post(linesPush(1)).StatusCode)
	require.Equal(t, int64(20_001), records.Load())
}

// Pushes are held in flight as they are read and decoded, not only once
// decoded: while one push waits for the pipeline, a second that would take
// the bound past its limit is refused, 503 with Retry-After, before it
// takes that memory. Alone, the same push grows past the bound in flight
// and is taken.
func TestReceiverBoundsPushesBeingDecoded(t *testing.T) {
	post, held, release, records := heldReceiver(t)
	done := make(chan int)
	go func() { done <- post(linesPush(4_000)).StatusCode }() // about 1 MB decoded, held
	<-held
	// About 4.4 MB decompressed and 10 MB decoded: before it was held as it
	// decoded, it was decoded whole and refused after.
	large := linesPush(40_000)
	var resp *http.Response
	n := allocated(func() { resp = post(large) })
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a push past the bound in flight: %d, Retry-After %q; want 503 and a delay", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if n >= uint64(len(large))+2<<20 { // not require: the first push must be let go
		t.Errorf("the refused push allocated %d bytes", n)
	}
	close(release)
	require.Equal(t, http.StatusNoContent, <-done)
	// Alone, it is taken, though it takes the bound in flight five times.
	require.Equal(t, http.StatusNoContent, post(large).StatusCode)
	require.Equal(t, int64(44_000), records.Load())
}
