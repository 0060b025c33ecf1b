package otlpguard

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/sightlinehq/sightline/internal/workload"
)

// heapOf returns the heap that decoding b takes, as long as the decoded
// request is held.
func heapOf(t *testing.T, sig Signal, b []byte, isJSON bool) int64 {
	t.Helper()
	type request interface {
		UnmarshalProto([]byte) error
		UnmarshalJSON([]byte) error
	}
	var req request
	switch sig {
	case Traces:
		r := ptraceotlp.NewExportRequest()
		req = &r
	case Metrics:
		r := pmetricotlp.NewExportRequest()
		req = &r
	case Logs:
		r := plogotlp.NewExportRequest()
		req = &r
	}
	var m runtime.MemStats
	// Twice: what sync.Pools held survives the first collection, and its
	// release must not count against the request.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	before := m.HeapAlloc
	var err error
	if isJSON {
		err = req.UnmarshalJSON(b)
	} else {
		err = req.UnmarshalProto(b)
	}
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&m)
	runtime.KeepAlive(req)
	return int64(m.HeapAlloc) - int64(before)
}

func field(f int, inner []byte) []byte {
	b := appendUvarint(nil, uint64(f<<3|2))
	b = appendUvarint(b, uint64(len(inner)))
	return append(b, inner...)
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// nested is n copies of leaf inside the messages of path, outermost first.
func nested(path []int, leaf []byte, n int) []byte {
	b := bytes.Repeat(leaf, n)
	for i := len(path) - 1; i >= 0; i-- {
		b = field(path[i], b)
	}
	return b
}

// Report.Decoded is what lets the guard refuse a request by the memory
// it would take: it must not fall short of the heap pdata really takes,
// least of all for the requests that take the most for their size (of
// empty messages, two bytes of protobuf or three of JSON each), and must
// not overstate typical telemetry so far that it is refused for nothing.
func TestDecodedEstimate(t *testing.T) {
	const n = 100_000
	empty := func(f int) []byte { return []byte{byte(f<<3 | 2), 0} }
	emptyJSON := func(prefix, elem, suffix string) []byte {
		return []byte(prefix + strings.Repeat(elem+",", n) + elem + suffix)
	}
	tb, lb, tj := workloadRequests()
	for _, c := range []struct {
		name    string
		sig     Signal
		b       []byte
		json    bool
		typical bool // not to be overstated either
	}{
		{name: "resource spans", sig: Traces, b: nested(nil, empty(1), n)},
		{name: "spans", sig: Traces, b: nested([]int{1, 2}, empty(2), n)},
		{name: "span attributes", sig: Traces, b: nested([]int{1, 2, 2}, empty(9), n)},
		{name: "events", sig: Traces, b: nested([]int{1, 2, 2}, empty(11), n)},
		{name: "links", sig: Traces, b: nested([]int{1, 2, 2}, empty(13), n)},
		{name: "array values", sig: Traces, b: nested([]int{1, 2, 2, 9, 2, 5}, empty(1), n)},
		{name: "log records", sig: Logs, b: nested([]int{1, 2}, empty(2), n)},
		{name: "log bodies", sig: Logs, b: nested([]int{1, 2}, field(2, empty(5)), n)},
		{name: "metrics", sig: Metrics, b: nested([]int{1, 2}, field(2, empty(10)), n)},
		{name: "exponential histogram points", sig: Metrics, b: nested([]int{1, 2, 2, 10}, empty(1), n)},
		{name: "summary quantiles", sig: Metrics, b: nested([]int{1, 2, 2, 11, 1}, empty(6), n)},
		{name: "exemplars", sig: Metrics, b: nested([]int{1, 2, 2, 5, 1}, empty(5), n)},
		{name: "JSON resource spans", sig: Traces, json: true, b: emptyJSON(`{"resourceSpans":[`, `{}`, `]}`)},
		{name: "JSON spans", sig: Traces, json: true, b: emptyJSON(`{"resource_spans":[{"scope_spans":[{"spans":[`, `{}`, `]}]}]}`)},
		{name: "JSON attributes", sig: Traces, json: true, b: emptyJSON(`{"resourceSpans":[{"resource":{"attributes":[`, `{"value":{}}`, `]}}]}`)},
		{name: "JSON data points", sig: Metrics, json: true, b: emptyJSON(`{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"histogram":{"dataPoints":[`, `{}`, `]}}]}]}]}`)},
		// Typical telemetry: the workload generator's spans and logs.
		{name: "workload spans", sig: Traces, b: tb, typical: true},
		{name: "workload logs", sig: Logs, b: lb, typical: true},
		{name: "workload JSON spans", sig: Traces, b: tj, json: true, typical: true},
	} {
		var rep Report
		var err error
		if c.json {
			rep, err = ScanJSON(c.b, Limits{})
		} else {
			rep, err = ScanProto(c.sig, c.b, Limits{})
		}
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		heap := heapOf(t, c.sig, c.b, c.json)
		t.Logf("%s: %d bytes, %d decoded, estimated %d", c.name, len(c.b), heap, rep.Decoded)
		if rep.Decoded < heap*9/10 || c.typical && rep.Decoded > heap*2 {
			t.Errorf("%s: estimated %d bytes decoded, pdata took %d", c.name, rep.Decoded, heap)
		}
	}
}

// workloadRequests encodes a batch of the workload generator's, which is
// garbage by the time the requests are measured: held while heapOf
// measures, its release would count against the decoded request.
func workloadRequests() (traces, logs, tracesJSON []byte) {
	td, ld := workload.New(3, time.Now(), workload.Options{}).Batch(300)
	traces, _ = ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	logs, _ = plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	tracesJSON, _ = ptraceotlp.NewExportRequestFromTraces(td).MarshalJSON()
	return traces, logs, tracesJSON
}
