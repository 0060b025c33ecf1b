package block

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// Block is an open, immutable block. Its methods are safe for concurrent
// use. Errors caused by damaged files wrap storage.ErrCorrupt.
type Block struct {
	Meta  *Meta
	Index *Index
	bloom *Bloom
	st    *objstore.Store

	ra   objstore.ReaderAt
	cols map[string]int
	// tracesRA is the trace table of a format 2+ trace block, nil before,
	// and traceCols the leaf indexes of its columns (traceColumnNames).
	tracesRA  objstore.ReaderAt
	traceCols []int

	// The Parquet readers of the data file and the trace table: held by
	// the block (pinned) when it was opened without a FileCache, else in
	// files, where cached are the block's entries (data, trace table).
	pinned [2]*parquet.File
	files  *FileCache
	cached [2]*cachedFile
	// pages keeps the pages read of the block's files, found by fileKeys
	// (data file, trace table).
	pages    *PageCache
	fileKeys [2]uint64

	closeOnce sync.Once
}

func corrupt(id string, err error) error {
	return fmt.Errorf("block %s: %w: %w", id, storage.ErrCorrupt, err)
}

// Open reads a block's meta, bloom filter and index and the Parquet footer,
// and keeps them while the block is open. Every structural problem is
// reported as storage.ErrCorrupt, so the caller can tell damage from an
// unreachable bucket.
func Open(ctx context.Context, st *objstore.Store, sig Signal, id string) (*Block, error) {
	return OpenCached(ctx, st, sig, id, Caches{})
}

// Caches are what the blocks of a store share to bound their memory:
// the Parquet readers of their files and their decoded pages. Either may
// be nil.
type Caches struct {
	// Files holds the blocks' Parquet readers and drops them past its
	// limit; the block reopens them from its files when a reader needs
	// them again. Nil: each block holds its own.
	Files *FileCache
	// Pages keeps pages its readers decoded. Nil: none is kept.
	Pages *PageCache
}

// OpenCached is Open for a block whose readers and pages are held in
// caches shared with other blocks.
func OpenCached(ctx context.Context, st *objstore.Store, sig Signal, id string, caches Caches) (*Block, error) {
	mb, err := st.Get(ctx, Key(sig, id, MetaFile))
	if err != nil {
		return nil, fmt.Errorf("block %s: %w", id, err)
	}
	meta, err := UnmarshalMeta(mb)
	if err != nil {
		return nil, corrupt(id, err)
	}
	b := &Block{Meta: meta, st: st, files: caches.Files, pages: caches.Pages, fileKeys: [2]uint64{newFileKey(), newFileKey()}}
	bb, err := st.Get(ctx, Key(sig, id, BloomFile))
	if err != nil {
		return nil, corrupt(id, err)
	}
	if b.bloom, err = UnmarshalBloom(bb); err != nil {
		return nil, corrupt(id, err)
	}
	ib, err := st.Get(ctx, Key(sig, id, IndexFile))
	if err != nil {
		return nil, corrupt(id, err)
	}
	if b.Index, err = unmarshalIndex(ib); err != nil {
		return nil, corrupt(id, err)
	}
	ra, err := st.OpenReaderAt(ctx, Key(sig, id, DataFile))
	if err != nil {
		return nil, corrupt(id, err)
	}
	if ra.Size() != meta.DataBytes {
		ra.Close()
		return nil, corrupt(id, fmt.Errorf("data file is %d bytes, meta says %d", ra.Size(), meta.DataBytes))
	}
	f, err := openParquet(ra)
	if err != nil {
		ra.Close()
		return nil, corrupt(id, err)
	}
	if len(f.RowGroups()) != len(b.Index.RowGroups) || f.NumRows() != meta.Rows {
		ra.Close()
		return nil, corrupt(id, fmt.Errorf("data file has %d row groups and %d rows, index says %d and %d",
			len(f.RowGroups()), f.NumRows(), len(b.Index.RowGroups), meta.Rows))
	}
	b.ra = ra
	if meta.Signal == Traces && meta.Format >= 2 {
		if err := b.openTraceTable(ctx); err != nil {
			ra.Close()
			return nil, corrupt(id, err)
		}
	}
	b.cols = map[string]int{}
	for _, c := range f.Schema().Columns() {
		if len(c) == 1 {
			if leaf, ok := f.Schema().Lookup(c...); ok {
				b.cols[c[0]] = leaf.ColumnIndex
			}
		}
	}
	b.keep(dataFile, f)
	return b, nil
}

// The readers a block has, as indexes of Block.pinned and Block.cached.
const (
	dataFile = iota
	traceTableFile
)

// keep holds f, just opened, as the block's reader k.
func (b *Block) keep(k int, f *parquet.File) {
	if b.files == nil {
		b.pinned[k] = f
		return
	}
	b.files.put(&b.cached[k], f, fileCharge(f))
}

// reader returns the block's reader k, reopening it if its cache dropped
// it. The reader stays valid while the block is open, whatever the cache
// does after.
func (b *Block) reader(k int) (*parquet.File, error) {
	if b.files == nil {
		return b.pinned[k], nil
	}
	if f := b.files.get(&b.cached[k]); f != nil {
		return f, nil
	}
	ra := b.ra
	if k == traceTableFile {
		ra = b.tracesRA
	}
	f, err := openParquet(ra)
	if err != nil {
		return nil, corrupt(b.Meta.ID, err)
	}
	return b.files.put(&b.cached[k], f, fileCharge(f)), nil
}

// data returns the data file's reader.
func (b *Block) data() (*parquet.File, error) { return b.reader(dataFile) }

// fileOf returns the reader a row group of a block was read from.
func fileOf(rg parquet.RowGroup) *parquet.File { return rg.(*parquet.FileRowGroup).File() }

// openParquet reads a data file's footer. The page index (each column
// chunk's page bounds and offsets) is read when a reader first asks for a
// chunk's, not here: decoded, it is about 1.2 bytes a span, four times the
// footer, and most of it is never asked for (merges read pages in order,
// searches the core columns' bounds). Read at open, it was 12 of the 15 MiB
// a block of 10M spans held.
func openParquet(ra objstore.ReaderAt) (f *parquet.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parquet footer: %v", r)
		}
	}()
	return parquet.OpenFile(ra, ra.Size(), parquet.SkipBloomFilters(true), parquet.SkipPageIndex(true), parquet.ReadBufferSize(readBufferSize(ra)))
}

// readBufferSize is the read buffer of each column a reader opens
// through parquet-go (FilePages). A merge opens every column of each of
// its inputs at once and holds one such buffer per column per input: at
// 32 KiB, 8 of the 162 MiB the all-in-one held at its peak at 20k
// spans/s, when two merges of four blocks ran beside the head. Local
// files need no more than parquet-go's own 4 KiB: a page is read in two
// reads whatever the buffer (one fills the buffer with its header; bufio
// reads the rest of a page larger than the buffer straight into it), and
// queries read local pages by the offset index, not through FilePages
// (pageread.go). BenchmarkMergeSpans, BenchmarkTraceByID and
// BenchmarkCoreScan took the same time with 4 and 32 KiB. Remote objects
// keep 256 KiB, since each read is a ranged GET.
func readBufferSize(ra objstore.ReaderAt) int {
	if objstore.IsLocal(ra) {
		return 4 << 10
	}
	return 256 << 10
}

// Close releases the data file. It is idempotent.
func (b *Block) Close() error {
	var err error
	b.closeOnce.Do(func() {
		if b.files != nil {
			b.files.drop(&b.cached[dataFile])
			b.files.drop(&b.cached[traceTableFile])
		}
		if b.ra != nil {
			err = b.ra.Close()
		}
		if b.tracesRA != nil {
			if cerr := b.tracesRA.Close(); err == nil {
				err = cerr
			}
		}
	})
	return err
}

// Delete removes the block's objects, meta.json first so that a partly
// deleted block is never mistaken for a complete one.
func Delete(ctx context.Context, st *objstore.Store, sig Signal, id string) error {
	for _, f := range []string{MetaFile, DataFile, BloomFile, IndexFile, TraceTableFile, CompactedFile} {
		if err := st.Delete(ctx, Key(sig, id, f)); err != nil {
			return err
		}
	}
	return nil
}

// MarkCompacted writes the block's compacted.json: into (or retention,
// for "") replaced it at time at. Readers of a shared bucket drop a marked
// block from their view; it is deleted later, by the compactor.
func MarkCompacted(ctx context.Context, st *objstore.Store, sig Signal, id, into string, at time.Time) error {
	b, _ := json.Marshal(Compacted{At: at.UnixNano(), Into: into})
	return st.PutBytes(ctx, Key(sig, id, CompactedFile), b)
}

// ReadCompacted reads a block's compacted.json.
func ReadCompacted(ctx context.Context, st *objstore.Store, sig Signal, id string) (Compacted, error) {
	var c Compacted
	b, err := st.Get(ctx, Key(sig, id, CompactedFile))
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, corrupt(id, fmt.Errorf("decode %s: %w", CompactedFile, err))
	}
	return c, nil
}

// Overlaps reports whether the block has data in [start, end] (0 = open).
func (b *Block) Overlaps(start, end int64) bool {
	return (end == 0 || b.Meta.MinTime <= end) && (start == 0 || b.Meta.MaxTime >= start)
}

// guard turns a panic inside parquet-go (which some malformed pages cause)
// into a corruption error.
func (b *Block) guard(err *error) {
	if r := recover(); r != nil {
		*err = corrupt(b.Meta.ID, fmt.Errorf("%v", r))
	}
}

func (b *Block) readErr(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, storage.ErrBytesLimit) {
		return err
	}
	return corrupt(b.Meta.ID, err)
}

// colBytes is the compressed size of one column chunk of row group i, rg.
func (b *Block) colBytes(rg parquet.RowGroup, i int, col string) int64 {
	ci, ok := b.cols[col]
	if !ok {
		return 0
	}
	return chunkBytes(fileOf(rg), i, ci)
}

// rgBytes is the compressed size of row group i, rg.
func rgBytes(rg parquet.RowGroup, i int) int64 {
	rgs := fileOf(rg).Metadata().RowGroups
	if i >= len(rgs) {
		return 0
	}
	return rgs[i].TotalCompressedSize
}

// rowsBytes is the compressed size of what reading rows [from, to] of row
// group i, rg, touches: in every column, the pages that hold them and the
// dictionary page. A column without an offset index counts whole.
func rowsBytes(rg parquet.RowGroup, i int, from, to int64) int64 {
	rgs := fileOf(rg).Metadata().RowGroups
	if i >= len(rgs) {
		return 0
	}
	var n int64
	for c, cc := range rg.ColumnChunks() {
		md := rgs[i].Columns[c].MetaData
		oi, err := cc.OffsetIndex()
		if err != nil || oi == nil || oi.NumPages() == 0 {
			n += md.TotalCompressedSize
			continue
		}
		if md.DictionaryPageOffset > 0 && md.DictionaryPageOffset < oi.Offset(0) {
			n += oi.Offset(0) - md.DictionaryPageOffset
		}
		for p := range oi.NumPages() {
			end := int64(math.MaxInt64)
			if p+1 < oi.NumPages() {
				end = oi.FirstRowIndex(p+1) - 1
			}
			if oi.FirstRowIndex(p) <= to && end >= from {
				n += oi.CompressedPageSize(p)
			}
		}
	}
	return n
}

// scanColumn calls fn with each value of a flat column of row group rg.
func (b *Block) scanColumn(rg parquet.RowGroup, col string, fn func(row int, v parquet.Value)) error {
	ci, ok := b.cols[col]
	if !ok {
		return fmt.Errorf("no column %q", col)
	}
	pages := rg.ColumnChunks()[ci].Pages()
	defer pages.Close()
	return scanPages(pages, 0, -1, func(row int, v parquet.Value) bool {
		fn(row, v)
		return true
	})
}

// scanPages calls fn with each value of the next n pages of a flat
// column (all that are left when n < 0), numbering rows from row, until
// fn returns false. Running out of pages before n is an error.
func scanPages(pages parquet.Pages, row, n int, fn func(row int, v parquet.Value) bool) error {
	var buf [512]parquet.Value
	for ; n != 0; n-- {
		p, err := pages.ReadPage()
		if err == io.EOF && n < 0 {
			return nil
		}
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
		vr := p.Values()
		for {
			k, err := vr.ReadValues(buf[:])
			for i := range k {
				if !fn(row, buf[i]) {
					parquet.Release(p)
					return nil
				}
				row++
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				parquet.Release(p)
				return err
			}
		}
		parquet.Release(p)
	}
	return nil
}

// readRuns decodes the rows of rg whose keep flag is set, in order, calling
// fn for each until it returns false.
func readRuns[R any](rg parquet.RowGroup, keep []bool, fn func(*R) bool) (bool, error) {
	r := parquet.NewGenericRowGroupReader[R](rg)
	defer r.Close()
	buf := make([]R, 64)
	for i := 0; i < len(keep); {
		if !keep[i] {
			i++
			continue
		}
		j := i
		for j < len(keep) && keep[j] {
			j++
		}
		if err := r.SeekToRow(int64(i)); err != nil {
			return false, err
		}
		for left := j - i; left > 0; {
			n, err := r.Read(buf[:min(left, len(buf))])
			for k := range n {
				if !fn(&buf[k]) {
					return false, nil
				}
			}
			left -= n
			if err != nil && !(err == io.EOF && left == 0) {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return false, err
			}
		}
		i = j
	}
	return true, nil
}

// traceRows marks the rows of rg, row group i, that belong to trace id
// and returns how many it found and the compressed bytes it read. Rows
// are sorted by trace ID, so the column index's page bounds name the
// pages of trace_id that can hold it, usually one of the row group's
// twenty-odd, and only those are read; the scan ends at the first ID past
// it. Without a usable page index the whole column is scanned.
func (b *Block) traceRows(rg parquet.RowGroup, i int, id storage.TraceID, keep []bool) (found int, read int64, err error) {
	ci, ok := b.cols["trace_id"]
	if !ok {
		return 0, 0, errors.New("no column \"trace_id\"")
	}
	cc := rg.ColumnChunks()[ci]
	first, last, read, ok := idPages(cc, id)
	if !ok {
		err := b.scanColumn(rg, "trace_id", func(row int, v parquet.Value) {
			if [16]byte(v.ByteArray()) == id {
				keep[row] = true
				found++
			}
		})
		return found, b.colBytes(rg, i, "trace_id"), err
	}
	if first > last {
		return 0, read, nil
	}
	oi, _ := cc.OffsetIndex()
	pages := cc.Pages()
	defer pages.Close()
	row := oi.FirstRowIndex(first)
	if err := pages.SeekToRow(row); err != nil {
		return 0, read, err
	}
	err = scanPages(pages, int(row), last-first+1, func(row int, v parquet.Value) bool {
		switch cmpID([16]byte(v.ByteArray()), id) {
		case 0:
			keep[row] = true
			found++
		case 1:
			return false // sorted: the trace has ended
		}
		return true
	})
	return found, read, err
}

// tracesRows marks the rows of rg, row group i, that belong to any of ids
// (sorted, distinct) and returns how many it found and the compressed
// bytes it read. Rows are sorted by trace too, so it is one merge over the
// trace_id column: a page whose bounds in the column index admit none of
// the IDs is not read, and no page is read twice however many of the
// traces it holds.
//
// runs, when not nil, has appended to it where each trace found begins
// (traceRun), so that a read of the rows' trace IDs need not decode the
// column again. stats accounts the query (pageSource).
func (b *Block) tracesRows(rg parquet.RowGroup, i int, ids []storage.TraceID, keep []bool, runs *[]traceRun, stats *storage.Stats) (found int, read int64, err error) {
	ci, ok := b.cols["trace_id"]
	if !ok {
		return 0, 0, errNoColumn("trace_id")
	}
	return markTraces(rg.ColumnChunks()[ci], i, b.pageSource(dataFile, stats), ids, keep, runs, b.colBytes(rg, i, "trace_id"))
}

// markTraces is tracesRows over one trace_id column chunk, of the data
// file or of the trace table, in row group i, read as src says. whole is
// what reading all of it counts, when it has no page index to skip pages
// by.
func markTraces(cc parquet.ColumnChunk, i int, src pageSource, ids []storage.TraceID, keep []bool, runs *[]traceRun, whole int64) (found int, read int64, err error) {
	cix, _ := cc.ColumnIndex()
	oi, _ := cc.OffsetIndex()
	if cix == nil || oi == nil || cix.NumPages() != oi.NumPages() {
		pages := cc.Pages()
		defer pages.Close()
		err := scanPages(pages, 0, -1, func(row int, v parquet.Value) bool {
			if k, ok := slices.BinarySearchFunc(ids, storage.TraceID(v.ByteArray()), cmpID); ok && row < len(keep) {
				keep[row] = true
				found++
				addRun(runs, row, k)
			}
			return true
		})
		return found, whole, err
	}
	pages := openChunkPages(cc.(*parquet.FileColumnChunk).File(), cc, oi, i, cc.Column(), src)
	defer pages.close()
	var pv pageValues
	j := 0
	for p := range oi.NumPages() {
		lo, hi := cix.MinValue(p).ByteArray(), cix.MaxValue(p).ByteArray()
		if len(lo) == len(storage.TraceID{}) && len(hi) == len(lo) {
			for j < len(ids) && cmpID(ids[j], storage.TraceID(lo)) < 0 {
				j++
			}
			if j == len(ids) {
				break
			}
			if cmpID(ids[j], storage.TraceID(hi)) > 0 {
				continue
			}
		}
		from := int(oi.FirstRowIndex(p))
		pg, err := pages.page(p)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return found, read, err
		}
		read += oi.CompressedPageSize(p)
		pv.load(pg, nil)
		n := min(int(pg.NumRows()), len(keep)-from)
		k := j
		for r := range n {
			v := storage.TraceID(pv.bytesAt(r, pg))
			for k < len(ids) && cmpID(ids[k], v) < 0 {
				k++
			}
			if k < len(ids) && ids[k] == v {
				keep[from+r] = true
				found++
				addRun(runs, from+r, k)
			}
		}
		parquet.Release(pg)
	}
	return found, read, nil
}

// addRun notes, when runs is not nil, that row holds trace k: a new run
// when the previous row noted held another.
func addRun(runs *[]traceRun, row, k int) {
	if runs == nil {
		return
	}
	if n := len(*runs); n == 0 || (*runs)[n-1].id != int32(k) {
		*runs = append(*runs, traceRun{row: int32(row), id: int32(k)})
	}
}

// idPages finds the pages of a trace_id column chunk whose bounds admit
// id: [first, last], empty when none does, and their compressed size. ok
// is false when the chunk has no page index to decide by.
func idPages(cc parquet.ColumnChunk, id storage.TraceID) (first, last int, size int64, ok bool) {
	ci, err := cc.ColumnIndex()
	if err != nil || ci == nil {
		return 0, 0, 0, false
	}
	oi, err := cc.OffsetIndex()
	if err != nil || oi == nil || oi.NumPages() != ci.NumPages() || ci.NumPages() == 0 {
		return 0, 0, 0, false
	}
	first, last = -1, -2
	for p := range ci.NumPages() {
		lo, hi := ci.MinValue(p).ByteArray(), ci.MaxValue(p).ByteArray()
		if len(lo) != len(id) || len(hi) != len(id) {
			return 0, 0, 0, false // truncated bounds: scan
		}
		if cmpID([16]byte(lo), id) > 0 {
			break
		}
		if cmpID([16]byte(hi), id) < 0 {
			continue
		}
		if first < 0 {
			first = p
		}
		last = p
		size += oi.CompressedPageSize(p)
	}
	if first < 0 {
		return 0, -1, 0, true
	}
	return first, last, size, true
}

// TraceByID appends the spans of trace id to dst.
func (b *Block) TraceByID(ctx context.Context, id storage.TraceID, dst []storage.Span) (_ []storage.Span, err error) {
	defer b.guard(&err)
	if b.Meta.Signal != Traces || !b.bloom.MayContain(id) {
		return dst, nil
	}
	stats := storage.StatsFrom(ctx)
	cache := newResourceCache()
	var f *parquet.File
	for i, e := range b.Index.RowGroups {
		if cmpID(id, e.MinTraceID) < 0 || cmpID(id, e.MaxTraceID) > 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return dst, err
		}
		if f == nil {
			if f, err = b.data(); err != nil {
				return dst, err
			}
		}
		rg := f.RowGroups()[i]
		keep := make([]bool, e.Rows)
		n, read, err := b.traceRows(rg, i, id, keep)
		if err != nil {
			return dst, b.readErr(err)
		}
		if err := stats.AddBytes(read); err != nil {
			return dst, err
		}
		if n == 0 {
			continue
		}
		// Counted before any row is decoded: a runaway trace is refused,
		// not read whole.
		if err := stats.CheckTraceSpans(len(dst) + n); err != nil {
			return dst, err
		}
		from := int64(slices.Index(keep, true))
		if err := stats.AddBytes(rowsBytes(rg, i, from, from+int64(n)-1)); err != nil {
			return dst, err
		}
		if _, err := readRows(f, rg, i, keep, b.pageSource(dataFile, stats), func(r *spanRow) bool {
			dst = append(dst, fromSpanRow(r, cache))
			return true
		}); err != nil {
			return dst, b.readErr(err)
		}
	}
	return dst, nil
}

func cmpID(a, b storage.TraceID) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// admits reports whether b may hold a span q selects, from what is known
// without reading its data: signal, time range, bloom filter, services.
// ids are q.TraceIDs less those the bloom filter rules out; with q.TraceIDs
// set and every one ruled out, b is not admitted.
func (b *Block) admits(q *storage.SpanQuery) (ids []storage.TraceID, ok bool) {
	if b.Meta.Signal != Traces || !b.Overlaps(q.Start, q.End) {
		return nil, false
	}
	if !q.TraceID.IsEmpty() && !b.bloom.MayContain(q.TraceID) {
		return nil, false
	}
	ids = q.TraceIDs
	if len(ids) > 0 {
		ids = slices.DeleteFunc(slices.Clone(ids), func(id storage.TraceID) bool { return !b.bloom.MayContain(id) })
		if len(ids) == 0 {
			return nil, false
		}
	}
	if q.ServiceName != "" && !slices.Contains(b.Meta.Services, q.ServiceName) {
		return nil, false
	}
	return ids, true
}

// Spans calls fn for each span matching q. It returns false when fn asked
// to stop.
func (b *Block) Spans(ctx context.Context, q *storage.SpanQuery, fn func(*storage.Span) bool) (_ bool, err error) {
	defer b.guard(&err)
	if IsCoreScan(q) {
		more := true
		err := ReadCoreParts(ctx, b.CoreParts(q), func(s *storage.Span) bool {
			more = fn(s)
			return more
		}, func(_ *Block, err error) error { return err })
		return more && err == nil, err
	}
	ids, ok := b.admits(q)
	if !ok {
		return true, nil
	}
	stats := storage.StatsFrom(ctx)
	cache := newResourceCache()
	var (
		sc rowScratch
		f  *parquet.File
	)
	for i := range b.Index.RowGroups {
		e := &b.Index.RowGroups[i]
		rq := rowGroupQuery(e, q, ids)
		if rq == nil || q.Floor.Excludes(e.MaxTime) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if f == nil {
			if f, err = b.data(); err != nil {
				return false, err
			}
		}
		rg := f.RowGroups()[i]
		keep, any, err := b.prefilterSpans(ctx, rg, i, e, rq, stats, &sc)
		if err != nil {
			return false, b.readErr(err)
		}
		if !any {
			continue
		}
		if err := stats.AddBytes(rgBytes(rg, i)); err != nil {
			return false, err
		}
		cont, err := matchRuns(f, rg, i, keep, b.pageSource(dataFile, stats), cache, fromSpanRow, rq.Match, fn)
		if err != nil {
			return false, b.readErr(err)
		}
		if !cont {
			return false, nil
		}
	}
	return true, nil
}

// rowGroupQuery is q for row group e, or nil when the row group cannot
// hold a match: with trace IDs, only those inside its trace range.
func rowGroupQuery(e *IndexEntry, q *storage.SpanQuery, ids []storage.TraceID) *storage.SpanQuery {
	if !rowGroupMatches(e, q.Start, q.End, q.ServiceName, q.TraceID) {
		return nil
	}
	if len(ids) == 0 {
		return q
	}
	lo, _ := slices.BinarySearchFunc(ids, e.MinTraceID, cmpID)
	hi, found := slices.BinarySearchFunc(ids, e.MaxTraceID, cmpID)
	if found {
		hi++
	}
	if lo >= hi {
		return nil
	}
	rq := *q
	rq.TraceIDs = ids[lo:hi]
	return &rq
}

func rowGroupMatches(e *IndexEntry, start, end int64, service string, id storage.TraceID) bool {
	if end != 0 && e.MinTime > end || start != 0 && e.MaxTime < start {
		return false
	}
	if service != "" && !slices.Contains(e.Services, service) {
		return false
	}
	if !id.IsEmpty() && (cmpID(id, e.MinTraceID) < 0 || cmpID(id, e.MaxTraceID) > 0) {
		return false
	}
	return true
}

// matchRuns decodes the kept rows, applies the full query and hands
// matches to fn; false means fn asked to stop.
func matchRuns[R, T any](f *parquet.File, rg parquet.RowGroup, i int, keep []bool, src pageSource, cache *resourceCache, conv func(*R, *resourceCache) T, match func(*T) bool, fn func(*T) bool) (bool, error) {
	return readRows(f, rg, i, keep, src, func(r *R) bool {
		v := conv(r, cache)
		return !match(&v) || fn(&v)
	})
}

// prefilterSpans evaluates the query's flat-column predicates, so that
// only candidate rows are decoded in full. The most selective go first,
// since each reads only the pages where rows are still kept: a trace ID,
// a status (errors are few), a name, a service; a time window last, and
// not at all when the row group lies inside it.
func (b *Block) prefilterSpans(ctx context.Context, rg parquet.RowGroup, i int, e *IndexEntry, q *storage.SpanQuery, stats *storage.Stats, sc *rowScratch) ([]bool, bool, error) {
	var preds []colPred
	if len(q.TraceIDs) > 0 && !q.TraceID.IsEmpty() {
		// Both set: the set finds the rows, the one ID narrows them.
		preds = append(preds, bytesEq("trace_id", q.TraceID[:]))
	}
	if q.HasStatus {
		preds = append(preds, intRange("status_code", int64(q.Status), int64(q.Status)))
	}
	if q.Name != "" {
		preds = append(preds, bytesEq("name", []byte(q.Name)))
	}
	if q.ServiceName != "" && !(len(e.Services) == 1 && e.Services[0] == q.ServiceName) {
		preds = append(preds, bytesEq("service_name", []byte(q.ServiceName)))
	}
	if q.HasKind {
		preds = append(preds, intRange("kind", int64(q.Kind), int64(q.Kind)))
	}
	if q.MinDuration != 0 || q.MaxDuration != 0 {
		preds = append(preds, timeRange("duration_nano", q.MinDuration, q.MaxDuration))
	}
	if (q.Start != 0 && e.MinTime < q.Start) || (q.End != 0 && e.MaxTime > q.End) {
		preds = append(preds, timeRange("start_unix_nano", q.Start, q.End))
	}
	sc.saved.ok = [2]bool{}
	sc.traceOK = false
	if b.boundsExcludeAll(rg, preds) {
		// Nothing to read, nor a flag per row to clear: a search that
		// no page's bounds admit (the usual miss) costs the page index.
		return nil, false, nil
	}
	// A core read of the rows kept would decode the duration and start
	// pages the filter has just decoded: the filter keeps their values.
	var sv *savedInts
	if q.Projection == storage.ProjectCore {
		fields := q.Fields
		if fields == 0 {
			fields = ^storage.CoreFields(0)
		}
		sv = &sc.saved
		sv.reset(preds, [2]bool{fields&storage.FieldDuration != 0, fields&(storage.FieldStart|storage.FieldDuration) != 0}, int(e.Rows))
	}
	keep := sc.keepRows(int(e.Rows))
	if len(q.TraceIDs) > 0 {
		sc.runs = sc.runs[:0]
		found, read, err := b.tracesRows(rg, i, q.TraceIDs, keep, &sc.runs, stats)
		if err == nil {
			err = stats.AddBytes(read)
		}
		if err != nil || found == 0 {
			return keep, false, err
		}
		sc.traceOK = true
	} else if !q.TraceID.IsEmpty() {
		// Rows are sorted by trace: the page index finds the trace's run.
		found, read, err := b.traceRows(rg, i, q.TraceID, keep)
		if err == nil {
			err = stats.AddBytes(read)
		}
		if err != nil || found == 0 {
			return keep, false, err
		}
	} else {
		fillTrue(keep)
	}
	any, err := b.filterRows(ctx, rg, i, keep, preds, stats, sv)
	return keep, any, err
}

// coreColumns are what ProjectCore reads.
var coreColumns = []string{"trace_id", "span_id", "parent_span_id", "name", "kind", "status_code", "start_unix_nano", "duration_nano", "service_name"}

// The positions of coreColumns, which coreSpans switches on per row.
const (
	coreTraceID = iota
	coreSpanID
	coreParentID
	coreName
	coreKind
	coreStatus
	coreStart
	coreDuration
	coreService
)

// savedColumn is the index in rowScratch.saved of core column c, or -1.
func savedColumn(c int) int {
	switch c {
	case coreDuration:
		return 0
	case coreStart:
		return 1
	}
	return -1
}

// coreRows holds the kept rows of a core read column by column: only
// the columns read hold values, and the fields a filter fixes are set
// once, in base. A row becomes a span only as it is handed on (span),
// in one span the caller reuses. Built as spans, a part in flight cost
// 200 bytes a row whatever was read: 20 MB for a row group of 100k,
// twice scanParallel of them for a dense scan such as { } | rate(), and
// most of that scan's time went to the first writes into them.
type coreRows struct {
	n      int
	fields storage.CoreFields // the columns read: which slices below hold values
	// The fields a filter fixes, and which they are.
	fixed     storage.CoreFields
	fixTrace  storage.TraceID
	fixName   string
	fixKind   storage.SpanKind
	fixStatus storage.StatusCode
	fixRes    *storage.Resource

	traceID []storage.TraceID
	spanID  []storage.SpanID
	parent  []storage.SpanID
	name    []string
	kind    []storage.SpanKind
	status  []storage.StatusCode
	start   []int64
	end     []int64
	res     []*storage.Resource
}

// span sets s to row j. s must be zero but for the fields of a previous
// row of r, which are all set again.
func (r *coreRows) span(j int, s *storage.Span) {
	if x := r.fixed; x != 0 {
		if x&storage.FieldTraceID != 0 {
			s.TraceID = r.fixTrace
		}
		if x&storage.FieldName != 0 {
			s.Name = r.fixName
		}
		if x&storage.FieldKind != 0 {
			s.Kind = r.fixKind
		}
		if x&storage.FieldStatus != 0 {
			s.StatusCode = r.fixStatus
		}
		if x&storage.FieldService != 0 {
			s.Resource = r.fixRes
		}
	}
	f := r.fields
	if f&storage.FieldTraceID != 0 {
		s.TraceID = r.traceID[j]
	}
	if f&storage.FieldSpanID != 0 {
		s.SpanID = r.spanID[j]
	}
	if f&storage.FieldParentSpanID != 0 {
		s.ParentSpanID = r.parent[j]
	}
	if f&storage.FieldName != 0 {
		s.Name = r.name[j]
	}
	if f&storage.FieldKind != 0 {
		s.Kind = r.kind[j]
	}
	if f&storage.FieldStatus != 0 {
		s.StatusCode = r.status[j]
	}
	if f&storage.FieldStart != 0 {
		s.StartUnixNano, s.EndUnixNano = r.start[j], r.end[j]
	}
	if f&storage.FieldService != 0 {
		s.Resource = r.res[j]
	}
}

// grow returns s with length n, reusing its array.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// coreRead answers a ProjectCore query from flat columns alone: the kept
// rows' core fields are read column by column, from the pages that hold
// them, never decoding attributes, events or links, into out, whose
// slices are reused from one call to the next. It ends with ctx's error,
// checked between pages, when a scan that has stopped cancels it.
func (b *Block) coreRead(ctx context.Context, rg parquet.RowGroup, i int, keep []bool, q *storage.SpanQuery, stats *storage.Stats, out *coreRows, sc *rowScratch) error {
	// The j-th kept row is row j of out; each page visits its kept rows
	// only, not all of its rows.
	kept := sc.keptRows(keep)
	n := len(kept)
	out.n, out.fields, out.fixed = n, 0, 0
	resources := map[string]*storage.Resource{}
	// A dictionary-encoded service resolves once per entry, not per row.
	var svcDict parquet.Dictionary
	var svcByIdx []*storage.Resource
	resource := func(name []byte) *storage.Resource {
		r, ok := resources[string(name)] // no allocation for the lookup
		if !ok {
			r = &storage.Resource{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str(string(name))}}}
			resources[string(name)] = r
		}
		return r
	}
	var pv pageValues
	var dict dictStrings
	fields := q.Fields
	if fields == 0 {
		fields = ^storage.CoreFields(0)
	}
	if fields&storage.FieldDuration != 0 {
		fields |= storage.FieldStart // the end is start plus duration
	}
	// A column the prefilter held to one value (an equality on service,
	// name, kind or status) has that value in every kept row: it is set,
	// not read. A search's results show the fields its filter names, so
	// these are often asked for, and each read decodes every page that
	// holds a kept row.
	if fields&storage.FieldTraceID != 0 && !q.TraceID.IsEmpty() {
		out.fixed |= storage.FieldTraceID
		out.fixTrace = q.TraceID
	}
	if fields&storage.FieldName != 0 && q.Name != "" {
		out.fixed |= storage.FieldName
		out.fixName = q.Name
	}
	if fields&storage.FieldKind != 0 && q.HasKind {
		out.fixed |= storage.FieldKind
		out.fixKind = q.Kind
	}
	if fields&storage.FieldStatus != 0 && q.HasStatus {
		out.fixed |= storage.FieldStatus
		out.fixStatus = q.Status
	}
	if fields&storage.FieldService != 0 && q.ServiceName != "" {
		out.fixed |= storage.FieldService
		out.fixRes = resource([]byte(q.ServiceName))
	}
	fixed := func(c int) bool {
		switch c {
		case coreTraceID:
			return out.fixed&storage.FieldTraceID != 0
		case coreName:
			return q.Name != ""
		case coreKind:
			return q.HasKind
		case coreStatus:
			return q.HasStatus
		case coreService:
			return out.fixed&storage.FieldService != 0
		}
		return false
	}
	for c, col := range coreColumns {
		// coreColumns is in the order of the CoreFields bits.
		if fields&(1<<c) == 0 || fixed(c) {
			continue
		}
		switch c {
		case coreTraceID:
			out.traceID = grow(out.traceID, n)
		case coreSpanID:
			out.spanID = grow(out.spanID, n)
		case coreParentID:
			out.parent = grow(out.parent, n)
		case coreName:
			out.name = grow(out.name, n)
		case coreKind:
			out.kind = grow(out.kind, n)
		case coreStatus:
			out.status = grow(out.status, n)
		case coreStart:
			out.start, out.end = grow(out.start, n), grow(out.end, n)
		case coreService:
			out.res = grow(out.res, n)
		}
		if c != coreDuration {
			// Start and duration both make start and end: FieldStart.
			out.fields |= 1 << c
		}
		if c == coreTraceID && sc.traceOK {
			// The rows were found by their trace IDs (tracesRows), which
			// noted whose each is: the column is not decoded twice.
			run := 0
			for j, r := range kept {
				for run+1 < len(sc.runs) && sc.runs[run+1].row <= r {
					run++
				}
				out.traceID[j] = q.TraceIDs[sc.runs[run].id]
			}
			continue
		}
		if w := savedColumn(c); w >= 0 && sc.saved.ok[w] {
			vals := sc.saved.vals[w]
			for j, r := range kept {
				if c == coreStart {
					out.start[j], out.end[j] = vals[r], vals[r]
				} else {
					out.end[j] += vals[r]
				}
			}
			continue
		}
		dict = dictStrings{}
		read, err := b.keptPages(ctx, rg, i, col, keep, func(from int, pg parquet.Page) {
			pv.load(pg, &dict)
			rows := min(int(pg.NumRows()), len(keep)-from)
			if c == coreService && pv.idx != nil && pg.Dictionary() != svcDict {
				svcDict = pg.Dictionary()
				svcByIdx = make([]*storage.Resource, svcDict.Len())
			}
			j0, in := keptIn(kept, from, from+rows)
			for x, r := range in {
				k, j := int(r)-from, j0+x
				switch c {
				case coreTraceID:
					copy(out.traceID[j][:], pv.bytesAt(k, pg))
				case coreSpanID:
					copy(out.spanID[j][:], pv.bytesAt(k, pg))
				case coreParentID:
					copy(out.parent[j][:], pv.bytesAt(k, pg))
				case coreName:
					out.name[j] = pv.stringAt(k, pg)
				case coreKind:
					out.kind[j] = storage.SpanKind(pv.int64At(k))
				case coreStatus:
					out.status[j] = storage.StatusCode(pv.int64At(k))
				case coreStart:
					// Start comes before duration in coreColumns.
					out.start[j] = pv.int64At(k)
					out.end[j] = out.start[j]
				case coreDuration:
					out.end[j] += pv.int64At(k)
				case coreService:
					if pv.idx != nil {
						x := pv.idx[k]
						if svcByIdx[x] == nil {
							svcByIdx[x] = resource(pv.bytesAt(k, pg))
						}
						out.res[j] = svcByIdx[x]
					} else {
						out.res[j] = resource(pv.bytesAt(k, pg))
					}
				}
			}
		})
		if err != nil {
			return err
		}
		if err := stats.AddBytes(read); err != nil {
			return err
		}
	}
	// Without Matchers every condition of q is on a flat column, and the
	// prefilter applied them all: each kept row matches, whatever fields
	// were read.
	return nil
}

// AllSpans calls fn for every span in block order; compaction uses it.
func (b *Block) AllSpans(ctx context.Context, fn func(*storage.Span) bool) (err error) {
	defer b.guard(&err)
	return b.readErr(allRows(ctx, b, fromSpanRow, fn))
}

// allRows decodes every row of every row group, in order, into T.
func allRows[R, T any](ctx context.Context, b *Block, conv func(*R, *resourceCache) T, fn func(*T) bool) error {
	cache := newResourceCache()
	f, err := b.data()
	if err != nil {
		return err
	}
	for _, rg := range f.RowGroups() {
		if err := ctx.Err(); err != nil {
			return err
		}
		r := parquet.NewGenericRowGroupReader[R](rg)
		cont, err := readAll(r, func(row *R) bool {
			v := conv(row, cache)
			return fn(&v)
		})
		r.Close()
		if err != nil || !cont {
			return err
		}
		// Bound the cache on blocks with many distinct resources.
		if len(cache.res) > 4096 {
			cache = newResourceCache()
		}
	}
	return nil
}

func readAll[R any](r *parquet.GenericReader[R], fn func(*R) bool) (bool, error) {
	buf := make([]R, 64)
	for {
		n, err := r.Read(buf)
		for k := range n {
			if !fn(&buf[k]) {
				return false, nil
			}
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// Logs calls fn for each log record matching q.
func (b *Block) Logs(ctx context.Context, q *storage.LogQuery, fn func(*storage.LogRecord) bool) (_ bool, err error) {
	defer b.guard(&err)
	if b.Meta.Signal != Logs || !b.Overlaps(q.Start, q.End) {
		return true, nil
	}
	if !q.TraceID.IsEmpty() && !b.bloom.MayContain(q.TraceID) {
		return true, nil
	}
	if q.ServiceName != "" && !slices.Contains(b.Meta.Services, q.ServiceName) {
		return true, nil
	}
	stats := storage.StatsFrom(ctx)
	cache := newResourceCache()
	var f *parquet.File
	for i, e := range b.Index.RowGroups {
		if !rowGroupMatches(&e, q.Start, q.End, q.ServiceName, storage.TraceID{}) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if f == nil {
			if f, err = b.data(); err != nil {
				return false, err
			}
		}
		rg := f.RowGroups()[i]
		var preds []colPred
		if !q.TraceID.IsEmpty() {
			preds = append(preds, bytesEq("trace_id", q.TraceID[:]))
		}
		if q.ServiceName != "" && !(len(e.Services) == 1 && e.Services[0] == q.ServiceName) {
			preds = append(preds, bytesEq("service_name", []byte(q.ServiceName)))
		}
		if q.MinSeverity != 0 {
			preds = append(preds, intRange("severity_number", int64(q.MinSeverity), math.MaxInt32))
		}
		keep := make([]bool, e.Rows)
		for r := range keep {
			keep[r] = true
		}
		any, err := b.filterRows(ctx, rg, i, keep, preds, stats, nil)
		if err != nil {
			return false, b.readErr(err)
		}
		if !any {
			continue
		}
		if err := stats.AddBytes(rgBytes(rg, i)); err != nil {
			return false, err
		}
		cont, err := matchRuns(f, rg, i, keep, b.pageSource(dataFile, stats), cache, fromLogRow, q.Match, fn)
		if err != nil {
			return false, b.readErr(err)
		}
		if !cont {
			return false, nil
		}
	}
	return true, nil
}

// AllLogs calls fn for every record in block order.
func (b *Block) AllLogs(ctx context.Context, fn func(*storage.LogRecord) bool) (err error) {
	defer b.guard(&err)
	return b.readErr(allRows(ctx, b, fromLogRow, fn))
}
