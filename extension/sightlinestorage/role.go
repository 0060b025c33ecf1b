package sightlinestorage

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"

	promconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promcfg "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"

	"go.opentelemetry.io/collector/component"
	"go.uber.org/zap"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store"
	"github.com/sightlinehq/sightline/internal/store/headproto"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// applyRole sets what a role of a shared bucket changes in the store
// (docs/scaling.md):
//
//   - an ingester writes level-0 blocks under its instance ID and neither
//     merges nor expires blocks;
//   - a querier only reads;
//   - a compactor merges, applies retention and deletes replaced blocks,
//     while it holds the bucket's compactor lease.
//
// Every role of a shared bucket polls it for the others' blocks. The
// all-in-one is the bucket's only process and changes nothing.
func (c *Config) applyRole(o *store.Options, bucket *objstore.Store) error {
	if !c.shared() {
		return nil
	}
	id := c.Shared.InstanceID
	if id == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("shared::instance_id is not set and the hostname is unknown: %w", err)
		}
		id = h
	}
	o.Shared, o.PollInterval, o.DeleteDelay = true, c.Shared.PollInterval, c.Shared.DeleteDelay
	switch c.Role {
	case RoleIngester:
		o.Writer = id
		o.CompactionInterval = -1
	case RoleQuerier:
		o.CompactionInterval = -1
	case RoleCompactor:
		o.Lease = store.NewLease(bucket, "compactor", id, c.Shared.LeaseTTL, nil)
	}
	return nil
}

// startRole starts what the role serves or reads besides the store: an
// ingester's handoff endpoint, a querier's clients of the ingesters.
func (s *Storage) startRole(ctx context.Context, host component.Host) error {
	sc := &s.cfg.Shared
	switch s.cfg.Role {
	case RoleIngester:
		ln, err := sc.Handoff.ToListener(ctx)
		if err != nil {
			return fmt.Errorf("shared::handoff: %w", err)
		}
		srv, err := sc.Handoff.ToServer(ctx, host.GetExtensions(), s.set.TelemetrySettings, headproto.Handler(s.db))
		if err != nil {
			ln.Close()
			return fmt.Errorf("shared::handoff: %w", err)
		}
		s.handoff = srv
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.set.Logger.Error("handoff endpoint stopped", zap.Error(err))
			}
		}()
		s.set.Logger.Info("serving the head to queriers", zap.String("endpoint", ln.Addr().String()))
	case RoleQuerier:
		if len(sc.Ingesters) == 0 && sc.IngestersDNS.Hostname == "" {
			return nil
		}
		hc, err := sc.IngesterClient.ToClient(ctx, host.GetExtensions(), s.set.TelemetrySettings)
		if err != nil {
			return fmt.Errorf("shared::ingester_client: %w", err)
		}
		for _, u := range sc.Ingesters {
			s.ingesters = append(s.ingesters, headproto.NewClient(u, hc))
		}
		if sc.IngestersDNS.Hostname != "" {
			s.dns = newDNSIngesters(sc.IngestersDNS, hc, s.set.Logger)
			// Not fatal: in Kubernetes the name may resolve only once the
			// first ingester is ready.
			if err := s.dns.refresh(ctx); err != nil {
				s.set.Logger.Warn("ingesters not resolved yet", zap.Error(err))
			}
			s.dnsDone = make(chan struct{})
			go s.dns.run(s.dnsDone)
		}
	}
	return nil
}

// allIngesters are the ingesters a querier reads now: its list, and those
// its DNS name resolves to.
func (s *Storage) allIngesters() []*headproto.Client {
	if s.dns == nil {
		return s.ingesters
	}
	return append(slices.Clone(s.ingesters), s.dns.list()...)
}

// Querier opens what the query engines read: the store, and for a querier
// of a shared bucket also what each ingester holds that its snapshot of
// the bucket does not (docs/scaling.md). An ingester that cannot be
// reached makes the answer partial, with its error.
func (s *Storage) Querier(ctx context.Context) (storage.Querier, error) {
	ingesters := s.allIngesters()
	if len(ingesters) == 0 {
		return s.db.Querier(ctx)
	}
	local, covered := s.db.Covering(ctx)
	var remotes []storage.Querier
	seen := map[string]bool{}
	for _, c := range ingesters {
		q, instance, err := c.Querier(ctx, covered)
		switch {
		case err != nil:
			q = storage.FailingQuerier(err)
		case seen[instance]:
			// One ingester at two addresses: read it once.
			continue
		default:
			seen[instance] = true
		}
		remotes = append(remotes, q)
	}
	return storage.NewMergeQuerier(local, remotes...), nil
}

// remoteRead returns the remote TSDB queries read instead of the embedded
// one (metrics::remote_read), or nil.
func (c *Config) remoteRead() (promstorage.SampleAndChunkQueryable, error) {
	rr := c.Metrics.RemoteRead
	if rr.URL == "" {
		return nil, nil
	}
	u, err := url.Parse(rr.URL)
	if err != nil {
		return nil, fmt.Errorf("metrics::remote_read::url: %w", err)
	}
	headers := map[string]string{}
	for k, v := range rr.Headers {
		headers[k] = string(v)
	}
	rc, err := remote.NewReadClient("sightline", &remote.ClientConfig{
		URL: &promconfig.URL{URL: u}, Timeout: model.Duration(rr.Timeout),
		HTTPClientConfig: promconfig.DefaultHTTPClientConfig, Headers: headers,
		// Prometheus's own bound on one streamed message.
		ChunkedReadLimit: promcfg.DefaultChunkedReadLimit,
	})
	if err != nil {
		return nil, fmt.Errorf("metrics::remote_read: %w", err)
	}
	// readRecent: there is no local copy of recent samples to prefer.
	return remote.NewSampleAndChunkQueryableClient(rc, labels.EmptyLabels(), nil, true, func() (int64, error) { return 0, nil }), nil
}
