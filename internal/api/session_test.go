package api

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeAuth stands in for confighttp's authenticator: it answers 401
// unless the bearer token is "s3cret", and echoes what reached it.
func fakeAuth() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, "tenant="+r.Header.Get("X-Scope-OrgID"))
	})
}

func TestUILoginKeepsTheTokenInAStrictCookie(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Tenancy.Enabled = true
	a := &API{cfg: cfg}
	s := a.Sessions(fakeAuth()).(*sessions)
	s.auth = true // as if confighttp had an authenticator configured
	srv := httptest.NewServer(s)
	defer srv.Close()

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	resp, err := c.Get(srv.URL + "/ui/service/payments.api?range=1h")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode, "a page load without a session goes to the login page")
	require.Equal(t, "/ui/login?next=%2Fui%2Fservice%2Fpayments.api%3Frange%3D1h", resp.Header.Get("Location"))

	resp, err = c.Get(srv.URL + "/api/search")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "API calls are not redirected")

	resp, err = c.Get(srv.URL + "/ui/login")
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(page), `name="token"`)
	require.Contains(t, string(page), `name="tenant"`)
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")

	post := func(form url.Values, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/ui/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	require.Equal(t, http.StatusUnauthorized, post(url.Values{"token": {"wrong"}, "tenant": {"a"}}, nil).StatusCode,
		"the authenticator refuses the token at login")
	require.Equal(t, http.StatusBadRequest, post(url.Values{"token": {"s3cret"}, "tenant": {"a b"}}, nil).StatusCode)
	require.Equal(t, http.StatusForbidden, post(url.Values{"token": {"s3cret"}, "tenant": {"a"}},
		map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}).StatusCode, "login CSRF")
	require.Empty(t, jar.Cookies(mustURL(t, srv.URL)))

	resp = post(url.Values{"token": {"s3cret"}, "tenant": {"a"}, "next": {"//evil.example/x"}}, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": srv.URL})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/ui/", resp.Header.Get("Location"), "next stays inside the UI")
	byName := map[string]*http.Cookie{}
	for _, ck := range resp.Cookies() {
		byName[ck.Name] = ck
	}
	for _, name := range []string{tokenCookie, tenantCookie} {
		require.True(t, byName[name].HttpOnly, name)
		require.Equal(t, http.SameSiteStrictMode, byName[name].SameSite, name)
	}
	require.False(t, byName[sessionCookie].HttpOnly, "the script may see that a session exists")
	require.Equal(t, "1", byName[sessionCookie].Value)

	resp, err = c.Get(srv.URL + "/api/search")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "the cookie authenticates API calls")
	require.Equal(t, "tenant=a", string(body))

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/search", nil)
	req.Header.Set("X-Scope-OrgID", "b")
	resp, err = c.Do(req)
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "tenant=b", string(body), "a header the client sends wins over the cookie")

	resp, err = c.Post(srv.URL+"/ui/logout", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Empty(t, jar.Cookies(mustURL(t, srv.URL)), "logout clears the session")
	resp, err = c.Get(srv.URL + "/api/search")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func TestNoSessionsWithoutAuthOrTenancy(t *testing.T) {
	a := &API{cfg: createDefaultConfig().(*Config)}
	_, wrapped := a.Sessions(fakeAuth()).(*sessions)
	require.False(t, wrapped, "an open server needs no login page")
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}
