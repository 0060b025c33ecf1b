package sightlineexporter

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
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

	def := load("sightline")
	require.NoError(t, confmap.Validate(def))
	require.Equal(t, component.MustNewID("sightline_storage"), def.Storage)

	empty := load("sightline/empty")
	require.NoError(t, confmap.Validate(empty), "an empty storage: is the default, not an old section")
	require.Equal(t, def, empty)

	named := load("sightline/named")
	require.NoError(t, confmap.Validate(named))
	require.Equal(t, component.MustNewIDWithName("sightline_storage", "archive"), named.Storage)

	require.ErrorContains(t, confmap.Validate(load("sightline/wrong")), `storage: "file_storage" is not a sightline_storage extension`)

	// A config from before the storage extension is told where each of
	// its store settings goes, by key.
	err = confmap.Validate(load("sightline/old"))
	require.Error(t, err)
	for _, k := range []string{"path", "retention", "storage"} {
		require.ErrorContains(t, err, k+": is a setting of the sightline_storage extension now: move it to extensions::sightline_storage::"+k)
	}
	require.ErrorContains(t, err, "the store's settings (path, retention, storage) moved to the sightline_storage extension: configure it under extensions, list it in service::extensions, and name it here with storage: sightline_storage")
}
