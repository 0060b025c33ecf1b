// Package api serves Sightline's query APIs: Tempo's (TraceQL search,
// trace by ID, tags, TraceQL metrics), Jaeger's (legacy and api_v3, under
// /jaeger), Loki's (LogQL) and a native API for the UI, on one port. It is
// a collector extension so that it starts with the pipeline that fills the
// store and takes TLS and auth from confighttp.
//
// This is the only package that turns errors into HTTP status codes.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/extension/extensioncapabilities"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"

	"github.com/sightlinehq/sightline/extension/sightlinestorage"
	"github.com/sightlinehq/sightline/internal/alerting"
)

var _ extensioncapabilities.Dependent = (*queryExtension)(nil)

// Type is the extension's component type.
var Type = component.MustNewType("sightline_query")

// DefaultEndpoint is Tempo's HTTP port, so Grafana's Tempo datasource
// finds Sightline where it looks for Tempo.
const DefaultEndpoint = "localhost:3200"

// NewFactory returns the query API extension factory.
func NewFactory() extension.Factory {
	return extension.NewFactory(Type, createDefaultConfig, create, component.StabilityLevelBeta)
}

func createDefaultConfig() component.Config {
	srv := confighttp.NewDefaultServerConfig()
	srv.NetAddr.Endpoint = DefaultEndpoint
	// Queries may legitimately run up to the query timeout.
	srv.WriteTimeout = 0
	return &Config{
		ServerConfig: srv,
		Storage:      component.NewID(sightlinestorage.Type),
		Limits: Limits{
			MaxTimeRange:       721 * time.Hour,
			MaxQueryBytes:      defaultMaxQueryBytes,
			MaxQueryDepth:      defaultMaxQueryDepth,
			MaxResults:         5000,
			MaxSeries:          1000,
			MaxSamples:         50_000_000,
			Timeout:            30 * time.Second,
			MaxInspectedTraces: 100_000,
			MaxSpansPerTrace:   100_000,
			MaxSpansPerSpanset: 100, // Tempo's default
			MetricsCacheBytes:  32 << 20,
		},
		Tenancy: Tenancy{Header: "X-Scope-OrgID", ResourceAttribute: "tenant.id"},
		// Prometheus's global default.
		Rules: alerting.Config{EvaluationInterval: time.Minute},
	}
}

func create(_ context.Context, set extension.Settings, c component.Config) (extension.Extension, error) {
	return &queryExtension{cfg: c.(*Config), set: set}, nil
}

type queryExtension struct {
	cfg    *Config
	set    extension.Settings
	server *http.Server
	api    *API
	done   chan struct{}
}

// Dependencies makes the collector start the storage extension first,
// so that Start finds it open.
func (e *queryExtension) Dependencies() []component.ID {
	return []component.ID{e.cfg.Storage}
}

func (e *queryExtension) Start(ctx context.Context, host component.Host) error {
	st, err := sightlinestorage.GetStorage(host, e.cfg.Storage)
	if err != nil {
		return err
	}
	api := New(e.cfg, st.Querier, Stores{Traces: st.Store(), Metrics: st.Metrics(), Dashboards: st.Dashboards()}, e.set.BuildInfo, e.set.Logger)
	ln, err := e.cfg.ToListener(ctx)
	if err != nil {
		return err
	}
	srv, err := e.cfg.ToServer(ctx, host.GetExtensions(), e.set.TelemetrySettings, api.Handler(),
		confighttp.WithDecoder("snappy", keepSnappy))
	if err != nil {
		ln.Close()
		return err
	}
	// The UI's login sits in front of the authenticator, which it feeds.
	srv.Handler = api.Sessions(srv.Handler)
	if err := api.StartRules(slog.New(zapslog.NewHandler(e.set.Logger.Core()))); err != nil {
		ln.Close()
		return err
	}
	e.api = api
	e.server = srv
	e.done = make(chan struct{})
	e.set.Logger.Info("query API listening", zap.String("endpoint", ln.Addr().String()))
	go func() {
		defer close(e.done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			componentstatus.ReportStatus(host, componentstatus.NewFatalErrorEvent(err))
		}
	}()
	return nil
}

func (e *queryExtension) Shutdown(ctx context.Context) error {
	if e.server == nil {
		return nil
	}
	err := e.server.Shutdown(ctx)
	<-e.done
	e.api.StopRules()
	return err
}
