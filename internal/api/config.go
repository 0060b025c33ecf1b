package api

import (
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/confmap"

	"github.com/sightlinehq/sightline/extension/sightlinestorage"
	"github.com/sightlinehq/sightline/internal/alerting"
)

// Config configures the query API: one HTTP server for the Tempo, Jaeger,
// Loki and native APIs (and the UI).
type Config struct {
	confighttp.ServerConfig `mapstructure:",squash"`

	// Storage names the sightline_storage extension the API reads.
	Storage component.ID `mapstructure:"storage"`

	Limits  Limits  `mapstructure:"limits"`
	Tenancy Tenancy `mapstructure:"tenancy"`

	// Rules are Prometheus recording and alerting rules evaluated over
	// the metrics store.
	Rules alerting.Config `mapstructure:"rules"`
}

// Limits bound what one query may cost. Zero disables a limit.
type Limits struct {
	// MaxTimeRange is the longest [start, end] a query may ask for.
	MaxTimeRange time.Duration `mapstructure:"max_time_range"`
	// MaxResults caps the traces of a search and the lines of a log query;
	// a larger limit parameter is refused.
	MaxResults int `mapstructure:"max_results"`
	// MaxSeries caps the series of a metrics query.
	MaxSeries int `mapstructure:"max_series"`
	// MaxSamples caps the samples a PromQL query holds in memory at once,
	// as Prometheus's --query.max-samples does, and those TraceQL's
	// compare() counts in.
	MaxSamples int `mapstructure:"max_samples"`
	// Timeout ends a query that runs longer.
	Timeout time.Duration `mapstructure:"timeout"`
	// MaxBytesScanned ends a query that reads more compressed block bytes.
	MaxBytesScanned int64 `mapstructure:"max_bytes_scanned"`
	// MaxInspectedTraces caps the traces a structural or trace-level query
	// assembles.
	MaxInspectedTraces int `mapstructure:"max_inspected_traces"`
	// MaxSpansPerTrace refuses a trace looked up by ID (Tempo's and
	// Jaeger's trace endpoints) with more spans, before they are read: a
	// runaway trace of millions of spans would otherwise be held whole
	// for its answer. Tempo bounds bytes per trace (5 MB) the same way.
	// A search or structural metrics query leaves such a trace out, and
	// a Jaeger answer (whole traces) holds at most this many in all.
	MaxSpansPerTrace int `mapstructure:"max_spans_per_trace"`
	// MaxSpansPerSpanset refuses a Tempo search whose spss (matching spans
	// returned per trace) is larger, as Tempo's max_spans_per_span_set
	// does: each of up to max_results traces carries that many spans.
	MaxSpansPerSpanset int `mapstructure:"max_spans_per_spanset"`
	// MaxQueryBytes and MaxQueryDepth bound a PromQL expression's length
	// and bracket nesting, checked before Prometheus parses it (TraceQL and
	// LogQL have their own caps in their parsers).
	MaxQueryBytes int `mapstructure:"max_query_bytes"`
	MaxQueryDepth int `mapstructure:"max_query_depth"`
	// MetricsCacheBytes bounds the memory of the cache that keeps TraceQL
	// metrics queries' partial series over immutable blocks, so that a
	// dashboard refreshing the last hour reads only what changed. 0 turns
	// the cache off.
	MetricsCacheBytes int64 `mapstructure:"metrics_cache_bytes"`
}

// Tenancy scopes every query to one tenant. Data is tagged with its tenant
// on the way in by the tenancy processor (internal/tenancyprocessor), from
// the request alone; the API's own write paths (remote write, OTLP) tag it
// from the header.
type Tenancy struct {
	Enabled bool `mapstructure:"enabled"`
	// Header carries the tenant ID; Grafana's datasources send X-Scope-OrgID.
	Header string `mapstructure:"header"`
	// ResourceAttribute is the resource attribute that holds the tenant.
	ResourceAttribute string `mapstructure:"resource_attribute"`
}

var _ component.Config = (*Config)(nil)

// plainServer is confighttp.ServerConfig without its methods, so that
// decoding into it is plain mapstructure decoding.
type plainServer confighttp.ServerConfig

// Unmarshal decodes the configuration.
//
// Since v0.161 confighttp.ServerConfig has an Unmarshal method, which
// embedding promotes to Config: without this one, confmap would call it,
// decode the server's keys alone and silently leave limits, tenancy and
// rules at their defaults. So the server's part goes through its own
// Unmarshal (keep-alive folding, deprecation warnings), the rest is
// decoded here, and both halves are decoded strictly, so that a misspelt
// key is still an error.
func (c *Config) Unmarshal(conf *confmap.Conf) error {
	if err := c.ServerConfig.Unmarshal(conf); err != nil {
		return err
	}
	own := struct {
		Storage component.ID    `mapstructure:"storage"`
		Limits  Limits          `mapstructure:"limits"`
		Tenancy Tenancy         `mapstructure:"tenancy"`
		Rules   alerting.Config `mapstructure:"rules"`
	}{c.Storage, c.Limits, c.Tenancy, c.Rules}
	mine, rest := map[string]any{}, map[string]any{}
	for k, v := range conf.ToStringMap() {
		switch k {
		case "storage", "limits", "tenancy", "rules":
			mine[k] = v
		default:
			rest[k] = v
		}
	}
	if err := confmap.NewFromStringMap(mine).Unmarshal(&own); err != nil {
		return err
	}
	server := plainServer(c.ServerConfig)
	if err := confmap.NewFromStringMap(rest).Unmarshal(&server); err != nil {
		return err
	}
	c.Storage, c.Limits, c.Tenancy, c.Rules = own.Storage, own.Limits, own.Tenancy, own.Rules
	return nil
}

// Validate reports every problem, each with its field path.
func (c *Config) Validate() error {
	var errs []error
	if c.NetAddr.Endpoint == "" {
		errs = append(errs, errors.New("endpoint: must be set"))
	}
	if c.Storage.Type() != sightlinestorage.Type {
		errs = append(errs, fmt.Errorf("storage: %q is not a %s extension (it was the sightline exporter's ID before the store became an extension)", c.Storage, sightlinestorage.Type))
	}
	l := c.Limits
	if l.MaxQueryBytes < 0 {
		errs = append(errs, errors.New("limits::max_query_bytes: must not be negative"))
	}
	if l.MaxQueryDepth < 0 {
		errs = append(errs, errors.New("limits::max_query_depth: must not be negative"))
	}
	if l.MaxTimeRange < 0 {
		errs = append(errs, errors.New("limits::max_time_range: must not be negative"))
	}
	if l.MaxResults < 0 {
		errs = append(errs, errors.New("limits::max_results: must not be negative"))
	}
	if l.MaxSeries < 0 {
		errs = append(errs, errors.New("limits::max_series: must not be negative"))
	}
	if l.MaxSamples < 0 {
		errs = append(errs, errors.New("limits::max_samples: must not be negative"))
	}
	if l.Timeout < 0 {
		errs = append(errs, errors.New("limits::timeout: must not be negative"))
	}
	if l.MaxBytesScanned < 0 {
		errs = append(errs, errors.New("limits::max_bytes_scanned: must not be negative"))
	}
	if l.MetricsCacheBytes < 0 {
		errs = append(errs, errors.New("limits::metrics_cache_bytes: must not be negative"))
	}
	if l.MaxInspectedTraces < 0 {
		errs = append(errs, errors.New("limits::max_inspected_traces: must not be negative"))
	}
	if l.MaxSpansPerTrace < 0 {
		errs = append(errs, errors.New("limits::max_spans_per_trace: must not be negative"))
	}
	if l.MaxSpansPerSpanset < 0 {
		errs = append(errs, errors.New("limits::max_spans_per_spanset: must not be negative"))
	}
	if c.Tenancy.Enabled {
		if c.Tenancy.Header == "" {
			errs = append(errs, errors.New("tenancy::header: must be set when tenancy is enabled"))
		}
		if c.Tenancy.ResourceAttribute == "" {
			errs = append(errs, errors.New("tenancy::resource_attribute: must be set when tenancy is enabled"))
		}
	}
	for _, e := range c.Rules.Problems() {
		errs = append(errs, fmt.Errorf("rules::%w", e))
	}
	return errors.Join(errs...)
}
