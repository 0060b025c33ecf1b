package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/sightlinehq/sightline/internal/dashboard"
)

// dashboardRoutes serves the UI's dashboards with the request and answer
// shapes of Grafana's dashboard HTTP API, so that scripts written for
// Grafana (grafana-dashboard backups, Terraform's grafana_dashboard
// payloads) can read and write them. Grafana lists dashboards at
// /api/search, which is Tempo's search here, so the list has its own
// path.
func (a *API) dashboardRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/dashboards", a.listDashboards)
	mux.HandleFunc("GET /api/dashboards/uid/{uid}", a.getDashboard)
	mux.HandleFunc("DELETE /api/dashboards/uid/{uid}", a.deleteDashboard)
	mux.HandleFunc("POST /api/dashboards/db", a.saveDashboard)
	mux.HandleFunc("GET /api/sightline/v1/queries", a.listQueries)
	mux.HandleFunc("POST /api/sightline/v1/queries", a.saveQuery)
	mux.HandleFunc("DELETE /api/sightline/v1/queries/{id}", a.deleteQuery)
}

func (a *API) dashboards(r *http.Request) (*dashboard.Store, string, error) {
	tenant, err := a.tenant(r)
	if err != nil {
		return nil, "", err
	}
	if a.stores.Dashboards == nil {
		return nil, "", errNotReady
	}
	return a.stores.Dashboards, tenant, nil
}

func dashboardURL(uid string) string { return "/ui/d/" + uid }

// listDashboards answers the dashboards in the shape of Grafana's search
// hits, with Sightline's meta (version, panels, provisioned) beside.
func (a *API) listDashboards(w http.ResponseWriter, r *http.Request) {
	ds, tenant, err := a.dashboards(r)
	if err != nil {
		a.fail(w, r, styleJSON, err)
		return
	}
	metas, err := ds.List(r.Context(), tenant)
	if err != nil {
		a.fail(w, r, styleJSON, err)
		return
	}
	q := strings.ToLower(r.URL.Query().Get("query"))
	tags := r.URL.Query()["tag"]
	out := make([]map[string]any, 0, len(metas))
	for _, m := range metas {
		if q != "" && !strings.Contains(strings.ToLower(m.Title), q) {
			continue
		}
		if !hasTags(m.Tags, tags) {
			continue
		}
		out = append(out, map[string]any{
			"uid": m.UID, "title": m.Title, "tags": nonNil(m.Tags), "type": "dash-db", "url": dashboardURL(m.UID),
			"version": m.Version, "panels": m.Panels, "provisioned": m.Provisioned, "updated": m.Updated,
		})
	}
	writeJSON(w, http.StatusOK, out)
}

func hasTags(have, want []string) bool {
	for _, t := range want {
		found := false
		for _, h := range have {
			if h == t {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (a *API) getDashboard(w http.ResponseWriter, r *http.Request) {
	ds, tenant, err := a.dashboards(r)
	if err != nil {
		a.fail(w, r, styleJSON, err)
		return
	}
	d, err := ds.Get(r.Context(), tenant, r.PathValue("uid"))
	if err != nil {
		a.fail(w, r, styleJSON, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"dashboard": d.Model,
		"meta": map[string]any{
			"type": "db", "slug": slug(d.Meta.Title), "url": dashboardURL(d.Meta.UID), "version": d.Meta.Version,
			"updated": d.Meta.Updated, "provisioned": d.Meta.Provisioned, "canSave": !d.Meta.Provisioned,
			"canEdit": true, "canDelete": !d.Meta.Provisioned,
		},
	})
}

// saveRequest is the body of Grafana's POST /api/dashboards/db. folderUid
// and message are accepted and ignored: there are no folders or history.
type saveRequest struct {
	Dashboard json.RawMessage `json:"dashboard"`
	Overwrite bool            `json:"overwrite"`
	FolderUID string          `json:"folderUid"`
	Message   string          `json:"message"`
}

func (a *API) saveDashboard(w http.ResponseWriter, r *http.Request) {
	ds, tenant, err := a.dashboards(r)
	if err != nil {
		a.fail(w, r, styleJSON, err)
		return
	}
	// The model may be MaxBytes; the envelope around it adds little.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, dashboard.MaxBytes+64<<10))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			a.fail(w, r, styleJSON, fmt.Errorf("%w: the request is over %d bytes", errLimit, mbe.Limit))
			return
		}
		a.fail(w, r, styleJSON, badRequest("read body: %v", err))
		return
	}
	var req saveRequest
	if err := json.Unmarshal(body, &req); err != nil {
		a.fail(w, r, styleJSON, badRequest("the body is not a JSON object with a dashboard: %v", err))
		return
	}
	if len(req.Dashboard) == 0 || string(req.Dashboard) == "null" {
		a.fail(w, r, styleJSON, badRequest("dashboard: required"))
		return
	}
	m, err := ds.Save(r.Context(), tenant, req.Dashboard, req.Overwrite)
	if err != nil {
		if errors.Is(err, dashboard.ErrVersionMismatch) {
			// Grafana's answer, which its clients look for.
			writeJSON(w, status(err), map[string]any{"status": "version-mismatch", "message": err.Error()})
			return
		}
		a.fail(w, r, styleJSON, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"status": "success", "uid": m.UID, "url": dashboardURL(m.UID), "version": m.Version, "slug": slug(m.Title),
	})
}

func (a *API) deleteDashboard(w http.ResponseWriter, r *http.Request) {
	ds, tenant, err := a.dashboards(r)
	if err != nil {
		a.fail(w, r, styleJSON, err)
		return
	}
	m, err := ds.Delete(r.Context(), tenant, r.PathValue("uid"))
	if err != nil {
		a.fail(w, r, styleJSON, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"title": m.Title, "message": fmt.Sprintf("Dashboard %s deleted", m.Title), "uid": m.UID})
}

// slug is Grafana's URL slug of a title: lower case, runs of anything but
// letters and digits as one dash.
func slug(title string) string {
	var b strings.Builder
	dash := false
	for _, c := range strings.ToLower(title) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(c)
			continue
		}
		dash = true
	}
	return b.String()
}

// listQueries answers the saved queries, of one kind with ?kind=.
func (a *API) listQueries(w http.ResponseWriter, r *http.Request) {
	ds, tenant, err := a.dashboards(r)
	if err != nil {
		a.fail(w, r, styleJSON, err)
		return
	}
	qs, err := ds.Queries(r.Context(), tenant, r.URL.Query().Get("kind"))
	if err != nil {
		a.fail(w, r, styleJSON, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"queries": qs})
}

// saveQuery keeps {"kind", "name", "query"}; the same kind and name
// replaces the query saved before.
func (a *API) saveQuery(w http.ResponseWriter, r *http.Request) {
	ds, tenant, err := a.dashboards(r)
	if err != nil {
		a.fail(w, r, styleJSON, err)
		return
	}
	var q dashboard.Query
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, dashboard.MaxQueryBytes+4<<10))
	dec.DisallowUnknownFields()
	err = dec.Decode(&q)
	if err == nil {
		// Only whitespace may follow the object.
		if _, end := dec.Token(); end != io.EOF {
			err = errors.New("data after the object")
		}
	}
	if err != nil {
		a.fail(w, r, styleJSON, badRequest("the body is not a saved query {kind, name, query}: %v", err))
		return
	}
	saved, err := ds.SaveQuery(r.Context(), tenant, dashboard.Query{Kind: q.Kind, Name: q.Name, Query: q.Query})
	if err != nil {
		a.fail(w, r, styleJSON, err)
		return
	}
	writeJSON(w, http.StatusOK, saved)
}

func (a *API) deleteQuery(w http.ResponseWriter, r *http.Request) {
	ds, tenant, err := a.dashboards(r)
	if err != nil {
		a.fail(w, r, styleJSON, err)
		return
	}
	if err := ds.DeleteQuery(r.Context(), tenant, r.PathValue("id")); err != nil {
		a.fail(w, r, styleJSON, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
