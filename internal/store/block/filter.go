package block

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
	"unsafe"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// A colPred is a condition on one required flat column: an integer range
// or a byte-string equality. It is what a query's pushed-down fields
// become, and it is shaped so that the cost of a scan is the pages read,
// not the values boxed:
//
//   - the column index's page bounds decide whole pages of an integer
//     column without reading them (a duration or time range, a status);
//   - a page is evaluated on its decoded values (Page.Data) in a typed
//     loop, and a dictionary page on its indexes, the dictionary entries
//     being tested once per column chunk;
//   - pages that hold no row still kept by earlier predicates are skipped
//     through the offset index, never decompressed.
type colPred struct {
	col    string
	isInt  bool
	lo, hi int64  // integers: lo <= v <= hi
	eq     []byte // byte arrays, fixed-length ones included
}

func intRange(col string, lo, hi int64) colPred {
	return colPred{col: col, isInt: true, lo: lo, hi: hi}
}
func bytesEq(col string, v []byte) colPred { return colPred{col: col, eq: v} }

// timeRange is the predicate of a [start, end] window, 0 meaning open.
func timeRange(col string, start, end int64) colPred {
	hi := int64(math.MaxInt64)
	if end != 0 {
		hi = end
	}
	return intRange(col, start, hi)
}

func (p *colPred) value(v parquet.Value) bool {
	if p.isInt {
		n := v.Int64()
		if v.Kind() == parquet.Int32 {
			n = int64(v.Int32())
		}
		return n >= p.lo && n <= p.hi
	}
	return bytes.Equal(v.ByteArray(), p.eq)
}

// excludes reports whether page bounds [lo, hi] rule every value out.
func (p *colPred) excludes(lo, hi parquet.Value) bool {
	if !p.isInt || lo.IsNull() || hi.IsNull() {
		return false
	}
	get := func(v parquet.Value) int64 {
		if v.Kind() == parquet.Int32 {
			return int64(v.Int32())
		}
		return v.Int64()
	}
	return get(hi) < p.lo || get(lo) > p.hi
}

// page drops the kept rows of one page whose value fails p. keep holds
// exactly the page's rows.
func (p *colPred) page(pg parquet.Page, keep []bool, dict *dictMatch) {
	if pg.NumNulls() != 0 || pg.NumValues() != int64(len(keep)) {
		p.boxed(pg, keep)
		return
	}
	data := pg.Data()
	if d := pg.Dictionary(); d != nil {
		if data.Kind() != encoding.Int32 {
			p.boxed(pg, keep)
			return
		}
		m := dict.of(d, p)
		for i, x := range data.Int32() {
			if keep[i] && (x < 0 || int(x) >= len(m) || !m[x]) {
				keep[i] = false
			}
		}
		return
	}
	switch data.Kind() {
	case encoding.Int64:
		if !p.isInt {
			break
		}
		for i, v := range data.Int64() {
			if keep[i] && (v < p.lo || v > p.hi) {
				keep[i] = false
			}
		}
		return
	case encoding.Int32:
		if !p.isInt {
			break
		}
		for i, v := range data.Int32() {
			if keep[i] && (int64(v) < p.lo || int64(v) > p.hi) {
				keep[i] = false
			}
		}
		return
	case encoding.ByteArray:
		vals, offs := data.ByteArray()
		if p.isInt || len(offs) != len(keep)+1 {
			break
		}
		for i := range keep {
			if keep[i] && !bytes.Equal(vals[offs[i]:offs[i+1]], p.eq) {
				keep[i] = false
			}
		}
		return
	case encoding.FixedLenByteArray:
		vals, size := data.FixedLenByteArray()
		if p.isInt || size != len(p.eq) || len(vals) != size*len(keep) {
			break
		}
		for i := range keep {
			if keep[i] && !bytes.Equal(vals[i*size:(i+1)*size], p.eq) {
				keep[i] = false
			}
		}
		return
	}
	p.boxed(pg, keep)
}

// boxed is the general path, value by value, for a page whose layout the
// typed loops do not cover.
func (p *colPred) boxed(pg parquet.Page, keep []bool) {
	var buf [256]parquet.Value
	vr := pg.Values()
	row := 0
	for {
		n, err := vr.ReadValues(buf[:])
		for _, v := range buf[:n] {
			if row < len(keep) && keep[row] && !p.value(v) {
				keep[row] = false
			}
			row++
		}
		if err != nil || n == 0 {
			return
		}
	}
}

// dictMatch caches, for the dictionary of the column chunk being read,
// which of its entries satisfy the predicate.
type dictMatch struct {
	d parquet.Dictionary
	m []bool
}

func (c *dictMatch) of(d parquet.Dictionary, p *colPred) []bool {
	if c.d == d {
		return c.m
	}
	c.d = d
	c.m = make([]bool, d.Len())
	for i := range c.m {
		c.m[i] = p.value(d.Index(int32(i)))
	}
	return c.m
}

// keptPages calls fn with every page of column col in row group i that
// holds a row still kept, and the row it starts at, reading no other page
// when the chunk has an offset index. It reports the compressed bytes it
// read: those pages and the dictionary page, or the whole chunk when there
// is no index to skip by.
func (b *Block) keptPages(ctx context.Context, rg parquet.RowGroup, i int, col string, keep []bool, fn func(from int, pg parquet.Page)) (read int64, err error) {
	ci, ok := b.cols[col]
	if !ok {
		return 0, errNoColumn(col)
	}
	return keptChunkPages(ctx, fileOf(rg), rg.ColumnChunks()[ci], i, ci, b.pageSource(dataFile, storage.StatsFrom(ctx)), keep, fn)
}

// keptChunkPages is keptPages over column chunk cc, column ci of row
// group i of f, read as src says.
func keptChunkPages(ctx context.Context, f *parquet.File, cc parquet.ColumnChunk, i, ci int, src pageSource, keep []bool, fn func(from int, pg parquet.Page)) (read int64, err error) {
	oi, _ := cc.OffsetIndex()
	if oi == nil || oi.NumPages() == 0 {
		pages := cc.Pages()
		defer pages.Close()
		row := 0
		for {
			if err := ctx.Err(); err != nil {
				return chunkBytes(f, i, ci), err
			}
			pg, err := pages.ReadPage()
			if err == io.EOF {
				return chunkBytes(f, i, ci), nil
			}
			if err != nil {
				return chunkBytes(f, i, ci), err
			}
			n := min(int(pg.NumRows()), len(keep)-row)
			if n > 0 {
				fn(row, pg)
			}
			row += int(pg.NumRows())
			parquet.Release(pg)
		}
	}
	pages := openChunkPages(f, cc, oi, i, ci, src)
	defer pages.close()
	for p := range oi.NumPages() {
		from := int(oi.FirstRowIndex(p))
		to := len(keep)
		if p+1 < oi.NumPages() {
			to = int(oi.FirstRowIndex(p + 1))
		}
		if from >= to || to > len(keep) || !anyKept(keep[from:to]) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return read, err
		}
		pg, err := pages.page(p)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return read, err
		}
		if read == 0 {
			read += dictBytes(f, i, ci, oi.Offset(0))
		}
		read += oi.CompressedPageSize(p)
		fn(from, pg)
		parquet.Release(pg)
	}
	return read, nil
}

// chunkBytes is the compressed size of column ci of row group i of f.
func chunkBytes(f *parquet.File, i, ci int) int64 {
	rgs := f.Metadata().RowGroups
	if i >= len(rgs) || ci >= len(rgs[i].Columns) {
		return 0
	}
	return rgs[i].Columns[ci].MetaData.TotalCompressedSize
}

// dictBytes is the size of the dictionary page of column ci in row group
// i of f, which precedes the first data page at firstPage.
func dictBytes(f *parquet.File, i, ci int, firstPage int64) int64 {
	rgs := f.Metadata().RowGroups
	if i >= len(rgs) || ci >= len(rgs[i].Columns) {
		return 0
	}
	md := rgs[i].Columns[ci].MetaData
	if md.DictionaryPageOffset > 0 && md.DictionaryPageOffset < firstPage {
		return firstPage - md.DictionaryPageOffset
	}
	return 0
}

func errNoColumn(col string) error { return fmt.Errorf("no column %q", col) }

// anyKept reports whether a row is kept. It runs once per page of every
// column read, over flags that are mostly false when a trace is fetched,
// so it searches them as bytes (a bool is one byte, 0 or 1).
func anyKept(keep []bool) bool {
	if len(keep) == 0 {
		return false
	}
	return bytes.IndexByte(unsafe.Slice((*byte)(unsafe.Pointer(&keep[0])), len(keep)), 1) >= 0
}

// countKept returns how many rows are kept, counting the flags as bytes
// as anyKept searches them: a trace lookup counts a row group's 100,000
// for its 15 rows.
func countKept(keep []bool) int {
	if len(keep) == 0 {
		return 0
	}
	return bytes.Count(unsafe.Slice((*byte)(unsafe.Pointer(&keep[0])), len(keep)), []byte{1})
}

// pageBounds returns the page index of p's column in a row group, when p
// is an integer predicate (the only ones with page bounds; see
// writerOptions) and the chunk has one that agrees with its offset index.
func (b *Block) pageBounds(chunks []parquet.ColumnChunk, p *colPred) (parquet.ColumnIndex, parquet.OffsetIndex, bool) {
	ci, ok := b.cols[p.col]
	if !ok || !p.isInt {
		return nil, nil, false
	}
	return columnBounds(chunks[ci])
}

// columnBounds returns a column chunk's page index, when it has one
// whose column and offset indexes agree.
func columnBounds(cc parquet.ColumnChunk) (parquet.ColumnIndex, parquet.OffsetIndex, bool) {
	cix, err := cc.ColumnIndex()
	oi, err2 := cc.OffsetIndex()
	if err != nil || err2 != nil || cix == nil || oi == nil || cix.NumPages() != oi.NumPages() {
		return nil, nil, false
	}
	return cix, oi, true
}

// clearExcludedPages clears the flags of the rows of every page whose
// bounds p excludes.
func clearExcludedPages(p *colPred, cix parquet.ColumnIndex, oi parquet.OffsetIndex, keep []bool) {
	for pg := range cix.NumPages() {
		if !p.excludes(cix.MinValue(pg), cix.MaxValue(pg)) {
			continue
		}
		from := int(oi.FirstRowIndex(pg))
		to := len(keep)
		if pg+1 < oi.NumPages() {
			to = int(oi.FirstRowIndex(pg + 1))
		}
		if from < to && to <= len(keep) {
			clear(keep[from:to])
		}
	}
}

// boundsExcludeAll reports whether some integer predicate's page bounds
// rule out every page of the row group, before any row is looked at.
func (b *Block) boundsExcludeAll(rg parquet.RowGroup, preds []colPred) bool {
	chunks := rg.ColumnChunks()
	for k := range preds {
		p := &preds[k]
		cix, _, ok := b.pageBounds(chunks, p)
		if !ok || cix.NumPages() == 0 {
			continue
		}
		all := true
		for pg := range cix.NumPages() {
			if !p.excludes(cix.MinValue(pg), cix.MaxValue(pg)) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// rowScratch holds a scan's per-row-group flags and positions, reused
// from one row group to the next: a row group of 100k rows would
// otherwise allocate (and the collector sweep) half a megabyte each.
type rowScratch struct {
	keep  []bool
	idx   []int32
	saved savedInts
	// runs holds, when traceOK, where the traces a read of given trace
	// IDs found begin (markTraces): the row group being read was marked
	// so, and its rows' trace IDs need not be decoded.
	runs    []traceRun
	traceOK bool
}

// A traceRun is the first row of one trace's run of rows, and the index
// of its ID in the IDs asked for. Rows are sorted by trace, so a trace's
// rows are one run, and a row belongs to the last run that begins at or
// before it.
type traceRun struct {
	row, id int32
}

// keepRows returns n flags, all false.
func (sc *rowScratch) keepRows(n int) []bool {
	if cap(sc.keep) < n {
		sc.keep = make([]bool, n)
	}
	sc.keep = sc.keep[:n]
	clear(sc.keep)
	return sc.keep
}

// copyInt64s copies the values of pg, a page of a required int64 column
// decoded to a slice, to dst, and reports whether it could.
func copyInt64s(dst []int64, pg parquet.Page) bool {
	if pg.NumNulls() != 0 || pg.NumValues() != int64(len(dst)) || pg.Dictionary() != nil {
		return false
	}
	data := pg.Data()
	if data.Kind() != encoding.Int64 || len(data.Int64()) != len(dst) {
		return false
	}
	copy(dst, data.Int64())
	return true
}

// savedInts keeps the durations (0) and starts (1) a core scan's
// prefilter decodes, by row of the row group, when the results need them
// too: reading the kept rows would decode the same pages again. pred
// names the predicate of each, -1 for none; ok says that every page the
// predicate read went into vals, so every row kept afterwards has its
// value there.
type savedInts struct {
	pred [2]int
	vals [2][]int64
	ok   [2]bool
}

// reset prepares for a row group of n rows whose predicates are preds;
// want says which of the two columns the results read.
func (sv *savedInts) reset(preds []colPred, want [2]bool, n int) {
	sv.pred, sv.ok = [2]int{-1, -1}, [2]bool{}
	for k := range preds {
		for w, col := range [2]string{"duration_nano", "start_unix_nano"} {
			if want[w] && preds[k].col == col {
				sv.pred[w] = k
				if cap(sv.vals[w]) < n {
					sv.vals[w] = make([]int64, n)
				}
				sv.vals[w] = sv.vals[w][:n]
			}
		}
	}
}

// which is the column predicate k saves, or -1.
func (sv *savedInts) which(k int) int {
	if sv == nil {
		return -1
	}
	for w, p := range sv.pred {
		if p == k {
			return w
		}
	}
	return -1
}

// keptRows returns the positions of keep's set flags, ascending, in
// sc's reused slice.
func (sc *rowScratch) keptRows(keep []bool) []int32 {
	sc.idx = appendKept(sc.idx[:0], keep)
	return sc.idx
}

// appendKept appends the positions of keep's set flags to dst,
// ascending. It skips eight unset flags at a time, since a selective
// search keeps a few rows in a hundred thousand.
func appendKept(dst []int32, keep []bool) []int32 {
	if len(keep) == 0 {
		return dst
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&keep[0])), len(keep))
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if binary.LittleEndian.Uint64(b[i:]) == 0 {
			continue
		}
		for k := i; k < i+8; k++ {
			if b[k] != 0 {
				dst = append(dst, int32(k))
			}
		}
	}
	for ; i < len(b); i++ {
		if b[i] != 0 {
			dst = append(dst, int32(i))
		}
	}
	return dst
}

// keptIn returns the part of kept, ascending row positions, in rows
// [from, to), and its offset in kept.
func keptIn(kept []int32, from, to int) (int, []int32) {
	lo, _ := slices.BinarySearch(kept, int32(from))
	hi := lo
	for hi < len(kept) && int(kept[hi]) < to {
		hi++
	}
	return lo, kept[lo:hi]
}

// fillTrue sets every flag, doubling each copy (memmove, not a loop per
// flag).
func fillTrue(keep []bool) {
	if len(keep) == 0 {
		return
	}
	keep[0] = true
	for n := 1; n < len(keep); n *= 2 {
		copy(keep[n:], keep[:n])
	}
}

// filterRows applies preds, in order, to the rows of row group i still
// kept, and reports whether any row is left. Integer predicates first
// drop the pages their bounds exclude, with no read; then each predicate
// reads only the pages that still hold kept rows, so the more selective
// one goes first.
//
// With sv, the values of the predicates it names are kept as they are
// decoded (savedInts).
func (b *Block) filterRows(ctx context.Context, rg parquet.RowGroup, i int, keep []bool, preds []colPred, stats *storage.Stats, sv *savedInts) (bool, error) {
	chunks := rg.ColumnChunks()
	for k := range preds {
		p := &preds[k]
		if _, ok := b.cols[p.col]; !ok {
			return false, errNoColumn(p.col)
		}
		if cix, oi, ok := b.pageBounds(chunks, p); ok {
			clearExcludedPages(p, cix, oi, keep)
		}
	}
	for k := range preds {
		if !anyKept(keep) {
			return false, nil
		}
		p := &preds[k]
		var dict dictMatch
		w := sv.which(k)
		if w >= 0 {
			sv.ok[w] = true
		}
		read, err := b.keptPages(ctx, rg, i, p.col, keep, func(from int, pg parquet.Page) {
			n := min(int(pg.NumRows()), len(keep)-from)
			p.page(pg, keep[from:from+n], &dict)
			if w >= 0 && sv.ok[w] {
				sv.ok[w] = copyInt64s(sv.vals[w][from:from+n], pg)
			}
		})
		if err != nil {
			return false, err
		}
		if err := stats.AddBytes(read); err != nil {
			return false, err
		}
	}
	return anyKept(keep), nil
}

// pageValues gives typed, random access to the values of one page of a
// required flat column: the decoded slice when the page exposes one, the
// dictionary indexes with the dictionary's entries converted once per
// column chunk, or boxed values for any other layout.
type pageValues struct {
	i64   []int64
	i32   []int32
	fixed []byte
	size  int
	data  []byte
	offs  []uint32
	idx   []int32
	dictI []int32 // an integer dictionary's entries, which idx indexes
	bits  []byte
	dict  *dictStrings
	boxed []parquet.Value
}

// dictStrings holds a column chunk's dictionary entries as strings, made
// when first used, so a dictionary-encoded string costs no allocation per
// row.
type dictStrings struct {
	d parquet.Dictionary
	s []string
	k []bool
}

func (c *dictStrings) at(d parquet.Dictionary, i int32) string {
	if c.d != d {
		c.d, c.s, c.k = d, make([]string, d.Len()), make([]bool, d.Len())
	}
	if !c.k[i] {
		c.s[i], c.k[i] = string(d.Index(i).ByteArray()), true
	}
	return c.s[i]
}

func (v *pageValues) load(pg parquet.Page, dict *dictStrings) {
	*v = pageValues{boxed: v.boxed[:0], dict: dict}
	n := int(pg.NumRows())
	if pg.NumNulls() == 0 && pg.NumValues() == int64(n) {
		data := pg.Data()
		switch {
		case pg.Dictionary() != nil && data.Kind() == encoding.Int32:
			// Integer columns may be dictionary-encoded too: the format
			// leaves encodings to the writer. An INT32 dictionary's
			// entries are read as they are; an INT64 one's are boxed.
			switch dd := pg.Dictionary().Page().Data(); dd.Kind() {
			case encoding.Int32:
				v.idx, v.dictI = data.Int32(), dd.Int32()
				return
			case encoding.Int64:
			default:
				v.idx = data.Int32()
				return
			}
		case pg.Dictionary() != nil:
		case data.Kind() == encoding.Int64:
			v.i64 = data.Int64()
			return
		case data.Kind() == encoding.Int32:
			v.i32 = data.Int32()
			return
		case data.Kind() == encoding.FixedLenByteArray:
			v.fixed, v.size = data.FixedLenByteArray()
			return
		case data.Kind() == encoding.Boolean:
			// Bit-packed, least significant bit first; a page read whole
			// starts at its first bit (boxing each flag cost a trace
			// summary read a fifth of its time).
			if bits := data.Boolean(); len(bits) >= (n+7)/8 && len(bits) > 0 {
				v.bits = bits
				return
			}
		case data.Kind() == encoding.ByteArray:
			v.data, v.offs = data.ByteArray()
			if len(v.offs) == n+1 {
				return
			}
			v.data, v.offs = nil, nil
		}
	}
	if cap(v.boxed) < n {
		v.boxed = make([]parquet.Value, n)
	}
	v.boxed = v.boxed[:n]
	vr := pg.Values()
	for got := 0; got < n; {
		k, err := vr.ReadValues(v.boxed[got:])
		got += k
		if err != nil || k == 0 {
			v.boxed = v.boxed[:got]
			break
		}
	}
}

// The accessors take a row of the page; a row past a short boxed page
// reads as zero.
func (v *pageValues) int64At(k int) int64 {
	switch {
	case v.i64 != nil:
		return v.i64[k]
	case v.i32 != nil:
		return int64(v.i32[k])
	case v.dictI != nil:
		if x := v.idx[k]; x >= 0 && int(x) < len(v.dictI) {
			return int64(v.dictI[x])
		}
		return 0
	case v.bits != nil:
		return int64(v.bits[k>>3] >> (k & 7) & 1)
	case k < len(v.boxed):
		switch v.boxed[k].Kind() {
		case parquet.Int32:
			return int64(v.boxed[k].Int32())
		case parquet.Boolean:
			if v.boxed[k].Boolean() {
				return 1
			}
			return 0
		}
		return v.boxed[k].Int64()
	}
	return 0
}

func (v *pageValues) bytesAt(k int, pg parquet.Page) []byte {
	switch {
	case v.fixed != nil:
		return v.fixed[k*v.size : (k+1)*v.size]
	case v.offs != nil:
		return v.data[v.offs[k]:v.offs[k+1]]
	case v.idx != nil:
		return pg.Dictionary().Index(v.idx[k]).ByteArray()
	case k < len(v.boxed):
		return v.boxed[k].ByteArray()
	}
	return nil
}

func (v *pageValues) stringAt(k int, pg parquet.Page) string {
	if v.idx != nil {
		return v.dict.at(pg.Dictionary(), v.idx[k])
	}
	return string(v.bytesAt(k, pg))
}
