package otlpguard

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/sightlinehq/sightline/internal/otlpguard/otlpguardtest"
	"github.com/sightlinehq/sightline/internal/workload"
)

const fuzzDepth = 6

// valueDepth is the AnyValue depth of v, computed by pdata's own tree.
func valueDepth(v pcommon.Value) int {
	d := 0
	switch v.Type() {
	case pcommon.ValueTypeSlice:
		for _, e := range v.Slice().All() {
			d = max(d, valueDepth(e))
		}
	case pcommon.ValueTypeMap:
		for _, e := range v.Map().All() {
			d = max(d, valueDepth(e))
		}
	}
	return d + 1
}

func mapDepth(m pcommon.Map) int {
	d := 0
	for _, v := range m.All() {
		d = max(d, valueDepth(v))
	}
	return d
}

func tracesDepth(td ptrace.Traces) int {
	d := 0
	for _, rs := range td.ResourceSpans().All() {
		d = max(d, mapDepth(rs.Resource().Attributes()))
		for _, ss := range rs.ScopeSpans().All() {
			d = max(d, mapDepth(ss.Scope().Attributes()))
			for _, sp := range ss.Spans().All() {
				d = max(d, mapDepth(sp.Attributes()))
				for _, e := range sp.Events().All() {
					d = max(d, mapDepth(e.Attributes()))
				}
				for _, l := range sp.Links().All() {
					d = max(d, mapDepth(l.Attributes()))
				}
			}
		}
	}
	return d
}

// FuzzCheckProto holds the guard to pdata: whatever the guard passes,
// pdata decodes to a tree within the limit or refuses; whatever the guard
// calls malformed, pdata refuses too (no valid request is turned away); and
// nothing the guard calls too deep is within the limit.
func FuzzCheckProto(f *testing.F) {
	gen := workload.New(1, time.Unix(1_700_000_000, 0), workload.Options{})
	td, ld := gen.Batch(3)
	tb, _ := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	lb, _ := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	f.Add(tb)
	f.Add(lb)
	f.Add(otlpguardtest.DeepTracesProto(fuzzDepth, otlpguardtest.Array))
	f.Add(otlpguardtest.DeepTracesProto(fuzzDepth+1, otlpguardtest.KVList))
	f.Add(otlpguardtest.DeepTracesProto(200, otlpguardtest.KVList))
	// The request that crashed the process before the guard: a million
	// key/value lists, 14 MB.
	f.Add(otlpguardtest.DeepTracesProto(1_000_000, otlpguardtest.KVList))
	f.Fuzz(func(t *testing.T, b []byte) {
		err := CheckProto(Traces, b, Limits{MaxDepth: fuzzDepth})
		switch {
		case err == nil:
			td, perr := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
			if perr == nil && tracesDepth(td) > fuzzDepth {
				t.Fatalf("guard passed a request %d deep", tracesDepth(td))
			}
		case errors.Is(err, ErrMalformed):
			if _, perr := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b); perr == nil {
				t.Fatalf("guard refused a request pdata decodes: %v", err)
			}
		case errors.Is(err, ErrTooDeep):
			// Decoding it is what the guard is for; only small inputs are
			// shallow enough for pdata to survive the cross-check.
			if len(b) > 64<<10 {
				return
			}
			td, perr := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
			if perr == nil && tracesDepth(td) <= fuzzDepth {
				t.Fatalf("guard called a request of depth %d too deep: %v", tracesDepth(td), err)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// FuzzScalarKeyValues holds the walk that passes over scalar key/values
// (scalarKeyValue) to the walk that gives each of them a frame: both
// report the same and refuse the same, with the same message.
func FuzzScalarKeyValues(f *testing.F) {
	td, _ := workload.New(1, time.Unix(1_700_000_000, 0), workload.Options{}).Batch(3)
	tb, _ := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	f.Add(tb)
	// Key/values as other encoders write them: key first, a key alone, a
	// value alone, a key twice, a list value, an empty value.
	for _, kv := range [][]byte{
		{0x0a, 1, 'k', 0x12, 3, 0x0a, 1, 'v'},
		{0x0a, 1, 'k'},
		{0x12, 2, 0x18, 7},
		{0x0a, 1, 'k', 0x0a, 1, 'j', 0x12, 2, 0x18, 7},
		{0x12, 3, 0x2a, 1, 0x0a, 0x0a, 1, 'k'},
		{0x12, 0, 0x0a, 1, 'k'},
		{0x12, 2, 0x18, 0x80},
	} {
		f.Add(spanWithAttr(kv))
	}
	f.Add(otlpguardtest.DeepTracesProto(fuzzDepth, otlpguardtest.KVList))
	f.Fuzz(func(t *testing.T, b []byte) {
		lim := Limits{MaxDepth: fuzzDepth}
		fastRep, fastErr := scanProto(Traces, b, lim, true)
		rep, err := scanProto(Traces, b, lim, false)
		if fastRep != rep || fmt.Sprint(fastErr) != fmt.Sprint(err) {
			t.Fatalf("skipping scalar key/values: %+v, %v; walking them: %+v, %v", fastRep, fastErr, rep, err)
		}
	})
}

// spanWithAttr is a traces request of one span with valid IDs and the
// encoded key/value kv as its attribute.
func spanWithAttr(kv []byte) []byte {
	field := func(tag byte, body []byte) []byte {
		return append(protowire.AppendVarint([]byte{tag}, uint64(len(body))), body...)
	}
	span := field(0x0a, bytes.Repeat([]byte{1}, 16))
	span = append(span, field(0x12, bytes.Repeat([]byte{2}, 8))...)
	span = append(span, field(0x4a, kv)...)
	return field(0x0a, field(0x12, field(0x12, span)))
}

// FuzzCheckJSON: the scan never fails on anything but depth, and never
// panics.
func FuzzCheckJSON(f *testing.F) {
	f.Add(otlpguardtest.DeepTracesJSON(3))
	f.Add(otlpguardtest.DeepTracesJSON(300))
	f.Add([]byte(`{"a":"\"[[[[\\"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := CheckJSON(b, Limits{MaxDepth: fuzzDepth}); err != nil && !errors.Is(err, ErrTooDeep) {
			t.Fatal(err)
		}
	})
}

// FuzzHTTPHandler drives the guard as the receiver runs it: any body, as
// protobuf or JSON, through HTTPHandler into a handler that decodes with
// pdata as the otlp receiver does. Nothing may crash; a request the guard
// passes must decode, and one it answers 200 for had valid spans only
// reach the decoder.
func FuzzHTTPHandler(f *testing.F) {
	td, _ := workload.New(1, time.Unix(1_700_000_000, 0), workload.Options{}).Batch(2)
	good, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	goodJSON, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalJSON()
	mixed, _ := ptraceotlp.NewExportRequestFromTraces(mixedIDs(2)).MarshalProto()
	mixedJSON, _ := ptraceotlp.NewExportRequestFromTraces(mixedIDs(1)).MarshalJSON()
	f.Add(false, good)
	f.Add(true, goodJSON)
	f.Add(false, mixed)
	f.Add(true, mixedJSON)
	f.Add(false, otlpguardtest.DeepTracesProto(1000, otlpguardtest.KVList))
	f.Add(true, otlpguardtest.DeepTracesJSON(1000))
	f.Add(true, []byte(`{"resourceSpans":[{not json`))
	var decoded ptraceotlp.ExportRequest
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		decoded = ptraceotlp.NewExportRequest()
		var err error
		if r.Header.Get("Content-Type") == "application/json" {
			err = decoded.UnmarshalJSON(body)
		} else {
			err = decoded.UnmarshalProto(body)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	h := HTTPHandler(next, map[string]Signal{"/v1/traces": Traces}, Limits{MaxDepth: fuzzDepth})
	f.Fuzz(func(t *testing.T, isJSON bool, body []byte) {
		ct := "application/x-protobuf"
		if isJSON {
			ct = "application/json"
		}
		decoded = ptraceotlp.ExportRequest{}
		req := httptest.NewRequest(http.MethodPost, "/v1/traces", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusOK && decoded != (ptraceotlp.ExportRequest{}) {
			for _, rs := range decoded.Traces().ResourceSpans().All() {
				for _, ss := range rs.ScopeSpans().All() {
					for _, s := range ss.Spans().All() {
						if s.TraceID().IsEmpty() || s.SpanID().IsEmpty() {
							t.Fatalf("a span with invalid IDs reached the receiver")
						}
					}
				}
			}
			if d := tracesDepth(decoded.Traces()); d > fuzzDepth {
				t.Fatalf("depth %d passed the guard", d)
			}
		}
	})
}
