package block

import (
	"encoding/binary"
	"errors"
	"strconv"
	"unsafe"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// FormatVersion is written into every block's meta.json. Readers refuse
// blocks of a version they do not know. Bump it on any change to the
// schemas below or to the bloom and index files.
//
// Version 2 adds the trace table (traceRowV2, TraceTableFile) to trace
// blocks; their data file and every log block are as in version 1.
// Version 3 splits the trace table's spans per service into a column of
// service sets and one of their counts (traceRow). Versions 1 and 2 stay
// readable: a search assembles version 1's traces from spans, and
// compaction rewrites both as version 3.
const (
	FormatVersion    = 3
	MinFormatVersion = 1
)

// attrRow is one attribute. Key is the attribute key prefixed with one
// byte, the storage.ValueType of the value: a key nearly always carries one
// type, so the prefix costs nothing in the dictionary and saves a column.
// Value is the value's text: strings and raw bytes as they are, integers
// and booleans in decimal, doubles in Go's shortest 'g' form, arrays and
// maps as OTLP/JSON. One value column instead of one per type avoids a
// definition level per attribute in every unused column.
type attrRow struct {
	Key   string `parquet:"key,dict"`
	Value string `parquet:"value,dict"`
}

type eventRow struct {
	TimeUnixNano int64     `parquet:"time_unix_nano,delta"`
	Name         string    `parquet:"name,dict"`
	Attrs        []attrRow `parquet:"attrs"`
}

type linkRow struct {
	TraceID    []byte    `parquet:"trace_id"`
	SpanID     []byte    `parquet:"span_id"`
	TraceState string    `parquet:"trace_state,optional"`
	Flags      int64     `parquet:"flags,optional"`
	Attrs      []attrRow `parquet:"attrs"`
}

// spanRow is one span. Rows are sorted by (trace_id, start, span_id), so a
// trace is a contiguous run of rows, trace IDs compress to almost nothing,
// and delta-encoded start times stay small inside a trace.
//
// The dedicated columns hold the attributes most queries filter on; an
// attribute moves into its column only when it has the column's type and a
// non-zero value, otherwise it stays in attrs. Readers put them back.
//
// The core columns (what searches, metrics and trace assembly scan: IDs,
// times, name, kind, status, service) are Snappy, the rest zstd (the
// writer's codec). A search decompresses every page of these columns that
// holds a candidate, and candidates are scattered, so their decompression
// is most of a selective search's time: Snappy decodes several times
// faster and made the searches of bench/query 15-30% faster at 10M spans,
// for 3-4% more bytes per span (docs/benchmarks.md). span_id is random
// bytes that no codec shrinks, so it is stored uncompressed. The bulky
// columns (attributes, events, resources) are read only for the rows of
// traces being returned, and keep zstd's size.
type spanRow struct {
	TraceID       [16]byte `parquet:"trace_id,snappy"`
	SpanID        [8]byte  `parquet:"span_id,uncompressed"`
	ParentSpanID  [8]byte  `parquet:"parent_span_id,snappy"`
	Start         int64    `parquet:"start_unix_nano,delta,snappy"`
	Duration      int64    `parquet:"duration_nano,delta,snappy"`
	Name          string   `parquet:"name,dict,snappy"`
	Kind          int32    `parquet:"kind,snappy"`
	StatusCode    int32    `parquet:"status_code,snappy"`
	StatusMessage string   `parquet:"status_message,optional"`
	TraceState    string   `parquet:"trace_state,optional"`
	Flags         int64    `parquet:"flags,optional"`

	// Dedicated resource column.
	ServiceName string `parquet:"service_name,dict,snappy"`
	// Dedicated span columns.
	HTTPMethod     string `parquet:"http_method,optional,dict"`
	HTTPRoute      string `parquet:"http_route,optional,dict"`
	HTTPStatusCode int64  `parquet:"http_status_code,optional"`
	URLPath        string `parquet:"url_path,optional"`
	DBSystem       string `parquet:"db_system,optional,dict"`
	RPCMethod      string `parquet:"rpc_method,optional,dict"`

	Attrs  []attrRow  `parquet:"attrs"`
	Events []eventRow `parquet:"events"`
	Links  []linkRow  `parquet:"links"`
	// Resource and Scope are the encoded resource (without service.name)
	// and instrumentation scope (see encodeResource). A block holds few
	// distinct ones, so the dictionary stores each once and a row costs a
	// dictionary index.
	Resource []byte `parquet:"resource,dict"`
	Scope    []byte `parquet:"scope,dict"`
}

// logRow is one log record. Rows are sorted by (service_name, time), the
// way LogQL selects them: by stream, then by time range.
type logRow struct {
	Time         int64    `parquet:"time_unix_nano,delta"`
	ObservedTime int64    `parquet:"observed_time_unix_nano,delta"`
	Severity     int32    `parquet:"severity_number"`
	SeverityText string   `parquet:"severity_text,optional,dict"`
	Body         attrRow  `parquet:"body"`
	TraceID      [16]byte `parquet:"trace_id"`
	SpanID       [8]byte  `parquet:"span_id"`
	Flags        int64    `parquet:"flags,optional"`
	EventName    string   `parquet:"event_name,optional,dict"`

	ServiceName string    `parquet:"service_name,dict"`
	Attrs       []attrRow `parquet:"attrs"`
	Resource    []byte    `parquet:"resource,dict"`
	Scope       []byte    `parquet:"scope,dict"`
}

// Dedicated span attribute columns, in the order readers restore them.
// Keys follow the stable OpenTelemetry semantic conventions.
const (
	keyHTTPMethod     = "http.request.method"
	keyHTTPRoute      = "http.route"
	keyHTTPStatusCode = "http.response.status_code"
	keyURLPath        = "url.path"
	keyDBSystem       = "db.system"
	keyRPCMethod      = "rpc.method"
)

// attrRows appends a's rows to dst.
func (e *encoder) attrRows(dst []attrRow, a storage.Attrs) []attrRow {
	for i := range a {
		dst = e.appendAttrRow(dst, a[i].Key, &a[i].Value)
	}
	return dst
}

// appendAttrRow appends an attribute's row to dst, filled in place: an
// attribute copied into a temporary and its row returned by value cost a
// head's flush store-forwarding stalls on every attribute, as they did
// the head's decoding (recordReader.attrs).
func (e *encoder) appendAttrRow(dst []attrRow, key string, v *storage.Value) []attrRow {
	dst = append(dst, attrRow{})
	r := &dst[len(dst)-1]
	r.Key = e.keys.prefixed(key, v.Type)
	r.Value = e.value(v)
	return dst
}

// value is encodeValue for a row about to be written: numbers are
// formatted into e.vals instead of a string each (they were most of a
// head flush's allocations), so the result is valid until e.written.
func (e *encoder) value(v *storage.Value) string {
	switch v.Type {
	case storage.TypeInt, storage.TypeBool:
		n := len(e.vals)
		e.vals = strconv.AppendInt(e.vals, v.Int, 10)
		return unsafe.String(&e.vals[n], len(e.vals)-n)
	case storage.TypeDouble:
		n := len(e.vals)
		e.vals = strconv.AppendFloat(e.vals, v.Double, 'g', -1, 64)
		return unsafe.String(&e.vals[n], len(e.vals)-n)
	}
	return v.Str
}

// written tells e that the rows it filled have been written: the
// Parquet writer copies what it keeps of them, so the buffer behind their
// numbers is free for the next.
func (e *encoder) written() {
	if cap(e.vals) > maxValsCap {
		e.vals = nil // a batch of huge arrays, say: not kept for the next
		return
	}
	e.vals = e.vals[:0]
}

// maxValsCap is the most of e.vals kept from one batch of rows to the
// next: writeBatch rows of a few dozen numbers each.
const maxValsCap = 256 << 10

func encodeValue(v storage.Value) string {
	switch v.Type {
	case storage.TypeInt, storage.TypeBool:
		return strconv.FormatInt(v.Int, 10)
	case storage.TypeDouble:
		return strconv.FormatFloat(v.Double, 'g', -1, 64)
	}
	return v.Str
}

func decodeValue(t storage.ValueType, s string) storage.Value {
	v := storage.Value{Type: t}
	switch t {
	case storage.TypeInt, storage.TypeBool:
		v.Int, _ = strconv.ParseInt(s, 10, 64)
	case storage.TypeDouble:
		v.Double, _ = strconv.ParseFloat(s, 64)
	default:
		v.Str = s
	}
	return v
}

func (r *attrRow) attr() storage.Attr {
	if r.Key == "" {
		return storage.Attr{}
	}
	return storage.Attr{Key: r.Key[1:], Value: decodeValue(storage.ValueType(r.Key[0]), r.Value)}
}

func fromAttrRows(dst storage.Attrs, rows []attrRow) storage.Attrs {
	for i := range rows {
		dst = append(dst, rows[i].attr())
	}
	return dst
}

// The resource and scope encodings (see docs/storage-format.md):
//
//	resource: str schema_url | attrs
//	scope:    str name | str version | str schema_url | attrs
//	attrs:    uvarint n | n × (str key | byte type | str value)
//	str:      uvarint length | bytes
//
// service.name is left out of the resource; it has its own column.

func appendStr(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendAttrsBlob(dst []byte, a storage.Attrs, skipService bool) []byte {
	n := 0
	for i := range a {
		if !(skipService && isServiceName(a[i])) {
			n++
		}
	}
	dst = binary.AppendUvarint(dst, uint64(n))
	for i := range a {
		if skipService && isServiceName(a[i]) {
			continue
		}
		dst = appendStr(dst, a[i].Key)
		dst = append(dst, byte(a[i].Value.Type))
		dst = appendStr(dst, encodeValue(a[i].Value))
	}
	return dst
}

func isServiceName(a storage.Attr) bool {
	return a.Key == "service.name" && a.Value.Type == storage.TypeStr && a.Value.Str != ""
}

var errBlob = errors.New("bad resource or scope encoding")

type blobReader struct {
	b   []byte
	err error
}

func (r *blobReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errBlob
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *blobReader) str() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.err = errBlob
		r.b = nil
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *blobReader) attrs(dst storage.Attrs) storage.Attrs {
	n := r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		k := r.str()
		if len(r.b) == 0 {
			r.err = errBlob
			break
		}
		t := storage.ValueType(r.b[0])
		r.b = r.b[1:]
		dst = append(dst, storage.Attr{Key: k, Value: decodeValue(t, r.str())})
	}
	return dst
}

// encoder turns the shared *Resource and *InstrumentationScope of incoming
// spans into their encodings once per pointer, not once per span.
type encoder struct {
	res   map[*storage.Resource][]byte
	scope map[*storage.InstrumentationScope][]byte
	keys  keyCache
	// vals holds the text of the numbers of the rows not yet written
	// (value), until written.
	vals []byte
}

func newEncoder() *encoder {
	return &encoder{res: map[*storage.Resource][]byte{}, scope: map[*storage.InstrumentationScope][]byte{}}
}

func (e *encoder) resource(r *storage.Resource) []byte {
	if b, ok := e.res[r]; ok {
		return b
	}
	var b []byte
	if r != nil {
		b = appendStr(b, r.SchemaURL)
		b = appendAttrsBlob(b, r.Attrs, true)
	} else {
		b = appendStr(b, "")
		b = appendAttrsBlob(b, nil, true)
	}
	e.res[r] = b
	return b
}

func (e *encoder) scopeOf(s *storage.InstrumentationScope) []byte {
	if b, ok := e.scope[s]; ok {
		return b
	}
	var sc storage.InstrumentationScope
	if s != nil {
		sc = *s
	}
	b := appendStr(nil, sc.Name)
	b = appendStr(b, sc.Version)
	b = appendStr(b, sc.SchemaURL)
	b = appendAttrsBlob(b, sc.Attrs, false)
	e.scope[s] = b
	return b
}

// toSpanRow fills r from s. r's slices are reused.
func toSpanRow(r *spanRow, s *storage.Span, enc *encoder) {
	*r = spanRow{
		TraceID: s.TraceID, SpanID: s.SpanID, ParentSpanID: s.ParentSpanID,
		Start: s.StartUnixNano, Duration: s.EndUnixNano - s.StartUnixNano,
		Name: s.Name, Kind: int32(s.Kind), StatusCode: int32(s.StatusCode), StatusMessage: s.StatusMessage,
		TraceState: s.TraceState, Flags: int64(s.Flags),
		ServiceName: s.Resource.ServiceName(),
		Attrs:       r.Attrs[:0], Events: r.Events[:0], Links: r.Links[:0],
		Resource: enc.resource(s.Resource), Scope: enc.scopeOf(s.Scope),
	}
	for i := range s.Attrs {
		a := &s.Attrs[i]
		v := &a.Value
		switch {
		case a.Key == keyHTTPMethod && v.Type == storage.TypeStr && v.Str != "":
			r.HTTPMethod = v.Str
		case a.Key == keyHTTPRoute && v.Type == storage.TypeStr && v.Str != "":
			r.HTTPRoute = v.Str
		case a.Key == keyHTTPStatusCode && v.Type == storage.TypeInt && v.Int != 0:
			r.HTTPStatusCode = v.Int
		case a.Key == keyURLPath && v.Type == storage.TypeStr && v.Str != "":
			r.URLPath = v.Str
		case a.Key == keyDBSystem && v.Type == storage.TypeStr && v.Str != "":
			r.DBSystem = v.Str
		case a.Key == keyRPCMethod && v.Type == storage.TypeStr && v.Str != "":
			r.RPCMethod = v.Str
		default:
			r.Attrs = enc.appendAttrRow(r.Attrs, a.Key, v)
		}
	}
	for _, e := range s.Events {
		r.Events = append(r.Events, eventRow{TimeUnixNano: e.TimeUnixNano, Name: e.Name, Attrs: enc.attrRows(reused(r.Events).Attrs[:0], e.Attrs)})
	}
	for _, l := range s.Links {
		r.Links = append(r.Links, linkRow{TraceID: l.TraceID[:], SpanID: l.SpanID[:], TraceState: l.TraceState, Flags: int64(l.Flags), Attrs: enc.attrRows(reused(r.Links).Attrs[:0], l.Attrs)})
	}
}

// reused returns the element past s's end within its capacity, or a zero
// one: an event or link of the row written before, whose attribute
// slice the next can reuse.
func reused[T any](s []T) T {
	if len(s) < cap(s) {
		return s[:len(s)+1][len(s)]
	}
	var zero T
	return zero
}

// resourceCache decodes each distinct resource and scope encoding once per
// reader and shares the result between the rows that carry it.
type resourceCache struct {
	res   map[string]*storage.Resource
	scope map[string]*storage.InstrumentationScope
	err   error
}

func newResourceCache() *resourceCache {
	return &resourceCache{res: map[string]*storage.Resource{}, scope: map[string]*storage.InstrumentationScope{}}
}

func (c *resourceCache) resource(service string, blob []byte) *storage.Resource {
	// The map lookup with a string(bytes) conversion does not allocate.
	if r, ok := c.res[string(blob)]; ok && r.ServiceName() == service {
		return r
	}
	br := blobReader{b: blob}
	r := &storage.Resource{SchemaURL: br.str()}
	if service != "" {
		r.Attrs = append(r.Attrs, storage.Attr{Key: "service.name", Value: storage.Str(service)})
	}
	r.Attrs = br.attrs(r.Attrs)
	if br.err != nil && c.err == nil {
		c.err = br.err
	}
	c.res[string(blob)] = r
	return r
}

func (c *resourceCache) scopeOf(blob []byte) *storage.InstrumentationScope {
	if s, ok := c.scope[string(blob)]; ok {
		return s
	}
	br := blobReader{b: blob}
	s := &storage.InstrumentationScope{Name: br.str(), Version: br.str(), SchemaURL: br.str()}
	s.Attrs = br.attrs(nil)
	if br.err != nil && c.err == nil {
		c.err = br.err
	}
	c.scope[string(blob)] = s
	return s
}

func fromSpanRow(r *spanRow, c *resourceCache) storage.Span {
	s := storage.Span{
		TraceID: r.TraceID, SpanID: r.SpanID, ParentSpanID: r.ParentSpanID,
		TraceState: r.TraceState, Flags: uint32(r.Flags), Name: r.Name,
		Kind: storage.SpanKind(r.Kind), StatusCode: storage.StatusCode(r.StatusCode), StatusMessage: r.StatusMessage,
		StartUnixNano: r.Start, EndUnixNano: r.Start + r.Duration,
	}
	s.Attrs = make(storage.Attrs, 0, len(r.Attrs)+6)
	if r.HTTPMethod != "" {
		s.Attrs = append(s.Attrs, storage.Attr{Key: keyHTTPMethod, Value: storage.Str(r.HTTPMethod)})
	}
	if r.HTTPRoute != "" {
		s.Attrs = append(s.Attrs, storage.Attr{Key: keyHTTPRoute, Value: storage.Str(r.HTTPRoute)})
	}
	if r.HTTPStatusCode != 0 {
		s.Attrs = append(s.Attrs, storage.Attr{Key: keyHTTPStatusCode, Value: storage.Int(r.HTTPStatusCode)})
	}
	if r.URLPath != "" {
		s.Attrs = append(s.Attrs, storage.Attr{Key: keyURLPath, Value: storage.Str(r.URLPath)})
	}
	if r.DBSystem != "" {
		s.Attrs = append(s.Attrs, storage.Attr{Key: keyDBSystem, Value: storage.Str(r.DBSystem)})
	}
	if r.RPCMethod != "" {
		s.Attrs = append(s.Attrs, storage.Attr{Key: keyRPCMethod, Value: storage.Str(r.RPCMethod)})
	}
	s.Attrs = fromAttrRows(s.Attrs, r.Attrs)
	if len(r.Events) > 0 {
		s.Events = make([]storage.Event, len(r.Events))
		for i, e := range r.Events {
			s.Events[i] = storage.Event{TimeUnixNano: e.TimeUnixNano, Name: e.Name, Attrs: fromAttrRows(nil, e.Attrs)}
		}
	}
	if len(r.Links) > 0 {
		s.Links = make([]storage.Link, len(r.Links))
		for i, l := range r.Links {
			s.Links[i] = storage.Link{TraceState: l.TraceState, Flags: uint32(l.Flags), Attrs: fromAttrRows(nil, l.Attrs)}
			copy(s.Links[i].TraceID[:], l.TraceID)
			copy(s.Links[i].SpanID[:], l.SpanID)
		}
	}
	s.Resource = c.resource(r.ServiceName, r.Resource)
	s.Scope = c.scopeOf(r.Scope)
	return s
}

func toLogRow(r *logRow, l *storage.LogRecord, enc *encoder) {
	*r = logRow{
		Time: l.TimeUnixNano, ObservedTime: l.ObservedTimeUnixNano, Severity: l.SeverityNumber, SeverityText: l.SeverityText,
		Body: attrRow{Key: enc.keys.prefixed("", l.Body.Type), Value: enc.value(&l.Body)}, TraceID: l.TraceID, SpanID: l.SpanID, Flags: int64(l.Flags), EventName: l.EventName,
		ServiceName: l.Resource.ServiceName(),
		Attrs:       enc.attrRows(r.Attrs[:0], l.Attrs),
		Resource:    enc.resource(l.Resource), Scope: enc.scopeOf(l.Scope),
	}
}

func fromLogRow(r *logRow, c *resourceCache) storage.LogRecord {
	return storage.LogRecord{
		TimeUnixNano: r.Time, ObservedTimeUnixNano: r.ObservedTime, SeverityNumber: r.Severity, SeverityText: r.SeverityText,
		Body: r.Body.attr().Value, TraceID: r.TraceID, SpanID: r.SpanID, Flags: uint32(r.Flags), EventName: r.EventName,
		Attrs:    fromAttrRows(make(storage.Attrs, 0, len(r.Attrs)), r.Attrs),
		Resource: c.resource(r.ServiceName, r.Resource),
		Scope:    c.scopeOf(r.Scope),
	}
}
