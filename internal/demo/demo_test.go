package demo

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestRedactingExporter(t *testing.T) {
	mem := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(contextStamper{}), sdktrace.WithSyncer(redactingExporter{mem}))
	m, _ := baggage.NewMember("user.id", "42")
	bag, _ := baggage.New(m)
	ctx := baggage.ContextWithBaggage(context.Background(), bag)
	_, sp := tp.Tracer("t").Start(ctx, "s", trace.WithAttributes(attribute.String("user.email", "a@b.example.com"), attribute.String("note", "mail x@y.org now"), attribute.Int("n", 1)))
	sp.AddEvent("login", trace.WithAttributes(attribute.String("password", "hunter2")))
	sp.End()
	_, clean := tp.Tracer("t").Start(ctx, "clean", trace.WithAttributes(attribute.String("k", "v")))
	clean.End()

	spans := mem.GetSpans()
	require.Len(t, spans, 2)
	attrs := map[string]string{}
	for _, a := range spans[0].Attributes {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	require.Equal(t, Redacted, attrs["user.email"])
	require.Equal(t, "mail "+Redacted+" now", attrs["note"])
	require.Equal(t, "1", attrs["n"])
	require.Equal(t, "42", attrs["user.id"], "stamped from baggage")
	require.Equal(t, Redacted, spans[0].Events[0].Attributes[0].Value.AsString())
	clean2 := map[string]string{}
	for _, a := range spans[1].Attributes {
		clean2[string(a.Key)] = a.Value.Emit()
	}
	require.Equal(t, map[string]string{"k": "v", "user.id": "42"}, clean2, "clean spans pass unchanged")
}

func TestRedactingHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(redactingHandler{slog.NewTextHandler(&buf, nil)}).With("token", "tok-1")
	log.Info("login by someone@example.com", "password", "hunter2", "user", "42")
	out := buf.String()
	for _, secret := range []string{"tok-1", "someone@example.com", "hunter2"} {
		require.NotContains(t, out, secret)
	}
	require.Contains(t, out, "user=42")
}

func TestSchedule(t *testing.T) {
	s := &schedule{start: time.Now().Add(-61 * time.Second), phases: cycle}
	require.Equal(t, "errors", s.now().name, "the error burst follows a minute of steady traffic")
	one := &schedule{start: time.Now(), phases: []phase{phases["slowdb"]}}
	require.True(t, one.now().slowDB)
}
