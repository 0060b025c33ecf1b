package sightlineexporter

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/sightlinehq/sightline/extension/sightlinestorage"
	"github.com/sightlinehq/sightline/internal/metrics"
	"github.com/sightlinehq/sightline/internal/otlpguard"
	"github.com/sightlinehq/sightline/internal/store"
)

// storageExporter is one signal's exporter. The storage it writes to is
// found at start: exporters start after every extension.
type storageExporter struct {
	cfg     *Config
	set     exporter.Settings
	storage *sightlinestorage.Storage
}

func (e *storageExporter) start(_ context.Context, host component.Host) error {
	s, err := sightlinestorage.GetStorage(host, e.cfg.Storage)
	if err != nil {
		return err
	}
	e.storage = s
	return nil
}

func (e *storageExporter) pushTraces(_ context.Context, td ptrace.Traces) error {
	return consumeErr(e.storage.Store().AppendTraces(td))
}

func (e *storageExporter) pushLogs(_ context.Context, ld plog.Logs) error {
	return consumeErr(e.storage.Store().AppendLogs(ld))
}

func (e *storageExporter) pushMetrics(ctx context.Context, md pmetric.Metrics) error {
	warnings, err := e.storage.Metrics().AppendOTLP(ctx, md)
	for _, w := range warnings {
		e.set.Logger.Warn("metrics translation", zap.String("warning", w))
	}
	if err != nil && errors.Is(err, metrics.ErrWrite) {
		return fmt.Errorf("%w: %w", store.ErrWrite, err)
	}
	return consumeErr(err)
}

// consumeErr marks what a retry cannot fix as permanent; a failed write to
// disk is retryable (gRPC Unavailable, HTTP 503 at the OTLP receiver). A
// refusal for the memory budget or the compaction backlog is
// backpressure: Unavailable with RetryInfo, which the OTLP receiver also
// turns into HTTP 503 with Retry-After, so clients back off for that long.
func consumeErr(err error) error {
	switch {
	case err == nil || errors.Is(err, store.ErrWrite):
		return err
	case errors.Is(err, store.ErrOverBudget), errors.Is(err, store.ErrBacklog):
		return otlpguard.RetryLater(err, sightlinestorage.Backoff)
	}
	return consumererror.NewPermanent(err)
}
