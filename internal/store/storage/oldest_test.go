package storage

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOldestLogs holds OldestLogs to a stable sort of everything it is
// given, cut to its limit, over timestamps with many ties (records that
// carry only an observed time among them), and checks it never holds more
// than twice the limit.
func TestOldestLogs(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	for _, limit := range []int{0, 1, 7, 100, 5000} {
		for _, n := range []int{0, 1, 6, 99, 1000, 20_000} {
			recs := make([]LogRecord, n)
			for i := range recs {
				ts := uint64(rnd.IntN(n/3 + 1))
				if i%5 == 0 {
					recs[i].ObservedTimeUnixNano = int64(ts)
				} else {
					recs[i].TimeUnixNano = int64(ts)
				}
				recs[i].Body.Str = string(rune('a' + i%26))
				recs[i].Flags = uint32(i) // identifies the record
			}
			want := slices.Clone(recs)
			slices.SortStableFunc(want, func(a, b LogRecord) int { return cmp.Compare(a.Timestamp(), b.Timestamp()) })
			if limit > 0 && len(want) > limit {
				want = want[:limit]
			}
			o := OldestLogs{Limit: limit}
			for i := range recs {
				o.Add(&recs[i])
				if limit > 0 {
					require.LessOrEqual(t, len(o.recs), 2*limit)
				}
			}
			got := o.Result()
			if len(want) == 0 {
				require.Empty(t, got, "limit %d, n %d", limit, n)
				continue
			}
			require.Equal(t, want, got, "limit %d, n %d", limit, n)
		}
	}
}
