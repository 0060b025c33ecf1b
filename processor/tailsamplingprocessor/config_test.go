package tailsamplingprocessor

import (
	"path/filepath"
	"testing"
	"time"

	upstream "github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/processor/processortest"
)

func loadConfig(t *testing.T, name string) *Config {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	sub, err := cm.Sub(component.MustNewIDWithName("tail_sampling", name).String())
	require.NoError(t, err)
	cfg := createDefaultConfig().(*Config)
	require.NoError(t, sub.Unmarshal(cfg))
	return cfg
}

func TestConfig(t *testing.T) {
	def := loadConfig(t, "")
	require.NoError(t, confmap.Validate(def))
	require.Equal(t, 30*time.Second, def.DecisionWait)
	require.Equal(t, uint64(50000), def.NumTraces)
	require.Len(t, def.PolicyCfgs, 1)
	require.Equal(t, upstream.StatusCode, def.PolicyCfgs[0].Type)
	require.Equal(t, createDefaultConfig().(*Config).Buffer, def.Buffer, "buffer defaults")

	custom := loadConfig(t, "custom")
	require.NoError(t, confmap.Validate(custom))
	require.Equal(t, 50*time.Second, custom.DecisionWait)
	require.Equal(t, 5*time.Second, custom.DecisionWaitAfterRootReceived)
	require.Equal(t, uint64(4000), custom.ExpectedNewTracesPerSec)
	require.True(t, custom.SampleOnFirstMatch)
	require.Equal(t, 400000, custom.DecisionCache.NonSampledCacheSize)
	require.Equal(t, BufferConfig{Path: "/var/lib/sightline/tail", MaxSize: 1 << 30, Sync: "always", SyncInterval: time.Second, SegmentSize: 8 << 20}, custom.Buffer)

	err := confmap.Validate(loadConfig(t, "bad"))
	require.Error(t, err)
	for _, want := range []string{
		"sampling_strategy: span-ingest decides as spans arrive",
		"decision_wait: must be positive",
		"num_traces: must be positive",
		"buffer::max_size: 1000 is under four segments",
		`buffer::sync: "sometimes" is not one of always, interval`,
	} {
		require.ErrorContains(t, err, want)
	}

	// Upstream's own checks still run.
	odd := createDefaultConfig().(*Config)
	odd.SamplingStrategy = "bogus"
	require.ErrorContains(t, confmap.Validate(odd), `invalid sampling_strategy "bogus"`)
}

// The default buffer directory is per processor name under
// $SIGHTLINE_DATA, and one directory takes one instance: a processor in
// two pipelines is told to give each a path.
func TestBufferPathIsPerInstance(t *testing.T) {
	data := t.TempDir()
	t.Setenv("SIGHTLINE_DATA", data)
	cfg := createDefaultConfig().(*Config)
	set := processortest.NewNopSettings(Type)
	set.ID = component.MustNewIDWithName("tail_sampling", "edge")
	a, err := createTraces(t.Context(), set, cfg, consumertest.NewNop())
	require.NoError(t, err)
	require.Equal(t, filepath.Join(data, "tail_sampling", "edge"), a.(*tailProcessor).dir)
	host := componenttest.NewNopHost()
	require.NoError(t, a.Start(t.Context(), host))
	defer func() { require.NoError(t, a.Shutdown(t.Context())) }()

	b, err := createTraces(t.Context(), set, cfg, consumertest.NewNop())
	require.NoError(t, err)
	err = b.Start(t.Context(), host)
	require.ErrorContains(t, err, "is in use by another process or processor instance")
}
