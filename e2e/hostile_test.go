package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sightlinehq/sightline/internal/otlpguard/otlpguardtest"
)

// hostileFixture is a running all-in-one store with one acknowledged trace,
// which every hostile request must leave readable.
type hostileFixture struct {
	in        *instance
	queryPort int
	lokiPort  int
	// token is sent to the query API when it requires one.
	token   string
	conn    *grpc.ClientConn
	traceID string
}

func newHostileFixture(t *testing.T, overlays ...string) *hostileFixture {
	t.Helper()
	qp, lp := freePort(t), freePort(t)
	f := &hostileFixture{queryPort: qp, lokiPort: lp}
	f.in = start(t, append([]string{"testdata/hostile.yaml"}, overlays...), "QUERY_PORT="+strconv.Itoa(qp), "LOKI_PORT="+strconv.Itoa(lp))
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", f.in.GRPC), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f.conn = conn
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "before-the-attack")
	sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetName("acknowledged")
	sp.SetTraceID([16]byte{0xac, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	sp.SetSpanID([8]byte{0xac, 1, 2, 3, 4, 5, 6, 7})
	now := time.Now()
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-time.Second)))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
	if _, err := ptraceotlp.NewGRPCClient(conn).Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(td)); err != nil {
		t.Fatal(err)
	}
	f.traceID = sp.TraceID().String()
	return f
}

// post sends body to path on a local port, with header's name/value
// pairs, and returns the status and body.
func (f *hostileFixture) post(t *testing.T, port int, path string, body []byte, header ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), bytes.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v (the process: %s)", path, err, f.in.out.String()[max(0, len(f.in.out.String())-2000):])
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// intact checks that the process is alive and healthy and still serves
// what it acknowledged before.
func (f *hostileFixture) intact(t *testing.T) {
	t.Helper()
	select {
	case <-f.in.done:
		t.Fatalf("sightline died (%v):\n%s", f.in.waitErr, f.in.out.String())
	default:
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", f.in.Health))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("health: %v %v", resp, err)
	}
	resp.Body.Close()
	code, body := 0, ""
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/api/v2/traces/%s", f.queryPort, f.traceID), nil)
	if f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	resp, err = http.DefaultClient.Do(req)
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, body = resp.StatusCode, string(b)
	}
	if code != http.StatusOK || !bytes.Contains([]byte(body), []byte("acknowledged")) {
		t.Fatalf("acknowledged trace: %d %.300s %v", code, body, err)
	}
}

// TestDeeplyNestedOTLP sends an attribute nested a million levels deep,
// which overflows pdata's decoder stack (a fatal error) unguarded, over
// every OTLP path the binary serves.
func TestDeeplyNestedOTLP(t *testing.T) {
	f := newHostileFixture(t)
	deep := otlpguardtest.DeepTracesProto(1_000_000, otlpguardtest.KVList)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(deep)
	zw.Close()

	for _, c := range []struct {
		name   string
		port   int
		path   string
		body   []byte
		header []string
	}{
		{"otlp/http protobuf", f.in.HTTP, "/v1/traces", deep, []string{"Content-Type", "application/x-protobuf"}},
		{"otlp/http gzip", f.in.HTTP, "/v1/traces", gz.Bytes(), []string{"Content-Type", "application/x-protobuf", "Content-Encoding", "gzip"}},
		{"otlp/http json", f.in.HTTP, "/v1/traces", otlpguardtest.DeepTracesJSON(500_000), []string{"Content-Type", "application/json"}},
		{"otlp/http logs", f.in.HTTP, "/v1/logs", otlpguardtest.DeepLogsProto(1_000_000, otlpguardtest.KVList), []string{"Content-Type", "application/x-protobuf"}},
		{"prometheus otlp metrics", f.queryPort, "/api/v1/otlp/v1/metrics", deep, []string{"Content-Type", "application/x-protobuf"}},
	} {
		code, body := f.post(t, c.port, c.path, c.body, c.header...)
		if code != http.StatusBadRequest {
			t.Errorf("%s: %d %.300s, want 400", c.name, code, body)
		}
		f.intact(t)
	}

	var reply []byte
	err := f.conn.Invoke(context.Background(), "/opentelemetry.proto.collector.trace.v1.TraceService/Export", deep, &reply, grpc.ForceCodecV2(otlpguardtest.RawCodec{}))
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("otlp/grpc under a 16 MiB limit (%d bytes): got %v, want InvalidArgument", len(deep), err)
	}
	f.intact(t)
}

// TestFullDiskKeepsAcknowledgedMetrics fills the disk under metrics
// ingest, frees it, writes more, restarts cleanly and finds every
// acknowledged point by PromQL. Prometheus's WAL repair used to cut at the
// record torn by the full disk, taking every point acknowledged after it.
func TestFullDiskKeepsAcknowledgedMetrics(t *testing.T) {
	mnt := t.TempDir()
	if out, err := runCmd("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt); err != nil {
		t.Fatalf("mounting a tmpfs needs root (CI runs as root): %v: %s", err, out)
	}
	t.Cleanup(func() { runCmd("umount", "-l", mnt) })
	qp := freePort(t)
	lokiPort := "LOKI_PORT=" + strconv.Itoa(freePort(t))
	in := start(t, []string{"testdata/hostile.yaml"}, "QUERY_PORT="+strconv.Itoa(qp), "SIGHTLINE_DATA="+mnt, lokiPort)
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", in.GRPC), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	mc := pmetricotlp.NewGRPCClient(conn)

	// Each batch is one WAL record of about 50 KiB, larger than a WAL
	// page, so the write the full disk fails tears a record.
	const perBatch = 4000
	base := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	send := func(i int) error {
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", "full-disk")
		m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName("points")
		g := m.SetEmptyGauge().DataPoints()
		for k := range perBatch {
			dp := g.AppendEmpty()
			dp.SetTimestamp(pcommon.NewTimestampFromTime(base.Add(time.Duration(i) * time.Millisecond)))
			dp.SetDoubleValue(float64(i*perBatch + k))
			dp.Attributes().PutInt("series", int64(k))
		}
		_, err := mc.Export(context.Background(), pmetricotlp.NewExportRequestFromMetrics(md))
		return err
	}
	acked := map[int]bool{}
	i := 0
	var refused error
	for ; i < 2000; i++ {
		if refused = send(i); refused != nil {
			break
		}
		acked[i] = true
	}
	if refused == nil {
		t.Fatal("a 4 MiB disk never filled")
	}
	if status.Code(refused) != codes.Unavailable {
		t.Fatalf("full disk: got %v, want a retryable Unavailable", refused)
	}
	healthSays := func(s string) func() bool {
		return func() bool {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/?verbose", in.Health))
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return strings.Contains(string(b), s)
		}
	}
	in.waitFor("health to report the metrics write failure", 20*time.Second, healthSays("metrics writes failing"))

	// The operator frees space; the client's retries get through once the
	// metrics store has repaired its WAL, and more is acknowledged.
	if out, err := runCmd("mount", "-o", "remount,size=64m", mnt); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
	in.waitFor("the refused batch to be accepted on retry", 60*time.Second, func() bool { return send(i) == nil })
	acked[i] = true
	for j := i + 1; j <= i+20; j++ {
		if err := send(j); err != nil {
			t.Fatalf("after the disk was freed: %v", err)
		}
		acked[j] = true
	}
	in.waitFor("health to clear", 30*time.Second, func() bool { return !healthSays("metrics writes failing")() })
	conn.Close()
	in.stop()

	in = start(t, []string{"testdata/hostile.yaml"}, "QUERY_PORT="+strconv.Itoa(qp), "SIGHTLINE_DATA="+mnt, lokiPort)
	q := url.Values{"query": {`points{series="7"}[1h]`}, "time": {strconv.FormatInt(time.Now().Unix(), 10)}}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/query?%s", qp, q.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res struct {
		Data struct {
			Result []struct {
				Values [][2]any `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || len(res.Data.Result) != 1 {
		t.Fatalf("PromQL after the restart: %v %+v", err, res)
	}
	got := map[int]bool{}
	for _, v := range res.Data.Result[0].Values {
		f, _ := strconv.ParseFloat(v[1].(string), 64)
		got[int(f)/perBatch] = true
	}
	lost := 0
	for b := range acked {
		if !got[b] {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged batches lost after the restart", lost, len(acked))
	}
	t.Logf("%d batches of %d points acknowledged (%d before the disk filled), all found by PromQL", len(acked), perBatch, i)
}

// TestEmptyMessagesRefusedBeforeDecoding: a request of empty resource
// spans, two bytes each, is 4 MiB on the wire and would be 290 MB of
// pdata's heap decoded, most of the all-in-one's 400 MiB limit in one
// request. The guard estimates that from the encoding and refuses it for
// good, undecoded, over gRPC (ResourceExhausted without RetryInfo) and
// HTTP (413); the process stays within its limit and takes the next
// request.
func TestEmptyMessagesRefusedBeforeDecoding(t *testing.T) {
	qp, lp := freePort(t), freePort(t)
	in := start(t, []string{"testdata/hostile.yaml"}, "QUERY_PORT="+strconv.Itoa(qp), "LOKI_PORT="+strconv.Itoa(lp),
		"SIGHTLINE_MEMORY_LIMIT_MIB=400")
	empty := bytes.Repeat([]byte{1<<3 | 2, 0}, 2<<20) // resource_spans: {}
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/traces", in.HTTP), "application/x-protobuf", bytes.NewReader(empty))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("Retry-After") != "" {
		t.Errorf("HTTP: %d, Retry-After %q: %q; want 413 and no Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", in.GRPC), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var reply []byte
	err = conn.Invoke(context.Background(), "/opentelemetry.proto.collector.trace.v1.TraceService/Export", empty, &reply, grpc.ForceCodecV2(otlpguardtest.RawCodec{}))
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || len(st.Details()) != 0 || !strings.Contains(st.Message(), "too large") {
		t.Errorf("gRPC: %v; want ResourceExhausted without RetryInfo", err)
	}
	// Taken again at once: a normal request.
	td := ptrace.NewTraces()
	sp := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetName("after")
	sp.SetTraceID([16]byte{0xaf, 1})
	sp.SetSpanID([8]byte{0xaf, 1})
	if _, err := ptraceotlp.NewGRPCClient(conn).Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(td)); err != nil {
		t.Fatalf("a normal request after: %v", err)
	}
	if proc, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", in.cmd.Process.Pid)); err == nil {
		for _, line := range strings.Split(string(proc), "\n") {
			if strings.HasPrefix(line, "VmHWM:") {
				t.Logf("peak RSS: %s", strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:")))
			}
		}
	}
}

// TestConcurrentBodiesStayWithinTheLimit: two dozen large requests at
// once, Loki pushes and OTLP/HTTP logs requests of about 14 MiB each
// (under the receivers' 20 MiB body limit, and each far under the half of
// the soft limit one request may take), would take the all-in-one past
// its 400 MiB if each were read and decoded before it was counted. Bodies are held in flight as they are read and pushes as they
// decode, so the requests past the bound are refused retryably, the
// process's peak RSS stays under its limit, and a normal push is taken
// after.
func TestConcurrentBodiesStayWithinTheLimit(t *testing.T) {
	qp, lp := freePort(t), freePort(t)
	in := start(t, []string{"testdata/hostile.yaml"}, "QUERY_PORT="+strconv.Itoa(qp), "LOKI_PORT="+strconv.Itoa(lp),
		"SIGHTLINE_MEMORY_LIMIT_MIB=400")
	line := strings.Repeat("x", 1000)
	var push bytes.Buffer
	push.WriteString(`{"streams":[{"stream":{"service_name":"flood"},"values":[`)
	for i := range 14_000 {
		if i > 0 {
			push.WriteByte(',')
		}
		fmt.Fprintf(&push, `["%d","%s"]`, time.Now().UnixNano(), line)
	}
	push.WriteString(`]}]}`)
	// One log record whose body is a 14 MiB string.
	otlp := field(1, field(2, field(2, field(5, field(1, []byte(strings.Repeat("y", 14<<20)))))))
	post := func(url, ct string, body []byte) (int, error) {
		resp, err := http.Post(url, ct, bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	lokiURL := fmt.Sprintf("http://127.0.0.1:%d/loki/api/v1/push", lp)
	otlpURL := fmt.Sprintf("http://127.0.0.1:%d/v1/logs", in.HTTP)
	type result struct {
		what string
		code int
		err  error
	}
	results := make(chan result)
	const each = 12
	for range each {
		go func() {
			code, err := post(lokiURL, "application/json", push.Bytes())
			results <- result{"loki", code, err}
		}()
		go func() {
			code, err := post(otlpURL, "application/x-protobuf", otlp)
			results <- result{"otlp", code, err}
		}()
	}
	taken := map[string]int{}
	for range 2 * each {
		r := <-results
		switch {
		case r.err != nil:
			t.Errorf("%s: %v", r.what, r.err)
		case r.code == http.StatusNoContent || r.code == http.StatusOK:
			taken[r.what]++
		case r.code != http.StatusServiceUnavailable && r.code != http.StatusTooManyRequests:
			t.Errorf("%s: %d, want taken or refused retryably", r.what, r.code)
		}
	}
	if code, err := post(lokiURL, "application/json", []byte(`{"streams":[{"stream":{"service_name":"after"},"values":[["1","after"]]}]}`)); err != nil || code != http.StatusNoContent {
		t.Errorf("a normal push after: %d %v", code, err)
	}
	proc, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", in.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	kb := -1
	for _, l := range strings.Split(string(proc), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmHWM:" {
			kb, _ = strconv.Atoi(f[1])
		}
	}
	t.Logf("peak RSS %d MiB; taken: %d of %d Loki pushes, %d of %d OTLP requests", kb>>10, taken["loki"], each, taken["otlp"], each)
	if kb < 0 || kb>>10 >= 400 {
		t.Errorf("peak RSS %d MiB (-1: unread), want under the process's 400 MiB limit", kb>>10)
	}
}

// field encodes b as protobuf field f, length-delimited.
func field(f int, b []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, protowire.Number(f), protowire.BytesType), b)
}
