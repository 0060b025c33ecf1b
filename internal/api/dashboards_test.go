package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/component"
	"go.uber.org/zap"

	"github.com/sightlinehq/sightline/internal/dashboard"
	"github.com/sightlinehq/sightline/internal/objstore"
)

// testDashboards is a dashboard store in a temporary bucket, with the
// built-in dashboards.
func testDashboards(t testing.TB) *dashboard.Store {
	t.Helper()
	b, err := objstore.OpenFilesystem(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	builtin, err := dashboard.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	return dashboard.New(b, builtin)
}

func newDashboardAPI(t *testing.T, mod func(*Config)) *httptest.Server {
	t.Helper()
	cfg := createDefaultConfig().(*Config)
	if mod != nil {
		mod(cfg)
	}
	srv := httptest.NewServer(New(cfg, nil, Stores{Dashboards: testDashboards(t)}, component.BuildInfo{Version: "test"}, zap.NewNop()).Handler())
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, method, url, body string, hdr ...string) (int, map[string]any, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m, string(raw)
}

// TestDashboardAPIGrafanaShapes drives the API with the requests and
// checks the answers of Grafana's dashboard HTTP API.
func TestDashboardAPIGrafanaShapes(t *testing.T) {
	srv := newDashboardAPI(t, nil)
	code, m, raw := do(t, "POST", srv.URL+"/api/dashboards/db",
		`{"dashboard":{"id":null,"uid":null,"title":"Production Overview","tags":["templated"],"timezone":"browser","schemaVersion":16,"panels":[{"type":"timeseries","targets":[{"expr":"up"}]}]},"folderUid":"","message":"first","overwrite":false}`)
	if code != 200 || m["status"] != "success" || m["version"] != 1.0 || m["slug"] != "production-overview" {
		t.Fatalf("save: %d %s", code, raw)
	}
	uid := m["uid"].(string)
	if m["url"] != "/ui/d/"+uid {
		t.Fatalf("url = %v", m["url"])
	}

	code, m, raw = do(t, "GET", srv.URL+"/api/dashboards/uid/"+uid, "")
	if code != 200 {
		t.Fatalf("get: %d %s", code, raw)
	}
	d := m["dashboard"].(map[string]any)
	meta := m["meta"].(map[string]any)
	if d["title"] != "Production Overview" || d["uid"] != uid || d["version"] != 1.0 || d["timezone"] != "browser" || meta["canSave"] != true || meta["provisioned"] != false {
		t.Fatalf("get: %s", raw)
	}

	// A stale save gets Grafana's 412 version-mismatch.
	code, m, raw = do(t, "POST", srv.URL+"/api/dashboards/db", `{"dashboard":{"uid":"`+uid+`","title":"x","version":0}}`)
	if code != http.StatusPreconditionFailed || m["status"] != "version-mismatch" {
		t.Fatalf("stale save: %d %s", code, raw)
	}

	code, _, raw = do(t, "GET", srv.URL+"/api/dashboards?query=production", "")
	var hits []map[string]any
	_ = json.Unmarshal([]byte(raw), &hits)
	if code != 200 || len(hits) != 1 || hits[0]["uid"] != uid || hits[0]["type"] != "dash-db" || hits[0]["panels"] != 1.0 {
		t.Fatalf("list: %d %s", code, raw)
	}
	code, _, raw = do(t, "GET", srv.URL+"/api/dashboards?tag=sightline", "")
	_ = json.Unmarshal([]byte(raw), &hits)
	if code != 200 || len(hits) != 2 || hits[0]["provisioned"] != true {
		t.Fatalf("built-in by tag: %d %s", code, raw)
	}

	for _, c := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/api/dashboards/db", `{"dashboard":{"panels":[{}]}}`, 400, "panels[0].type: required"},
		{"POST", "/api/dashboards/db", `{"dashboard":{"title":"t","uid":"../../etc"}}`, 400, "uid"},
		{"POST", "/api/dashboards/db", `{"overwrite":true}`, 400, "dashboard: required"},
		{"POST", "/api/dashboards/db", `not json`, 400, "not a JSON object"},
		{"POST", "/api/dashboards/db", `{"dashboard":{"uid":"sightline-red","title":"t"},"overwrite":true}`, 400, "built-in"},
		{"POST", "/api/dashboards/db", `{"dashboard":{"title":"` + strings.Repeat("x", dashboard.MaxBytes+128<<10) + `"}}`, 422, "over"},
		{"DELETE", "/api/dashboards/uid/sightline-self", "", 400, "built-in"},
		{"GET", "/api/dashboards/uid/nope", "", 404, "not found"},
		{"DELETE", "/api/dashboards/uid/" + uid, "", 200, "deleted"},
		{"GET", "/api/dashboards/uid/" + uid, "", 404, "not found"},
	} {
		code, _, raw := do(t, c.method, srv.URL+c.path, c.body)
		if code != c.code || !strings.Contains(raw, c.want) {
			t.Errorf("%s %s %.60s: %d %s, want %d and %q", c.method, c.path, c.body, code, raw, c.code, c.want)
		}
	}
}

// TestDashboardAPITenant: with tenancy on, the tenant comes from the
// request's header, and one tenant cannot see another's dashboards.
func TestDashboardAPITenant(t *testing.T) {
	srv := newDashboardAPI(t, func(c *Config) { c.Tenancy.Enabled = true })
	if code, _, raw := do(t, "GET", srv.URL+"/api/dashboards", ""); code != 401 {
		t.Fatalf("no tenant: %d %s", code, raw)
	}
	code, m, raw := do(t, "POST", srv.URL+"/api/dashboards/db", `{"dashboard":{"title":"acme only","tenant":"globex"}}`, "X-Scope-OrgID", "acme")
	if code != 200 {
		t.Fatalf("save: %d %s", code, raw)
	}
	uid := m["uid"].(string)
	if code, _, _ := do(t, "GET", srv.URL+"/api/dashboards/uid/"+uid, "", "X-Scope-OrgID", "globex"); code != 404 {
		t.Fatalf("globex read acme's dashboard: %d", code)
	}
	if code, _, _ := do(t, "GET", srv.URL+"/api/dashboards/uid/"+uid, "", "X-Scope-OrgID", "acme"); code != 200 {
		t.Fatalf("acme cannot read its dashboard: %d", code)
	}
}

// TestSavedQueries: save, replace by kind and name, list by kind, delete.
func TestSavedQueries(t *testing.T) {
	srv := newDashboardAPI(t, nil)
	code, m, raw := do(t, "POST", srv.URL+"/api/sightline/v1/queries", `{"kind":"promql","name":"checkout rate","query":"rate(x[5m])"}`)
	if code != 200 || m["id"] == "" || m["name"] != "checkout rate" {
		t.Fatalf("save: %d %s", code, raw)
	}
	id := m["id"].(string)
	code, m, raw = do(t, "POST", srv.URL+"/api/sightline/v1/queries", `{"kind":"promql","name":"checkout rate","query":"rate(x[1m])"}`)
	if code != 200 || m["id"] != id || m["query"] != "rate(x[1m])" {
		t.Fatalf("replace: %d %s", code, raw)
	}
	if code, _, raw = do(t, "POST", srv.URL+"/api/sightline/v1/queries", `{"kind":"logql","name":"errors","query":"{a=\"b\"}"}`); code != 200 {
		t.Fatalf("save logql: %d %s", code, raw)
	}
	_, m, raw = do(t, "GET", srv.URL+"/api/sightline/v1/queries?kind=promql", "")
	if qs := m["queries"].([]any); len(qs) != 1 || qs[0].(map[string]any)["query"] != "rate(x[1m])" {
		t.Fatalf("list promql: %s", raw)
	}
	for _, c := range []struct{ body, want string }{
		{`{"kind":"sql","name":"x","query":"y"}`, "kind: "},
		{`{"kind":"promql","name":" ","query":"y"}`, "name: "},
		{`{"kind":"promql","name":"x","query":""}`, "query: "},
		{`{"kind":"promql","name":"x","query":"y","tenant":"other"}`, "unknown field"},
		{`{"kind":"promql","name":"x","query":"y"}}`, "data after the object"},
		{`{"kind":"promql","name":"x","query":"y"} {}`, "data after the object"},
	} {
		if code, _, raw := do(t, "POST", srv.URL+"/api/sightline/v1/queries", c.body); code != 400 || !strings.Contains(raw, c.want) {
			t.Errorf("%s: %d %s", c.body, code, raw)
		}
	}
	if code, _, _ := do(t, "DELETE", srv.URL+"/api/sightline/v1/queries/"+id, ""); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if code, _, _ := do(t, "DELETE", srv.URL+"/api/sightline/v1/queries/"+id, ""); code != 404 {
		t.Fatalf("delete again: %d", code)
	}
	_, m, _ = do(t, "GET", srv.URL+"/api/sightline/v1/queries", "")
	if qs := m["queries"].([]any); len(qs) != 1 {
		t.Fatalf("after delete: %v", qs)
	}
}
