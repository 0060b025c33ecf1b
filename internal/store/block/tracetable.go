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

// The trace table (format 2, TraceTableFile) holds one row per trace of a
// trace block: what a search result shows of a trace and what trace-level
// conditions ask, so that a search answers from it instead of assembling
// every matching trace from its spans, which reads each candidate's rows
// in every core column. Rows are sorted by trace ID, as the traces are in
// data.parquet.
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
	// minus Start. Delta encoding gains nothing on starts in trace-ID
	// order, so they are plain; the column index's bounds still let a
	// reader skip pages by time.
	Start    int64 `parquet:"start_unix_nano,snappy"`
	Duration int64 `parquet:"duration_nano,snappy"`
	// RootService and RootName are those of the first span without a
	// parent in (start, span ID) order; HasRoot says whether there is
	// one. Both columns repeat a few dozen values: dictionaries.
	HasRoot     bool   `parquet:"has_root,snappy"`
	RootService string `parquet:"root_service,dict,snappy"`
	RootName    string `parquet:"root_name,dict,snappy"`
	Spans       int32  `parquet:"span_count,snappy"`
	Errors      int32  `parquet:"error_count,snappy"`
	// Services counts spans and errors per service, sorted by service,
	// encoded as uvarint n | n × (str service | uvarint spans | uvarint
	// errors): one flat column rather than a repeated group, which a
	// page-wise reader could not align with rows. Traces of one shape
	// repeat it, so it is dictionary-encoded.
	Services []byte `parquet:"services,dict,snappy"`
}

// traceTable builds the trace table while a block's span rows stream
// through in block order. It holds one trace's figures at a time and
// writes each row as its trace ends, so its memory does not grow with the
// block.
type traceTable struct {
	f       *os.File
	cleanup func()
	w       *parquet.GenericWriter[traceRow]
	rows    []traceRow
	cur     traceRow
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
	wopts := append(writerOptions[traceRow](opts), parquet.PageBufferSize(traceTablePage))
	return &traceTable{
		f: f, cleanup: cleanup,
		w:    parquet.NewGenericWriter[traceRow](f, wopts...),
		rows: make([]traceRow, 0, writeBatch),
	}, nil
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
	t.blobs = appendServices(t.blobs, t.svc)
	t.cur.Services = t.blobs[n:len(t.blobs):len(t.blobs)]
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
	if _, err := t.w.Write(t.rows); err != nil {
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
	if err := t.w.Close(); err != nil {
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

// openTraceTable opens a format-2 block's trace table.
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
	cols, ok := traceColumnsOf(f.Schema())
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

var traceSchema = parquet.SchemaOf(traceRow{})

// MayContain reports whether the block may hold trace id (its bloom
// filter: false positives, never false negatives).
func (b *Block) MayContain(id storage.TraceID) bool { return b.bloom.MayContain(id) }

// HasTraceTable reports whether the block has a trace table (format 2).
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
		found, read, err := markTraces(rg.ColumnChunks()[b.traceCols[ttTraceID]], ids, keep, nil, chunkBytes(table, i, b.traceCols[ttTraceID]))
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
			read, err := keptChunkPages(ctx, table, chunks[cols[k]], i, cols[k], keep, func(from int, pg parquet.Page) {
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
		read, err := keptChunkPages(ctx, table, chunks[ci], i, ci, keep, func(from int, pg parquet.Page) {
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
	var svc map[string][]storage.ServiceSpans // decoded services blobs
	for c, ci := range b.traceCols {
		dict = dictStrings{}
		// The j-th kept row is sums[j].
		read, err := keptChunkPages(ctx, fileOf(rg), rg.ColumnChunks()[ci], i, ci, keep, func(from int, pg parquet.Page) {
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
					if svc == nil {
						svc = map[string][]storage.ServiceSpans{}
					}
					d, ok := svc[string(blob)]
					if !ok {
						d = decodeServices(blob)
						svc[string(blob)] = d
					}
					s.Services = d
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
	ttServices
)

// traceColumnNames are the trace table's columns a lookup reads, in the
// order above; start precedes duration, which adds to it.
var traceColumnNames = []string{"trace_id", "start_unix_nano", "duration_nano", "has_root", "root_service", "root_name", "span_count", "error_count", "services"}

// traceColumnsOf finds the leaf indexes of traceColumnNames in a trace
// table's schema, by name, so that a table with columns added later
// still reads. It reports false when one is missing or of another type,
// or is not a flat required column.
func traceColumnsOf(sch *parquet.Schema) ([]int, bool) {
	out := make([]int, 0, len(traceColumnNames))
	for _, name := range traceColumnNames {
		want, _ := traceSchema.Lookup(name)
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

// decodeServices decodes a services blob; a damaged one decodes to what
// precedes the damage.
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
