package demo

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// Embedded starts an all-in-one Sightline in this process and writes its
// startup line to out. It returns once it accepts telemetry, with the
// address of its UI; done yields the error Sightline stopped with, after
// ctx ends.
type Embedded func(ctx context.Context, out io.Writer) (done <-chan error, ui string, err error)

// defaultUI is where the UI of a Sightline started with no arguments is.
const defaultUI = "http://localhost:3200/ui/"

// Command returns `sightline demo`.
func Command(embedded Embedded) *cobra.Command {
	o := Options{}
	var withSightline bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run an instrumented multi-service system that sends telemetry to Sightline",
		Long: `demo runs an API, an auth service, a queue-fed worker and a report service,
instrumented with the OpenTelemetry Go SDK, and drives traffic through them.
With --embedded it also starts an all-in-one Sightline in the same process.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !slices.Contains(Scenarios, o.Scenario) {
				return fmt.Errorf("unknown --scenario %q; want one of %v", o.Scenario, Scenarios)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			o.Out = cmd.OutOrStdout()
			var done <-chan error
			if withSightline {
				var err error
				if done, o.UI, err = embedded(ctx, o.Out); err != nil {
					return fmt.Errorf("start sightline: %w", err)
				}
			}
			if err := Run(ctx, o); err != nil {
				return err
			}
			if done == nil {
				return nil
			}
			fmt.Fprintln(o.Out, "demo: Sightline keeps running; Ctrl-C stops it")
			<-ctx.Done()
			select {
			case err := <-done:
				return err
			case <-time.After(30 * time.Second):
				return fmt.Errorf("sightline did not stop within 30s")
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Endpoint, "endpoint", "localhost:4317", "OTLP/gRPC endpoint to send to")
	f.BoolVar(&withSightline, "embedded", false, "also run an all-in-one Sightline in this process")
	f.StringVar(&o.UI, "ui", defaultUI, "address of the Sightline UI to point to (with --embedded, the embedded one's)")
	f.Float64Var(&o.Rate, "rate", 5, "requests per second at steady state")
	f.DurationVar(&o.Duration, "duration", 0, "how long to send traffic (0: until interrupted)")
	f.StringVar(&o.Scenario, "scenario", "all", fmt.Sprintf("one of %v; all cycles through them", Scenarios))
	f.Uint64Var(&o.Seed, "seed", 1, "seed for users, orders and failures")
	return cmd
}
