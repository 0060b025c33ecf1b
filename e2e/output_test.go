package e2e

import (
	"bufio"
	"bytes"
	"os"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// fileLines returns the lines the file exporter wrote so far, one OTLP JSON
// export request each. A missing file has no lines yet.
func fileLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	// The file exporter may be writing a line as it is read: only lines
	// it has ended count.
	b = b[:bytes.LastIndexByte(b, '\n')+1]
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			out = append(out, append([]byte(nil), sc.Bytes()...))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// exportedSpan is one span the file exporter wrote, with its resource.
type exportedSpan struct {
	Span     ptrace.Span
	Resource pcommon.Resource
}

func readSpans(t *testing.T, path string) []exportedSpan {
	t.Helper()
	var out []exportedSpan
	var u ptrace.JSONUnmarshaler
	for _, line := range fileLines(t, path) {
		td, err := u.UnmarshalTraces(line)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, s := range ss.Spans().All() {
					out = append(out, exportedSpan{Span: s, Resource: rs.Resource()})
				}
			}
		}
	}
	return out
}

func readLogs(t *testing.T, path string) []plog.LogRecord {
	t.Helper()
	var out []plog.LogRecord
	var u plog.JSONUnmarshaler
	for _, line := range fileLines(t, path) {
		ld, err := u.UnmarshalLogs(line)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, rl := range ld.ResourceLogs().All() {
			for _, sl := range rl.ScopeLogs().All() {
				for _, lr := range sl.LogRecords().All() {
					out = append(out, lr)
				}
			}
		}
	}
	return out
}

// sumPoint is one data point of a sum metric the file exporter wrote.
type sumPoint struct {
	Metric string
	Point  pmetric.NumberDataPoint
}

func readSumPoints(t *testing.T, path string) []sumPoint {
	t.Helper()
	var out []sumPoint
	var u pmetric.JSONUnmarshaler
	for _, line := range fileLines(t, path) {
		md, err := u.UnmarshalMetrics(line)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, rm := range md.ResourceMetrics().All() {
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					if m.Type() != pmetric.MetricTypeSum {
						continue
					}
					for _, dp := range m.Sum().DataPoints().All() {
						out = append(out, sumPoint{Metric: m.Name(), Point: dp})
					}
				}
			}
		}
	}
	return out
}

func strAttr(m pcommon.Map, key string) string {
	v, ok := m.Get(key)
	if !ok {
		return ""
	}
	return v.AsString()
}
