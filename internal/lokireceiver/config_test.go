package lokireceiver

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
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
	def := load("loki")
	require.NoError(t, confmap.Validate(def))
	require.Equal(t, "localhost:3100", def.Protocols.HTTP.NetAddr.Endpoint)
	require.False(t, def.UseIncomingTimestamp)

	custom := load("loki/custom")
	require.NoError(t, confmap.Validate(custom))
	require.Equal(t, "0.0.0.0:3101", custom.Protocols.HTTP.NetAddr.Endpoint)
	require.True(t, custom.UseIncomingTimestamp)
	require.Equal(t, Limits{MaxLabelNamesPerSeries: 30, MaxStructuredMetadataEntries: 256}, custom.limits())
	require.Equal(t, DefaultLimits, def.limits())

	require.ErrorContains(t, confmap.Validate(load("loki/bad")), "protocols::http::endpoint: must be set")
	require.ErrorContains(t, confmap.Validate(load("loki/bad")), "max_label_names_per_series: must be at least 1")
}
