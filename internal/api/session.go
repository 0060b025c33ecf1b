package api

import (
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/sightlinehq/sightline/internal/tenancyprocessor"
	"github.com/sightlinehq/sightline/internal/ui"
)

// The UI's session. A browser cannot attach a bearer token or a tenant
// header to a page load, so with auth or tenancy on, /ui/login takes them
// once and keeps them in cookies that the session handler turns back into
// the Authorization and tenant headers, in front of confighttp's
// authenticator. The cookies are HttpOnly (no script reads the token) and
// SameSite=Strict (no other site's page or form sends them), so neither a
// cross-site request nor an XSS can use or take the session. Requests that
// carry the headers themselves (Grafana, curl) are untouched.

const (
	tokenCookie  = "sightline_token"
	tenantCookie = "sightline_tenant"
	// sessionCookie tells the UI's script that a session exists, so it
	// can offer to log out; it holds no secret.
	sessionCookie = "sightline_session"

	loginPath  = ui.Prefix + "login"
	logoutPath = ui.Prefix + "logout"
	// sessionTTL is how long a browser keeps the session cookies.
	sessionTTL = 12 * time.Hour
	// maxCredential bounds each form field.
	maxCredential = 4096
)

// sessions wraps the whole server handler, authentication included.
type sessions struct {
	next      http.Handler
	auth      bool   // an authenticator is configured
	header    string // the tenant header; "" without tenancy
	probePath string // an authenticated route that checks a login
}

// Sessions returns h wrapped with the UI's login, or h itself when the
// server needs neither a token nor a tenant.
func (a *API) Sessions(h http.Handler) http.Handler {
	s := &sessions{next: h, auth: a.cfg.Auth.HasValue(), probePath: "/api/status/buildinfo"}
	if a.cfg.Tenancy.Enabled {
		s.header = a.cfg.Tenancy.Header
		s.probePath = "/api/sightline/v1/status"
	}
	if !s.auth && s.header == "" {
		return h
	}
	return s
}

func (s *sessions) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case loginPath:
		s.login(w, r)
		return
	case logoutPath:
		s.logout(w, r)
		return
	case ui.Prefix + "app.css":
		s.next.ServeHTTP(w, s.withSession(r)) // the login page's style
		return
	}
	r = s.withSession(r)
	if strings.HasPrefix(r.URL.Path, ui.Prefix) && r.Method == http.MethodGet && !s.hasCredentials(r) {
		http.Redirect(w, r, loginPath+"?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
		return
	}
	s.next.ServeHTTP(w, r)
}

// withSession sets the headers the request lacks from its cookies.
func (s *sessions) withSession(r *http.Request) *http.Request {
	var r2 *http.Request
	set := func(name, value string) {
		if r2 == nil {
			r2 = r.Clone(r.Context())
		}
		r2.Header.Set(name, value)
	}
	if s.auth && r.Header.Get("Authorization") == "" {
		if c, err := r.Cookie(tokenCookie); err == nil && c.Value != "" {
			set("Authorization", "Bearer "+c.Value)
		}
	}
	if s.header != "" && r.Header.Get(s.header) == "" {
		if c, err := r.Cookie(tenantCookie); err == nil && c.Value != "" {
			set(s.header, c.Value)
		}
	}
	if r2 == nil {
		return r
	}
	return r2
}

func (s *sessions) hasCredentials(r *http.Request) bool {
	return (!s.auth || r.Header.Get("Authorization") != "") && (s.header == "" || r.Header.Get(s.header) != "")
}

// sameOrigin refuses a cross-site form post (login CSRF: being logged in
// as the attacker). Browsers send Sec-Fetch-Site and Origin with a form
// post; a client that sends neither is not a browser and has no session
// to abuse.
func sameOrigin(r *http.Request) bool {
	if sfs := r.Header.Get("Sec-Fetch-Site"); sfs != "" && sfs != "same-origin" && sfs != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Sightline</title>
<link rel="stylesheet" href="/ui/app.css">
<link rel="icon" href="data:,">
</head>
<body>
<main class="page login">
<h1>Sightline</h1>
<form method="post" action="/ui/login" class="card">
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
{{if .Auth}}<label>Token <input type="password" name="token" autocomplete="current-password" required autofocus></label>{{end}}
{{if .Tenant}}<label>Tenant ({{.Header}}) <input type="text" name="tenant" value="{{.TenantValue}}" required {{if not .Auth}}autofocus{{end}}></label>{{end}}
<input type="hidden" name="next" value="{{.Next}}">
<button type="submit">Sign in</button>
</form>
</main>
</body>
</html>
`))

type loginView struct {
	Error, Header, TenantValue, Next string
	Auth, Tenant                     bool
}

func (s *sessions) renderLogin(w http.ResponseWriter, code int, v loginView) {
	v.Auth, v.Tenant, v.Header = s.auth, s.header != "", s.header
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", ui.CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = loginPage.Execute(w, v)
}

// safeNext keeps a post-login redirect inside the UI.
func safeNext(next string) string {
	if !strings.HasPrefix(next, ui.Prefix) || strings.HasPrefix(next, "//") || strings.Contains(next, `\`) {
		return ui.Prefix
	}
	return next
}

func (s *sessions) login(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.renderLogin(w, http.StatusOK, loginView{Next: safeNext(r.FormValue("next"))})
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !sameOrigin(r) {
		http.Error(w, "cross-site login refused", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4*maxCredential)
	if err := r.ParseForm(); err != nil {
		s.renderLogin(w, http.StatusBadRequest, loginView{Error: "the form could not be read"})
		return
	}
	token, tenant, next := r.PostFormValue("token"), r.PostFormValue("tenant"), safeNext(r.PostFormValue("next"))
	v := loginView{TenantValue: tenant, Next: next}
	switch {
	case s.auth && (token == "" || len(token) > maxCredential || strings.ContainsAny(token, " \t\r\n;,\"\\")):
		v.Error = "enter the bearer token"
	case s.header != "" && tenancyprocessor.CheckTenant(tenant) != nil:
		v.Error = "enter a tenant: up to 150 of a-z, A-Z, 0-9 and !-_.*'()"
	}
	if v.Error != "" {
		s.renderLogin(w, http.StatusBadRequest, v)
		return
	}
	// Ask the configured authenticator (and the tenant check) through
	// the server's own handler, so a bad token fails here, not on every
	// later page.
	probe := httptest.NewRequestWithContext(r.Context(), http.MethodGet, s.probePath, nil)
	probe.Host, probe.RemoteAddr, probe.TLS = r.Host, r.RemoteAddr, r.TLS
	if s.auth {
		probe.Header.Set("Authorization", "Bearer "+token)
	}
	if s.header != "" {
		probe.Header.Set(s.header, tenant)
	}
	rec := httptest.NewRecorder()
	s.next.ServeHTTP(rec, probe)
	if rec.Code == http.StatusUnauthorized || rec.Code == http.StatusForbidden {
		v.Error = "the token was refused"
		s.renderLogin(w, http.StatusUnauthorized, v)
		return
	}
	if s.auth {
		s.setCookie(w, r, tokenCookie, token, true)
	}
	if s.header != "" {
		s.setCookie(w, r, tenantCookie, tenant, true)
	}
	s.setCookie(w, r, sessionCookie, "1", false)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *sessions) logout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	for _, name := range []string{tokenCookie, tenantCookie, sessionCookie} {
		http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	}
	http.Redirect(w, r, loginPath, http.StatusSeeOther)
}

func (s *sessions) setCookie(w http.ResponseWriter, r *http.Request, name, value string, httpOnly bool) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/",
		MaxAge:   int(sessionTTL.Seconds()),
		HttpOnly: httpOnly,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
}
