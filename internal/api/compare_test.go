package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// compareAnswer is /api/metrics/query_range's answer as Grafana's Traces
// Drilldown reads it for compare().
type compareAnswer struct {
	Series []struct {
		Labels []struct {
			Key   string `json:"key"`
			Value struct {
				StringValue *string `json:"stringValue"`
				IntValue    *string `json:"intValue"`
			} `json:"value"`
		} `json:"labels"`
		Samples []struct {
			Value float64 `json:"value"`
		} `json:"samples"`
	} `json:"series"`
}

// TestTempoCompare checks compare()'s series as Tempo shapes them: a
// __meta_type label and the attribute's value, totals with the value nil,
// and counts that add up to the spans on each side.
func TestTempoCompare(t *testing.T) {
	db, spans, t0 := testStore(t)
	require.NoError(t, db.Flush(context.Background()))
	var all, errs int
	for _, ss := range spans {
		for _, s := range ss {
			all++
			if s.StatusCode == storage.StatusError {
				errs++
			}
		}
	}
	require.NotZero(t, errs, "the workload has error spans")
	params := url.Values{
		"q":     {`{ } | compare({ status = error })`},
		"start": {strconv.FormatInt(t0.Add(-time.Minute).Unix(), 10)},
		"end":   {strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10)},
		"step":  {"3600"},
	}
	srv := newTestAPI(t, db, nil)
	code, b := get(t, srv, "/api/metrics/query_range", params, "")
	require.Equal(t, http.StatusOK, code, "%s", b)
	var ans compareAnswer
	require.NoError(t, json.Unmarshal(b, &ans))

	sums := map[string]float64{}
	statuses := map[string]map[string]bool{}
	for _, s := range ans.Series {
		require.Len(t, s.Labels, 2, "%s", b)
		meta, attr := s.Labels[0], s.Labels[1]
		require.NotNil(t, meta.Value.StringValue)
		switch meta.Key {
		case "__meta_type":
		case "__meta_error":
			require.Equal(t, "__too_many_values__", *meta.Value.StringValue)
			require.Equal(t, "nil", *attr.Value.StringValue)
			continue
		default:
			t.Fatalf("series without __meta_type: %s", b)
		}
		side := *meta.Value.StringValue
		var sum float64
		for _, p := range s.Samples {
			sum += p.Value
		}
		if side == "baseline_total" || side == "selection_total" {
			require.Equal(t, "nil", *attr.Value.StringValue, "a total's value is nil, as in Tempo")
			sums[side+" "+attr.Key] = sum
			continue
		}
		if attr.Key == "status" {
			if statuses[side] == nil {
				statuses[side] = map[string]bool{}
			}
			statuses[side][*attr.Value.StringValue] = true
		}
	}
	require.Equal(t, map[string]bool{"error": true}, statuses["selection"])
	require.NotContains(t, statuses["baseline"], "error")
	// Every span has a name and a service: the totals count every span once.
	require.Equal(t, float64(errs), sums["selection_total name"])
	require.Equal(t, float64(all-errs), sums["baseline_total name"])
	require.Equal(t, float64(errs), sums["selection_total resource.service.name"])

	// With room for one series of samples, compare() still answers: each
	// attribute past the bound is reported, none is dropped silently.
	srv = newTestAPI(t, db, func(c *Config) { c.Limits.MaxSamples = 1 })
	code, b = get(t, srv, "/api/metrics/query_range", params, "")
	require.Equal(t, http.StatusOK, code, "%s", b)
	ans = compareAnswer{}
	require.NoError(t, json.Unmarshal(b, &ans))
	reported := map[string]bool{}
	kept := 0
	for _, s := range ans.Series {
		if s.Labels[0].Key == "__meta_error" {
			reported[s.Labels[1].Key] = true
		} else {
			kept++
		}
	}
	require.LessOrEqual(t, kept, 1, "%s", b)
	for _, attr := range []string{"name", "status", "kind", "resource.service.name"} {
		require.True(t, reported[attr], "%s is neither counted nor reported: %s", attr, b)
	}
}
