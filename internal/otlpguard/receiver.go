package otlpguard

import (
	"context"
	"net/http"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/config/configmiddleware"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/xconsumer"
	"go.opentelemetry.io/collector/extension/extensionmiddleware"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/xreceiver"
	"google.golang.org/grpc"
)

// middlewareID names the guard among a guarded receiver's middlewares. The
// guard is not a configured extension: the wrapped receiver's host serves
// it under this ID to that receiver alone, so configs need not mention it
// and cannot turn it off.
var middlewareID = component.MustNewID("sightline_otlp_guard")

// WrapReceiverFactory returns the upstream `otlp` receiver factory f with
// the guard in front of its decoders: the same type, the same config and
// the same behaviour for every request the guard passes. The guard is
// appended to the receiver's HTTP and gRPC middlewares, so it runs after
// authentication and decompression and after any middleware the config
// names.
//
// The extensions of the receiver's host that implement Admitter are asked
// before each export request's body is read (HostAdmission); a refused
// request is answered with its retryable status and never decoded.
func WrapReceiverFactory(f receiver.Factory, lim Limits) receiver.Factory {
	xf := f.(xreceiver.Factory)
	return xreceiver.NewFactory(f.Type(), f.CreateDefaultConfig,
		xreceiver.WithTraces(func(ctx context.Context, set receiver.Settings, cfg component.Config, next consumer.Traces) (receiver.Traces, error) {
			g := install(cfg, lim)
			r, err := f.CreateTraces(ctx, set, cfg, next)
			return guarded(r, g, err)
		}, f.TracesStability()),
		xreceiver.WithMetrics(func(ctx context.Context, set receiver.Settings, cfg component.Config, next consumer.Metrics) (receiver.Metrics, error) {
			g := install(cfg, lim)
			r, err := f.CreateMetrics(ctx, set, cfg, next)
			return guarded(r, g, err)
		}, f.MetricsStability()),
		xreceiver.WithLogs(func(ctx context.Context, set receiver.Settings, cfg component.Config, next consumer.Logs) (receiver.Logs, error) {
			g := install(cfg, lim)
			r, err := f.CreateLogs(ctx, set, cfg, next)
			return guarded(r, g, err)
		}, f.LogsStability()),
		xreceiver.WithProfiles(func(ctx context.Context, set receiver.Settings, cfg component.Config, next xconsumer.Profiles) (xreceiver.Profiles, error) {
			// Profiles carry no AnyValue trees on the paths the guard
			// knows; the receiver is shared, so it is guarded all the same.
			g := install(cfg, lim)
			r, err := xf.CreateProfiles(ctx, set, cfg, next)
			return guarded(r, g, err)
		}, xf.ProfilesStability()),
	)
}

// install adds the guard's middleware ID to cfg, once: the receiver is
// shared between signals by its config pointer, so the change must be made
// in place and be idempotent.
func install(cfg component.Config, lim Limits) *guard {
	c := cfg.(*otlpreceiver.Config)
	g := &guard{lim: lim, paths: map[string]Signal{}, inflight: NewInflight(lim)}
	add := func(ms []configmiddleware.Config) []configmiddleware.Config {
		for _, m := range ms {
			if m.ID == middlewareID {
				return ms
			}
		}
		return append(ms, configmiddleware.Config{ID: middlewareID})
	}
	if gc := c.Protocols.GRPC.Get(); gc != nil {
		gc.Middlewares = add(gc.Middlewares)
	}
	if hc := c.Protocols.HTTP.Get(); hc != nil {
		hc.ServerConfig.Middlewares = add(hc.ServerConfig.Middlewares)
		g.paths[string(hc.TracesURLPath)] = Traces
		g.paths[string(hc.MetricsURLPath)] = Metrics
		g.paths[string(hc.LogsURLPath)] = Logs
	}
	return g
}

// guard is the middleware the wrapped receiver finds on its host.
type guard struct {
	lim Limits
	// admit is the host's admission (HostAdmission), set by Start before
	// the receiver asks for the middleware; nil admits everything.
	admit Admission
	paths map[string]Signal
	// inflight is shared by the receiver's gRPC and HTTP servers.
	inflight *Inflight
}

var (
	_ extensionmiddleware.HTTPServer = (*guard)(nil)
	_ extensionmiddleware.GRPCServer = (*guard)(nil)
)

func (*guard) Start(context.Context, component.Host) error { return nil }
func (*guard) Shutdown(context.Context) error              { return nil }

func (g *guard) GetHTTPHandler(context.Context) (extensionmiddleware.WrapHTTPHandlerFunc, error) {
	return func(_ context.Context, next http.Handler) (http.Handler, error) {
		h := httpHandler(next, g.paths, g.lim, g.inflight)
		if g.admit != nil {
			// Before the body is read, let alone scanned.
			h = admitHTTP(h, g.paths, g.admit)
		}
		return h, nil
	}, nil
}

func (g *guard) GetGRPCServerOptions(context.Context) ([]grpc.ServerOption, error) {
	opts := newGRPCGuard(g.lim, g.inflight).ServerOptions()
	if g.admit != nil {
		opts = append(opts, grpc.InTapHandle(admitTap(g.admit)))
	}
	return opts, nil
}

type guardedReceiver struct {
	component.Component
	g *guard
}

func guarded(r component.Component, g *guard, err error) (*guardedReceiver, error) {
	if err != nil {
		return nil, err
	}
	return &guardedReceiver{Component: r, g: g}, nil
}

func (r *guardedReceiver) Start(ctx context.Context, host component.Host) error {
	r.g.admit = HostAdmission(host)
	return r.Component.Start(ctx, &guardHost{Host: host, g: r.g})
}

// guardHost is the receiver's host with the guard among its extensions. It
// passes component status on, which the receiver reports through it.
type guardHost struct {
	component.Host
	g *guard
}

func (h *guardHost) GetExtensions() map[component.ID]component.Component {
	exts := h.Host.GetExtensions()
	out := make(map[component.ID]component.Component, len(exts)+1)
	for id, e := range exts {
		out[id] = e
	}
	out[middlewareID] = h.g
	return out
}

func (h *guardHost) Report(ev *componentstatus.Event) {
	if r, ok := h.Host.(componentstatus.Reporter); ok {
		r.Report(ev)
	}
}
