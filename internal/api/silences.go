package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// maxSilencesBytes bounds one Alertmanager's answer: thousands of
// silences, far more than any team keeps.
const maxSilencesBytes = 8 << 20

// silenceAnswer is one Alertmanager's silences, as its API v2 gives them.
type silenceAnswer struct {
	Alertmanager string            `json:"alertmanager"`
	Silences     []json.RawMessage `json:"silences"`
	Error        string            `json:"error,omitempty"`
}

// silences serves GET /api/sightline/v1/silences: the silences of the
// Alertmanagers the rule manager notifies (rules::alertmanagers), read
// from each one's API v2, so that the alerts page shows which alerts are
// muted, by whom and until when. An Alertmanager that does not answer is
// reported beside the others' silences. Like the rules, silences are the
// operator's: a tenant's request gets none.
func (a *API) silences(w http.ResponseWriter, r *http.Request) {
	tenant, err := a.tenant(r)
	if err != nil {
		a.fail(w, r, styleJSON, err)
		return
	}
	ams := a.cfg.Rules.Alertmanagers
	if tenant != "" {
		ams = nil
	}
	timeout := a.cfg.Limits.Timeout
	if timeout <= 0 || timeout > 10*time.Second {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	out := make([]silenceAnswer, len(ams))
	var wg sync.WaitGroup
	for i, u := range ams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = silenceAnswer{Alertmanager: u, Silences: []json.RawMessage{}}
			s, err := fetchSilences(ctx, u)
			if err != nil {
				out[i].Error = err.Error()
				return
			}
			out[i].Silences = s
		}()
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": out})
}

func fetchSilences(ctx context.Context, base string) ([]json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/api/v2/silences", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("alertmanager: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSilencesBytes+1))
	if err != nil {
		return nil, fmt.Errorf("alertmanager: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("alertmanager answered %s", resp.Status)
	}
	if len(body) > maxSilencesBytes {
		return nil, fmt.Errorf("alertmanager: more than %d bytes of silences", maxSilencesBytes)
	}
	var s []json.RawMessage
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("alertmanager: silences are not a JSON list: %w", err)
	}
	return s, nil
}
