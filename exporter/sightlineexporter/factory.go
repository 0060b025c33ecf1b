// Package sightlineexporter is the `sightline` exporter: it writes traces,
// logs and metrics to a `sightline_storage` extension, which it finds by
// ID among the host's extensions when it starts (as Jaeger v2's storage
// exporter finds jaeger_storage). It acknowledges a batch only once the
// store has made it durable by its fsync policy.
package sightlineexporter

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"

	"github.com/sightlinehq/sightline/extension/sightlinestorage"
)

// Type is the exporter's component type.
var Type = component.MustNewType("sightline")

// NewFactory returns the `sightline` exporter factory.
func NewFactory() exporter.Factory {
	return exporter.NewFactory(Type, createDefaultConfig,
		exporter.WithTraces(createTraces, component.StabilityLevelAlpha),
		exporter.WithLogs(createLogs, component.StabilityLevelAlpha),
		exporter.WithMetrics(createMetrics, component.StabilityLevelAlpha),
	)
}

func createDefaultConfig() component.Config {
	return &Config{Storage: component.NewID(sightlinestorage.Type)}
}

// options are the same for every signal. No queue, no retry and no
// timeout: the exporter returns only once the data is durable, so the
// receiver acknowledges nothing that could be lost, and the client's own
// retry policy applies.
func options(e *storageExporter) []exporterhelper.Option {
	return []exporterhelper.Option{
		exporterhelper.WithStart(e.start),
		exporterhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}),
		exporterhelper.WithTimeout(exporterhelper.TimeoutConfig{}),
	}
}

func createTraces(ctx context.Context, set exporter.Settings, c component.Config) (exporter.Traces, error) {
	e := &storageExporter{cfg: c.(*Config), set: set}
	return exporterhelper.NewTraces(ctx, set, c, e.pushTraces, options(e)...)
}

func createLogs(ctx context.Context, set exporter.Settings, c component.Config) (exporter.Logs, error) {
	e := &storageExporter{cfg: c.(*Config), set: set}
	return exporterhelper.NewLogs(ctx, set, c, e.pushLogs, options(e)...)
}

func createMetrics(ctx context.Context, set exporter.Settings, c component.Config) (exporter.Metrics, error) {
	e := &storageExporter{cfg: c.(*Config), set: set}
	return exporterhelper.NewMetrics(ctx, set, c, e.pushMetrics, options(e)...)
}
