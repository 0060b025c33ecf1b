package block

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/parquet-go/parquet-go"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// ErrNotMergeable is returned by MergeSpans when the blocks cannot be merged
// row by row (a different format version or schema); the caller then
// merges them span by span (WriteSpans over AllSpans).
var ErrNotMergeable = errors.New("blocks cannot be merged row by row")

// spanSchema is the schema WriteSpans writes.
var spanSchema = parquet.SchemaOf(spanRow{})

// spanSorting is the block sort order, CompareSpans, as Parquet sorting
// columns. Rows equal on all three are the duplicates WriteSpans drops.
var spanSorting = parquet.SortingRowGroupConfig(
	parquet.SortingColumns(parquet.Ascending("trace_id"), parquet.Ascending("start_unix_nano"), parquet.Ascending("span_id")),
	parquet.DropDuplicatedRows(true),
)

// MergeSpans writes the spans of blocks, each in block order, as one new
// block in block order, dropping duplicates as WriteSpans does. It merges
// Parquet values as they are stored, without decoding them into spans and
// encoding them back: that round trip was most of compaction's CPU and
// allocations. The index and bloom filter are built from a few columns of
// each row; the block-wide name lists (services, operations, attribute
// names) are the union of the sources', which is exact, since a dropped
// duplicate carries the same names as the row that is kept.
//
// Blocks on local disk are merged a column at a time (mergeColumns);
// others, and any whose pages this package did not write, row by row
// through parquet-go's merge (mergeRows). Both write the same rows.
//
// The data file's schema is the same in formats 1 and 2, so blocks of
// both merge; the trace table of the output is built from the merged
// rows, whatever the sources had.
//
// It returns ErrNotMergeable, having written nothing, unless every block
// has a format version this build reads and this data schema.
func MergeSpans(ctx context.Context, st *objstore.Store, blocks []*Block, opts WriteOptions) (m *Meta, err error) {
	files := make([]*parquet.File, len(blocks))
	for i, b := range blocks {
		if b.Meta.Signal != Traces || b.Meta.Format < MinFormatVersion || b.Meta.Format > FormatVersion {
			return nil, ErrNotMergeable
		}
		f, err := b.data()
		if err != nil {
			return nil, err
		}
		if !parquet.EqualNodes(f.Schema(), spanSchema) {
			return nil, ErrNotMergeable
		}
		files[i] = f
	}
	// A damaged page can make the Parquet reader panic: that is a read
	// error of the merge, which keeps its sources.
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("merge blocks: %v", r)
		}
	}()
	m, err = mergeColumns(ctx, st, blocks, files, opts)
	if !errors.Is(err, errNotDirect) {
		return m, err
	}
	return mergeRows(ctx, st, blocks, files, opts)
}

// mergeTarget starts the output of a merge of blocks: its builder, with
// the sources' names and a bloom filter sized for their traces, its
// temporary data file and the writer into it. done removes the file and
// the trace table's.
func mergeTarget(blocks []*Block, opts WriteOptions) (b *builder, f *os.File, w *parquet.GenericWriter[spanRow], done func(), err error) {
	b = newBuilder(Traces, opts)
	var traces int64
	for _, src := range blocks {
		b.unionNames(src.Meta)
		traces += src.Meta.Traces
	}
	// A merged block has at most its sources' traces, and as many unless
	// a trace spans several of them: size its bloom filter for that.
	b.bloom = NewBloom(int(traces), bloomFP)
	f, cleanup, err := tempFile(opts.TempDir)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if err := b.withTraceTable(); err != nil {
		cleanup()
		return nil, nil, nil, nil, err
	}
	w = parquet.NewGenericWriter[spanRow](f, writerOptions[spanRow](opts)...)
	return b, f, w, func() { b.table.close(); cleanup() }, nil
}

// mergeRows merges files, the data files of blocks, with parquet-go's
// merge of row groups, row by row.
func mergeRows(ctx context.Context, st *objstore.Store, blocks []*Block, files []*parquet.File, opts WriteOptions) (*Meta, error) {
	rgs := make([]parquet.RowGroup, len(files))
	for i, f := range files {
		// A block's row groups are in order and do not overlap: read them
		// one after another, so that a merge holds one row group's page
		// buffers per block, not one per row group.
		rgs[i] = unbounded{parquet.MultiRowGroup(f.RowGroups()...)}
	}
	merged, err := parquet.MergeRowGroups(rgs, spanSchema, spanSorting)
	if err != nil {
		return nil, fmt.Errorf("merge blocks: %w", err)
	}
	b, f, w, done, err := mergeTarget(blocks, opts)
	if err != nil {
		return nil, err
	}
	defer done()
	rows := merged.Rows()
	defer rows.Close()
	buf := make([]parquet.Row, writeBatch)
	pending := make([]parquet.Row, 0, writeBatch)
	var cut pageCutter
	var (
		prev   storage.TraceID
		svc    string
		svcRaw []byte
	)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, rerr := rows.ReadRows(buf)
		for _, row := range buf[:n] {
			r := spanKeyColumns.read(row)
			newTrace := b.meta.Rows == 0 || r.traceID != prev
			if newTrace && b.cur.Rows >= int64(b.opts.RowGroupRows) {
				if _, err := w.WriteRows(pending); err != nil {
					return nil, fmt.Errorf("write block: %w", err)
				}
				pending = pending[:0]
				if err := w.Flush(); err != nil {
					return nil, fmt.Errorf("write block: %w", err)
				}
				cut.rowGroupEnded()
				b.endRowGroup()
			}
			if newTrace {
				b.addTrace(r.traceID)
			}
			if !bytes.Equal(r.service, svcRaw) {
				// Rows of a trace mostly share a service: convert on change.
				svc, svcRaw = string(r.service), append(svcRaw[:0], r.service...)
			}
			b.add(r.traceID, r.start, r.start+r.duration, svc, nil, nil)
			if b.table != nil {
				name := ""
				if r.root {
					name = b.table.rootName(r.name) // only a root's name is kept
				}
				b.table.span(r.traceID, r.start, r.start+r.duration, r.root, name, svc, r.status)
			}
			pending = append(pending, row)
			prev = r.traceID
		}
		// The rows read are reused by the next ReadRows: write them first.
		if _, err := w.WriteRows(pending); err != nil {
			return nil, fmt.Errorf("write block: %w", err)
		}
		if err := cut.wrote(w, len(pending)); err != nil {
			return nil, fmt.Errorf("write block: %w", err)
		}
		pending = pending[:0]
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("merge blocks: %w", rerr)
		}
	}
	if b.meta.Rows == 0 {
		return nil, nil
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("write block: %w", err)
	}
	return b.finish(ctx, st, f)
}

// unbounded is a merge input whose column chunks have no column index.
// MergeRowGroups reads the sort columns' page bounds of every row group to
// find inputs that do not overlap, which it would copy whole instead of
// merging; blocks sorted by random trace IDs always overlap, and the
// bounds read stay in memory until the merge ends (2.5 MiB of a merge
// into a block of 10M spans). Without bounds it merges them all, which
// gives the same rows.
type unbounded struct{ parquet.RowGroup }

func (u unbounded) ColumnChunks() []parquet.ColumnChunk {
	chunks := u.RowGroup.ColumnChunks()
	out := make([]parquet.ColumnChunk, len(chunks))
	for i, c := range chunks {
		out[i] = unboundedChunk{c}
	}
	return out
}

type unboundedChunk struct{ parquet.ColumnChunk }

var errNoColumnIndex = errors.New("no column index for merges")

func (unboundedChunk) ColumnIndex() (parquet.ColumnIndex, error) { return nil, errNoColumnIndex }

// spanColumns are the leaf column indexes, in spanSchema, of what the
// index, bloom filter and trace table need from a row.
type spanColumns struct{ traceID, spanID, start, duration, service, parent, name, status, last int }

type spanKey struct {
	traceID         storage.TraceID
	start, duration int64
	service, name   []byte
	root            bool // the parent span ID is all zero
	status          int32
}

// spanKeyColumns are found once: spanSchema is fixed at compile time.
var spanKeyColumns = func() spanColumns {
	var c spanColumns
	for _, x := range []struct {
		name string
		dst  *int
	}{{"trace_id", &c.traceID}, {"span_id", &c.spanID}, {"start_unix_nano", &c.start}, {"duration_nano", &c.duration}, {"service_name", &c.service},
		{"parent_span_id", &c.parent}, {"name", &c.name}, {"status_code", &c.status}} {
		leaf, ok := spanSchema.Lookup(x.name)
		if !ok {
			panic("block: span schema has no column " + x.name)
		}
		*x.dst = leaf.ColumnIndex
		c.last = max(c.last, leaf.ColumnIndex)
	}
	return c
}()

// read picks the row's key columns. Each is a required, non-repeated
// column, so it has exactly one value in the row. A row's values are in
// column order, and the key columns come before the attributes, events and
// links, which hold most of a row's values: the scan stops after the last
// key column.
func (c spanColumns) read(row parquet.Row) spanKey {
	var k spanKey
	for _, v := range row {
		col := v.Column()
		if col > c.last {
			break
		}
		switch col {
		case c.traceID:
			copy(k.traceID[:], v.ByteArray())
		case c.start:
			k.start = v.Int64()
		case c.duration:
			k.duration = v.Int64()
		case c.service:
			k.service = v.ByteArray()
		case c.parent:
			k.root = storage.SpanID(v.ByteArray()).IsEmpty()
		case c.name:
			k.name = v.ByteArray()
		case c.status:
			k.status = v.Int32()
		}
	}
	return k
}

// unionNames adds a source block's name lists to the new block's.
func (b *builder) unionNames(m *Meta) {
	for _, s := range m.Services {
		b.services[s] = struct{}{}
	}
	for _, op := range m.SpanNames {
		addName(&b.meta, b.ops, op)
	}
	for _, a := range m.AttributeNames {
		addName(&b.meta, b.attrs, a)
	}
	for _, a := range m.ResourceAttributeNames {
		addName(&b.meta, b.resAttrs, a)
	}
	b.meta.NamesTruncated = b.meta.NamesTruncated || m.NamesTruncated
}
