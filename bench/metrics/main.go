// Command metrics measures the metrics store: OTLP ingest through a
// running sightline, PromQL over RED metrics, and head memory per series.
// See docs/benchmarks.md for the figures and how they were run.
//
//	go run ./bench/metrics load   -addr 127.0.0.1:24317 -duration 60s
//	go run ./bench/metrics query  -services 50 -data DIR
//	go run ./bench/metrics series -series 100000 -data DIR
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sightlinehq/sightline/internal/metrics"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: metrics load|query|series [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "load":
		err = load(os.Args[2:])
	case "query":
		err = query(os.Args[2:])
	case "series":
		err = series(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// Each load request carries one service's 100 counters, 100 gauges and
// 20 classic histograms of 10 buckets: 100 + 100 + 20 × (11 buckets
// with +Inf, _sum, _count) = 460 Prometheus samples.
const (
	counters, gauges, histograms = 100, 100, 20
	samplesPerRequest            = counters + gauges + histograms*13
)

var bounds = []float64{5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000}

func request(service string, ts time.Time, i int, rnd *rand.Rand) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", service)
	rm.Resource().Attributes().PutStr("service.instance.id", service+"-0")
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	start := pcommon.NewTimestampFromTime(ts.Add(-time.Hour))
	now := pcommon.NewTimestampFromTime(ts)

	c := ms.AppendEmpty()
	c.SetName("bench.requests")
	sum := c.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	for r := range counters {
		dp := sum.DataPoints().AppendEmpty()
		dp.SetStartTimestamp(start)
		dp.SetTimestamp(now)
		dp.SetDoubleValue(float64(i * (r + 1)))
		dp.Attributes().PutStr("route", "/r"+strconv.Itoa(r))
	}
	g := ms.AppendEmpty()
	g.SetName("bench.inflight")
	gauge := g.SetEmptyGauge()
	for r := range gauges {
		dp := gauge.DataPoints().AppendEmpty()
		dp.SetTimestamp(now)
		dp.SetDoubleValue(rnd.Float64() * 100)
		dp.Attributes().PutStr("route", "/r"+strconv.Itoa(r))
	}
	h := ms.AppendEmpty()
	h.SetName("bench.latency")
	h.SetUnit("ms")
	hist := h.SetEmptyHistogram()
	hist.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	for r := range histograms {
		dp := hist.DataPoints().AppendEmpty()
		dp.SetStartTimestamp(start)
		dp.SetTimestamp(now)
		dp.ExplicitBounds().FromRaw(bounds)
		counts := make([]uint64, len(bounds)+1)
		var total uint64
		for b := range counts {
			counts[b] = uint64(i * (b + 1))
			total += counts[b]
		}
		dp.BucketCounts().FromRaw(counts)
		dp.SetCount(total)
		dp.SetSum(float64(total) * 42)
		dp.Attributes().PutStr("route", "/r"+strconv.Itoa(r))
	}
	return md
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:24317", "OTLP gRPC address")
	workers := fs.Int("workers", 8, "concurrent clients, one service each")
	duration := fs.Duration("duration", 30*time.Second, "how long to send")
	fs.Parse(args)

	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	mc := pmetricotlp.NewGRPCClient(conn)
	var samples, errs atomic.Int64
	t0 := time.Now()
	deadline := t0.Add(*duration)
	var wg sync.WaitGroup
	for w := range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 1))
			service := fmt.Sprintf("svc-%d", w)
			// Each request is the next scrape-like snapshot of the
			// worker's series, 1 ms after the previous one, so every
			// sample is in order and new.
			for i := 0; time.Now().Before(deadline); i++ {
				md := request(service, t0.Add(time.Duration(i)*time.Millisecond), i, rnd)
				if _, err := mc.Export(context.Background(), pmetricotlp.NewExportRequestFromMetrics(md)); err != nil {
					errs.Add(1)
					continue
				}
				samples.Add(samplesPerRequest)
			}
		}()
	}
	wg.Wait()
	el := time.Since(t0).Seconds()
	fmt.Printf("acknowledged: %d samples (%.0f samples/s) in %d series, %d failed requests, %.1fs\n",
		samples.Load(), float64(samples.Load())/el, *workers*samplesPerRequest, errs.Load(), el)
	return nil
}

// openEmpty opens a new metrics store in dir, removing what was there.
func openEmpty(dir string) (*metrics.DB, error) {
	if dir == "" {
		return nil, fmt.Errorf("-data is required")
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	return metrics.Open(metrics.Options{Dir: dir, Retention: 24 * time.Hour})
}

// query fills a TSDB with an hour of the span metrics' RED series for
// n services (5 operations, 2 statuses, calls and a 13-bucket duration
// histogram, every 15 s), then times PromQL over it.
func query(args []string) error {
	fs := flag.NewFlagSet("query", flag.ExitOnError)
	services := fs.Int("services", 50, "services")
	dir := fs.String("data", "", "TSDB directory (emptied first)")
	runs := fs.Int("runs", 50, "runs per query")
	fs.Parse(args)
	db, err := openEmpty(*dir)
	if err != nil {
		return err
	}
	defer db.Close()
	end := time.Now().Truncate(15 * time.Second)
	start := end.Add(-time.Hour)
	les := []string{"2", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000", "+Inf"}
	nseries, nsamples := 0, 0
	tsdb := db.TSDB()
	rnd := rand.New(rand.NewPCG(1, 2))
	type ser struct {
		lbls labels.Labels
		rate float64
		v    float64
	}
	var all []*ser
	for s := range *services {
		for op := range 5 {
			for _, st := range []string{"STATUS_CODE_UNSET", "STATUS_CODE_ERROR"} {
				base := []string{"service_name", fmt.Sprintf("service-%02d", s), "span_name", fmt.Sprintf("op-%d", op),
					"span_kind", "SPAN_KIND_SERVER", "status_code", st, "job", fmt.Sprintf("service-%02d", s), "instance", "i-0"}
				r := 1 + rnd.Float64()*50
				if st == "STATUS_CODE_ERROR" {
					r /= 50
				}
				all = append(all, &ser{lbls: labels.FromStrings(append([]string{"__name__", "traces_spanmetrics_calls_total"}, base...)...), rate: r})
				for i, le := range les {
					all = append(all, &ser{lbls: labels.FromStrings(append([]string{"__name__", "traces_spanmetrics_duration_milliseconds_bucket", "le", le}, base...)...), rate: r * float64(i+1) / float64(len(les))})
				}
			}
		}
	}
	for ts := start; !ts.After(end); ts = ts.Add(15 * time.Second) {
		app := tsdb.Appender(context.Background())
		for _, s := range all {
			s.v += s.rate * 15
			if _, err := app.Append(0, s.lbls, ts.UnixMilli(), s.v); err != nil {
				return err
			}
			nsamples++
		}
		if err := app.Commit(); err != nil {
			return err
		}
	}
	nseries = len(all)
	fmt.Printf("%d services, %d series, %d samples over 1h\n", *services, nseries, nsamples)

	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	for _, q := range []struct {
		name, expr string
		rng        bool
	}{
		{"range 1h step 15s", `sum by (service_name) (rate(traces_spanmetrics_calls_total[5m]))`, true},
		{"instant", `sum by (service_name) (rate(traces_spanmetrics_calls_total[5m]))`, false},
		{"range 1h step 15s", `histogram_quantile(0.99, sum by (service_name, le) (rate(traces_spanmetrics_duration_milliseconds_bucket[5m])))`, true},
		{"range 1h step 15s", `sum by (service_name) (rate(traces_spanmetrics_calls_total{status_code="STATUS_CODE_ERROR"}[5m])) / sum by (service_name) (rate(traces_spanmetrics_calls_total[5m]))`, true},
	} {
		var d []time.Duration
		var points int
		for range *runs {
			var qr promql.Query
			if q.rng {
				qr, err = eng.NewRangeQuery(context.Background(), tsdb, nil, q.expr, start, end, 15*time.Second)
			} else {
				qr, err = eng.NewInstantQuery(context.Background(), tsdb, nil, q.expr, end)
			}
			if err != nil {
				return err
			}
			t0 := time.Now()
			res := qr.Exec(context.Background())
			d = append(d, time.Since(t0))
			if res.Err != nil {
				return res.Err
			}
			points = 0
			switch v := res.Value.(type) {
			case promql.Matrix:
				for _, s := range v {
					points += len(s.Floats)
				}
			case promql.Vector:
				points = len(v)
			}
			qr.Close()
		}
		slices.Sort(d)
		fmt.Printf("%-18s p50 %-10v p99 %-10v %5d points  %s\n", q.name, d[len(d)/2].Round(time.Microsecond), d[len(d)*99/100].Round(time.Microsecond), points, q.expr)
	}
	return nil
}

// series appends n new series with two samples each (one WAL record and
// one head chunk each, as active series have) and reports the Go heap
// they hold after a full GC.
func series(args []string) error {
	fs := flag.NewFlagSet("series", flag.ExitOnError)
	n := fs.Int("series", 100_000, "active series")
	dir := fs.String("data", "", "TSDB directory (emptied first)")
	fs.Parse(args)
	db, err := openEmpty(*dir)
	if err != nil {
		return err
	}
	defer db.Close()
	heap := func() uint64 {
		runtime.GC()
		debug.FreeOSMemory()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	before := heap()
	now := time.Now()
	for k := range 2 {
		ts := now.Add(time.Duration(k) * 15 * time.Second).UnixMilli()
		app := db.Appender(context.Background())
		for i := range *n {
			// Span-metrics-like label sets: 8 labels, realistic lengths.
			l := labels.FromStrings("__name__", "traces_spanmetrics_calls_total",
				"service_name", fmt.Sprintf("service-%03d", i%500), "span_name", fmt.Sprintf("GET /api/v1/resource/%d", i/500),
				"span_kind", "SPAN_KIND_SERVER", "status_code", "STATUS_CODE_UNSET", "job", fmt.Sprintf("service-%03d", i%500),
				"instance", "10.0.0.1:8080", "le", "+Inf")
			if _, err := app.Append(0, l, ts, float64(i+k)); err != nil {
				return err
			}
			if i%10_000 == 9_999 {
				if err := app.Commit(); err != nil {
					return err
				}
				app = db.Appender(context.Background())
			}
		}
		if err := app.Commit(); err != nil {
			return err
		}
	}
	after := heap()
	st := db.TSDB().Head().Stats("", 0)
	fmt.Printf("%d head series: Go heap in use %.1f MiB more (%.0f bytes/series)\n",
		st.NumSeries, float64(after-before)/(1<<20), float64(after-before)/float64(st.NumSeries))
	return nil
}
