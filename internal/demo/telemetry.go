package demo

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"time"

	"go.opentelemetry.io/contrib/bridges/otelslog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// telemetry is one service's OpenTelemetry setup, done the way the seeds
// recommend for Go services: resource attributes set once, W3C trace
// context and baggage propagation, a span processor that stamps the
// request's user, organisation and request ID on every span, PII redacted
// before anything leaves the process, and logs through log/slog with the
// OTel bridge so that every line carries trace_id and span_id.
type telemetry struct {
	name   string
	tp     *sdktrace.TracerProvider
	lp     *sdklog.LoggerProvider
	mp     *sdkmetric.MeterProvider
	tracer trace.Tracer
	log    *slog.Logger
	prop   propagation.TextMapPropagator
	meter  metric.Meter
}

func newTelemetry(ctx context.Context, name, endpoint string) (*telemetry, error) {
	res := resource.NewWithAttributes("",
		attribute.String("service.name", name),
		attribute.String("service.namespace", "sightline-demo"),
		attribute.String("service.version", "1.4.2"),
		attribute.String("deployment.environment.name", "demo"),
		attribute.String("deployment.environment", "demo"),
	)
	te, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure())
	if err != nil {
		return nil, err
	}
	le, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(endpoint), otlploggrpc.WithInsecure())
	if err != nil {
		return nil, err
	}
	me, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(endpoint), otlpmetricgrpc.WithInsecure())
	if err != nil {
		return nil, err
	}
	t := &telemetry{name: name}
	t.tp = sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSpanProcessor(contextStamper{}),
		sdktrace.WithBatcher(redactingExporter{te}, sdktrace.WithBatchTimeout(time.Second)),
	)
	t.lp = sdklog.NewLoggerProvider(
		sdklog.WithResource(res),
		sdklog.WithProcessor(sdklog.NewBatchProcessor(le, sdklog.WithExportInterval(time.Second))),
	)
	t.mp = sdkmetric.NewMeterProvider(
		sdkmetric.WithResource(res),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(me, sdkmetric.WithInterval(10*time.Second))),
	)
	t.tracer = t.tp.Tracer("github.com/sightlinehq/sightline/internal/demo/" + name)
	t.meter = t.mp.Meter("github.com/sightlinehq/sightline/internal/demo/" + name)
	t.log = slog.New(redactingHandler{otelslog.NewHandler(name, otelslog.WithLoggerProvider(t.lp))})
	t.prop = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	return t, nil
}

// shutdown flushes everything buffered.
func (t *telemetry) shutdown(ctx context.Context) error {
	return errors.Join(t.tp.Shutdown(ctx), t.lp.Shutdown(ctx), t.mp.Shutdown(ctx))
}

// Baggage keys that contextStamper copies onto spans.
var stampedKeys = []string{"user.id", "organisation.id", "request.id"}

// contextStamper puts the request's identity, carried in W3C baggage
// across HTTP and the queue, on every span as it starts: each service
// sees who the work is for without passing it through every call.
type contextStamper struct{}

func (contextStamper) OnStart(ctx context.Context, s sdktrace.ReadWriteSpan) {
	bag := baggage.FromContext(ctx)
	for _, k := range stampedKeys {
		if m := bag.Member(k); m.Key() != "" {
			s.SetAttributes(attribute.String(k, m.Value()))
		}
	}
}
func (contextStamper) OnEnd(sdktrace.ReadOnlySpan)      {}
func (contextStamper) Shutdown(context.Context) error   { return nil }
func (contextStamper) ForceFlush(context.Context) error { return nil }

// Redaction: values of these keys, and anything that looks like an e-mail
// address, are replaced before export.
var (
	secretKeys = map[string]bool{"password": true, "token": true, "email": true, "user.email": true, "auth.token": true, "enduser.email": true}
	emailRe    = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`)
)

// Redacted is what replaces a secret.
const Redacted = "[REDACTED]"

func redactString(key, v string) (string, bool) {
	if secretKeys[key] {
		return Redacted, v != Redacted
	}
	if emailRe.MatchString(v) {
		return emailRe.ReplaceAllString(v, Redacted), true
	}
	return v, false
}

func redactAttrs(kvs []attribute.KeyValue) ([]attribute.KeyValue, bool) {
	changed := false
	for i, kv := range kvs {
		if kv.Value.Type() != attribute.STRING {
			continue
		}
		if v, ok := redactString(string(kv.Key), kv.Value.AsString()); ok {
			if !changed {
				kvs = append([]attribute.KeyValue(nil), kvs...)
				changed = true
			}
			kvs[i] = attribute.String(string(kv.Key), v)
		}
	}
	return kvs, changed
}

// redactingExporter redacts span and event attributes on their way out. A
// span's attributes are read-only once it ends, so the exporter hands on
// a redacted copy of the spans that need one.
type redactingExporter struct{ sdktrace.SpanExporter }

func (e redactingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := spans
	for i, s := range spans {
		attrs, changed := redactAttrs(s.Attributes())
		events := s.Events()
		for j, ev := range events {
			if a, ok := redactAttrs(ev.Attributes); ok {
				if !changed {
					events = append([]sdktrace.Event(nil), events...)
				}
				events[j].Attributes = a
				changed = true
			}
		}
		if !changed {
			continue
		}
		if &out[0] == &spans[0] {
			out = append([]sdktrace.ReadOnlySpan(nil), spans...)
		}
		stub := tracetest.SpanStubFromReadOnlySpan(s)
		stub.Attributes, stub.Events = attrs, events
		out[i] = stub.Snapshot()
	}
	return e.SpanExporter.ExportSpans(ctx, out)
}

// redactingHandler redacts log attributes and messages before the OTel
// slog bridge sees them.
type redactingHandler struct{ slog.Handler }

func (h redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	msg, _ := redactString("", r.Message)
	out := slog.NewRecord(r.Time, r.Level, msg, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Value.Kind() == slog.KindString {
			if v, ok := redactString(a.Key, a.Value.String()); ok {
				a = slog.String(a.Key, v)
			}
		}
		out.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h redactingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		if a.Value.Kind() == slog.KindString {
			if v, ok := redactString(a.Key, a.Value.String()); ok {
				a = slog.String(a.Key, v)
			}
		}
		out[i] = a
	}
	return redactingHandler{h.Handler.WithAttrs(out)}
}

func (h redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{h.Handler.WithGroup(name)}
}
