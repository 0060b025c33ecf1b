// Package tenancyprocessor writes the tenant of each request, taken from
// the request alone (a header, or the authenticator's identity), into the
// resource attribute that Sightline's query APIs scope by, and refuses
// requests that name none.
//
// The resource processor's recipe (upsert from_context) cannot do this: a
// request without the header keeps whatever tenant attribute its payload
// carries, so any client could write into any tenant.
package tenancyprocessor

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"
)

// Type is the component type.
var Type = component.MustNewType("tenancy")

// NewFactory returns the tenancy processor factory.
func NewFactory() processor.Factory {
	return processor.NewFactory(Type, createDefaultConfig,
		processor.WithTraces(createTraces, component.StabilityLevelBeta),
		processor.WithLogs(createLogs, component.StabilityLevelBeta),
		processor.WithMetrics(createMetrics, component.StabilityLevelBeta),
	)
}

func createDefaultConfig() component.Config {
	return &Config{Header: "X-Scope-OrgID", ResourceAttribute: "tenant.id"}
}

var capabilities = processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: true})

func createTraces(ctx context.Context, set processor.Settings, c component.Config, next consumer.Traces) (processor.Traces, error) {
	p := newTenancy(c.(*Config))
	return processorhelper.NewTraces(ctx, set, c, next, p.traces, capabilities)
}

func createLogs(ctx context.Context, set processor.Settings, c component.Config, next consumer.Logs) (processor.Logs, error) {
	p := newTenancy(c.(*Config))
	return processorhelper.NewLogs(ctx, set, c, next, p.logs, capabilities)
}

func createMetrics(ctx context.Context, set processor.Settings, c component.Config, next consumer.Metrics) (processor.Metrics, error) {
	p := newTenancy(c.(*Config))
	return processorhelper.NewMetrics(ctx, set, c, next, p.metrics, capabilities)
}
