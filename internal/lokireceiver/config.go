package lokireceiver

import (
	"errors"

	"go.opentelemetry.io/collector/config/confighttp"
)

// Config follows the contrib loki receiver's, so that its configs load
// unchanged; only the HTTP protocol is served.
type Config struct {
	Protocols Protocols `mapstructure:"protocols"`
	// UseIncomingTimestamp sets each record's time from the pushed entry;
	// otherwise only the observed time (arrival) is set, as upstream does.
	UseIncomingTimestamp bool `mapstructure:"use_incoming_timestamp"`
	// MaxLabelNamesPerSeries and MaxStructuredMetadataEntriesCount are
	// Loki's limits of the same names, with its defaults (15 and 128): a
	// push over them is refused with 400.
	MaxLabelNamesPerSeries            int `mapstructure:"max_label_names_per_series"`
	MaxStructuredMetadataEntriesCount int `mapstructure:"max_structured_metadata_entries_count"`
}

func (c *Config) limits() Limits {
	return Limits{MaxLabelNamesPerSeries: c.MaxLabelNamesPerSeries, MaxStructuredMetadataEntries: c.MaxStructuredMetadataEntriesCount}
}

// Protocols lists the servers to run.
type Protocols struct {
	HTTP *confighttp.ServerConfig `mapstructure:"http"`
}

// Validate reports every problem with its field path.
func (c *Config) Validate() error {
	var errs []error
	if c.Protocols.HTTP == nil {
		errs = append(errs, errors.New("protocols::http: must be set; the loki receiver serves Loki's HTTP push API"))
	} else if c.Protocols.HTTP.NetAddr.Endpoint == "" {
		errs = append(errs, errors.New("protocols::http::endpoint: must be set"))
	}
	if c.MaxLabelNamesPerSeries < 1 {
		errs = append(errs, errors.New("max_label_names_per_series: must be at least 1"))
	}
	if c.MaxStructuredMetadataEntriesCount < 0 {
		errs = append(errs, errors.New("max_structured_metadata_entries_count: must not be negative"))
	}
	return errors.Join(errs...)
}
