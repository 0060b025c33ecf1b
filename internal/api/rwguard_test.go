package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb"
	"go.opentelemetry.io/collector/component"
	"go.uber.org/zap"

	"github.com/sightlinehq/sightline/internal/otlpguard"
	"github.com/sightlinehq/sightline/internal/otlpguard/otlpguardtest"
)

// rwField encodes inner as field f.
func rwField(f byte, inner []byte) []byte {
	b := []byte{f<<3 | 2}
	l := len(inner)
	for l >= 0x80 {
		b = append(b, byte(l)|0x80)
		l >>= 7
	}
	return append(append(b, byte(l)), inner...)
}

func remoteWrite(h http.Handler, raw []byte, v2 bool) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
	req.Header.Set("Content-Encoding", "snappy")
	ct := "application/x-protobuf"
	if v2 {
		ct += ";proto=io.prometheus.write.v2.Request"
	}
	req.Header.Set("Content-Type", ct)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// remoteWriteDecoded must not fall short of what Prometheus's handler
// allocates for the requests that cost it the most for their size, of
// empty messages of each kind, in remote write 1.0 and 2.0; and the guard
// refuses such a request past its bound, 413, with nothing written, and
// passes the rest to the handler.
func TestRemoteWriteGuard(t *testing.T) {
	mdb, err := tsdb.Open(t.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mdb.Close()
	a := New(createDefaultConfig().(*Config), nil, Stores{}, component.BuildInfo{Version: "test"}, zap.NewNop())
	a.metrics.open = func() (*tsdb.DB, error) { return mdb, nil }
	h := a.Handler()

	const n = 64 << 10
	for _, c := range []struct {
		name string
		v2   bool
		raw  []byte
	}{
		{"1.0 series", false, bytes.Repeat([]byte{0x0a, 0}, n)},
		{"1.0 labels", false, rwField(1, bytes.Repeat([]byte{0x0a, 0}, n))},
		{"1.0 samples", false, rwField(1, bytes.Repeat([]byte{0x12, 0}, n))},
		{"1.0 exemplars", false, rwField(1, bytes.Repeat([]byte{0x1a, 0}, n))},
		{"1.0 histograms", false, rwField(1, bytes.Repeat([]byte{0x22, 0}, n))},
		{"1.0 metadata", false, bytes.Repeat([]byte{0x1a, 0}, n)},
		{"2.0 series", true, append(rwField(4, nil), bytes.Repeat([]byte{0x2a, 0}, n)...)},
		{"2.0 samples", true, append(rwField(4, nil), rwField(5, bytes.Repeat([]byte{0x12, 0}, n))...)},
		{"2.0 histograms", true, append(rwField(4, nil), rwField(5, bytes.Repeat([]byte{0x1a, 0}, n))...)},
		{"2.0 exemplars", true, append(rwField(4, nil), rwField(5, bytes.Repeat([]byte{0x22, 0}, n))...)},
		{"2.0 label references", true, append(rwField(4, nil), rwField(5, rwField(1, bytes.Repeat([]byte{0}, 2*n)))...)},
		{"2.0 symbols", true, bytes.Repeat([]byte{0x22, 0}, n)},
	} {
		est, err := remoteWriteDecoded(c.raw, c.v2)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		before := m.TotalAlloc
		remoteWrite(h, c.raw, c.v2)
		runtime.ReadMemStats(&m)
		took := int64(m.TotalAlloc - before)
		t.Logf("%s: %d bytes, the handler allocated %d, estimated %d", c.name, len(c.raw), took, est)
		if est < took*9/10 {
			t.Errorf("%s: estimated %d bytes, the handler allocated %d", c.name, est, took)
		}
	}

	guarded := remoteWriteGuard(h, otlpguard.NewInflight(otlpguard.Limits{MaxRequestBytes: 8 << 20}))
	empty := bytes.Repeat([]byte{0x0a, 0}, n) // 128 KB, about 50 MB decoded
	if rec := remoteWrite(guarded, empty, false); rec.Code != http.StatusRequestEntityTooLarge || rec.Header().Get("Retry-After") != "" {
		t.Errorf("empty series past the bound: %d %s", rec.Code, rec.Body)
	}
	// A body that declares more than a request may take is refused unread.
	body := &otlpguardtest.CountingReader{R: bytes.NewReader(snappy.Encode(nil, empty))}
	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", body)
	req.ContentLength = 100 << 20
	rec := httptest.NewRecorder()
	guarded.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge || body.N != 0 {
		t.Errorf("100 MiB declared: %d after reading %d bytes; want 413 unread", rec.Code, body.N)
	}
	series := func() int {
		q, err := mdb.Querier(0, time.Now().Add(time.Hour).UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		names, _, err := q.LabelValues(t.Context(), "__name__", nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(names)
	}
	before := series()
	wr := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "guarded_up"}, {Name: "job", Value: "x"}},
		Samples: []prompb.Sample{{Timestamp: time.Now().UnixMilli(), Value: 1}},
	}}}
	raw, _ := wr.Marshal()
	if rec := remoteWrite(guarded, raw, false); rec.Code != http.StatusNoContent {
		t.Errorf("a request within the bound: %d %s", rec.Code, rec.Body)
	}
	if after := series(); after != before+1 {
		t.Errorf("metric names %d, then %d: the request within the bound was not written", before, after)
	}

	// While one request is being served, a second that would take the
	// bytes in flight past their bound is refused, retryably.
	held, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	blocking := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) == 1 { // the first request is held
			held <- struct{}{}
			<-release
		}
		w.WriteHeader(http.StatusNoContent)
	})
	one := remoteWriteEstimate(snappy.Encode(nil, raw), "application/x-protobuf", 0)
	guarded = remoteWriteGuard(blocking, otlpguard.NewInflight(otlpguard.Limits{MaxInflightBytes: one + one/2, MaxRequestBytes: 8 << 20}))
	done := make(chan int)
	go func() { done <- remoteWrite(guarded, raw, false).Code }()
	<-held
	if rec := remoteWrite(guarded, raw, false); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("past the bytes in flight: %d, Retry-After %q: %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	close(release)
	if code := <-done; code != http.StatusNoContent {
		t.Errorf("the held request: %d", code)
	}
	if rec := remoteWrite(guarded, raw, false); rec.Code != http.StatusNoContent {
		t.Errorf("once the first is answered: %d %s", rec.Code, rec.Body)
	}
}
