// Package sightlinestorage is the `sightline_storage` extension: it owns
// the trace and log store (internal/store) and the metrics TSDB
// (internal/metrics) of one data directory. The `sightline` exporter writes
// to it and the `sightline_query` extension reads from it, each naming it
// by ID and finding it among the host's extensions (GetStorage), as Jaeger
// v2's exporter and query extension find jaeger_storage. Nothing is looked
// up through package state, so two storages in one process are two
// independent stores.
//
// It is also the receivers' admission (otlpguard.Admitter): while its
// memory budget is spent, its compaction backlog is at the stall count or
// the process's live heap is over its threshold, the OTLP and Loki
// receivers refuse requests before reading them.
package sightlinestorage

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"
)

// Type is the extension's component type.
var Type = component.MustNewType("sightline_storage")

// NewFactory returns the `sightline_storage` extension factory.
func NewFactory() extension.Factory {
	return extension.NewFactory(Type, func() component.Config { return createDefaultConfig() }, create, component.StabilityLevelAlpha)
}

func create(_ context.Context, set extension.Settings, c component.Config) (extension.Extension, error) {
	return &Storage{cfg: c.(*Config), set: set}, nil
}
