package sightlinestorage

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configopaque"

	"github.com/sightlinehq/sightline/internal/store/block"
)

// Config is the `sightline_storage` extension's configuration: where the
// trace and log store and the metrics TSDB keep their data, and how.
type Config struct {
	// Role is this process's part in the bucket: all-in-one (the default:
	// the bucket's only process), ingester, querier or compactor; the
	// last three share a bucket with each other (docs/scaling.md).
	Role string `mapstructure:"role"`
	// Shared configures a role that shares its bucket.
	Shared SharedConfig `mapstructure:"shared"`
	// Path holds the WAL and temporary files, and the blocks when the
	// storage backend is the filesystem.
	Path       string           `mapstructure:"path"`
	WAL        WALConfig        `mapstructure:"wal"`
	Block      BlockConfig      `mapstructure:"block"`
	Retention  RetentionConfig  `mapstructure:"retention"`
	Compaction CompactionConfig `mapstructure:"compaction"`
	Storage    StorageConfig    `mapstructure:"storage"`
	Metrics    MetricsConfig    `mapstructure:"metrics"`
	Memory     MemoryConfig     `mapstructure:"memory"`
	Limits     LimitsConfig     `mapstructure:"limits"`

	_ struct{}
}

// Roles.
const (
	RoleAllInOne  = "all-in-one"
	RoleIngester  = "ingester"
	RoleQuerier   = "querier"
	RoleCompactor = "compactor"
)

// SharedConfig is how a process of a shared bucket finds its place in it.
type SharedConfig struct {
	// InstanceID names this process among the bucket's ingesters and
	// compactors: it is in each block an ingester writes, and in the
	// compactor lease. It must be unique and, for an ingester, stable
	// across restarts (a StatefulSet pod name). Default: the hostname.
	InstanceID string `mapstructure:"instance_id"`
	// PollInterval is how often the bucket is listed for blocks that other
	// processes wrote, merged or removed.
	PollInterval time.Duration `mapstructure:"poll_interval"`
	// DeleteDelay is how long a merged or expired block stays before the
	// compactor deletes it: longer than poll_interval plus the longest
	// query, so that no query loses a block it listed.
	DeleteDelay time.Duration `mapstructure:"delete_delay"`
	// LeaseTTL is how long the compactor lease lasts without renewal: a
	// standby compactor takes over this long after the holder dies.
	LeaseTTL time.Duration `mapstructure:"lease_ttl"`
	// Handoff is where an ingester serves queriers what the bucket does
	// not hold yet: its heads and recent blocks (internal/store/headproto).
	// TLS and auth as for any Collector HTTP server.
	Handoff confighttp.ServerConfig `mapstructure:"handoff"`
	// Ingesters are the handoff URLs a querier reads recent data from
	// (http://ingester-0.ingester:3201), and IngesterClient how it
	// connects to them (TLS, auth, timeout).
	Ingesters      []string                `mapstructure:"ingesters"`
	IngesterClient confighttp.ClientConfig `mapstructure:"ingester_client"`
	// IngestersDNS finds a querier's ingesters by a DNS name, besides
	// Ingesters: every address it resolves to is an ingester, as the
	// load_balancing exporter's DNS resolver finds its backends (a
	// Kubernetes headless service).
	IngestersDNS DNSConfig `mapstructure:"ingesters_dns"`
}

// DNSConfig names ingesters by a DNS name.
type DNSConfig struct {
	Hostname string `mapstructure:"hostname"`
	// Port is the ingesters' handoff port.
	Port int `mapstructure:"port"`
	// Scheme is http or https.
	Scheme string `mapstructure:"scheme"`
	// Interval is how often the name is resolved again.
	Interval time.Duration `mapstructure:"interval"`
}

// shared reports whether the role shares its bucket.
func (c *Config) shared() bool { return c.Role != RoleAllInOne }

// MetricsConfig configures the embedded Prometheus TSDB that metrics
// pipelines write to, in <path>/metrics. The OTLP translation options are
// Prometheus's own `otlp` settings.
type MetricsConfig struct {
	Retention                         time.Duration `mapstructure:"retention"`
	PromoteResourceAttributes         []string      `mapstructure:"promote_resource_attributes"`
	PromoteAllResourceAttributes      bool          `mapstructure:"promote_all_resource_attributes"`
	IgnoreResourceAttributes          []string      `mapstructure:"ignore_resource_attributes"`
	KeepIdentifyingResourceAttributes bool          `mapstructure:"keep_identifying_resource_attributes"`
	// RemoteRead, with a URL, has queries read a Prometheus-compatible
	// TSDB by Prometheus's remote read instead of the embedded TSDB: the
	// querier of a shared bucket, whose ingesters remote-write there
	// (docs/scaling.md).
	RemoteRead RemoteReadConfig `mapstructure:"remote_read"`
	// MaxSeries bounds the series in the TSDB's head, each about 0.9 KiB
	// of memory: a sample that would create one more is refused,
	// permanently (resending cannot help until series go stale), and the
	// rest of its request is stored. 0 sizes it from the memory budget, a
	// series per KiB (131,072 with the default 128 MiB); -1 is no limit.
	MaxSeries int64 `mapstructure:"max_series"`
}

// RemoteReadConfig is a Prometheus remote-read endpoint.
type RemoteReadConfig struct {
	// URL of the endpoint: http://prometheus:9090/api/v1/read.
	URL     string        `mapstructure:"url"`
	Timeout time.Duration `mapstructure:"timeout"`
	// Headers are sent with every request (an Authorization header, a
	// tenant header); their values are never logged.
	Headers map[string]configopaque.String `mapstructure:"headers"`
}

// MemoryConfig is the store's memory budget: the heap it may hold for data
// not yet written to blocks (the head and the heads waiting for the block
// writer). Past it, ingest is refused with OTLP's retryable codes until
// blocks are written. Set at most one of the two, as with memory_limiter;
// with neither, the budget is 25% of the container's memory limit when
// the process runs under one (cgroup v1 or v2), and 128 MiB otherwise,
// which keeps the all-in-one under 512 MiB RSS (docs/configuration.md).
type MemoryConfig struct {
	// LimitMiB is the budget in MiB.
	LimitMiB uint32 `mapstructure:"limit_mib"`
	// LimitPercentage is the budget as a percentage of the container's
	// memory limit, or of the host's memory when there is none.
	LimitPercentage uint32 `mapstructure:"limit_percentage"`
}

// LimitsConfig bounds attributes on the way in. Past a limit data is
// truncated, not refused, as OTLP's SDK limits and Tempo's
// max_attribute_bytes do (AttributeLimits). 0 disables a limit.
type LimitsConfig struct {
	// MaxAttributeBytes truncates longer attribute keys and string or
	// bytes values, anywhere in a resource, scope, span, event, link or
	// log record (Tempo's max_attribute_bytes, default 2048 there).
	MaxAttributeBytes int `mapstructure:"max_attribute_bytes"`
	// MaxAttributes keeps the first this many attributes of each
	// resource, scope, span, event, link and log record, and entries of
	// each array and map value; the rest are counted in
	// dropped_attributes_count.
	MaxAttributes int `mapstructure:"max_attributes"`
}

// WALConfig sets the durability policy.
type WALConfig struct {
	// Sync is "always" (fsync before acknowledging, shared between
	// concurrent writers) or "interval" (acknowledge after write(2), fsync
	// every SyncInterval).
	Sync         string        `mapstructure:"sync"`
	SyncInterval time.Duration `mapstructure:"sync_interval"`
	// SegmentSize in bytes.
	SegmentSize int64 `mapstructure:"segment_size"`
}

// BlockConfig sets when the head is cut into a block.
type BlockConfig struct {
	MaxDuration time.Duration `mapstructure:"max_duration"`
	// MaxSize is the OTLP bytes in the head that trigger a cut.
	MaxSize       int64 `mapstructure:"max_size"`
	RowGroupSpans int   `mapstructure:"row_group_rows"`
	// Format is the block format version written; 0 is the newest. An
	// older one keeps a shared bucket readable by processes of an older
	// build while a rolling upgrade replaces them.
	Format int `mapstructure:"format"`
}

// RetentionConfig bounds what is kept. Zero disables a bound.
type RetentionConfig struct {
	MaxAge  time.Duration `mapstructure:"max_age"`
	MaxSize int64         `mapstructure:"max_size"`
}

// CompactionConfig tunes compaction.
type CompactionConfig struct {
	Interval  time.Duration `mapstructure:"interval"`
	MinBlocks int           `mapstructure:"min_blocks"`
	MaxSize   int64         `mapstructure:"max_size"`
	// Level0Blocks is how many level-0 blocks (one per cut head) one merge
	// takes, 64 by default; 0 is min_blocks. The upper levels merge
	// min_blocks at a time.
	Level0Blocks int `mapstructure:"level0_blocks"`
	// StallBlocks is the count of level-0 blocks of one signal, waiting to
	// be merged, at which its ingest is refused retryably until compaction
	// catches up. 0 is 8 times min_blocks or twice level0_blocks, whichever
	// is more; -1 never stalls.
	StallBlocks int `mapstructure:"stall_blocks"`
}

// StorageConfig picks where blocks live.
type StorageConfig struct {
	// BucketURL names the bucket in one setting instead of backend and
	// its section: file:///path, s3://bucket/prefix?region=..., gs://...,
	// azblob://... (see bucketurl.go). The builtin configs set it from
	// $SIGHTLINE_BUCKET_URL.
	BucketURL string `mapstructure:"bucket_url"`
	// Backend is filesystem (default), s3, gcs or azure.
	Backend    string           `mapstructure:"backend"`
	Filesystem FilesystemConfig `mapstructure:"filesystem"`
	S3         S3Config         `mapstructure:"s3"`
	GCS        GCSConfig        `mapstructure:"gcs"`
	Azure      AzureConfig      `mapstructure:"azure"`
}

// FilesystemConfig: blocks under Path (default: <path>/blocks).
type FilesystemConfig struct {
	Path string `mapstructure:"path"`
}

// S3Config selects an S3 or S3-compatible bucket.
type S3Config struct {
	Bucket         string `mapstructure:"bucket"`
	Prefix         string `mapstructure:"prefix"`
	Region         string `mapstructure:"region"`
	Endpoint       string `mapstructure:"endpoint"`
	ForcePathStyle bool   `mapstructure:"force_path_style"`
	Insecure       bool   `mapstructure:"insecure"`
}

// GCSConfig selects a Google Cloud Storage bucket.
type GCSConfig struct {
	Bucket string `mapstructure:"bucket"`
	Prefix string `mapstructure:"prefix"`
}

// AzureConfig selects an Azure Blob Storage container.
type AzureConfig struct {
	StorageAccount string `mapstructure:"storage_account"`
	Container      string `mapstructure:"container"`
	Prefix         string `mapstructure:"prefix"`
}

func createDefaultConfig() *Config {
	handoff := confighttp.NewDefaultServerConfig()
	handoff.NetAddr.Endpoint = "localhost:3201"
	client := confighttp.NewDefaultClientConfig()
	client.Timeout = time.Minute
	return &Config{
		Role: RoleAllInOne,
		Shared: SharedConfig{PollInterval: 30 * time.Second, DeleteDelay: 15 * time.Minute, LeaseTTL: time.Minute,
			Handoff: handoff, IngesterClient: client,
			IngestersDNS: DNSConfig{Port: 3201, Scheme: "http", Interval: 5 * time.Second}},
		Path: "./sightline-data",
		WAL:  WALConfig{Sync: "always", SyncInterval: time.Second, SegmentSize: 64 << 20},
		// Heads are cut at least every 30 s, so data reaches blocks soon
		// and WAL replay after a crash stays short.
		Block:     BlockConfig{MaxDuration: 30 * time.Second, MaxSize: 64 << 20, RowGroupSpans: 100_000},
		Retention: RetentionConfig{MaxAge: 7 * 24 * time.Hour},
		// Sixty-four level-0 blocks (cut heads) a merge, four above: at 20k
		// spans/s each span is merged once before it rests in a block of
		// half max_size, not twice; a flush's 8 KiB pages and merges a
		// column at a time keep what a merge holds for each input small.
		Compaction: CompactionConfig{Interval: time.Minute, MinBlocks: 4, Level0Blocks: 64, MaxSize: 1 << 30},
		Storage:    StorageConfig{Backend: "filesystem"},
		// Prometheus's default retention.
		Metrics: MetricsConfig{Retention: 15 * 24 * time.Hour, RemoteRead: RemoteReadConfig{Timeout: time.Minute}},
		// A stack trace fits in 16 KiB (Tempo truncates at 2 KiB); the
		// SDKs keep 128 attributes by default. A span with 100,000
		// attributes took 22-30 CPU seconds to fetch.
		Limits: LimitsConfig{MaxAttributeBytes: 16 << 10, MaxAttributes: 1024},
	}
}

// Validate reports every problem, each with its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	if c.Path == "" {
		bad("path", "must not be empty")
	}
	switch c.Role {
	case RoleAllInOne, RoleIngester, RoleQuerier, RoleCompactor:
	default:
		bad("role", "%q is not one of all-in-one, ingester, querier, compactor", c.Role)
	}
	if c.Shared.PollInterval <= 0 {
		bad("shared::poll_interval", "must be positive")
	}
	if c.Shared.LeaseTTL < 4*time.Second {
		bad("shared::lease_ttl", "%v is below the 4s minimum: the holder renews every quarter of it", c.Shared.LeaseTTL)
	}
	for i, u := range c.Shared.Ingesters {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			bad(fmt.Sprintf("shared::ingesters::%d", i), "%q is not an http:// or https:// URL of an ingester's handoff endpoint", u)
		}
	}
	if len(c.Shared.Ingesters) > 0 && c.Role != RoleQuerier {
		bad("shared::ingesters", "only a querier reads ingesters; this is a %s", c.Role)
	}
	if d := c.Shared.IngestersDNS; d.Hostname != "" {
		if c.Role != RoleQuerier {
			bad("shared::ingesters_dns::hostname", "only a querier reads ingesters; this is a %s", c.Role)
		}
		if d.Port < 1 || d.Port > 65535 {
			bad("shared::ingesters_dns::port", "%d is not a port", d.Port)
		}
		if d.Scheme != "http" && d.Scheme != "https" {
			bad("shared::ingesters_dns::scheme", "%q is not one of http, https", d.Scheme)
		}
		if d.Interval <= 0 {
			bad("shared::ingesters_dns::interval", "must be positive")
		}
	}
	if c.Shared.DeleteDelay < 2*c.Shared.PollInterval {
		bad("shared::delete_delay", "%v is under twice poll_interval (%v): a querier could lose a block it listed before it polls again", c.Shared.DeleteDelay, c.Shared.PollInterval)
	}
	if c.Metrics.Retention <= 0 {
		bad("metrics::retention", "must be positive")
	}
	if u := c.Metrics.RemoteRead.URL; u != "" {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			bad("metrics::remote_read::url", "%q is not an http:// or https:// URL of a remote-read endpoint", u)
		}
	}
	if c.Metrics.RemoteRead.Timeout <= 0 {
		bad("metrics::remote_read::timeout", "must be positive")
	}
	if c.Metrics.MaxSeries < -1 {
		bad("metrics::max_series", "%d is not a count: set a positive limit, 0 to size it from the memory budget, or -1 for none", c.Metrics.MaxSeries)
	}
	if c.Metrics.PromoteAllResourceAttributes && len(c.Metrics.PromoteResourceAttributes) > 0 {
		bad("metrics::promote_resource_attributes", "cannot be set with promote_all_resource_attributes")
	}
	switch c.WAL.Sync {
	case "always":
	case "interval":
		if c.WAL.SyncInterval <= 0 {
			bad("wal::sync_interval", "must be positive with sync: interval")
		}
	default:
		bad("wal::sync", "%q is not one of always, interval", c.WAL.Sync)
	}
	if c.Memory.LimitMiB > 0 && c.Memory.LimitPercentage > 0 {
		bad("memory::limit_percentage", "cannot be set with memory::limit_mib")
	}
	if c.Memory.LimitPercentage > 100 {
		bad("memory::limit_percentage", "%d is over 100", c.Memory.LimitPercentage)
	}
	if c.Memory.LimitMiB > 0 && c.Memory.LimitMiB < 16 {
		bad("memory::limit_mib", "%d is below the 16 MiB minimum", c.Memory.LimitMiB)
	}
	if c.Limits.MaxAttributeBytes < 0 {
		bad("limits::max_attribute_bytes", "must not be negative")
	} else if c.Limits.MaxAttributeBytes > 0 && c.Limits.MaxAttributeBytes < 64 {
		bad("limits::max_attribute_bytes", "%d is below the 64 byte minimum", c.Limits.MaxAttributeBytes)
	}
	if c.Limits.MaxAttributes < 0 {
		bad("limits::max_attributes", "must not be negative")
	}
	if c.WAL.SegmentSize < 1<<20 {
		bad("wal::segment_size", "%d is below the 1 MiB minimum", c.WAL.SegmentSize)
	}
	if c.Block.MaxDuration <= 0 {
		bad("block::max_duration", "must be positive")
	}
	if c.Block.MaxSize < 1<<20 {
		bad("block::max_size", "%d is below the 1 MiB minimum", c.Block.MaxSize)
	}
	if c.Block.RowGroupSpans < 1000 {
		bad("block::row_group_rows", "%d is below the minimum of 1000", c.Block.RowGroupSpans)
	}
	if c.Block.Format != 0 && (c.Block.Format < block.MinFormatVersion || c.Block.Format > block.FormatVersion) {
		bad("block::format", "%d is not a format this build writes (%d to %d)", c.Block.Format, block.MinFormatVersion, block.FormatVersion)
	}
	if c.Retention.MaxAge < 0 {
		bad("retention::max_age", "must not be negative")
	}
	if c.Retention.MaxSize < 0 {
		bad("retention::max_size", "must not be negative")
	}
	if c.Compaction.Interval <= 0 {
		bad("compaction::interval", "must be positive")
	}
	if c.Compaction.MinBlocks < 2 {
		bad("compaction::min_blocks", "%d is below 2", c.Compaction.MinBlocks)
	}
	level0 := c.Compaction.Level0Blocks
	if level0 < 2 {
		level0 = c.Compaction.MinBlocks
	}
	if n := c.Compaction.Level0Blocks; n != 0 && n < 2 {
		bad("compaction::level0_blocks", "%d is neither 0 nor at least 2", n)
	}
	if n := c.Compaction.StallBlocks; n < -1 || (n > 0 && n < level0) {
		bad("compaction::stall_blocks", "%d is neither -1, 0 nor at least level0_blocks (%d): level 0 would stall before it could be merged", n, level0)
	}
	// A bucket URL stands for backend and its section; whatever it
	// resolves to is checked as if written out.
	sc, err := c.Storage.resolved()
	if err != nil {
		bad("storage::bucket_url", "%v", err)
		return errors.Join(errs...)
	}
	field := func(f string) string {
		if c.Storage.BucketURL != "" {
			return "storage::bucket_url"
		}
		return f
	}
	switch sc.Backend {
	case "filesystem":
	case "s3":
		if sc.S3.Bucket == "" {
			bad(field("storage::s3::bucket"), "a bucket is required with backend s3")
		}
	case "gcs":
		if sc.GCS.Bucket == "" {
			bad(field("storage::gcs::bucket"), "a bucket is required with backend gcs")
		}
	case "azure":
		if sc.Azure.Container == "" {
			bad(field("storage::azure::container"), "a container is required with backend azure")
		}
		if sc.Azure.StorageAccount == "" {
			bad(field("storage::azure::storage_account"), "a storage account is required with backend azure (azblob://container?storage_account=name)")
		}
	default:
		bad("storage::backend", "%q is not one of filesystem, s3, gcs, azure", sc.Backend)
	}
	return errors.Join(errs...)
}
