package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/collector/component"
	"go.uber.org/zap"
)

// TestSilences reads each configured Alertmanager's silences, reports
// one that does not answer beside the others, and shows a tenant none.
// e2e/ui_test.go runs it against a real Alertmanager.
func TestSilences(t *testing.T) {
	am := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/prefix/api/v2/silences" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`[{"id":"s1","status":{"state":"active"},"matchers":[{"name":"alertname","value":"X","isRegex":false,"isEqual":true}]}]`))
	}))
	defer am.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	for _, tenancy := range []bool{false, true} {
		cfg := createDefaultConfig().(*Config)
		cfg.Rules.Alertmanagers = []string{am.URL + "/prefix/", down.URL}
		cfg.Tenancy.Enabled = tenancy
		srv := httptest.NewServer(New(cfg, nil, Stores{}, component.BuildInfo{}, zap.NewNop()).Handler())
		code, _, raw := do(t, "GET", srv.URL+"/api/sightline/v1/silences", "", "X-Scope-OrgID", "acme")
		srv.Close()
		var got struct {
			Data []silenceAnswer `json:"data"`
		}
		if code != 200 || json.Unmarshal([]byte(raw), &got) != nil {
			t.Fatalf("tenancy %v: %d %s", tenancy, code, raw)
		}
		if tenancy {
			if len(got.Data) != 0 {
				t.Errorf("a tenant sees the operator's silences: %s", raw)
			}
			continue
		}
		if len(got.Data) != 2 || len(got.Data[0].Silences) != 1 || got.Data[0].Error != "" || got.Data[1].Error == "" || len(got.Data[1].Silences) != 0 {
			t.Errorf("silences: %s", raw)
		}
	}
}
