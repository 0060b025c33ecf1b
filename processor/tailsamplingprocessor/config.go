package tailsamplingprocessor

import (
	"errors"
	"fmt"
	"time"

	upstream "github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor"
)

// Config is upstream's tail_sampling configuration, read unchanged, plus
// where the pending spans wait. Every upstream key keeps its meaning; the
// differences are in docs/components.md: num_traces bounds the traces
// waiting and past it the oldest is decided early instead of dropped, and
// sampling_strategy span-ingest is refused (it decides on arrival, so
// there is nothing to hold on disk).
type Config struct {
	upstream.Config `mapstructure:",squash"`

	// Buffer is the on-disk log that holds spans until their decision.
	Buffer BufferConfig `mapstructure:"buffer"`
}

// BufferConfig places and bounds the buffer.
type BufferConfig struct {
	// Path is the buffer's directory, one per processor instance. Empty
	// is $SIGHTLINE_DATA/tail_sampling/<name> (./sightline-data when the
	// variable is unset), so that the container image's /data volume holds
	// it on a read-only root.
	Path string `mapstructure:"path"`
	// MaxSize bounds the buffer's files in bytes. Past it the traces with
	// spans in the oldest file are decided at once, oldest first, so the
	// file can go; past 1.5 times it ingest is refused retryably, as it
	// is while twice num_traces traces wait.
	MaxSize int64 `mapstructure:"max_size"`
	// Sync is "interval" (acknowledge after write(2), fsync every
	// SyncInterval: a process crash loses nothing, a machine crash up to
	// an interval) or "always" (fsync before acknowledging).
	Sync         string        `mapstructure:"sync"`
	SyncInterval time.Duration `mapstructure:"sync_interval"`
	// SegmentSize is the size of one buffer file. A file is deleted once
	// every trace with spans in it is decided, so smaller files give disk
	// back sooner.
	SegmentSize int64 `mapstructure:"segment_size"`

	_ struct{}
}

// Validate reports every problem of the buffer's settings with its key.
// Upstream's own Config.Validate checks the rest; the Collector calls both.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	if c.SamplingStrategy == "span-ingest" {
		bad("sampling_strategy", "span-ingest decides as spans arrive and keeps nothing to wait on disk; use the upstream processor (type tail_sampling_upstream) for it")
	}
	if c.DecisionWait <= 0 {
		bad("decision_wait", "must be positive")
	}
	if c.NumTraces == 0 {
		bad("num_traces", "must be positive")
	}
	if c.Buffer.MaxSize < 0 {
		bad("buffer::max_size", "must not be negative")
	}
	if c.Buffer.SegmentSize <= 0 {
		bad("buffer::segment_size", "must be positive")
	} else if c.Buffer.MaxSize > 0 && c.Buffer.MaxSize < 4*c.Buffer.SegmentSize {
		bad("buffer::max_size", "%d is under four segments (buffer::segment_size %d): at least the file being written and the ones waiting on decisions must fit", c.Buffer.MaxSize, c.Buffer.SegmentSize)
	}
	switch c.Buffer.Sync {
	case "always":
	case "interval":
		if c.Buffer.SyncInterval <= 0 {
			bad("buffer::sync_interval", "must be positive with sync: interval")
		}
	default:
		bad("buffer::sync", "%q is not one of always, interval", c.Buffer.Sync)
	}
	return errors.Join(errs...)
}
