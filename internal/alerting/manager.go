// Package alerting evaluates Prometheus recording and alerting rules
// in-process with Prometheus's own rules package, and sends firing alerts
// to Alertmanagers through Prometheus's own notifier and to webhooks in
// Alertmanager's webhook format.
package alerting

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/notifier"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/strutil"
)

// Manager runs the rule groups of a Config. Its methods are safe for
// concurrent use; RuleGroups and AlertingRules serve /api/v1/rules and
// /api/v1/alerts.
type Manager struct {
	cfg      Config
	logger   *slog.Logger
	rules    *rules.Manager
	notifier *notifier.Manager // nil without alertmanagers
	hooks    *webhooks         // nil without webhooks
	tsets    chan map[string][]*targetgroup.Group
	ext      labels.Labels
	wg       sync.WaitGroup
}

// New builds the manager. Rules read through q with engine and write
// recorded series and ALERTS through app; nothing runs until Start.
func New(cfg Config, engine promql.QueryEngine, q storage.Queryable, app storage.Appendable, logger *slog.Logger, reg prometheus.Registerer) (*Manager, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{cfg: cfg, logger: logger, ext: labels.FromMap(cfg.ExternalLabels)}
	ext, err := url.Parse(cfg.ExternalURL)
	if err != nil {
		return nil, fmt.Errorf("external_url: %w", err)
	}
	if len(cfg.Alertmanagers) > 0 {
		m.notifier = notifier.NewManager(&notifier.Options{
			QueueCapacity:   10_000,
			DrainOnShutdown: true,
			Registerer:      reg,
		}, model.UTF8Validation, logger.With("component", "notifier"))
		if err := m.notifier.ApplyConfig(m.notifierConfig()); err != nil {
			return nil, fmt.Errorf("alertmanagers: %w", err)
		}
	}
	if len(cfg.Webhooks) > 0 {
		m.hooks = newWebhooks(cfg.Webhooks, cfg.ExternalURL, logger.With("component", "webhook"))
	}
	m.rules = rules.NewManager(&rules.ManagerOptions{
		ExternalURL: ext,
		QueryFunc:   rules.EngineQueryFunc(engine, q),
		NotifyFunc:  m.notify,
		Context:     context.Background(),
		Appendable:  app,
		Queryable:   q,
		Logger:      logger.With("component", "rule manager"),
		Registerer:  reg,
		// Prometheus's defaults: an alert that was pending or firing
		// before a restart of up to an hour keeps its for state.
		OutageTolerance: time.Hour,
		ForGracePeriod:  10 * time.Minute,
		ResendDelay:     time.Minute,
	})
	return m, nil
}

// notifierConfig turns the Alertmanager URLs into Prometheus's alerting
// config, one static target each.
func (m *Manager) notifierConfig() *config.Config {
	c := &config.Config{}
	c.GlobalConfig.ExternalLabels = m.ext
	for _, s := range m.cfg.Alertmanagers {
		u, _ := url.Parse(s) // Validate checked it
		am := config.DefaultAlertmanagerConfig
		am.Scheme = u.Scheme
		am.PathPrefix = u.Path
		am.ServiceDiscoveryConfigs = discovery.Configs{discovery.StaticConfig{m.targetGroup(u)}}
		c.AlertingConfig.AlertmanagerConfigs = append(c.AlertingConfig.AlertmanagerConfigs, &am)
	}
	return c
}

func (m *Manager) targetGroup(u *url.URL) *targetgroup.Group {
	return &targetgroup.Group{
		Source:  u.String(),
		Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(u.Host)}},
	}
}

// Start loads the rule files and starts evaluating them and sending.
func (m *Manager) Start() error {
	files, errs := m.cfg.expand()
	if len(errs) > 0 {
		return errs[0]
	}
	if err := m.rules.Update(m.cfg.EvaluationInterval, files, m.ext, m.cfg.ExternalURL, nil); err != nil {
		return fmt.Errorf("load rules: %w", err)
	}
	if m.notifier != nil {
		// The notifier learns its Alertmanagers from target groups, as
		// from service discovery; static URLs are one group each. The
		// channel stays open until Stop: the notifier spins on a closed one.
		m.tsets = make(chan map[string][]*targetgroup.Group, 1)
		tgs := map[string][]*targetgroup.Group{}
		for i, s := range m.cfg.Alertmanagers {
			u, _ := url.Parse(s)
			tgs[fmt.Sprintf("config-%d", i)] = []*targetgroup.Group{m.targetGroup(u)}
		}
		m.tsets <- tgs
		m.wg.Add(1)
		go func() { defer m.wg.Done(); m.notifier.Run(m.tsets) }()
	}
	if m.hooks != nil {
		m.hooks.start()
	}
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.rules.Run() }()
	return nil
}

// Stop stops evaluation, then drains the notification queues.
func (m *Manager) Stop() {
	m.rules.Stop()
	if m.notifier != nil {
		m.notifier.Stop()
	}
	if m.hooks != nil {
		m.hooks.stop()
	}
	m.wg.Wait()
}

// RuleGroups returns the loaded groups.
func (m *Manager) RuleGroups() []*rules.Group { return m.rules.RuleGroups() }

// AlertingRules returns the loaded alerting rules.
func (m *Manager) AlertingRules() []*rules.AlertingRule { return m.rules.AlertingRules() }

// Alertmanagers returns the Alertmanagers alerts are sent to.
func (m *Manager) Alertmanagers() []*url.URL {
	if m.notifier == nil {
		return nil
	}
	return m.notifier.Alertmanagers()
}

// DroppedAlertmanagers returns none: every configured URL is used.
func (m *Manager) DroppedAlertmanagers() []*url.URL {
	if m.notifier == nil {
		return nil
	}
	return m.notifier.DroppedAlertmanagers()
}

// notify converts the rule manager's alerts to notifier alerts, as
// Prometheus's main does: a resolved alert ends at its resolution, an
// active one is valid until the rule manager resends it.
func (m *Manager) notify(_ context.Context, expr string, alerts ...*rules.Alert) {
	if len(alerts) == 0 {
		return
	}
	out := make([]*notifier.Alert, 0, len(alerts))
	for _, a := range alerts {
		n := &notifier.Alert{
			StartsAt:     a.FiredAt,
			Labels:       a.Labels,
			Annotations:  a.Annotations,
			GeneratorURL: m.cfg.ExternalURL + strutil.TableLinkForExpression(expr),
			EndsAt:       a.ValidUntil,
		}
		if !a.ResolvedAt.IsZero() {
			n.EndsAt = a.ResolvedAt
		}
		out = append(out, n)
	}
	if m.notifier != nil {
		m.notifier.Send(out...)
	}
	if m.hooks != nil {
		m.hooks.send(withExternal(out, m.ext))
	}
}

// withExternal returns copies of alerts with the external labels added
// where an alert lacks them, as the notifier adds them for Alertmanagers.
func withExternal(alerts []*notifier.Alert, ext labels.Labels) []*notifier.Alert {
	if ext.IsEmpty() {
		return alerts
	}
	out := make([]*notifier.Alert, len(alerts))
	for i, a := range alerts {
		b := labels.NewBuilder(a.Labels)
		ext.Range(func(l labels.Label) {
			if a.Labels.Get(l.Name) == "" {
				b.Set(l.Name, l.Value)
			}
		})
		c := *a
		c.Labels = b.Labels()
		out[i] = &c
	}
	return out
}
