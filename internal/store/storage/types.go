package storage

import (
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
)

// TraceID is a W3C trace ID. The zero value means "none".
type TraceID [16]byte

// SpanID is a W3C span ID. The zero value means "none".
type SpanID [8]byte

// IsEmpty reports whether id is the all-zero (invalid) ID.
func (id TraceID) IsEmpty() bool { return id == TraceID{} }

// String returns the lowercase hex form used by every API.
func (id TraceID) String() string { return hex.EncodeToString(id[:]) }

// IsEmpty reports whether id is the all-zero (invalid) ID.
func (id SpanID) IsEmpty() bool { return id == SpanID{} }

// String returns the lowercase hex form.
func (id SpanID) String() string { return hex.EncodeToString(id[:]) }

// ParseTraceID accepts 1 to 32 hex digits; shorter IDs are left-padded with
// zeros as Tempo and Jaeger do for 64-bit IDs.
func ParseTraceID(s string) (TraceID, error) {
	var id TraceID
	if len(s) == 0 || len(s) > 32 {
		return id, fmt.Errorf("trace id %q: want 1 to 32 hex digits", s)
	}
	if len(s)%2 == 1 {
		s = "0" + s
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return id, fmt.Errorf("trace id %q: %w", s, err)
	}
	copy(id[16-len(b):], b)
	return id, nil
}

// ValueType tags the variant a Value holds.
type ValueType uint8

// Value types, matching OTLP's AnyValue variants.
const (
	TypeEmpty ValueType = iota
	TypeStr
	TypeInt
	TypeDouble
	TypeBool
	TypeBytes
	TypeSlice // Str holds the OTLP/JSON encoding of the array
	TypeMap   // Str holds the OTLP/JSON encoding of the map
)

// Value is a typed union of attribute values. It is a plain struct, not an
// interface, so that slices of Attr are one allocation and compare with ==.
//
// Str holds strings, raw bytes and the JSON text of arrays and maps; Int
// holds integers and booleans (0 or 1); Double holds floats.
type Value struct {
	Type   ValueType
	Str    string
	Int    int64
	Double float64
}

// Str returns a string Value.
func Str(s string) Value { return Value{Type: TypeStr, Str: s} }

// Int returns an integer Value.
func Int(i int64) Value { return Value{Type: TypeInt, Int: i} }

// Double returns a float Value.
func Double(f float64) Value { return Value{Type: TypeDouble, Double: f} }

// Bool returns a boolean Value.
func Bool(b bool) Value {
	v := Value{Type: TypeBool}
	if b {
		v.Int = 1
	}
	return v
}

// AsString renders v as text, the way TraceQL and the APIs print it.
func (v Value) AsString() string {
	switch v.Type {
	case TypeStr, TypeSlice, TypeMap:
		return v.Str
	case TypeBytes:
		return hex.EncodeToString([]byte(v.Str))
	case TypeInt:
		return strconv.FormatInt(v.Int, 10)
	case TypeDouble:
		return strconv.FormatFloat(v.Double, 'g', -1, 64)
	case TypeBool:
		return strconv.FormatBool(v.Int != 0)
	}
	return ""
}

// AsFloat returns v as a number for numeric comparisons.
func (v Value) AsFloat() (float64, bool) {
	switch v.Type {
	case TypeInt:
		return float64(v.Int), true
	case TypeDouble:
		return v.Double, true
	case TypeStr:
		f, err := strconv.ParseFloat(v.Str, 64)
		return f, err == nil && !math.IsNaN(f)
	}
	return 0, false
}

// Attr is one key/value attribute.
type Attr struct {
	Key   string
	Value Value
}

// Attrs is an ordered attribute list. Lists are short, so lookups scan.
type Attrs []Attr

// Get returns the value of key.
func (a Attrs) Get(key string) (Value, bool) {
	for i := range a {
		if a[i].Key == key {
			return a[i].Value, true
		}
	}
	return Value{}, false
}

// Resource describes the entity that produced telemetry.
type Resource struct {
	SchemaURL string
	Attrs     Attrs
}

// ServiceName returns the service.name attribute, or "" when it is absent.
func (r *Resource) ServiceName() string {
	if r == nil {
		return ""
	}
	v, _ := r.Attrs.Get("service.name")
	if v.Type != TypeStr {
		return ""
	}
	return v.Str
}

// InstrumentationScope is the library that produced telemetry.
type InstrumentationScope struct {
	Name      string
	Version   string
	SchemaURL string
	Attrs     Attrs
}

// SpanKind follows OTLP's numbering (0 unspecified, 1 internal ... 5 consumer).
type SpanKind int8

// StatusCode follows OTLP's numbering (0 unset, 1 ok, 2 error).
type StatusCode int8

// Span kinds and status codes.
const (
	KindUnspecified SpanKind   = 0
	StatusUnset     StatusCode = 0
	StatusOK        StatusCode = 1
	StatusError     StatusCode = 2
)

// Event is a span event.
type Event struct {
	TimeUnixNano int64
	Name         string
	Attrs        Attrs
}

// Link points from a span to another span.
type Link struct {
	TraceID    TraceID
	SpanID     SpanID
	TraceState string
	Flags      uint32
	Attrs      Attrs
}

// Span is one stored span. Resource and Scope are shared between the spans
// of one OTLP ResourceSpans/ScopeSpans and must be treated as read-only.
type Span struct {
	TraceID       TraceID
	SpanID        SpanID
	ParentSpanID  SpanID
	TraceState    string
	Flags         uint32
	Name          string
	Kind          SpanKind
	StatusCode    StatusCode
	StatusMessage string
	StartUnixNano int64
	EndUnixNano   int64
	Attrs         Attrs
	Events        []Event
	Links         []Link
	Resource      *Resource
	Scope         *InstrumentationScope
}

// Duration returns the span's duration in nanoseconds.
func (s *Span) Duration() int64 { return s.EndUnixNano - s.StartUnixNano }

// LogRecord is one stored log record.
type LogRecord struct {
	TimeUnixNano         int64
	ObservedTimeUnixNano int64
	SeverityNumber       int32
	SeverityText         string
	Body                 Value
	TraceID              TraceID
	SpanID               SpanID
	Flags                uint32
	EventName            string
	Attrs                Attrs
	Resource             *Resource
	Scope                *InstrumentationScope
}

// Timestamp returns the record's time, falling back to the observed time as
// OTLP prescribes when the event time is unknown.
func (l *LogRecord) Timestamp() int64 {
	if l.TimeUnixNano != 0 {
		return l.TimeUnixNano
	}
	return l.ObservedTimeUnixNano
}
