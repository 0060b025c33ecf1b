package metrics

import (
	"maps"
	"strings"
	"sync"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
)

// maxMetadataFamilies bounds the metric families whose type, help and
// unit are kept: past it, new families are not described (their samples
// are stored all the same).
const maxMetadataFamilies = 100_000

// metadataStore holds the type, help and unit of each metric family, as
// the OTLP translator passes them with every sample (from the OTLP
// metric's type, description and unit), for Prometheus's
// /api/v1/metadata, which Grafana's metric browser reads. It is kept in
// memory only: after a restart a family is described again with its next
// sample, as Prometheus's scrape metadata is after its next scrape.
type metadataStore struct {
	mu sync.RWMutex
	m  map[string]metadata.Metadata
}

func (s *metadataStore) note(family string, md metadata.Metadata) {
	if family == "" || md == (metadata.Metadata{}) {
		return
	}
	s.mu.RLock()
	cur, ok := s.m[family]
	s.mu.RUnlock()
	if ok && cur == md {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]metadata.Metadata{}
	}
	if _, ok := s.m[family]; ok || len(s.m) < maxMetadataFamilies {
		// The translator's family name lives only for the Append call.
		s.m[strings.Clone(family)] = md
	}
}

// Metadata returns a copy of the metadata of every metric family written
// through this DB's OTLP path or AppenderV2, by family name.
func (d *DB) Metadata() map[string]metadata.Metadata {
	d.meta.mu.RLock()
	defer d.meta.mu.RUnlock()
	return maps.Clone(d.meta.m)
}

// Append records the sample's metadata once per run of samples of one
// family (the translator appends a family's series together), then
// appends.
func (a *appenderV2) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	if opts.MetricFamilyName != a.lastFamily || opts.Metadata != a.lastMeta {
		a.d.meta.note(opts.MetricFamilyName, opts.Metadata)
		a.lastFamily, a.lastMeta = strings.Clone(opts.MetricFamilyName), opts.Metadata
	}
	return a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
}
