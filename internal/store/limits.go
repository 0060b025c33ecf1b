package store

import (
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// AttributeLimits bound what one span or log record may cost to store and
// to fetch. They truncate rather than refuse, as OTLP's SDK attribute
// limits and Tempo's max_attribute_bytes do: a span with a 1 MB
// attribute, or 100,000 attributes, is still a span someone wants to
// find, and the sender cannot fix it by retrying.
//
//   - MaxAttributeBytes truncates longer keys and string and bytes values
//     (on a UTF-8 boundary), wherever they sit: resources, scopes, spans,
//     events, links, log records, and inside arrays and maps.
//   - MaxAttributes keeps the first that many attributes of each of those
//     (and entries of each array and map); the rest are dropped and
//     counted in the item's dropped_attributes_count, as an SDK does.
//
// Zero disables a limit. Data within the limits is stored as sent, and
// checking it costs one read-only pass; only a request that exceeds a
// limit is copied and changed.
type AttributeLimits struct {
	MaxAttributeBytes int
	MaxAttributes     int
}

func (l AttributeLimits) enabled() bool { return l.MaxAttributeBytes > 0 || l.MaxAttributes > 0 }

// limiter applies AttributeLimits. check reports whether anything exceeds
// them; apply changes it and counts what it changed.
type limiter struct {
	AttributeLimits
	truncated, dropped int64
}

func (l *limiter) mapOver(m pcommon.Map) bool {
	if l.MaxAttributes > 0 && m.Len() > l.MaxAttributes {
		return true
	}
	for k, v := range m.All() {
		if l.MaxAttributeBytes > 0 && len(k) > l.MaxAttributeBytes || l.valueOver(v) {
			return true
		}
	}
	return false
}

func (l *limiter) valueOver(v pcommon.Value) bool {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return l.MaxAttributeBytes > 0 && len(v.Str()) > l.MaxAttributeBytes
	case pcommon.ValueTypeBytes:
		return l.MaxAttributeBytes > 0 && v.Bytes().Len() > l.MaxAttributeBytes
	case pcommon.ValueTypeMap:
		return l.mapOver(v.Map())
	case pcommon.ValueTypeSlice:
		s := v.Slice()
		if l.MaxAttributes > 0 && s.Len() > l.MaxAttributes {
			return true
		}
		for i := 0; i < s.Len(); i++ {
			if l.valueOver(s.At(i)) {
				return true
			}
		}
	}
	return false
}

// limitMap applies the limits to m and returns how many attributes it
// dropped.
func (l *limiter) limitMap(m pcommon.Map) uint32 {
	var dropped uint32
	if l.MaxAttributes > 0 && m.Len() > l.MaxAttributes {
		n := 0
		m.RemoveIf(func(string, pcommon.Value) bool {
			n++
			if n > l.MaxAttributes {
				dropped++
				return true
			}
			return false
		})
		l.dropped += int64(dropped)
	}
	if l.MaxAttributeBytes > 0 {
		// Keys cannot be renamed in place: collect the long ones first.
		var long []string
		for k := range m.All() {
			if len(k) > l.MaxAttributeBytes {
				long = append(long, k)
			}
		}
		for _, k := range long {
			v, _ := m.Get(k)
			nk := truncateUTF8(k, l.MaxAttributeBytes)
			if _, exists := m.Get(nk); !exists {
				v.CopyTo(m.PutEmpty(nk))
			} else {
				dropped++ // its truncated key names another attribute
				l.dropped++
			}
			m.Remove(k)
			l.truncated++
		}
	}
	for _, v := range m.All() {
		l.limitValue(v)
	}
	return dropped
}

func (l *limiter) limitValue(v pcommon.Value) {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		if l.MaxAttributeBytes > 0 && len(v.Str()) > l.MaxAttributeBytes {
			v.SetStr(truncateUTF8(v.Str(), l.MaxAttributeBytes))
			l.truncated++
		}
	case pcommon.ValueTypeBytes:
		if b := v.Bytes(); l.MaxAttributeBytes > 0 && b.Len() > l.MaxAttributeBytes {
			b.FromRaw(b.AsRaw()[:l.MaxAttributeBytes])
			l.truncated++
		}
	case pcommon.ValueTypeMap:
		l.limitMap(v.Map())
	case pcommon.ValueTypeSlice:
		s := v.Slice()
		if l.MaxAttributes > 0 && s.Len() > l.MaxAttributes {
			n := 0
			s.RemoveIf(func(pcommon.Value) bool { n++; return n > l.MaxAttributes })
			l.dropped += int64(n - l.MaxAttributes)
		}
		for i := 0; i < s.Len(); i++ {
			l.limitValue(s.At(i))
		}
	}
}

// truncateUTF8 cuts s to at most n bytes without splitting a UTF-8
// sequence (invalid bytes are cut as single bytes).
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Back up to the start of the rune that s[n] is part of, at most
	// UTFMax-1 bytes; past that the bytes are not UTF-8 and are cut as
	// they are.
	cut := n
	for cut > 0 && n-cut < utf8.UTFMax-1 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	if !utf8.RuneStart(s[cut]) {
		cut = n
	}
	return s[:cut]
}

func (l *limiter) tracesOver(td ptrace.Traces) bool {
	for _, rs := range td.ResourceSpans().All() {
		if l.mapOver(rs.Resource().Attributes()) {
			return true
		}
		for _, ss := range rs.ScopeSpans().All() {
			if l.mapOver(ss.Scope().Attributes()) {
				return true
			}
			for _, sp := range ss.Spans().All() {
				if l.mapOver(sp.Attributes()) {
					return true
				}
				for _, e := range sp.Events().All() {
					if l.mapOver(e.Attributes()) {
						return true
					}
				}
				for _, k := range sp.Links().All() {
					if l.mapOver(k.Attributes()) {
						return true
					}
				}
			}
		}
	}
	return false
}

// limitTraces returns td within the limits: td itself when it already is,
// else a changed copy (td may be shared with other consumers).
func (l *limiter) limitTraces(td ptrace.Traces) ptrace.Traces {
	if !l.enabled() || !l.tracesOver(td) {
		return td
	}
	out := ptrace.NewTraces()
	td.CopyTo(out)
	for _, rs := range out.ResourceSpans().All() {
		res := rs.Resource()
		res.SetDroppedAttributesCount(res.DroppedAttributesCount() + l.limitMap(res.Attributes()))
		for _, ss := range rs.ScopeSpans().All() {
			sc := ss.Scope()
			sc.SetDroppedAttributesCount(sc.DroppedAttributesCount() + l.limitMap(sc.Attributes()))
			for _, sp := range ss.Spans().All() {
				sp.SetDroppedAttributesCount(sp.DroppedAttributesCount() + l.limitMap(sp.Attributes()))
				for _, e := range sp.Events().All() {
					e.SetDroppedAttributesCount(e.DroppedAttributesCount() + l.limitMap(e.Attributes()))
				}
				for _, k := range sp.Links().All() {
					k.SetDroppedAttributesCount(k.DroppedAttributesCount() + l.limitMap(k.Attributes()))
				}
			}
		}
	}
	return out
}

func (l *limiter) logsOver(ld plog.Logs) bool {
	for _, rl := range ld.ResourceLogs().All() {
		if l.mapOver(rl.Resource().Attributes()) {
			return true
		}
		for _, sl := range rl.ScopeLogs().All() {
			if l.mapOver(sl.Scope().Attributes()) {
				return true
			}
			for _, r := range sl.LogRecords().All() {
				if l.mapOver(r.Attributes()) || l.valueOver(r.Body()) && r.Body().Type() != pcommon.ValueTypeStr {
					return true
				}
			}
		}
	}
	return false
}

// limitLogs is limitTraces for logs. A string body is a log line and is
// kept whole (Loki's own line limit is the receiver's); a structured body
// is limited like an attribute value.
func (l *limiter) limitLogs(ld plog.Logs) plog.Logs {
	if !l.enabled() || !l.logsOver(ld) {
		return ld
	}
	out := plog.NewLogs()
	ld.CopyTo(out)
	for _, rl := range out.ResourceLogs().All() {
		res := rl.Resource()
		res.SetDroppedAttributesCount(res.DroppedAttributesCount() + l.limitMap(res.Attributes()))
		for _, sl := range rl.ScopeLogs().All() {
			sc := sl.Scope()
			sc.SetDroppedAttributesCount(sc.DroppedAttributesCount() + l.limitMap(sc.Attributes()))
			for _, r := range sl.LogRecords().All() {
				r.SetDroppedAttributesCount(r.DroppedAttributesCount() + l.limitMap(r.Attributes()))
				if r.Body().Type() != pcommon.ValueTypeStr {
					l.limitValue(r.Body())
				}
			}
		}
	}
	return out
}
