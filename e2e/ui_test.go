package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/workload"
)

// bigTrace is one trace of n spans over five services: a root, and
// below it a tree four levels deep, with a log on every 500th span.
func bigTrace(n int, start time.Time) (ptrace.Traces, plog.Logs, pcommon.TraceID) {
	td := ptrace.NewTraces()
	ld := plog.NewLogs()
	tid := pcommon.TraceID{0xb1, 0x9, 0x10, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x27, 0x10}
	services := []string{"edge", "orders", "inventory", "pricing", "search"}
	spans := make([]ptrace.SpanSlice, len(services))
	records := make([]plog.LogRecordSlice, len(services))
	for i, s := range services {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", s)
		spans[i] = rs.ScopeSpans().AppendEmpty().Spans()
		rl := ld.ResourceLogs().AppendEmpty()
		rl.Resource().Attributes().PutStr("service.name", s)
		records[i] = rl.ScopeLogs().AppendEmpty().LogRecords()
	}
	id := func(i int) pcommon.SpanID {
		return pcommon.SpanID{0x5, byte(i >> 16), byte(i >> 8), byte(i), 1, 2, 3, 4}
	}
	for i := range n {
		svc := i % len(services)
		if i == 0 {
			svc = 0
		}
		sp := spans[svc].AppendEmpty()
		sp.SetTraceID(tid)
		sp.SetSpanID(id(i))
		// Parent: a 10-ary tree, so depth is about log10(n).
		if i > 0 {
			sp.SetParentSpanID(id((i - 1) / 10))
		}
		sp.SetName(fmt.Sprintf("op-%d", i%37))
		sp.SetKind(ptrace.SpanKindInternal)
		depth := 0
		for j := i; j > 0; j = (j - 1) / 10 {
			depth++
		}
		begin := start.Add(time.Duration(depth)*time.Millisecond + time.Duration(i%100)*10*time.Microsecond)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(begin))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(begin.Add(time.Duration(5-min(depth, 4)) * time.Millisecond)))
		sp.Attributes().PutInt("index", int64(i))
		if i%500 == 0 {
			lr := records[svc].AppendEmpty()
			lr.SetTimestamp(pcommon.NewTimestampFromTime(begin))
			lr.SetTraceID(tid)
			lr.SetSpanID(id(i))
			lr.Body().SetStr(fmt.Sprintf("big trace log %d", i))
			lr.SetSeverityNumber(plog.SeverityNumberInfo)
		}
	}
	return td, ld, tid
}

// xssTrace carries HTML and script payloads in a span name, an attribute
// key and value, an exception's stack trace, an event and a log body. Its
// span also links to the trace linked.
func xssTrace(start time.Time, linked pcommon.TraceID) (ptrace.Traces, plog.Logs, pcommon.TraceID) {
	td := ptrace.NewTraces()
	tid := pcommon.TraceID{0xa5, 0x5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "xss-<b>svc</b>")
	ss := rs.ScopeSpans().AppendEmpty()
	// A long scope name with nowhere to break, as instrumentation
	// libraries' import paths are: the span panel must wrap it.
	ss.Scope().SetName("go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/internal/<i>scope</i>/with/a/very/long/path")
	ss.Scope().SetVersion("0.71.0")
	sp := ss.Spans().AppendEmpty()
	sp.SetTraceID(tid)
	sp.SetSpanID(pcommon.SpanID{0xa5, 1, 2, 3, 4, 5, 6, 7})
	sp.SetName("<script>window.__xss=1</script>")
	sp.SetKind(ptrace.SpanKindServer)
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(3 * time.Millisecond)))
	sp.Attributes().PutStr("<img src=x onerror=window.__xss=1>", "<svg onload=window.__xss=1>")
	ex := sp.Events().AppendEmpty()
	ex.SetName("exception")
	ex.SetTimestamp(pcommon.NewTimestampFromTime(start.Add(2 * time.Millisecond)))
	ex.Attributes().PutStr("exception.type", "<b>TypeError</b>")
	ex.Attributes().PutStr("exception.message", "cannot read <i>x</i>")
	ex.Attributes().PutStr("exception.stacktrace", "TypeError: <script>window.__xss=1</script>\n    at render (app.js:12)\n    at main (app.js:3)")
	ev := sp.Events().AppendEmpty()
	ev.SetName("cache <u>miss</u>")
	ev.SetTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Millisecond)))
	ln := sp.Links().AppendEmpty()
	ln.SetTraceID(linked)
	ln.SetSpanID(pcommon.SpanID{0x5, 0, 0, 0, 1, 2, 3, 4}) // the linked big trace's root
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "xss-<b>svc</b>")
	lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.SetTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Millisecond)))
	lr.SetTraceID(tid)
	lr.SetSpanID(sp.SpanID())
	lr.Body().SetStr("<img src=x onerror=window.__xss=1> in a log body")
	return td, ld, tid
}

// TestUI runs the browser tests (e2e/ui/ui.test.mjs) in Debian's
// Chromium against the binary, with 1,000 of the workload generator's
// traces and their logs, a 10,000-span trace and a trace of HTML payloads. With
// SIGHTLINE_SCREENSHOTS=dir it also saves the README's screenshots there.
func TestUI(t *testing.T) {
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node is required: scripts/test.sh uses the machine's Node.js")
	chromium, err := exec.LookPath("chromium")
	require.NoError(t, err, "chromium is required: scripts/test.sh installs Debian's chromium package")
	if _, err := os.Stat("ui/node_modules/playwright-core"); err != nil {
		t.Fatal("playwright-core is not installed: scripts/test.sh runs npm ci in e2e/ui")
	}

	// A real Alertmanager, which the rules notify and whose silences the
	// alerts page shows.
	am := alertmanager(t)
	port := freePort(t)
	in := start(t, []string{"testdata/ui.yaml"}, "QUERY_PORT="+strconv.Itoa(port), "ALERTMANAGER="+am)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", in.GRPC), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	send := func(td ptrace.Traces, ld plog.Logs) {
		_, err := ptraceotlp.NewGRPCClient(conn).Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(td))
		require.NoError(t, err)
		_, err = plogotlp.NewGRPCClient(conn).Export(context.Background(), plogotlp.NewExportRequestFromLogs(ld))
		require.NoError(t, err)
	}

	now := time.Now()
	gen := workload.New(21, now.Add(-4*time.Minute), workload.Options{TraceInterval: 200 * time.Millisecond})
	var spans []storage.Span
	var logs []storage.LogRecord
	// Two waves, with the metrics flushed between them, so that rates
	// (an increase between two samples) are not zero. For the README's
	// screenshots the batches are spread over three minutes instead, so
	// that the RED charts have a history to draw; that spacing is the
	// point of the pause, not a wait for a condition.
	shots := os.Getenv("SIGHTLINE_SCREENSHOTS")
	for i := range 10 {
		if shots != "" && i > 0 {
			time.Sleep(20 * time.Second)
		}
		if i == 5 {
			in.waitFor("the first wave's span metrics", 30*time.Second, func() bool {
				return promValue(t, base, `count(traces_service_graph_request_total)`) > 0 && promValue(t, base, `count(traces_spanmetrics_calls_total)`) > 0
			})
		}
		td, ld := gen.Batch(100)
		send(td, ld)
		spans = storage.AppendTraces(spans, td)
		logs = storage.AppendLogs(logs, ld)
	}
	big, bigLogs, bigID := bigTrace(10_000, now.Add(-time.Minute))
	send(big, bigLogs)
	xss, xssLogs, xssID := xssTrace(now.Add(-30*time.Second), bigID)
	send(xss, xssLogs)

	// A trace with logs (whose ID has no leading zero, as Tempo prints
	// IDs without them) and one of its lines; and the client -> server
	// edges that the traces contain, which the map must show.
	var logTrace storage.TraceID
	var logLine string
	for _, l := range logs {
		if id := l.TraceID.String(); !l.TraceID.IsEmpty() && !strings.HasPrefix(id, "0") && l.Body.AsString() != "" {
			logTrace, logLine = l.TraceID, l.Body.AsString()
			break
		}
	}
	require.False(t, logTrace.IsEmpty(), "the workload logs carry trace IDs")
	byID := map[storage.SpanID]storage.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	edgeSet := map[string]bool{}
	for _, s := range spans {
		p, ok := byID[s.ParentSpanID]
		if ok && s.Kind == storage.SpanKind(ptrace.SpanKindServer) && p.Kind == storage.SpanKind(ptrace.SpanKindClient) && p.Resource.ServiceName() != s.Resource.ServiceName() {
			edgeSet[p.Resource.ServiceName()+"->"+s.Resource.ServiceName()] = true
		}
	}
	var edges []string
	for e := range edgeSet {
		edges = append(edges, e)
	}
	slices.Sort(edges)
	require.GreaterOrEqual(t, len(edges), 5, "the workload's topology has edges")

	// Span metrics, the service graph and exemplars are flushed every
	// second; wait for them before the browser looks.
	in.waitFor("span metrics, service graph and exemplars", 60*time.Second, func() bool {
		return promValue(t, base, `count(count by (client, server) (traces_service_graph_request_total))`) >= float64(len(edges)) &&
			promValue(t, base, `sum(rate(traces_service_graph_request_total[5m]))`) > 0 &&
			promValue(t, base, `count(count by (service_name) (traces_spanmetrics_calls_total))`) >= 5 &&
			strings.Contains(httpGet(t, base+"/api/v1/query_exemplars?query=traces_spanmetrics_duration_milliseconds_bucket%7Bservice_name%3D%22checkout%22%7D&start="+strconv.FormatInt(now.Add(-time.Hour).Unix(), 10)+"&end="+strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10)), "trace_id")
	})

	// The SpansFlowing alert (testdata/ui.rules.yml) reaches Alertmanager,
	// and a silence there mutes its checkout instance.
	in.waitFor("the rules' alert to reach Alertmanager", 60*time.Second, func() bool {
		return strings.Contains(httpGet(t, am+"/api/v2/alerts?filter=alertname%3D%22SpansFlowing%22"), `"service_name":"checkout"`)
	})
	silenceID := silence(t, am, []map[string]any{
		{"name": "alertname", "value": "SpansFlowing", "isRegex": false, "isEqual": true},
		{"name": "service_name", "value": "check.*", "isRegex": true, "isEqual": true},
	}, "deploying checkout")

	artifacts := filepath.Join(t.TempDir(), "artifacts")
	cmd := exec.Command(node, "ui.test.mjs")
	cmd.Dir = "ui"
	cmd.Env = append(os.Environ(),
		"BASE="+base, "ARTIFACTS="+artifacts, "CHROMIUM="+chromium, fmt.Sprintf("OTLP_HTTP=http://127.0.0.1:%d", in.HTTP),
		"LOG_TRACE="+logTrace.String(), "LOG_LINE="+logLine,
		"BIG_TRACE="+storage.TraceID(bigID).String(), "XSS_TRACE="+storage.TraceID(xssID).String(),
		"EDGES="+mustJSON(t, edges), "SILENCE="+silenceID)
	if shots != "" {
		abs, err := filepath.Abs(shots)
		require.NoError(t, err)
		cmd.Env = append(cmd.Env, "SCREENSHOTS="+abs)
	}
	out, err := cmd.CombinedOutput()
	t.Logf("browser tests:\n%s", out)
	if err != nil {
		shots, _ := filepath.Glob(filepath.Join(artifacts, "*.png"))
		if keep := os.Getenv("SIGHTLINE_ARTIFACTS"); keep != "" {
			for _, s := range shots {
				b, _ := os.ReadFile(s)
				_ = os.WriteFile(filepath.Join(keep, filepath.Base(s)), b, 0o644)
			}
		}
		t.Fatalf("browser tests failed (%v); screenshots: %v (set SIGHTLINE_ARTIFACTS=dir to keep them)", err, shots)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var m map[string]float64
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &m), "the last line is the measurements")
	require.Contains(t, m, "bigTraceOpenMs")
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}
