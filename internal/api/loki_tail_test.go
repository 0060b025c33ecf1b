package api

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.uber.org/zap"
)

// TestLokiTail opens a live tail as Grafana's live mode and logcli do and
// checks that a line written after it opened arrives in Loki's frame
// shape, that a line from before its start does not, and that tails past
// the server's bound are refused with 429 before the upgrade.
func TestLokiTail(t *testing.T) {
	db, _, _ := testStore(t)
	api := New(createDefaultConfig().(*Config), StoreSource(db), Stores{Traces: db}, component.BuildInfo{Version: "test"}, zap.NewNop())
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)

	appendLine := func(line string, ts time.Time) {
		ld := plog.NewLogs()
		rl := ld.ResourceLogs().AppendEmpty()
		rl.Resource().Attributes().PutStr("service.name", "tail-test")
		lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(ts))
		lr.Body().SetStr(line)
		require.NoError(t, db.AppendLogs(ld))
	}
	start := time.Now()
	appendLine("before the tail's start", start.Add(-time.Minute))

	params := url.Values{"query": {`{service_name="tail-test"}`}, "start": {strconv.FormatInt(start.UnixNano(), 10)}, "limit": {"10"}}
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/loki/api/v1/tail?" + params.Encode()
	conn, resp, err := websocket.DefaultDialer.Dial(wsURL, nil)
	require.NoError(t, err)
	resp.Body.Close()
	defer conn.Close()

	appendLine("written while tailing", time.Now())
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	var frame struct {
		Streams []struct {
			Stream map[string]string `json:"stream"`
			Values [][2]string       `json:"values"`
		} `json:"streams"`
		DroppedEntries []any `json:"dropped_entries"`
	}
	require.NoError(t, conn.ReadJSON(&frame))
	require.Len(t, frame.Streams, 1)
	require.Equal(t, "tail-test", frame.Streams[0].Stream["service_name"])
	require.Len(t, frame.Streams[0].Values, 1)
	require.Equal(t, "written while tailing", frame.Streams[0].Values[0][1])

	// Every token taken: the next tail is refused before the upgrade.
	for len(api.tails) < cap(api.tails) {
		api.tails <- struct{}{}
	}
	_, resp, err = websocket.DefaultDialer.Dial(wsURL, nil)
	require.Error(t, err)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	resp.Body.Close()

	// A metric query cannot be tailed.
	params.Set("query", `count_over_time({service_name="tail-test"}[1m])`)
	code, b := get(t, srv, "/loki/api/v1/tail", params, "")
	require.Equal(t, http.StatusBadRequest, code, "%s", b)
}
