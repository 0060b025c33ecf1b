package pipeline

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// newHealthcheckCommand returns `sightline healthcheck`, which asks a
// health_check extension whether the process is healthy and exits 0 only
// on a 2xx answer. Sightline's container image has no shell and no curl,
// so its HEALTHCHECK, and any exec probe, runs the binary itself.
func newHealthcheckCommand() *cobra.Command {
	url := "http://localhost:13133/"
	timeout := 5 * time.Second
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 if the health_check extension answers 2xx (for images without a shell)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return fmt.Errorf("health check: %w", err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("health check: %w", err)
			}
			defer resp.Body.Close()
			// The body of a verbose answer names the failing component;
			// a short prefix of it is enough for a container's health log.
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("health check %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "healthy: %s answered %s\n", url, resp.Status)
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", url, "address of the health_check extension")
	cmd.Flags().DurationVar(&timeout, "timeout", timeout, "how long to wait for the answer")
	return cmd
}
