package e2e

import (
	"path/filepath"
	"testing"
	"time"
)

// TestSIGTERMDrainsBatches accepts data into a batch that would hold it
// for an hour, then sends SIGTERM: the process must flush it and exit 0.
func TestSIGTERMDrainsBatches(t *testing.T) {
	in := start(t, []string{"testdata/held-batch.yaml"})
	const n = 40
	sendSDKGRPC(t, in, n)
	sendJSON(t, in, n)
	out := filepath.Join(in.Dir, "traces.jsonl")
	if got := len(readSpans(t, out)); got != 0 {
		t.Fatalf("%d spans were exported before shutdown; the batch should hold them", got)
	}
	in.stop() // requires exit status 0

	if got := len(readSpans(t, out)); got != 2*n {
		t.Errorf("after SIGTERM %d spans were exported, want %d", got, 2*n)
	}
	if got := len(readLogs(t, filepath.Join(in.Dir, "logs.jsonl"))); got != 2*n {
		t.Errorf("after SIGTERM %d logs were exported, want %d", got, 2*n)
	}
	if got := len(readSumPoints(t, filepath.Join(in.Dir, "metrics.jsonl"))); got != 2*n {
		t.Errorf("after SIGTERM %d metric points were exported, want %d", got, 2*n)
	}
}

// TestSIGTERMDuringStartup sends SIGTERM as soon as the process writes
// its first log line, while its components are still starting, which is
// what a rolling update does to a pod that has just begun. The process
// must finish starting, shut down in order and exit 0, not die by the
// signal's default action.
func TestSIGTERMDuringStartup(t *testing.T) {
	in := newInstance(t)
	in.spawn(runArgs([]string{"testdata/held-batch.yaml"}), nil)
	in.waitFor("the first log line", 60*time.Second, func() bool { return in.out.String() != "" })
	in.stop() // requires exit status 0
}
