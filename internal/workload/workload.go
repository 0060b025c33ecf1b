// Package workload generates realistic, reproducible telemetry for tests and
// benchmarks: multi-service traces of 8 to 20 spans with the resource and
// span attributes OpenTelemetry SDKs and instrumentations set, about 10% of
// traces failing, some slow spans, and log records linked to their spans by
// trace_id and span_id.
//
// Output depends only on the seed and the start time, so a benchmark or a
// test can regenerate exactly what it sent.
package workload

import (
	"fmt"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Options tune the generator. Zero values take the defaults.
type Options struct {
	// ErrorRate is the fraction of traces that fail (default 0.10).
	ErrorRate float64
	// SlowRate is the fraction of traces with one very slow span (0.05).
	SlowRate float64
	// TraceInterval is the time between trace starts (default 1ms).
	TraceInterval time.Duration
	// Users is the number of distinct app.user.id values (default 5000).
	Users int
}

// Generator produces batches. It is not safe for concurrent use; create one
// per goroutine with different seeds.
type Generator struct {
	rnd      *rand.Rand
	opts     Options
	services []*service
	next     time.Time
}

type service struct {
	name      string
	instances []pcommon.Resource
	routes    []string
	downs     []string // services it calls
	db        string   // database it owns, "" for none
	language  string
}

var topology = []struct {
	name, lang, db string
	routes, downs  []string
}{
	{"frontend", "nodejs", "", []string{"/", "/cart", "/product/{id}", "/checkout", "/api/recommendations"}, []string{"product-catalog", "cart", "recommendation", "checkout", "ad", "currency"}},
	{"checkout", "go", "postgresql", []string{"/oteldemo.CheckoutService/PlaceOrder"}, []string{"cart", "payment", "shipping", "email", "currency", "product-catalog"}},
	{"cart", "dotnet", "redis", []string{"/oteldemo.CartService/GetCart", "/oteldemo.CartService/AddItem"}, nil},
	{"product-catalog", "go", "postgresql", []string{"/oteldemo.ProductCatalogService/GetProduct", "/oteldemo.ProductCatalogService/ListProducts"}, nil},
	{"recommendation", "python", "", []string{"/oteldemo.RecommendationService/ListRecommendations"}, []string{"product-catalog"}},
	{"payment", "nodejs", "", []string{"/oteldemo.PaymentService/Charge"}, nil},
	{"shipping", "rust", "", []string{"/get-quote", "/ship-order"}, []string{"quote"}},
	{"quote", "php", "", []string{"/getquote"}, nil},
	{"email", "ruby", "", []string{"/send_order_confirmation"}, nil},
	{"currency", "cpp", "", []string{"/oteldemo.CurrencyService/Convert"}, nil},
	{"ad", "java", "", []string{"/oteldemo.AdService/GetAds"}, nil},
	{"accounting", "dotnet", "postgresql", []string{"orders process"}, nil},
}

// New returns a generator whose first trace starts at start.
func New(seed uint64, start time.Time, opts Options) *Generator {
	if opts.ErrorRate == 0 {
		opts.ErrorRate = 0.10
	}
	if opts.SlowRate == 0 {
		opts.SlowRate = 0.05
	}
	if opts.TraceInterval == 0 {
		opts.TraceInterval = time.Millisecond
	}
	if opts.Users == 0 {
		opts.Users = 5000
	}
	g := &Generator{rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), opts: opts, next: start}
	for _, t := range topology {
		s := &service{name: t.name, routes: t.routes, downs: t.downs, db: t.db, language: t.lang}
		for i := range 3 {
			r := pcommon.NewResource()
			a := r.Attributes()
			a.PutStr("service.name", t.name)
			a.PutStr("service.namespace", "shop")
			a.PutStr("service.version", fmt.Sprintf("1.%d.%d", len(t.name)%5, i))
			a.PutStr("service.instance.id", fmt.Sprintf("%s-%08x", t.name, g.rnd.Uint32()))
			a.PutStr("deployment.environment.name", "production")
			a.PutStr("host.name", fmt.Sprintf("node-%d.eu-west-1.compute.internal", g.rnd.IntN(40)))
			a.PutStr("k8s.namespace.name", "shop")
			a.PutStr("k8s.pod.name", fmt.Sprintf("%s-7d9f8b%04x-%05x", t.name, g.rnd.IntN(1<<16), g.rnd.IntN(1<<20)))
			a.PutStr("telemetry.sdk.language", t.lang)
			a.PutStr("telemetry.sdk.name", "opentelemetry")
			a.PutStr("telemetry.sdk.version", "1.38.0")
			s.instances = append(s.instances, r)
		}
		g.services = append(g.services, s)
	}
	return g
}

func (g *Generator) svc(name string) *service {
	for _, s := range g.services {
		if s.name == name {
			return s
		}
	}
	return g.services[0]
}

// batch accumulates one ResourceSpans per service instance.
type batch struct {
	td   ptrace.Traces
	ld   plog.Logs
	rs   map[*pcommon.Resource]ptrace.SpanSlice
	rl   map[*pcommon.Resource]plog.LogRecordSlice
	gen  *Generator
	span int
	logs int
}

func (b *batch) spans(s *service, inst int) ptrace.SpanSlice {
	key := &s.instances[inst]
	if ss, ok := b.rs[key]; ok {
		return ss
	}
	rs := b.td.ResourceSpans().AppendEmpty()
	s.instances[inst].CopyTo(rs.Resource())
	sc := rs.ScopeSpans().AppendEmpty()
	sc.Scope().SetName("io.opentelemetry." + s.language)
	sc.Scope().SetVersion("1.38.0")
	b.rs[key] = sc.Spans()
	return sc.Spans()
}

func (b *batch) records(s *service, inst int) plog.LogRecordSlice {
	key := &s.instances[inst]
	if l, ok := b.rl[key]; ok {
		return l
	}
	rl := b.ld.ResourceLogs().AppendEmpty()
	s.instances[inst].CopyTo(rl.Resource())
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("io.opentelemetry." + s.language + ".logs")
	b.rl[key] = sl.LogRecords()
	return sl.LogRecords()
}

// Batch generates n traces and their logs. Spans and records of one
// service instance share a ResourceSpans / ResourceLogs, as an SDK sends.
func (g *Generator) Batch(n int) (ptrace.Traces, plog.Logs) {
	b := &batch{td: ptrace.NewTraces(), ld: plog.NewLogs(), rs: map[*pcommon.Resource]ptrace.SpanSlice{}, rl: map[*pcommon.Resource]plog.LogRecordSlice{}, gen: g}
	for range n {
		g.trace(b)
		g.next = g.next.Add(g.opts.TraceInterval)
	}
	return b.td, b.ld
}

type traceState struct {
	id      pcommon.TraceID
	budget  int
	failing bool
	slow    bool
	user    int64
	root    pcommon.SpanID
}

func (g *Generator) trace(b *batch) {
	var id pcommon.TraceID
	u := g.rnd.Uint64()
	v := g.rnd.Uint64()
	for i := range 8 {
		id[i] = byte(u >> (8 * i))
		id[8+i] = byte(v >> (8 * i))
	}
	ts := &traceState{
		id:      id,
		budget:  8 + g.rnd.IntN(13), // 8..20 spans
		failing: g.rnd.Float64() < g.opts.ErrorRate,
		slow:    g.rnd.Float64() < g.opts.SlowRate,
		user:    int64(g.rnd.IntN(g.opts.Users)),
	}
	start := g.next
	front := g.svc("frontend")
	g.server(b, ts, front, pcommon.SpanID{}, start, true)
	// Fill the remaining budget with internal spans under the root span so
	// every trace lands in 8..20 spans and has exactly one root.
	for ts.budget > 0 {
		g.internal(b, ts, front, ts.root, start)
	}
}

func (g *Generator) spanID() pcommon.SpanID {
	var id pcommon.SpanID
	u := g.rnd.Uint64() | 1
	for i := range 8 {
		id[i] = byte(u >> (8 * i))
	}
	return id
}

var methods = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}

// server emits a SERVER span for s and the work under it; it returns the
// span's end and whether it failed.
func (g *Generator) server(b *batch, ts *traceState, s *service, parent pcommon.SpanID, start time.Time, root bool) (time.Time, bool) {
	inst := g.rnd.IntN(len(s.instances))
	sp := g.spans(b, s, inst)
	sp.SetTraceID(ts.id)
	id := g.spanID()
	sp.SetSpanID(id)
	sp.SetParentSpanID(parent)
	sp.SetKind(ptrace.SpanKindServer)
	if root {
		ts.root = id
	}
	route := s.routes[g.rnd.IntN(len(s.routes))]
	method := methods[g.rnd.IntN(len(methods))]
	if root {
		sp.SetName(method + " " + route)
	} else {
		sp.SetName(route)
	}
	ts.budget--
	a := sp.Attributes()
	a.PutStr("http.request.method", method)
	a.PutStr("http.route", route)
	a.PutStr("url.path", g.path(route))
	a.PutStr("url.scheme", "http")
	a.PutStr("server.address", s.name)
	a.PutInt("server.port", 8080)
	a.PutStr("network.protocol.version", "1.1")
	a.PutStr("client.address", fmt.Sprintf("10.2.%d.%d", g.rnd.IntN(8), g.rnd.IntN(256)))
	a.PutStr("user_agent.original", agents[g.rnd.IntN(len(agents))])
	a.PutInt("app.user.id", ts.user)

	t := start.Add(time.Duration(50+g.rnd.IntN(400)) * time.Microsecond)
	failed := false
	// Downstream calls and database work, while budget lasts.
	calls := 1 + g.rnd.IntN(3)
	for c := 0; c < calls && ts.budget >= 2; c++ {
		var f bool
		if len(s.downs) > 0 && g.rnd.IntN(3) > 0 {
			t, f = g.client(b, ts, s, inst, id, t)
		} else if s.db != "" {
			t, f = g.dbCall(b, ts, s, inst, id, t)
		} else {
			t = g.internal(b, ts, s, id, t)
		}
		failed = failed || f
	}
	if ts.failing && !failed && ts.budget <= 2 && !root {
		failed = true // the failure originates here
	}
	end := t.Add(time.Duration(100+g.rnd.IntN(900)) * time.Microsecond)
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(end))
	code := int64(200)
	if failed || (root && ts.failing) {
		failed = true
		code = 500
		sp.Status().SetCode(ptrace.StatusCodeError)
		sp.Status().SetMessage("upstream request failed")
		ev := sp.Events().AppendEmpty()
		ev.SetName("exception")
		ev.SetTimestamp(pcommon.NewTimestampFromTime(end))
		ev.Attributes().PutStr("exception.type", "UpstreamError")
		ev.Attributes().PutStr("exception.message", "request to downstream service failed: deadline exceeded")
	}
	a.PutInt("http.response.status_code", code)
	g.log(b, ts, s, inst, id, end, failed, route, code)
	return end, failed
}

func (g *Generator) spans(b *batch, s *service, inst int) ptrace.Span {
	b.span++
	return b.spans(s, inst).AppendEmpty()
}

func (g *Generator) client(b *batch, ts *traceState, s *service, inst int, parent pcommon.SpanID, start time.Time) (time.Time, bool) {
	down := g.svc(s.downs[g.rnd.IntN(len(s.downs))])
	sp := g.spans(b, s, inst)
	sp.SetTraceID(ts.id)
	id := g.spanID()
	sp.SetSpanID(id)
	sp.SetParentSpanID(parent)
	sp.SetKind(ptrace.SpanKindClient)
	route := down.routes[g.rnd.IntN(len(down.routes))]
	sp.SetName(route)
	ts.budget--
	a := sp.Attributes()
	a.PutStr("rpc.system", "grpc")
	a.PutStr("rpc.service", down.name)
	a.PutStr("rpc.method", route)
	a.PutStr("server.address", down.name)
	a.PutInt("server.port", 8080)
	a.PutStr("network.peer.address", fmt.Sprintf("10.3.%d.%d", g.rnd.IntN(8), g.rnd.IntN(256)))
	a.PutStr("network.transport", "tcp")
	a.PutInt("app.user.id", ts.user)
	srvStart := start.Add(time.Duration(20+g.rnd.IntN(200)) * time.Microsecond)
	srvEnd, failed := g.server(b, ts, down, id, srvStart, false)
	end := srvEnd.Add(time.Duration(20+g.rnd.IntN(200)) * time.Microsecond)
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(end))
	status := int64(0)
	if failed {
		status = 14
		sp.Status().SetCode(ptrace.StatusCodeError)
	}
	a.PutInt("rpc.grpc.status_code", status)
	return end, failed
}

var queries = []string{
	"SELECT id, name, price FROM products WHERE id = $1",
	"SELECT * FROM orders WHERE user_id = $1 ORDER BY created_at DESC LIMIT 20",
	"INSERT INTO orders (user_id, total) VALUES ($1, $2)",
	"UPDATE inventory SET count = count - $1 WHERE product_id = $2",
}

func (g *Generator) dbCall(b *batch, ts *traceState, s *service, inst int, parent pcommon.SpanID, start time.Time) (time.Time, bool) {
	sp := g.spans(b, s, inst)
	sp.SetTraceID(ts.id)
	sp.SetSpanID(g.spanID())
	sp.SetParentSpanID(parent)
	sp.SetKind(ptrace.SpanKindClient)
	ts.budget--
	q := queries[g.rnd.IntN(len(queries))]
	op := q[:6]
	a := sp.Attributes()
	a.PutStr("db.system", s.db)
	a.PutStr("db.namespace", "shop")
	a.PutStr("db.operation.name", op)
	a.PutStr("db.query.text", q)
	a.PutStr("server.address", s.db+".shop.svc.cluster.local")
	a.PutInt("server.port", 5432)
	a.PutStr("network.peer.address", fmt.Sprintf("10.4.0.%d", g.rnd.IntN(16)))
	a.PutInt("db.response.returned_rows", int64(g.rnd.IntN(50)))
	sp.SetName(op + " shop")
	d := time.Duration(200+g.rnd.IntN(3000)) * time.Microsecond
	if ts.slow && g.rnd.IntN(2) == 0 {
		d *= 40 // a slow query
		ts.slow = false
	}
	end := start.Add(d)
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(end))
	failed := ts.failing && ts.budget <= 3 && g.rnd.IntN(2) == 0
	if failed {
		sp.Status().SetCode(ptrace.StatusCodeError)
		sp.Status().SetMessage("deadlock detected")
		a.PutStr("error.type", "40P01")
	}
	return end, failed
}

func (g *Generator) internal(b *batch, ts *traceState, s *service, parent pcommon.SpanID, start time.Time) time.Time {
	inst := g.rnd.IntN(len(s.instances))
	sp := g.spans(b, s, inst)
	sp.SetTraceID(ts.id)
	sp.SetSpanID(g.spanID())
	sp.SetParentSpanID(parent)
	sp.SetKind(ptrace.SpanKindInternal)
	ts.budget--
	fn := internalOps[g.rnd.IntN(len(internalOps))]
	sp.SetName(fn)
	a := sp.Attributes()
	a.PutStr("code.function.name", fn)
	a.PutStr("code.file.path", "src/"+s.name+"/handler."+ext[s.language])
	a.PutInt("code.line.number", int64(20+g.rnd.IntN(400)))
	a.PutInt("thread.id", int64(1+g.rnd.IntN(64)))
	a.PutBool("app.cache.hit", g.rnd.IntN(3) > 0)
	a.PutInt("app.items.count", int64(g.rnd.IntN(12)))
	a.PutDouble("app.price.total", float64(g.rnd.IntN(100000))/100)
	a.PutStr("app.currency", currencies[g.rnd.IntN(len(currencies))])
	a.PutInt("app.user.id", ts.user)
	a.PutStr("app.feature_flag", flags[g.rnd.IntN(len(flags))])
	d := time.Duration(10+g.rnd.IntN(500)) * time.Microsecond
	if ts.slow && g.rnd.IntN(4) == 0 {
		d *= 200
		ts.slow = false
	}
	end := start.Add(d)
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(end))
	return end
}

func (g *Generator) log(b *batch, ts *traceState, s *service, inst int, span pcommon.SpanID, at time.Time, failed bool, route string, code int64) {
	l := b.records(s, inst).AppendEmpty()
	b.logs++
	l.SetTimestamp(pcommon.NewTimestampFromTime(at))
	l.SetObservedTimestamp(pcommon.NewTimestampFromTime(at.Add(time.Duration(g.rnd.IntN(2000)) * time.Microsecond)))
	l.SetTraceID(ts.id)
	l.SetSpanID(span)
	l.SetFlags(plog.DefaultLogRecordFlags.WithIsSampled(true))
	a := l.Attributes()
	a.PutStr("http.route", route)
	a.PutInt("http.response.status_code", code)
	a.PutInt("app.user.id", ts.user)
	if failed {
		l.SetSeverityNumber(plog.SeverityNumberError)
		l.SetSeverityText("ERROR")
		l.Body().SetStr(fmt.Sprintf("request %s failed for user %d: upstream returned %d", route, ts.user, code))
		a.PutStr("exception.type", "UpstreamError")
		a.PutStr("exception.stacktrace", "UpstreamError: deadline exceeded\n    at handle ("+s.name+"/handler."+ext[s.language]+":112)\n    at serve (server:88)")
	} else {
		l.SetSeverityNumber(plog.SeverityNumberInfo)
		l.SetSeverityText("INFO")
		l.Body().SetStr(fmt.Sprintf("handled %s for user %d in %dms", route, ts.user, 1+g.rnd.IntN(40)))
	}
}

func (g *Generator) path(route string) string {
	if route == "/product/{id}" {
		return fmt.Sprintf("/product/%d", 1000+g.rnd.IntN(500))
	}
	return route
}

var (
	agents      = []string{"Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0", "Mozilla/5.0 (Macintosh) Safari/17.4", "python-requests/2.32", "okhttp/4.12.0", "grpc-go/1.66.0"}
	internalOps = []string{"validateCart", "computeTotals", "renderTemplate", "serialize", "loadConfig", "applyDiscount", "checkInventory", "encodeResponse"}
	currencies  = []string{"USD", "EUR", "GBP", "JPY", "CHF"}
	flags       = []string{"none", "new-checkout", "fast-cart", "ads-v2"}
	ext         = map[string]string{"go": "go", "nodejs": "js", "dotnet": "cs", "python": "py", "rust": "rs", "php": "php", "ruby": "rb", "cpp": "cc", "java": "java"}
)
