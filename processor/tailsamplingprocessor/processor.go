package tailsamplingprocessor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	upstream "github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor/cache"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/sightlinehq/sightline/internal/store/wal"
)

const (
	// deciderWait is the decision_wait of the upstream processor that
	// decides: the buffer has already waited, so it only collects what it
	// is handed until its next one-second tick. Upstream decides a trace
	// between decision_wait and decision_wait plus a tick after its first
	// span; so does this processor.
	deciderWait = time.Second
	// releaseEvery is how often the buffer hands due traces over.
	releaseEvery = 100 * time.Millisecond
	// releaseBatch bounds the traces read back at once, and so the
	// memory a release holds before the decider takes it.
	releaseBatch = 4096
)

type tailProcessor struct {
	set  processor.Settings
	cfg  *Config
	dir  string
	next consumer.Traces
	now  func() time.Time

	decider processor.Traces
	// The decision caches are the decider's, created here so that late
	// spans can be routed by them before they reach the buffer.
	sampledCache    cache.Cache
	nonSampledCache cache.Cache

	// summaries is set when the policies decide on summaries of the
	// spans (summary.go); noSummaries says why not otherwise.
	summaries   bool
	fields      summaryFields
	noSummaries string

	buf   *buffer
	stop  chan struct{}
	kick  chan struct{}
	wg    sync.WaitGroup
	metas metric.Registration
}

func newProcessor(ctx context.Context, set processor.Settings, cfg *Config, dir string, next consumer.Traces) (*tailProcessor, error) {
	p := &tailProcessor{set: set, cfg: cfg, dir: dir, next: next, now: time.Now,
		stop: make(chan struct{}), kick: make(chan struct{}, 1)}
	dc := cfg.Config
	dc.DecisionWait = deciderWait
	dc.DecisionWaitAfterRootReceived = 0
	// Upstream's decider drops a trace, undecided and without a word to
	// its hooks, once it holds num_traces. The buffer hands it at most
	// num_traces at a time (buffer.release), so that never happens; the
	// margin is for late spans that start traces the decider forgot.
	dc.NumTraces = 2 * cfg.NumTraces
	// Nothing is dropped for lack of room here, so there is nothing to
	// block on; blocking the decider would only stall its decisions.
	dc.BlockOnOverflow = false
	dc.Options = slices.Clip(cfg.Options)
	// The decider always has both decision caches. Without them upstream
	// remembers a decision by keeping the decided trace in its table,
	// num_traces of them, and answers late spans from there; a cache of
	// num_traces IDs answers them alike for a fraction of the memory, and
	// lets the decider drop a trace as soon as it is decided, so that its
	// table holds only the traces it is deciding.
	sampled, notSampled := cfg.DecisionCache.SampledCacheSize, cfg.DecisionCache.NonSampledCacheSize
	if sampled <= 0 {
		sampled = int(cfg.NumTraces)
	}
	if notSampled <= 0 {
		notSampled = int(cfg.NumTraces)
	}
	var err error
	if p.sampledCache, err = cache.NewLRUDecisionCache(sampled); err != nil {
		return nil, err
	}
	if p.nonSampledCache, err = cache.NewLRUDecisionCache(notSampled); err != nil {
		return nil, err
	}
	dc.Options = append(dc.Options,
		upstream.WithSampledDecisionCache(p.sampledCache),
		upstream.WithNonSampledDecisionCache(p.nonSampledCache))
	dc.Options = append(dc.Options,
		upstream.WithSampledHooks(func(_ context.Context, id pcommon.TraceID, _ *upstream.TraceData) {
			p.buf.decidedSampled(id)
		}),
		upstream.WithNonSampledHooks(func(_ context.Context, id pcommon.TraceID, td *upstream.TraceData) {
			// Upstream caches the decision after its hooks; cached first,
			// a span that arrives as the trace is forgotten below finds it
			// and goes to the decider, not to a new trace in the buffer.
			p.nonSampledCache.Put(id, cache.DecisionMetadata{PolicyName: td.PolicyName})
			p.buf.decidedNotSampled(id)
		}))
	p.fields, p.noSummaries = summaryFieldsFor(&cfg.Config)
	p.summaries = p.noSummaries == ""
	dset := set
	dset.ID = component.NewIDWithName(upstreamFactory.Type(), set.ID.Name())
	p.decider, err = upstreamFactory.CreateTraces(ctx, dset, &dc, forwarder{p})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Capabilities says the processor only reads what it is given: it logs
// an encoding of it.
func (*tailProcessor) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

func (p *tailProcessor) Start(ctx context.Context, host component.Host) error {
	policy := wal.SyncInterval
	if p.cfg.Buffer.Sync == "always" {
		policy = wal.SyncAlways
	}
	start := time.Now()
	buf, err := openBuffer(bufferOptions{
		dir:          p.dir,
		wait:         p.cfg.DecisionWait,
		afterRoot:    p.cfg.DecisionWaitAfterRootReceived,
		numTraces:    int(p.cfg.NumTraces),
		maxSize:      p.cfg.Buffer.MaxSize,
		segmentSize:  p.cfg.Buffer.SegmentSize,
		sync:         policy,
		syncInterval: p.cfg.Buffer.SyncInterval,
	})
	if err != nil {
		return err
	}
	st := buf.snapshot()
	if p.summaries {
		p.set.Logger.Info("tail sampling decides on summaries of the spans, reading back only kept traces' spans",
			zap.Strings("attributes", p.fields.keys))
	} else {
		p.set.Logger.Info("tail sampling decides on whole spans", zap.String("reason", p.noSummaries))
	}
	p.set.Logger.Info("tail sampling buffer opened", zap.String("path", p.dir),
		zap.Int64("recovered_traces", st.recovered), zap.Int64("bytes", st.bytes), zap.Int("files", st.files),
		zap.Duration("took", time.Since(start)))
	p.buf = buf // the metrics and the decider's hooks read it
	if err := p.registerMetrics(); err != nil {
		p.buf = nil
		return errors.Join(err, buf.close())
	}
	if err := p.decider.Start(ctx, host); err != nil {
		p.buf = nil
		return errors.Join(err, p.metas.Unregister(), buf.close())
	}
	p.wg.Add(1)
	go p.releaseLoop()
	return nil
}

// Shutdown stops handing traces over, lets the decider decide what it
// holds (unless drop_pending_traces_on_shutdown), and closes the buffer.
// Traces still waiting stay on disk and are decided after the next start.
func (p *tailProcessor) Shutdown(ctx context.Context) error {
	if p.buf == nil {
		return nil
	}
	close(p.stop)
	p.wg.Wait()
	err := p.decider.Shutdown(ctx)
	if p.metas != nil {
		err = errors.Join(err, p.metas.Unregister())
	}
	return errors.Join(err, p.buf.close())
}

// ConsumeTraces returns once the spans are in the buffer by its sync
// policy. Spans of traces already decided go to the decider, whose
// decision caches answer them as upstream's would.
func (p *tailProcessor) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	if td.SpanCount() == 0 {
		return nil
	}
	now := p.now()
	var sum *summarizer
	if p.summaries {
		sum = summarizers.Get().(*summarizer)
		sum.fields = p.fields
		defer summarizers.Put(sum)
	}
	var m ptrace.ProtoMarshaler
	skel, chunks, err := encodeRequest(td, now.UnixNano(), &m, sum)
	if err != nil {
		return consumererror.NewPermanent(fmt.Errorf("encode spans: %w", err))
	}
	direct, err := p.buf.add(now, td, skel, chunks, p.known)
	if err != nil {
		return err
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
	p.toDecider(ctx, direct)
	return nil
}

// known says whether the decider will answer a span of a trace that is
// not waiting: a late span of a trace it decided, by its decision caches.
func (p *tailProcessor) known(id pcommon.TraceID) bool {
	if _, ok := p.sampledCache.Get(id); ok {
		return true
	}
	_, ok := p.nonSampledCache.Get(id)
	return ok
}

func (p *tailProcessor) toDecider(ctx context.Context, tds []ptrace.Traces) {
	if len(tds) == 0 {
		return
	}
	td := tds[0]
	for _, o := range tds[1:] {
		o.ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
	}
	if err := p.decider.ConsumeTraces(ctx, td); err != nil {
		p.set.Logger.Warn("tail sampling decider refused spans", zap.Error(err))
	}
}

func (p *tailProcessor) releaseLoop() {
	defer p.wg.Done()
	t := time.NewTicker(releaseEvery)
	defer t.Stop()
	ctx := context.Background()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		case <-p.kick:
		}
		for {
			td, ids, err := p.buf.release(p.now(), releaseBatch)
			if err != nil {
				p.set.Logger.Error("reading traces back from the tail sampling buffer", zap.Error(err))
			}
			if len(ids) == 0 {
				break
			}
			if td.ResourceSpans().Len() > 0 {
				if err := p.decider.ConsumeTraces(ctx, td); err != nil {
					p.set.Logger.Warn("tail sampling decider refused spans", zap.Error(err))
				}
			}
			p.toDecider(ctx, p.buf.released(ids))
		}
	}
}

// forwarder is the decider's next consumer. It records a sampled trace's
// decision once the next consumer has taken its spans. A retryable
// refusal is retried, holding the decider (and so, in turn, the buffer's
// intake) back, rather than dropped as upstream drops it; at shutdown the
// trace is left undecided and decided again after the restart.
type forwarder struct{ p *tailProcessor }

func (forwarder) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

func (f forwarder) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	id, ok := firstTraceID(td)
	if ok && f.p.summaries {
		if err := f.p.buf.restore(id, td); err != nil {
			f.p.set.Logger.Error("restoring sampled spans from the tail sampling buffer", zap.Error(err))
		}
		if td.ResourceSpans().Len() == 0 {
			f.p.buf.forwarded(id)
			return nil
		}
	}
	backoff := 50 * time.Millisecond
	for {
		err := f.p.next.ConsumeTraces(ctx, td)
		if err == nil || consumererror.IsPermanent(err) {
			if ok {
				f.p.buf.forwarded(id)
			}
			return err
		}
		select {
		case <-f.p.stop:
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func firstTraceID(td ptrace.Traces) (pcommon.TraceID, bool) {
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			if ss.Spans().Len() > 0 {
				return ss.Spans().At(0).TraceID(), true
			}
		}
	}
	return pcommon.TraceID{}, false
}

func (p *tailProcessor) registerMetrics() error {
	m := p.set.MeterProvider.Meter("github.com/sightlinehq/sightline/processor/tailsamplingprocessor")
	traces, err1 := m.Int64ObservableGauge("sightline_tail_sampling_traces",
		metric.WithDescription("Traces waiting for a decision: on disk until their deadline (state=waiting), then with the decider (state=deciding)."))
	size, err2 := m.Int64ObservableGauge("sightline_tail_sampling_buffer_size", metric.WithUnit("By"),
		metric.WithDescription("Bytes in the tail sampling buffer's files."))
	early, err3 := m.Int64ObservableCounter("sightline_tail_sampling_early_decisions",
		metric.WithDescription("Traces decided before their deadline, by reason: num_traces (too many waiting) or max_size (the buffer's files over buffer::max_size)."))
	recovered, err4 := m.Int64ObservableCounter("sightline_tail_sampling_recovered_traces",
		metric.WithDescription("Traces found waiting in the buffer at startup, decided at their original deadlines."))
	refused, err5 := m.Int64ObservableCounter("sightline_tail_sampling_refused_requests",
		metric.WithDescription("Requests refused, retryably, because decisions did not keep up, by reason: max_size (the buffer's files over 1.5 times buffer::max_size) or num_traces (twice num_traces traces waiting)."))
	writeErrs, err6 := m.Int64ObservableCounter("sightline_tail_sampling_write_errors",
		metric.WithDescription("Failed writes to the buffer: a request refused retryably, or a decision not recorded (the trace is decided again after a restart)."))
	readErrs, err7 := m.Int64ObservableCounter("sightline_tail_sampling_read_errors",
		metric.WithDescription("Chunks that could not be read back from the buffer for a decision or for forwarding; their spans are lost (the rest of the trace is decided)."))
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7); err != nil {
		return err
	}
	waiting := metric.WithAttributes(attribute.String("state", "waiting"))
	deciding := metric.WithAttributes(attribute.String("state", "deciding"))
	byCount := metric.WithAttributes(attribute.String("reason", "num_traces"))
	bySize := metric.WithAttributes(attribute.String("reason", "max_size"))
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := p.buf.snapshot()
		o.ObserveInt64(traces, int64(st.pending), waiting)
		o.ObserveInt64(traces, int64(st.released), deciding)
		o.ObserveInt64(size, st.bytes)
		o.ObserveInt64(early, st.earlyTraces, byCount)
		o.ObserveInt64(early, st.earlyDisk, bySize)
		o.ObserveInt64(recovered, st.recovered)
		o.ObserveInt64(refused, st.refusedDisk, bySize)
		o.ObserveInt64(refused, st.refusedTraces, byCount)
		o.ObserveInt64(writeErrs, st.writeErrors)
		o.ObserveInt64(readErrs, st.readErrors)
		return nil
	}, traces, size, early, recovered, refused, writeErrs, readErrs)
	if err != nil {
		return err
	}
	p.metas = reg
	return nil
}
