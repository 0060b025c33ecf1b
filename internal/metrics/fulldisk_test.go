package metrics

import (
	"context"
	"math"
	"os/exec"
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
	point := func(i int) error {
		md, sm := newBatch()
		m := sm.Metrics().AppendEmpty()
		m.SetName("points")
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.NewTimestampFromTime(base.Add(time.Duration(i) * time.Millisecond)))
		dp.SetDoubleValue(float64(i))
		// A large label value per series makes the WAL grow fast.
		dp.Attributes().PutStr("pad", string(make([]byte, 2000)))
		dp.Attributes().PutInt("series", int64(i%500))
		_, err := db.AppendOTLP(context.Background(), md)
		return err
	}
	acked := map[int]bool{}
	i := 0
	var failed error
	for ; i < 100_000 && failed == nil; i++ {
		if err := point(i); err != nil {
			failed = err
			break
		}
		acked[i] = true
	}
	require.ErrorIs(t, failed, ErrWrite, "the 2 MiB disk never filled")
	out, err := exec.Command("mount", "-o", "remount,size=64m", mnt).CombinedOutput()
	require.NoError(t, err, "%s", out)
	after := 0
	for j := i + 1; after < 1500; j++ {
		if err := point(j); err != nil {
			t.Fatalf("after freeing space: %v", err)
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
			got[int(v)] = true
		}
	}
	require.NoError(t, ss.Err())
	missing := 0
	for k := range acked {
		if !got[k] {
			missing++
		}
	}
	require.Zero(t, missing, "%d of %d acknowledged points lost (%d acknowledged after the disk was freed)", missing, len(acked), after)
}
