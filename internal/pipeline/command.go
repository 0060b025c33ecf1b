package pipeline

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/sightlinehq/sightline/internal/cli"
	"github.com/sightlinehq/sightline/internal/demo"
	"github.com/sightlinehq/sightline/internal/memlimit"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/featuregate"
	"go.opentelemetry.io/collector/otelcol"
)

// errInvalidConfig is returned by run and validate when the config has
// errors; the errors themselves have already been printed.
var errInvalidConfig = errors.New("invalid configuration")

// Settings returns the collector settings for the given config URIs.
// An empty list means the embedded all-in-one config.
func Settings(version string, uris []string) otelcol.CollectorSettings {
	if len(uris) == 0 {
		uris = []string{DefaultConfigURI}
	}
	return otelcol.CollectorSettings{
		Factories: Components,
		BuildInfo: component.BuildInfo{
			Command:     "sightline",
			Description: "Sightline: OpenTelemetry-native traces, metrics and logs in one binary",
			Version:     version,
		},
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				URIs: uris,
				ProviderFactories: []confmap.ProviderFactory{
					fileprovider.NewFactory(),
					envprovider.NewFactory(),
					yamlprovider.NewFactory(),
					newBuiltinProviderFactory(),
				},
				// ${VAR} without a scheme reads the environment, as otelcol does.
				DefaultScheme: "env",
			},
		},
	}
}

// configFlags are the otelcol flags: --config (repeatable, merged in order)
// and --set (applied after every --config, as yaml: URIs).
type configFlags struct {
	configs []string
	sets    []string
}

func (c *configFlags) uris() []string { return append(append([]string{}, c.configs...), c.sets...) }

type stringsFlag struct{ dst *[]string }

func (s stringsFlag) String() string     { return strings.Join(*s.dst, ",") }
func (s stringsFlag) Set(v string) error { *s.dst = append(*s.dst, v); return nil }

func (c *configFlags) flagSet() *flag.FlagSet {
	fs := new(flag.FlagSet)
	fs.Var(stringsFlag{&c.configs}, "config", "config location, repeatable: a file path, or file:, env:, yaml: or builtin: URI; "+
		"later ones are merged over earlier ones (default "+DefaultConfigURI+")")
	fs.Func("set", "set a config property, repeatable, e.g. --set=processors.batch.timeout=2s", func(s string) error {
		key, value, ok := strings.Cut(s, "=")
		if !ok {
			return errors.New("missing equal sign")
		}
		// The same translation otelcol applies: dots become confmap's "::" separator.
		c.sets = append(c.sets, "yaml:"+strings.TrimSpace(strings.ReplaceAll(key, ".", "::"))+": "+strings.TrimSpace(value))
		return nil
	})
	featuregate.GlobalRegistry().RegisterFlags(fs)
	return fs
}

const healthStatusGate = "extension.healthcheck.useComponentStatus"

// NewCommand builds the sightline command line, which follows otelcol's:
// run (the default), validate, components, featuregate, print-config and version.
func NewCommand(version string) *cobra.Command {
	// The health_check extension reports component status (the store's
	// damage and full-disk errors) only with this gate. It stays
	// overridable with --feature-gates=-extension.healthcheck.useComponentStatus.
	if err := featuregate.GlobalRegistry().Set(healthStatusGate, true); err != nil {
		panic(err) // the gate is registered by the healthcheck extension we link
	}
	root := &cobra.Command{
		Use:           "sightline",
		Short:         "OpenTelemetry-native traces, metrics and logs in one binary",
		Long:          "Sightline runs OpenTelemetry Collector configs unchanged and, with no arguments, an all-in-one pipeline with OTLP on 4317/4318.",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	rootFlags := &configFlags{}
	root.Flags().AddGoFlagSet(rootFlags.flagSet())
	root.RunE = func(cmd *cobra.Command, _ []string) error { return runCollector(cmd, version, rootFlags.uris()) }

	runFlags := &configFlags{}
	run := &cobra.Command{
		Use:   "run",
		Short: "Run the pipeline (the default command)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runCollector(cmd, version, runFlags.uris()) },
	}
	run.Flags().AddGoFlagSet(runFlags.flagSet())

	valFlags := &configFlags{}
	validate := &cobra.Command{
		Use:   "validate",
		Short: "Check a config and print every error with its path",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set := Settings(version, valFlags.uris())
			if _, err := checkConfig(cmd, set); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "configuration is valid")
			return nil
		},
	}
	validate.Flags().AddGoFlagSet(valFlags.flagSet())

	root.AddCommand(run, validate, newVersionCommand(version), newHealthcheckCommand())
	root.AddCommand(cli.Commands()...)
	root.AddCommand(demo.Command(func(ctx context.Context, out io.Writer) (<-chan error, string, error) {
		return runEmbedded(ctx, version, out)
	}))
	// components, featuregate and print-config are otelcol's own, so their
	// output stays exactly what Collector users and tooling expect.
	for _, c := range otelcol.NewCommand(Settings(version, nil)).Commands() {
		switch c.Name() {
		case "components", "featuregate", "print-config":
			root.AddCommand(c)
		}
	}
	return root
}

// checkConfig resolves and checks the config, printing every error found,
// and returns the resolved config.
func checkConfig(cmd *cobra.Command, set otelcol.CollectorSettings) (*confmap.Conf, error) {
	conf, errs := resolveAndValidate(cmd.Context(), set)
	if len(errs) == 0 {
		return conf, nil
	}
	printErrors(cmd.ErrOrStderr(), errs)
	return nil, fmt.Errorf("%w: %d error(s)", errInvalidConfig, len(errs))
}

func printErrors(w io.Writer, errs []error) {
	fmt.Fprintf(w, "invalid configuration: %d error(s)\n", len(errs))
	for _, err := range errs {
		fmt.Fprintf(w, "  - %v\n", err)
	}
}

func runCollector(cmd *cobra.Command, version string, uris []string) error {
	set := Settings(version, uris)
	// Check first so that a bad config reports every error at once, with
	// paths, instead of the first one the collector trips over.
	conf, err := checkConfig(cmd, set)
	if err != nil {
		return err
	}
	// The all-in-one with overlays (--config builtin:all-in-one --config
	// mine.yaml) keeps its memory_limiter's 400 MiB default, so it gets
	// the matching Go soft limit too.
	allInOne := len(uris) == 0 || slices.Contains(uris, DefaultConfigURI)
	memlimit.SetDefaults(allInOne)
	// The collector listens for SIGTERM only once every component has
	// started, after the health check already answers ready; a SIGTERM in
	// between, or during a long WAL replay, took the runtime's default and
	// killed the process without a shutdown. Listening here, before the
	// collector exists, turns a signal at any point into an orderly
	// shutdown: Shutdown before or during startup makes Run stop as soon
	// as startup ends.
	set.DisableGracefulShutdown = true
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	col, err := otelcol.NewCollector(set)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(cmd.Context())
	defer stop()
	go shutdownOnSignal(ctx, sigs, col)
	go memlimit.Follow(ctx)
	go announceWhenRunning(ctx, col, cmd.OutOrStdout(), startupLine(version, conf))
	return col.Run(cmd.Context())
}

// shutdownOnSignal asks col to shut down at the first signal on sigs,
// until ctx ends. Later signals are not read: the shutdown already under
// way answers them too, as the collector's own handler does.
func shutdownOnSignal(ctx context.Context, sigs <-chan os.Signal, col *otelcol.Collector) {
	select {
	case <-sigs:
		// Shutdown waits for Run to return, which is what ends ctx.
		col.Shutdown()
	case <-ctx.Done():
	}
}

func newVersionCommand(version string) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and the upstream releases it is built on",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "sightline %s\n", version)
			bi, ok := debug.ReadBuildInfo()
			if !ok {
				return
			}
			fmt.Fprintf(w, "go: %s\n", bi.GoVersion)
			for _, dep := range bi.Deps {
				switch dep.Path {
				case "go.opentelemetry.io/collector/otelcol":
					fmt.Fprintf(w, "opentelemetry-collector: %s\n", dep.Version)
				case "github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor":
					fmt.Fprintf(w, "opentelemetry-collector-contrib: %s\n", dep.Version)
				case "github.com/prometheus/prometheus":
					fmt.Fprintf(w, "prometheus: %s\n", dep.Version)
				}
			}
		},
	}
}

// runEmbedded runs the all-in-one config in this process, for
// `sightline demo --embedded`, and returns once it is running, having
// written the startup line to out, with the UI's address.
func runEmbedded(ctx context.Context, version string, out io.Writer) (<-chan error, string, error) {
	set := Settings(version, nil)
	conf, errs := resolveAndValidate(ctx, set)
	if len(errs) > 0 {
		return nil, "", fmt.Errorf("%w: %w", errInvalidConfig, errors.Join(errs...))
	}
	col, err := otelcol.NewCollector(set)
	if err != nil {
		return nil, "", err
	}
	done := make(chan error, 1)
	// Run shuts down with the context it was given; a cancelled one would
	// cut the shutdown short. So it gets one that is never cancelled, and
	// the end of ctx asks for an orderly shutdown instead.
	go func() { done <- col.Run(context.WithoutCancel(ctx)) }()
	go func() {
		<-ctx.Done()
		col.Shutdown()
	}()
	for col.GetState() != otelcol.StateRunning {
		select {
		case err := <-done:
			return nil, "", fmt.Errorf("sightline stopped while starting: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	fmt.Fprintln(out, startupLine(version, conf))
	return done, uiURLOf(conf), nil
}
