package sightlinestorage

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sightlinehq/sightline/internal/store/headproto"
)

// dnsIngesters keeps the ingesters a DNS name resolves to
// (shared::ingesters_dns), resolved again every interval. A failed lookup
// keeps the last answer: an ingester that cannot be reached is reported by
// the queries that need it, and a DNS outage should not hide the ones that
// can. An answer with no address (every ingester gone) empties the list.
type dnsIngesters struct {
	cfg    DNSConfig
	lookup func(ctx context.Context, host string) ([]string, error)
	hc     *http.Client
	log    *zap.Logger

	mu      sync.Mutex
	byURL   map[string]*headproto.Client
	clients []*headproto.Client
}

func newDNSIngesters(cfg DNSConfig, hc *http.Client, log *zap.Logger) *dnsIngesters {
	return &dnsIngesters{cfg: cfg, lookup: net.DefaultResolver.LookupHost, hc: hc, log: log, byURL: map[string]*headproto.Client{}}
}

// refresh resolves the name once and updates the list, keeping the
// clients of addresses it already had.
func (d *dnsIngesters) refresh(ctx context.Context) error {
	addrs, err := d.lookup(ctx, d.cfg.Hostname)
	if err != nil {
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
			return fmt.Errorf("resolve ingesters %s: %w", d.cfg.Hostname, err)
		}
		addrs = nil
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	d.mu.Lock()
	defer d.mu.Unlock()
	next := map[string]*headproto.Client{}
	var clients []*headproto.Client
	for _, a := range addrs {
		u := d.cfg.Scheme + "://" + net.JoinHostPort(a, strconv.Itoa(d.cfg.Port))
		c := d.byURL[u]
		if c == nil {
			c = headproto.NewClient(u, d.hc)
		}
		next[u] = c
		clients = append(clients, c)
	}
	if len(next) != len(d.byURL) {
		d.log.Info("ingesters resolved", zap.String("hostname", d.cfg.Hostname), zap.Strings("addresses", addrs))
	}
	d.byURL, d.clients = next, clients
	return nil
}

// list returns the current ingesters.
func (d *dnsIngesters) list() []*headproto.Client {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.clients
}

// run refreshes every interval until done is closed.
func (d *dnsIngesters) run(done <-chan struct{}) {
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Interval)
		if err := d.refresh(ctx); err != nil {
			d.log.Warn("ingesters not resolved again; keeping the last answer", zap.Error(err))
		}
		cancel()
	}
}
