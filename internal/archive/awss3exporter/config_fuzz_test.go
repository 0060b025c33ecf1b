package awss3exporter

import (
	"strings"
	"testing"
	"time"
)

// FuzzPartition checks that every layout Validate accepts renders with
// all of its directives replaced.
func FuzzPartition(f *testing.F) {
	f.Add("year=%Y/month=%m/day=%d/hour=%H/minute=%M")
	f.Add("%Y%m%d%H%M%S")
	f.Add("%")
	f.Add("%%Y")
	f.Add("plain/path")
	f.Fuzz(func(t *testing.T, layout string) {
		got := partition(layout, time.Date(2026, 11, 22, 6, 7, 8, 0, time.UTC))
		if checkPartitionFormat(layout) != nil {
			return
		}
		if strings.Contains(got, "%") {
			t.Errorf("accepted layout %q rendered as %q", layout, got)
		}
	})
}
