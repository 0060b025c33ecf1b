package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// TestHostileRequests sends, through the real binary, each input the
// hostile-input review found to crash, exhaust or confuse it: every one
// gets a clear status, the process stays up and healthy, and what was
// acknowledged before is still served (hostileFixture.intact).
func TestHostileRequests(t *testing.T) {
	f := newHostileFixture(t)
	q := fmt.Sprintf("http://127.0.0.1:%d", f.queryPort)
	otlpHTTP := fmt.Sprintf("http://127.0.0.1:%d", f.in.HTTP)
	loki := fmt.Sprintf("http://127.0.0.1:%d/loki/api/v1/push", f.lokiPort)
	now := time.Now()

	// A log line for the LogQL cases to format.
	push := fmt.Sprintf(`{"streams":[{"stream":{"service_name":"before-the-attack"},"values":[[%q,%q]]}]}`,
		strconv.FormatInt(now.UnixNano(), 10), strings.Repeat("a", 100))
	if code, body := f.post(t, f.lokiPort, "/loki/api/v1/push", []byte(push), "Content-Type", "application/json"); code != http.StatusNoContent {
		t.Fatalf("loki push: %d %s", code, body)
	}

	get := func(t *testing.T, u string) (int, string) {
		t.Helper()
		resp, err := http.Get(u)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	post := func(t *testing.T, u, ct string, body []byte) (int, string) {
		t.Helper()
		resp, err := http.Post(u, ct, bytes.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s: %v", u, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	span := func(name string, trace byte, mod func(ptrace.Span)) ptrace.Traces {
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", "hostile")
		sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		sp.SetName(name)
		sp.SetTraceID([16]byte{0xe2, trace})
		sp.SetSpanID([8]byte{0xe2, trace})
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-time.Second)))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
		if mod != nil {
			mod(sp)
		}
		return td
	}
	protoOf := func(td ptrace.Traces) []byte {
		b, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
		return b
	}
	traceURL := func(trace byte) string {
		return fmt.Sprintf("%s/api/v2/traces/e2%02x%s", q, trace, strings.Repeat("0", 28))
	}

	deepParens := strings.Repeat("(", 40_000) + "1" + strings.Repeat(")", 40_000)
	nested := "__line__"
	for range 12 {
		nested = `Replace (` + nested + `) "a" "aaaa"`
	}
	bomb := `{service_name="before-the-attack"} | line_format "{{ ` + strings.ReplaceAll(nested, `"`, `\"`) + ` }}"`
	var manyLabels strings.Builder
	manyLabels.WriteString(`{"streams":[{"stream":{`)
	for i := range 100_000 {
		if i > 0 {
			manyLabels.WriteString(",")
		}
		fmt.Fprintf(&manyLabels, `"l%d":"v"`, i)
	}
	fmt.Fprintf(&manyLabels, `},"values":[[%q,"x"]]}]}`, strconv.FormatInt(now.UnixNano(), 10))

	for _, c := range []struct {
		name  string
		do    func(t *testing.T) (int, string)
		want  int
		check func(t *testing.T, body string)
	}{
		{"garbage JSON on OTLP/HTTP", func(t *testing.T) (int, string) {
			return post(t, otlpHTTP+"/v1/traces", "application/json", []byte(`{"resourceSpans":[{not json`))
		}, http.StatusBadRequest, nil},
		{"malformed body on Prometheus's OTLP endpoint", func(t *testing.T) (int, string) {
			return post(t, q+"/api/v1/otlp/v1/metrics", "application/x-protobuf", []byte("\x0a\xff\xff\xff\xff\x0f"))
		}, http.StatusBadRequest, nil},
		{"malformed remote write", func(t *testing.T) (int, string) {
			return post(t, q+"/api/v1/write", "application/x-protobuf", []byte("not snappy"))
		}, http.StatusBadRequest, nil},
		{"PromQL nested 40,000 deep", func(t *testing.T) (int, string) {
			return post(t, q+"/api/v1/query", "application/x-www-form-urlencoded", []byte(url.Values{"query": {deepParens}}.Encode()))
		}, http.StatusUnprocessableEntity, func(t *testing.T, body string) {
			if !strings.Contains(body, "max_query") {
				t.Errorf("the limit is not named: %.300s", body)
			}
		}},
		{"PromQL query_range from start=0", func(t *testing.T) (int, string) {
			return get(t, q+"/api/v1/query_range?"+url.Values{"query": {"up"}, "start": {"0"}, "end": {strconv.FormatInt(now.Unix(), 10)}, "step": {"3600"}}.Encode())
		}, http.StatusUnprocessableEntity, nil},
		{"Tempo search from start=0", func(t *testing.T) (int, string) {
			return get(t, q+"/api/search?"+url.Values{"q": {"{ }"}, "start": {"0"}, "end": {"0"}}.Encode())
		}, http.StatusOK, func(t *testing.T, body string) {
			if !strings.Contains(body, "before-the-attack") {
				t.Errorf("the default range (the last hour) finds the acknowledged trace: %.300s", body)
			}
		}},
		{"LogQL from start=0", func(t *testing.T) (int, string) {
			return get(t, q+"/loki/api/v1/query_range?"+url.Values{"query": {`{service_name="before-the-attack"}`}, "start": {"0"}}.Encode())
		}, http.StatusOK, nil},
		{"LogQL line_format multiplying each line", func(t *testing.T) (int, string) {
			return get(t, q+"/loki/api/v1/query_range?"+url.Values{"query": {bomb}, "limit": {"10"}}.Encode())
		}, http.StatusOK, func(t *testing.T, body string) {
			if !strings.Contains(body, "TemplateFormatErr") || len(body) > 1<<20 {
				t.Errorf("want a bounded line marked TemplateFormatErr, got %d bytes: %.300s", len(body), body)
			}
		}},
		{"Loki push with 100,000 labels", func(t *testing.T) (int, string) {
			return post(t, loki, "application/json", []byte(manyLabels.String()))
		}, http.StatusBadRequest, func(t *testing.T, body string) {
			if !strings.Contains(body, "max_label_names_per_series") {
				t.Errorf("the limit is not named: %.300s", body)
			}
		}},
		{"spans with zero IDs among valid ones", func(t *testing.T) (int, string) {
			td := span("valid-beside-zero-ids", 1, nil)
			bad := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().AppendEmpty()
			bad.SetName("zero-ids")
			return post(t, otlpHTTP+"/v1/traces", "application/x-protobuf", protoOf(td))
		}, http.StatusOK, func(t *testing.T, body string) {
			resp := ptraceotlp.NewExportResponse()
			if err := resp.UnmarshalProto([]byte(body)); err != nil || resp.PartialSuccess().RejectedSpans() != 1 {
				t.Errorf("want partial success with 1 rejected span: %v %q", err, body)
			}
			if code, _ := get(t, traceURL(1)); code != http.StatusOK {
				t.Errorf("the valid span of the request: %d", code)
			}
		}},
		{"only spans with zero IDs", func(t *testing.T) (int, string) {
			td := span("zero", 0, func(s ptrace.Span) { s.SetTraceID(pcommon.NewTraceIDEmpty()) })
			return post(t, otlpHTTP+"/v1/traces", "application/x-protobuf", protoOf(td))
		}, http.StatusBadRequest, nil},
		{"a span with 100,000 attributes", func(t *testing.T) (int, string) {
			raw := make(map[string]any, 100_000)
			for i := range 100_000 {
				raw[fmt.Sprintf("attr.%06d", i)] = int64(i)
			}
			td := span("huge", 2, func(s ptrace.Span) { _ = s.Attributes().FromRaw(raw) })
			return post(t, otlpHTTP+"/v1/traces", "application/x-protobuf", protoOf(td))
		}, http.StatusOK, func(t *testing.T, _ string) {
			code, body := get(t, traceURL(2))
			if code != http.StatusOK || strings.Count(body, `"attr.`) != 1024 {
				t.Errorf("want the first 1,024 attributes (limits::max_attributes): %d, %d attributes", code, strings.Count(body, `"attr.`))
			}
		}},
		{"a span ending in the year 2200", func(t *testing.T) (int, string) {
			td := span("far-future", 3, func(s ptrace.Span) {
				s.SetEndTimestamp(pcommon.NewTimestampFromTime(time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)))
			})
			return post(t, otlpHTTP+"/v1/traces", "application/x-protobuf", protoOf(td))
		}, http.StatusOK, func(t *testing.T, _ string) {
			if code, _ := get(t, traceURL(3)); code != http.StatusOK {
				t.Errorf("stored as sent: %d", code)
			}
		}},
		{"invalid UTF-8 in a span", func(t *testing.T) (int, string) {
			td := span("bad \xff\xfe utf-8", 4, func(s ptrace.Span) { s.Attributes().PutStr("k", "v\xc3") })
			return post(t, otlpHTTP+"/v1/traces", "application/x-protobuf", protoOf(td))
		}, http.StatusOK, func(t *testing.T, _ string) {
			code, body := get(t, traceURL(4))
			if code != http.StatusOK || !utf8.ValidString(body) || !strings.Contains(body, "bad \uFFFD") {
				t.Errorf("want the trace as valid UTF-8 JSON: %d %q", code, body)
			}
		}},
		{"UI deep link whose last segment has a dot", func(t *testing.T) (int, string) {
			return get(t, q+"/ui/service/payments.api")
		}, http.StatusOK, func(t *testing.T, body string) {
			if !strings.Contains(body, "/ui/app.js") {
				t.Errorf("want the app: %.200s", body)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := c.do(t)
			if code != c.want {
				t.Errorf("got %d, want %d: %.300s", code, c.want, body)
			}
			if c.check != nil {
				c.check(t, body)
			}
			f.intact(t)
		})
	}
}

// TestUIBehindBearerAuth: with a token required on the query API, a
// browser signs in once and uses the UI and its API calls through the
// session cookie; without it, pages lead to the login and API calls get
// 401.
func TestUIBehindBearerAuth(t *testing.T) {
	f := newHostileFixture(t, "testdata/query-auth.yaml")
	f.token = "s3cret-token"
	base := fmt.Sprintf("http://127.0.0.1:%d", f.queryPort)
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	resp, err := browser.Get(base + "/ui/traces")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "/ui/login") {
		t.Fatalf("a page without a session: %d %s, want a redirect to the login", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, err = browser.Get(base + "/api/search"); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API without a token: %d", resp.StatusCode)
	}
	for token, want := range map[string]int{"wrong": http.StatusUnauthorized, f.token: http.StatusSeeOther} {
		resp, err = browser.PostForm(base+"/ui/login", url.Values{"token": {token}, "next": {"/ui/traces"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("login with %q: %d, want %d", token, resp.StatusCode, want)
		}
	}
	for _, path := range []string{"/ui/traces", "/api/v2/traces/" + f.traceID, "/api/sightline/v1/status"} {
		resp, err := browser.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s with the session: %d", path, resp.StatusCode)
		}
	}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, base+"/api/v2/traces/"+f.traceID, nil)
	req.Header.Set("Authorization", "Bearer "+f.token)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the header, as Grafana sends it: %d", resp.StatusCode)
	}
	f.intact(t)
}
