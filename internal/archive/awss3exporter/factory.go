// Package awss3exporter archives telemetry as objects in S3 (or any
// S3-compatible store), config-compatible with the contrib awss3 exporter,
// which the module proxy Sightline builds from does not serve. See
// docs/components.md.
package awss3exporter

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
)

// Type is the component type, the same as upstream's.
var Type = component.MustNewType("awss3")

// NewFactory returns the awss3 exporter factory.
func NewFactory() exporter.Factory {
	return exporter.NewFactory(Type, createDefaultConfig,
		exporter.WithLogs(createLogs, component.StabilityLevelBeta),
		exporter.WithTraces(createTraces, component.StabilityLevelBeta),
		exporter.WithMetrics(createMetrics, component.StabilityLevelBeta),
	)
}

func createDefaultConfig() component.Config {
	queue := exporterhelper.NewDefaultQueueConfig()
	return &Config{
		S3Uploader: S3UploaderConfig{
			S3PartitionFormat: "year=%Y/month=%m/day=%d/hour=%H/minute=%M",
		},
		MarshalerName: MarshalerOTLPJSON,
		Timeout:       exporterhelper.NewDefaultTimeoutConfig(),
		QueueConfig:   configoptional.Some(queue),
		RetryConfig:   configretry.NewDefaultBackOffConfig(),
	}
}

func options(e *s3Exporter, cfg *Config) []exporterhelper.Option {
	return []exporterhelper.Option{
		exporterhelper.WithStart(e.start),
		exporterhelper.WithShutdown(e.shutdown),
		exporterhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}),
		exporterhelper.WithTimeout(cfg.Timeout),
		exporterhelper.WithQueue(cfg.QueueConfig),
		exporterhelper.WithRetry(cfg.RetryConfig),
	}
}

func createLogs(ctx context.Context, set exporter.Settings, c component.Config) (exporter.Logs, error) {
	cfg := c.(*Config)
	e := newS3Exporter(cfg, set)
	return exporterhelper.NewLogs(ctx, set, cfg, e.pushLogs, options(e, cfg)...)
}

func createTraces(ctx context.Context, set exporter.Settings, c component.Config) (exporter.Traces, error) {
	cfg := c.(*Config)
	e := newS3Exporter(cfg, set)
	return exporterhelper.NewTraces(ctx, set, cfg, e.pushTraces, options(e, cfg)...)
}

func createMetrics(ctx context.Context, set exporter.Settings, c component.Config) (exporter.Metrics, error) {
	cfg := c.(*Config)
	e := newS3Exporter(cfg, set)
	return exporterhelper.NewMetrics(ctx, set, cfg, e.pushMetrics, options(e, cfg)...)
}
