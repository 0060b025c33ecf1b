package ui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func get(t *testing.T, h http.Handler, method, path string) (*http.Response, string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	res := rec.Result()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, string(b)
}

func TestServesAssetsAndDeepLinks(t *testing.T) {
	h := Handler()
	res, body := get(t, h, http.MethodGet, "/ui/app.js")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Contains(t, res.Header.Get("Content-Type"), "javascript")
	require.Contains(t, body, "export function navigate")

	// Every route of the app is served index.html, which loads the app.
	for _, p := range []string{"/ui/", "/ui/traces?q=%7B%7D", "/ui/trace/0af7651916cd43dd8448eb211c80319c?span=b7ad6b7169203331", "/ui/service/checkout", "/ui/logs", "/ui/service/payments.api", "/ui/service/v1.2.js", "/ui/compare/0af7651916cd43dd8448eb211c80319c/1af7651916cd43dd8448eb211c80319c"} {
		res, body := get(t, h, http.MethodGet, p)
		require.Equal(t, http.StatusOK, res.StatusCode, p)
		require.Contains(t, body, `<script type="module" src="/ui/app.js">`, p)
		require.Equal(t, "text/html; charset=utf-8", res.Header.Get("Content-Type"))
	}
	// A missing asset is a 404, not the app.
	res, _ = get(t, h, http.MethodGet, "/ui/missing.js")
	require.Equal(t, http.StatusNotFound, res.StatusCode)
	res, _ = get(t, h, http.MethodPost, "/ui/traces")
	require.Equal(t, http.StatusMethodNotAllowed, res.StatusCode)
}

// The policy is the second line of defence against markup in telemetry:
// no inline script, no foreign origins, no framing.
func TestContentSecurityPolicy(t *testing.T) {
	for _, p := range []string{"/ui/", "/ui/app.css"} {
		res, _ := get(t, Handler(), http.MethodGet, p)
		csp := res.Header.Get("Content-Security-Policy")
		for _, want := range []string{"script-src 'self'", "style-src 'self'", "object-src 'none'", "frame-ancestors 'none'"} {
			require.Contains(t, csp, want, p)
		}
		require.NotContains(t, csp, "unsafe-inline")
		require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
	}
}

// No asset builds markup from strings: telemetry reaches the page only
// as text nodes (dom.js) and through the CSSOM.
func TestAssetsBuildNoMarkupFromStrings(t *testing.T) {
	entries, err := assets.ReadDir("assets")
	require.NoError(t, err)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".js") {
			continue
		}
		b, err := assets.ReadFile("assets/" + e.Name())
		require.NoError(t, err)
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
			require.NotContains(t, string(b), bad, e.Name())
		}
	}
}
