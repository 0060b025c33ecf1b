package tailsamplingprocessor

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/processor/processortest"
)

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time       { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) add(d time.Duration)  { c.ns.Add(int64(d)) }
func newFakeClock(t time.Time) *fakeClock { c := &fakeClock{}; c.ns.Store(t.UnixNano()); return c }

func startWithClock(t *testing.T, cfg *Config, clock *fakeClock, sink *consumertest.TracesSink) *tailProcessor {
	t.Helper()
	set := processortest.NewNopSettings(Type)
	set.ID = component.MustNewIDWithName("tail_sampling", "restart")
	p, err := createTraces(t.Context(), set, cfg, sink)
	require.NoError(t, err)
	tp := p.(*tailProcessor)
	tp.now = clock.now
	require.NoError(t, tp.Start(t.Context(), componenttest.NewNopHost()))
	return tp
}

// Traces pending at shutdown stay on disk and are decided after the next
// start at their original deadlines: not before, and each kept trace is
// forwarded once. A trace decided before the shutdown is not decided again.
// Both with whole spans decided on and with summaries.
func TestPendingTracesSurviveARestart(t *testing.T) {
	for _, name := range []string{"or", "summaries"} {
		t.Run(name, func(t *testing.T) { testPendingTracesSurviveARestart(t, name) })
	}
}

func testPendingTracesSurviveARestart(t *testing.T, name string) {
	cfg, _ := loadDifferential(t, name)
	cfg.DecisionWait = 30 * time.Second
	cfg.Buffer.Path = t.TempDir()
	clock := newFakeClock(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))

	sink1 := new(consumertest.TracesSink)
	p1 := startWithClock(t, cfg, clock, sink1)
	early, e1, e2, _ := corpus(7, 300, triggers[name])
	require.NoError(t, p1.ConsumeTraces(t.Context(), request(slices.Concat(e1...))))
	require.NoError(t, p1.ConsumeTraces(t.Context(), request(slices.Concat(e2...))))
	clock.add(31 * time.Second)
	require.Eventually(t, func() bool { return p1.buf.snapshot().decided == int64(len(early)) }, time.Minute, 10*time.Millisecond)
	keptEarly := len(keptTraces(sink1))
	require.Positive(t, keptEarly)

	traces, first, second, _ := corpus(8, 2000, triggers[name])
	require.NoError(t, p1.ConsumeTraces(t.Context(), request(slices.Concat(first...))))
	clock.add(10 * time.Second)
	require.NoError(t, p1.ConsumeTraces(t.Context(), request(slices.Concat(second...))))
	require.NoError(t, p1.Shutdown(t.Context()))
	require.Len(t, keptTraces(sink1), keptEarly, "nothing of the second corpus decided before its deadline")

	// The restart happens 15 s after the first spans: 15 s are left.
	clock.add(5 * time.Second)
	sink2 := new(consumertest.TracesSink)
	p2 := startWithClock(t, cfg, clock, sink2)
	defer func() { require.NoError(t, p2.Shutdown(t.Context())) }()
	st := p2.buf.snapshot()
	require.Equal(t, int64(len(traces)), st.recovered, "every trace of the second corpus, none of the first")
	require.Equal(t, len(traces), st.pending)

	clock.add(14 * time.Second)
	p2.kick <- struct{}{}
	// The release loop has run at 29 s (kicked): nothing is due yet.
	require.Eventually(t, func() bool { return len(p2.kick) == 0 }, time.Minute, time.Millisecond)
	p2.kick <- struct{}{}
	require.Eventually(t, func() bool { return len(p2.kick) == 0 }, time.Minute, time.Millisecond)
	require.Equal(t, len(traces), p2.buf.snapshot().pending, "not decided before the original deadline")

	clock.add(time.Second)
	require.Eventually(t, func() bool { return p2.buf.snapshot().decided == int64(len(traces)) }, time.Minute, 10*time.Millisecond)
	kept := keptTraces(sink2)
	spans := spanSet(t, sink2) // fails on a span forwarded twice
	want := 0
	for _, tr := range traces {
		if tr.trigger != "" && tr.trigger != "synthetic" {
			require.True(t, kept[tr.id], "a %s trace is kept after the restart", tr.trigger)
		}
		if kept[tr.id] {
			want++
		}
	}
	require.Len(t, kept, want)
	wantSpans := 0
	for _, g := range slices.Concat(slices.Concat(first...), slices.Concat(second...)) {
		if kept[g.trace.id] {
			wantSpans++
		}
	}
	require.Len(t, spans, wantSpans, "every span of every kept trace, the halves from before and after the 10 s")
	for _, tr := range early {
		require.False(t, kept[tr.id], "a trace decided before the restart is not decided again")
	}
	require.Zero(t, p2.buf.snapshot().readErrors)
	for _, td := range sink2.AllTraces() {
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, sp := range ss.Spans().All() {
					require.NotEqual(t, summaryName, sp.Name(), "span %s forwarded as its summary", sp.SpanID())
				}
			}
		}
	}
}

// With num_traces far below what arrives at once, the oldest traces are
// handed over early, and the decider, which holds what it was handed until
// its tick, is never given more than it has room for: upstream's decider
// drops a trace past its num_traces without deciding it, which would leave
// the trace's chunks, and their files, on disk for good.
func TestSmallNumTracesDecidesEveryTrace(t *testing.T) {
	cfg, _ := loadDifferential(t, "summaries")
	cfg.NumTraces = 200
	cfg.DecisionWait = time.Hour
	cfg.Buffer.Path = t.TempDir()
	clock := newFakeClock(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
	sink := new(consumertest.TracesSink)
	p := startWithClock(t, cfg, clock, sink)
	defer func() { require.NoError(t, p.Shutdown(t.Context())) }()
	traces, first, second, _ := corpus(9, 1000, triggers["summaries"])
	for lo := 0; lo < len(traces); lo += 100 {
		hi := min(lo+100, len(traces))
		require.NoError(t, p.ConsumeTraces(t.Context(), request(slices.Concat(first[lo:hi]...))))
		require.NoError(t, p.ConsumeTraces(t.Context(), request(slices.Concat(second[lo:hi]...))))
		// Refused retryably past twice num_traces waiting: let the
		// early decisions catch up, as a client's retries would.
		require.Eventually(t, func() bool { return p.buf.snapshot().pending <= 200 }, time.Minute, time.Millisecond)
	}
	var st bufferSnapshot
	defer func() {
		if t.Failed() {
			t.Logf("buffer at the end: %+v", st)
		}
	}()
	decided := func() bool {
		st = p.buf.snapshot()
		return st.pending <= 200 && st.released == 0 && st.decided == int64(len(traces))-int64(st.pending)
	}
	require.Eventually(t, decided, time.Minute, 10*time.Millisecond, "every trace past num_traces decided, none stuck with the decider")
	require.Equal(t, int64(len(traces)-st.pending), st.earlyTraces)
}
