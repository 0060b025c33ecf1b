package api

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
	v1 "github.com/prometheus/prometheus/web/api/v1"
)

// maxTenantStatusSeries bounds the series one tenant's TSDB status reads
// from the head index; past it the figures count the first ones only.
const maxTenantStatusSeries = 1_000_000

// tenantTSDBStatus answers /api/v1/status/tsdb for one tenant: the
// figures Prometheus's handler takes from the whole head, counted over
// the head series that carry the tenant's label.
func (a *API) tenantTSDBStatus(w http.ResponseWriter, r *http.Request, tenant string) {
	err := func() error {
		limit := 10
		if s := r.FormValue("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 10_000 {
				return badRequest("limit must be a number from 1 to 10000")
			}
			limit = n
		}
		db, err := a.metrics.db()
		if err != nil {
			return err
		}
		head := db.Head()
		ir, err := head.Index()
		if err != nil {
			return err
		}
		defer ir.Close()
		p, err := ir.Postings(r.Context(), a.tenantLabel(), tenant)
		if err != nil {
			return fmt.Errorf("reading the tenant's postings: %w", err)
		}

		byMetric := map[string]uint64{}
		byPair := map[labels.Label]uint64{}
		valuesByName := map[string]map[string]struct{}{}
		var (
			st   v1.HeadStats
			b    labels.ScratchBuilder
			chks []chunks.Meta
		)
		for p.Next() && st.NumSeries < maxTenantStatusSeries {
			if err := ir.Series(p.At(), &b, &chks); err != nil {
				continue // deleted since the postings were read
			}
			st.NumSeries++
			st.ChunkCount += int64(len(chks))
			b.Labels().Range(func(l labels.Label) {
				if l.Name == labels.MetricName {
					byMetric[l.Value]++
				}
				byPair[l]++
				vs := valuesByName[l.Name]
				if vs == nil {
					vs = map[string]struct{}{}
					valuesByName[l.Name] = vs
				}
				vs[l.Value] = struct{}{}
			})
		}
		if err := p.Err(); err != nil {
			return fmt.Errorf("reading the tenant's postings: %w", err)
		}
		st.NumLabelPairs = len(byPair)
		st.MinTime, st.MaxTime = head.MinTime(), head.MaxTime()

		valueCount := map[string]uint64{}
		memory := map[string]uint64{}
		for name, vs := range valuesByName {
			valueCount[name] = uint64(len(vs))
			for v := range vs {
				memory[name] += uint64(len(v))
			}
		}
		pairs := make(map[string]uint64, len(byPair))
		for l, n := range byPair {
			pairs[l.Name+"="+l.Value] = n
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": v1.TSDBStatus{
			HeadStats:                   st,
			SeriesCountByMetricName:     topStats(byMetric, limit),
			LabelValueCountByLabelName:  topStats(valueCount, limit),
			MemoryInBytesByLabelName:    topStats(memory, limit),
			SeriesCountByLabelValuePair: topStats(pairs, limit),
		}})
		return nil
	}()
	if err != nil {
		a.fail(w, r, styleJSON, err)
	}
}

// topStats returns the limit largest counts, largest first, ties by name,
// as Prometheus orders its cardinality statistics.
func topStats(m map[string]uint64, limit int) []v1.TSDBStat {
	out := make([]v1.TSDBStat, 0, len(m))
	for k, v := range m {
		out = append(out, v1.TSDBStat{Name: k, Value: v})
	}
	slices.SortFunc(out, func(x, y v1.TSDBStat) int {
		if c := cmp.Compare(y.Value, x.Value); c != 0 {
			return c
		}
		return cmp.Compare(x.Name, y.Name)
	})
	return out[:min(limit, len(out))]
}
