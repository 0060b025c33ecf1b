// Command instrumentation is a minimal Go service instrumented the way the
// Sightline demo's services are. Copy the setup function into your own
// service; run this one with a Sightline (or any OTLP endpoint) listening:
//
//	go run ./examples/instrumentation
//	curl -H 'X-User-ID: 42' localhost:8080/hello
package main

import (
	"context"
	"errors"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/bridges/otelslog"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/log/global"
	"go.opentelemetry.io/otel/propagation"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// setup installs global tracer and logger providers. The exporters read
// OTEL_EXPORTER_OTLP_ENDPOINT (default localhost:4317): point it at the
// local agent or sidecar, not at a backend across the network, so the
// process never blocks or buffers for long on a slow backend.
func setup(ctx context.Context) (shutdown func(context.Context) error, err error) {
	// Resource attributes: set once, on every span and log record.
	res := resource.NewWithAttributes("",
		attribute.String("service.name", "hello"),
		attribute.String("service.version", "1.0.0"),
		attribute.String("deployment.environment.name", "dev"),
	)
	spans, err := otlptracegrpc.New(ctx, otlptracegrpc.WithInsecure())
	if err != nil {
		return nil, err
	}
	logs, err := otlploggrpc.New(ctx, otlploggrpc.WithInsecure())
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSpanProcessor(stampIdentity{}),
		sdktrace.WithBatcher(spans), // batches in the background; never blocks a request
	)
	lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewBatchProcessor(logs)))
	otel.SetTracerProvider(tp)
	global.SetLoggerProvider(lp)
	// W3C trace context and baggage on every outgoing call.
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	// slog through the OTel bridge: every record logged with a context
	// carries that context's trace_id and span_id.
	slog.SetDefault(slog.New(redact{otelslog.NewHandler("hello")}))
	return func(ctx context.Context) error { return errors.Join(tp.Shutdown(ctx), lp.Shutdown(ctx)) }, nil
}

// stampIdentity copies who the request is for, carried in baggage, onto
// every span, in this service and in every service the baggage reaches.
type stampIdentity struct{}

func (stampIdentity) OnStart(ctx context.Context, s sdktrace.ReadWriteSpan) {
	if m := baggage.FromContext(ctx).Member("user.id"); m.Key() != "" {
		s.SetAttributes(attribute.String("user.id", m.Value()))
	}
}
func (stampIdentity) OnEnd(sdktrace.ReadOnlySpan)      {}
func (stampIdentity) Shutdown(context.Context) error   { return nil }
func (stampIdentity) ForceFlush(context.Context) error { return nil }

// redact drops secrets from log attributes before they leave the process.
// (The demo also redacts span attributes in its exporter.)
type redact struct{ slog.Handler }

func (h redact) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if k := strings.ToLower(a.Key); k == "password" || k == "token" || k == "email" {
			a = slog.String(a.Key, "[REDACTED]")
		}
		out.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	shutdown, err := setup(ctx)
	if err != nil {
		log.Fatal(err)
	}
	tracer := otel.Tracer("hello")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		// A manual span for a business step; logging with its context
		// links the line to this span.
		ctx, span := tracer.Start(ctx, "compose greeting")
		defer span.End()
		slog.InfoContext(ctx, "greeting", "email", "someone@example.com") // logged as [REDACTED]
		w.Write([]byte("hello\n"))
	})
	// The edge puts the caller's identity into baggage before the server
	// span starts; otelhttp then traces the request.
	edge := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if m, err := baggage.NewMember("user.id", r.Header.Get("X-User-ID")); err == nil && m.Value() != "" {
				bag, _ := baggage.New(m)
				r = r.WithContext(baggage.ContextWithBaggage(r.Context(), bag))
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := &http.Server{Addr: "localhost:8080", Handler: edge(otelhttp.NewHandler(mux, "hello")), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Print(err)
	}
	flush, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := shutdown(flush); err != nil {
		log.Print(err)
	}
}
