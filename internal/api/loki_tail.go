package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/sightlinehq/sightline/internal/query/logql"
)

// Loki's live tail (GET /loki/api/v1/tail, a WebSocket), which Grafana
// Explore's live mode and logcli --tail use. Each tail polls the store
// every tailPoll for entries up to now minus delay_for, through a
// logql.TailCursor, and sends what is new as one frame in Loki's shape.
const (
	// maxTails bounds the tails served at once: each holds a connection
	// and reads the store every second. Past it a tail is refused with
	// 429 before the upgrade.
	maxTails = 32
	// tailMaxDuration ends a tail after an hour, as Loki's default
	// tail_max_duration does; clients reconnect.
	tailMaxDuration = time.Hour
	tailPoll        = time.Second
	// tailWriteTimeout drops a client that does not read a frame in time,
	// so that a stalled reader holds no buffer and no token.
	tailWriteTimeout = 10 * time.Second
	// tailMaxDelay is Loki's bound on delay_for, in seconds.
	tailMaxDelay = 5
	// tailLag is how late an entry may reach the store after its
	// timestamp and still be sent: the cursor re-reads that much behind
	// and skips what it sent (logql.TailCursor).
	tailLag = 3 * time.Second
)

// tailFrame is one message of a tail, as Loki sends it.
type tailFrame struct {
	Streams        []lokiStream `json:"streams"`
	DroppedEntries []any        `json:"dropped_entries"`
}

var tailUpgrader = websocket.Upgrader{
	// The query API's own middleware has authenticated the request; the
	// Origin check stays gorilla's default (same host, or no Origin, as
	// from Grafana's server-side proxy and logcli).
	HandshakeTimeout: 10 * time.Second,
}

func (a *API) lokiTail(w http.ResponseWriter, r *http.Request) {
	cursor, release, err := a.startTail(r)
	if err != nil {
		a.fail(w, r, styleText, err)
		return
	}
	defer release()
	conn, err := tailUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered the client
	}
	defer conn.Close()
	delay, _ := strconv.Atoi(r.FormValue("delay_for"))

	ctx, cancel := context.WithTimeout(r.Context(), tailMaxDuration)
	defer cancel()
	// The client only reads; its close (or a broken connection) ends the tail.
	go func() {
		defer cancel()
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}()
	tick := time.NewTicker(tailPoll)
	defer tick.Stop()
	for {
		until := a.now().Add(-time.Duration(delay) * time.Second).UnixNano()
		if err := a.tailOnce(ctx, r, conn, cursor, until); err != nil {
			if ctx.Err() == nil {
				a.logger.Debug("live tail ended", zap.Error(err))
				msg := websocket.FormatCloseMessage(websocket.CloseInternalServerErr, err.Error())
				_ = conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
			}
			return
		}
		select {
		case <-ctx.Done():
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			return
		case <-tick.C:
		}
	}
}

// startTail checks the request and takes a tail token, before the
// upgrade, so that every refusal is a plain HTTP answer.
func (a *API) startTail(r *http.Request) (*logql.TailCursor, func(), error) {
	q, err := logql.Parse(r.FormValue("query"))
	if err != nil {
		return nil, nil, err
	}
	if q.Log == nil {
		return nil, nil, badRequest("tail needs a log query, not a metric query")
	}
	limit, err := parseInt("limit", r.FormValue("limit"), 100)
	if err != nil {
		return nil, nil, err
	}
	if err := a.checkLimit(limit); err != nil {
		return nil, nil, err
	}
	if d := r.FormValue("delay_for"); d != "" {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 || n > tailMaxDelay {
			return nil, nil, badRequest("delay_for must be a whole number of seconds from 0 to %d", tailMaxDelay)
		}
	}
	now := a.now().UnixNano()
	start, err := parseTime("start", r.FormValue("start"))
	if err != nil {
		return nil, nil, err
	}
	if start == 0 {
		start = now - int64(time.Hour)
	}
	if err := a.checkRange(start, now); err != nil {
		return nil, nil, err
	}
	if _, err := a.tenant(r); err != nil {
		return nil, nil, err
	}
	select {
	case a.tails <- struct{}{}:
	default:
		return nil, nil, fmt.Errorf("%w: at most %d live tails at once", errBusy, maxTails)
	}
	return &logql.TailCursor{Expr: q.Log, From: start, Limit: limit, Lag: int64(tailLag)}, func() { <-a.tails }, nil
}

// tailOnce sends the entries up to until that the tail has not sent, as
// one frame, reading through a querier of its own so that every poll has
// the query API's deadline and read limit.
func (a *API) tailOnce(ctx context.Context, r *http.Request, conn *websocket.Conn, c *logql.TailCursor, until int64) error {
	qr, err := a.open(r.WithContext(ctx))
	if err != nil {
		return err
	}
	defer qr.close()
	streams, err := c.Next(qr.ctx, qr.q, until)
	if err != nil || len(streams) == 0 {
		return err
	}
	frame := tailFrame{Streams: make([]lokiStream, 0, len(streams))}
	for _, s := range streams {
		ls := lokiStream{Stream: s.Labels.Map(), Values: make([][2]string, 0, len(s.Entries))}
		for _, e := range s.Entries {
			ls.Values = append(ls.Values, [2]string{strconv.FormatInt(e.Timestamp, 10), e.Line})
		}
		frame.Streams = append(frame.Streams, ls)
	}
	_ = conn.SetWriteDeadline(time.Now().Add(tailWriteTimeout))
	return conn.WriteJSON(frame)
}
