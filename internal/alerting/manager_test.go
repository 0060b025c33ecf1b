package alerting

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"
)

// received collects what a fake Alertmanager or webhook was sent.
type received struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (r *received) handler(path string) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != path || req.Method != http.MethodPost {
			http.Error(w, "unexpected "+req.Method+" "+req.URL.Path, http.StatusNotFound)
			return
		}
		var raw json.RawMessage
		if err := json.NewDecoder(req.Body).Decode(&raw); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.bodies = append(r.bodies, raw)
		r.mu.Unlock()
	}
}

func (r *received) last() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bodies) == 0 {
		return nil
	}
	return r.bodies[len(r.bodies)-1]
}

type amAlert struct {
	Labels   map[string]string `json:"labels"`
	StartsAt time.Time         `json:"startsAt"`
	EndsAt   time.Time         `json:"endsAt"`
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAlertFiresAndResolves runs a rule file over a real TSDB: the alert
// reaches an Alertmanager (Prometheus's notifier, API v2) and a webhook
// when the error ratio rises, and both learn it resolved when it falls.
func TestAlertFiresAndResolves(t *testing.T) {
	db, err := tsdb.Open(t.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
	require.NoError(t, err)
	defer db.Close()
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: 10 * time.Second, LookbackDelta: 5 * time.Minute})

	var am, hook received
	amSrv := httptest.NewServer(am.handler("/prefix/api/v2/alerts"))
	defer amSrv.Close()
	hookSrv := httptest.NewServer(hook.handler("/hook"))
	defer hookSrv.Close()

	m, err := New(Config{
		Files:              []string{"testdata/errors.rules.yml"},
		EvaluationInterval: time.Minute, // the group sets 50ms
		Alertmanagers:      []string{amSrv.URL + "/prefix"},
		Webhooks:           []string{hookSrv.URL + "/hook"},
		ExternalURL:        "http://sightline.example:3200",
		ExternalLabels:     map[string]string{"cluster": "test"},
	}, eng, db, db, nil, nil)
	require.NoError(t, err)
	require.NoError(t, m.Start())
	defer m.Stop()

	put := func(errs, reqs float64) {
		app := db.Appender(context.Background())
		ts := time.Now().UnixMilli()
		_, err := app.Append(0, labels.FromStrings("__name__", "errors_total", "service_name", "checkout"), ts, errs)
		require.NoError(t, err)
		_, err = app.Append(0, labels.FromStrings("__name__", "requests_total", "service_name", "checkout"), ts, reqs)
		require.NoError(t, err)
		require.NoError(t, app.Commit())
	}

	put(10, 100)
	waitUntil(t, "the Alertmanager to receive the firing alert", func() bool {
		var alerts []amAlert
		if b := am.last(); b == nil || json.Unmarshal(b, &alerts) != nil || len(alerts) != 1 {
			return false
		}
		a := alerts[0]
		return a.Labels["alertname"] == "HighErrorRate" && a.Labels["service_name"] == "checkout" &&
			a.Labels["severity"] == "page" && a.Labels["cluster"] == "test" && a.EndsAt.After(time.Now())
	})
	var msg webhookBody
	waitUntil(t, "the webhook to receive the firing alert", func() bool {
		b := hook.last()
		return b != nil && json.Unmarshal(b, &msg) == nil && msg.Status == "firing"
	})
	require.Equal(t, "4", msg.Version)
	require.Len(t, msg.Alerts, 1)
	require.Equal(t, "checkout error ratio 0.1", msg.Alerts[0].Annotations["summary"])
	require.Contains(t, msg.Alerts[0].GeneratorURL, "http://sightline.example:3200/graph?g0.expr=")
	require.Equal(t, "HighErrorRate", msg.GroupLabels["alertname"])
	require.Equal(t, "test", msg.Alerts[0].Labels["cluster"])

	require.Len(t, m.AlertingRules(), 1)
	require.Len(t, m.AlertingRules()[0].ActiveAlerts(), 1)
	require.Equal(t, []string{amSrv.URL + "/prefix/api/v2/alerts"}, urls(m))

	// The recording rule wrote its series back into the TSDB.
	waitUntil(t, "the recorded series", func() bool {
		q, err := eng.NewInstantQuery(context.Background(), db, nil, `service_name:error_ratio`, time.Now())
		require.NoError(t, err)
		v, err := q.Exec(context.Background()).Vector()
		return err == nil && len(v) == 1 && v[0].F == 0.1
	})

	put(10, 1000)
	waitUntil(t, "the Alertmanager to learn the alert resolved", func() bool {
		var alerts []amAlert
		if b := am.last(); b == nil || json.Unmarshal(b, &alerts) != nil || len(alerts) != 1 {
			return false
		}
		return !alerts[0].EndsAt.IsZero() && !alerts[0].EndsAt.After(time.Now())
	})
	waitUntil(t, "the webhook to learn the alert resolved", func() bool {
		b := hook.last()
		return b != nil && json.Unmarshal(b, &msg) == nil && msg.Status == "resolved" && msg.Alerts[0].Status == "resolved"
	})
	require.Empty(t, m.AlertingRules()[0].ActiveAlerts())
}

func urls(m *Manager) []string {
	var out []string
	for _, u := range m.Alertmanagers() {
		out = append(out, u.String())
	}
	return out
}
