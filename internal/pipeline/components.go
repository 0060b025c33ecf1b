// Package pipeline is Sightline's telemetry pipeline: the OpenTelemetry
// Collector framework used as a library, with a hand-kept component registry
// (in the style of the Collector Builder's generated components.go), the
// embedded default configs and a config validator that reports every error.
package pipeline

import (
	"github.com/sightlinehq/sightline/internal/api"
	"github.com/sightlinehq/sightline/internal/lokireceiver"
	"github.com/sightlinehq/sightline/internal/otlpguard"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/connector/forwardconnector"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/debugexporter"
	"go.opentelemetry.io/collector/exporter/nopexporter"
	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/collector/exporter/otlphttpexporter"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/extension/zpagesextension"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/batchprocessor"
	"go.opentelemetry.io/collector/processor/memorylimiterprocessor"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/nopreceiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"

	"github.com/open-telemetry/opentelemetry-collector-contrib/connector/countconnector"
	"github.com/open-telemetry/opentelemetry-collector-contrib/connector/servicegraphconnector"
	"github.com/open-telemetry/opentelemetry-collector-contrib/connector/spanmetricsconnector"
	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter"
	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/loadbalancingexporter"
	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/prometheusexporter"
	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/prometheusremotewriteexporter"
	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/bearertokenauthextension"
	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/healthcheckextension"
	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/pprofextension"
	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/attributesprocessor"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/cumulativetodeltaprocessor"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/deltatocumulativeprocessor"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/filterprocessor"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/groupbyattrsprocessor"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/k8sattributesprocessor"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/probabilisticsamplerprocessor"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/redactionprocessor"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/resourcedetectionprocessor"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/resourceprocessor"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/transformprocessor"
	"github.com/open-telemetry/opentelemetry-collector-contrib/receiver/awsecscontainermetricsreceiver"
	"github.com/open-telemetry/opentelemetry-collector-contrib/receiver/filelogreceiver"
	"github.com/open-telemetry/opentelemetry-collector-contrib/receiver/fluentforwardreceiver"
	"github.com/open-telemetry/opentelemetry-collector-contrib/receiver/hostmetricsreceiver"
	"github.com/open-telemetry/opentelemetry-collector-contrib/receiver/jaegerreceiver"
	"github.com/open-telemetry/opentelemetry-collector-contrib/receiver/journaldreceiver"
	"github.com/open-telemetry/opentelemetry-collector-contrib/receiver/kubeletstatsreceiver"
	"github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusreceiver"
	"github.com/open-telemetry/opentelemetry-collector-contrib/receiver/syslogreceiver"
	"github.com/open-telemetry/opentelemetry-collector-contrib/receiver/zipkinreceiver"

	"github.com/sightlinehq/sightline/exporter/sightlineexporter"
	"github.com/sightlinehq/sightline/extension/sightlinestorage"
	"github.com/sightlinehq/sightline/internal/archive/awss3exporter"
	"github.com/sightlinehq/sightline/internal/tenancyprocessor"
	"github.com/sightlinehq/sightline/processor/tailsamplingprocessor"
)

// Components returns the factories of every component Sightline ships.
//
// The list is kept by hand, like the Collector Builder's generated
// components.go, so that adding a component is a reviewed change to go.mod.
// otelcol.MakeFactoryMap also registers each factory's deprecated type alias
// (otlp for otlp_grpc, spanmetrics for span_metrics, ...), so configs written
// for older collectors load unchanged, with a warning in the log.
func Components() (otelcol.Factories, error) {
	var err error
	factories := otelcol.Factories{Telemetry: otelconftelemetry.NewFactory()}

	factories.Extensions, err = otelcol.MakeFactoryMap[extension.Factory](
		healthcheckextension.NewFactory(),
		zpagesextension.NewFactory(),
		pprofextension.NewFactory(),
		bearertokenauthextension.NewFactory(),
		filestorage.NewFactory(),
		sightlinestorage.NewFactory(),
		api.NewFactory(),
	)
	if err != nil {
		return otelcol.Factories{}, err
	}

	factories.Receivers, err = otelcol.MakeFactoryMap[receiver.Factory](
		// Upstream's receiver, with a check in front of its decoders that
		// refuses values nested deep enough to overflow pdata's recursive
		// decoder (a fatal error that no recover() catches), and the
		// storage extension's admission before it reads a request at all.
		otlpguard.WrapReceiverFactory(otlpreceiver.NewFactory(), otlpguard.Limits{}),
		prometheusreceiver.NewFactory(),
		lokireceiver.NewFactory(),
		// What an agent (DaemonSet or sidecar) collects besides OTLP: pod
		// and host logs, host and kubelet metrics, and Fluent Bit, Fluentd
		// and syslog forwarders.
		filelogreceiver.NewFactory(),
		hostmetricsreceiver.NewFactory(),
		kubeletstatsreceiver.NewFactory(),
		fluentforwardreceiver.NewFactory(),
		syslogreceiver.NewFactory(),
		journaldreceiver.NewFactory(),
		// ECS task and container metrics from the task metadata endpoint,
		// for the Fargate sidecar.
		awsecscontainermetricsreceiver.NewFactory(),
		// Services still instrumented with Zipkin or Jaeger clients send
		// to an agent in their own protocol; the receivers turn it into
		// OTLP.
		zipkinreceiver.NewFactory(),
		jaegerreceiver.NewFactory(),
		// A process that takes no data (the querier and compactor roles)
		// still needs a pipeline, as in Jaeger v2's query-only config.
		nopreceiver.NewFactory(),
	)
	if err != nil {
		return otelcol.Factories{}, err
	}

	factories.Processors, err = otelcol.MakeFactoryMap[processor.Factory](
		memorylimiterprocessor.NewFactory(),
		batchprocessor.NewFactory(),
		resourceprocessor.NewFactory(),
		tenancyprocessor.NewFactory(),
		resourcedetectionprocessor.NewFactory(),
		attributesprocessor.NewFactory(),
		filterprocessor.NewFactory(),
		transformprocessor.NewFactory(),
		// Upstream's configuration and decisions, pending spans on disk;
		// upstream's in-memory processor stays as tail_sampling_upstream.
		tailsamplingprocessor.NewFactory(),
		tailsamplingprocessor.NewUpstreamFactory(),
		probabilisticsamplerprocessor.NewFactory(),
		redactionprocessor.NewFactory(),
		k8sattributesprocessor.NewFactory(),
		groupbyattrsprocessor.NewFactory(),
		// Prometheus's TSDB takes cumulative data only: delta sums and
		// histograms (from SDKs set to delta temporality, statsd, ...) are
		// refused unless this processor turns them cumulative first.
		deltatocumulativeprocessor.NewFactory(),
		cumulativetodeltaprocessor.NewFactory(),
	)
	if err != nil {
		return otelcol.Factories{}, err
	}

	factories.Connectors, err = otelcol.MakeFactoryMap[connector.Factory](
		spanmetricsconnector.NewFactory(),
		servicegraphconnector.NewFactory(),
		forwardconnector.NewFactory(),
		countconnector.NewFactory(),
	)
	if err != nil {
		return otelcol.Factories{}, err
	}

	factories.Exporters, err = otelcol.MakeFactoryMap[exporter.Factory](
		otlpexporter.NewFactory(),
		otlphttpexporter.NewFactory(),
		debugexporter.NewFactory(),
		nopexporter.NewFactory(),
		fileexporter.NewFactory(),
		prometheusexporter.NewFactory(),
		prometheusremotewriteexporter.NewFactory(),
		loadbalancingexporter.NewFactory(),
		awss3exporter.NewFactory(),
		sightlineexporter.NewFactory(),
	)
	if err != nil {
		return otelcol.Factories{}, err
	}

	return factories, nil
}
