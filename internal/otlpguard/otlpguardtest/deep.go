// Package otlpguardtest builds hostile OTLP requests for tests: values
// nested deeper than any decoder should be asked to recurse. They are
// written directly in wire format, since pdata's own encoder would recurse
// as deeply as its decoder.
package otlpguardtest

import (
	"encoding/binary"
	"strings"

	"google.golang.org/grpc/mem"
)

// Shape is how each level nests.
type Shape int

// Nesting shapes: an array holding an array, or a key/value list holding a
// key whose value is a key/value list.
const (
	Array Shape = iota
	KVList
)

// DeepTracesProto returns an ExportTraceServiceRequest with one span whose
// attribute "a" nests levels AnyValues deep (levels-1 lists around an
// empty value).
func DeepTracesProto(levels int, shape Shape) []byte {
	value := deepAnyValue(levels-1, shape)
	kv := msg(nil, 1, []byte("a"))
	kv = msg(kv, 2, value)
	span := msg(nil, 1, []byte{0: 1, 15: 2}) // trace_id
	span = msg(span, 2, []byte{0: 3, 7: 4})  // span_id
	span = msg(span, 5, []byte("deep"))      // name
	span = append(span, 0x39)                // start_time_unix_nano, fixed64
	span = binary.LittleEndian.AppendUint64(span, 1_700_000_000_000_000_000)
	span = append(span, 0x41) // end_time_unix_nano, fixed64
	span = binary.LittleEndian.AppendUint64(span, 1_700_000_000_100_000_000)
	span = msg(span, 9, kv) // attributes
	scope := msg(nil, 2, span)
	rs := msg(nil, 2, scope)
	return msg(nil, 1, rs)
}

// DeepLogsProto returns an ExportLogsServiceRequest with one record whose
// body nests levels AnyValues deep.
func DeepLogsProto(levels int, shape Shape) []byte {
	rec := msg(nil, 5, deepAnyValue(levels-1, shape))
	scope := msg(nil, 2, rec)
	rl := msg(nil, 2, scope)
	return msg(nil, 1, rl)
}

// deepAnyValue writes levels lists around an empty AnyValue, outside in: the lengths are worked
// out inside out first, so the whole thing is written once, in O(levels).
func deepAnyValue(levels int, shape Shape) []byte {
	// lens[k] is the encoded size of the AnyValue k levels from the bottom;
	// inner[k] the size of its list message.
	lens := make([]int, levels+1)
	inner := make([]int, levels+1)
	for k := 1; k <= levels; k++ {
		switch shape {
		case Array:
			// ArrayValue{values(1): AnyValue}
			inner[k] = 1 + uvarintLen(lens[k-1]) + lens[k-1]
		case KVList:
			// KeyValueList{values(1): KeyValue{value(2): AnyValue}}: the
			// key is empty, which keeps a million levels under 16 MiB.
			kv := 1 + uvarintLen(lens[k-1]) + lens[k-1]
			inner[k] = 1 + uvarintLen(kv) + kv
		}
		lens[k] = 1 + uvarintLen(inner[k]) + inner[k]
	}
	out := make([]byte, 0, lens[levels])
	for k := levels; k >= 1; k-- {
		switch shape {
		case Array:
			out = append(out, 5<<3|2)
			out = binary.AppendUvarint(out, uint64(inner[k]))
			out = append(out, 1<<3|2)
			out = binary.AppendUvarint(out, uint64(lens[k-1]))
		case KVList:
			out = append(out, 6<<3|2)
			out = binary.AppendUvarint(out, uint64(inner[k]))
			kv := 1 + uvarintLen(lens[k-1]) + lens[k-1]
			out = append(out, 1<<3|2)
			out = binary.AppendUvarint(out, uint64(kv))
			out = append(out, 2<<3|2)
			out = binary.AppendUvarint(out, uint64(lens[k-1]))
		}
	}
	return out
}

// DeepTracesJSON is DeepTracesProto in OTLP/JSON.
func DeepTracesJSON(levels int) []byte {
	var b strings.Builder
	b.WriteString(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"01000000000000000000000000000002","spanId":"0300000000000004","name":"deep",` +
		`"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000","attributes":[{"key":"a","value":`)
	b.WriteString(strings.Repeat(`{"arrayValue":{"values":[`, levels-1))
	b.WriteString(`{"stringValue":"bottom"}`)
	b.WriteString(strings.Repeat(`]}}`, levels-1))
	b.WriteString(`}]}]}]}]}`)
	return []byte(b.String())
}

func msg(dst []byte, field int, payload []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(field<<3|2))
	dst = binary.AppendUvarint(dst, uint64(len(payload)))
	return append(dst, payload...)
}

func uvarintLen(v int) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// RawCodec is a gRPC codec that sends pre-encoded bytes ([]byte) and
// receives the reply undecoded (*[]byte), for sending requests that no
// encoder would build: grpc.ForceCodecV2(RawCodec{}).
type RawCodec struct{}

// Name is "proto", so servers decode the bytes as the request they expect.
func (RawCodec) Name() string { return "proto" }

// Marshal sends v, a []byte, as it is.
func (RawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

// Unmarshal stores the reply's bytes in v, a *[]byte.
func (RawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}
