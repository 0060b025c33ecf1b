// Package cli holds the terminal clients of the query API: `sightline
// query`, `sightline trace` and `sightline logs`. They speak HTTP to a
// running Sightline (or a Tempo and Loki), like tempo-cli and logcli.
package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// DefaultAddr is where the all-in-one serves the query API.
const DefaultAddr = "http://localhost:3200"

type client struct {
	addr    string
	token   string
	tenant  string
	timeout time.Duration
}

func (c *client) flags(cmd *cobra.Command) {
	addr := os.Getenv("SIGHTLINE_ADDR")
	if addr == "" {
		addr = DefaultAddr
	}
	cmd.Flags().StringVar(&c.addr, "addr", addr, "query API address ($SIGHTLINE_ADDR)")
	cmd.Flags().StringVar(&c.token, "token", os.Getenv("SIGHTLINE_TOKEN"), "bearer token ($SIGHTLINE_TOKEN)")
	cmd.Flags().StringVar(&c.tenant, "tenant", "", "tenant, sent as X-Scope-OrgID")
	cmd.Flags().DurationVar(&c.timeout, "timeout", 60*time.Second, "request timeout")
}

// get fetches path with params; non-2xx answers become errors carrying the
// server's message.
func (c *client) get(ctx context.Context, path string, params url.Values, accept string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := strings.TrimRight(c.addr, "/") + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.tenant != "" {
		req.Header.Set("X-Scope-OrgID", c.tenant)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}

func (c *client) getJSON(ctx context.Context, path string, params url.Values, into any) error {
	b, err := c.get(ctx, path, params, "application/json")
	if err != nil {
		return err
	}
	return json.Unmarshal(b, into)
}

// Commands returns the client commands.
func Commands() []*cobra.Command {
	return []*cobra.Command{queryCommand(), traceCommand(), logsCommand()}
}

// clean makes untrusted text safe for a terminal: control characters
// (escape sequences could rewrite the screen) are shown escaped.
func clean(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isControl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f || r >= 0x80 && r < 0xa0 }

func parseSince(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("invalid --since %q: want a positive duration such as 1h", s)
	}
	return d, nil
}
