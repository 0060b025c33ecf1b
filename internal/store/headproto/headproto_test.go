package headproto

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/otlpguard"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/workload"
)

func tracesFrame(t testing.TB, n int) []byte {
	td, _ := workload.New(3, time.Unix(1_700_000_000, 0), workload.Options{}).Batch(n)
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeFrame(&buf, frameTraces, b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// An answer that stops before its end frame (the ingester died, the
// connection broke) is an error, not a short result that looks complete.
func TestCutShortAnswerIsAnError(t *testing.T) {
	frame := tracesFrame(t, 2)
	for name, body := range map[string][]byte{
		"after a frame":     frame,
		"inside a frame":    frame[:len(frame)/2],
		"inside its length": frame[:1],
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == prefix+"parts" {
					w.Write([]byte(`{"parts": [""]}`))
					return
				}
				w.Write(body)
			}))
			defer srv.Close()
			q, _, err := NewClient(srv.URL, srv.Client()).Querier(context.Background(), func(string) bool { return false })
			if err != nil {
				t.Fatal(err)
			}
			err = q.Spans(context.Background(), &storage.SpanQuery{}, func(*storage.Span) bool { return true })
			if !errors.Is(err, ErrTruncated) {
				t.Fatalf("Spans = %v, want ErrTruncated", err)
			}
		})
	}
}

// FuzzFrames feeds arbitrary answers to the client's frame reader: it
// must end with an error or a result, never a panic or an allocation past
// the frame limit.
func FuzzFrames(f *testing.F) {
	// A one-span answer: large seeds make the fuzzer's minimization crawl.
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "checkout")
	sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetTraceID([16]byte{1})
	sp.SetSpanID([8]byte{2})
	sp.SetName("GET /")
	sp.Attributes().PutInt("http.status_code", 200)
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		f.Fatal(err)
	}
	var buf bytes.Buffer
	writeFrame(&buf, frameTraces, b)
	frame := buf.Bytes()
	f.Add(append(slices.Clip(frame), frameEnd, 0))
	f.Add(append(slices.Clip(frame), frameError, 4, 'b', 'o', 'o', 'm'))
	f.Add([]byte{frameTraces, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{9, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		frames(bytes.NewReader(data), frameTraces, func(b []byte) (bool, error) {
			if err := otlpguard.CheckProto(otlpguard.Traces, b, otlpguard.Limits{}); err != nil {
				return false, err
			}
			td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
			if err != nil {
				return false, err
			}
			n += len(storage.AppendTraces(nil, td))
			return true, nil
		})
	})
}

// An ingester's share of a trace is held to the query's span bound: the
// client stops reading it past the bound and reports the trace too large.
func TestRemoteTraceSpansLimit(t *testing.T) {
	td, _ := workload.New(3, time.Unix(1_700_000_000, 0), workload.Options{}).Batch(1)
	n := td.SpanCount()
	require := func(ok bool, format string, args ...any) {
		t.Helper()
		if !ok {
			t.Fatalf(format, args...)
		}
	}
	require(n >= 3, "the workload's trace has %d spans", n)
	id := storage.TraceID(td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).TraceID())
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	require(err == nil, "%v", err)
	var body bytes.Buffer
	require(writeFrame(&body, frameTraces, b) == nil, "frame")
	body.Write([]byte{frameEnd, 0})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == prefix+"parts" {
			w.Write([]byte(`{"parts": [""]}`))
			return
		}
		w.Write(body.Bytes())
	}))
	defer srv.Close()
	q, _, err := NewClient(srv.URL, srv.Client()).Querier(context.Background(), func(string) bool { return false })
	require(err == nil, "%v", err)
	spans, err := q.TraceByID(storage.WithStats(context.Background(), &storage.Stats{MaxTraceSpans: n}), id, 0, 0)
	require(err == nil && len(spans) == n, "within the bound: %d spans, %v", len(spans), err)
	_, err = q.TraceByID(storage.WithStats(context.Background(), &storage.Stats{MaxTraceSpans: n - 1}), id, 0, 0)
	require(errors.Is(err, storage.ErrTraceTooLarge), "past the bound: %v", err)
}
