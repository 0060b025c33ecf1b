package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store"
	"github.com/sightlinehq/sightline/internal/store/block"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/store/wal"
	"github.com/sightlinehq/sightline/internal/workload"
)

// acked is everything the server acknowledged.
type acked struct {
	mu     sync.Mutex
	traces map[storage.TraceID]int
	logs   map[[24]byte]int
}

func (a *acked) add(tr map[storage.TraceID]int, lg map[[24]byte]int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range tr {
		a.traces[k] += v
	}
	for k, v := range lg {
		a.logs[k] += v
	}
}

// ingest sends workload batches over OTLP/gRPC from several clients until
// a send fails (the server was killed) and records what was acknowledged.
func ingest(t *testing.T, port int, seed uint64, a *acked) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", port), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			tc, lc := ptraceotlp.NewGRPCClient(conn), plogotlp.NewGRPCClient(conn)
			g := workload.New(seed*100+uint64(w), time.Now(), workload.Options{})
			for {
				td, ld := g.Batch(40)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := tc.Export(ctx, ptraceotlp.NewExportRequestFromTraces(td))
				if err == nil {
					tr := map[storage.TraceID]int{}
					for _, s := range storage.AppendTraces(nil, td) {
						tr[s.TraceID]++
					}
					a.add(tr, nil)
					_, err = lc.Export(ctx, plogotlp.NewExportRequestFromLogs(ld))
					if err == nil {
						lg := map[[24]byte]int{}
						for _, l := range storage.AppendLogs(nil, ld) {
							var k [24]byte
							copy(k[:16], l.TraceID[:])
							copy(k[16:], l.SpanID[:])
							lg[k]++
						}
						a.add(nil, lg)
					}
				}
				cancel()
				if err != nil {
					return
				}
			}
		}()
	}
	return &wg
}

// openStore opens the data directory the way the exporter does.
func openStore(t *testing.T, dir string) *store.DB {
	t.Helper()
	st, err := objstore.OpenFilesystem(filepath.Join(dir, "blocks"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(context.Background(), store.Options{Dir: dir, Bucket: st, CompactionInterval: time.Hour, MaxBlockDuration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestCrashSafety kills an ingesting sightline with SIGKILL at random
// moments and checks, after each kill, that every acknowledged span and log
// record is readable and that every block is intact.
func TestCrashSafety(t *testing.T) {
	data := t.TempDir()
	a := &acked{traces: map[storage.TraceID]int{}, logs: map[[24]byte]int{}}
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	const rounds = 10
	for round := range rounds {
		in := start(t, []string{"testdata/store.yaml"}, "SIGHTLINE_DATA="+data)
		wg := ingest(t, in.GRPC, uint64(round+1), a)
		// Kill at a random moment once some data has been acknowledged.
		in.waitFor("first acknowledgements", 30*time.Second, func() bool {
			a.mu.Lock()
			defer a.mu.Unlock()
			return len(a.traces) > round*100
		})
		time.Sleep(time.Duration(rnd.IntN(1500)) * time.Millisecond)
		if err := in.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-in.done
		wg.Wait()

		db := openStore(t, data)
		for _, p := range db.Problems() {
			if errors.Is(p, storage.ErrCorrupt) && strings.Contains(p.Error(), "block") {
				t.Fatalf("round %d: corrupt block after SIGKILL: %v", round, p)
			}
		}
		q, err := db.Querier(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		// One full scan of every span and log record reads every block end
		// to end (a damaged one fails it) and yields what is stored.
		spans := map[[24]byte]struct{}{}
		perTrace := map[storage.TraceID]int{}
		if err := q.Spans(context.Background(), &storage.SpanQuery{}, func(s *storage.Span) bool {
			var k [24]byte
			copy(k[:16], s.TraceID[:])
			copy(k[16:], s.SpanID[:])
			if _, dup := spans[k]; !dup {
				spans[k] = struct{}{}
				perTrace[s.TraceID]++
			}
			return true
		}); err != nil {
			t.Fatalf("round %d: full span scan: %v", round, err)
		}
		logKeys := map[[24]byte]int{}
		if err := q.Logs(context.Background(), &storage.LogQuery{}, func(l *storage.LogRecord) bool {
			var k [24]byte
			copy(k[:16], l.TraceID[:])
			copy(k[16:], l.SpanID[:])
			logKeys[k]++
			return true
		}); err != nil {
			t.Fatalf("round %d: full log scan: %v", round, err)
		}
		a.mu.Lock()
		checked := 0
		for id, n := range a.traces {
			if perTrace[id] != n {
				t.Fatalf("round %d: acknowledged trace %s: %d of %d spans stored", round, id, perTrace[id], n)
			}
			// And by ID, merged across head and blocks, for a sample.
			if checked < 50 {
				checked++
				got, err := q.TraceByID(context.Background(), id, 0, 0)
				if err != nil || len(got) != n {
					t.Fatalf("round %d: trace %s by ID: %d of %d spans, err %v", round, id, len(got), n, err)
				}
			}
		}
		for k, n := range a.logs {
			if logKeys[k] < n {
				t.Fatalf("round %d: acknowledged logs of span %x: %d of %d stored", round, k[16:], logKeys[k], n)
			}
		}
		traces, logs := len(a.traces), len(a.logs)
		a.mu.Unlock()
		all := len(spans)
		q.Close()
		st := db.Stats()
		t.Logf("round %d: %d traces and %d log-bearing spans acknowledged so far; %d blocks, %d spans in blocks, %d in head, %d scanned",
			round, traces, logs, st.Blocks, st.BlockSpans, st.HeadSpans, all)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Blocks were cut and compacted along the way, not just WAL replays.
	keys, _ := os.ReadDir(filepath.Join(data, "blocks", string(block.Traces)))
	if len(keys) == 0 {
		t.Fatal("no trace block was ever written")
	}
}

// TestDamagedStorage damages a stopped store three ways and checks each
// gives a clear error in the log and on the health endpoint while the rest
// of the data is served and nothing acknowledged is lost.
func TestDamagedStorage(t *testing.T) {
	data := t.TempDir()
	in := start(t, []string{"testdata/store.yaml"}, "SIGHTLINE_DATA="+data)
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", in.GRPC), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	g := workload.New(42, time.Now(), workload.Options{})
	var sent []storage.Span
	for range 20 {
		td, _ := g.Batch(40) // 20 × 40 traces: several blocks at 2 MiB
		if _, err := ptraceotlp.NewGRPCClient(conn).Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(td)); err != nil {
			t.Fatal(err)
		}
		sent = storage.AppendTraces(sent, td)
	}
	// Once the cut heads are written (their WAL segments gone), one more
	// batch stays in the head and the WAL, for the WAL damage below. Where
	// the size cuts fall depends on timing; when the open head's data spans
	// two 1 MiB segments, only its cut by age (30 s, checked every 7.5 s)
	// leaves one, so the wait outlasts that.
	in.waitFor("heads flushed to blocks", 90*time.Second, func() bool {
		segs, _ := filepath.Glob(filepath.Join(data, "wal", "*.wal"))
		return len(segs) == 1
	})
	td, _ := g.Batch(5)
	if _, err := ptraceotlp.NewGRPCClient(conn).Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(td)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	in.stop()

	// A corrupt block file: the first trace block loses its tail. Which
	// traces the other blocks hold is noted first: compaction may have
	// merged every batch into the one damaged (it merges every 300 ms).
	ents, err := os.ReadDir(filepath.Join(data, "blocks", "traces"))
	if err != nil || len(ents) == 0 {
		t.Fatalf("no blocks: %v", err)
	}
	damaged := ents[0].Name()
	elsewhere := map[storage.TraceID]bool{}
	for _, e := range ents[1:] {
		ob, err := block.Open(context.Background(), mustFS(t, data), block.Traces, e.Name())
		if err != nil {
			t.Fatalf("block %s: %v", e.Name(), err)
		}
		if err := ob.AllSpans(context.Background(), func(s *storage.Span) bool {
			elsewhere[s.TraceID] = true
			return true
		}); err != nil {
			t.Fatalf("block %s: %v", e.Name(), err)
		}
		ob.Close()
	}
	dataFile := filepath.Join(data, "blocks", "traces", damaged, block.DataFile)
	b, _ := os.ReadFile(dataFile)
	if err := os.WriteFile(dataFile, b[:len(b)*2/3], 0o644); err != nil {
		t.Fatal(err)
	}
	// A truncated WAL segment: the last record of the segment with the
	// most records loses its last bytes. Its file may run on past that
	// record, after the end marker, when the segment was written in a
	// spare (docs/storage-format.md).
	walDir := filepath.Join(data, "wal")
	segs, _ := wal.Segments(walDir)
	var walSeg string
	var walEnd int64
	for _, s := range segs {
		var end int64
		if err := wal.ReplayAt(walDir, s, func(off int64, _ byte, p []byte) error {
			end = off + 9 + int64(len(p))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if end > walEnd {
			walSeg, walEnd = wal.SegmentPath(walDir, s), end
		}
	}
	if walEnd < 100 {
		t.Fatalf("no WAL segment with records to damage (%v)", segs)
	}
	if err := os.Truncate(walSeg, walEnd-7); err != nil {
		t.Fatal(err)
	}

	in = start(t, []string{"testdata/store.yaml"}, "SIGHTLINE_DATA="+data)
	var body string
	in.waitFor("health to report the damaged block", 20*time.Second, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/?verbose", in.Health))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		bb, _ := io.ReadAll(resp.Body)
		body = string(bb)
		return resp.StatusCode == http.StatusInternalServerError && strings.Contains(body, damaged)
	})
	walName := "wal segment " + strings.TrimLeft(strings.TrimSuffix(filepath.Base(walSeg), ".wal"), "0")
	for _, want := range []string{"quarantined", walName, "bytes dropped"} {
		if !strings.Contains(body, want) {
			t.Fatalf("health body lacks %q: %s", want, body)
		}
	}
	for _, want := range []string{damaged, walName, "store problem"} {
		if !strings.Contains(in.out.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, in.out.String())
		}
	}
	// Ingest goes on.
	conn, err = grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", in.GRPC), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	td, _ = g.Batch(10)
	if _, err := ptraceotlp.NewGRPCClient(conn).Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(td)); err != nil {
		t.Fatalf("ingest after damage: %v", err)
	}
	in.stop()

	// The rest of the data is served: every trace not in the damaged
	// block is whole.
	db := openStore(t, data)
	defer db.Close()
	var bad *block.Block
	if bb, err := block.Open(context.Background(), mustFS(t, data), block.Traces, damaged); err == nil {
		bad = bb
	}
	if bad != nil {
		t.Fatal("the damaged block opened cleanly")
	}
	q, _ := db.Querier(context.Background())
	defer q.Close()
	found, want := 0, 0
	for _, s := range sent {
		_, err := q.TraceByID(context.Background(), s.TraceID, 0, 0)
		if err == nil {
			found++
		}
		if elsewhere[s.TraceID] {
			want++
			if err != nil {
				t.Fatalf("trace %s, held by a block not damaged: %v", s.TraceID, err)
			}
		}
	}
	if found != want || want == len(sent) {
		t.Fatalf("%d of %d spans' traces found; want the %d outside the damaged block", found, len(sent), want)
	}
}

func mustFS(t *testing.T, data string) *objstore.Store {
	st, err := objstore.OpenFilesystem(filepath.Join(data, "blocks"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestFullDisk runs the store on a 4 MiB tmpfs, fills it, and checks that
// ingest is refused with a retryable status (gRPC Unavailable), reported on
// the health endpoint, and that everything acknowledged before is kept.
func TestFullDisk(t *testing.T) {
	mnt := t.TempDir()
	if out, err := runCmd("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt); err != nil {
		t.Fatalf("mounting a tmpfs needs root (CI runs as root): %v: %s", err, out)
	}
	t.Cleanup(func() { runCmd("umount", "-l", mnt) })
	in := start(t, []string{"testdata/store.yaml"}, "SIGHTLINE_DATA="+mnt)
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", in.GRPC), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tc := ptraceotlp.NewGRPCClient(conn)
	g := workload.New(9, time.Now(), workload.Options{})
	ack := map[storage.TraceID]int{}
	var refused error
	for i := 0; i < 200 && refused == nil; i++ {
		td, _ := g.Batch(20)
		_, err := tc.Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(td))
		if err != nil {
			refused = err
			break
		}
		for _, s := range storage.AppendTraces(nil, td) {
			ack[s.TraceID]++
		}
	}
	if refused == nil {
		t.Fatal("a 4 MiB disk never filled")
	}
	if status.Code(refused) != codes.Unavailable {
		t.Fatalf("full disk: got %v, want a retryable Unavailable", refused)
	}
	in.waitFor("health to report the full disk", 20*time.Second, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/?verbose", in.Health))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		bb, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(bb), "no space left on device")
	})
	if !strings.Contains(in.out.String(), "store problem") || !strings.Contains(in.out.String(), "no space left on device") {
		t.Fatalf("log does not report the full disk:\n%s", in.out.String())
	}
	in.cmd.Process.Signal(syscall.SIGKILL)
	<-in.done
	// The operator frees space; the store must come back with everything.
	if out, err := runCmd("mount", "-o", "remount,size=64m", mnt); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
	db := openStore(t, mnt)
	defer db.Close()
	q, _ := db.Querier(context.Background())
	defer q.Close()
	for id, n := range ack {
		spans, err := q.TraceByID(context.Background(), id, 0, 0)
		if err != nil || len(spans) != n {
			t.Fatalf("acknowledged trace %s: %d of %d spans, err %v", id, len(spans), n, err)
		}
	}
	t.Logf("%d traces acknowledged before the disk filled, all readable", len(ack))
}

func runCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
