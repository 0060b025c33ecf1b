package lokireceiver

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang/snappy"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sightlinehq/sightline/internal/otlpguard"
)

// ErrMalformed marks push bodies that cannot be decoded; they are refused
// with 400 and nothing of them is stored.
var ErrMalformed = errors.New("malformed push request")

// ErrTooLarge marks a push that would take more memory to read and decode
// than a push may (Limits.MaxDecodedBytes); it is refused with 413, which
// shippers do not retry, and nothing of it is stored.
var ErrTooLarge = errors.New("push request too large to decode")

// maxDecoded bounds the decompressed size of one protobuf push.
const maxDecoded = 64 << 20

// The heap pdata takes for a stream (a ResourceLogs with a ScopeLogs) and
// for an entry (a LogRecord and its body), beyond their strings, and for
// an attribute: what the builder charges against Limits.MaxDecodedBytes
// (otlpguard's decodedCost measures the same structs). An empty entry is
// two bytes of protobuf and 160 of heap, so 64 MiB decompressed of them
// would be 5 GB.
const (
	streamCost = 136 + 120
	entryCost  = 136 + 24
	attrCost   = 44 + 24
	// rawValueCost is what encoding/json takes for a JSON value of a
	// push, before the builder sees it: a json.RawMessage or a slice
	// header, and its bytes (DecodeJSON).
	rawValueCost = 48
)

func (r *lokiReceiver) push(w http.ResponseWriter, req *http.Request) {
	if r.admit != nil {
		if err := r.admit(otlpguard.Logs); err != nil {
			refuse(w, err)
			return
		}
	}
	if r.inflight.Full() {
		refuse(w, r.inflight.ErrFull())
		return
	}
	ctx := r.obs.StartLogsOp(req.Context())
	b := newBuilder(r.cfg.UseIncomingTimestamp, time.Now(), r.lim)
	// What the push takes is held in flight as it is read and decoded, so
	// that pushes decoding at once are bounded together, and what it takes
	// decoded until the pipeline has taken it, which under backpressure
	// is the long part: they are bounded as OTLP requests are.
	b.hold = r.inflight.Hold()
	defer b.hold.Release()
	if err := b.decodeBody(req); err != nil {
		r.obs.EndLogsOp(ctx, "loki", 0, err)
		switch {
		case errors.Is(err, otlpguard.ErrInflight):
			refuse(w, err)
		case errors.Is(err, ErrTooLarge), errors.Is(err, otlpguard.ErrTooLarge):
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		default:
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
		return
	}
	// Decoded, the push holds only what pdata takes: its scratch is
	// garbage.
	b.hold.Trim(b.decoded)
	ld := b.ld
	n := ld.LogRecordCount()
	err := r.next.ConsumeLogs(ctx, ld)
	r.obs.EndLogsOp(ctx, "loki", n, err)
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case consumererror.IsPermanent(err):
		http.Error(w, err.Error(), permanentStatus(err))
	default:
		refuse(w, err)
	}
}

// decodeBody reads a push and decodes it into b. The body is held while
// it is read, as OTLP/HTTP bodies are (otlpguard.Hold.ReadBody: a
// declared length past a push's bound is refused unread), and while the
// push decodes.
func (b *builder) decodeBody(req *http.Request) error {
	body, err := b.hold.ReadBody(req)
	if mb := (*http.MaxBytesError)(nil); errors.As(err, &mb) {
		return fmt.Errorf("%w: the body is over %d bytes (max_request_body_size)", ErrTooLarge, mb.Limit)
	}
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if err := b.chargeScratch(int64(len(body))); err != nil {
		return err
	}
	if ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); ct == "application/json" {
		return b.decodeJSON(body)
	}
	return b.decodeProtobuf(body)
}

// refuse answers a retryable error: shippers back off and resend on 5xx
// and 429, after Retry-After when the store asked for a delay
// (backpressure).
func refuse(w http.ResponseWriter, err error) {
	otlpguard.SetRetryAfter(w.Header(), err)
	http.Error(w, err.Error(), http.StatusServiceUnavailable)
}

// permanentStatus answers a permanent pipeline error: 401 or 403 when it
// carries that gRPC status (a processor found no tenant or refused it),
// else 400, as Loki answers data it will never take.
func permanentStatus(err error) int {
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unauthenticated:
			return http.StatusUnauthorized
		case codes.PermissionDenied:
			return http.StatusForbidden
		}
	}
	return http.StatusBadRequest
}

// builder turns streams into OTLP logs: one ResourceLogs per stream, its
// labels as resource attributes (service_name as service.name), each entry
// a log record with structured metadata as attributes and trace_id/span_id
// as the record's IDs.
type builder struct {
	ld       plog.Logs
	incoming bool
	now      pcommon.Timestamp
	lim      Limits
	// decoded is the heap pdata takes for the push so far, by the costs
	// above; scratch is what decoding it takes besides, garbage once it
	// is decoded: the body, its decompressed bytes, encoding/json's
	// values.
	decoded, scratch int64
	// hold is what the push holds of the receiver's bound in flight: at
	// least decoded+scratch while it decodes (none without a receiver).
	hold otlpguard.Hold
}

// charge adds n bytes to what the push takes decoded, and chargeScratch
// to what decoding it takes besides, before each allocation they count;
// past the push's bounds (check) they refuse it, having allocated at
// most those.
func (b *builder) charge(n int64) error {
	b.decoded += n
	return b.check()
}

func (b *builder) chargeScratch(n int64) error {
	b.scratch += n
	return b.check()
}

// check refuses the push, permanently (ErrTooLarge), once what it takes
// passes Limits.MaxDecodedBytes, and retryably (otlpguard's ErrFull) once
// it would take the bound in flight past its limit while other pushes
// hold part of it.
func (b *builder) check() error {
	total := b.decoded + b.scratch
	if limit := b.lim.MaxDecodedBytes; limit > 0 && total > limit {
		return fmt.Errorf("%w: over %d MiB to decode; send smaller pushes", ErrTooLarge, limit>>20)
	}
	return b.hold.To(total)
}

// Limits bound one push as Loki's limits_config does, under the same
// names and with the same defaults. Labels and structured metadata become
// attributes, which pdata sets by a linear search, so without a bound one
// stream of 100k labels took 32 s to take in.
type Limits struct {
	// MaxLabelNamesPerSeries refuses a stream with more labels.
	MaxLabelNamesPerSeries int
	// MaxStructuredMetadataEntries refuses an entry with more
	// structured metadata entries (Loki's
	// max_structured_metadata_entries_count).
	MaxStructuredMetadataEntries int
	// MaxDecodedBytes refuses a push that would take more heap to read
	// and decode (ErrTooLarge): its body, its decompressed bytes and what
	// pdata takes for it. 0 is no limit. The receiver sets it as otlpguard
	// bounds one OTLP request (otlpguard.Inflight.RequestLimit).
	MaxDecodedBytes int64
}

// DefaultLimits are Loki's defaults.
var DefaultLimits = Limits{MaxLabelNamesPerSeries: 15, MaxStructuredMetadataEntries: 128}

func (b *builder) stream(labels map[string]string) (plog.LogRecordSlice, error) {
	if len(labels) > b.lim.MaxLabelNamesPerSeries {
		return plog.LogRecordSlice{}, fmt.Errorf("%w: a stream has %d label names, over the limit of %d (max_label_names_per_series, as in Loki)", ErrMalformed, len(labels), b.lim.MaxLabelNamesPerSeries)
	}
	n := int64(streamCost + attrCost)
	for k, v := range labels {
		n += attrCost + int64(len(k)+len(v))
	}
	if err := b.charge(n); err != nil {
		return plog.LogRecordSlice{}, err
	}
	rl := b.ld.ResourceLogs().AppendEmpty()
	attrs := rl.Resource().Attributes()
	for k, v := range labels {
		if k == "service_name" {
			k = "service.name"
		}
		attrs.PutStr(k, v)
	}
	if _, ok := attrs.Get("service.name"); !ok {
		// Loki names unlabelled streams the same way.
		attrs.PutStr("service.name", "unknown_service")
	}
	return rl.ScopeLogs().AppendEmpty().LogRecords(), nil
}

func errTooManyMetadata(lim Limits) error {
	return fmt.Errorf("%w: an entry has more than %d structured metadata entries (max_structured_metadata_entries_count, as in Loki)", ErrMalformed, lim.MaxStructuredMetadataEntries)
}

func (b *builder) entry(recs plog.LogRecordSlice, ts time.Time, line string, meta [][2]string) error {
	if !utf8.ValidString(line) {
		return fmt.Errorf("%w: line is not valid UTF-8", ErrMalformed)
	}
	if len(meta) > b.lim.MaxStructuredMetadataEntries {
		return errTooManyMetadata(b.lim)
	}
	n := int64(entryCost + len(line))
	for _, kv := range meta {
		n += attrCost + int64(len(kv[0])+len(kv[1]))
	}
	if err := b.charge(n); err != nil {
		return err
	}
	lr := recs.AppendEmpty()
	lr.SetObservedTimestamp(b.now)
	if b.incoming {
		lr.SetTimestamp(pcommon.NewTimestampFromTime(ts))
	}
	lr.Body().SetStr(line)
	for _, kv := range meta {
		switch kv[0] {
		case "trace_id":
			if id, err := hex.DecodeString(kv[1]); err == nil && len(id) == 16 {
				lr.SetTraceID(pcommon.TraceID(id))
				continue
			}
		case "span_id":
			if id, err := hex.DecodeString(kv[1]); err == nil && len(id) == 8 {
				lr.SetSpanID(pcommon.SpanID(id))
				continue
			}
		}
		lr.Attributes().PutStr(kv[0], kv[1])
	}
	return nil
}

// decodeJSON adds a push in Loki's JSON format to b.
func (b *builder) decodeJSON(body []byte) error {
	var req struct {
		Streams []struct {
			Stream map[string]string   `json:"stream"`
			Values [][]json.RawMessage `json:"values"`
		} `json:"streams"`
	}
	if err := b.chargeScratch(jsonValues(body) * rawValueCost); err != nil {
		return err
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	for i, s := range req.Streams {
		recs, err := b.stream(s.Stream)
		if err != nil {
			return fmt.Errorf("streams[%d]: %w", i, err)
		}
		for j, v := range s.Values {
			if len(v) < 2 || len(v) > 3 {
				return fmt.Errorf("%w: streams[%d].values[%d]: want [timestamp, line] or [timestamp, line, metadata]", ErrMalformed, i, j)
			}
			var tsText, line string
			if err := json.Unmarshal(v[0], &tsText); err != nil {
				return fmt.Errorf("%w: streams[%d].values[%d][0]: timestamp must be a string of nanoseconds", ErrMalformed, i, j)
			}
			ns, err := strconv.ParseInt(tsText, 10, 64)
			if err != nil {
				return fmt.Errorf("%w: streams[%d].values[%d][0]: bad timestamp %q", ErrMalformed, i, j, tsText)
			}
			if err := json.Unmarshal(v[1], &line); err != nil {
				return fmt.Errorf("%w: streams[%d].values[%d][1]: line must be a string", ErrMalformed, i, j)
			}
			var meta [][2]string
			if len(v) == 3 {
				var m map[string]string
				if err := json.Unmarshal(v[2], &m); err != nil {
					return fmt.Errorf("%w: streams[%d].values[%d][2]: structured metadata must be an object of strings", ErrMalformed, i, j)
				}
				for k, val := range m {
					meta = append(meta, [2]string{k, val})
				}
			}
			if err := b.entry(recs, time.Unix(0, ns), line, meta); err != nil {
				return err
			}
		}
	}
	return nil
}

// DecodeJSON decodes Loki's JSON push format.
func DecodeJSON(body []byte, incoming bool, now time.Time, lim Limits) (plog.Logs, error) {
	b := newBuilder(incoming, now, lim)
	if err := b.decodeJSON(body); err != nil {
		return plog.Logs{}, err
	}
	return b.ld, nil
}

// DecodeProtobuf decodes a snappy-compressed logproto.PushRequest, the
// format Promtail and Alloy send.
func DecodeProtobuf(body []byte, incoming bool, now time.Time, lim Limits) (plog.Logs, error) {
	b := newBuilder(incoming, now, lim)
	if err := b.decodeProtobuf(body); err != nil {
		return plog.Logs{}, err
	}
	return b.ld, nil
}

func newBuilder(incoming bool, now time.Time, lim Limits) *builder {
	return &builder{ld: plog.NewLogs(), incoming: incoming, now: pcommon.NewTimestampFromTime(now), lim: lim}
}

// jsonValues counts the values of a JSON document, at most: each starts
// an array or object, or follows a comma.
func jsonValues(b []byte) int64 {
	var n int64
	inStr := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case inStr && c == '\\':
			i++
		case c == '"':
			inStr = !inStr
		case !inStr && (c == '[' || c == '{' || c == ','):
			n++
		}
	}
	return n
}

// decodeProtobuf adds a snappy-compressed logproto.PushRequest to b.
func (b *builder) decodeProtobuf(body []byte) error {
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return fmt.Errorf("%w: snappy: %v", ErrMalformed, err)
	}
	if n > maxDecoded {
		return fmt.Errorf("%w: decompresses to %d bytes, the limit is %d", ErrMalformed, n, maxDecoded)
	}
	if err := b.chargeScratch(int64(n)); err != nil {
		return err
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return fmt.Errorf("%w: snappy: %v", ErrMalformed, err)
	}
	err = fields(raw, func(num protowire.Number, v []byte) error {
		if num != 1 {
			return nil
		}
		return b.decodeStream(v)
	})
	if errors.Is(err, ErrTooLarge) || errors.Is(err, otlpguard.ErrInflight) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

func (b *builder) decodeStream(msg []byte) error {
	// The labels may follow the entries: a first pass finds them, and the
	// entries are decoded in a second, without a list of them, which
	// would take 24 bytes for each 2-byte empty entry.
	var labels string
	err := fields(msg, func(num protowire.Number, v []byte) error {
		if num == 1 {
			labels = string(v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	ls, err := ParseLabels(labels)
	if err != nil {
		return err
	}
	recs, err := b.stream(ls)
	if err != nil {
		return err
	}
	return fields(msg, func(num protowire.Number, e []byte) error {
		if num != 2 {
			return nil
		}
		return b.decodeEntry(recs, e)
	})
}

func (b *builder) decodeEntry(recs plog.LogRecordSlice, e []byte) error {
	var (
		secs, nanos int64
		line        string
		meta        [][2]string
	)
	err := fields(e, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			return fields(v, func(n protowire.Number, x []byte) error {
				u, m := protowire.ConsumeVarint(x)
				if m < 0 {
					return errors.New("bad timestamp")
				}
				if n == 1 {
					secs = int64(u)
				} else if n == 2 {
					nanos = int64(int32(u))
				}
				return nil
			}, true)
		case 2:
			line = string(v)
		case 3:
			if len(meta) == b.lim.MaxStructuredMetadataEntries {
				// Refused now, before a list of them grows: entry
				// would refuse it.
				return errTooManyMetadata(b.lim)
			}
			var kv [2]string
			if err := fields(v, func(n protowire.Number, x []byte) error {
				if n == 1 || n == 2 {
					kv[n-1] = string(x)
				}
				return nil
			}); err != nil {
				return err
			}
			meta = append(meta, kv)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return b.entry(recs, time.Unix(secs, nanos), line, meta)
}

// fields walks a protobuf message and calls fn with each length-delimited
// field (or, with varints set, each varint field as its encoded bytes).
// Other wire types are skipped.
func fields(msg []byte, fn func(protowire.Number, []byte) error, varints ...bool) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return protowire.ParseError(n)
		}
		msg = msg[n:]
		switch {
		case typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return protowire.ParseError(m)
			}
			if err := fn(num, v); err != nil {
				return err
			}
			msg = msg[m:]
		case typ == protowire.VarintType && len(varints) > 0:
			_, m := protowire.ConsumeVarint(msg)
			if m < 0 {
				return protowire.ParseError(m)
			}
			if err := fn(num, msg[:m]); err != nil {
				return err
			}
			msg = msg[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, msg)
			if m < 0 {
				return protowire.ParseError(m)
			}
			msg = msg[m:]
		}
	}
	return nil
}

// ParseLabels parses a Prometheus-style label set: {a="b", c="d"}.
func ParseLabels(s string) (map[string]string, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
		return nil, fmt.Errorf("labels %q: want {name=\"value\", ...}", s)
	}
	out := map[string]string{}
	rest := strings.TrimSpace(s[1 : len(s)-1])
	for rest != "" {
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("labels %q: missing =", s)
		}
		name := strings.TrimSpace(rest[:eq])
		rest = strings.TrimSpace(rest[eq+1:])
		if !strings.HasPrefix(rest, `"`) {
			return nil, fmt.Errorf("labels %q: value of %s must be quoted", s, name)
		}
		end := 1
		for end < len(rest) && rest[end] != '"' {
			if rest[end] == '\\' {
				end++
			}
			end++
		}
		if end >= len(rest) {
			return nil, fmt.Errorf("labels %q: unterminated value of %s", s, name)
		}
		v, err := strconv.Unquote(rest[:end+1])
		if err != nil {
			return nil, fmt.Errorf("labels %q: bad value of %s", s, name)
		}
		out[name] = v
		rest = strings.TrimSpace(rest[end+1:])
		rest = strings.TrimSpace(strings.TrimPrefix(rest, ","))
	}
	return out, nil
}
