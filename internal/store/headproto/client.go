package headproto

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/otlpguard"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// Client reads one ingester.
type Client struct {
	base string
	http *http.Client
}

// NewClient reads the ingester at base (scheme, host and port) with hc.
func NewClient(base string, hc *http.Client) *Client {
	return &Client{base: strings.TrimSuffix(base, "/"), http: hc}
}

// String names the ingester, for errors.
func (c *Client) String() string { return c.base }

// Querier lists the ingester's parts and returns a querier over those
// covered does not cover (store.DB.Covering), and the ingester's instance
// ID.
func (c *Client) Querier(ctx context.Context, covered func(id string) bool) (storage.Querier, string, error) {
	var parts partsAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+prefix+"parts", nil)
	if err != nil {
		return nil, "", err
	}
	if err := c.do(req, func(body io.Reader) error { return json.NewDecoder(io.LimitReader(body, maxFrame)).Decode(&parts) }); err != nil {
		return nil, "", err
	}
	q := &remoteQuerier{c: c}
	for _, id := range parts.Parts {
		if id != "" && covered(id) {
			q.exclude = append(q.exclude, id)
		}
	}
	return q, parts.Instance, nil
}

func (c *Client) do(req *http.Request, read func(io.Reader) error) error {
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("ingester %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("ingester %s: %s: %s", c.base, resp.Status, bytes.TrimSpace(msg))
	}
	if err := read(resp.Body); err != nil {
		return fmt.Errorf("ingester %s: %w", c.base, err)
	}
	return nil
}

type remoteQuerier struct {
	c       *Client
	exclude []string
}

func (q *remoteQuerier) post(ctx context.Context, path string, r *request, read func(io.Reader) error) error {
	r.Exclude = q.exclude
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, q.c.base+prefix+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return q.c.do(req, read)
}

// frames reads an answer's frames and calls fn with each payload of type
// want, until fn returns false, the end frame, or an error frame.
func frames(body io.Reader, want byte, fn func([]byte) (bool, error)) error {
	r := bufio.NewReader(body)
	var buf []byte
	for {
		typ, payload, err := readFrame(r, buf)
		if err != nil {
			return err
		}
		buf = payload
		switch typ {
		case frameEnd:
			return nil
		case frameError:
			return errors.New(string(payload))
		case want:
			more, err := fn(payload)
			if err != nil || !more {
				return err
			}
		default:
			return fmt.Errorf("unexpected ingester frame type %d", typ)
		}
	}
}

func (q *remoteQuerier) Spans(ctx context.Context, sq *storage.SpanQuery, fn func(*storage.Span) bool) error {
	var spans []storage.Span
	return q.post(ctx, "spans", &request{Spans: sq}, func(body io.Reader) error {
		return frames(body, frameTraces, func(b []byte) (bool, error) {
			// pdata's decoder recurses into nested values: the same check
			// as the OTLP receiver's keeps a damaged answer from
			// overflowing the stack.
			if err := otlpguard.CheckProto(otlpguard.Traces, b, otlpguard.Limits{}); err != nil {
				return false, err
			}
			td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
			if err != nil {
				return false, err
			}
			spans = storage.AppendTraces(spans[:0], td)
			for i := range spans {
				if !fn(&spans[i]) {
					return false, nil
				}
			}
			// fn may keep the spans: the next chunk gets a new slice.
			spans = nil
			return true, nil
		})
	})
}

func (q *remoteQuerier) TraceByID(ctx context.Context, id storage.TraceID, start, end int64) ([]storage.Span, error) {
	var out []storage.Span
	var tooLarge error
	stats := storage.StatsFrom(ctx)
	err := q.Spans(ctx, &storage.SpanQuery{TraceID: id}, func(s *storage.Span) bool {
		if tooLarge = stats.CheckTraceSpans(len(out) + 1); tooLarge != nil {
			return false
		}
		out = append(out, *s)
		return true
	})
	if err == nil {
		err = tooLarge
	}
	if err == nil && len(out) == 0 {
		err = storage.ErrNotFound
	}
	return out, err
}

func (q *remoteQuerier) Logs(ctx context.Context, lq *storage.LogQuery, fn func(*storage.LogRecord) bool) error {
	return q.post(ctx, "logs", &request{Logs: lq}, func(body io.Reader) error {
		return frames(body, frameLogs, func(b []byte) (bool, error) {
			if err := otlpguard.CheckProto(otlpguard.Logs, b, otlpguard.Limits{}); err != nil {
				return false, err
			}
			ld, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(b)
			if err != nil {
				return false, err
			}
			recs := storage.AppendLogs(nil, ld)
			for i := range recs {
				if !fn(&recs[i]) {
					return false, nil
				}
			}
			return true, nil
		})
	})
}

func (q *remoteQuerier) LogsByTrace(ctx context.Context, id storage.TraceID, spanID storage.SpanID, start, end int64, limit int) ([]storage.LogRecord, error) {
	out := storage.OldestLogs{Limit: limit}
	err := q.Logs(ctx, &storage.LogQuery{TraceID: id, SpanID: spanID}, func(l *storage.LogRecord) bool {
		out.Add(l)
		return true
	})
	return out.Result(), err
}

func (q *remoteQuerier) meta(ctx context.Context, path string, r *request, v any) error {
	return q.post(ctx, path, r, func(body io.Reader) error { return json.NewDecoder(io.LimitReader(body, maxFrame)).Decode(v) })
}

func (q *remoteQuerier) Services(ctx context.Context, start, end int64) ([]string, error) {
	var out []string
	err := q.meta(ctx, "services", &request{Start: start, End: end}, &out)
	return out, err
}

func (q *remoteQuerier) Operations(ctx context.Context, service string, start, end int64) ([]storage.Operation, error) {
	var out []storage.Operation
	err := q.meta(ctx, "operations", &request{Service: service, Start: start, End: end}, &out)
	return out, err
}

func (q *remoteQuerier) TagNames(ctx context.Context, start, end int64) (storage.TagNames, error) {
	var out storage.TagNames
	err := q.meta(ctx, "tag_names", &request{Start: start, End: end}, &out)
	return out, err
}

func (q *remoteQuerier) TagValues(ctx context.Context, scope storage.Scope, key string, start, end int64, limit int) ([]storage.Value, error) {
	var out []storage.Value
	err := q.meta(ctx, "tag_values", &request{Scope: scope, Key: key, Start: start, End: end, Limit: limit}, &out)
	return out, err
}

func (q *remoteQuerier) Close() error { return nil }
