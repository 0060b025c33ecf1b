// Package ui serves Sightline's web UI: static assets embedded in the
// binary, so `go install` gives a working UI with no build step. The UI is
// plain ES modules with no framework and no JavaScript toolchain; every
// value from telemetry reaches the page as a text node (never as HTML),
// and the Content-Security-Policy forbids inline and foreign scripts, so a
// span name or log body cannot run as code.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed assets
var assets embed.FS

// Prefix is where the UI is mounted; its routes are client-side below it.
const Prefix = "/ui/"

// CSP allows only the UI's own scripts, styles and API calls.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// Handler serves the UI under Prefix. A path that names an asset serves
// it; any other path serves index.html, so that deep links (/ui/trace/ID,
// /ui/logs?query=...) load the app, which routes them.
func Handler() http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embed is part of the binary
	}
	files := http.FileServer(http.FS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(path.Clean("/"+strings.TrimPrefix(r.URL.Path, Prefix)), "/")
		if name != "" && name != "index.html" {
			if st, err := fs.Stat(sub, name); err == nil && !st.IsDir() {
				h.Set("Cache-Control", "no-cache")
				r2 := r.Clone(r.Context())
				r2.URL.Path = "/" + name
				files.ServeHTTP(w, r2)
				return
			}
			if !strings.Contains(name, "/") && strings.Contains(name, ".") {
				// A missing asset: assets sit at the top level, and no
				// route does. A route's last segment is data (a service
				// such as payments.api) and may hold anything.
				http.NotFound(w, r)
				return
			}
		}
		b, err := fs.ReadFile(sub, "index.html")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(b)
	})
}
