// Package tailsamplingprocessor is Sightline's `tail_sampling` processor:
// upstream's configuration and decisions, with the spans that wait for a
// decision kept on disk instead of in memory, and kept across restarts.
//
// Upstream's processor holds every pending span as pdata until its trace
// is decided: rate × decision_wait × about 2 KB of heap, which is what
// runs gateways out of memory. Here each trace's spans go to an
// append-only log on disk as they arrive (buffer.go), with a summary of a
// few dozen bytes per trace in memory. At the trace's deadline its spans
// are read back and handed to upstream's own processor, built with the
// same policies and a one-second wait: upstream code takes every decision,
// on the same spans, so the decisions are upstream's by construction.
// Sampled spans are forwarded by it; the decision is then recorded in the
// log, which is what lets a restart decide exactly the traces still
// pending, at their original deadlines.
//
// Upstream's processor stays available as `tail_sampling_upstream`, with
// its own configuration, for comparison.
package tailsamplingprocessor

import (
	"context"
	"os"
	"path/filepath"
	"time"

	upstream "github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
)

// Type is upstream's type name, so that collector configurations run as
// written.
var Type = component.MustNewType("tail_sampling")

// UpstreamType names upstream's in-memory processor.
var UpstreamType = component.MustNewType("tail_sampling_upstream")

var upstreamFactory = upstream.NewFactory()

// NewFactory returns the factory of the disk-backed `tail_sampling`.
func NewFactory() processor.Factory {
	return processor.NewFactory(Type, createDefaultConfig,
		processor.WithTraces(createTraces, component.StabilityLevelAlpha))
}

// NewUpstreamFactory returns upstream's processor under UpstreamType.
func NewUpstreamFactory() processor.Factory {
	return processor.NewFactory(UpstreamType, upstreamFactory.CreateDefaultConfig,
		processor.WithTraces(func(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Traces) (processor.Traces, error) {
			set.ID = component.NewIDWithName(upstreamFactory.Type(), set.ID.Name())
			return upstreamFactory.CreateTraces(ctx, set, cfg, next)
		}, upstreamFactory.TracesStability()))
}

func createDefaultConfig() component.Config {
	return &Config{
		Config: *upstreamFactory.CreateDefaultConfig().(*upstream.Config),
		Buffer: BufferConfig{
			// About five minutes of a 20k spans/s gateway.
			MaxSize:      4 << 30,
			Sync:         "interval",
			SyncInterval: time.Second,
			// Small files go back to the disk soon after their traces are
			// decided: at 20k spans/s one fills in a few seconds.
			SegmentSize: 16 << 20,
		},
	}
}

func createTraces(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Traces) (processor.Traces, error) {
	c := cfg.(*Config)
	dir := c.Buffer.Path
	if dir == "" {
		root := os.Getenv("SIGHTLINE_DATA")
		if root == "" {
			root = "./sightline-data"
		}
		name := set.ID.Name()
		if name == "" {
			name = "default"
		}
		dir = filepath.Join(root, "tail_sampling", name)
	}
	return newProcessor(ctx, set, c, dir, next)
}
