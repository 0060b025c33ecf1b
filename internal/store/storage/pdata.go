package storage

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// FromPcommon converts an OTLP value. Arrays and maps keep their structure
// as JSON text so that they round-trip through ToPcommon.
func FromPcommon(v pcommon.Value) Value {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return Value{Type: TypeStr, Str: v.Str()}
	case pcommon.ValueTypeInt:
		return Value{Type: TypeInt, Int: v.Int()}
	case pcommon.ValueTypeDouble:
		return Value{Type: TypeDouble, Double: v.Double()}
	case pcommon.ValueTypeBool:
		return Bool(v.Bool())
	case pcommon.ValueTypeBytes:
		return Value{Type: TypeBytes, Str: string(v.Bytes().AsRaw())}
	case pcommon.ValueTypeSlice:
		b, _ := json.Marshal(v.Slice().AsRaw())
		return Value{Type: TypeSlice, Str: string(b)}
	case pcommon.ValueTypeMap:
		b, _ := json.Marshal(v.Map().AsRaw())
		return Value{Type: TypeMap, Str: string(b)}
	}
	return Value{}
}

// CopyTo writes v into dst.
func (v Value) CopyTo(dst pcommon.Value) {
	switch v.Type {
	case TypeStr:
		dst.SetStr(v.Str)
	case TypeInt:
		dst.SetInt(v.Int)
	case TypeDouble:
		dst.SetDouble(v.Double)
	case TypeBool:
		dst.SetBool(v.Int != 0)
	case TypeBytes:
		dst.SetEmptyBytes().FromRaw([]byte(v.Str))
	case TypeSlice, TypeMap:
		raw, err := decodeJSON(v.Str)
		if err != nil {
			dst.SetStr(v.Str)
			return
		}
		if v.Type == TypeSlice {
			if s, ok := raw.([]any); ok && dst.SetEmptySlice().FromRaw(normalize(s).([]any)) == nil {
				return
			}
		} else if m, ok := raw.(map[string]any); ok && dst.SetEmptyMap().FromRaw(normalize(m).(map[string]any)) == nil {
			return
		}
		dst.SetStr(v.Str)
	}
}

func decodeJSON(s string) (any, error) {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var raw any
	err := d.Decode(&raw)
	return raw, err
}

// normalize turns json.Number into int64 or float64 so pcommon keeps the
// integer/double distinction of the original value.
func normalize(x any) any {
	switch t := x.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case []any:
		for i := range t {
			t[i] = normalize(t[i])
		}
	case map[string]any:
		for k := range t {
			t[k] = normalize(t[k])
		}
	}
	return x
}

// appendAttrs appends m's attributes to dst, each filled in place in
// dst's new element: an Attr built and then appended is copied through
// temporaries whose overlapping loads stall store forwarding.
func appendAttrs(dst Attrs, m pcommon.Map) Attrs {
	dst = slices.Grow(dst, m.Len())
	for k, v := range m.All() {
		dst = dst[:len(dst)+1]
		a := &dst[len(dst)-1]
		a.Key = k
		a.Value = FromPcommon(v)
	}
	return dst
}

func copyAttrs(dst pcommon.Map, a Attrs) {
	dst.EnsureCapacity(len(a))
	for i := range a {
		a[i].Value.CopyTo(dst.PutEmpty(a[i].Key))
	}
}

func fromResource(r pcommon.Resource, schemaURL string) *Resource {
	return &Resource{SchemaURL: schemaURL, Attrs: appendAttrs(make(Attrs, 0, r.Attributes().Len()), r.Attributes())}
}

func fromScope(s pcommon.InstrumentationScope, schemaURL string) *InstrumentationScope {
	sc := &InstrumentationScope{Name: s.Name(), Version: s.Version(), SchemaURL: schemaURL}
	if s.Attributes().Len() > 0 {
		sc.Attrs = appendAttrs(nil, s.Attributes())
	}
	return sc
}

// AppendTraces converts td and appends its spans to dst. The spans of one
// ResourceSpans share one *Resource. td is not retained.
func AppendTraces(dst []Span, td ptrace.Traces) []Span {
	dst, _ = AppendTracesInto(dst, nil, td)
	return dst
}

// AppendTracesInto is AppendTraces with the spans' attributes appended to
// attrs, which it returns: one backing array for a request instead of one
// per span, which was a third of the bytes and most of the allocations of
// the store's ingest. Each span's Attrs is capped at its own length, so
// that appending to one never writes into another's. The spans use the
// array attrs returns, so a caller that recycles it must be done with the
// spans first.
func AppendTracesInto(dst []Span, attrs Attrs, td ptrace.Traces) ([]Span, Attrs) {
	// Sized once: grown by appending, a Collector's batch of thousands of
	// spans would allocate about twice its attributes.
	n := 0
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, s := range ss.Spans().All() {
				n += s.Attributes().Len()
			}
		}
	}
	attrs = slices.Grow(attrs, n)
	for _, rs := range td.ResourceSpans().All() {
		res := fromResource(rs.Resource(), rs.SchemaUrl())
		for _, ss := range rs.ScopeSpans().All() {
			scope := fromScope(ss.Scope(), ss.SchemaUrl())
			for _, s := range ss.Spans().All() {
				// Filled in place, as appendAttrs fills attributes: a
				// span built on the stack is copied whole into dst.
				dst = append(dst, Span{})
				sp := &dst[len(dst)-1]
				sp.TraceID = TraceID(s.TraceID())
				sp.SpanID = SpanID(s.SpanID())
				sp.ParentSpanID = SpanID(s.ParentSpanID())
				sp.TraceState = s.TraceState().AsRaw()
				sp.Flags = s.Flags()
				sp.Name = s.Name()
				sp.Kind = SpanKind(s.Kind())
				sp.StatusCode = StatusCode(s.Status().Code())
				sp.StatusMessage = s.Status().Message()
				sp.StartUnixNano = int64(s.StartTimestamp())
				sp.EndUnixNano = int64(s.EndTimestamp())
				sp.Resource = res
				sp.Scope = scope
				if s.Attributes().Len() > 0 {
					from := len(attrs)
					attrs = appendAttrs(attrs, s.Attributes())
					sp.Attrs = attrs[from:len(attrs):len(attrs)]
				}
				if n := s.Events().Len(); n > 0 {
					sp.Events = make([]Event, 0, n)
					for _, e := range s.Events().All() {
						sp.Events = append(sp.Events, Event{TimeUnixNano: int64(e.Timestamp()), Name: e.Name(), Attrs: appendAttrs(nil, e.Attributes())})
					}
				}
				if n := s.Links().Len(); n > 0 {
					sp.Links = make([]Link, 0, n)
					for _, l := range s.Links().All() {
						sp.Links = append(sp.Links, Link{TraceID: TraceID(l.TraceID()), SpanID: SpanID(l.SpanID()), TraceState: l.TraceState().AsRaw(), Flags: l.Flags(), Attrs: appendAttrs(nil, l.Attributes())})
					}
				}
			}
		}
	}
	return dst, attrs
}

// AppendLogs converts ld and appends its records to dst.
func AppendLogs(dst []LogRecord, ld plog.Logs) []LogRecord {
	dst, _ = AppendLogsInto(dst, nil, ld)
	return dst
}

// AppendLogsInto is AppendLogs with the records' attributes appended to
// attrs, as AppendTracesInto does for spans.
func AppendLogsInto(dst []LogRecord, attrs Attrs, ld plog.Logs) ([]LogRecord, Attrs) {
	n := 0
	for _, rl := range ld.ResourceLogs().All() {
		for _, sl := range rl.ScopeLogs().All() {
			for _, l := range sl.LogRecords().All() {
				n += l.Attributes().Len()
			}
		}
	}
	attrs = slices.Grow(attrs, n)
	for _, rl := range ld.ResourceLogs().All() {
		res := fromResource(rl.Resource(), rl.SchemaUrl())
		for _, sl := range rl.ScopeLogs().All() {
			scope := fromScope(sl.Scope(), sl.SchemaUrl())
			for _, l := range sl.LogRecords().All() {
				var la Attrs
				if l.Attributes().Len() > 0 {
					from := len(attrs)
					attrs = appendAttrs(attrs, l.Attributes())
					la = attrs[from:len(attrs):len(attrs)]
				}
				dst = append(dst, LogRecord{})
				r := &dst[len(dst)-1]
				r.TimeUnixNano = int64(l.Timestamp())
				r.ObservedTimeUnixNano = int64(l.ObservedTimestamp())
				r.SeverityNumber = int32(l.SeverityNumber())
				r.SeverityText = l.SeverityText()
				r.Body = FromPcommon(l.Body())
				r.TraceID = TraceID(l.TraceID())
				r.SpanID = SpanID(l.SpanID())
				r.Flags = uint32(l.Flags())
				r.EventName = l.EventName()
				r.Attrs = la
				r.Resource = res
				r.Scope = scope
			}
		}
	}
	return dst, attrs
}

// grouper finds the ResourceX/ScopeX for a span or record by content, so
// that spans read back from blocks (one Resource copy per row) regroup the
// way they were sent.
type grouper[R any, S any] struct {
	res    map[string]R
	scopes map[string]S
	key    bytes.Buffer
}

func resourceKey(b *bytes.Buffer, r *Resource) string {
	b.Reset()
	if r != nil {
		b.WriteString(r.SchemaURL)
		writeAttrsKey(b, r.Attrs)
	}
	return b.String()
}

func scopeKey(b *bytes.Buffer, rk string, s *InstrumentationScope) string {
	b.Reset()
	b.WriteString(rk)
	b.WriteByte(0xff)
	if s != nil {
		b.WriteString(s.Name)
		b.WriteByte(0)
		b.WriteString(s.Version)
		b.WriteByte(0)
		b.WriteString(s.SchemaURL)
		writeAttrsKey(b, s.Attrs)
	}
	return b.String()
}

func writeAttrsKey(b *bytes.Buffer, a Attrs) {
	for i := range a {
		b.WriteByte(0)
		b.WriteString(a[i].Key)
		b.WriteByte(byte(a[i].Value.Type))
		b.WriteString(a[i].Value.AsString())
	}
}

// SpansToTraces rebuilds OTLP traces from spans.
func SpansToTraces(spans []Span) ptrace.Traces {
	td := ptrace.NewTraces()
	g := grouper[ptrace.ResourceSpans, ptrace.ScopeSpans]{res: map[string]ptrace.ResourceSpans{}, scopes: map[string]ptrace.ScopeSpans{}}
	for i := range spans {
		s := &spans[i]
		rk := resourceKey(&g.key, s.Resource)
		rs, ok := g.res[rk]
		if !ok {
			rs = td.ResourceSpans().AppendEmpty()
			if s.Resource != nil {
				rs.SetSchemaUrl(s.Resource.SchemaURL)
				copyAttrs(rs.Resource().Attributes(), s.Resource.Attrs)
			}
			g.res[rk] = rs
		}
		sk := scopeKey(&g.key, rk, s.Scope)
		ss, ok := g.scopes[sk]
		if !ok {
			ss = rs.ScopeSpans().AppendEmpty()
			if s.Scope != nil {
				ss.SetSchemaUrl(s.Scope.SchemaURL)
				ss.Scope().SetName(s.Scope.Name)
				ss.Scope().SetVersion(s.Scope.Version)
				copyAttrs(ss.Scope().Attributes(), s.Scope.Attrs)
			}
			g.scopes[sk] = ss
		}
		o := ss.Spans().AppendEmpty()
		o.SetTraceID(pcommon.TraceID(s.TraceID))
		o.SetSpanID(pcommon.SpanID(s.SpanID))
		o.SetParentSpanID(pcommon.SpanID(s.ParentSpanID))
		o.TraceState().FromRaw(s.TraceState)
		o.SetFlags(s.Flags)
		o.SetName(s.Name)
		o.SetKind(ptrace.SpanKind(s.Kind))
		o.Status().SetCode(ptrace.StatusCode(s.StatusCode))
		o.Status().SetMessage(s.StatusMessage)
		o.SetStartTimestamp(pcommon.Timestamp(s.StartUnixNano))
		o.SetEndTimestamp(pcommon.Timestamp(s.EndUnixNano))
		copyAttrs(o.Attributes(), s.Attrs)
		for _, e := range s.Events {
			oe := o.Events().AppendEmpty()
			oe.SetTimestamp(pcommon.Timestamp(e.TimeUnixNano))
			oe.SetName(e.Name)
			copyAttrs(oe.Attributes(), e.Attrs)
		}
		for _, l := range s.Links {
			ol := o.Links().AppendEmpty()
			ol.SetTraceID(pcommon.TraceID(l.TraceID))
			ol.SetSpanID(pcommon.SpanID(l.SpanID))
			ol.TraceState().FromRaw(l.TraceState)
			ol.SetFlags(l.Flags)
			copyAttrs(ol.Attributes(), l.Attrs)
		}
	}
	return td
}

// LogsToPdata rebuilds OTLP logs from records.
func LogsToPdata(recs []LogRecord) plog.Logs {
	ld := plog.NewLogs()
	g := grouper[plog.ResourceLogs, plog.ScopeLogs]{res: map[string]plog.ResourceLogs{}, scopes: map[string]plog.ScopeLogs{}}
	for i := range recs {
		l := &recs[i]
		rk := resourceKey(&g.key, l.Resource)
		rl, ok := g.res[rk]
		if !ok {
			rl = ld.ResourceLogs().AppendEmpty()
			if l.Resource != nil {
				rl.SetSchemaUrl(l.Resource.SchemaURL)
				copyAttrs(rl.Resource().Attributes(), l.Resource.Attrs)
			}
			g.res[rk] = rl
		}
		sk := scopeKey(&g.key, rk, l.Scope)
		sl, ok := g.scopes[sk]
		if !ok {
			sl = rl.ScopeLogs().AppendEmpty()
			if l.Scope != nil {
				sl.SetSchemaUrl(l.Scope.SchemaURL)
				sl.Scope().SetName(l.Scope.Name)
				sl.Scope().SetVersion(l.Scope.Version)
				copyAttrs(sl.Scope().Attributes(), l.Scope.Attrs)
			}
			g.scopes[sk] = sl
		}
		o := sl.LogRecords().AppendEmpty()
		o.SetTimestamp(pcommon.Timestamp(l.TimeUnixNano))
		o.SetObservedTimestamp(pcommon.Timestamp(l.ObservedTimeUnixNano))
		o.SetSeverityNumber(plog.SeverityNumber(l.SeverityNumber))
		o.SetSeverityText(l.SeverityText)
		l.Body.CopyTo(o.Body())
		o.SetTraceID(pcommon.TraceID(l.TraceID))
		o.SetSpanID(pcommon.SpanID(l.SpanID))
		o.SetFlags(plog.LogRecordFlags(l.Flags))
		o.SetEventName(l.EventName)
		copyAttrs(o.Attributes(), l.Attrs)
	}
	return ld
}
