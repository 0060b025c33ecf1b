package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.uber.org/zap"

	"github.com/sightlinehq/sightline/internal/metrics"
)

// TestJaegerDependencies sends the request Jaeger UI's System
// Architecture page sends and checks the links come from the service
// graph's counters: the increase over the lookback per client and server,
// without self-calls, in Jaeger's shape.
func TestJaegerDependencies(t *testing.T) {
	mdb, err := metrics.Open(metrics.Options{Dir: t.TempDir(), Retention: 24 * time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { mdb.Close() })
	now := time.Now().Truncate(time.Second)
	app := mdb.Appender(context.Background())
	edge := func(client, server string, at time.Time, v float64) {
		_, err := app.Append(0, labels.FromStrings("__name__", "traces_service_graph_request_total", "client", client, "server", server, "connection_type", ""), at.UnixMilli(), v)
		require.NoError(t, err)
	}
	// Two hours ago, then every 15 s over the last two minutes.
	edge("frontend", "checkout", now.Add(-2*time.Hour), 100)
	edge("checkout", "checkout", now.Add(-2*time.Hour), 1)
	for i := range 9 {
		at := now.Add(-2*time.Minute + time.Duration(i)*15*time.Second)
		edge("frontend", "checkout", at, 100+float64(10*(i+1))) // +90 in the window
		edge("checkout", "payment", at, float64(5*i))           // +40
		edge("checkout", "checkout", at, 1+float64(i))          // a self-call: left out
	}
	require.NoError(t, app.Commit())

	srv := httptest.NewServer(New(createDefaultConfig().(*Config), nil, Stores{Metrics: mdb}, component.BuildInfo{Version: "test"}, zap.NewNop()).Handler())
	t.Cleanup(srv.Close)
	deps := func(lookback time.Duration) map[string]int {
		t.Helper()
		code, b := get(t, srv, "/jaeger/api/dependencies", url.Values{
			"endTs": {strconv.FormatInt(now.UnixMilli(), 10)}, "lookback": {strconv.FormatInt(lookback.Milliseconds(), 10)},
		}, "")
		require.Equal(t, http.StatusOK, code, string(b))
		var res struct {
			Data []struct {
				Parent    string `json:"parent"`
				Child     string `json:"child"`
				CallCount int    `json:"callCount"`
			} `json:"data"`
			Total  int  `json:"total"`
			Errors *any `json:"errors"`
		}
		require.NoError(t, json.Unmarshal(b, &res))
		require.Equal(t, len(res.Data), res.Total)
		out := map[string]int{}
		for _, d := range res.Data {
			out[d.Parent+">"+d.Child] = d.CallCount
		}
		return out
	}
	// Two minutes of 15 s samples: PromQL's increase extrapolates to the
	// window's edges, so the counts are close to, not exactly, the deltas.
	got := deps(2 * time.Minute)
	require.Len(t, got, 2, "%v", got)
	require.InDelta(t, 90, got["frontend>checkout"], 15, "%v", got)
	require.InDelta(t, 40, got["checkout>payment"], 8, "%v", got)
	// A window before the recent samples holds no calls.
	code, b := get(t, srv, "/jaeger/api/dependencies", url.Values{
		"endTs": {strconv.FormatInt(now.Add(-10*time.Minute).UnixMilli(), 10)}, "lookback": {strconv.FormatInt(time.Minute.Milliseconds(), 10)},
	}, "")
	require.Equal(t, http.StatusOK, code, string(b))
	require.JSONEq(t, `{"data":[],"total":0,"limit":0,"offset":0,"errors":null}`, string(b))
	code, _ = get(t, srv, "/jaeger/api/dependencies", url.Values{"lookback": {"-5"}}, "")
	require.Equal(t, http.StatusBadRequest, code)
}

// With tenancy on, a tenant sees the calls of its own services only.
func TestJaegerDependenciesPerTenant(t *testing.T) {
	mdb, err := metrics.Open(metrics.Options{Dir: t.TempDir(), Retention: 24 * time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { mdb.Close() })
	cfg := createDefaultConfig().(*Config)
	cfg.Tenancy.Enabled = true
	a := New(cfg, nil, Stores{Metrics: mdb}, component.BuildInfo{Version: "test"}, zap.NewNop())
	now := time.Now().Truncate(time.Second)
	app := mdb.Appender(context.Background())
	for i := range 5 {
		at := now.Add(-time.Minute + time.Duration(i)*15*time.Second)
		for tenant, edge := range map[string][2]string{"a": {"web", "api"}, "b": {"shop", "db"}} {
			_, err := app.Append(0, labels.FromStrings("__name__", "traces_service_graph_request_total", "client", edge[0], "server", edge[1], a.tenantLabel(), tenant), at.UnixMilli(), float64(10*i))
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	params := url.Values{"endTs": {strconv.FormatInt(now.UnixMilli(), 10)}, "lookback": {strconv.FormatInt(time.Minute.Milliseconds(), 10)}}
	for tenant, want := range map[string]string{"a": `"parent":"web","child":"api"`, "b": `"parent":"shop","child":"db"`} {
		code, b := get(t, srv, "/jaeger/api/dependencies", params, tenant)
		require.Equal(t, http.StatusOK, code, string(b))
		require.Contains(t, string(b), want)
		require.Contains(t, string(b), `"total":1`)
	}
	code, _ := get(t, srv, "/jaeger/api/dependencies", params, "")
	require.Equal(t, http.StatusUnauthorized, code)
}
