package sightlinestorage_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/exporter/sightlineexporter"
	"github.com/sightlinehq/sightline/extension/sightlinestorage"
	"github.com/sightlinehq/sightline/internal/otlpguard"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/workload"
)

// host is a component host with the given extensions.
type host map[component.ID]component.Component

func (h host) GetExtensions() map[component.ID]component.Component { return h }

func startStorage(t *testing.T, h host, id component.ID) *sightlinestorage.Storage {
	t.Helper()
	f := sightlinestorage.NewFactory()
	cfg := f.CreateDefaultConfig().(*sightlinestorage.Config)
	cfg.Path = t.TempDir()
	ext, err := f.Create(context.Background(), extensiontest.NewNopSettings(f.Type()), cfg)
	require.NoError(t, err)
	h[id] = ext
	require.NoError(t, ext.Start(context.Background(), h))
	t.Cleanup(func() { require.NoError(t, ext.Shutdown(context.Background())) })
	return ext.(*sightlinestorage.Storage)
}

// Two storages in one process are two stores: each exporter writes to the
// one it names, found through the host, and nothing is shared through
// package state.
func TestExportersWriteToTheStorageTheyName(t *testing.T) {
	ctx := context.Background()
	h := host{}
	a := startStorage(t, h, component.MustNewIDWithName("sightline_storage", "a"))
	b := startStorage(t, h, component.MustNewIDWithName("sightline_storage", "b"))
	ef := sightlineexporter.NewFactory()
	cfg := ef.CreateDefaultConfig().(*sightlineexporter.Config)
	cfg.Storage = component.MustNewIDWithName("sightline_storage", "b")
	exp, err := ef.CreateTraces(ctx, exportertest.NewNopSettings(ef.Type()), cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(ctx, h))
	defer exp.Shutdown(ctx)

	td, _ := workload.New(7, time.Now(), workload.Options{}).Batch(3)
	require.NoError(t, exp.ConsumeTraces(ctx, td))
	count := func(s *sightlinestorage.Storage) int {
		q, err := s.Store().Querier(ctx)
		require.NoError(t, err)
		defer q.Close()
		n := 0
		for _, id := range traceIDs(td) {
			spans, err := q.TraceByID(ctx, id, 0, 0)
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			require.NoError(t, err)
			n += len(spans)
		}
		return n
	}
	require.Equal(t, td.SpanCount(), count(b))
	require.Zero(t, count(a))

	// Each storage admits on its own budget; both are asked through the host.
	require.NoError(t, otlpguard.HostAdmission(h)(otlpguard.Traces))
}

func traceIDs(td ptrace.Traces) []storage.TraceID {
	seen := map[storage.TraceID]bool{}
	var out []storage.TraceID
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				id := storage.TraceID(sp.TraceID())
				if !seen[id] {
					seen[id] = true
					out = append(out, id)
				}
			}
		}
	}
	return out
}

// An exporter or query extension whose storage is missing, or names
// another kind of extension, fails to start and says what to configure.
func TestGetStorageSaysWhatIsMissing(t *testing.T) {
	h := host{component.MustNewID("health_check"): struct {
		component.StartFunc
		component.ShutdownFunc
	}{}}
	_, err := sightlinestorage.GetStorage(h, component.MustNewID("sightline_storage"))
	require.ErrorIs(t, err, sightlinestorage.ErrNoStorage)
	require.ErrorContains(t, err, "list it in service::extensions")
	_, err = sightlinestorage.GetStorage(h, component.MustNewID("health_check"))
	require.ErrorIs(t, err, sightlinestorage.ErrNoStorage)
	require.ErrorContains(t, err, "is a health_check")
}
