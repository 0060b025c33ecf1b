package demo

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// system is the demo's services: an API that authenticates each request
// with the auth service, queries a (simulated) database and cache,
// enqueues an order for the worker on an in-process queue, and sometimes
// asks the CPU-heavy report service for a rendering.
type system struct {
	api, auth, worker, report *telemetry
	authURL, reportURL, base  string
	queue                     chan message
	servers                   []*http.Server
	sc                        *schedule
	client                    *http.Client
	jobs                      metric.Int64Counter
	mu                        sync.Mutex
	rnd                       *rand.Rand
	wg                        sync.WaitGroup
}

// message is a queued order; headers carry the trace context and baggage.
type message struct {
	headers map[string]string
	order   int
}

func (s *system) rand() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rnd.Float64()
}

// serve runs h behind otelhttp's server instrumentation; edge, when set,
// runs before it (outside the server span).
func (s *system) serve(t *telemetry, h http.Handler, edge func(http.Handler) http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	var handler http.Handler = otelhttp.NewHandler(h, t.name,
		otelhttp.WithTracerProvider(t.tp), otelhttp.WithMeterProvider(t.mp), otelhttp.WithPropagators(t.prop),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path }))
	if edge != nil {
		handler = edge(handler)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	s.servers = append(s.servers, srv)
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), nil
}

// outgoing returns an HTTP client instrumented for service t: client spans
// and W3C headers on every request.
func outgoing(t *telemetry) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: otelhttp.NewTransport(http.DefaultTransport,
		otelhttp.WithTracerProvider(t.tp), otelhttp.WithMeterProvider(t.mp), otelhttp.WithPropagators(t.prop),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }))}
}

func (s *system) start() error {
	var err error
	if s.authURL, err = s.serve(s.auth, http.HandlerFunc(s.handleAuth), nil); err != nil {
		return err
	}
	if s.reportURL, err = s.serve(s.report, http.HandlerFunc(s.handleReport), nil); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /checkout", s.handleCheckout)
	if s.base, err = s.serve(s.api, mux, identify); err != nil {
		return err
	}
	s.client = &http.Client{Timeout: 15 * time.Second}
	s.jobs, _ = s.worker.meter.Int64Counter("demo.orders.processed", metric.WithDescription("orders the worker finished"))
	s.wg.Add(1)
	go s.work()
	return nil
}

// identify is the API's edge: it reads who is calling and puts user,
// organisation and request ID into baggage, before the server span
// starts, so that every span of the request carries them.
func identify(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var members []baggage.Member
		for _, kv := range [][2]string{{"user.id", r.Header.Get("X-User-ID")}, {"organisation.id", r.Header.Get("X-Org-ID")}, {"request.id", r.Header.Get("X-Request-ID")}} {
			if kv[1] == "" {
				continue
			}
			if m, err := baggage.NewMember(kv[0], kv[1]); err == nil {
				members = append(members, m)
			}
		}
		if bag, err := baggage.New(members...); err == nil {
			r = r.WithContext(baggage.ContextWithBaggage(r.Context(), bag))
		}
		next.ServeHTTP(w, r)
	})
}

var errUpstream = errors.New("upstream failure")

func (s *system) handleCheckout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	span := trace.SpanFromContext(ctx)
	user := r.Header.Get("X-User-ID")
	email := "user" + user + "@example.com"
	span.SetAttributes(attribute.String("user.email", email), attribute.String("http.route", "/checkout"))
	s.api.log.InfoContext(ctx, "checkout started", "email", email, "password", "hunter2")

	fail := func(step string, err error) {
		span.RecordError(err, trace.WithStackTrace(true))
		span.SetStatus(codes.Error, step+": "+err.Error())
		s.api.log.ErrorContext(ctx, "checkout failed", "step", step, "error", err.Error())
		http.Error(w, err.Error(), http.StatusBadGateway)
	}

	// 1. Authenticate with the auth service over HTTP.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.authURL+"/verify", nil)
	req.Header.Set("Authorization", "Bearer tok-"+user)
	resp, err := outgoing(s.api).Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%w: auth answered %d", errUpstream, resp.StatusCode)
		}
	}
	if err != nil {
		fail("auth", err)
		return
	}

	// 2. A business step, as a manual span.
	ctx2, step := s.api.tracer.Start(ctx, "apply discount")
	step.SetAttributes(attribute.Int("app.items.count", 1+int(s.rand()*5)))
	sleepCtx(ctx2, time.Millisecond)
	step.End()

	// 3. Cache, then database.
	s.clientCall(ctx, s.api, "GET cart", "redis", "GET cart:"+user, time.Millisecond)
	dbTime := 3 * time.Millisecond
	if s.sc.now().slowDB {
		dbTime = 400 * time.Millisecond
	}
	s.clientCall(ctx, s.api, "SELECT orders", "postgresql", "SELECT * FROM orders WHERE user_id = $1", dbTime)

	// 4. Hand the order to the worker through the queue, with the trace
	// context and baggage in the message headers.
	pctx, pub := s.api.tracer.Start(ctx, "orders publish", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "inproc"), attribute.String("messaging.destination.name", "orders"), attribute.String("messaging.operation.type", "send")))
	h := map[string]string{}
	s.api.prop.Inject(pctx, propagation.MapCarrier(h))
	select {
	case s.queue <- message{headers: h, order: int(s.rand() * 1e6)}:
	default:
		pub.SetStatus(codes.Error, "queue full")
	}
	pub.End()

	// 5. One request in four renders a report.
	if s.rand() < 0.25 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.reportURL+"/render", nil)
		if resp, err := outgoing(s.api).Do(req); err == nil {
			resp.Body.Close()
		}
	}
	s.api.log.InfoContext(ctx, "checkout done", "user", user)
	w.WriteHeader(http.StatusOK)
}

// clientCall records a call to a simulated dependency as a client span.
func (s *system) clientCall(ctx context.Context, t *telemetry, name, system, query string, d time.Duration) {
	ctx, sp := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("db.system", system), attribute.String("db.system.name", system),
		attribute.String("db.query.text", query), attribute.String("server.address", system+".internal")))
	sleepCtx(ctx, d)
	if d > 100*time.Millisecond {
		t.log.WarnContext(ctx, "slow query", "db.system", system, "duration_ms", d.Milliseconds())
	}
	sp.End()
}

func (s *system) handleAuth(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	span := trace.SpanFromContext(ctx)
	token := r.Header.Get("Authorization")
	span.SetAttributes(attribute.String("auth.token", token))
	if s.sc.now().errors && s.rand() < 0.6 {
		err := errors.New("token store unavailable")
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		s.auth.log.ErrorContext(ctx, "token verification failed", "token", token, "error", err.Error())
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	s.clientCall(ctx, s.auth, "GET session", "redis", "GET session", time.Millisecond)
	s.auth.log.InfoContext(ctx, "token verified", "token", token)
}

func (s *system) handleReport(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	_, sp := s.report.tracer.Start(ctx, "render report")
	// CPU work: hash a few hundred kilobytes.
	buf := make([]byte, 256<<10)
	sum := sha256.Sum256(buf)
	for range 8 {
		sum = sha256.Sum256(append(buf[:0:0], sum[:]...))
	}
	sp.SetAttributes(attribute.String("report.digest", fmt.Sprintf("%x", sum[:4])))
	sp.End()
	s.report.log.InfoContext(ctx, "report rendered")
}

// work consumes the queue: each message continues its trace with a
// consumer span whose parent is the producer span.
func (s *system) work() {
	defer s.wg.Done()
	for m := range s.queue {
		ctx := s.worker.prop.Extract(context.Background(), propagation.MapCarrier(m.headers))
		ctx, sp := s.worker.tracer.Start(ctx, "orders process", trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("messaging.system", "inproc"), attribute.String("messaging.destination.name", "orders"),
				attribute.String("messaging.operation.type", "process"), attribute.String("app.order.id", strconv.Itoa(m.order))))
		s.clientCall(ctx, s.worker, "INSERT shipments", "postgresql", "INSERT INTO shipments (order_id) VALUES ($1)", 2*time.Millisecond)
		s.jobs.Add(ctx, 1)
		s.worker.log.InfoContext(ctx, "order processed", "order", m.order)
		sp.End()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (s *system) stop(ctx context.Context) {
	for _, srv := range s.servers {
		_ = srv.Shutdown(ctx)
	}
	close(s.queue)
	s.wg.Wait()
}
