package pipeline

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHealthcheckCommand checks that the exit status follows the health
// check's answer and that a failure says why.
func TestHealthcheckCommand(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		if status != http.StatusOK {
			w.Write([]byte(`{"status":"StatusPermanentError","error":"disk full"}`))
		}
	}))
	defer srv.Close()

	out, err := runCommand(t, "healthcheck", "--url", srv.URL+"/")
	if err != nil || !strings.Contains(out, "200 OK") {
		t.Fatalf("healthy server: %v\n%s", err, out)
	}
	status = http.StatusServiceUnavailable
	_, err = runCommand(t, "healthcheck", "--url", srv.URL+"/")
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("unhealthy server: err = %v", err)
	}
	srv.Close()
	if _, err := runCommand(t, "healthcheck", "--url", srv.URL+"/"); err == nil {
		t.Fatal("no server: healthcheck succeeded")
	}
}
