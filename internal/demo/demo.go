// Package demo runs `sightline demo`: a small instrumented system (an
// API, an auth service, a queue-fed worker and a CPU-heavy report service,
// with a simulated database and cache) that sends traces, metrics and logs
// over OTLP, with scenarios that make the UI's stories visible: an error
// burst, a slow query, a cold start and a traffic spike.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Options configure a run.
type Options struct {
	// Endpoint is the OTLP/gRPC address telemetry goes to.
	Endpoint string
	// Rate is requests per second at steady state.
	Rate float64
	// Duration bounds the traffic; 0 runs until the context ends.
	Duration time.Duration
	// Scenario is steady, errors, slowdb, coldstart, spike, or all (a
	// cycle through them).
	Scenario string
	// Seed makes users, orders and failures reproducible.
	Seed uint64
	// UI is the address of the Sightline UI the telemetry can be seen in,
	// printed with the first progress line.
	UI string
	// Out receives progress lines.
	Out io.Writer
}

// Scenarios lists the accepted scenario names.
var Scenarios = []string{"all", "steady", "errors", "slowdb", "coldstart", "spike"}

// phase is what the system does for a while.
type phase struct {
	name       string
	length     time.Duration
	errors     bool
	slowDB     bool
	coldStart  bool
	rateFactor float64
}

var phases = map[string]phase{
	"steady":    {name: "steady", rateFactor: 1},
	"errors":    {name: "errors", errors: true, rateFactor: 1},
	"slowdb":    {name: "slowdb", slowDB: true, rateFactor: 1},
	"coldstart": {name: "coldstart", coldStart: true, rateFactor: 1},
	"spike":     {name: "spike", rateFactor: 5},
}

// cycle is the "all" scenario: a minute of steady traffic between events.
var cycle = []phase{
	withLength(phases["steady"], time.Minute),
	withLength(phases["errors"], 30*time.Second),
	withLength(phases["steady"], time.Minute),
	withLength(phases["slowdb"], 30*time.Second),
	withLength(phases["steady"], time.Minute),
	withLength(phases["coldstart"], 10*time.Second),
	withLength(phases["spike"], 20*time.Second),
}

func withLength(p phase, d time.Duration) phase { p.length = d; return p }

// schedule tells which phase is current.
type schedule struct {
	start  time.Time
	phases []phase
}

func (s *schedule) now() phase {
	if len(s.phases) == 1 {
		return s.phases[0]
	}
	var total time.Duration
	for _, p := range s.phases {
		total += p.length
	}
	at := time.Since(s.start) % total
	for _, p := range s.phases {
		if at < p.length {
			return p
		}
		at -= p.length
	}
	return s.phases[0]
}

// Run starts the system and drives traffic until the duration passes or
// ctx ends, then flushes all telemetry.
func Run(ctx context.Context, o Options) error {
	if o.Rate <= 0 {
		return errors.New("rate must be positive")
	}
	sc := &schedule{start: time.Now()}
	if o.Scenario == "all" || o.Scenario == "" {
		sc.phases = cycle
	} else if p, ok := phases[o.Scenario]; ok {
		sc.phases = []phase{p}
	} else {
		return fmt.Errorf("unknown scenario %q; want one of %v", o.Scenario, Scenarios)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	s := &system{queue: make(chan message, 1024), sc: sc, rnd: rand.New(rand.NewPCG(o.Seed, 0x5eed))}
	var err error
	for _, t := range []struct {
		dst  **telemetry
		name string
	}{{&s.api, "api"}, {&s.auth, "auth"}, {&s.worker, "worker"}, {&s.report, "report"}} {
		if *t.dst, err = newTelemetry(ctx, t.name, o.Endpoint); err != nil {
			return err
		}
	}
	if err := s.start(); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "demo: api %s, sending OTLP to %s, %.1f requests/s, scenario %s\n", s.base, o.Endpoint, o.Rate, o.Scenario)
	if o.UI != "" {
		fmt.Fprintf(o.Out, "demo: see it at UI: %s\n", o.UI)
	}

	runCtx := ctx
	if o.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	s.drive(runCtx, o)

	shut, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s.stop(shut)
	var errs []error
	for _, t := range []*telemetry{s.api, s.auth, s.worker, s.report} {
		errs = append(errs, t.shutdown(shut))
	}
	fmt.Fprintln(o.Out, "demo: traffic finished, telemetry flushed")
	return errors.Join(errs...)
}

// drive sends requests at the phase's rate, each as a new user request.
func (s *system) drive(ctx context.Context, o Options) {
	var wg sync.WaitGroup
	defer wg.Wait()
	n := 0
	last := ""
	cold := false
	for {
		p := s.sc.now()
		if p.name != last {
			fmt.Fprintf(o.Out, "demo: phase %s\n", p.name)
			last = p.name
			cold = p.coldStart
		}
		wait := time.Duration(float64(time.Second) / (o.Rate * p.rateFactor))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		n++
		user := strconv.Itoa(1 + int(s.rand()*500))
		id := n
		coldNow := cold
		cold = false
		wg.Add(1)
		go func() {
			defer wg.Done()
			if coldNow {
				// A cold start: the first request waits for the service
				// to warm up, visible as a long api span.
				s.api.log.WarnContext(ctx, "cold start: loading caches")
				sleepCtx(ctx, 800*time.Millisecond)
			}
			req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, s.base+"/checkout", nil)
			req.Header.Set("X-User-ID", user)
			req.Header.Set("X-Org-ID", "org-"+strconv.Itoa(len(user)))
			req.Header.Set("X-Request-ID", fmt.Sprintf("req-%06d", id))
			if resp, err := s.client.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
}
