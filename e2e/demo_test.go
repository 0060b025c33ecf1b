package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// TestDemo runs `sightline demo --embedded` with an error burst and checks,
// through Sightline's own query APIs, what the demo promises: traces that
// cross every service over HTTP and the queue with correct parents, the
// request's identity on every span, logs that carry their span, secrets
// that never reach the store, and the error burst as error spans and
// error counts.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(binary, "demo", "--embedded", "--duration", "6s", "--rate", "20", "--scenario", "errors", "--seed", "3")
	cmd.Dir = dir
	cmd.Env = append(cmd.Environ(), "SIGHTLINE_DATA="+filepath.Join(dir, "data"))
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("demo output:\n%s", out.String())
		}
	})
	waitFor(t, "demo traffic to finish", 90*time.Second, func() bool {
		select {
		case err := <-exited:
			t.Fatalf("demo exited early: %v\n%s", err, out.String())
		default:
		}
		return strings.Contains(out.String(), "Sightline keeps running")
	})
	for _, line := range []string{
		"sightline dev: OTLP/gRPC localhost:4317, OTLP/HTTP localhost:4318, Loki localhost:3100; data in " + filepath.Join(dir, "data") + "; UI: http://localhost:3200/ui/\n",
		"demo: see it at UI: http://localhost:3200/ui/\n",
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("sightline demo --embedded did not print %q", line)
		}
	}

	api := "http://localhost:3200"
	getJSON := func(path string, p url.Values, into any) {
		t.Helper()
		resp, err := http.Get(api + path + "?" + p.Encode())
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		require.Equal(t, 200, resp.StatusCode, "%s: %s", path, b)
		require.NoError(t, json.Unmarshal(b, into), "%s", b)
	}
	now := time.Now()
	rng := url.Values{"start": {strconv.FormatInt(now.Add(-5*time.Minute).Unix(), 10)}, "end": {strconv.FormatInt(now.Add(time.Minute).Unix(), 10)}}
	search := func(q string, limit int) []string {
		p := url.Values{"q": {q}, "limit": {strconv.Itoa(limit)}, "start": rng["start"], "end": rng["end"]}
		var res struct {
			Traces []struct {
				TraceID string `json:"traceID"`
			} `json:"traces"`
		}
		getJSON("/api/search", p, &res)
		var ids []string
		for _, tr := range res.Traces {
			ids = append(ids, tr.TraceID)
		}
		return ids
	}

	// Traces across HTTP and the queue.
	ids := search(`{ resource.service.name = "worker" }`, 10)
	require.NotEmpty(t, ids)
	for _, id := range ids {
		req, _ := http.NewRequest(http.MethodGet, api+"/api/traces/"+id, nil)
		req.Header.Set("Accept", "application/protobuf")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
		require.NoError(t, err)
		spans := storage.AppendTraces(nil, td)
		byID := map[storage.SpanID]storage.Span{}
		services := map[string]bool{}
		for _, s := range spans {
			byID[s.SpanID] = s
			services[s.Resource.ServiceName()] = true
		}
		require.True(t, services["api"] && services["auth"] && services["worker"], "trace %s: services %v", id, services)
		roots := 0
		for _, s := range spans {
			for _, k := range []string{"user.id", "organisation.id", "request.id"} {
				_, ok := s.Attrs.Get(k)
				require.True(t, ok, "span %s %q lacks %s", s.Resource.ServiceName(), s.Name, k)
			}
			if s.ParentSpanID.IsEmpty() {
				roots++
				continue
			}
			p, ok := byID[s.ParentSpanID]
			require.True(t, ok, "span %q: parent not in the trace", s.Name)
			switch {
			case s.Resource.ServiceName() == "worker" && s.Kind == 5:
				require.Equal(t, storage.SpanKind(4), p.Kind, "the consumer's parent is the producer")
				require.Equal(t, "api", p.Resource.ServiceName())
			case s.Resource.ServiceName() == "auth" && s.Kind == 2:
				require.Equal(t, storage.SpanKind(3), p.Kind, "auth's server span's parent is the api's client span")
				require.Equal(t, "api", p.Resource.ServiceName())
			}
		}
		require.Equal(t, 1, roots)
	}

	// The report service is called over HTTP from the api.
	require.NotEmpty(t, search(`{ resource.service.name = "api" && kind = client } > { resource.service.name = "report" && kind = server }`, 1))

	// Every log line from a request carries its trace and span.
	var logs struct {
		Data struct {
			Result []struct {
				Stream map[string]string `json:"stream"`
				Values [][2]string       `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	lp := url.Values{"query": {`{service_name=~"api|auth|worker|report"}`}, "limit": {"5000"},
		"start": {strconv.FormatInt(now.Add(-5*time.Minute).UnixNano(), 10)}, "end": {strconv.FormatInt(now.Add(time.Minute).UnixNano(), 10)}}
	getJSON("/loki/api/v1/query_range", lp, &logs)
	lines := 0
	sample := map[string]bool{}
	for _, s := range logs.Data.Result {
		require.Len(t, s.Stream["trace_id"], 32, "a log line without trace_id: %v", s.Stream)
		require.Len(t, s.Stream["span_id"], 16, "a log line without span_id: %v", s.Stream)
		lines += len(s.Values)
		if len(sample) < 10 {
			sample[s.Stream["trace_id"]] = true
		}
	}
	require.Greater(t, lines, 50)
	for id := range sample {
		resp, err := http.Get(api + "/api/traces/" + id)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode, "log trace %s is stored", id)
	}

	// Secrets never reach the store.
	for _, q := range []string{`{service_name=~".+"} |= "hunter2"`, `{service_name=~".+"} |~ "example\\.com"`, `{service_name=~".+"} |= "tok-"`} {
		lp.Set("query", q)
		getJSON("/loki/api/v1/query_range", lp, &logs)
		require.Empty(t, logs.Data.Result, q)
	}
	require.Empty(t, search(`{ span.user.email != nil && span.user.email != "[REDACTED]" }`, 10))
	require.Empty(t, search(`{ span.auth.token != nil && span.auth.token != "[REDACTED]" }`, 10))
	require.NotEmpty(t, search(`{ span.user.email = "[REDACTED]" }`, 1), "the attribute is there, redacted")

	// The error burst: error spans, and error counts per service.
	require.NotEmpty(t, search(`{ resource.service.name = "auth" && status = error }`, 5))
	var m struct {
		Series []struct {
			Labels []struct {
				Value map[string]any `json:"value"`
			} `json:"labels"`
			Value float64 `json:"value"`
		} `json:"series"`
	}
	getJSON("/api/metrics/query", url.Values{"q": {`{ status = error && kind = server } | count_over_time() by (resource.service.name)`}, "start": rng["start"], "end": rng["end"]}, &m)
	errs := map[string]float64{}
	for _, s := range m.Series {
		errs[fmt.Sprint(s.Labels[0].Value["stringValue"])] = s.Value
	}
	require.Positive(t, errs["auth"], "%v", errs)
	require.Positive(t, errs["api"], "%v", errs)

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	select {
	case err := <-exited:
		require.NoError(t, err, "%s", out.String())
	case <-time.After(60 * time.Second):
		t.Fatal("demo did not stop on SIGINT")
	}

}
