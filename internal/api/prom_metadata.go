package api

import (
	"math"
	"net/http"
	"slices"

	"github.com/prometheus/prometheus/model/labels"
)

// promMetadata answers /api/v1/metadata in Prometheus's shape from the
// metrics store's record of the type, help and unit of each family
// written over OTLP (metrics.DB.Metadata). Prometheus's own handler reads
// scrape targets, and Sightline has none: it answered empty, so Grafana's
// metric browser showed no types or help. With tenancy on, a tenant sees
// the families it has series of.
func (a *API) promMetadata(w http.ResponseWriter, r *http.Request) {
	err := func() error {
		limit, err := parseInt("limit", r.FormValue("limit"), -1)
		if err != nil {
			return err
		}
		perMetric, err := parseInt("limit_per_metric", r.FormValue("limit_per_metric"), -1)
		if err != nil {
			return err
		}
		m := a.stores.Metrics
		if m == nil {
			return errNotReady
		}
		all := m.Metadata()
		names := make([]string, 0, len(all))
		for name := range all {
			names = append(names, name)
		}
		if metric := r.FormValue("metric"); metric != "" {
			names = slices.DeleteFunc(names, func(n string) bool { return n != metric })
		}
		if _, ok := promTenant(r.Context()); ok {
			visible, err := a.tenantMetricNames(r)
			if err != nil {
				return err
			}
			names = slices.DeleteFunc(names, func(family string) bool { return !familyVisible(family, visible) })
		}
		slices.Sort(names)
		if limit >= 0 && len(names) > limit {
			names = names[:limit]
		}
		data := make(map[string][]map[string]string, len(names))
		for _, n := range names {
			if perMetric == 0 {
				continue
			}
			md := all[n]
			data[n] = []map[string]string{{"type": string(md.Type), "help": md.Help, "unit": md.Unit}}
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": data})
		return nil
	}()
	if err != nil {
		a.fail(w, r, styleJSON, err)
	}
}

// tenantMetricNames returns the metric names the request's tenant has
// series of.
func (a *API) tenantMetricNames(r *http.Request) (map[string]bool, error) {
	q, err := a.metrics.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	vals, _, err := q.LabelValues(r.Context(), labels.MetricName, nil)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(vals))
	for _, v := range vals {
		out[v] = true
	}
	return out, nil
}

// familyVisible reports whether a family has a series among names: the
// family's own name, or one of the series names a histogram or summary
// family is stored as.
func familyVisible(family string, names map[string]bool) bool {
	if names[family] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_count", "_sum", "_total", "_created"} {
		if names[family+suffix] {
			return true
		}
	}
	return false
}
