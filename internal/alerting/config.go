package alerting

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// Config is the rules section of the query API: Prometheus rule files,
// evaluated in-process, and where firing alerts go.
type Config struct {
	// Files are paths or globs of rule files in Prometheus's format
	// (groups of recording and alerting rules). Relative paths are taken
	// from the working directory.
	Files []string `mapstructure:"files"`
	// EvaluationInterval is the default interval of a group that sets none.
	EvaluationInterval time.Duration `mapstructure:"evaluation_interval"`
	// Alertmanagers are base URLs of Alertmanagers (http://host:9093);
	// alerts are posted to <url>/api/v2/alerts by Prometheus's notifier,
	// with its queueing, batching and resends.
	Alertmanagers []string `mapstructure:"alertmanagers"`
	// Webhooks receive every alert notification as the JSON body that
	// Alertmanager's webhook_config sends (version "4").
	Webhooks []string `mapstructure:"webhooks"`
	// ExternalURL prefixes the generatorURL of alerts.
	ExternalURL string `mapstructure:"external_url"`
	// ExternalLabels are added to every alert sent, as Prometheus's
	// external labels are; recorded series are stored without them.
	ExternalLabels map[string]string `mapstructure:"external_labels"`
}

// Enabled reports whether any rule files are configured.
func (c *Config) Enabled() bool { return len(c.Files) > 0 }

// Problems parses every rule file, so a broken rule is reported at
// startup with its file, line and rule, as promtool check rules would.
// It returns every problem, each with its field path inside the section;
// the embedding config prefixes its own. (It is not named Validate so
// that confmap does not report the section a second time, with its path
// on the first problem only.)
func (c *Config) Problems() []error {
	var errs []error
	if c.EvaluationInterval < 0 {
		errs = append(errs, errors.New("evaluation_interval: must not be negative"))
	}
	if c.Enabled() && c.EvaluationInterval == 0 {
		errs = append(errs, errors.New("evaluation_interval: must be set when files are"))
	}
	files, globErrs := c.expand()
	errs = append(errs, globErrs...)
	p := parser.NewParser(parser.Options{})
	for _, f := range files {
		_, ferrs := rulefmt.ParseFile(f, false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
		for _, e := range ferrs {
			errs = append(errs, fmt.Errorf("files: %w", e))
		}
	}
	for i, u := range c.Alertmanagers {
		if err := checkURL(u); err != nil {
			errs = append(errs, fmt.Errorf("alertmanagers[%d]: %w", i, err))
		}
	}
	for i, u := range c.Webhooks {
		if err := checkURL(u); err != nil {
			errs = append(errs, fmt.Errorf("webhooks[%d]: %w", i, err))
		}
	}
	if c.ExternalURL != "" {
		if err := checkURL(c.ExternalURL); err != nil {
			errs = append(errs, fmt.Errorf("external_url: %w", err))
		}
	}
	for k := range c.ExternalLabels {
		if !model.UTF8Validation.IsValidLabelName(k) {
			errs = append(errs, fmt.Errorf("external_labels::%s: invalid label name", k))
		}
	}
	return errs
}

// expand resolves the globs of Files. A pattern that matches nothing is
// an error: a typo would otherwise silently load no rules.
func (c *Config) expand() ([]string, []error) {
	var files []string
	var errs []error
	for i, pat := range c.Files {
		m, err := filepath.Glob(pat)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("files[%d]: %q: %w", i, pat, err))
		case len(m) == 0:
			errs = append(errs, fmt.Errorf("files[%d]: %q matches no file", i, pat))
		}
		files = append(files, m...)
	}
	return files, errs
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}
