package block

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"slices"

	"github.com/parquet-go/parquet-go"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// The trace table (format 2 and later, TraceTableFile) holds one row per
// trace of a trace block: what a search result shows of a trace and what
// trace-level conditions ask, so that a search answers from it instead of
// assembling every matching trace from its spans, which reads each
// candidate's rows in every core column. Rows are sorted by trace ID, as
// the traces are in data.parquet.
//
// Every column is flat and required, so that a lookup reads each column
// page by page, only the pages holding the traces it wants, the way core
// reads of span columns do (keptChunkPages). Pages are 8 KiB before
// compression, an eighth of the data file's: a row is ~40 bytes and a
// lookup wants a few rows scattered over the table, so a small page is
// what one lookup decompresses per column (see writeTraceTable).
//
// The table is what a search for many traces reads most of, a few rows
// per page; like the data file's core columns it is Snappy, which decodes
// several times faster than zstd, with the trace IDs (random, one per
// row) uncompressed.
type traceRow struct {
	TraceID [16]byte `parquet:"trace_id,uncompressed"`
	// Start is the earliest span start; Duration the latest span end
	// minus Start. In trace-ID order both are random within the block's
	// range, but their deltas still take fewer bits than eight bytes: a
	// delta-encoded page is smaller than a plain one Snappy has
	// compressed, and reads without decompressing (format 3's columns
	// other than has_root are uncompressed for that: 1,000 summaries
	// from a 30k-trace table took a fifth less time, and the table is 9%
	// smaller). The column index's bounds still let a reader skip pages
	// by time.
	Start    int64 `parquet:"start_unix_nano,delta,uncompressed"`
	Duration int64 `parquet:"duration_nano,delta,uncompressed"`
	// RootService and RootName are those of the first span without a
	// parent in (start, span ID) order; HasRoot says whether there is
	// one. Both columns repeat a few dozen values: dictionaries.
	HasRoot     bool   `parquet:"has_root,snappy"`
	RootService string `parquet:"root_service,dict,uncompressed"`
	RootName    string `parquet:"root_name,dict,uncompressed"`
	Spans       int32  `parquet:"span_count,delta,uncompressed"`
	Errors      int32  `parquet:"error_count,delta,uncompressed"`
	// ServiceSet names the trace's services, sorted: uvarint n | n × str
	// service. ServiceCounts holds each one's spans and errors in that
	// order: n × (uvarint spans | uvarint errors). Both are flat columns
	// rather than a repeated group, which a page-wise reader could not
	// align with rows. They are apart because traces of one shape share
	// the set but rarely the counts: format 2's one column of both
	// overflowed its dictionary (5.8 MB plain per 2.4M spans) and was
	// most of what a search for 1,000 traces read of the table. The set's
	// dictionary holds each shape once, a row costs an index, and a page
	// of indexes covers thousands of traces. The counts are a few bytes
	// a row, which Snappy would shrink less than it costs to undo.
	ServiceSet    []byte `parquet:"service_set,dict,uncompressed"`
	ServiceCounts []byte `parquet:"service_counts,uncompressed"`

	// services is the row's format 2 column (traceRowV2.Services), set
	// only when writing format 2.
	services []byte
}

// traceRowV2 is a row of a format 2 trace table: traceRow with one
// column, services, in place of ServiceSet and ServiceCounts, encoded as
// uvarint n | n × (str service | uvarint spans | uvarint errors). It
// repeats traceRow's other fields rather than sharing them: a written
// format's schema must not move when the next one's does.
type traceRowV2 struct {
	TraceID     [16]byte `parquet:"trace_id,uncompressed"`
	Start       int64    `parquet:"start_unix_nano,snappy"`
	Duration    int64    `parquet:"duration_nano,snappy"`
	HasRoot     bool     `parquet:"has_root,snappy"`
	RootService string   `parquet:"root_service,dict,snappy"`
	RootName    string   `parquet:"root_name,dict,snappy"`
	Spans       int32    `parquet:"span_count,snappy"`
	Errors      int32    `parquet:"error_count,snappy"`
	Services    []byte   `parquet:"services,dict,snappy"`
}

// traceTable builds the trace table while a block's span rows stream
// through in block order. It holds one trace's figures at a time and
// writes each row as its trace ends, so its memory does not grow with the
// block.
type traceTable struct {
	f       *os.File
	cleanup func()
	w       *parquet.GenericWriter[traceRow]
	// w2 and rows2 write format 2 instead of w (WriteOptions.Format).
	w2    *parquet.GenericWriter[traceRowV2]
	rows2 []traceRowV2
	rows  []traceRow
	cur   traceRow
	// svc holds the current trace's services; few, so a slice.
	svc []storage.ServiceSpans
	// blobs holds the services blobs of the rows not yet written.
	blobs []byte
	// names interns root names given as bytes (rootName).
	names map[string]string
	open  bool
	err   error
}

func newTraceTable(opts WriteOptions) (*traceTable, error) {
	f, cleanup, err := tempFile(opts.TempDir)
	if err != nil {
		return nil, err
	}
	// PageFiles is a pool: the table's columns take files of their own.
	t := &traceTable{f: f, cleanup: cleanup, rows: make([]traceRow, 0, writeBatch)}
	if opts.Format == 2 {
		t.w2 = parquet.NewGenericWriter[traceRowV2](f, append(writerOptions[traceRowV2](opts), parquet.PageBufferSize(traceTablePage))...)
		t.rows2 = make([]traceRowV2, 0, writeBatch)
	} else {
		t.w = parquet.NewGenericWriter[traceRow](f, append(writerOptions[traceRow](opts), parquet.PageBufferSize(traceTablePage))...)
	}
	return t, nil
}

// span adds the next span row of the block, which arrive in block order:
// inside a trace by start, so the first is the earliest. A trace ends when
// the next trace's first span arrives, or at finish.
func (t *traceTable) span(id storage.TraceID, start, end int64, root bool, name, service string, status int32) {
	if !t.open || t.cur.TraceID != id {
		t.endTrace()
		t.cur = traceRow{TraceID: id, Start: start, Duration: end - start}
		t.svc = t.svc[:0]
		t.open = true
	}
	c := &t.cur
	c.Duration = max(c.Duration, end-c.Start)
	if root && !c.HasRoot {
		c.HasRoot, c.RootService, c.RootName = true, service, name
	}
	c.Spans++
	isErr := status == int32(storage.StatusError)
	if isErr {
		c.Errors++
	}
	k := slices.IndexFunc(t.svc, func(s storage.ServiceSpans) bool { return s.Service == service })
	if k < 0 {
		t.svc = append(t.svc, storage.ServiceSpans{Service: service})
		k = len(t.svc) - 1
	}
	t.svc[k].Spans++
	if isErr {
		t.svc[k].Errors++
	}
}

// rootName returns b as a string, allocating once per distinct name: a
// merge reads names as bytes, and roots repeat a few dozen of them.
func (t *traceTable) rootName(b []byte) string {
	if s, ok := t.names[string(b)]; ok {
		return s
	}
	if t.names == nil || len(t.names) >= maxSeenRes {
		t.names = map[string]string{}
	}
	s := string(b)
	t.names[s] = s
	return s
}

func (t *traceTable) endTrace() {
	if !t.open || t.err != nil {
		return
	}
	slices.SortFunc(t.svc, func(a, b storage.ServiceSpans) int { return cmpString(a.Service, b.Service) })
	// The blobs of a batch of rows share one buffer, reset once the
	// batch is written.
	n := len(t.blobs)
	if t.w2 != nil {
		t.blobs = appendServices(t.blobs, t.svc)
		t.cur.services = t.blobs[n:len(t.blobs):len(t.blobs)]
	} else {
		t.blobs = appendServiceSet(t.blobs, t.svc)
		m := len(t.blobs)
		t.blobs = appendServiceCounts(t.blobs, t.svc)
		t.cur.ServiceSet = t.blobs[n:m:m]
		t.cur.ServiceCounts = t.blobs[m:len(t.blobs):len(t.blobs)]
	}
	t.rows = append(t.rows, t.cur)
	t.open = false
	if len(t.rows) == cap(t.rows) {
		t.flushRows()
	}
}

func (t *traceTable) flushRows() {
	if len(t.rows) == 0 || t.err != nil {
		return
	}
	var err error
	if t.w2 != nil {
		for _, r := range t.rows {
			t.rows2 = append(t.rows2, traceRowV2{TraceID: r.TraceID, Start: r.Start, Duration: r.Duration, HasRoot: r.HasRoot,
				RootService: r.RootService, RootName: r.RootName, Spans: r.Spans, Errors: r.Errors, Services: r.services})
		}
		_, err = t.w2.Write(t.rows2)
		clear(t.rows2)
		t.rows2 = t.rows2[:0]
	} else {
		_, err = t.w.Write(t.rows)
	}
	if err != nil {
		t.err = fmt.Errorf("write trace table: %w", err)
	}
	clear(t.rows)
	t.rows = t.rows[:0]
	t.blobs = t.blobs[:0]
}

// finish closes the table and uploads it; it returns its size.
func (t *traceTable) finish(ctx context.Context, st *objstore.Store, sig Signal, id string) (int64, error) {
	t.endTrace()
	t.flushRows()
	if t.err != nil {
		return 0, t.err
	}
	var err error
	if t.w2 != nil {
		err = t.w2.Close()
	} else {
		err = t.w.Close()
	}
	if err != nil {
		return 0, fmt.Errorf("write trace table: %w", err)
	}
	fi, err := t.f.Stat()
	if err != nil {
		return 0, err
	}
	if _, err := t.f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	if err := st.Put(ctx, Key(sig, id, TraceTableFile), t.f); err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (t *traceTable) close() {
	if t != nil {
		t.cleanup()
	}
}

// openTraceTable opens a format 2+ block's trace table.
func (b *Block) openTraceTable(ctx context.Context) error {
	ra, err := b.st.OpenReaderAt(ctx, Key(b.Meta.Signal, b.Meta.ID, TraceTableFile))
	if err != nil {
		return err
	}
	if ra.Size() != b.Meta.TraceTableBytes {
		ra.Close()
		return fmt.Errorf("trace table is %d bytes, meta says %d", ra.Size(), b.Meta.TraceTableBytes)
	}
	f, err := openParquet(ra)
	if err != nil {
		ra.Close()
		return err
	}
	if f.NumRows() != b.Meta.Traces {
		ra.Close()
		return fmt.Errorf("trace table has %d rows, meta says %d traces", f.NumRows(), b.Meta.Traces)
	}
	cols, ok := traceColumnsOf(f.Schema(), b.Meta.Format)
	if !ok {
		// A table without the columns this build reads (one a later or
		// unreleased build wrote differently) is not damage: the block
		// is read without it, as a format 1 block is.
		return ra.Close()
	}
	b.tracesRA, b.traceCols = ra, cols
	b.keep(traceTableFile, f)
	return nil
}

var (
	traceSchema   = parquet.SchemaOf(traceRow{})
	traceSchemaV2 = parquet.SchemaOf(traceRowV2{})
)

// MayContain reports whether the block may hold trace id (its bloom
// filter: false positives, never false negatives).
func (b *Block) MayContain(id storage.TraceID) bool { return b.bloom.MayContain(id) }

// HasTraceTable reports whether the block has a trace table (format 2
// and later).
func (b *Block) HasTraceTable() bool { return b.tracesRA != nil }

// TraceSummaries calls fn with the trace table's row of each of ids
// (sorted, distinct) that the block holds. A block without a trace table
// calls fn for none. The summary is valid until fn returns.
//
// The table is read column by column: the trace_id pages whose bounds
// admit a wanted ID find the rows, then each other column is read in the
// pages that hold them.
func (b *Block) TraceSummaries(ctx context.Context, ids []storage.TraceID, fn func(*storage.TraceSummary)) (err error) {
	defer b.guard(&err)
	if b.tracesRA == nil || len(ids) == 0 {
		return nil
	}
	ids = slices.DeleteFunc(slices.Clone(ids), func(id storage.TraceID) bool { return !b.bloom.MayContain(id) })
	if len(ids) == 0 {
		return nil
	}
	table, err := b.reader(traceTableFile)
	if err != nil {
		return err
	}
	stats := storage.StatsFrom(ctx)
	for i, rg := range table.RowGroups() {
		if err := ctx.Err(); err != nil {
			return err
		}
		keep := make([]bool, rg.NumRows())
		found, read, err := markTraces(rg.ColumnChunks()[b.traceCols[ttTraceID]], i, b.pageSource(traceTableFile, storage.StatsFrom(ctx)), ids, keep, nil, chunkBytes(table, i, b.traceCols[ttTraceID]))
		if err == nil {
			err = stats.AddBytes(read)
		}
		if err != nil {
			return b.readErr(err)
		}
		if found == 0 {
			continue
		}
		sums, err := b.readSummaries(ctx, rg, i, keep, stats)
		if err != nil {
			return b.readErr(err)
		}
		for k := range sums {
			fn(&sums[k])
		}
	}
	return nil
}

// FindTraces calls fn with the ID of each trace whose row in the trace
// table f selects, in table order, and reports whether fn asked for more.
// A row describes the trace as this block holds it: its duration is at
// most the whole trace's, so a row that lasts MinDuration belongs to a
// trace that does. A block without a trace table finds nothing.
//
// The duration and error columns are read first, skipping pages whose
// bounds exclude the filter; trace IDs only in the pages that still hold
// a selected row.
func (b *Block) FindTraces(ctx context.Context, f *storage.TraceFilter, fn func(storage.TraceID) bool) (cont bool, err error) {
	defer b.guard(&err)
	if b.tracesRA == nil || f.End != 0 && b.Meta.MinTime > f.End || f.Start != 0 && b.Meta.MaxTime < f.Start {
		return true, nil
	}
	table, err := b.reader(traceTableFile)
	if err != nil {
		return false, err
	}
	var preds []colPred
	var cols []int
	if f.MinDuration > 0 {
		preds = append(preds, intRange("duration_nano", f.MinDuration, math.MaxInt64))
		cols = append(cols, b.traceCols[ttDuration])
	}
	if f.Errors {
		preds = append(preds, intRange("error_count", 1, math.MaxInt64))
		cols = append(cols, b.traceCols[ttErrors])
	}
	if f.End != 0 {
		preds = append(preds, intRange("start_unix_nano", math.MinInt64, f.End))
		cols = append(cols, b.traceCols[ttStart])
	}
	stats := storage.StatsFrom(ctx)
	var sc rowScratch
	for i, rg := range table.RowGroups() {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		keep := sc.keepRows(int(rg.NumRows()))
		fillTrue(keep)
		chunks := rg.ColumnChunks()
		for k := range preds {
			p := &preds[k]
			if cix, oi, ok := columnBounds(chunks[cols[k]]); ok {
				clearExcludedPages(p, cix, oi, keep)
			}
			if !anyKept(keep) {
				break
			}
			var dict dictMatch
			read, err := keptChunkPages(ctx, table, chunks[cols[k]], i, cols[k], b.pageSource(traceTableFile, storage.StatsFrom(ctx)), keep, func(from int, pg parquet.Page) {
				n := min(int(pg.NumRows()), len(keep)-from)
				p.page(pg, keep[from:from+n], &dict)
			})
			if err == nil {
				err = stats.AddBytes(read)
			}
			if err != nil {
				return false, b.readErr(err)
			}
		}
		if !anyKept(keep) {
			continue
		}
		var pv pageValues
		stop := false
		ci := b.traceCols[ttTraceID]
		read, err := keptChunkPages(ctx, table, chunks[ci], i, ci, b.pageSource(traceTableFile, storage.StatsFrom(ctx)), keep, func(from int, pg parquet.Page) {
			if stop {
				return
			}
			pv.load(pg, nil)
			for k := range min(int(pg.NumRows()), len(keep)-from) {
				if keep[from+k] && !fn(storage.TraceID(pv.bytesAt(k, pg))) {
					stop = true
					return
				}
			}
		})
		if err == nil {
			err = stats.AddBytes(read)
		}
		if err != nil {
			return false, b.readErr(err)
		}
		if stop {
			return false, nil
		}
	}
	return true, nil
}

// readSummaries reads the kept rows of row group i of the trace table.
func (b *Block) readSummaries(ctx context.Context, rg parquet.RowGroup, i int, keep []bool, stats *storage.Stats) ([]storage.TraceSummary, error) {
	kept := appendKept(nil, keep)
	sums := make([]storage.TraceSummary, len(kept))
	var pv pageValues
	var dict dictStrings
	v2 := b.Meta.Format == 2
	var svc map[string][]storage.ServiceSpans // decoded format 2 services blobs
	var sets map[string][]string              // decoded service sets
	var setOf [][]string                      // each kept row's, while its counts are read
	var all []storage.ServiceSpans            // what the summaries' Services slice
	for c, ci := range b.traceCols {
		dict = dictStrings{}
		// The j-th kept row is sums[j].
		read, err := keptChunkPages(ctx, fileOf(rg), rg.ColumnChunks()[ci], i, ci, b.pageSource(traceTableFile, storage.StatsFrom(ctx)), keep, func(from int, pg parquet.Page) {
			pv.load(pg, &dict)
			j0, in := keptIn(kept, from, from+min(int(pg.NumRows()), len(keep)-from))
			for x, r := range in {
				k := int(r) - from
				s := &sums[j0+x]
				switch c {
				case ttTraceID:
					copy(s.TraceID[:], pv.bytesAt(k, pg))
				case ttStart:
					s.Start = pv.int64At(k)
					s.End = s.Start
				case ttDuration:
					s.End += pv.int64At(k)
				case ttHasRoot:
					s.HasRoot = pv.int64At(k) != 0
				case ttRootService:
					s.RootService = pv.stringAt(k, pg)
				case ttRootName:
					s.RootName = pv.stringAt(k, pg)
				case ttSpans:
					s.Spans = int(pv.int64At(k))
				case ttErrors:
					s.Errors = int(pv.int64At(k))
				case ttServices:
					blob := pv.bytesAt(k, pg)
					if v2 {
						if svc == nil {
							svc = map[string][]storage.ServiceSpans{}
						}
						d, ok := svc[string(blob)]
						if !ok {
							d = decodeServices(blob)
							svc[string(blob)] = d
						}
						s.Services = d
						break
					}
					// A set repeats over traces of one shape: each is
					// decoded once.
					if sets == nil {
						sets, setOf = map[string][]string{}, make([][]string, len(sums))
					}
					d, ok := sets[string(blob)]
					if !ok {
						d = decodeServiceSet(blob)
						sets[string(blob)] = d
					}
					setOf[j0+x] = d
				case ttServiceCounts:
					if setOf == nil {
						break
					}
					from := len(all)
					all = decodeServiceCounts(all, setOf[j0+x], pv.bytesAt(k, pg))
					s.Services = all[from:len(all):len(all)]
				}
			}
		})
		if err == nil {
			err = stats.AddBytes(read)
		}
		if err != nil {
			return nil, err
		}
	}
	return sums, nil
}

// The trace table's columns a lookup reads, in the order of
// traceColumnNames.
const (
	ttTraceID = iota
	ttStart
	ttDuration
	ttHasRoot
	ttRootService
	ttRootName
	ttSpans
	ttErrors
	ttServices      // service_set; in format 2, services
	ttServiceCounts // service_counts; none in format 2
)

// traceColumnNames are the trace table's columns a lookup reads, in the
// order above; start precedes duration, which adds to it, and the
// service set precedes the counts, which it names. traceColumnNamesV2
// are a format 2 table's.
var (
	traceColumnNames   = []string{"trace_id", "start_unix_nano", "duration_nano", "has_root", "root_service", "root_name", "span_count", "error_count", "service_set", "service_counts"}
	traceColumnNamesV2 = []string{"trace_id", "start_unix_nano", "duration_nano", "has_root", "root_service", "root_name", "span_count", "error_count", "services"}
)

// traceColumnsOf finds the leaf indexes of the trace table columns of
// block format format (traceColumnNames, or traceColumnNamesV2 for
// format 2) in a trace table's schema, by name, so that a table with
// columns added later still reads. It reports false when one is missing
// or of another type, or is not a flat required column.
func traceColumnsOf(sch *parquet.Schema, format int) ([]int, bool) {
	names, want := traceColumnNames, traceSchema
	if format == 2 {
		names, want = traceColumnNamesV2, traceSchemaV2
	}
	out := make([]int, 0, len(names))
	for _, name := range names {
		want, _ := want.Lookup(name)
		got, ok := sch.Lookup(name)
		if !ok || got.Node.Type().Kind() != want.Node.Type().Kind() || got.MaxRepetitionLevel != 0 || got.MaxDefinitionLevel != 0 {
			return nil, false
		}
		out = append(out, got.ColumnIndex)
	}
	return out, true
}

// traceTablePage is the trace table's page size before compression.
const traceTablePage = 8 << 10

func appendServices(dst []byte, svc []storage.ServiceSpans) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(svc)))
	for _, s := range svc {
		dst = appendStr(dst, s.Service)
		dst = binary.AppendUvarint(dst, uint64(s.Spans))
		dst = binary.AppendUvarint(dst, uint64(s.Errors))
	}
	return dst
}

// appendServiceSet appends svc's service_set: its names.
func appendServiceSet(dst []byte, svc []storage.ServiceSpans) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(svc)))
	for _, s := range svc {
		dst = appendStr(dst, s.Service)
	}
	return dst
}

// appendServiceCounts appends svc's service_counts: each one's spans and
// errors.
func appendServiceCounts(dst []byte, svc []storage.ServiceSpans) []byte {
	for _, s := range svc {
		dst = binary.AppendUvarint(dst, uint64(s.Spans))
		dst = binary.AppendUvarint(dst, uint64(s.Errors))
	}
	return dst
}

// decodeServiceSet decodes a service_set blob; a damaged one decodes to
// what precedes the damage.
func decodeServiceSet(b []byte) []string {
	r := blobReader{b: b}
	n := r.uvarint()
	out := make([]string, 0, min(n, 64))
	for range n {
		s := r.str()
		if r.err != nil {
			break
		}
		out = append(out, s)
	}
	return out
}

// decodeServiceCounts appends to dst the services of names with their
// counts from a service_counts blob, in order; damaged or short counts
// end the list where they do.
func decodeServiceCounts(dst []storage.ServiceSpans, names []string, counts []byte) []storage.ServiceSpans {
	r := blobReader{b: counts}
	for _, name := range names {
		s := storage.ServiceSpans{Service: name, Spans: int(r.uvarint()), Errors: int(r.uvarint())}
		if r.err != nil {
			break
		}
		dst = append(dst, s)
	}
	return dst
}

// decodeServices decodes a format 2 services blob; a damaged one decodes
// to what precedes the damage.
func decodeServices(b []byte) []storage.ServiceSpans {
	r := blobReader{b: b}
	n := r.uvarint()
	out := make([]storage.ServiceSpans, 0, min(n, 64))
	for range n {
		s := storage.ServiceSpans{Service: r.str(), Spans: int(r.uvarint()), Errors: int(r.uvarint())}
		if r.err != nil {
			break
		}
		out = append(out, s)
	}
	return out
}
