// Command sidebyside measures Sightline and another Tempo-compatible
// backend (Tempo itself) on the same data, through the Tempo HTTP API
// both serve. See run.sh for the whole procedure and docs/benchmarks.md
// for the figures.
//
//	sidebyside load -otlp 127.0.0.1:4317,127.0.0.1:4417 -rate 20000 -duration 120s -out /tmp/sbs
//	sidebyside query -http http://127.0.0.1:3200,http://127.0.0.1:3210 -names sightline,tempo -in /tmp/sbs -runs 50
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sightlinehq/sightline/internal/workload"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sidebyside load|query [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "load":
		err = load(os.Args[2:])
	case "query":
		err = query(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// load sends the workload generator's traces, timestamped in real time, to
// every OTLP endpoint at once at a fixed rate, and records the time range
// and a sample of trace IDs for the queries.
func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	targets := fs.String("otlp", "127.0.0.1:4317", "OTLP gRPC addresses, comma-separated; each gets every span")
	rate := fs.Int("rate", 20_000, "spans per second")
	duration := fs.Duration("duration", 2*time.Minute, "how long to send")
	out := fs.String("out", "", "directory for the range and trace IDs")
	_ = fs.Parse(args)
	if *out == "" {
		return errors.New("-out is required")
	}
	var clients []ptraceotlp.GRPCClient
	for _, addr := range strings.Split(*targets, ",") {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
		if err != nil {
			return err
		}
		defer conn.Close()
		clients = append(clients, ptraceotlp.NewGRPCClient(conn))
	}
	// About 14 spans per trace: the trace interval that gives the rate.
	interval := time.Duration(float64(time.Second) * 14 / float64(*rate))
	start := time.Now()
	g := workload.New(42, start, workload.Options{TraceInterval: interval})
	const perBatch = 50
	var ids []string
	sent := 0
	ctx := context.Background()
	for i := 0; time.Since(start) < *duration; i++ {
		td, _ := g.Batch(perBatch)
		// Send a batch once the wall clock reaches its traces' start.
		if wait := time.Until(start.Add(time.Duration(i) * perBatch * interval)); wait > 0 {
			time.Sleep(wait)
		}
		if i%5 == 0 {
			id := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).TraceID()
			ids = append(ids, fmt.Sprintf("%x", id[:]))
		}
		req := ptraceotlp.NewExportRequestFromTraces(td)
		var wg sync.WaitGroup
		errs := make([]error, len(clients))
		for k, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for attempt := 0; ; attempt++ {
					_, err := c.Export(ctx, req)
					if err == nil || attempt == 20 {
						errs[k] = err
						return
					}
					time.Sleep(100 * time.Millisecond) // refused under load: retry, as an SDK would
				}
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		sent += td.SpanCount()
	}
	end := time.Now().Add(10 * time.Second)
	fmt.Printf("sent %d spans in %s to %s\n", sent, time.Since(start).Round(time.Second), *targets)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	rng := fmt.Sprintf("%d %d\n", start.Add(-10*time.Second).Unix(), end.Unix())
	if err := os.WriteFile(filepath.Join(*out, "range"), []byte(rng), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(*out, "ids"), []byte(strings.Join(ids, "\n")+"\n"), 0o644)
}

// queries are the seven, in Tempo's API.
var queries = []struct {
	name, q string
	limit   int
	metrics bool
}{
	{name: "trace by ID"},
	{name: "`{ resource.service.name = \"checkout\" && status = error && duration > 500ms }`", q: `{ resource.service.name = "checkout" && status = error && duration > 500ms }`, limit: 20},
	{name: "same with `> 5ms`, limit 20", q: `{ resource.service.name = "checkout" && status = error && duration > 5ms }`, limit: 20},
	{name: "same, limit 1000", q: `{ resource.service.name = "checkout" && status = error && duration > 5ms }`, limit: 1000},
	{name: "`{ status = error }` limit 20", q: `{ status = error }`, limit: 20},
	{name: "`{ resource.service.name = \"checkout\" } >> { status = error }` limit 20", q: `{ resource.service.name = "checkout" } >> { status = error }`, limit: 20},
	{name: "`{ } | rate() by (resource.service.name)` over the range", q: `{ } | rate() by (resource.service.name)`, metrics: true},
}

// query runs every query against every backend, alternating backends run
// by run so that both see the same machine, and prints p50, p99, the
// median of the bytes each reports having inspected, and the result size.
func query(args []string) error {
	fs := flag.NewFlagSet("query", flag.ExitOnError)
	bases := fs.String("http", "http://127.0.0.1:3200", "Tempo API base URLs, comma-separated")
	names := fs.String("names", "sightline", "their names, comma-separated")
	in := fs.String("in", "", "the directory load wrote")
	runs := fs.Int("runs", 50, "runs per query and backend")
	only := fs.String("only", "", "run only the queries whose name contains this")
	pidList := fs.String("pids", "", "the servers' process IDs, one per -http URL, comma-separated: adds each one's CPU per request, from /proc (needs many -runs: the kernel counts in 10 ms ticks)")
	_ = fs.Parse(args)
	rb, err := os.ReadFile(filepath.Join(*in, "range"))
	if err != nil {
		return err
	}
	var start, end int64
	if _, err := fmt.Sscan(string(rb), &start, &end); err != nil {
		return err
	}
	ib, err := os.ReadFile(filepath.Join(*in, "ids"))
	if err != nil {
		return err
	}
	ids := strings.Fields(string(ib))
	backends := strings.Split(*bases, ",")
	labels := strings.Split(*names, ",")
	if len(labels) != len(backends) {
		return errors.New("-names needs one name per -http URL")
	}
	var pids []string
	if *pidList != "" {
		if pids = strings.Split(*pidList, ","); len(pids) != len(backends) {
			return errors.New("-pids needs one process ID per -http URL")
		}
	}
	client := &http.Client{Timeout: 2 * time.Minute}
	fmt.Printf("| query | %s |\n|---|%s\n", strings.Join(labels, " p50 / p99 / bytes / result | ")+" p50 / p99 / bytes / result", strings.Repeat("---|", len(labels)))
	for _, qd := range queries {
		if !strings.Contains(qd.name, *only) {
			continue
		}
		lat := make([][]time.Duration, len(backends))
		bytes := make([][]int64, len(backends))
		result := make([]string, len(backends))
		cpu0, err := cpuTicks(pids)
		if err != nil {
			return err
		}
		for r := range *runs {
			for b, base := range backends {
				u := base
				switch {
				case qd.q == "":
					u += "/api/traces/" + ids[r%len(ids)]
				case qd.metrics:
					u += "/api/metrics/query_range?" + url.Values{"q": {qd.q}, "start": {strconv.FormatInt(start, 10)}, "end": {strconv.FormatInt(end, 10)}}.Encode()
				default:
					u += "/api/search?" + url.Values{"q": {qd.q}, "limit": {strconv.Itoa(qd.limit)}, "start": {strconv.FormatInt(start, 10)}, "end": {strconv.FormatInt(end, 10)}}.Encode()
				}
				t0 := time.Now()
				body, err := get(client, u)
				lat[b] = append(lat[b], time.Since(t0))
				if err != nil {
					return fmt.Errorf("%s: %s: %w", labels[b], qd.name, err)
				}
				n, res := summarize(body, qd.q == "", qd.metrics)
				bytes[b] = append(bytes[b], n)
				result[b] = res
			}
		}
		cpu1, err := cpuTicks(pids)
		if err != nil {
			return err
		}
		row := "| " + qd.name + " |"
		for b := range backends {
			slices.Sort(lat[b])
			slices.Sort(bytes[b])
			row += fmt.Sprintf(" %s / %s / %s / %s", round(lat[b][len(lat[b])/2]), round(lat[b][len(lat[b])*99/100]), mib(bytes[b][len(bytes[b])/2]), result[b])
			if pids != nil {
				// Ticks are USER_HZ, 100 a second on Linux.
				row += fmt.Sprintf(" / CPU %s a request", round(time.Duration(cpu1[b]-cpu0[b])*10*time.Millisecond/time.Duration(*runs)))
			}
			row += " |"
		}
		fmt.Println(row)
	}
	return nil
}

// cpuTicks reads the user and system CPU ticks each process has used.
func cpuTicks(pids []string) ([]int64, error) {
	out := make([]int64, len(pids))
	for i, pid := range pids {
		b, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return nil, err
		}
		// The command may hold spaces; the fields after it do not.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			return nil, fmt.Errorf("/proc/%s/stat: too few fields", pid)
		}
		for _, k := range []int{11, 12} { // utime, stime: fields 14 and 15
			n, err := strconv.ParseInt(f[k], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("/proc/%s/stat: %w", pid, err)
			}
			out[i] += n
		}
	}
	return out, nil
}

func get(c *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %.300s", u, resp.Status, body)
	}
	return body, nil
}

// summarize reads what a response reports: bytes inspected (search and
// metrics) and the size of the result.
func summarize(body []byte, trace, metrics bool) (int64, string) {
	var r struct {
		Traces  []json.RawMessage `json:"traces"`
		Series  []json.RawMessage `json:"series"`
		Batches []json.RawMessage `json:"batches"`
		Trace   struct {
			ResourceSpans []json.RawMessage `json:"resourceSpans"`
		} `json:"trace"`
		Metrics struct {
			InspectedBytes string `json:"inspectedBytes"`
		} `json:"metrics"`
	}
	_ = json.Unmarshal(body, &r)
	n, _ := strconv.ParseInt(r.Metrics.InspectedBytes, 10, 64)
	switch {
	case trace:
		return 0, fmt.Sprintf("%d KiB", len(body)>>10)
	case metrics:
		return n, fmt.Sprintf("%d series", len(r.Series))
	}
	return n, fmt.Sprintf("%d traces", len(r.Traces))
}

func round(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.1fms", float64(d)/1e6)
}

func mib(n int64) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
