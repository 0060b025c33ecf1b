package metrics

import (
	"context"
	"errors"
	"math"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

// A full disk fails writes; once space is freed, every point acknowledged
// after the failure must survive a restart. Prometheus's WAL repair cuts a
// segment at its first torn record, so a write accepted behind the torn
// record of the failed one would be lost.
func TestAcknowledgedPointsSurviveAFullDisk(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mounting a tmpfs needs root (CI runs as root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	db, err := Open(Options{Dir: mnt, Retention: 24 * time.Hour})
	require.NoError(t, err)
	base := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	// Each batch is one WAL samples record of about 50 KiB, more than a
	// 32 KiB WAL page, so every record is split across pages and the
	// write that fails on the full disk tears one.
	const perBatch = 4000
	point := func(i int) error {
		md, sm := newBatch()
		m := sm.Metrics().AppendEmpty()
		m.SetName("points")
		g := m.SetEmptyGauge().DataPoints()
		for k := range perBatch {
			dp := g.AppendEmpty()
			dp.SetTimestamp(pcommon.NewTimestampFromTime(base.Add(time.Duration(i) * time.Millisecond)))
			dp.SetDoubleValue(float64(i*perBatch + k))
			dp.Attributes().PutInt("series", int64(k))
		}
		_, err := db.AppendOTLP(context.Background(), md)
		return err
	}
	acked := map[int]bool{}
	i := 0
	var failed error
	for ; i < 10_000 && failed == nil; i++ {
		if err := point(i); err != nil {
			failed = err
			break
		}
		acked[i] = true
	}
	require.ErrorIs(t, failed, ErrWrite, "the 2 MiB disk never filled")
	out, err := exec.Command("mount", "-o", "remount,size=64m", mnt).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Error(t, db.Problem(), "the failure shows in health")
	require.Positive(t, db.WriteFailures())
	// Writes are refused, retryably, until the TSDB is reopened; clients
	// retry, as OTLP clients do on a retryable error. Several at once: the
	// repair must not deadlock with appends in flight.
	const clients = 4
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(time.Minute)
			for err := point(i + 1 + c); err != nil; err = point(i + 1 + c) {
				if !errors.Is(err, ErrWrite) || time.Now().After(deadline) {
					errs <- err
					return
				}
				time.Sleep(20 * time.Millisecond) // a client's retry backoff
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("writes never resumed: the repair and the appends are deadlocked")
	}
	close(errs)
	for err := range errs {
		t.Fatalf("writes never resumed: %v", err)
	}
	for c := range clients {
		acked[i+1+c] = true
	}
	i += clients - 1
	require.NoError(t, db.Problem(), "health is green again once writes succeed")
	after := 1
	for j := i + 2; after < 20; j++ {
		if err := point(j); err != nil {
			t.Fatalf("after the repair: %v", err)
		}
		acked[j] = true
		after++
	}
	require.NoError(t, db.Close())

	db, err = Open(Options{Dir: mnt, Retention: 24 * time.Hour})
	require.NoError(t, err)
	defer db.Close()
	q, err := db.TSDB().Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "points"))
	got := map[int]bool{}
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for it.Next() != 0 {
			_, v := it.At()
			got[int(v)/perBatch] = true
		}
	}
	require.NoError(t, ss.Err())
	missing := 0
	for k := range acked {
		if !got[k] {
			missing++
		}
	}
	require.Zero(t, missing, "%d of %d acknowledged batches lost (%d acknowledged after the disk was freed)", missing, len(acked), after)
}
