package block

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/parquet-go/parquet-go"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// The trace table (format 2, TraceTableFile) holds one row per trace of a
// trace block: what a search result shows of a trace and what trace-level
// conditions ask, so that a search answers from it instead of assembling
// every matching trace from its spans, which read each candidate's rows in
// every core column. Rows are sorted by trace ID, as the traces are in
// data.parquet.
type traceRow struct {
	TraceID [16]byte `parquet:"trace_id"`
	// Start is the earliest span start; Duration the latest span end
	// minus Start. Delta encoding gains nothing on starts in trace-ID
	// order, so they are plain; the column index's bounds still let a
	// reader skip pages by time.
	Start    int64 `parquet:"start_unix_nano"`
	Duration int64 `parquet:"duration_nano"`
	// RootService and RootName are those of the first span without a
	// parent in (start, span ID) order; HasRoot says whether there is
	// one. Both columns repeat a few dozen values: dictionaries.
	HasRoot     bool   `parquet:"has_root"`
	RootService string `parquet:"root_service,dict"`
	RootName    string `parquet:"root_name,dict"`
	Spans       int32  `parquet:"span_count"`
	Errors      int32  `parquet:"error_count"`
	// Services counts spans and errors per service, sorted by name: a
	// search result's service stats. A repeated group rather than a blob,
	// so that a reader can ask which traces touch a service.
	Services []serviceRow `parquet:"services"`
	// FirstRow is the trace's first row in data.parquet, counted from
	// the file's start: with the next trace's, the exact rows a lookup
	// by ID needs.
	FirstRow int64 `parquet:"first_row,delta"`
}

type serviceRow struct {
	Service string `parquet:"service,dict"`
	Spans   int32  `parquet:"span_count"`
	Errors  int32  `parquet:"error_count"`
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
	svc []serviceRow
	// row counts the block's span rows so far.
	row  int64
	open bool
	err  error
}

func newTraceTable(opts WriteOptions) (*traceTable, error) {
	f, cleanup, err := tempFile(opts.TempDir)
	if err != nil {
		return nil, err
	}
	topts := opts
	topts.PageFiles = nil // the data file's writer uses them
	return &traceTable{
		f: f, cleanup: cleanup,
		w:    parquet.NewGenericWriter[traceRow](f, writerOptions[traceRow](topts)...),
		rows: make([]traceRow, 0, writeBatch),
	}, nil
}

// span adds the next span row of the block, which arrive in block order:
// inside a trace by start, so the first is the earliest. A trace ends when
// the next trace's first span arrives, or at finish.
func (t *traceTable) span(id storage.TraceID, start, end int64, root bool, name, service string, status int32) {
	if !t.open || t.cur.TraceID != id {
		t.endTrace()
		t.cur = traceRow{TraceID: id, Start: start, Duration: end - start, FirstRow: t.row}
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
	k := slices.IndexFunc(t.svc, func(s serviceRow) bool { return s.Service == service })
	if k < 0 {
		t.svc = append(t.svc, serviceRow{Service: service})
		k = len(t.svc) - 1
	}
	t.svc[k].Spans++
	if isErr {
		t.svc[k].Errors++
	}
	t.row++
}

func (t *traceTable) endTrace() {
	if !t.open || t.err != nil {
		return
	}
	slices.SortFunc(t.svc, func(a, b serviceRow) int { return cmpString(a.Service, b.Service) })
	t.cur.Services = slices.Clone(t.svc)
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
	if !parquet.EqualNodes(f.Schema(), traceSchema) {
		ra.Close()
		return fmt.Errorf("trace table schema is not this build's")
	}
	b.tracesRA, b.traces = ra, f
	return nil
}

var traceSchema = parquet.SchemaOf(traceRow{})

// MayContain reports whether the block may hold trace id (its bloom
// filter: false positives, never false negatives).
func (b *Block) MayContain(id storage.TraceID) bool { return b.bloom.MayContain(id) }

// HasTraceTable reports whether the block has a trace table (format 2).
func (b *Block) HasTraceTable() bool { return b.traces != nil }

// TraceSummaries calls fn with the trace table's row of each of ids
// (sorted, distinct) that the block holds. A block without a trace table
// calls fn for none. The summary is valid until fn returns.
func (b *Block) TraceSummaries(ctx context.Context, ids []storage.TraceID, fn func(*storage.TraceSummary)) (err error) {
	defer b.guard(&err)
	if b.traces == nil || len(ids) == 0 {
		return nil
	}
	ids = slices.DeleteFunc(slices.Clone(ids), func(id storage.TraceID) bool { return !b.bloom.MayContain(id) })
	if len(ids) == 0 {
		return nil
	}
	stats := storage.StatsFrom(ctx)
	ci := traceSchemaTraceID
	var sum storage.TraceSummary
	for _, rg := range b.traces.RowGroups() {
		if err := ctx.Err(); err != nil {
			return err
		}
		keep := make([]bool, rg.NumRows())
		found, read, err := markTraces(rg.ColumnChunks()[ci], ids, keep, 0)
		if err != nil {
			return b.readErr(err)
		}
		if err := stats.AddBytes(read); err != nil {
			return err
		}
		if found == 0 {
			continue
		}
		if err := stats.AddBytes(chunksBytes(rg, keep)); err != nil {
			return err
		}
		_, err = readRuns(rg, keep, func(r *traceRow) bool {
			sum = storage.TraceSummary{
				TraceID: r.TraceID, Start: r.Start, End: r.Start + r.Duration,
				HasRoot: r.HasRoot, RootService: r.RootService, RootName: r.RootName,
				Spans: int(r.Spans), Errors: int(r.Errors), Services: sum.Services[:0],
			}
			for _, s := range r.Services {
				sum.Services = append(sum.Services, storage.ServiceSpans{Service: s.Service, Spans: int(s.Spans), Errors: int(s.Errors)})
			}
			fn(&sum)
			return true
		})
		if err != nil {
			return b.readErr(err)
		}
	}
	return nil
}

var traceSchemaTraceID = func() int {
	leaf, ok := traceSchema.Lookup("trace_id")
	if !ok {
		panic("block: trace table has no trace_id column")
	}
	return leaf.ColumnIndex
}()

// chunksBytes is the compressed size of the pages of every column of rg
// that hold a kept row, dictionaries included; a column without an offset
// index counts whole.
func chunksBytes(rg parquet.RowGroup, keep []bool) int64 {
	var n int64
	for _, cc := range rg.ColumnChunks() {
		oi, err := cc.OffsetIndex()
		if err != nil || oi == nil || oi.NumPages() == 0 {
			continue
		}
		for p := range oi.NumPages() {
			from := int(oi.FirstRowIndex(p))
			to := len(keep)
			if p+1 < oi.NumPages() {
				to = int(oi.FirstRowIndex(p + 1))
			}
			if from < to && to <= len(keep) && slices.Contains(keep[from:to], true) {
				n += oi.CompressedPageSize(p)
			}
		}
	}
	return n
}
