package api

import (
	"encoding/hex"
	"net/http"

	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// nativeRoutes serves what the compatible APIs cannot: a trace's logs,
// found by trace_id (and span_id), for the UI's trace view.
func (a *API) nativeRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/sightline/v1/traces/{id}/logs", a.traceLogs)
}

// traceLogs answers OTLP JSON logs (a LogsData) of the trace, oldest first;
// span_id narrows them to one span.
func (a *API) traceLogs(w http.ResponseWriter, r *http.Request) {
	err := func() error {
		id, err := storage.ParseTraceID(r.PathValue("id"))
		if err != nil {
			return badRequest("%v", err)
		}
		var span storage.SpanID
		if s := r.FormValue("span_id"); s != "" {
			b, err := hex.DecodeString(s)
			if err != nil || len(b) != len(span) {
				return badRequest("invalid span_id %q: want 16 hex digits", s)
			}
			copy(span[:], b)
		}
		qr, err := a.open(r)
		if err != nil {
			return err
		}
		defer qr.close()
		logs, err := qr.q.LogsByTrace(qr.ctx, id, span, 0, 0)
		if err != nil && len(logs) == 0 {
			return err
		}
		if limit := a.cfg.Limits.MaxResults; limit > 0 && len(logs) > limit {
			logs = logs[:limit]
		}
		b, err := (&plog.JSONMarshaler{}).MarshalLogs(storage.LogsToPdata(logs))
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
		return nil
	}()
	if err != nil {
		a.fail(w, r, styleJSON, err)
	}
}
