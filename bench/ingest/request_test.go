package main

import (
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/sightlinehq/sightline/internal/workload"
)

// A salted request decodes to the generated spans with each trace ID
// XOR the mask, and to nothing else changed.
func TestRequestSaltsEveryTraceID(t *testing.T) {
	g := workload.New(1, time.Unix(1_700_000_000, 0), workload.Options{})
	td, _ := g.Batch(20)
	want := ptraceotlp.NewExportRequestFromTraces(td)
	wantBody, err := want.MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	r, err := newRequest(td)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		mask := saltMask(uint64(round))
		r.salt(mask)
		got := ptraceotlp.NewExportRequest()
		if err := got.UnmarshalProto(r.body); err != nil {
			t.Fatal(err)
		}
		// Salting the expected request's IDs the same way must give the
		// same bytes.
		exp := ptraceotlp.NewExportRequest()
		if err := exp.UnmarshalProto(wantBody); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, rs := range exp.Traces().ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, sp := range ss.Spans().All() {
					sp.SetTraceID(salted(sp.TraceID(), mask))
					n++
				}
			}
		}
		if n != r.spans || n == 0 {
			t.Fatalf("request counts %d spans, the batch has %d", r.spans, n)
		}
		expBody, _ := exp.MarshalProto()
		gotBody, _ := got.MarshalProto()
		if string(expBody) != string(gotBody) {
			t.Fatalf("round %d: the salted request differs from the batch with salted trace IDs", round)
		}
		if mask == ([16]byte{}) || salted(pcommon.TraceID{}, mask) == (pcommon.TraceID{}) {
			t.Fatal("empty mask")
		}
	}
}
