package api

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/sightlinehq/sightline/internal/alerting"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	load := func(name string) *Config {
		sub, err := cm.Sub(name)
		require.NoError(t, err)
		cfg := createDefaultConfig().(*Config)
		require.NoError(t, sub.Unmarshal(cfg))
		return cfg
	}

	def := load("sightline_query")
	require.NoError(t, confmap.Validate(def))
	require.Equal(t, createDefaultConfig(), def)
	require.Equal(t, "localhost:3200", def.NetAddr.Endpoint)

	custom := load("sightline_query/custom")
	require.NoError(t, confmap.Validate(custom))
	want := createDefaultConfig().(*Config)
	want.NetAddr.Endpoint = "0.0.0.0:3201"
	want.Storage = component.MustNewIDWithName("sightline_storage", "archive")
	want.Limits = Limits{MaxTimeRange: 24 * time.Hour, MaxResults: 100, MaxSeries: 50, Timeout: 5 * time.Second, MaxBytesScanned: 1 << 30, MaxInspectedTraces: 1000, MaxSpansPerTrace: 20000, MaxSpansPerSpanset: 10, MaxSamples: 1_000_000, MaxQueryBytes: 4096, MaxQueryDepth: 32, MetricsCacheBytes: 1 << 20}
	want.Tenancy = Tenancy{Enabled: true, Header: "X-Tenant", ResourceAttribute: "org.id"}
	want.Rules = alerting.Config{
		Files: []string{"../../examples/rules/*.yml"}, EvaluationInterval: 30 * time.Second,
		Alertmanagers: []string{"http://alertmanager:9093"}, Webhooks: []string{"https://hooks.example/alerts"},
		ExternalURL: "http://sightline:3200", ExternalLabels: map[string]string{"cluster": "eu-1"},
	}
	require.Equal(t, want, custom)

	err = confmap.Validate(load("sightline_query/bad"))
	require.Error(t, err)
	for _, msg := range []string{
		"endpoint: must be set",
		`storage: "otlp" is not a sightline_storage extension`,
		"limits::max_time_range: must not be negative",
		"limits::max_results: must not be negative",
		"limits::timeout: must not be negative",
		"limits::metrics_cache_bytes: must not be negative",
		"limits::max_spans_per_trace: must not be negative",
		"limits::max_spans_per_spanset: must not be negative",
		"tenancy::header: must be set when tenancy is enabled",
		"tenancy::resource_attribute: must be set when tenancy is enabled",
		`rules::files[0]: "testdata/nowhere/*.yml" matches no file`,
		`rules::alertmanagers[0]: "alertmanager:9093" is not an http(s) URL`,
	} {
		require.ErrorContains(t, err, msg)
	}
}
