package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestAgentKeepsAcknowledgedSpansThroughKill runs configs/agent.yaml as
// shipped (test ports aside) while its gateway is down, sends 10,000 spans
// in acknowledged requests, kills the agent with SIGKILL right after the
// last acknowledgement, then starts the gateway and the agent again on the
// same queue: every acknowledged span reaches the gateway exactly once.
func TestAgentKeepsAcknowledgedSpansThroughKill(t *testing.T) {
	queue := t.TempDir()
	gwPort := freePort(t)
	cert, key := writeSelfSignedCert(t, t.TempDir())
	env := []string{
		"GATEWAY_CA_FILE=" + cert, "GATEWAY_CERT_FILE=" + cert, "GATEWAY_KEY_FILE=" + key,
		"SIGHTLINE_GATEWAY_ENDPOINT=127.0.0.1:" + strconv.Itoa(gwPort),
		"SIGHTLINE_TOKEN=agent-token",
		"SIGHTLINE_QUEUE_DIR=" + queue,
	}
	configs := []string{"../configs/agent.yaml", "testdata/overlay-agent.yaml"}
	agent := start(t, configs, env...)

	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", agent.GRPC), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)
	want := map[pcommon.SpanID]bool{}
	for r := range 100 {
		td := ptrace.NewTraces()
		ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
		for i := range 100 {
			sp := ss.Spans().AppendEmpty()
			sp.SetName("acked")
			sp.SetTraceID(pcommon.TraceID{1, byte(r)})
			id := pcommon.SpanID{2, byte(r), byte(i)}
			sp.SetSpanID(id)
			sp.SetStartTimestamp(pcommon.NewTimestampFromTime(time.Now()))
			sp.SetEndTimestamp(pcommon.NewTimestampFromTime(time.Now()))
			want[id] = true
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := client.Export(ctx, ptraceotlp.NewExportRequestFromTraces(td))
		cancel()
		if err != nil {
			t.Fatalf("request %d: %v", r, err)
		}
	}
	if err := agent.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-agent.done

	gw := start(t, []string{"testdata/token-gateway.yaml"}, append(env, "GATEWAY_PORT="+strconv.Itoa(gwPort))...)
	start(t, configs, env...)
	out := filepath.Join(gw.Dir, "traces.jsonl")
	var got []exportedSpan
	waitFor(t, "every acknowledged span at the gateway", 90*time.Second, func() bool {
		got = readSpans(t, out)
		return len(got) >= len(want)
	})
	seen := map[pcommon.SpanID]int{}
	for _, s := range got {
		seen[s.Span.SpanID()]++
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("span %s arrived %d times", id, seen[id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("gateway got %d spans, want %d", len(got), len(want))
	}
}
