// Package otlpguard checks OTLP requests before they are decoded.
//
// pdata decodes OTLP recursively: an AnyValue holding an array or a
// key/value list is decoded by a call that decodes its elements, so an
// attribute nested a million levels deep (17 MB of protobuf, well under a
// receiver's default size limit) exhausts the goroutine stack, and a Go
// stack overflow is fatal: no recover() catches it, and the process that
// dies takes the store, the query API and the UI with it.
//
// The checks here walk the encoded request once, iteratively, with a stack
// that the limits bound, and refuse a request that nests values deeper than
// Limits.MaxDepth before any decoder sees it. The protobuf walk follows the
// OTLP schema: it descends only into the fields that are messages on the
// path to an AnyValue and skips every other field by its wire length, so it
// is linear in the request size and allocates nothing. Input it cannot
// frame (a truncated varint, a length past its parent's end, a group) is
// refused too: the decoder would refuse it anyway, and a walk that gave up
// early could not vouch for what follows.
//
// The same walk estimates the heap the request takes decoded
// (Report.Decoded), message by message, for admission to bound: a request
// of empty messages takes a hundred times its size, typical telemetry a
// few times.
//
// The checks are wired in front of the upstream `otlp` receiver by
// WrapReceiverFactory (HTTP as a handler middleware, gRPC as a codec), and
// called directly by Sightline's own OTLP endpoints.
package otlpguard

import (
	"errors"
	"fmt"
)

// DefaultMaxDepth is the deepest AnyValue nesting accepted: a string
// attribute is at depth 1, a list of strings at depth 2. Real telemetry stays in
// single digits (a JSON document flattened into a kvlist rarely passes 10);
// 64 leaves room and costs pdata's recursive decoder a few kilobytes of
// stack.
const DefaultMaxDepth = 64

// ErrTooDeep is returned for a request that nests values deeper than the
// limit. It is permanent: the same request will always be refused.
var ErrTooDeep = errors.New("attribute values nested too deeply")

// ErrMalformed is returned for a request whose protobuf or JSON framing is
// broken. It is permanent.
var ErrMalformed = errors.New("malformed OTLP request")

// ErrInvalidIDs is returned for a traces request whose every span has a
// missing or all-zero trace_id or span_id. It is permanent.
var ErrInvalidIDs = errors.New("invalid span IDs")

// Limits bound what a request may contain.
type Limits struct {
	// MaxDepth is the deepest AnyValue nesting accepted; <= 0 means
	// DefaultMaxDepth.
	MaxDepth int
	// MaxInflightBytes bounds the estimated decoded bytes
	// (Report.Decoded) of the export requests being decoded and served at
	// once; a request past it is refused retryably before it is decoded.
	// 0 means 1/32 of the Go runtime's soft memory limit (of 75% of the
	// host's memory without one), < 0 none.
	MaxInflightBytes int64
	// MaxRequestBytes bounds the estimated decoded bytes of one request;
	// a request past it is refused permanently (ErrTooLarge) before it is
	// decoded. 0 means half the Go runtime's soft memory limit (of 75% of
	// the host's memory without one), < 0 none.
	MaxRequestBytes int64
}

func (l Limits) maxDepth() int {
	if l.MaxDepth <= 0 {
		return DefaultMaxDepth
	}
	return l.MaxDepth
}

// Signal names an OTLP export request type.
type Signal uint8

// The OTLP export requests.
const (
	Traces Signal = iota + 1
	Metrics
	Logs
)

func (s Signal) String() string {
	switch s {
	case Traces:
		return "traces"
	case Metrics:
		return "metrics"
	case Logs:
		return "logs"
	}
	return "unknown"
}

// msg is a node of the OTLP schema as far as nesting is concerned: the
// message types that can lead to an AnyValue.
type msg uint8

const (
	mNone msg = iota
	mTracesReq
	mMetricsReq
	mLogsReq
	mResourceSpans
	mResourceMetrics
	mResourceLogs
	mResource
	mScopeSpans
	mScopeMetrics
	mScopeLogs
	mScope
	mSpan
	mEvent
	mLink
	mLogRecord
	mMetric
	mGauge // also Sum, Histogram, ExponentialHistogram and Summary: field 1 is their data points
	mNumberPoint
	mHistogramPoint
	mExpHistogramPoint
	mSummaryPoint
	mExemplar
	mQuantile // a summary point's ValueAtQuantile: nothing in it to walk, only to count
	mKeyValue
	mAnyValue
	mArrayValue
	mKeyValueList
	nMsg
)

// children[m][field] is the message type of field in m, for the fields the
// walk descends into (field numbers from opentelemetry-proto v1).
var children = func() [nMsg][]msg {
	var c [nMsg][]msg
	set := func(m msg, field int, child msg) {
		for len(c[m]) <= field {
			c[m] = append(c[m], mNone)
		}
		c[m][field] = child
	}
	set(mTracesReq, 1, mResourceSpans)
	set(mMetricsReq, 1, mResourceMetrics)
	set(mLogsReq, 1, mResourceLogs)

	set(mResourceSpans, 1, mResource)
	set(mResourceSpans, 2, mScopeSpans)
	set(mResourceMetrics, 1, mResource)
	set(mResourceMetrics, 2, mScopeMetrics)
	set(mResourceLogs, 1, mResource)
	set(mResourceLogs, 2, mScopeLogs)
	set(mResource, 1, mKeyValue) // attributes

	set(mScopeSpans, 1, mScope)
	set(mScopeSpans, 2, mSpan)
	set(mScopeMetrics, 1, mScope)
	set(mScopeMetrics, 2, mMetric)
	set(mScopeLogs, 1, mScope)
	set(mScopeLogs, 2, mLogRecord)
	set(mScope, 3, mKeyValue) // attributes

	set(mSpan, 9, mKeyValue) // attributes
	set(mSpan, 11, mEvent)
	set(mSpan, 13, mLink)
	set(mEvent, 3, mKeyValue)
	set(mLink, 4, mKeyValue)

	set(mLogRecord, 5, mAnyValue) // body
	set(mLogRecord, 6, mKeyValue) // attributes

	set(mMetric, 5, mGauge)
	set(mMetric, 7, mGauge) // sum
	set(mMetric, 9, mGauge) // histogram
	set(mMetric, 10, mGauge)
	set(mMetric, 11, mGauge) // summary
	set(mMetric, 12, mKeyValue)
	// The containers differ only in their point type; the walk tells them
	// apart by the Metric field it came through (see pointType).
	set(mNumberPoint, 7, mKeyValue)
	set(mNumberPoint, 5, mExemplar)
	set(mHistogramPoint, 9, mKeyValue)
	set(mHistogramPoint, 8, mExemplar)
	set(mExpHistogramPoint, 1, mKeyValue)
	set(mExpHistogramPoint, 11, mExemplar)
	set(mSummaryPoint, 7, mKeyValue)
	set(mSummaryPoint, 6, mQuantile)
	set(mExemplar, 7, mKeyValue)

	set(mKeyValue, 2, mAnyValue)
	set(mAnyValue, 5, mArrayValue)
	set(mAnyValue, 6, mKeyValueList)
	set(mArrayValue, 1, mAnyValue)
	set(mKeyValueList, 1, mKeyValue)
	return c
}()

// pointType is the data point message of a metric container reached
// through Metric field f.
func pointType(f uint64) msg {
	switch f {
	case 5, 7:
		return mNumberPoint
	case 9:
		return mHistogramPoint
	case 10:
		return mExpHistogramPoint
	case 11:
		return mSummaryPoint
	}
	return mNone
}

// decodedCost is about the heap, in bytes, that pdata takes for one
// message of each type beyond the bytes of its strings: its struct, the
// slice element or pointer that holds it, a oneof's wrapper. Measured with
// pdata v1 by decoding requests of 200k empty messages of each type (the
// figures include slice growth), and rounded up. A message embedded in
// its parent's struct (a resource, a scope) costs nothing of its own.
//
// Empty messages are where a request is largest decoded for its size: two
// bytes of protobuf each, so 4 MiB of empty spans is 2M spans and 460 MiB
// of heap. The workload generator's spans decode to 3.4 times their size.
// TestDecodedEstimate holds the estimate to pdata's heap for both.
var decodedCost = [nMsg]int64{
	mResourceSpans: 136, mResourceMetrics: 136, mResourceLogs: 136,
	mScopeSpans: 120, mScopeMetrics: 120, mScopeLogs: 120,
	mSpan: 232, mEvent: 72, mLink: 88, mLogRecord: 136,
	mMetric: 104, mGauge: 40,
	mNumberPoint: 104, mHistogramPoint: 168, mExpHistogramPoint: 216, mSummaryPoint: 104,
	mExemplar: 88, mQuantile: 24,
	mKeyValue: 44, mAnyValue: 24, mArrayValue: 48, mKeyValueList: 48,
}

type frame struct {
	m     msg
	end   int
	field uint64 // the field of the parent this frame came through
	// ids has validIDTrace and validIDSpan set while the span this frame
	// walks has a usable trace_id and span_id.
	ids uint8
}

const (
	validTraceID uint8 = 1 << iota
	validSpanID
)

// Report is what a walk found that the request may be decoded with but
// not stored as it is.
type Report struct {
	// InvalidSpans have a trace_id or span_id that is missing or all
	// zeros, which OTLP defines as invalid; they are to be rejected with
	// partial success (FilterInvalidSpans).
	InvalidSpans int
	// Decoded is about the bytes of heap pdata would take to decode the
	// request: its length and the cost of each message in it
	// (decodedCost). The walk counts every message but the ones inside an
	// AnyValue it stops at for being too deep.
	Decoded int64
}

// CheckProto walks an OTLP export request of signal sig, encoded as
// protobuf, and returns an error wrapping ErrTooDeep or ErrMalformed if it
// must not be decoded. Typical requests walk without allocating.
func CheckProto(sig Signal, b []byte, lim Limits) error {
	_, err := ScanProto(sig, b, lim)
	return err
}

// ScanProto is CheckProto that also reports what the walk found.
func ScanProto(sig Signal, b []byte, lim Limits) (Report, error) {
	return scanProto(sig, b, lim, true)
}

// scanProto is ScanProto; skipScalarKVs lets it pass over a key/value
// whose value is a scalar without a frame (scalarKeyValue). It is false
// only in FuzzScalarKeyValues, which holds the two walks to one answer.
func scanProto(sig Signal, b []byte, lim Limits, skipScalarKVs bool) (Report, error) {
	var rep Report
	root := mNone
	switch sig {
	case Traces:
		root = mTracesReq
	case Metrics:
		root = mMetricsReq
	case Logs:
		root = mLogsReq
	default:
		return rep, fmt.Errorf("%w: unknown signal", ErrMalformed)
	}
	maxDepth := lim.maxDepth()
	// Everything but AnyValue nests a bounded number of levels (request →
	// resource → scope → span → event → key/value is 6), and each AnyValue
	// level adds at most two frames (AnyValue, then list or kvlist, then
	// key/value), so this bounds the stack.
	rep.Decoded = int64(len(b))
	var stackBuf [32]frame
	stack := append(stackBuf[:0], frame{m: root, end: len(b)})
	depth := 0 // AnyValues on the stack
	pos := 0
	for {
		top := &stack[len(stack)-1]
		if pos == top.end {
			switch top.m {
			case mAnyValue:
				depth--
			case mSpan:
				if top.ids != validTraceID|validSpanID {
					rep.InvalidSpans++
				}
			}
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return rep, nil
			}
			continue
		}
		tag, n := uvarint(b[pos:top.end])
		if n <= 0 {
			return rep, fmt.Errorf("%w: bad field tag at byte %d", ErrMalformed, pos)
		}
		pos += n
		field, wire := tag>>3, tag&7
		if field == 0 {
			return rep, fmt.Errorf("%w: field number 0 at byte %d", ErrMalformed, pos-n)
		}
		switch wire {
		case 0, 1, 5: // varint, fixed64, fixed32
			end, err := skipScalar(b[:top.end], pos, wire)
			if err != nil {
				return rep, err
			}
			pos = end
		case 2: // length-delimited
			l, n := uvarint(b[pos:top.end])
			if n <= 0 || l > uint64(top.end-pos-n) {
				return rep, fmt.Errorf("%w: field %d at byte %d is longer than its message", ErrMalformed, field, pos)
			}
			pos += n
			if top.m == mSpan && (field == 1 || field == 2) {
				// trace_id, span_id: the last one counts, as in decoding.
				bit, size := validTraceID, 16
				if field == 2 {
					bit, size = validSpanID, 8
				}
				if int(l) == size && !allZero(b[pos:pos+int(l)]) {
					top.ids |= bit
				} else {
					top.ids &^= bit
				}
			}
			child := mNone
			if kids := children[top.m]; field < uint64(len(kids)) {
				child = kids[field]
			}
			if top.m == mGauge && field == 1 {
				// A metric's container: its points' type depends on the
				// Metric field it came through.
				child = pointType(top.field)
			}
			rep.Decoded += decodedCost[child]
			if child == mNone || child == mQuantile {
				pos += int(l)
				continue
			}
			if child == mKeyValue && skipScalarKVs && depth < maxDepth {
				if ok, values := scalarKeyValue(b[pos : pos+int(l)]); ok {
					// Nearly every attribute: a frame for it would find
					// its key and one scalar value, nothing to refuse.
					rep.Decoded += int64(values) * decodedCost[mAnyValue]
					pos += int(l)
					continue
				}
			}
			if child == mAnyValue {
				if depth < maxDepth && scalarValue(b[pos:pos+int(l)]) {
					// Nothing in it to walk: what its frame would check.
					pos += int(l)
					continue
				}
				depth++
				if depth > maxDepth {
					return rep, fmt.Errorf("%w: deeper than %d levels", ErrTooDeep, maxDepth)
				}
			}
			stack = append(stack, frame{m: child, end: pos + int(l), field: field})
		case 3: // start group: not OTLP, but decoders skip it as unknown
			end, err := skipGroup(b[:top.end], pos)
			if err != nil {
				return rep, err
			}
			pos = end
		default:
			return rep, fmt.Errorf("%w: wire type %d at byte %d", ErrMalformed, wire, pos-n)
		}
	}
}

// scalarValue reports whether an encoded AnyValue is one well-framed field
// that is not an array or a key/value list: a string, bool, int, double or
// bytes value, nearly every attribute's. Its walk would find nothing to
// refuse, so the walk skips it without a frame. Anything else, malformed
// input included, is left to the walk.
func scalarValue(v []byte) bool {
	tag, n := uvarint(v)
	if n <= 0 || tag>>3 == 0 || tag>>3 == 5 || tag>>3 == 6 {
		return false
	}
	rest := v[n:]
	switch tag & 7 {
	case 0:
		_, m := uvarint(rest)
		return m > 0 && m == len(rest)
	case 1:
		return len(rest) == 8
	case 2:
		l, m := uvarint(rest)
		return m > 0 && l == uint64(len(rest)-m)
	}
	return false
}

// scalarKeyValue reports whether an encoded KeyValue is a key (field 1)
// and a value (field 2) that scalarValue accepts, in either order (pdata
// writes the value first), or one of the two alone: what a walk of it
// would pass without a finding. Any other layout, malformed input
// included, is left to the walk. values is 1 if it holds the value.
func scalarKeyValue(kv []byte) (ok bool, values int) {
	const keyTag, valueTag = 1<<3 | 2, 2<<3 | 2
	var key, value bool
	for len(kv) > 0 {
		tag := kv[0]
		switch {
		case tag == keyTag && !key:
			key = true
		case tag == valueTag && !value:
			value = true
		default:
			return false, 0
		}
		l, n := uvarint(kv[1:])
		if n <= 0 || l > uint64(len(kv)-1-n) {
			return false, 0
		}
		field := kv[1+n : 1+n+int(l)]
		if tag == valueTag && !scalarValue(field) {
			return false, 0
		}
		kv = kv[1+n+int(l):]
	}
	if value {
		values = 1
	}
	return true, values
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// skipGroup skips a group whose start tag ends before pos exactly as
// pdata's decoder does, so that the walk and the decoder stay in step: it
// counts start and end tags without recursion, and the group ends at its
// matching end tag or right after the first field that is not a group tag.
func skipGroup(b []byte, pos int) (int, error) {
	depth := 1
	for {
		if pos >= len(b) {
			return 0, fmt.Errorf("%w: unterminated group", ErrMalformed)
		}
		tag, n := uvarint(b[pos:])
		if n <= 0 || tag>>3 == 0 {
			return 0, fmt.Errorf("%w: bad field tag in group at byte %d", ErrMalformed, pos)
		}
		pos += n
		switch tag & 7 {
		case 0, 1, 5:
			return skipScalar(b, pos, tag&7)
		case 2:
			l, n := uvarint(b[pos:])
			if n <= 0 || l > uint64(len(b)-pos-n) {
				return 0, fmt.Errorf("%w: bad length in group at byte %d", ErrMalformed, pos)
			}
			return pos + n + int(l), nil
		case 3:
			depth++
		case 4:
			depth--
			if depth == 0 {
				return pos, nil
			}
		default:
			return 0, fmt.Errorf("%w: wire type %d at byte %d", ErrMalformed, tag&7, pos-n)
		}
	}
}

// skipScalar skips a varint (wire type 0), fixed64 (1) or fixed32 (5)
// value that starts at pos.
func skipScalar(b []byte, pos int, wire uint64) (int, error) {
	switch wire {
	case 0:
		if _, n := uvarint(b[pos:]); n > 0 {
			return pos + n, nil
		}
		return 0, fmt.Errorf("%w: bad varint at byte %d", ErrMalformed, pos)
	case 1:
		if len(b)-pos >= 8 {
			return pos + 8, nil
		}
		return 0, fmt.Errorf("%w: truncated fixed64 at byte %d", ErrMalformed, pos)
	default:
		if len(b)-pos >= 4 {
			return pos + 4, nil
		}
		return 0, fmt.Errorf("%w: truncated fixed32 at byte %d", ErrMalformed, pos)
	}
}

// uvarint decodes a protobuf varint as pdata does (at most 10 bytes, bits
// past 64 ignored); n <= 0 means truncated or overlong.
func uvarint(b []byte) (v uint64, n int) {
	if len(b) > 0 && b[0] < 0x80 {
		// Tags and most lengths: one byte.
		return uint64(b[0]), 1
	}
	for i := 0; i < len(b) && i < 10; i++ {
		c := b[i]
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

// CheckJSON refuses an OTLP/JSON request nested deeper than the limit
// allows. In OTLP/JSON each AnyValue level is three JSON levels
// ({"arrayValue":{"values":[...), and the envelope down to the deepest
// attribute (an exemplar's) takes 12, so the JSON limit is 3×MaxDepth+12.
// The scan counts brackets outside strings and checks nothing else, which
// is the decoder's job; it is exact for exemplars and lets a span
// attribute, whose envelope is shallower, go at most two levels past
// MaxDepth, which is as safe.
func CheckJSON(b []byte, lim Limits) error {
	_, err := ScanJSON(b, lim)
	return err
}

// ScanJSON is CheckJSON that also estimates the request's size decoded
// (Report.Decoded), from the objects in it: an object's cost is its
// message type's (decodedCost), known by the field that holds it or the
// array it is an element of. Report.InvalidSpans is not counted.
func ScanJSON(b []byte, lim Limits) (Report, error) {
	limit := 3*lim.maxDepth() + 12
	rep := Report{Decoded: int64(len(b))}
	// arrays[d] is the cost of an object element of the array at
	// bracket depth d+1, 0 for an object.
	var arraysBuf [32]int64 // deeper requests grow it, up to the limit
	arrays := arraysBuf[:0]
	inStr := false
	strStart, strEnd := 0, 0 // the last string's contents
	key := -1                // the start of the key whose value comes next, -1 for none
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inStr {
			switch c {
			case '\\':
				i++
			case '"':
				inStr = false
				strEnd = i
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
			strStart = i + 1
			continue
		case ':':
			key = strStart
			continue
		case ' ', '\t', '\r', '\n':
			continue
		case '{', '[':
			if len(arrays) >= limit {
				return rep, fmt.Errorf("%w: JSON nested deeper than %d levels (%d value levels)", ErrTooDeep, limit, lim.maxDepth())
			}
			var name []byte
			if key >= 0 && key <= strEnd {
				name = b[key:strEnd]
			}
			if c == '[' {
				arrays = append(arrays, jsonElementCost(name))
			} else {
				if name != nil {
					rep.Decoded += jsonFieldCost(name)
				} else if d := len(arrays); d > 0 {
					rep.Decoded += arrays[d-1]
				}
				arrays = append(arrays, 0)
			}
		case '}', ']':
			if len(arrays) > 0 {
				arrays = arrays[:len(arrays)-1]
			}
		}
		key = -1
	}
	return rep, nil
}

// jsonName folds an OTLP/JSON field name as pdata's decoder matches it:
// lowerCamelCase and the proto's snake_case are the same field.
func jsonName(dst, name []byte) []byte {
	for _, c := range name {
		if c == '_' {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// jsonElementCost is the cost of an object in the array held by field
// name: a message of the repeated field's type.
func jsonElementCost(name []byte) int64 {
	var buf [32]byte
	switch string(jsonName(buf[:0], name)) {
	case "resourcespans", "resourcemetrics", "resourcelogs":
		return decodedCost[mResourceSpans]
	case "scopespans", "scopemetrics", "scopelogs":
		return decodedCost[mScopeSpans]
	case "spans":
		return decodedCost[mSpan]
	case "events":
		return decodedCost[mEvent]
	case "links":
		return decodedCost[mLink]
	case "logrecords":
		return decodedCost[mLogRecord]
	case "metrics":
		return decodedCost[mMetric]
	case "datapoints":
		return decodedCost[mExpHistogramPoint] // the dearest point type
	case "exemplars":
		return decodedCost[mExemplar]
	case "quantilevalues":
		return decodedCost[mQuantile]
	case "attributes", "metadata", "filteredattributes", "values":
		return decodedCost[mKeyValue] // values: a list's key/values, or an array's dearer values
	}
	return 0
}

// jsonFieldCost is the cost of an object that is the value of field name.
func jsonFieldCost(name []byte) int64 {
	var buf [32]byte
	switch string(jsonName(buf[:0], name)) {
	case "value", "body":
		return decodedCost[mAnyValue]
	case "arrayvalue", "kvlistvalue":
		return decodedCost[mArrayValue]
	case "gauge", "sum", "histogram", "exponentialhistogram", "summary":
		return decodedCost[mGauge]
	}
	return 0
}
