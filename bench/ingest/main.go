// Command ingest offers OTLP/gRPC spans at a fixed rate to a running
// Sightline and samples the server's RSS and CPU every second: the
// ingest-memory benchmark of docs/benchmarks.md. Spans come from the
// workload generator, pre-generated and given fresh trace IDs per request.
// Refused requests (the store's backpressure) are counted, not retried, so
// the offered rate stays fixed; afterwards a sample of acknowledged traces
// is read back by ID through the Tempo API and must be complete.
//
//	go run ./bench/ingest -rate 20000 -duration 10m -pid $(pidof sightline) -csv rss.csv
//
// Given several addresses (ingesters of one shared bucket), it sends each
// request, a batch of whole traces, to the next one in turn, as a
// gateway's trace-ID load balancing places whole traces; given several
// pids, it sums their RSS and CPU.
//
// bench/ingest/run.sh starts the all-in-one, runs this and charts the CSV
// with gnuplot.
package main

import (
	"context"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sightlinehq/sightline/internal/workload"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

type sample struct {
	t                float64
	rssMiB           float64
	anonMiB          float64 // RssAnon: the heap and stacks, not the binary's mapped pages
	cpuSec           float64
	acked, refused   int64
	ackedNow, refNow int64 // in the last second
}

func run() error {
	addrs := flag.String("addr", "127.0.0.1:4317", "OTLP gRPC addresses, comma-separated")
	query := flag.String("query", "http://127.0.0.1:3200", "Tempo API base URL, for the read-back check")
	rate := flag.Int("rate", 20_000, "spans per second offered")
	overload := flag.Duration("overload", 0, "offer -overload-rate for this long first, then -rate")
	overloadRate := flag.Int("overload-rate", 0, "spans per second offered during -overload")
	duration := flag.Duration("duration", time.Minute, "how long to send in all")
	workers := flag.Int("workers", 8, "concurrent clients")
	batch := flag.Int("batch", 20, "traces per request (about 14 spans each)")
	pidList := flag.String("pid", "", "server processes to sample (RSS, CPU), comma-separated")
	csvPath := flag.String("csv", "", "write the per-second samples here")
	check := flag.Int("check", 600, "acknowledged traces to read back by ID")
	flag.Parse()

	var pids []int
	for _, f := range strings.Split(*pidList, ",") {
		if f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil {
			return fmt.Errorf("-pid: %w", err)
		}
		pids = append(pids, p)
	}
	var conns []*grpc.ClientConn
	for _, addr := range strings.Split(*addrs, ",") {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
		if err != nil {
			return err
		}
		defer conn.Close()
		conns = append(conns, conn)
	}
	var sent atomic.Uint64 // requests so far, to pick the next address
	const pregen = 8
	var acked, refused, failed atomic.Int64
	var reasons refusals
	var sampleMu sync.Mutex
	checks := map[pcommon.TraceID]int{}
	start := time.Now()
	deadline := start.Add(*duration)
	rateAt := func(now time.Time) int {
		if now.Sub(start) < *overload {
			return *overloadRate
		}
		return *rate
	}
	var wg sync.WaitGroup
	for w := range *workers {
		g := workload.New(uint64(w+1), time.Now(), workload.Options{})
		reqs := make([]request, pregen)
		for i := range reqs {
			td, _ := g.Batch(*batch)
			r, err := newRequest(td)
			if err != nil {
				return err
			}
			reqs[i] = r
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := time.Now()
			for i := 0; ; i++ {
				now := time.Now()
				if now.After(deadline) {
					return
				}
				r := &reqs[i%pregen]
				// Pace: this worker's share of the offered rate.
				next = next.Add(time.Duration(float64(time.Second) * float64(r.spans) * float64(*workers) / float64(rateAt(now))))
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				} else if d < -time.Second {
					next = time.Now() // fell behind: do not burst to catch up
				}
				mask := saltMask(uint64(w)<<40 | uint64(i))
				r.salt(mask)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				conn := conns[(sent.Add(1)-1)%uint64(len(conns))]
				err := conn.Invoke(ctx, exportMethod, &r.body, &struct{}{}, grpc.ForceCodec(rawCodec{}))
				cancel()
				if err != nil {
					// The transport may still hold the body of a request
					// that did not complete: salt a copy from now on.
					r.body = slices.Clone(r.body)
				}
				switch {
				case err == nil:
					acked.Add(int64(r.spans))
					if rand.IntN(50) == 0 {
						orig := r.ids[rand.IntN(len(r.ids))]
						sampleMu.Lock()
						if len(checks) < *check*4 {
							checks[salted(orig, mask)] = r.counts[orig]
						}
						sampleMu.Unlock()
					}
				case status.Code(err) == codes.Unavailable || status.Code(err) == codes.ResourceExhausted:
					refused.Add(int64(r.spans))
					reasons.add(status.Convert(err).Message())
				default:
					failed.Add(int64(r.spans))
				}
			}
		}()
	}

	var samples []sample
	stop := make(chan struct{})
	var sw sync.WaitGroup
	sw.Add(1)
	go func() {
		defer sw.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var lastA, lastR int64
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			s := sample{t: time.Since(start).Seconds(), acked: acked.Load(), refused: refused.Load()}
			s.ackedNow, s.refNow = s.acked-lastA, s.refused-lastR
			lastA, lastR = s.acked, s.refused
			for _, p := range pids {
				rss, anon, cpu := procStats(p)
				s.rssMiB, s.anonMiB, s.cpuSec = s.rssMiB+rss, s.anonMiB+anon, s.cpuSec+cpu
			}
			samples = append(samples, s)
		}
	}()
	wg.Wait()
	el := time.Since(start).Seconds()
	close(stop)
	sw.Wait()

	var peak, peakAnon, cpu0, cpu1 float64
	for _, s := range samples {
		peak = max(peak, s.rssMiB)
		peakAnon = max(peakAnon, s.anonMiB)
	}
	if len(samples) > 1 {
		cpu0, cpu1 = samples[0].cpuSec, samples[len(samples)-1].cpuSec
	}
	fmt.Printf("offered %d spans/s for %.0fs: acknowledged %d (%.0f spans/s), refused %d, failed %d\n",
		*rate, el, acked.Load(), float64(acked.Load())/el, refused.Load(), failed.Load())
	reasons.print()
	if len(pids) > 0 && acked.Load() > 0 {
		fmt.Printf("server: peak RSS %.0f MiB (anonymous %.0f MiB), CPU %.1f µs per acknowledged span\n", peak, peakAnon, (cpu1-cpu0)*1e6/float64(acked.Load()))
	}
	if sent := acked.Load() + refused.Load() + failed.Load(); sent > 0 {
		fmt.Printf("load generator: CPU %.1f µs per span sent\n", selfCPU()*1e6/float64(sent))
	}
	if *overload > 0 {
		// Recovery: the first second after the overload in which the
		// acknowledged rate reached 95% of the offered rate.
		for _, s := range samples {
			if s.t > overload.Seconds() && float64(s.ackedNow) >= 0.95*float64(*rate) {
				fmt.Printf("back to full speed %.0fs after the overload stopped\n", s.t-overload.Seconds())
				break
			}
		}
	}
	if *csvPath != "" {
		f, err := os.Create(*csvPath)
		if err != nil {
			return err
		}
		w := csv.NewWriter(f)
		w.Write([]string{"seconds", "rss_mib", "cpu_seconds", "acked_per_s", "refused_per_s", "rss_anon_mib"})
		for _, s := range samples {
			w.Write([]string{fmt.Sprintf("%.0f", s.t), fmt.Sprintf("%.1f", s.rssMiB), fmt.Sprintf("%.2f", s.cpuSec),
				strconv.FormatInt(s.ackedNow, 10), strconv.FormatInt(s.refNow, 10), fmt.Sprintf("%.1f", s.anonMiB)})
		}
		w.Flush()
		f.Close()
	}
	if *check > 0 {
		return readBack(*query, checks, *check)
	}
	return nil
}

// readBack fetches up to n sampled traces by ID and requires each to hold
// every span that was acknowledged for it.
func readBack(base string, want map[pcommon.TraceID]int, n int) error {
	checked, bad := 0, 0
	for id, spans := range want {
		if checked == n {
			break
		}
		checked++
		resp, err := http.Get(base + "/api/v2/traces/" + id.String())
		if err != nil {
			return err
		}
		var body struct {
			Trace struct {
				ResourceSpans []struct {
					ScopeSpans []struct {
						Spans []json.RawMessage `json:"spans"`
					} `json:"scopeSpans"`
				} `json:"resourceSpans"`
			} `json:"trace"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		got := 0
		for _, rs := range body.Trace.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				got += len(ss.Spans)
			}
		}
		if err != nil || got != spans {
			bad++
			fmt.Printf("trace %s: %d of %d spans (%v)\n", id, got, spans, err)
		}
	}
	fmt.Printf("read back %d acknowledged traces by ID: %d incomplete\n", checked, bad)
	if bad > 0 {
		return fmt.Errorf("%d acknowledged traces incomplete", bad)
	}
	return nil
}

// selfCPU is this process's CPU time (s): what the load generator takes of
// the cores it shares with the server.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// procStats reads a process's RSS and anonymous RSS (MiB) and CPU time
// (s) from /proc. RSS includes the pages of the binary the kernel has
// mapped in (RssFile: about 170 MiB of a 270 MB binary at idle,
// docs/benchmarks.md), which are clean and reclaimable; RssAnon is the
// memory the process's own allocations hold.
func procStats(pid int) (rssMiB, anonMiB, cpuSec float64) {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				kb, _ := strconv.ParseFloat(strings.Fields(rest)[0], 64)
				rssMiB = kb / 1024
			}
			if rest, ok := strings.CutPrefix(l, "RssAnon:"); ok {
				kb, _ := strconv.ParseFloat(strings.Fields(rest)[0], 64)
				anonMiB = kb / 1024
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		cpuSec = (ut + st) / 100 // USER_HZ
	}
	return rssMiB, anonMiB, cpuSec
}

// refusals counts the server's refusals by their message with its numbers
// taken out (the store's say which limit refused and by how much), keeping
// the first message of each kind: which admission limit refuses, and
// when, is what a run's refused count does not say.
type refusals struct {
	mu    sync.Mutex
	kinds map[string]*refusalKind
	order []string
}

type refusalKind struct {
	n     int
	first string
}

// maxRefusalKinds bounds the kinds kept; later kinds count as "other".
const maxRefusalKinds = 8

var digits = regexp.MustCompile(`[0-9]+`)

func (r *refusals) add(msg string) {
	kind := digits.ReplaceAllString(msg, "N")
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kinds == nil {
		r.kinds = map[string]*refusalKind{}
	}
	if _, ok := r.kinds[kind]; !ok && len(r.order) >= maxRefusalKinds {
		kind, msg = "other", "(other messages)"
	}
	k, ok := r.kinds[kind]
	if !ok {
		k = &refusalKind{first: msg}
		r.kinds[kind] = k
		r.order = append(r.order, kind)
	}
	k.n++
}

func (r *refusals) print() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, kind := range r.order {
		k := r.kinds[kind]
		fmt.Printf("  refused %d requests: %s\n", k.n, k.first)
	}
}

// saltMask draws a request's 128-bit mask from its salt and the run's
// seed. salted gives a pre-generated trace ID the request's own value, the
// ID XOR the mask, so that requests, and runs against the same store,
// never share a trace.
func saltMask(salt uint64) [16]byte {
	r := rand.New(rand.NewPCG(salt, runSeed))
	var m [16]byte
	binary.LittleEndian.PutUint64(m[:8], r.Uint64())
	binary.LittleEndian.PutUint64(m[8:], r.Uint64())
	return m
}

func salted(id pcommon.TraceID, mask [16]byte) pcommon.TraceID {
	for i := range id {
		id[i] ^= mask[i]
	}
	return id
}

// runSeed differs per run.
var runSeed = uint64(time.Now().UnixNano())
