package pipeline

import (
	"testing"

	"go.opentelemetry.io/collector/component"
)

// TestComponents checks that every component the issue and the seeds name
// is registered (docs/components.md lists them), under its current name and its deprecated one.
func TestComponents(t *testing.T) {
	f, err := Components()
	if err != nil {
		t.Fatal(err)
	}
	has := func(kind string, types ...string) {
		t.Helper()
		for _, typ := range types {
			tt := component.MustNewType(typ)
			var ok bool
			switch kind {
			case "receiver":
				_, ok = f.Receivers[tt]
			case "processor":
				_, ok = f.Processors[tt]
			case "connector":
				_, ok = f.Connectors[tt]
			case "exporter":
				_, ok = f.Exporters[tt]
			case "extension":
				_, ok = f.Extensions[tt]
			}
			if !ok {
				t.Errorf("%s %q is not registered", kind, typ)
			}
		}
	}
	has("receiver", "otlp", "prometheus", "loki", "filelog", "file_log", "hostmetrics", "host_metrics",
		"kubeletstats", "kubelet_stats", "fluentforward", "fluent_forward", "syslog", "journald",
		"awsecscontainermetrics", "zipkin", "jaeger")
	has("processor", "memory_limiter", "batch", "resource", "tenancy", "resource_detection", "resourcedetection",
		"attributes", "filter", "transform", "tail_sampling", "tail_sampling_upstream", "probabilistic_sampler", "redaction",
		"k8sattributes", "k8s_attributes", "groupbyattrs", "deltatocumulative", "delta_to_cumulative",
		"cumulativetodelta", "cumulative_to_delta")
	has("connector", "span_metrics", "spanmetrics", "service_graph", "servicegraph", "forward", "count")
	has("exporter", "otlp", "otlp_grpc", "otlp_http", "otlphttp", "debug", "file", "prometheus",
		"prometheus_remote_write", "prometheusremotewrite", "load_balancing", "loadbalancing", "awss3")
	has("extension", "health_check", "zpages", "pprof", "bearertokenauth", "file_storage")
	if f.Telemetry == nil {
		t.Error("no telemetry factory: otelcol.NewCollector would refuse to start")
	}
}
