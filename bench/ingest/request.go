package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// exportMethod is OTLP/gRPC's trace export, called with the request's
// encoded bytes.
const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// request is a pre-generated export request kept encoded: each send
// writes the request's salted trace IDs into the bytes at their offsets
// instead of encoding the request again. At the rates this benchmark
// offers, encoding each request cost the load generator, which shares the
// server's cores, several microseconds of CPU a span.
type request struct {
	body   []byte
	spans  int
	offs   []int             // of each span's trace ID in body
	ids    []pcommon.TraceID // each span's trace ID before salting
	counts map[pcommon.TraceID]int
}

// newRequest encodes td and finds where each span's trace ID lies in the
// encoding: it encodes the spans with random IDs in their place, which
// occur nowhere else in the bytes, and looks for them in order. It takes
// td: the spans keep the random IDs.
func newRequest(td ptrace.Traces) (request, error) {
	r := request{counts: map[pcommon.TraceID]int{}}
	var marks []pcommon.TraceID
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				id := sp.TraceID()
				r.ids = append(r.ids, id)
				r.counts[id]++
				var m pcommon.TraceID
				for i := range m {
					m[i] = byte(rand.Uint32())
				}
				marks = append(marks, m)
				sp.SetTraceID(m)
			}
		}
	}
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		return request{}, err
	}
	at := 0
	for k, m := range marks {
		i := bytes.Index(body[at:], m[:])
		if i < 0 {
			return request{}, fmt.Errorf("span %d's trace ID not found in its encoding", k)
		}
		at += i
		r.offs = append(r.offs, at)
		copy(body[at:], r.ids[k][:])
		at += len(m)
	}
	r.body, r.spans = body, len(marks)
	return r, nil
}

// salt writes each span's trace ID XOR mask into the request's bytes.
func (r *request) salt(mask [16]byte) {
	for k, off := range r.offs {
		id := salted(r.ids[k], mask)
		copy(r.body[off:off+16], id[:])
	}
}

// rawCodec sends a request's bytes as they are and ignores the answer's:
// the benchmark counts acknowledgements by status.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal([]byte, any) error   { return nil }
func (rawCodec) Name() string                  { return "proto" }
