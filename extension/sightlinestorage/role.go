package sightlinestorage

import (
	"fmt"
	"os"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store"
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
