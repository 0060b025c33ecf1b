package sightlineexporter

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"

	"github.com/sightlinehq/sightline/extension/sightlinestorage"
)

// Config is the `sightline` exporter's configuration: only the storage it
// writes to. The store's own settings are the storage extension's.
type Config struct {
	// Storage names the sightline_storage extension to write to.
	Storage component.ID `mapstructure:"storage"`

	// moved are the store settings found on the exporter itself, where
	// they were before the store became an extension; Validate says where
	// each goes now.
	moved []string
}

// storeSettings are the keys the exporter held before the storage
// extension. `storage` is among them as a section (the block backend);
// as a name it is the extension's ID.
var storeSettings = []string{"path", "wal", "block", "retention", "compaction", "storage", "metrics", "memory", "limits"}

// Unmarshal sets the store settings of an older config aside for
// Validate, which reports them with where they belong, instead of the
// decoder's bare "invalid keys".
func (c *Config) Unmarshal(conf *confmap.Conf) error {
	raw := conf.ToStringMap()
	for k, v := range raw {
		if _, section := v.(map[string]any); k == "storage" && !section {
			continue // the extension's ID (or empty: the default)
		}
		if slices.Contains(storeSettings, k) {
			c.moved = append(c.moved, k)
			delete(raw, k)
		}
	}
	slices.Sort(c.moved)
	// plain has Config's fields without this method, which the decoder
	// would otherwise call again.
	type plain Config
	return confmap.NewFromStringMap(raw).Unmarshal((*plain)(c))
}

// Validate reports every problem, each with its key.
func (c *Config) Validate() error {
	var errs []error
	for _, k := range c.moved {
		errs = append(errs, fmt.Errorf("%s: is a setting of the %s extension now: move it to extensions::%s::%s", k, sightlinestorage.Type, sightlinestorage.Type, k))
	}
	if len(c.moved) > 0 {
		errs = append(errs, fmt.Errorf("the store's settings (%s) moved to the %s extension: configure it under extensions, list it in service::extensions, and name it here with storage: %s",
			strings.Join(c.moved, ", "), sightlinestorage.Type, sightlinestorage.Type))
	}
	if c.Storage.Type() != sightlinestorage.Type {
		errs = append(errs, fmt.Errorf("storage: %q is not a %s extension", c.Storage, sightlinestorage.Type))
	}
	return errors.Join(errs...)
}
