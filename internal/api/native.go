package api

import (
	"encoding/hex"
	"net/http"

	"github.com/prometheus/prometheus/tsdb"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// nativeRoutes serves what the compatible APIs cannot: a trace's logs,
// found by trace_id (and span_id), for the UI's trace view.
func (a *API) nativeRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/sightline/v1/traces/{id}/logs", a.traceLogs)
	mux.HandleFunc("GET /api/sightline/v1/status", a.status)
	mux.HandleFunc("GET /api/sightline/v1/silences", a.silences)
}

// status answers the stores' sizes and retention, for the UI's page about
// Sightline itself. With tenancy on it needs a tenant like every other
// read, and answers a tenant only the server's own state (memory,
// refusals, retention, problems) and the tenant's own series count: the
// stores' span, log and block figures are every tenant's together.
func (a *API) status(w http.ResponseWriter, r *http.Request) {
	tenant, err := a.tenant(r)
	if err != nil {
		a.fail(w, r, styleJSON, err)
		return
	}
	db := a.stores.Traces
	if db == nil {
		a.fail(w, r, styleJSON, errNotReady)
		return
	}
	st := db.Stats()
	out := map[string]any{
		"blocks":               st.Blocks,
		"block_bytes":          st.BlockBytes,
		"spans_in_blocks":      st.BlockSpans,
		"logs_in_blocks":       st.BlockLogs,
		"spans_in_head":        st.HeadSpans,
		"logs_in_head":         st.HeadLogs,
		"retention_age":        st.RetentionAge.String(),
		"retention_bytes":      st.RetentionBytes,
		"problems":             len(db.Problems()),
		"memory_bytes":         st.MemoryBytes,
		"memory_budget":        st.MemoryBudget,
		"pending_heads":        st.PendingHeads,
		"level0_blocks":        st.Level0TraceBlocks + st.Level0LogBlocks,
		"stall_blocks":         st.StallBlocks,
		"refused_spans":        st.RefusedSpans,
		"refused_logs":         st.RefusedLogs,
		"refused_requests":     st.RefusedTraceRequests + st.RefusedLogRequests,
		"attributes_truncated": st.TruncatedAttributes,
		"attributes_dropped":   st.DroppedAttributes,
		"retried_spans":        st.RetriedSpans,
		"retried_logs":         st.RetriedLogs,
	}
	if m := a.stores.Metrics; m != nil {
		h := m.TSDB().Head()
		out["metrics_series"] = h.NumSeries()
		out["metrics_max_series"] = m.MaxSeries()
		out["metrics_refused_samples"] = m.SeriesLimitRefusals()
		out["metrics_blocks"] = len(m.TSDB().Blocks())
		out["metrics_retention"] = m.Retention().String()
		out["metrics_write_failures"] = m.WriteFailures()
		if err := m.Problem(); err != nil {
			out["problems"] = out["problems"].(int) + 1
			out["metrics_problem"] = err.Error()
		}
		if tenant != "" {
			n, err := tenantSeries(r, h, a.tenantLabel(), tenant)
			if err != nil {
				a.fail(w, r, styleJSON, err)
				return
			}
			out["metrics_series"] = n
		}
	}
	if tenant != "" {
		for _, k := range []string{"blocks", "block_bytes", "spans_in_blocks", "logs_in_blocks", "spans_in_head", "logs_in_head", "metrics_blocks"} {
			delete(out, k)
		}
		out["tenant"] = tenant
	}
	writeJSON(w, http.StatusOK, out)
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
		logs, err := qr.q.LogsByTrace(qr.ctx, id, span, 0, 0, a.cfg.Limits.MaxResults)
		if err != nil && len(logs) == 0 {
			return err
		}
		b, err := (&plog.JSONMarshaler{}).MarshalLogs(storage.LogsToPdata(logs))
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(validUTF8(b))
		return nil
	}()
	if err != nil {
		a.fail(w, r, styleJSON, err)
	}
}

// tenantSeries counts the head series carrying the tenant's label.
func tenantSeries(r *http.Request, h *tsdb.Head, label, tenant string) (int, error) {
	ir, err := h.Index()
	if err != nil {
		return 0, err
	}
	defer ir.Close()
	p, err := ir.Postings(r.Context(), label, tenant)
	if err != nil {
		return 0, err
	}
	n := 0
	for p.Next() {
		n++
	}
	return n, p.Err()
}
