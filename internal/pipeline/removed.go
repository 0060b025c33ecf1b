package pipeline

import (
	"fmt"
	"strings"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/confmap"
)

type removedKey struct {
	kind component.Kind
	typ  string
}

// removedComponent is an upstream component that configs in the wild still
// name but that Sightline does not ship. Validation explains why and what to
// use instead, instead of a bare "unknown type".
type removedComponent struct {
	why     string
	instead string
	// legacyConfig, when set, returns the component's last upstream config
	// struct, so keys it never had are reported too.
	legacyConfig func() any
}

func (r removedComponent) check(path string, conf *confmap.Conf) []error {
	errs := []error{fmt.Errorf("%s: %s; %s", path, r.why, r.instead)}
	if r.legacyConfig != nil {
		cfg := r.legacyConfig()
		if err := conf.Unmarshal(cfg); err != nil {
			for _, e := range splitErrors(path, err) {
				errs = append(errs, fmt.Errorf("%w (the component never had these keys)", e))
			}
		}
	}
	return errs
}

// lokiExporterConfig is contrib's lokiexporter Config as of its last
// release, v0.130.0: HTTP client settings, queue, retry and labels.
type lokiExporterConfig struct {
	// Without ClientConfig's Unmarshal (v0.161+), which decodes its own
	// keys and ignores the rest, so that unknown keys are reported.
	plainClientConfig    `mapstructure:",squash"`
	QueueSettings        map[string]any  `mapstructure:"sending_queue"`
	BackOffConfig        map[string]any  `mapstructure:"retry_on_failure"`
	DefaultLabelsEnabled map[string]bool `mapstructure:"default_labels_enabled"`
}

type plainClientConfig confighttp.ClientConfig

var removedComponents = map[removedKey]removedComponent{
	{component.KindExporter, "loki"}: {
		why: "the loki exporter was removed from the OpenTelemetry Collector in contrib v0.131.0 (deprecated since July 2024), so Sightline does not ship it",
		instead: "send logs to Loki 3.0+'s native OTLP endpoint with the otlp_http exporter (endpoint: http://<loki>:3100/otlp), " +
			"or keep them in Sightline's own log store",
		legacyConfig: func() any { return &lokiExporterConfig{} },
	},
	{component.KindExporter, "logging"}: {
		why:     "the logging exporter was removed from the OpenTelemetry Collector in v0.111.0",
		instead: "use the debug exporter (verbosity: basic, normal or detailed)",
	},
	{component.KindExporter, "jaeger"}: {
		why:     "the jaeger exporter was removed from the OpenTelemetry Collector in v0.85.0; Jaeger accepts OTLP natively",
		instead: "use the otlp_grpc exporter with Jaeger's OTLP port (endpoint: <jaeger>:4317)",
	},
}

// hints add what to do for upstream validation messages that only say
// what is wrong. Keyed by a substring of the upstream message.
var hints = []struct{ match, hint string }{
	{"send_batch_max_size must be greater or equal to send_batch_size",
		"send_batch_size defaults to 8192; set send_batch_size to at most send_batch_max_size, e.g. both to 2000"},
}

func hintFor(msg string) string {
	for _, h := range hints {
		if strings.Contains(msg, h.match) {
			return h.hint
		}
	}
	return ""
}
