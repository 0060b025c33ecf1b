package sightlinestorage_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/extensiontest"

	"github.com/sightlinehq/sightline/extension/sightlinestorage"
	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/workload"
)

// startRole starts a storage extension in role on the file:// bucket at
// bucketDir, as its own process would: its own data path.
func startRole(t *testing.T, bucketDir, role, id string, mod ...func(*sightlinestorage.Config)) (component.Component, *sightlinestorage.Storage) {
	t.Helper()
	f := sightlinestorage.NewFactory()
	cfg := f.CreateDefaultConfig().(*sightlinestorage.Config)
	cfg.Path = t.TempDir()
	cfg.Role = role
	cfg.Storage.BucketURL = "file://" + bucketDir
	sc := &cfg.Shared
	sc.InstanceID, sc.PollInterval, sc.DeleteDelay, sc.LeaseTTL = id, 50*time.Millisecond, time.Second, 4*time.Second
	sc.Handoff.NetAddr.Endpoint = "127.0.0.1:0"
	for _, m := range mod {
		m(cfg)
	}
	require.NoError(t, cfg.Validate())
	ext, err := f.Create(context.Background(), extensiontest.NewNopSettings(f.Type()), cfg)
	require.NoError(t, err)
	require.NoError(t, ext.Start(context.Background(), host{}))
	return ext, ext.(*sightlinestorage.Storage)
}

// Roles on one bucket: an ingester's blocks carry its ID and reach a
// querier by polling; of two compactors one holds the lease, and the other
// takes over when it stops.
func TestRolesShareABucket(t *testing.T) {
	ctx := context.Background()
	bucketDir := filepath.Join(t.TempDir(), "bucket")
	ingExt, ing := startRole(t, bucketDir, sightlinestorage.RoleIngester, "ingester-0")
	defer ingExt.Shutdown(ctx)
	qExt, querier := startRole(t, bucketDir, sightlinestorage.RoleQuerier, "querier-0")
	defer qExt.Shutdown(ctx)

	td, _ := workload.New(11, time.Now(), workload.Options{}).Batch(5)
	require.NoError(t, ing.Store().AppendTraces(td))
	require.NoError(t, ing.Store().Flush(ctx))
	for _, m := range ing.Store().BlockMetas() {
		require.Equal(t, "ingester-0", m.Writer)
	}
	waitFor(t, "the querier to find the ingester's block", func() bool {
		return querier.Store().Stats().BlockSpans == int64(td.SpanCount())
	})

	bucket, err := objstore.OpenFilesystem(bucketDir)
	require.NoError(t, err)
	observer := store.NewLease(bucket, "compactor", "observer", time.Minute, nil)
	holder := func() string {
		h, _, err := observer.Holder(ctx)
		require.NoError(t, err)
		return h
	}
	c1Ext, _ := startRole(t, bucketDir, sightlinestorage.RoleCompactor, "compactor-1")
	waitFor(t, "compactor-1 to take the lease", func() bool { return holder() == "compactor-1" })
	c2Ext, _ := startRole(t, bucketDir, sightlinestorage.RoleCompactor, "compactor-2")
	defer c2Ext.Shutdown(ctx)
	require.Equal(t, "compactor-1", holder(), "a second compactor took the held lease")
	require.NoError(t, c1Ext.Shutdown(ctx))
	waitFor(t, "compactor-2 to take over", func() bool { return holder() == "compactor-2" })
}

// waitFor polls cond until it holds, failing t after 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 30*time.Second, 20*time.Millisecond, "waiting for %s", what)
}

// A querier that reaches one ingester at two addresses (a dual-stack DNS
// name, a list naming it twice) reads it once.
func TestQuerierReadsAnIngesterOnce(t *testing.T) {
	ctx := context.Background()
	bucketDir := filepath.Join(t.TempDir(), "bucket")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ingExt, ing := startRole(t, bucketDir, sightlinestorage.RoleIngester, "ingester-0", func(c *sightlinestorage.Config) {
		c.Shared.Handoff.NetAddr.Endpoint = fmt.Sprintf("127.0.0.1:%d", port)
	})
	defer ingExt.Shutdown(ctx)
	qExt, querier := startRole(t, bucketDir, sightlinestorage.RoleQuerier, "querier-0", func(c *sightlinestorage.Config) {
		c.Shared.Ingesters = []string{fmt.Sprintf("http://127.0.0.1:%d", port), fmt.Sprintf("http://localhost:%d", port)}
	})
	defer qExt.Shutdown(ctx)

	td, _ := workload.New(12, time.Now(), workload.Options{}).Batch(5)
	require.NoError(t, ing.Store().AppendTraces(td))
	q, err := querier.Querier(ctx)
	require.NoError(t, err)
	defer q.Close()
	n := 0
	require.NoError(t, q.Spans(ctx, &storage.SpanQuery{}, func(*storage.Span) bool { n++; return true }))
	require.Equal(t, td.SpanCount(), n, "the ingester's head read once through two addresses")
}
