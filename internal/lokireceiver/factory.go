// Package lokireceiver accepts Loki's push API (/loki/api/v1/push, JSON and
// snappy-compressed protobuf) so that Promtail, Grafana Alloy and other log
// shippers can send to Sightline. It is config-compatible with the contrib
// loki receiver, which the module proxy Sightline builds from does not
// serve (see docs/components.md).
package lokireceiver

import (
	"context"
	"errors"
	"net"
	"net/http"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receiverhelper"

	"github.com/sightlinehq/sightline/internal/otlpguard"
)

// Type is the component type, the same as upstream's.
var Type = component.MustNewType("loki")

// NewFactory returns the loki receiver factory. The admitters among its
// host's extensions (otlpguard.HostAdmission) are asked before each push's
// body is read; while one refuses, pushes are answered with its retryable
// status (503, Retry-After from its RetryInfo) and never read or decoded.
func NewFactory() receiver.Factory {
	create := func(ctx context.Context, set receiver.Settings, c component.Config, next consumer.Logs) (receiver.Logs, error) {
		return createLogs(ctx, set, c, next)
	}
	return receiver.NewFactory(Type, createDefaultConfig, receiver.WithLogs(create, component.StabilityLevelBeta))
}

func createDefaultConfig() component.Config {
	srv := confighttp.NewDefaultServerConfig()
	srv.NetAddr.Endpoint = "localhost:3100"
	return &Config{Protocols: Protocols{HTTP: &srv},
		MaxLabelNamesPerSeries:            DefaultLimits.MaxLabelNamesPerSeries,
		MaxStructuredMetadataEntriesCount: DefaultLimits.MaxStructuredMetadataEntries}
}

func createLogs(_ context.Context, set receiver.Settings, c component.Config, next consumer.Logs) (*lokiReceiver, error) {
	obs, err := receiverhelper.NewObsReport(receiverhelper.ObsReportSettings{ReceiverID: set.ID, Transport: "http", ReceiverCreateSettings: set})
	if err != nil {
		return nil, err
	}
	cfg := c.(*Config)
	// Pushes are bounded decoded as OTLP requests are: each, and those
	// held at once.
	fl := otlpguard.NewInflight(otlpguard.Limits{})
	lim := cfg.limits()
	lim.MaxDecodedBytes = fl.RequestLimit()
	return &lokiReceiver{cfg: cfg, lim: lim, inflight: fl, set: set, next: next, obs: obs}, nil
}

type lokiReceiver struct {
	cfg      *Config
	lim      Limits
	inflight *otlpguard.Inflight
	set      receiver.Settings
	next     consumer.Logs
	obs      *receiverhelper.ObsReport
	admit    otlpguard.Admission // the host's; nil admits every push
	server   *http.Server
	done     chan struct{}
}

func (r *lokiReceiver) Start(ctx context.Context, host component.Host) error {
	r.admit = otlpguard.HostAdmission(host)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /loki/api/v1/push", r.push)
	mux.HandleFunc("POST /api/prom/push", r.push) // Loki's legacy path
	ln, err := r.cfg.Protocols.HTTP.ToListener(ctx)
	if err != nil {
		return err
	}
	srv, err := r.cfg.Protocols.HTTP.ToServer(ctx, host.GetExtensions(), r.set.TelemetrySettings, mux)
	if err != nil {
		ln.Close()
		return err
	}
	r.server, r.done = srv, make(chan struct{})
	go func() {
		defer close(r.done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			componentstatus.ReportStatus(host, componentstatus.NewFatalErrorEvent(err))
		}
	}()
	return nil
}

func (r *lokiReceiver) Shutdown(ctx context.Context) error {
	if r.server == nil {
		return nil
	}
	err := r.server.Shutdown(ctx)
	<-r.done
	return err
}
