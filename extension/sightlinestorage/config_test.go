package sightlinestorage

import (
	"path/filepath"
	"testing"
	"time"

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
		cfg := createDefaultConfig()
		require.NoError(t, sub.Unmarshal(cfg))
		return cfg
	}

	def := load("sightline_storage")
	require.NoError(t, confmap.Validate(def))
	require.Equal(t, createDefaultConfig(), def)
	require.Equal(t, LimitsConfig{MaxAttributeBytes: 16 << 10, MaxAttributes: 1024}, def.Limits, "limits are on by default")

	byURL := load("sightline_storage/bucket_url")
	require.NoError(t, confmap.Validate(byURL))
	sc, err := byURL.Storage.resolved()
	require.NoError(t, err)
	require.Equal(t, StorageConfig{Backend: "s3", S3: S3Config{Bucket: "telemetry", Prefix: "sightline", Region: "eu-west-1", Endpoint: "minio:9000", ForcePathStyle: true}}, sc)

	ingester := load("sightline_storage/ingester")
	require.NoError(t, confmap.Validate(ingester))
	require.Equal(t, RoleIngester, ingester.Role)
	require.Equal(t, "ingester-0", ingester.Shared.InstanceID)
	require.Equal(t, [3]time.Duration{15 * time.Second, 30 * time.Minute, time.Minute},
		[3]time.Duration{ingester.Shared.PollInterval, ingester.Shared.DeleteDelay, ingester.Shared.LeaseTTL})
	require.Equal(t, "0.0.0.0:3201", ingester.Shared.Handoff.NetAddr.Endpoint)

	querier := load("sightline_storage/querier")
	require.NoError(t, confmap.Validate(querier))
	require.Equal(t, []string{"http://ingester-0.ingester:3201", "https://ingester-1.ingester:3201"}, querier.Shared.Ingesters)
	require.Equal(t, DNSConfig{Hostname: "sightline-ingester-headless.observability.svc.cluster.local", Port: 3201, Scheme: "http", Interval: 5 * time.Second},
		querier.Shared.IngestersDNS)

	custom := load("sightline_storage/custom")
	require.NoError(t, confmap.Validate(custom))
	want := createDefaultConfig()
	want.Path = "/var/lib/sightline"
	want.WAL = WALConfig{Sync: "interval", SyncInterval: 200 * time.Millisecond, SegmentSize: 128 << 20}
	want.Block = BlockConfig{MaxDuration: 10 * time.Minute, MaxSize: 512 << 20, RowGroupSpans: 50000, Format: 1}
	want.Retention = RetentionConfig{MaxAge: 72 * time.Hour, MaxSize: 100 << 30}
	want.Compaction = CompactionConfig{Interval: 30 * time.Second, MinBlocks: 8, Level0Blocks: 16, MaxSize: 2 << 30, StallBlocks: 48}
	want.Storage = StorageConfig{Backend: "s3", S3: S3Config{Bucket: "telemetry", Prefix: "sightline", Region: "eu-west-1"}}
	want.Metrics = MetricsConfig{Retention: 720 * time.Hour, PromoteResourceAttributes: []string{"k8s.namespace.name"}, MaxSeries: 500_000,
		RemoteRead: RemoteReadConfig{Timeout: time.Minute}}
	want.Memory = MemoryConfig{LimitMiB: 300}
	want.Limits = LimitsConfig{MaxAttributeBytes: 2048, MaxAttributes: 128}
	require.Equal(t, want, custom)

	err = confmap.Validate(load("sightline_storage/bad"))
	require.Error(t, err)
	for _, msg := range []string{
		"path: must not be empty",
		`role: "gateway" is not one of all-in-one, ingester, querier, compactor`,
		"shared::lease_ttl: 1s is below the 4s minimum",
		"shared::delete_delay: 1m30s is under twice poll_interval (1m0s)",
		`shared::ingesters::0: "ingester-0:3201" is not an http:// or https:// URL`,
		"shared::ingesters: only a querier reads ingesters; this is a gateway",
		"shared::ingesters_dns::hostname: only a querier reads ingesters; this is a gateway",
		"shared::ingesters_dns::port: 0 is not a port",
		`shared::ingesters_dns::scheme: "ftp" is not one of http, https`,
		"shared::ingesters_dns::interval: must be positive",
		`wal::sync: "sometimes" is not one of always, interval`,
		"block::row_group_rows: 10 is below the minimum of 1000",
		"block::format: 4 is not a format this build writes (1 to 3)",
		"compaction::level0_blocks: 1 is neither 0 nor at least 2",
		"compaction::stall_blocks: 3 is neither -1, 0 nor at least level0_blocks (4)",
		"storage::azure::container: a container is required with backend azure",
		"storage::azure::storage_account: a storage account is required with backend azure",
		"metrics::retention: must be positive",
		"metrics::max_series: -2 is not a count",
		"memory::limit_percentage: cannot be set with memory::limit_mib",
		"memory::limit_percentage: 120 is over 100",
		"limits::max_attribute_bytes: 10 is below the 64 byte minimum",
		"limits::max_attributes: must not be negative",
	} {
		require.ErrorContains(t, err, msg)
	}
}

func TestMemoryBudgetResolution(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		name        string
		cfg         MemoryConfig
		limit, host uint64
		want        int64
	}{
		{"default on a host", MemoryConfig{}, 0, 24 * gib, defaultBudget},
		{"default in a container", MemoryConfig{}, 2 * gib, 24 * gib, gib / 2},
		{"absolute wins", MemoryConfig{LimitMiB: 300}, 2 * gib, 24 * gib, 300 << 20},
		{"percentage of the container", MemoryConfig{LimitPercentage: 10}, 2 * gib, 24 * gib, 2 * gib * 10 / 100},
		{"percentage of the host", MemoryConfig{LimitPercentage: 10}, 0, 24 * gib, 24 * gib * 10 / 100},
	} {
		require.Equal(t, c.want, c.cfg.budget(c.limit, c.host), c.name)
	}
}

func TestMaxSeriesResolution(t *testing.T) {
	require.EqualValues(t, 131_072, MetricsConfig{}.maxSeries(defaultBudget), "a series per KiB of the default budget")
	require.EqualValues(t, 512<<10, MetricsConfig{}.maxSeries(512<<20), "a series per KiB of a container's budget")
	require.EqualValues(t, 500_000, MetricsConfig{MaxSeries: 500_000}.maxSeries(defaultBudget), "set explicitly")
	require.Zero(t, MetricsConfig{MaxSeries: -1}.maxSeries(defaultBudget), "-1 is no limit")
}
