package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// alertmanager runs Debian's Alertmanager (the prometheus-alertmanager
// package, which scripts/test.sh installs) in a temporary directory, with
// clustering off and one receiver that sends nowhere, and returns its
// base URL.
func alertmanager(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		t.Fatal("Alertmanager is not installed: scripts/test.sh installs Debian's prometheus-alertmanager package")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("route:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n"), 0o600))
	port := freePort(t)
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--cluster.listen-address=")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("alertmanager output:\n%s", out.String())
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(t, "alertmanager to be ready", 60*time.Second, func() bool {
		select {
		case <-done:
			t.Fatalf("alertmanager exited:\n%s", out.String())
		default:
		}
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return base
}

// silence creates a silence in the Alertmanager at base through its API
// v2, as amtool does, and returns its ID.
func silence(t *testing.T, base string, matchers []map[string]any, comment string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"matchers": matchers, "startsAt": time.Now().UTC().Format(time.RFC3339),
		"endsAt": time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339), "createdBy": "e2e", "comment": comment,
	})
	resp, err := http.Post(base+"/api/v2/silences", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(raw))
	var r struct {
		SilenceID string `json:"silenceID"`
	}
	require.NoError(t, json.Unmarshal(raw, &r))
	return r.SilenceID
}
