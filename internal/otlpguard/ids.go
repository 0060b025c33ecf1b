package otlpguard

import (
	"fmt"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// Spans without a valid trace_id and span_id (missing, or all zeros, which
// OTLP defines as invalid) cannot be found by ID, linked or assembled into
// a trace. They are rejected with OTLP's partial success: the rest of the
// request is stored, and the response names how many were rejected and
// why. A request with only invalid spans is refused as a whole (400,
// INVALID_ARGUMENT), as OTLP asks for data that is invalid throughout.

// invalidIDsMessage is the partial success error_message.
const invalidIDsMessage = "spans rejected: OTLP requires a trace_id of 16 bytes and a span_id of 8 bytes, not all zeros"

// rejection is the partial success a filtered request is answered with.
type rejection struct {
	spans int64
}

func (r rejection) message() string { return fmt.Sprintf("%d %s", r.spans, invalidIDsMessage) }

// filterInvalidSpans removes the spans with invalid IDs from req and
// reports how many it removed and how many remain.
func filterInvalidSpans(req ptraceotlp.ExportRequest) (rejected, kept int) {
	for _, rs := range req.Traces().ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			ss.Spans().RemoveIf(func(s ptrace.Span) bool {
				if s.TraceID().IsEmpty() || s.SpanID().IsEmpty() {
					rejected++
					return true
				}
				kept++
				return false
			})
		}
	}
	return rejected, kept
}

// partialResponse is an ExportTraceServiceResponse with partial success.
func partialResponse(r rejection) ptraceotlp.ExportResponse {
	resp := ptraceotlp.NewExportResponse()
	resp.PartialSuccess().SetRejectedSpans(r.spans)
	resp.PartialSuccess().SetErrorMessage(r.message())
	return resp
}

// errAllInvalid refuses a request whose every span is invalid.
func errAllInvalid(n int) error {
	return fmt.Errorf("%w: all %d %s", ErrInvalidIDs, n, invalidIDsMessage)
}
