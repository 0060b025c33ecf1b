package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// TestLokiLiveTail tails through the query extension as Grafana's live
// mode does, a WebSocket upgraded through the Collector's HTTP server and
// its middleware, and finds a line pushed by a Loki client after the tail
// opened.
func TestLokiLiveTail(t *testing.T) {
	port, loki := freePort(t), freePort(t)
	start(t, []string{"testdata/query.yaml"}, "QUERY_PORT="+strconv.Itoa(port), "LOKI_PORT="+strconv.Itoa(loki))
	q := url.Values{"query": {`{service_name="tail-e2e"} |= "live"`}, "delay_for": {"0"}}
	conn, resp, err := websocket.DefaultDialer.Dial(fmt.Sprintf("ws://127.0.0.1:%d/loki/api/v1/tail?%s", port, q.Encode()), nil)
	require.NoError(t, err)
	resp.Body.Close()
	defer conn.Close()

	push := fmt.Sprintf(`{"streams":[{"stream":{"service_name":"tail-e2e"},"values":[["%d","not this one"],["%d","a live line"]]}]}`,
		time.Now().UnixNano(), time.Now().UnixNano())
	presp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/loki/api/v1/push", loki), "application/json", bytes.NewReader([]byte(push)))
	require.NoError(t, err)
	presp.Body.Close()
	require.Equal(t, http.StatusNoContent, presp.StatusCode)

	require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	var frame struct {
		Streams []struct {
			Values [][2]string `json:"values"`
		} `json:"streams"`
	}
	require.NoError(t, conn.ReadJSON(&frame))
	require.Len(t, frame.Streams, 1)
	require.Len(t, frame.Streams[0].Values, 1)
	require.Equal(t, "a live line", frame.Streams[0].Values[0][1])
}
