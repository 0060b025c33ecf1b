// Package headproto is how a querier of a shared bucket reads what an
// ingester holds and the bucket does not yet: the ingester's heads and
// its recent level-0 blocks (store.Handoff). The ingester serves it over
// HTTP (Handler); the querier reads it as a storage.Querier (Client), and
// merges it with its own blocks (storage.NewMergeQuerier).
//
// Version 1 of the protocol, all under /internal/v1/:
//
//	GET  parts         → {"instance": "<ingester ID>", "parts": ["", "<block ID>", ...]}
//	POST spans         {"exclude": [...], "query": SpanQuery}   → frames
//	POST logs          {"exclude": [...], "query": LogQuery}    → frames
//	POST services      {"exclude": [...], "start", "end"}       → ["svc", ...]
//	POST operations    {"exclude": [...], "service", "start", "end"} → [{"Name", "Kind"}, ...]
//	POST tag_names     {"exclude": [...], "start", "end"}       → {"Span": [...], "Resource": [...]}
//	POST tag_values    {"exclude": [...], "scope", "key", "start", "end", "limit"} → [Value, ...]
//
// A querier lists the parts once per query, and excludes those its own
// snapshot of the bucket covers (store.DB.Covering): "" (the live head)
// is never excluded. Queries are the storage package's SpanQuery and
// LogQuery as JSON (matchers are compiled again on arrival).
//
// Frames carry spans and log records as OTLP protobuf, in chunks:
//
//	frame: type byte | uvarint length | payload
//	type:  1 ExportTraceServiceRequest, 2 ExportLogsServiceRequest,
//	       3 error (text; the stream ends), 0 end (length 0)
//
// A stream that stops without an end frame was cut short, and the client
// reports it. A client that has read enough closes the response body; the
// ingester stops at its next write.
package headproto

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// Frame types.
const (
	frameEnd    byte = 0
	frameTraces byte = 1
	frameLogs   byte = 2
	frameError  byte = 3
)

// prefix holds the protocol version.
const prefix = "/internal/v1/"

// maxFrame bounds a frame's payload: a chunk of chunkRows spans is far
// smaller, and a larger length is a damaged or hostile stream.
const maxFrame = 64 << 20

// chunkRows is how many spans or records go into one frame.
const chunkRows = 1000

// ErrTruncated is returned when an answer ends without its end frame: the
// ingester stopped or the connection broke mid-answer.
var ErrTruncated = errors.New("ingester answer cut short")

// partsAnswer names the ingester and its parts. The instance lets a
// querier that reaches one ingester by two addresses (a dual-stack DNS
// name) read it once.
type partsAnswer struct {
	Instance string   `json:"instance"`
	Parts    []string `json:"parts"`
}

// request is the body of every POST.
type request struct {
	Exclude []string           `json:"exclude,omitempty"`
	Spans   *storage.SpanQuery `json:"spans,omitempty"`
	Logs    *storage.LogQuery  `json:"logs,omitempty"`
	Service string             `json:"service,omitempty"`
	Scope   storage.Scope      `json:"scope,omitempty"`
	Key     string             `json:"key,omitempty"`
	Start   int64              `json:"start,omitempty"`
	End     int64              `json:"end,omitempty"`
	Limit   int                `json:"limit,omitempty"`
}

// compile rebuilds the matchers of a decoded query: their compiled
// regular expressions do not travel.
func compile(ms []*storage.Matcher) ([]*storage.Matcher, error) {
	out := make([]*storage.Matcher, len(ms))
	for i, m := range ms {
		if m == nil {
			return nil, errors.New("null matcher")
		}
		c, err := storage.NewMatcher(m.Scope, m.Key, m.Op, m.Value)
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

func writeFrame(w io.Writer, typ byte, payload []byte) error {
	var hdr [1 + binary.MaxVarintLen64]byte
	hdr[0] = typ
	n := binary.PutUvarint(hdr[1:], uint64(len(payload)))
	if _, err := w.Write(hdr[:1+n]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// readFrame reads one frame; buf is reused for its payload.
func readFrame(r *bufio.Reader, buf []byte) (byte, []byte, error) {
	typ, err := r.ReadByte()
	if err == io.EOF {
		return 0, nil, ErrTruncated
	}
	if err != nil {
		return 0, nil, err
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %v", ErrTruncated, err)
	}
	if n > maxFrame {
		return 0, nil, fmt.Errorf("ingester frame of %d bytes is over the %d byte limit", n, maxFrame)
	}
	// Grown as the payload arrives, so that a length that lies costs
	// only the bytes actually sent.
	buf = buf[:0]
	for uint64(len(buf)) < n {
		k := min(n-uint64(len(buf)), 1<<20)
		buf = slices.Grow(buf, int(k))
		m, err := io.ReadFull(r, buf[len(buf):len(buf)+int(k)])
		buf = buf[:len(buf)+m]
		if err != nil {
			return 0, nil, fmt.Errorf("%w: %v", ErrTruncated, err)
		}
	}
	switch typ {
	case frameEnd, frameTraces, frameLogs, frameError:
	default:
		return 0, nil, fmt.Errorf("unknown ingester frame type %d", typ)
	}
	return typ, buf, nil
}
