package storage

import (
	"cmp"
	"slices"
)

// OldestLogs keeps the Limit oldest log records it is given, by
// Timestamp, every one when Limit is not positive. Records of the same
// time keep the order they were added in, so the result is what a stable
// sort of everything added would begin with.
//
// It holds at most twice Limit records: when that fills, it sorts them
// and drops the newer half. n records cost O(n log Limit), and a trace
// with millions of log records is read without being held.
type OldestLogs struct {
	Limit int
	recs  []LogRecord
}

// Add copies l in.
func (o *OldestLogs) Add(l *LogRecord) {
	if o.Limit > 0 && len(o.recs) == 2*o.Limit {
		o.cut()
	}
	o.recs = append(o.recs, *l)
}

// Result returns the records kept, oldest first. o must not be used
// after.
func (o *OldestLogs) Result() []LogRecord {
	o.cut()
	return o.recs
}

func (o *OldestLogs) cut() {
	slices.SortStableFunc(o.recs, func(a, b LogRecord) int { return cmp.Compare(a.Timestamp(), b.Timestamp()) })
	if o.Limit > 0 && len(o.recs) > o.Limit {
		clear(o.recs[o.Limit:]) // drop references to the records cut
		o.recs = o.recs[:o.Limit]
	}
}
