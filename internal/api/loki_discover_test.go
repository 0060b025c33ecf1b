package api

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestLokiDiscoveryEndpoints drives index/volume, index/volume_range,
// detected_labels, detected_fields and detected_field/{name}/values with
// the requests Grafana's Loki datasource and Logs Drilldown send, and
// checks each answer against what query_range and series say of the same
// data.
func TestLokiDiscoveryEndpoints(t *testing.T) {
	db, _, t0 := testStore(t)
	srv := newTestAPI(t, db, nil)
	start := strconv.FormatInt(t0.Add(-time.Minute).UnixNano(), 10)
	end := strconv.FormatInt(time.Now().UnixNano(), 10)

	// The bytes of every line per service, as query_range returns them.
	code, b := get(t, srv, "/loki/api/v1/query_range", url.Values{"query": {`{service_name=~".+"}`}, "limit": {"5000"}, "start": {start}, "end": {end}}, "")
	require.Equal(t, http.StatusOK, code, "%s", b)
	var logs struct {
		Data struct {
			Result []struct {
				Stream map[string]string `json:"stream"`
				Values [][2]string       `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(b, &logs))
	wantBytes, wantLines := map[string]float64{}, map[string]int64{}
	for _, s := range logs.Data.Result {
		for _, v := range s.Values {
			wantBytes[s.Stream["service_name"]] += float64(len(v[1]))
			wantLines[s.Stream["service_name"]]++
		}
	}
	require.Greater(t, len(wantBytes), 1)

	// Drilldown's service list.
	code, b = get(t, srv, "/loki/api/v1/index/volume", url.Values{"query": {`{service_name=~".+"}`}, "start": {start}, "end": {end},
		"limit": {"5000"}, "targetLabels": {"service_name"}, "aggregateBy": {"series"}}, "")
	require.Equal(t, http.StatusOK, code, "%s", b)
	var vec struct {
		Status string `json:"status"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(b, &vec))
	require.Equal(t, "success", vec.Status)
	require.Equal(t, "vector", vec.Data.ResultType)
	require.Len(t, vec.Data.Result, len(wantBytes))
	prev := -1.0
	for _, r := range vec.Data.Result {
		require.Len(t, r.Metric, 1)
		got, err := strconv.ParseFloat(r.Value[1].(string), 64)
		require.NoError(t, err)
		require.Equal(t, wantBytes[r.Metric["service_name"]], got, "bytes of %s", r.Metric)
		require.True(t, prev < 0 || got <= prev, "largest first")
		prev = got
	}

	// The volume over time sums to the same.
	code, b = get(t, srv, "/loki/api/v1/index/volume_range", url.Values{"query": {`{service_name=~".+"}`}, "start": {start}, "end": {end},
		"step": {"60s"}, "limit": {"100"}, "aggregateBy": {"series"}}, "")
	require.Equal(t, http.StatusOK, code, "%s", b)
	var mat struct {
		Data struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(b, &mat))
	require.Equal(t, "matrix", mat.Data.ResultType)
	for _, r := range mat.Data.Result {
		sum := 0.0
		for _, v := range r.Values {
			f, err := strconv.ParseFloat(v[1].(string), 64)
			require.NoError(t, err)
			sum += f
		}
		require.Equal(t, wantBytes[r.Metric["service_name"]], sum)
	}

	// Stream labels with their cardinality, as the series endpoint counts them.
	code, b = get(t, srv, "/loki/api/v1/series", url.Values{"match[]": {`{service_name=~".+"}`}, "start": {start}, "end": {end}}, "")
	require.Equal(t, http.StatusOK, code, "%s", b)
	var series struct {
		Data []map[string]string `json:"data"`
	}
	require.NoError(t, json.Unmarshal(b, &series))
	values := map[string]map[string]bool{}
	for _, s := range series.Data {
		for k, v := range s {
			if values[k] == nil {
				values[k] = map[string]bool{}
			}
			values[k][v] = true
		}
	}
	code, b = get(t, srv, "/loki/api/v1/detected_labels", url.Values{"query": {`{service_name=~".+"}`}, "start": {start}, "end": {end}}, "")
	require.Equal(t, http.StatusOK, code, "%s", b)
	var dl struct {
		DetectedLabels []struct {
			Label       string `json:"label"`
			Cardinality int    `json:"cardinality"`
		} `json:"detectedLabels"`
	}
	require.NoError(t, json.Unmarshal(b, &dl))
	require.Len(t, dl.DetectedLabels, len(values))
	for _, l := range dl.DetectedLabels {
		require.Equal(t, len(values[l.Label]), l.Cardinality, "cardinality of %s", l.Label)
	}

	// Fields of the lines, and the values of one of them.
	service := vec.Data.Result[0].Metric["service_name"]
	sel := `{service_name="` + service + `"}`
	code, b = get(t, srv, "/loki/api/v1/detected_fields", url.Values{"query": {sel}, "start": {start}, "end": {end}, "limit": {"1000"}, "line_limit": {"1000"}}, "")
	require.Equal(t, http.StatusOK, code, "%s", b)
	var df struct {
		Fields []struct {
			Label       string   `json:"label"`
			Type        string   `json:"type"`
			Cardinality int      `json:"cardinality"`
			Parsers     []string `json:"parsers"`
		} `json:"fields"`
		Limit int `json:"limit"`
	}
	require.NoError(t, json.Unmarshal(b, &df))
	require.Equal(t, 1000, df.Limit)
	require.NotEmpty(t, df.Fields, "%s", b)
	for _, f := range df.Fields {
		require.Contains(t, []string{"string", "int", "float", "boolean", "duration", "bytes"}, f.Type)
		require.NotContains(t, values, f.Label, "stream labels are not fields")
	}
	f := df.Fields[0]
	code, b = get(t, srv, "/loki/api/v1/detected_field/"+f.Label+"/values", url.Values{"query": {sel}, "start": {start}, "end": {end}}, "")
	require.Equal(t, http.StatusOK, code, "%s", b)
	var fv struct {
		Values []string `json:"values"`
	}
	require.NoError(t, json.Unmarshal(b, &fv))
	require.Len(t, fv.Values, f.Cardinality)

	// Patterns: every line of the service counted once, in its range.
	code, b = get(t, srv, "/loki/api/v1/patterns", url.Values{"query": {sel}, "start": {start}, "end": {end}, "step": {"60s"}}, "")
	require.Equal(t, http.StatusOK, code, "%s", b)
	var pats struct {
		Status string `json:"status"`
		Data   []struct {
			Pattern string     `json:"pattern"`
			Samples [][2]int64 `json:"samples"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(b, &pats))
	require.Equal(t, "success", pats.Status)
	require.NotEmpty(t, pats.Data)
	var counted int64
	for _, p := range pats.Data {
		require.NotEmpty(t, p.Pattern)
		for _, s := range p.Samples {
			require.GreaterOrEqual(t, s[0], t0.Add(-2*time.Minute).Unix())
			require.LessOrEqual(t, s[0], time.Now().Unix())
			counted += s[1]
		}
	}
	require.Equal(t, wantLines[service], counted)

	// What Grafana can get wrong is refused with 400.
	for _, bad := range []url.Values{
		{"start": {start}},
		{"query": {`{service_name=~".+"}`}, "aggregateBy": {"streams"}},
		{"query": {`sum(rate({a="b"}[1m]))`}},
	} {
		code, b = get(t, srv, "/loki/api/v1/index/volume", bad, "")
		require.Equal(t, http.StatusBadRequest, code, "%v: %s", bad, b)
	}
}
