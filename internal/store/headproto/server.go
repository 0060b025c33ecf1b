package headproto

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/store"
	"github.com/sightlinehq/sightline/internal/store/block"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// maxRequest bounds a request body: a query and a list of excluded part
// IDs, a few KiB.
const maxRequest = 1 << 20

// Handler serves db's handoff (store.DB.Handoff) to queriers. It holds no
// state between requests.
func Handler(db *store.DB) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+prefix+"parts", func(w http.ResponseWriter, r *http.Request) {
		h := db.Handoff()
		defer h.Close()
		writeJSON(w, partsAnswer{Instance: db.Writer(), Parts: h.Parts()})
	})
	// serve decodes a request and opens the querier over the parts of sig
	// it does not exclude.
	serve := func(sig block.Signal, answer func(ctx context.Context, q storage.Querier, req *request, w http.ResponseWriter) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var req request
			dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequest))
			if err := dec.Decode(&req); err != nil {
				http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
				return
			}
			h := db.Handoff()
			defer h.Close()
			q := h.Querier(sig, func(id string) bool { return id != "" && slices.Contains(req.Exclude, id) })
			defer q.Close()
			if err := answer(r.Context(), q, &req, w); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
			}
		}
	}
	mux.Handle("POST "+prefix+"spans", serve(block.Traces, func(ctx context.Context, q storage.Querier, req *request, w http.ResponseWriter) error {
		if req.Spans == nil {
			return errors.New("bad request: no span query")
		}
		sq := *req.Spans
		var err error
		if sq.Matchers, err = compile(sq.Matchers); err != nil {
			return err
		}
		st := newStream(w)
		var chunk []storage.Span
		flush := func() bool {
			if len(chunk) == 0 {
				return true
			}
			b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(storage.SpansToTraces(chunk))
			chunk = chunk[:0]
			return err == nil && st.frame(frameTraces, b)
		}
		qerr := q.Spans(ctx, &sq, func(s *storage.Span) bool {
			chunk = append(chunk, *s)
			if sq.Projection == storage.ProjectCore {
				// The store may reuse *s (storage.ProjectCore): keep a copy
				// whose own fields are not shared.
				chunk[len(chunk)-1].Attrs = slices.Clone(s.Attrs)
			}
			return len(chunk) < chunkRows || flush()
		})
		if flush() {
			st.end(qerr)
		}
		return nil
	}))
	mux.Handle("POST "+prefix+"logs", serve(block.Logs, func(ctx context.Context, q storage.Querier, req *request, w http.ResponseWriter) error {
		if req.Logs == nil {
			return errors.New("bad request: no log query")
		}
		lq := *req.Logs
		var err error
		if lq.Matchers, err = compile(lq.Matchers); err != nil {
			return err
		}
		st := newStream(w)
		var chunk []storage.LogRecord
		flush := func() bool {
			if len(chunk) == 0 {
				return true
			}
			b, err := (&plog.ProtoMarshaler{}).MarshalLogs(storage.LogsToPdata(chunk))
			chunk = chunk[:0]
			return err == nil && st.frame(frameLogs, b)
		}
		qerr := q.Logs(ctx, &lq, func(l *storage.LogRecord) bool {
			chunk = append(chunk, *l)
			return len(chunk) < chunkRows || flush()
		})
		if flush() {
			st.end(qerr)
		}
		return nil
	}))
	meta := func(answer func(ctx context.Context, q storage.Querier, req *request) (any, error)) http.Handler {
		return serve(block.Traces, func(ctx context.Context, q storage.Querier, req *request, w http.ResponseWriter) error {
			v, err := answer(ctx, q, req)
			if err != nil {
				return err
			}
			writeJSON(w, v)
			return nil
		})
	}
	mux.Handle("POST "+prefix+"services", meta(func(ctx context.Context, q storage.Querier, req *request) (any, error) {
		return q.Services(ctx, req.Start, req.End)
	}))
	mux.Handle("POST "+prefix+"operations", meta(func(ctx context.Context, q storage.Querier, req *request) (any, error) {
		return q.Operations(ctx, req.Service, req.Start, req.End)
	}))
	mux.Handle("POST "+prefix+"tag_names", meta(func(ctx context.Context, q storage.Querier, req *request) (any, error) {
		return q.TagNames(ctx, req.Start, req.End)
	}))
	mux.Handle("POST "+prefix+"tag_values", meta(func(ctx context.Context, q storage.Querier, req *request) (any, error) {
		return q.TagValues(ctx, req.Scope, req.Key, req.Start, req.End, req.Limit)
	}))
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// stream writes frames, flushing each so that the querier reads while the
// ingester scans; a failed write (the querier hung up) stops it.
type stream struct {
	w     http.ResponseWriter
	flush http.Flusher
	err   error
}

func newStream(w http.ResponseWriter) *stream {
	w.Header().Set("Content-Type", "application/x-sightline-frames")
	f, _ := w.(http.Flusher)
	return &stream{w: w, flush: f}
}

func (s *stream) frame(typ byte, payload []byte) bool {
	if s.err == nil {
		s.err = writeFrame(s.w, typ, payload)
		if s.err == nil && s.flush != nil {
			s.flush.Flush()
		}
	}
	return s.err == nil
}

// end closes the answer: an error frame if the query failed, else the end
// frame.
func (s *stream) end(err error) {
	if err != nil {
		s.frame(frameError, []byte(err.Error()))
		return
	}
	s.frame(frameEnd, nil)
}
