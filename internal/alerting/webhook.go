package alerting

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/notifier"
)

// webhookQueue bounds the notifications waiting for slow webhooks; when
// it is full the oldest batch is dropped and the drop is logged, so rule
// evaluation never blocks on a receiver.
const webhookQueue = 256

// webhooks posts alert notifications to URLs in the body Alertmanager's
// webhook_config sends, so receivers written for Alertmanager (chat
// bridges, incident tools) take Sightline's alerts unchanged.
type webhooks struct {
	urls        []string
	externalURL string
	logger      *slog.Logger
	client      *http.Client
	queue       chan []*notifier.Alert
	done        chan struct{}
	once        sync.Once
}

func newWebhooks(urls []string, externalURL string, logger *slog.Logger) *webhooks {
	return &webhooks{
		urls: urls, externalURL: externalURL, logger: logger,
		client: &http.Client{Timeout: 10 * time.Second},
		queue:  make(chan []*notifier.Alert, webhookQueue),
		done:   make(chan struct{}),
	}
}

func (w *webhooks) start() { go w.run() }

// stop sends what is queued, then returns.
func (w *webhooks) stop() {
	w.once.Do(func() { close(w.queue) })
	<-w.done
}

// send queues alerts; it never blocks.
func (w *webhooks) send(alerts []*notifier.Alert) {
	for {
		select {
		case w.queue <- alerts:
			return
		default:
		}
		select {
		case old := <-w.queue:
			w.logger.Warn("webhook queue full; dropped a notification", "alerts", len(old))
		default:
		}
	}
}

func (w *webhooks) run() {
	defer close(w.done)
	for alerts := range w.queue {
		body, err := json.Marshal(webhookMessage(alerts, w.externalURL, time.Now()))
		if err != nil {
			w.logger.Error("encode webhook message", "err", err)
			continue
		}
		for _, u := range w.urls {
			if err := w.post(u, body); err != nil {
				w.logger.Warn("webhook notification failed", "url", u, "err", err)
			}
		}
	}
}

func (w *webhooks) post(u string, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), w.client.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// webhookAlert and webhookBody follow Alertmanager's webhook payload,
// version 4.
type webhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

type webhookBody struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []webhookAlert    `json:"alerts"`
}

// webhookMessage builds one message for a rule's alerts. An alert whose
// end lies in the past is resolved; the message is firing while any of
// its alerts is.
func webhookMessage(alerts []*notifier.Alert, externalURL string, now time.Time) webhookBody {
	b := webhookBody{
		Version: "4", Status: "resolved", Receiver: "sightline", ExternalURL: externalURL,
		GroupLabels: map[string]string{}, CommonAnnotations: map[string]string{},
	}
	var common labels.Labels
	for i, a := range alerts {
		st := "firing"
		if !a.EndsAt.IsZero() && !a.EndsAt.After(now) {
			st = "resolved"
		} else {
			b.Status = "firing"
		}
		b.Alerts = append(b.Alerts, webhookAlert{
			Status: st, Labels: a.Labels.Map(), Annotations: a.Annotations.Map(),
			StartsAt: a.StartsAt, EndsAt: a.EndsAt, GeneratorURL: a.GeneratorURL,
			Fingerprint: strconv.FormatUint(a.Labels.Hash(), 16),
		})
		if i == 0 {
			common = a.Labels
			continue
		}
		common = intersect(common, a.Labels)
	}
	b.CommonLabels = common.Map()
	if name := common.Get(labels.AlertName); name != "" {
		b.GroupLabels[labels.AlertName] = name
	}
	b.GroupKey = "{}:" + labels.FromMap(b.GroupLabels).String()
	return b
}

// intersect keeps the labels a and b share with equal values.
func intersect(a, b labels.Labels) labels.Labels {
	var sb labels.ScratchBuilder
	a.Range(func(l labels.Label) {
		if b.Get(l.Name) == l.Value {
			sb.Add(l.Name, l.Value)
		}
	})
	return sb.Labels()
}
