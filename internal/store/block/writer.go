package block

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"iter"
	"os"
	"path"
	"slices"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// WriteOptions control how a block is cut into row groups and labelled.
type WriteOptions struct {
	// RowGroupRows is the target number of rows per row group. Span row
	// groups end at a trace boundary, so a trace never spans two of them.
	RowGroupRows int
	// TempDir holds the Parquet file while it is written.
	TempDir string
	// PageFiles buffers the pages of the row group being written; nil
	// creates a file per column and row group in TempDir.
	PageFiles *PageFiles
	// Fast compresses for speed rather than size (Snappy instead of
	// zstd), for a block that will be merged again soon: a level-0
	// block, or a merge's output small enough to be merged again.
	Fast  bool
	Level int
	// ID names the block; empty draws a new ULID. A head's blocks are
	// named when it is cut, so that an ingester can say which block its
	// cut head's data will be in before the block exists.
	ID string
	// Level0 lists the level-0 blocks a merge's output holds (Meta.Level0).
	Level0 []string
	// Writer, WALSegment and WALSegments are the WAL claims of Meta's
	// fields of the same names.
	Writer      string
	WALSegment  int
	WALSegments map[string]int
	Sources     []string
	// Format is the format version to write, FormatVersion when 0. A
	// store writes an older one while readers that know only it remain
	// (a rolling upgrade of a shared bucket's roles), and tests do, to
	// check that older blocks stay readable.
	Format int
	// Commit, if set, is called before meta.json is written, which is
	// what makes the block visible; an error leaves the block incomplete
	// and is returned. A compactor checks there that it still holds its
	// lease.
	Commit func(context.Context) error
}

// NewID returns a new block ID: a ULID, sortable by creation time.
func NewID() string { return ulid.MustNew(ulid.Timestamp(time.Now()), rand.Reader).String() }

// DefaultRowGroupRows balances dictionary reuse (bigger is smaller on disk)
// against the work of finding one trace in a row group.
const DefaultRowGroupRows = 100_000

// Blocks are zstd at its default level (codec, in zstd.go), or Snappy
// for blocks that will be merged again (fastCodec):
// SpeedBetterCompression costs ~2× CPU on the flush path for a few percent
// on these columns (see docs/benchmarks.md).

// Key returns the object name of a block file.
func Key(sig Signal, id, file string) string { return path.Join(string(sig), id, file) }

// builder collects what a block's meta, index and bloom filter need while
// rows stream through.
type builder struct {
	meta   Meta
	opts   WriteOptions
	index  Index
	cur    IndexEntry
	curSvc map[string]struct{}
	traces []storage.TraceID
	// bloom, when the number of traces is bounded before the first row (a
	// merge's is its sources'), is filled as rows arrive, and counted
	// traces the trace IDs added: the list in traces, 16 bytes a trace,
	// was 12 of the 43 MiB a merge of 10M spans held at its end.
	bloom    *Bloom
	counted  int64
	services map[string]struct{}
	ops      map[Op]struct{}
	attrs    map[string]struct{}
	resAttrs map[string]struct{}
	// seenRes are resources whose attribute names are in resAttrs: spans
	// of one ResourceSpans share one, and hashing its pointer once per
	// span is cheaper than hashing each of its keys. It is a cache,
	// emptied at maxSeenRes, since spans decoded from blocks each carry a
	// resource of their own.
	seenRes map[*storage.Resource]struct{}
	// keys are the attribute keys in attrs already, by address.
	keys    keyCache
	lastSvc string // in curSvc already
	// table builds the trace table of a trace block of format 2 or later.
	table *traceTable
}

const maxSeenRes = 4096

// maxNames bounds each name list of a block's meta: operations, span
// attribute names and resource attribute names. The lists answer
// listings only (Jaeger's operations, Tempo's tag names) and never rule a
// block out of a read, while a span name or attribute key that carries an
// ID ("GET /users/12345") made one entry a span: millions in a merge's
// memory, then in every open block's meta. Past the bound new names are
// dropped and Meta.NamesTruncated says the lists are incomplete.
const maxNames = 10_000

// addName adds k to set, one of a builder's name lists, within maxNames,
// and notes in meta when it is left out.
func addName[K comparable](meta *Meta, set map[K]struct{}, k K) {
	if _, ok := set[k]; ok {
		return
	}
	if len(set) >= maxNames {
		meta.NamesTruncated = true
		return
	}
	set[k] = struct{}{}
}

func newBuilder(sig Signal, opts WriteOptions) *builder {
	if opts.RowGroupRows <= 0 {
		opts.RowGroupRows = DefaultRowGroupRows
	}
	return &builder{
		meta: Meta{
			Format: cmp.Or(opts.Format, FormatVersion), ID: cmp.Or(opts.ID, NewID()), Signal: sig, Level0: opts.Level0,
			Level: opts.Level, Writer: opts.Writer, WALSegment: opts.WALSegment, WALSegments: opts.WALSegments, Sources: opts.Sources,
		},
		opts: opts, curSvc: map[string]struct{}{}, services: map[string]struct{}{},
		ops: map[Op]struct{}{}, attrs: map[string]struct{}{}, resAttrs: map[string]struct{}{},
		seenRes: map[*storage.Resource]struct{}{},
	}
}

func (b *builder) add(traceID storage.TraceID, t, end int64, service string, res *storage.Resource, attrs storage.Attrs) {
	e := &b.cur
	if e.Rows == 0 {
		e.MinTraceID, e.MinTime, e.MaxTime = traceID, t, end
	}
	e.MaxTraceID = traceID
	e.MinTime = min(e.MinTime, t)
	e.MaxTime = max(e.MaxTime, end)
	e.Rows++
	if service != b.lastSvc || len(b.curSvc) == 0 {
		b.curSvc[service] = struct{}{}
		b.lastSvc = service
	}
	if b.meta.Rows == 0 {
		b.meta.MinTime, b.meta.MaxTime = t, end
	}
	b.meta.MinTime = min(b.meta.MinTime, t)
	b.meta.MaxTime = max(b.meta.MaxTime, end)
	b.meta.Rows++
	for i := range attrs {
		if !b.keys.seen(attrs[i].Key) {
			addName(&b.meta, b.attrs, attrs[i].Key)
		}
	}
	if res != nil {
		if _, seen := b.seenRes[res]; !seen {
			if len(b.seenRes) >= maxSeenRes {
				clear(b.seenRes)
			}
			b.seenRes[res] = struct{}{}
			for i := range res.Attrs {
				addName(&b.meta, b.resAttrs, res.Attrs[i].Key)
			}
		}
	}
}

func (b *builder) endRowGroup() {
	if b.cur.Rows == 0 {
		return
	}
	b.cur.Services = sortedKeys(b.curSvc)
	for s := range b.curSvc {
		b.services[s] = struct{}{}
	}
	clear(b.curSvc)
	b.cur.FirstRow = b.meta.Rows - b.cur.Rows
	b.index.RowGroups = append(b.index.RowGroups, b.cur)
	b.cur = IndexEntry{}
}

// withTraceTable starts the trace table of a trace block whose format has
// one.
func (b *builder) withTraceTable() error {
	if b.meta.Signal != Traces || b.meta.Format < 2 {
		return nil
	}
	var err error
	b.table, err = newTraceTable(b.opts)
	return err
}

// bloomFP is the false positive rate of a block's bloom filter.
const bloomFP = 0.01

// addTrace records the next trace of the block.
func (b *builder) addTrace(id storage.TraceID) {
	if b.bloom != nil {
		b.bloom.Add(id)
		b.counted++
		return
	}
	b.traces = append(b.traces, id)
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// finish uploads the data file, then the bloom filter and index, then
// meta.json, which makes the block visible.
func (b *builder) finish(ctx context.Context, st *objstore.Store, f *os.File) (*Meta, error) {
	b.endRowGroup()
	if b.meta.Signal == Logs {
		// Log rows are not sorted by trace, so a row group's trace range is
		// meaningless: the bloom filter and a trace_id scan answer lookups.
		for i := range b.index.RowGroups {
			b.index.RowGroups[i].MinTraceID, b.index.RowGroups[i].MaxTraceID = storage.TraceID{}, maxTraceID
		}
	}
	sig, id := b.meta.Signal, b.meta.ID
	bloom := b.bloom
	if bloom == nil {
		bloom = NewBloom(len(b.traces), bloomFP)
		for _, t := range b.traces {
			bloom.Add(t)
		}
		b.counted = int64(len(b.traces))
	}
	b.meta.Traces = b.counted
	b.meta.RowGroups = len(b.index.RowGroups)
	b.meta.Services = sortedKeys(b.services)
	b.meta.AttributeNames = sortedKeys(b.attrs)
	b.meta.ResourceAttributeNames = sortedKeys(b.resAttrs)
	for op := range b.ops {
		b.meta.SpanNames = append(b.meta.SpanNames, op)
	}
	slices.SortFunc(b.meta.SpanNames, func(x, y Op) int {
		if c := cmpString(x.Service, y.Service); c != 0 {
			return c
		}
		if c := cmpString(x.Name, y.Name); c != 0 {
			return c
		}
		return int(x.Kind) - int(y.Kind)
	})
	st2, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b.meta.DataBytes = st2.Size()
	if _, err := f.Seek(0, 0); err != nil {
		return nil, err
	}
	if err := st.Put(ctx, Key(sig, id, DataFile), f); err != nil {
		return nil, err
	}
	bb, _ := bloom.MarshalBinary()
	if err := st.PutBytes(ctx, Key(sig, id, BloomFile), bb); err != nil {
		return nil, err
	}
	ib, err := b.index.marshal()
	if err != nil {
		return nil, err
	}
	if err := st.PutBytes(ctx, Key(sig, id, IndexFile), ib); err != nil {
		return nil, err
	}
	if b.table != nil {
		if b.meta.TraceTableBytes, err = b.table.finish(ctx, st, sig, id); err != nil {
			return nil, err
		}
	}
	mb, err := json.MarshalIndent(&b.meta, "", "  ")
	if err != nil {
		return nil, err
	}
	if b.opts.Commit != nil {
		if err := b.opts.Commit(ctx); err != nil {
			Delete(ctx, st, sig, id)
			return nil, err
		}
	}
	if err := st.PutBytes(ctx, Key(sig, id, MetaFile), mb); err != nil {
		return nil, err
	}
	m := b.meta
	return &m, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// CompareSpans is the block sort order: trace ID, start time, span ID.
func CompareSpans(a, b *storage.Span) int {
	if c := bytes.Compare(a.TraceID[:], b.TraceID[:]); c != 0 {
		return c
	}
	if a.StartUnixNano != b.StartUnixNano {
		if a.StartUnixNano < b.StartUnixNano {
			return -1
		}
		return 1
	}
	return bytes.Compare(a.SpanID[:], b.SpanID[:])
}

// CompareLogs is the log block sort order: service name, then time.
func CompareLogs(a, b *storage.LogRecord) int {
	if c := cmpString(a.Resource.ServiceName(), b.Resource.ServiceName()); c != 0 {
		return c
	}
	ta, tb := a.Timestamp(), b.Timestamp()
	switch {
	case ta < tb:
		return -1
	case ta > tb:
		return 1
	}
	return 0
}

func tempFile(dir string) (*os.File, func(), error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, nil, err
		}
	}
	f, err := os.CreateTemp(dir, "block-*.parquet")
	if err != nil {
		return nil, nil, fmt.Errorf("create block temp file: %w", err)
	}
	return f, func() { f.Close(); os.Remove(f.Name()) }, nil
}

const writeBatch = 256

// writerOptions keeps a row group's encoded pages in temporary files, not
// in memory, until the row group is flushed: a 100k-row row group would
// otherwise hold tens of MiB per block being written, and compaction and
// head flushes write several at once. Memory per writer is then one page
// buffer per column.
//
// Pages are 64 KiB before compression, not Parquet's 256 KiB: a reader
// holds a decoded page per column, and a merge reads every column of four
// blocks at once. On 2M spans this took a compaction's heap from 73 to
// 45 MiB for 3% more bytes on disk and the same time.
//
// Page statistics: Sightline's reader prunes byte-array columns with the
// block's own index and bloom filter, never with Parquet's page
// statistics, and the min and max of a page of byte arrays compare every
// value in it. In a CPU profile of the all-in-one at 20k spans/s that was
// 5% of the process, on the resource, scope and attribute columns, whose
// bounds no query could use.
// So page headers carry no statistics, and the column index has bounds
// for every column but byte arrays: times, durations, IDs and codes, which
// are cheap and which readers prune pages on. TraceByID reads only the
// trace_id pages whose bounds admit the ID, so trace_id (fixed-length, not
// a byte array) must keep them; searches rule out duration, time, status
// and kind pages by theirs (filter.go).
//
// Dictionaries stop at 16 KiB per column chunk; past it the rest of the
// row group's pages are PLAIN. Names, services, routes and the resource
// and scope columns stay well inside it; the attribute values do not (IDs
// and URLs among them): uncapped, their dictionary was 180 KiB compressed
// per 100k-row group, and every trace lookup decoded it whole to read a
// few rows. Capped, a lookup in a block of 200k spans took 1.7 ms instead
// of 3.2 ms (BenchmarkTraceByID) for 13% more bytes per span (44.7 instead
// of 39.4, BenchmarkWriteSpans), and the write was no slower; a 64 KiB cap
// saved no bytes over 16 and gave 2.1 ms.
func writerOptions[T any](opts WriteOptions) []parquet.WriterOption {
	var c compress.Codec = codec
	if opts.Fast {
		c = fastCodec
	}
	var pages parquet.BufferPool = opts.PageFiles
	if opts.PageFiles == nil {
		pages = parquet.NewFileBufferPool(opts.TempDir, "pages-*")
	}
	o := []parquet.WriterOption{
		parquet.Compression(c),
		parquet.MaxRowsPerRowGroup(1 << 40),
		parquet.PageBufferSize(pageBufferSize(opts)),
		parquet.ColumnPageBuffers(pages),
		parquet.DataPageStatistics(false),
		parquet.DictionaryMaxBytes(16 << 10),
	}
	for _, path := range byteArrayColumns[T]() {
		o = append(o, parquet.SkipPageBounds(path...))
	}
	return o
}

// pageBufferSize is the size at which the writer ends a column's page:
// 64 KiB, which the compression of the bulky columns needs, except in
// the blocks of a head's flush (level 0), which end their pages at 8 KiB.
// Level-0 blocks are merged many at a time (compaction::level0_blocks),
// and a merge holds the page being copied of every input, spread into
// parquet.Values of 24 bytes an entry: a 64 KiB page of dictionary
// indexes is 16k entries, 384 KiB of values for each input. Compacting
// 10.4M spans from sixty-four level-0 blocks of 160k at once peaked at
// 172-173 MiB RSS with 8 KiB pages and at 235-238 MiB with 64 KiB ones,
// and took 29 s instead of 38-43 (sixteen at a time, then four: 47-51 s,
// 123-137 MiB). The level-0 blocks are a fifth larger (667 instead of
// 554 MiB for those spans), and they are deleted once merged
// (docs/benchmarks.md).
func pageBufferSize(opts WriteOptions) int {
	if opts.Level == 0 && opts.Fast {
		return 8 << 10
	}
	return 64 << 10
}

// Some core columns are read a few rows at a time: a search reads its
// kept rows' trace and span IDs, names and starts after its filter, and
// a lookup by trace ID reads one trace's rows. A page is the unit a
// reader decodes (and checksums and decompresses), so a 64 KiB page of
// span IDs (8,192 rows) was decoded whole for each kept row in it: a
// search for 1,000 traces, whose matches are spread over every page, read
// every page of every core column (44 MB for 2.4M spans). The pages of
// these columns end every sparsePageRows rows instead, or at 64 KiB,
// whichever comes first. The filter columns (service, status, duration)
// are read whole by the filters that name them, where more pages would
// only be more page headers to decode, and the other columns keep 64 KiB
// pages, which their compression needs.
//
// On the side-by-side load (2.4M spans) a search for 1,000 traces read
// 26.8 MiB instead of 49.9 and a limit-20 one 1.7 instead of 3.6, for
// 1.2% more bytes per span (the extra page headers and index entries;
// the IDs are random and compress no better in larger pages). Pages of
// 2,048 rows read a quarter more for the same time; smaller ones would
// spend what they save on page headers, whose decoding is already a
// tenth of such a search.
const sparsePageRows = 1024

// sparseLeaves are the leaf indexes in spanSchema of the columns whose
// pages end every sparsePageRows rows.
var sparseLeaves = func() []int {
	var out []int
	for _, name := range []string{"trace_id", "span_id", "parent_span_id", "name", "kind", "start_unix_nano"} {
		leaf, ok := spanSchema.Lookup(name)
		if !ok {
			panic("block: no column " + name)
		}
		out = append(out, leaf.ColumnIndex)
	}
	return out
}()

// pageCutter ends the sparse columns' pages every sparsePageRows rows
// of a span block's writer. The writer's pages end by size only, so the
// cutter flushes those columns' buffered pages itself once the rows
// written since the last cut reach sparsePageRows; pages then hold
// between sparsePageRows and sparsePageRows+writeBatch-1 rows.
type pageCutter struct{ rows int }

// columnWriters is a Parquet writer, generic or not.
type columnWriters interface {
	ColumnWriters() []*parquet.ColumnWriter
}

// wrote notes n rows written to w and cuts the pages when due.
func (c *pageCutter) wrote(w columnWriters, n int) error {
	if c.rows += n; c.rows < sparsePageRows {
		return nil
	}
	c.rows = 0
	cws := w.ColumnWriters()
	for _, leaf := range sparseLeaves {
		if err := cws[leaf].Flush(); err != nil {
			return err
		}
	}
	return nil
}

// rowGroupEnded restarts the count: a row group's end flushes every page.
func (c *pageCutter) rowGroupEnded() { c.rows = 0 }

// byteArrayColumns lists the paths of T's byte-array columns.
func byteArrayColumns[T any]() [][]string {
	sch := parquet.SchemaOf(new(T))
	var out [][]string
	for _, path := range sch.Columns() {
		if leaf, ok := sch.Lookup(path...); ok && leaf.Node.Type().Kind() == parquet.ByteArray {
			out = append(out, path)
		}
	}
	return out
}

// WriteSpans writes spans, which must arrive in CompareSpans order, as a
// new block. Exact duplicates (same trace, span ID and start) are written
// once. It returns nil and no error when spans is empty.
func WriteSpans(ctx context.Context, st *objstore.Store, spans iter.Seq[*storage.Span], opts WriteOptions) (*Meta, error) {
	b := newBuilder(Traces, opts)
	f, cleanup, err := tempFile(opts.TempDir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	if err := b.withTraceTable(); err != nil {
		return nil, err
	}
	defer b.table.close()
	w := parquet.NewGenericWriter[spanRow](f, writerOptions[spanRow](opts)...)
	rows := make([]spanRow, writeBatch)
	enc := newEncoder()
	n := 0
	var prev *storage.Span
	var cut pageCutter
	flushRows := func() error {
		if n == 0 {
			return nil
		}
		if _, err := w.Write(rows[:n]); err != nil {
			return err
		}
		enc.written()
		err := cut.wrote(w, n)
		n = 0
		return err
	}
	for s := range spans {
		if prev != nil {
			if c := CompareSpans(prev, s); c == 0 {
				continue
			} else if c > 0 {
				return nil, fmt.Errorf("write block: spans out of order at trace %s", s.TraceID)
			}
		}
		newTrace := prev == nil || prev.TraceID != s.TraceID
		if newTrace && b.cur.Rows >= int64(b.opts.RowGroupRows) {
			if err := flushRows(); err != nil {
				return nil, fmt.Errorf("write block: %w", err)
			}
			if err := w.Flush(); err != nil {
				return nil, fmt.Errorf("write block: %w", err)
			}
			cut.rowGroupEnded()
			b.endRowGroup()
		}
		if newTrace {
			b.traces = append(b.traces, s.TraceID)
		}
		svc := s.Resource.ServiceName()
		b.add(s.TraceID, s.StartUnixNano, s.EndUnixNano, svc, s.Resource, s.Attrs)
		if b.table != nil {
			b.table.span(s.TraceID, s.StartUnixNano, s.EndUnixNano, s.ParentSpanID.IsEmpty(), s.Name, svc, int32(s.StatusCode))
		}
		addName(&b.meta, b.ops, Op{Service: svc, Name: s.Name, Kind: s.Kind})
		toSpanRow(&rows[n], s, enc)
		n++
		if n == len(rows) {
			if err := flushRows(); err != nil {
				return nil, fmt.Errorf("write block: %w", err)
			}
		}
		prev = s
	}
	if b.meta.Rows == 0 {
		return nil, nil
	}
	if err := flushRows(); err != nil {
		return nil, fmt.Errorf("write block: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("write block: %w", err)
	}
	return b.finish(ctx, st, f)
}

// WriteLogs writes log records, which must arrive in CompareLogs order.
func WriteLogs(ctx context.Context, st *objstore.Store, recs iter.Seq[*storage.LogRecord], opts WriteOptions) (*Meta, error) {
	b := newBuilder(Logs, opts)
	f, cleanup, err := tempFile(opts.TempDir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	w := parquet.NewGenericWriter[logRow](f, writerOptions[logRow](opts)...)
	rows := make([]logRow, writeBatch)
	enc := newEncoder()
	n := 0
	flushRows := func() error {
		if n == 0 {
			return nil
		}
		_, err := w.Write(rows[:n])
		enc.written()
		n = 0
		return err
	}
	seen := map[storage.TraceID]struct{}{}
	var prev *storage.LogRecord
	for l := range recs {
		if prev != nil && CompareLogs(prev, l) > 0 {
			return nil, fmt.Errorf("write block: log records out of order")
		}
		if b.cur.Rows >= int64(b.opts.RowGroupRows) {
			if err := flushRows(); err != nil {
				return nil, fmt.Errorf("write block: %w", err)
			}
			if err := w.Flush(); err != nil {
				return nil, fmt.Errorf("write block: %w", err)
			}
			b.endRowGroup()
		}
		if !l.TraceID.IsEmpty() {
			if _, ok := seen[l.TraceID]; !ok {
				seen[l.TraceID] = struct{}{}
				b.traces = append(b.traces, l.TraceID)
			}
		}
		ts := l.Timestamp()
		b.add(l.TraceID, ts, ts, l.Resource.ServiceName(), l.Resource, l.Attrs)
		toLogRow(&rows[n], l, enc)
		n++
		if n == len(rows) {
			if err := flushRows(); err != nil {
				return nil, fmt.Errorf("write block: %w", err)
			}
		}
		prev = l
	}
	if b.meta.Rows == 0 {
		return nil, nil
	}
	if err := flushRows(); err != nil {
		return nil, fmt.Errorf("write block: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("write block: %w", err)
	}
	return b.finish(ctx, st, f)
}

var maxTraceID = storage.TraceID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
