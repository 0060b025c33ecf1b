package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// promServer runs Debian's Prometheus server (the `prometheus` package,
// which scripts/test.sh installs) with its remote-write receiver on, in a
// temporary directory, and returns its base URL.
func promServer(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("the prometheus server is not installed: scripts/test.sh installs Debian's prometheus package")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("global:\n  scrape_interval: 15s\n"), 0o600))
	port := freePort(t)
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--web.enable-remote-write-receiver")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("prometheus output:\n%s", out.String())
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(t, "prometheus to be ready", 60*time.Second, func() bool {
		select {
		case <-done:
			t.Fatalf("prometheus exited:\n%s", out.String())
		default:
		}
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return base
}

// promData is two hours of samples, every 15 s, of counters (one reset),
// classic histograms, gauges and a series that stops, deterministic from
// a seed. Timestamps end in .500 s, off every evaluation time.
type promData struct {
	series []prompb.TimeSeries
	first  time.Time
	last   time.Time
}

func newPromData(end time.Time) *promData {
	// Two hours, so that no query window reaches back to the first
	// sample: where a counter starts inside the window, Prometheus 2.52
	// changed how far rate() extrapolates towards its zero point.
	const n = 500
	step := 15 * time.Second
	d := &promData{first: end.Add(-time.Duration(n) * step).Truncate(time.Second).Add(500 * time.Millisecond)}
	d.last = d.first.Add(time.Duration(n-1) * step)
	rnd := rand.New(rand.NewPCG(42, 1))
	ts := func(i int) int64 { return d.first.Add(time.Duration(i) * step).UnixMilli() }
	add := func(lbls []prompb.Label, from, to int, val func(i int) float64) {
		s := prompb.TimeSeries{Labels: lbls}
		for i := from; i < to; i++ {
			s.Samples = append(s.Samples, prompb.Sample{Timestamp: ts(i), Value: val(i)})
		}
		d.series = append(d.series, s)
	}
	lb := func(kv ...string) []prompb.Label {
		var out []prompb.Label
		for i := 0; i < len(kv); i += 2 {
			out = append(out, prompb.Label{Name: kv[i], Value: kv[i+1]})
		}
		sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
		return out
	}
	buckets := []string{"0.05", "0.1", "0.25", "0.5", "1", "+Inf"}
	for _, job := range []string{"api", "web", "db"} {
		for _, inst := range []string{"i1", "i2"} {
			up := 1.0
			if job == "web" && inst == "i2" {
				up = 0
			}
			add(lb("__name__", "up", "job", job, "instance", inst), 0, n, func(int) float64 { return up })
			for _, method := range []string{"GET", "POST"} {
				for _, code := range []string{"200", "500"} {
					base := 1 + rnd.Float64()*20
					if code == "500" {
						base /= 10
					}
					v := 0.0
					reset := job == "db" && inst == "i2" && method == "GET"
					add(lb("__name__", "http_requests_total", "job", job, "instance", inst, "method", method, "code", code), 0, n, func(i int) float64 {
						if reset && i == n/2 {
							v = 0
						}
						v += math.Round(base * 15 * (0.5 + rnd.Float64())) // whole requests
						return v
					})
				}
			}
			// A histogram: per step a random number of observations,
			// spread over the buckets; cumulative in le and in time.
			counts := make([]float64, len(buckets))
			var sum float64
			steps := make([][]float64, n)
			sums := make([]float64, n)
			for i := range n {
				obs := float64(10 + rnd.IntN(40))
				var cum float64
				for b := range buckets {
					share := obs * (0.15 + 0.1*rnd.Float64())
					if b == len(buckets)-1 {
						share = obs - cum
					}
					cum += math.Round(share)
					if cum > obs {
						cum = obs
					}
					counts[b] += cum
				}
				sum += obs * (0.05 + 0.5*rnd.Float64())
				steps[i] = append([]float64(nil), counts...)
				sums[i] = sum
			}
			for b, le := range buckets {
				add(lb("__name__", "http_request_duration_seconds_bucket", "job", job, "instance", inst, "le", le), 0, n, func(i int) float64 { return steps[i][b] })
			}
			add(lb("__name__", "http_request_duration_seconds_count", "job", job, "instance", inst), 0, n, func(i int) float64 { return steps[i][len(buckets)-1] })
			add(lb("__name__", "http_request_duration_seconds_sum", "job", job, "instance", inst), 0, n, func(i int) float64 { return sums[i] })
		}
	}
	for _, inst := range []string{"i1", "i2"} {
		for _, sensor := range []string{"a", "b", "c"} {
			v := 40 + rnd.Float64()*20
			add(lb("__name__", "node_temperature_celsius", "job", "node", "instance", inst, "sensor", sensor), 0, n, func(int) float64 {
				v += rnd.NormFloat64() * 0.7
				return math.Round(v*100) / 100
			})
		}
	}
	for q := 1; q <= 4; q++ {
		add(lb("__name__", "queue_depth", "queue", fmt.Sprintf("q%d", q)), 0, n, func(int) float64 { return float64(rnd.IntN(100)) })
	}
	// A batch job that stopped reporting 15 minutes ago.
	add(lb("__name__", "batch_last_success_timestamp_seconds", "job", "batch"), 0, n-60, func(i int) float64 { return float64(ts(i) / 1000) })
	return d
}

// remoteWrite sends the samples in time order, in requests of a few
// minutes each, as a Prometheus agent would: Prometheus 2.42 accepts
// samples in order only.
func (d *promData) remoteWrite(t *testing.T, url string) {
	t.Helper()
	const perRequest = 8
	for from := 0; ; from += perRequest {
		var req prompb.WriteRequest
		for _, s := range d.series {
			if from >= len(s.Samples) {
				continue
			}
			to := min(from+perRequest, len(s.Samples))
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: s.Labels, Samples: s.Samples[from:to]})
		}
		if len(req.Timeseries) == 0 {
			return
		}
		raw, err := proto.Marshal(&req)
		require.NoError(t, err)
		hr, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(snappy.Encode(nil, raw)))
		require.NoError(t, err)
		hr.Header.Set("Content-Encoding", "snappy")
		hr.Header.Set("Content-Type", "application/x-protobuf")
		hr.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
		resp, err := http.DefaultClient.Do(hr)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusNoContent, resp.StatusCode, "%s: %s", url, b)
	}
}

type promQuery struct {
	kind string // instant, range or both
	expr string
}

func readPromQueries(t *testing.T, mid time.Time) []promQuery {
	f, err := os.Open("testdata/promql-differential.txt")
	require.NoError(t, err)
	defer f.Close()
	var out []promQuery
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kind, expr, ok := strings.Cut(line, " ")
		require.True(t, ok && (kind == "instant" || kind == "range" || kind == "both"), "bad line %q", line)
		expr = strings.ReplaceAll(strings.TrimSpace(expr), "{mid}", promTime(mid))
		out = append(out, promQuery{kind: kind, expr: expr})
	}
	require.NoError(t, sc.Err())
	return out
}

func promTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

// promResult is a query result normalised for comparison: the series in
// label order (unless the query sorts), each with its points.
type promResult struct {
	Type   string
	Series []string
	Points [][][2]string
}

func queryProm(t *testing.T, base, path string, params url.Values, ordered bool) promResult {
	t.Helper()
	resp, err := http.PostForm(base+path, params)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s %v: %s", base, params, b)
	var body struct {
		Status string `json:"status"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(b, &body))
	res := promResult{Type: body.Data.ResultType}
	point := func(p [2]any) [2]string {
		return [2]string{strconv.FormatFloat(p[0].(float64), 'f', 3, 64), p[1].(string)}
	}
	type series struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
		Values [][2]any          `json:"values"`
	}
	var rows []series
	switch res.Type {
	case "vector", "matrix":
		require.NoError(t, json.Unmarshal(body.Data.Result, &rows))
	case "scalar", "string":
		var p [2]any
		require.NoError(t, json.Unmarshal(body.Data.Result, &p))
		rows = []series{{Value: p}}
	}
	if !ordered {
		sort.Slice(rows, func(i, j int) bool { return fmt.Sprint(rows[i].Metric) < fmt.Sprint(rows[j].Metric) })
	}
	for _, r := range rows {
		res.Series = append(res.Series, fmt.Sprint(r.Metric))
		var pts [][2]string
		if r.Values == nil {
			pts = append(pts, point(r.Value))
		}
		for _, p := range r.Values {
			pts = append(pts, point(p))
		}
		res.Points = append(res.Points, pts)
	}
	return res
}

// sameResult compares two results: types, series and timestamps exactly,
// values exactly or, for sums that Prometheus 3 computes with Kahan
// summation and 2.42 did not, to within 1e-9 relative. It returns what
// differs and whether all values were bit-identical.
func sameResult(a, b promResult) (diff string, exact bool) {
	if a.Type != b.Type {
		return fmt.Sprintf("result type %s vs %s", a.Type, b.Type), false
	}
	if len(a.Series) != len(b.Series) {
		return fmt.Sprintf("%d series vs %d:\n%v\n%v", len(a.Series), len(b.Series), a.Series, b.Series), false
	}
	exact = true
	for i := range a.Series {
		if a.Series[i] != b.Series[i] {
			return fmt.Sprintf("series %d: %s vs %s", i, a.Series[i], b.Series[i]), false
		}
		if len(a.Points[i]) != len(b.Points[i]) {
			return fmt.Sprintf("%s: %d points vs %d", a.Series[i], len(a.Points[i]), len(b.Points[i])), false
		}
		for j, p := range a.Points[i] {
			q := b.Points[i][j]
			if p[0] != q[0] {
				return fmt.Sprintf("%s: point %d at %s vs %s", a.Series[i], j, p[0], q[0]), false
			}
			if p[1] == q[1] {
				continue
			}
			exact = false
			x, err1 := strconv.ParseFloat(p[1], 64)
			y, err2 := strconv.ParseFloat(q[1], 64)
			if err1 != nil || err2 != nil || math.Abs(x-y) > 1e-9*math.Max(math.Abs(x), math.Abs(y)) {
				return fmt.Sprintf("%s at %s: %s vs %s", a.Series[i], p[0], p[1], q[1]), false
			}
		}
	}
	return "", exact
}

// TestPromQLDifferential writes the same samples to Sightline and to
// Debian's Prometheus server by remote write, then asks both the queries
// of testdata/promql-differential.txt, instant and range, over their
// HTTP APIs, and with promtool. The answers must agree.
func TestPromQLDifferential(t *testing.T) {
	prom := promServer(t)
	port, loki := freePort(t), freePort(t)
	start(t, []string{"testdata/query.yaml"}, "QUERY_PORT="+strconv.Itoa(port), "LOKI_PORT="+strconv.Itoa(loki))
	sl := fmt.Sprintf("http://127.0.0.1:%d", port)

	d := newPromData(time.Now())
	d.remoteWrite(t, prom+"/api/v1/write")
	d.remoteWrite(t, sl+"/api/v1/write")

	at := []time.Time{d.last.Add(7250 * time.Millisecond), d.last.Add(-23*time.Minute - 13750*time.Millisecond)}
	rangeStart, rangeEnd := at[0].Add(-40*time.Minute), at[0]
	queries := readPromQueries(t, d.first.Add(20*time.Minute+300*time.Millisecond))
	compared, exact := 0, 0
	for _, q := range queries {
		ordered := strings.HasPrefix(q.expr, "sort")
		empty := true
		check := func(what, path string, p url.Values) {
			want := queryProm(t, prom, path, p, ordered)
			got := queryProm(t, sl, path, p, ordered)
			diff, same := sameResult(want, got)
			if diff != "" {
				t.Errorf("%s %s: Prometheus and Sightline differ: %s", what, q.expr, diff)
			}
			empty = empty && len(want.Series) == 0
			compared++
			if same {
				exact++
			}
		}
		if q.kind != "range" {
			for _, ts := range at {
				check("instant", "/api/v1/query", url.Values{"query": {q.expr}, "time": {promTime(ts)}})
			}
		}
		if q.kind != "instant" {
			check("range", "/api/v1/query_range", url.Values{"query": {q.expr}, "start": {promTime(rangeStart)}, "end": {promTime(rangeEnd)}, "step": {"37"}})
		}
		if empty && !strings.HasPrefix(q.expr, "absent") {
			t.Errorf("%s: empty on both servers every time; the query tests nothing", q.expr)
		}
	}
	t.Logf("%d queries, %d comparisons; %d bit-identical, the rest within 1e-9 relative", len(queries), compared, exact)
	require.GreaterOrEqual(t, compared, 30)

	t.Run("promtool", func(t *testing.T) {
		promtool, err := exec.LookPath("promtool")
		require.NoError(t, err, "scripts/test.sh installs promtool with Debian's prometheus package")
		run := func(args ...string) string {
			out, err := exec.Command(promtool, args...).CombinedOutput()
			require.NoError(t, err, "promtool %v: %s", args, out)
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			sort.Strings(lines)
			return strings.Join(lines, "\n")
		}
		// No sums here: promtool prints full precision, and Prometheus 3
		// sums with Kahan compensation where 2.42 did not.
		for _, expr := range []string{`max by (job) (rate(http_requests_total[5m]))`, `histogram_quantile(0.9, rate(http_request_duration_seconds_bucket{job="api"}[5m]))`} {
			want := run("query", "instant", "--time="+at[0].Format(time.RFC3339Nano), prom, expr)
			got := run("query", "instant", "--time="+at[0].Format(time.RFC3339Nano), sl, expr)
			require.Equal(t, want, got)
			require.Contains(t, got, "=>")

			rng := []string{"query", "range", "--start=" + rangeStart.Format(time.RFC3339Nano), "--end=" + rangeEnd.Format(time.RFC3339Nano), "--step=1m"}
			want = run(append(rng, prom, expr)...)
			got = run(append(rng, sl, expr)...)
			require.Equal(t, want, got)
			require.Contains(t, got, "@[")
		}
	})
}
