package tailsamplingprocessor

import (
	"fmt"
	"math"
	"slices"
	"sync"

	upstream "github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor"
	"go.opentelemetry.io/collector/featuregate"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protowire"
)

// Summaries: most traces are not kept (seven in eight with the seeds'
// policies), yet deciding one needs only a few fields of each span: its
// times, its status, the attributes the policies name. So a chunk is
// logged with a summary of its spans beside it, the spans with only those
// fields. At the deadline the summaries are read back and handed to the
// decider instead of the spans; upstream's code decides on them exactly as
// on the spans, since every field it reads is there. Only a kept trace's
// spans are decoded, when the forwarder puts them in place of the
// summaries it was given (buffer.restore).
//
// A summary is an OTLP ExportTraceServiceRequest shaped as the chunk's
// body (one ResourceSpans, the chunk's ScopeSpans, one span per span, in
// order), each span holding only: trace ID, parent span ID (upstream looks
// for the root), name (summaryName, so that a summary is never mistaken for
// a span), start and end time (latency), status code (status_code), and
// where the policies need them, the trace state (trace_state,
// probabilistic), the flags (trace_flags) and the attributes with the keys
// the attribute policies name, every one of them in their order, so that
// upstream's lookup finds the same value. Span count is the same, so
// span_count and rate_limiting count alike.
//
// Summaries are used only when every policy is one of those: ottl_condition
// reads any field, bytes_limiting and maximum_trace_size_bytes count the
// spans' bytes, policy extensions are opaque, and the usetracestate and
// metricstatcountbytessampled feature gates rewrite or measure the spans.
// recordpolicy is fine: it marks the scopes, which the forwarder keeps.

// summaryName is every summary span's name: one NUL, which no span is
// named in practice, and which costs a byte and no allocation to decode.
const summaryName = "\x00"

// summaryFields is what the configured policies read of a span beyond what
// every summary holds.
type summaryFields struct {
	keys       []string
	traceState bool
	flags      bool
}

// summaryFieldsFor returns the fields the policies of cfg read, or why
// they cannot decide on summaries.
func summaryFieldsFor(cfg *upstream.Config) (summaryFields, string) {
	var f summaryFields
	if cfg.MaximumTraceSizeBytes > 0 {
		return f, "maximum_trace_size_bytes counts the spans' bytes"
	}
	for _, gate := range []string{"processor.tailsamplingprocessor.usetracestate", "processor.tailsamplingprocessor.metricstatcountbytessampled"} {
		if gateEnabled(gate) {
			return f, "feature gate " + gate + " reads the whole spans"
		}
	}
	for _, p := range cfg.PolicyCfgs {
		why := f.add(p.Type, p.NumericAttributeCfg.Key, p.StringAttributeCfg.Key, p.BooleanAttributeCfg.Key)
		switch p.Type {
		case upstream.Composite:
			for _, s := range p.CompositeCfg.SubPolicyCfg {
				if why == "" {
					why = f.add(s.Type, s.NumericAttributeCfg.Key, s.StringAttributeCfg.Key, s.BooleanAttributeCfg.Key)
				}
				if why == "" && s.Type == upstream.And {
					why = f.addAll(s.AndCfg.SubPolicyCfg)
				}
			}
		case upstream.And:
			why = f.addAll(p.AndCfg.SubPolicyCfg)
		case upstream.Drop:
			why = f.addAll(p.DropCfg.SubPolicyCfg)
		case upstream.Not:
			s := p.NotCfg.SubPolicy
			why = f.add(s.Type, s.NumericAttributeCfg.Key, s.StringAttributeCfg.Key, s.BooleanAttributeCfg.Key)
		}
		if why != "" {
			return f, why
		}
	}
	slices.Sort(f.keys)
	f.keys = slices.Compact(f.keys)
	return f, ""
}

// addAll adds the sub-policies of an and or a drop policy.
func (f *summaryFields) addAll(subs []upstream.AndSubPolicyCfg) string {
	for _, s := range subs {
		why := f.add(s.Type, s.NumericAttributeCfg.Key, s.StringAttributeCfg.Key, s.BooleanAttributeCfg.Key)
		if why == "" && s.Type == upstream.Not {
			n := s.NotCfg.SubPolicy
			why = f.add(n.Type, n.NumericAttributeCfg.Key, n.StringAttributeCfg.Key, n.BooleanAttributeCfg.Key)
		}
		if why != "" {
			return why
		}
	}
	return ""
}

// add adds what one policy reads, given its type and the keys of its
// attribute settings; a policy that holds others (and, composite, drop,
// not) reads nothing itself.
func (f *summaryFields) add(typ upstream.PolicyType, numericKey, stringKey, boolKey string) string {
	switch typ {
	case upstream.AlwaysSample, upstream.Latency, upstream.StatusCode, upstream.RateLimiting, upstream.SpanCount,
		upstream.Composite, upstream.And, upstream.Not, upstream.Drop:
	case upstream.NumericAttribute:
		f.keys = append(f.keys, numericKey)
	case upstream.StringAttribute:
		f.keys = append(f.keys, stringKey)
	case upstream.BooleanAttribute:
		f.keys = append(f.keys, boolKey)
	case upstream.Probabilistic, upstream.TraceState:
		f.traceState = true
	case upstream.TraceFlags:
		f.flags = true
	case upstream.OTTLCondition:
		return "ottl_condition reads any field of a span"
	case upstream.BytesLimiting:
		return "bytes_limiting counts the spans' bytes"
	default:
		return fmt.Sprintf("policy type %q", typ)
	}
	return ""
}

func gateEnabled(id string) bool {
	on := false
	featuregate.GlobalRegistry().VisitAll(func(g *featuregate.Gate) {
		if g.ID() == id {
			on = g.IsEnabled()
		}
	})
	return on
}

// summarizer builds summaries into reusable buffers; one per goroutine
// (summarizers).
type summarizer struct {
	fields summaryFields
	span   []byte // one span's fields
	scope  []byte // one ScopeSpans: its spans
	rs     []byte // the ResourceSpans: its ScopeSpans
	val    []byte // one attribute's AnyValue
}

var summarizers = sync.Pool{New: func() any { return new(summarizer) }}

// appendSummary appends the summary of a chunk's spans to dst. It
// reports false, leaving dst as it was, when a named attribute holds a map
// or a list: rare, and left to the chunk without a summary, whose spans
// are decided on.
func (s *summarizer) appendSummary(dst []byte, c *chunk) ([]byte, bool) {
	s.rs = s.rs[:0]
	next := 0
	for g := range c.scopes {
		s.scope = s.scope[:0]
		for ; next < len(c.items) && c.items[next].group == g; next++ {
			if !s.appendSpan(c.items[next].span) {
				return dst, false
			}
			s.scope = protowire.AppendTag(s.scope, 2, protowire.BytesType) // ScopeSpans.spans
			s.scope = protowire.AppendBytes(s.scope, s.span)
		}
		s.rs = protowire.AppendTag(s.rs, 2, protowire.BytesType) // ResourceSpans.scope_spans
		s.rs = protowire.AppendBytes(s.rs, s.scope)
	}
	dst = protowire.AppendTag(dst, 1, protowire.BytesType) // ExportTraceServiceRequest.resource_spans
	return protowire.AppendBytes(dst, s.rs), true
}

// appendSpan encodes sp's summary into s.span (OTLP Span field numbers).
func (s *summarizer) appendSpan(sp ptrace.Span) bool {
	b := s.span[:0]
	id := sp.TraceID()
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, id[:])
	if s.fields.traceState {
		if ts := sp.TraceState().AsRaw(); ts != "" {
			b = protowire.AppendTag(b, 3, protowire.BytesType)
			b = protowire.AppendString(b, ts)
		}
	}
	if p := sp.ParentSpanID(); !p.IsEmpty() {
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, p[:])
	}
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	b = protowire.AppendString(b, summaryName)
	b = protowire.AppendTag(b, 7, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, uint64(sp.StartTimestamp()))
	b = protowire.AppendTag(b, 8, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, uint64(sp.EndTimestamp()))
	if len(s.fields.keys) > 0 {
		for k, v := range sp.Attributes().All() {
			if _, named := slices.BinarySearch(s.fields.keys, k); !named {
				continue
			}
			var ok bool
			if b, ok = s.appendKeyValue(b, k, v); !ok {
				s.span = b
				return false
			}
		}
	}
	if code := sp.Status().Code(); code != ptrace.StatusCodeUnset {
		b = protowire.AppendTag(b, 15, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(protowire.SizeTag(3)+protowire.SizeVarint(uint64(code))))
		b = protowire.AppendTag(b, 3, protowire.VarintType) // Status.code
		b = protowire.AppendVarint(b, uint64(code))
	}
	if s.fields.flags {
		if fl := sp.Flags(); fl != 0 {
			b = protowire.AppendTag(b, 16, protowire.Fixed32Type)
			b = protowire.AppendFixed32(b, fl)
		}
	}
	s.span = b
	return true
}

// appendKeyValue appends attribute k as a Span.attributes KeyValue. Maps
// and lists are not encoded (false).
func (s *summarizer) appendKeyValue(b []byte, k string, v pcommon.Value) ([]byte, bool) {
	val := s.val[:0] // the AnyValue's one field, tag included
	switch v.Type() {
	case pcommon.ValueTypeEmpty:
	case pcommon.ValueTypeStr:
		val = protowire.AppendString(protowire.AppendTag(val, 1, protowire.BytesType), v.Str())
	case pcommon.ValueTypeBool:
		x := uint64(0)
		if v.Bool() {
			x = 1
		}
		val = protowire.AppendVarint(protowire.AppendTag(val, 2, protowire.VarintType), x)
	case pcommon.ValueTypeInt:
		val = protowire.AppendVarint(protowire.AppendTag(val, 3, protowire.VarintType), uint64(v.Int()))
	case pcommon.ValueTypeDouble:
		val = protowire.AppendFixed64(protowire.AppendTag(val, 4, protowire.Fixed64Type), math.Float64bits(v.Double()))
	case pcommon.ValueTypeBytes:
		val = protowire.AppendBytes(protowire.AppendTag(val, 7, protowire.BytesType), v.Bytes().AsRaw())
	default:
		return b, false
	}
	s.val = val
	b = protowire.AppendTag(b, 9, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(protowire.SizeTag(1)+protowire.SizeBytes(len(k))+protowire.SizeTag(2)+protowire.SizeBytes(len(val))))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, k)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendBytes(b, val), true
}
