package tailsamplingprocessor

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	upstream "github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
)

// The corpus: traces of 2 to 12 spans over a few services, each with at
// most one trigger, a property that one policy of testdata/differential.yaml
// keeps (or, for synthetic, drops). Traces without one are kept only by
// the probabilistic policies.
var triggers = map[string][]string{
	"or": {"slow", "server-errors", "errors", "gold", "big", "debug", "ottl-attribute", "ottl-event",
		"tracestate", "billing-client-errors", "unknown-services", "synthetic"},
	"composite": {"server-errors", "gold", "slow"},
	"summaries": {"slow", "server-errors", "errors", "gold", "big", "debug", "flagged",
		"tracestate", "billing-client-errors", "unknown-services", "synthetic"},
	"composite-summaries": {"server-errors", "gold", "slow"},
}

var services = []string{"frontend", "checkout", "billing", "cart", "search", "ads"}

type genTrace struct {
	id      pcommon.TraceID
	trigger string // "" for none
	late    bool   // one more span arrives after the decision
}

type genSpan struct {
	trace   *genTrace
	service string
	scope   string
	build   func(ptrace.Span)
}

// corpus returns the traces and their spans, split in two parts that arrive
// in separate requests before the decision (first[i] and second[i] are
// trace i's), and the late spans.
func corpus(seed uint64, n int, kinds []string) (traces []*genTrace, first, second [][]genSpan, late []genSpan) {
	r := rand.New(rand.NewPCG(seed, 1))
	base := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	for i := range n {
		t := &genTrace{late: r.IntN(20) == 0}
		binary.BigEndian.PutUint64(t.id[:8], r.Uint64())
		binary.BigEndian.PutUint64(t.id[8:], r.Uint64())
		if r.IntN(3) == 0 {
			t.trigger = kinds[r.IntN(len(kinds))]
		}
		traces = append(traces, t)
		spans := 2 + r.IntN(11)
		if t.trigger == "big" {
			spans = 30 + r.IntN(10)
		}
		start := base.Add(time.Duration(i) * time.Millisecond)
		rootID := spanID(t.id, 0)
		mk := func(k int) genSpan {
			svc := services[(k+int(t.id[0]))%len(services)]
			switch {
			case k == 0 && t.trigger == "unknown-services":
			case t.trigger == "unknown-services":
				svc = "legacy"
			case k == 0:
				svc = "frontend"
			case t.trigger == "billing-client-errors" && k == 1:
				svc = "billing"
			}
			if t.trigger == "unknown-services" {
				svc = "legacy"
			}
			trig := t.trigger
			return genSpan{trace: t, service: svc, scope: []string{"lib/http", "lib/db"}[k%2], build: func(s ptrace.Span) {
				s.SetTraceID(t.id)
				s.SetSpanID(spanID(t.id, k))
				if k > 0 {
					s.SetParentSpanID(rootID)
				}
				s.SetName(fmt.Sprintf("op-%d", k%5))
				s.SetKind(ptrace.SpanKindServer)
				d := time.Duration(1+k) * time.Millisecond
				if k == 0 {
					d = 50 * time.Millisecond
					if trig == "slow" {
						d = 2 * time.Second
					}
				}
				s.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
				s.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(d)))
				a := s.Attributes()
				a.PutStr("customer.tier", "free")
				a.PutInt("http.response.status_code", 200)
				a.PutBool("debug.keep", false)
				if k != 1 {
					return
				}
				// The trigger sits on one span, not the root: policies read
				// every span of the trace.
				switch trig {
				case "server-errors":
					a.PutInt("http.response.status_code", 503)
				case "errors":
					s.Status().SetCode(ptrace.StatusCodeError)
				case "gold":
					a.PutStr("customer.tier", "gold")
				case "debug":
					a.PutBool("debug.keep", true)
				case "ottl-attribute":
					a.PutStr("feature", "checkout-v2")
				case "ottl-event":
					s.Events().AppendEmpty().SetName("boom")
				case "tracestate":
					s.TraceState().FromRaw("sl=keep,other=1")
				case "flagged":
					s.SetFlags(1) // W3C sampled
				case "billing-client-errors":
					a.PutInt("http.response.status_code", 404)
				case "synthetic":
					a.PutStr("synthetic", "true")
					s.Status().SetCode(ptrace.StatusCodeError) // kept by errors but for the drop
				}
			}}
		}
		var a, b []genSpan
		for k := range spans {
			if k%2 == 0 {
				a = append(a, mk(k))
			} else {
				b = append(b, mk(k))
			}
		}
		first, second = append(first, a), append(second, b)
		if t.late {
			late = append(late, mk(spans))
		}
	}
	return traces, first, second, late
}

func spanID(t pcommon.TraceID, k int) pcommon.SpanID {
	var id pcommon.SpanID
	copy(id[:4], t[:4])
	binary.BigEndian.PutUint32(id[4:], uint32(k+1))
	return id
}

// request builds one request of spans, one ResourceSpans per service and
// one ScopeSpans per scope, spans of many traces mixed in each, as an
// agent's batch processor sends them.
func request(spans []genSpan) ptrace.Traces {
	td := ptrace.NewTraces()
	rss := map[string]ptrace.ResourceSpans{}
	sss := map[[2]string]ptrace.ScopeSpans{}
	for _, g := range spans {
		rs, ok := rss[g.service]
		if !ok {
			rs = td.ResourceSpans().AppendEmpty()
			rs.Resource().Attributes().PutStr("service.name", g.service)
			rs.Resource().Attributes().PutStr("host.name", "node-"+g.service)
			rss[g.service] = rs
		}
		key := [2]string{g.service, g.scope}
		ss, ok := sss[key]
		if !ok {
			ss = rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName(g.scope)
			ss.Scope().SetVersion("1.0")
			sss[key] = ss
		}
		g.build(ss.Spans().AppendEmpty())
	}
	return td
}

func loadDifferential(t *testing.T, name string) (*Config, *upstream.Config) {
	cm, err := confmaptest.LoadConf("testdata/differential.yaml")
	require.NoError(t, err)
	sub, err := cm.Sub(component.MustNewIDWithName("tail_sampling", name).String())
	require.NoError(t, err)
	ours := createDefaultConfig().(*Config)
	require.NoError(t, sub.Unmarshal(ours))
	require.NoError(t, confmap.Validate(ours))
	theirs := upstreamFactory.CreateDefaultConfig().(*upstream.Config)
	require.NoError(t, sub.Unmarshal(theirs))
	require.NoError(t, confmap.Validate(theirs))
	return ours, theirs
}

// decisionCounter counts the distinct traces upstream's processor decided.
type decisionCounter struct {
	mu      sync.Mutex
	decided map[pcommon.TraceID]bool
}

func (d *decisionCounter) hook(_ context.Context, id pcommon.TraceID, _ *upstream.TraceData) {
	d.mu.Lock()
	d.decided[id] = true
	d.mu.Unlock()
}

func (d *decisionCounter) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.decided)
}

// Upstream's processor and this one, in one test binary, on the same
// requests, keep the same traces and forward the same spans, late spans
// included. Stateful policies (rate and bytes limiting, composite's
// allocation) are configured not to bind: where they bind, which traces
// of one tick they keep depends on the order in which upstream reads its
// tick's batch, a Go map's, so two upstream processors differ from each
// other there.
func TestDecisionsAsUpstream(t *testing.T) {
	for _, tc := range []struct {
		name      string
		traces    int
		seed      uint64
		summaries bool // decided on summaries of the spans
	}{{"or", 20000, 1, false}, {"composite", 5000, 2, false}, {"summaries", 20000, 3, true}, {"composite-summaries", 5000, 4, true}} {
		t.Run(tc.name, func(t *testing.T) {
			ours, theirs := loadDifferential(t, tc.name)
			ours.Buffer.Path = t.TempDir()
			counter := &decisionCounter{decided: map[pcommon.TraceID]bool{}}
			theirs.Options = []upstream.Option{upstream.WithSampledHooks(counter.hook), upstream.WithNonSampledHooks(counter.hook)}

			ourSink, theirSink := new(consumertest.TracesSink), new(consumertest.TracesSink)
			set := processortest.NewNopSettings(Type)
			set.ID = component.MustNewIDWithName("tail_sampling", tc.name)
			op, err := createTraces(t.Context(), set, ours, ourSink)
			require.NoError(t, err)
			require.Equal(t, tc.summaries, op.(*tailProcessor).summaries, "decides on summaries: %s", op.(*tailProcessor).noSummaries)
			uset := processortest.NewNopSettings(upstreamFactory.Type())
			up, err := upstreamFactory.CreateTraces(t.Context(), uset, theirs, theirSink)
			require.NoError(t, err)
			host := componenttest.NewNopHost()
			require.NoError(t, op.Start(t.Context(), host))
			require.NoError(t, up.Start(t.Context(), host))
			stopped := false
			stop := func() {
				if !stopped {
					stopped = true
					require.NoError(t, op.Shutdown(context.Background()))
					require.NoError(t, up.Shutdown(context.Background()))
				}
			}
			defer stop()

			traces, first, second, late := corpus(tc.seed, tc.traces, triggers[tc.name])
			send := func(spans []genSpan) {
				td := request(spans)
				theirTD := ptrace.NewTraces()
				td.CopyTo(theirTD)
				require.NoError(t, op.ConsumeTraces(t.Context(), td))
				require.NoError(t, up.ConsumeTraces(t.Context(), theirTD))
			}
			// 500 traces at a time, each in two requests one after the
			// other, so that each trace is whole long before its decision
			// however slow the machine.
			for lo := 0; lo < len(traces); lo += 500 {
				hi := min(lo+500, len(traces))
				send(slices.Concat(first[lo:hi]...))
				send(slices.Concat(second[lo:hi]...))
			}
			buf := op.(*tailProcessor).buf
			require.Eventually(t, func() bool {
				st := buf.snapshot()
				return counter.count() == len(traces) && st.pending == 0 && st.released == 0 && st.decided == int64(len(traces))
			}, 3*time.Minute, 20*time.Millisecond, "every trace decided by both")
			require.Zero(t, buf.snapshot().readErrors)

			ourKept, theirKept := keptTraces(ourSink), keptTraces(theirSink)
			require.Equal(t, len(theirKept), len(ourKept), "traces kept")
			for id := range theirKept {
				require.True(t, ourKept[id], "trace %s kept by upstream only", id)
			}
			byTrigger := map[string][2]int{}
			for _, tr := range traces {
				c := byTrigger[tr.trigger]
				c[1]++
				if ourKept[tr.id] {
					c[0]++
				}
				byTrigger[tr.trigger] = c
			}
			for _, trig := range triggers[tc.name] {
				c := byTrigger[trig]
				require.Positive(t, c[1], "the corpus has %s traces", trig)
				if trig == "synthetic" {
					require.Zero(t, c[0], "the drop policy drops every synthetic trace, errors and all")
				} else {
					require.Equal(t, c[1], c[0], "every %s trace is kept", trig)
				}
			}
			none := byTrigger[""]
			require.Greater(t, none[0], 0, "the probabilistic policy keeps some traces without a trigger")
			require.Less(t, none[0], none[1]/4, "and not most of them")
			t.Logf("kept %d of %d traces; without a trigger %d of %d", len(ourKept), len(traces), none[0], none[1])

			// Late spans: those of kept traces are forwarded at once, the
			// others dropped, by both; none waits in the buffer again.
			lateKept := 0
			for _, g := range late {
				if ourKept[g.trace.id] {
					lateKept++
				}
			}
			require.Positive(t, lateKept)
			before, theirBefore := ourSink.SpanCount(), theirSink.SpanCount()
			send(late)
			require.Eventually(t, func() bool {
				return ourSink.SpanCount() == before+lateKept && theirSink.SpanCount() == theirBefore+lateKept
			}, time.Minute, 20*time.Millisecond, "late spans of kept traces forwarded")
			st := buf.snapshot()
			require.Zero(t, st.pending+st.released, "late spans of decided traces do not wait again")

			stop()
			ourSpans, theirSpans := spanSet(t, ourSink), spanSet(t, theirSink)
			require.Equal(t, len(theirSpans), len(ourSpans), "spans forwarded")
			for k, v := range theirSpans {
				if ourSpans[k] != v {
					t.Fatalf("span %s differs, or is forwarded by upstream only", k)
				}
			}
		})
	}
}

func keptTraces(s *consumertest.TracesSink) map[pcommon.TraceID]bool {
	kept := map[pcommon.TraceID]bool{}
	for _, td := range s.AllTraces() {
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, sp := range ss.Spans().All() {
					kept[sp.TraceID()] = true
				}
			}
		}
	}
	return kept
}

// spanSet encodes every forwarded span with its resource and scope, keyed
// by trace and span ID; a span forwarded twice is an error.
func spanSet(t *testing.T, s *consumertest.TracesSink) map[string]string {
	out := map[string]string{}
	var m ptrace.ProtoMarshaler
	for _, td := range s.AllTraces() {
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, sp := range ss.Spans().All() {
					one := ptrace.NewTraces()
					ors := one.ResourceSpans().AppendEmpty()
					rs.Resource().CopyTo(ors.Resource())
					oss := ors.ScopeSpans().AppendEmpty()
					ss.Scope().CopyTo(oss.Scope())
					sp.CopyTo(oss.Spans().AppendEmpty())
					b, err := m.MarshalTraces(one)
					require.NoError(t, err)
					key := sp.TraceID().String() + "/" + sp.SpanID().String()
					if _, dup := out[key]; dup {
						t.Fatalf("span %s forwarded twice", key)
					}
					out[key] = string(b)
				}
			}
		}
	}
	return out
}

var _ processor.Traces = (*tailProcessor)(nil)
