// Command sightline is the Sightline binary: an OpenTelemetry Collector
// compatible pipeline that, with no arguments, runs the all-in-one config.
package main

import (
	"fmt"
	"os"

	"github.com/sightlinehq/sightline/internal/pipeline"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := pipeline.NewCommand(version).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
