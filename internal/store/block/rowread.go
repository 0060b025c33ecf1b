package block

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sort"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding"
	"github.com/parquet-go/parquet-go/encoding/rle"
	"github.com/parquet-go/parquet-go/format"
)

// Reading whole rows by pages.
//
// A trace by ID, and the rows a search or a log query decodes in full,
// read every column of a few rows. parquet-go's row reader reads each
// column through FilePages, which fills a 32 KiB buffer at every page it
// seeks to and decodes each page header with its reflective Thrift
// decoder: for a trace of 15 spans in a block of 32 columns, 14 of them
// with a dictionary, that was 46 headers and 1.5 MB copied, and half of a
// lookup's CPU at 10M spans. readRows reads the pages that hold the rows
// as chunkPages reads a search's, levels included, and rebuilds each row
// from its columns' values with parquet-go's own Reconstruct, so the
// rows are the ones parquet-go's reader makes (TestReadRowsAsParquetGo).
//
// It reads a file whose columns are R's (the same paths, levels and
// physical types, in the same order), from local disk, in data pages v2.
// Anything else (an older schema, a remote file, a page of another
// kind) goes through parquet-go's reader, from the row where it is met.

// readRows decodes the rows of row group i, rg, of f whose keep flag is
// set, in order, calling fn for each until it returns false. *R is valid
// for the call only. src says how f is read.
func readRows[R any](f *parquet.File, rg parquet.RowGroup, i int, keep []bool, src pageSource, fn func(*R) bool) (bool, error) {
	schema := parquet.SchemaOf(new(R))
	// More than an eighth of the rows kept: most pages are read for many
	// of their rows, and parquet-go's reader, which decodes a column's
	// values in batches, is faster than rebuilding each row here (a LogQL
	// line filter over a stream's rows, all kept, took 790 ms instead of
	// 583 at 10M spans).
	if !src.direct || countKept(keep) > len(keep)/8 || !sameLeaves(f.Schema(), schema) {
		return readRuns(rg, keep, fn)
	}
	rr := newRowReader(f, rg, i, schema, src)
	defer rr.close()
	var r R // Reconstruct sets every field: each row names every column
	for _, row := range appendKept(nil, keep) {
		err := rr.read(int64(row), &r)
		if errors.Is(err, errNotDirect) {
			rest := slices.Clone(keep)
			clear(rest[:row])
			return readRuns(rg, rest, fn)
		}
		if err != nil {
			return false, err
		}
		if !fn(&r) {
			return false, nil
		}
	}
	return true, nil
}

// sameLeaves reports whether the leaf columns of a and b have the same
// paths, levels and physical types, in the same order: then a row of
// one's values reconstructs as the other's.
func sameLeaves(a, b *parquet.Schema) bool {
	ca, cb := a.Columns(), b.Columns()
	if len(ca) != len(cb) {
		return false
	}
	for i := range ca {
		if !slices.Equal(ca[i], cb[i]) {
			return false
		}
		la, oka := a.Lookup(ca[i]...)
		lb, okb := b.Lookup(cb[i]...)
		if !oka || !okb || la.ColumnIndex != i || lb.ColumnIndex != i ||
			la.MaxRepetitionLevel != lb.MaxRepetitionLevel || la.MaxDefinitionLevel != lb.MaxDefinitionLevel ||
			la.Node.Type().Kind() != lb.Node.Type().Kind() {
			return false
		}
	}
	return true
}

// rowReader reads rows of one row group, each column from the page that
// holds the row asked for: rows are asked for in order, so each page is
// read once.
type rowReader struct {
	schema *parquet.Schema
	cols   []levelCursor
	row    parquet.Row
}

func newRowReader(f *parquet.File, rg parquet.RowGroup, i int, schema *parquet.Schema, src pageSource) *rowReader {
	ccs := rg.ColumnChunks()
	paths := schema.Columns()
	rr := &rowReader{schema: schema, cols: make([]levelCursor, len(ccs))}
	for ci, cc := range ccs {
		c := &rr.cols[ci]
		c.page, c.rows = -1, rg.NumRows()
		if ci < len(paths) {
			leaf, _ := schema.Lookup(paths[ci]...)
			c.rep, c.def = byte(leaf.MaxRepetitionLevel), byte(leaf.MaxDefinitionLevel)
		}
		oi, err := cc.OffsetIndex()
		if err != nil || oi == nil || oi.NumPages() == 0 {
			continue // c.cp nil: not read directly
		}
		c.cp = openChunkPages(f, cc, oi, i, ci, src)
	}
	return rr
}

func (rr *rowReader) close() {
	for i := range rr.cols {
		if cp := rr.cols[i].cp; cp != nil {
			cp.close()
		}
	}
}

// read decodes row into r, a pointer to an R.
func (rr *rowReader) read(row int64, r any) error {
	rr.row = rr.row[:0]
	for ci := range rr.cols {
		var err error
		if rr.row, err = rr.cols[ci].appendRow(rr.row, row); err != nil {
			return err
		}
	}
	if err := rr.schema.Reconstruct(r, rr.row); err != nil {
		return fmt.Errorf("row %d: %w: %w", row, parquet.ErrCorrupted, err)
	}
	return nil
}

// levelCursor holds one page of a column: its levels, its values (the
// defined ones), and where each of its rows starts among both. A row's
// values are made when it is read: a page holds up to tens of thousands
// of rows, of which a lookup wants a few.
type levelCursor struct {
	cp       *chunkPages
	rep, def byte  // the column's maximum levels
	rows     int64 // the row group's
	page     int   // the page held, -1 for none
	first    int64 // its first row
	n        int64 // its rows
	// The page's defined values: indexes into dict, or data.
	dict parquet.Dictionary
	idx  []int32
	data encoding.Values
	nv   int64 // its entries
	nd   int64 // its values: the entries defined
	// at is where row first+at.row starts: at entry at.e, value at.v.
	// Rows are read in order, so each seek counts on from the last.
	at struct{ row, e, v int64 }
	// The page's levels (reps, defs, empty when its maximum is 0) and the
	// values of the row being read (row) are in cp's scratch.
}

// seek returns where row first+k's entries start and end, and its values.
func (c *levelCursor) seek(k int64) (e0, e1, v0, v1 int64) {
	sc := c.cp.sc
	if k < c.at.row {
		c.at.row, c.at.e, c.at.v = 0, 0, 0
	}
	// A row starts at each repetition level 0, and holds a value at each
	// definition level at the maximum. The page's levels were counted
	// when it was read, so row k is there.
	e0 = k
	if c.rep > 0 {
		e0 = c.at.e
		if k > c.at.row {
			e0 = nthZero(sc.reps, c.at.e+1, k-c.at.row)
		}
		e1 = c.nv
		if j := bytes.IndexByte(sc.reps[e0+1:], 0); j >= 0 {
			e1 = e0 + 1 + int64(j)
		}
	} else {
		e1 = k + 1
	}
	v0, v1 = e0, e1
	if c.def > 0 {
		v0 = c.at.v + int64(bytes.Count(sc.defs[c.at.e:e0], []byte{c.def}))
		v1 = v0 + int64(bytes.Count(sc.defs[e0:e1], []byte{c.def}))
	}
	c.at.row, c.at.e, c.at.v = k, e0, v0
	return e0, e1, v0, v1
}

// appendRow appends row's entries, a value or a null each, with their
// levels, to dst. The values are valid until the cursor moves to another
// page.
func (c *levelCursor) appendRow(dst []parquet.Value, row int64) ([]parquet.Value, error) {
	if c.cp == nil || !c.cp.direct {
		return nil, errNotDirect
	}
	k := row - c.first
	if c.page < 0 || k < 0 || k >= c.n {
		oi := c.cp.oi
		p := sort.Search(oi.NumPages(), func(p int) bool { return oi.FirstRowIndex(p) > row }) - 1
		if p < 0 {
			return nil, fmt.Errorf("row %d before the first page of column %d: %w", row, c.cp.ci, parquet.ErrCorrupted)
		}
		if err := c.load(p); err != nil {
			c.page = -1
			return nil, err
		}
		if k = row - c.first; k >= c.n {
			return nil, fmt.Errorf("row %d past page %d of column %d: %w", row, p, c.cp.ci, parquet.ErrCorrupted)
		}
	}
	e0, e1, v0, v1 := c.seek(k)
	sc := c.cp.sc
	sc.row = grow(sc.row, int(v1-v0))
	if c.dict != nil {
		c.dict.Lookup(c.idx[v0:v1], sc.row)
	} else {
		valuesAt(sc.row, c.data, c.cp.typ.Kind(), int(v0))
	}
	ci, v := c.cp.ci, 0
	for e := e0; e < e1; e++ {
		rep, def, ok := c.levels(int(e))
		if !ok {
			return nil, c.levelsErr(rep, def)
		}
		if def == c.def {
			dst = append(dst, sc.row[v].Level(int(rep), int(def), ci))
			v++
		} else {
			dst = append(dst, parquet.Value{}.Level(int(rep), int(def), ci))
		}
	}
	return dst, nil
}

// levels returns entry e's levels, and whether they are within the
// column's maximums.
func (c *levelCursor) levels(e int) (rep, def byte, ok bool) {
	if c.rep > 0 {
		rep = c.cp.sc.reps[e]
	}
	if c.def > 0 {
		def = c.cp.sc.defs[e]
	}
	return rep, def, rep <= c.rep && def <= c.def
}

func (c *levelCursor) levelsErr(rep, def byte) error {
	return fmt.Errorf("column %d: levels %d/%d above %d/%d: %w", c.cp.ci, rep, def, c.rep, c.def, parquet.ErrCorrupted)
}

// entries returns the held page's entries, a value or a null each with
// its levels, in vals (grown as needed), and where each of its rows
// starts among them in starts, then where the last ends; starts is empty
// when a row is an entry (a required column that does not repeat). A
// merge reads every row of every page: one pass over a page costs less
// than a seek for each row. Only the levels are set, not the column
// index, which a column writer does not read. The values are valid until
// the cursor moves to another page.
func (c *levelCursor) entries(vals []parquet.Value, starts []int32) ([]parquet.Value, []int32, error) {
	nd, nv := int(c.nd), int(c.nv)
	vals = grow(vals, nv)
	if c.dict != nil {
		c.dict.Lookup(c.idx, vals[:nd])
	} else {
		valuesAt(vals[:nd], c.data, c.cp.typ.Kind(), 0)
	}
	if c.rep == 0 && c.def == 0 {
		return vals, starts[:0], nil
	}
	// Spread the values to their entries from the last: entry e holds
	// value v <= e, so each value is read before its place is written.
	starts = grow(starts, int(c.n)+1)
	starts[c.n] = int32(nv)
	r, v := int(c.n), nd
	for e := nv - 1; e >= 0; e-- {
		rep, def, ok := c.levels(e)
		if !ok {
			return vals, starts, c.levelsErr(rep, def)
		}
		x := &vals[e]
		if def == c.def {
			if v--; v < 0 {
				return vals, starts, fmt.Errorf("column %d: more values defined than the page holds: %w", c.cp.ci, parquet.ErrCorrupted)
			}
			// Until the first null from the end, each value is already
			// in its entry: copying it onto itself cost a fifth of
			// this loop.
			if v != e {
				*x = vals[v]
			}
		} else {
			*x = parquet.Value{}
		}
		x.SetRepetitionLevel(int(rep))
		x.SetDefinitionLevel(int(def))
		if rep == 0 {
			if r--; r < 0 {
				return vals, starts, fmt.Errorf("column %d: more rows than the page holds: %w", c.cp.ci, parquet.ErrCorrupted)
			}
			starts[r] = int32(e)
		}
	}
	if r != 0 || v != 0 {
		return vals, starts, fmt.Errorf("column %d: %d rows and %d values short of the page's: %w", c.cp.ci, r, v, parquet.ErrCorrupted)
	}
	return vals, starts, nil
}

// nthZero returns where the m-th 0 (m >= 1) from b[from:] is; there is
// one. Counting blocks first passes long pages fast: a row of a nested
// column is one level or a few.
func nthZero(b []byte, from, m int64) int64 {
	for {
		if end := from + 512; end <= int64(len(b)) {
			if n := int64(bytes.Count(b[from:end], []byte{0})); n < m {
				m, from = m-n, end
				continue
			}
		}
		j := int64(bytes.IndexByte(b[from:], 0))
		if m--; m == 0 {
			return from + j
		}
		from += j + 1
	}
}

// load reads page p: its levels, its values, and its rows, which must be
// those the offset index gives it.
func (c *levelCursor) load(p int) error {
	cp := c.cp
	raw, err := cp.readAt(cp.sc.raw, cp.oi.Offset(p), cp.oi.CompressedPageSize(p))
	if err != nil {
		return err
	}
	sc := cp.sc
	sc.raw = raw
	h, n, err := parsePageHeader(raw)
	if err != nil || h.typ != format.DataPageV2 || !h.v2 || h.numValues < 0 || h.numNulls < 0 ||
		h.numNulls > h.numValues || h.repLen < 0 || h.defLen < 0 ||
		c.rep == 0 && h.repLen != 0 || c.def == 0 && h.defLen != 0 {
		return errNotDirect
	}
	levels, data, inflated, err := cp.body(raw, &h, n, int(h.repLen)+int(h.defLen), h.isCompressed, cp.sc.plain)
	if err != nil {
		return err
	}
	if inflated {
		cp.sc.plain = data
	}
	end := c.rows
	if p+1 < cp.oi.NumPages() {
		end = cp.oi.FirstRowIndex(p + 1)
	}
	if err := c.decode(&h, levels, data, cp.oi.FirstRowIndex(p), end); err != nil {
		return fmt.Errorf("column %d, page %d: %w", cp.ci, p, err)
	}
	c.page = p
	return nil
}

// maxPageEntries bounds the levels of a page read directly: the pages of
// a block hold at most some hundreds of thousands, and levels are
// decoded whole, so a crafted count must not size the buffers.
const maxPageEntries = 1 << 22

// decode decodes a data page v2 with header h, its levels and its values
// (decompressed), which must hold rows [first, end).
func (c *levelCursor) decode(h *pageHeader, levels, data []byte, first, end int64) error {
	sc, nv := c.cp.sc, int(h.numValues)
	if nv > maxPageEntries {
		return errNotDirect
	}
	var err error
	if sc.reps, err = decodeLevels(sc.reps, levels[:h.repLen], c.rep, nv); err != nil {
		return fmt.Errorf("repetition levels: %w", err)
	}
	if sc.defs, err = decodeLevels(sc.defs, levels[h.repLen:], c.def, nv); err != nil {
		return fmt.Errorf("definition levels: %w", err)
	}
	present, rows := nv-int(h.numNulls), nv
	if c.rep > 0 {
		if nv > 0 && sc.reps[0] != 0 {
			return fmt.Errorf("the page starts inside a row: %w", parquet.ErrCorrupted)
		}
		rows = bytes.Count(sc.reps, []byte{0})
	}
	defined := nv
	if c.def > 0 {
		defined = bytes.Count(sc.defs, []byte{c.def})
	}
	if defined != present {
		return fmt.Errorf("%d values defined where the header says %d: %w", defined, present, parquet.ErrCorrupted)
	}
	if int64(rows) != end-first || rows != int(h.numRows) {
		return fmt.Errorf("%d rows where the page holds %d (header %d): %w", end-first, rows, h.numRows, parquet.ErrCorrupted)
	}
	pg, err := c.cp.decodeValues(h, data, present)
	if err != nil {
		return err
	}
	c.dict, c.data = pg.Dictionary(), encoding.Values{}
	if c.dict != nil {
		c.idx = sc.idx[:present]
	} else {
		c.data = pg.Data()
	}
	c.first, c.n, c.nv, c.nd = first, int64(rows), int64(nv), int64(present)
	c.at.row, c.at.e, c.at.v = 0, 0, 0
	return nil
}

// decodeLevels decodes n levels from src, RLE-encoded as a data page v2
// holds them with levels up to max, into dst; with max 0 there are none
// to read. Levels above max are refused as rows are read.
func decodeLevels(dst, src []byte, max byte, n int) ([]byte, error) {
	if max == 0 {
		return dst[:0], nil
	}
	width := bits.Len8(max)
	if err := checkRuns(src, width); err != nil {
		return nil, err
	}
	enc := rle.Encoding{BitWidth: width}
	dst, err := enc.DecodeLevels(dst[:0], src)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", parquet.ErrCorrupted, err)
	}
	if len(dst) < n {
		return nil, fmt.Errorf("%d of %d levels: %w", len(dst), n, parquet.ErrCorrupted)
	}
	return dst[:n], nil
}

var errRuns = fmt.Errorf("malformed RLE runs: %w", parquet.ErrCorrupted)

// checkRuns checks, from their headers, that each run of src, in the RLE
// and bit-packed hybrid encoding of width bits, is there whole and that
// together they hold at most maxPageEntries values: parquet-go's decoders
// size their output by the headers and read a run without checking that
// it is.
func checkRuns(src []byte, width int) error {
	if width < 0 || width > 32 {
		return errRuns
	}
	var n int64
	for len(src) > 0 {
		h, k := binary.Uvarint(src)
		if k <= 0 || h>>1 > maxPageEntries {
			return errRuns
		}
		src = src[k:]
		if h>>1 == 0 {
			continue // an empty run has no body, as parquet-go reads it
		}
		size := int64((width + 7) / 8) // one value repeated h>>1 times
		if h&1 == 1 {                  // h>>1 groups of 8 values
			size = int64(h>>1) * int64(width)
			n += 8 * int64(h>>1)
		} else {
			n += int64(h >> 1)
		}
		if size > int64(len(src)) || n > maxPageEntries+8 {
			return errRuns
		}
		src = src[size:]
	}
	return nil
}

// valuesAt fills dst with values from..from+len(dst) of vals, which holds
// values of kind k, as checkValues has checked. A merge reads every value
// of every page it copies through here: the kinds it reads most have a
// loop of their own, so the kind is switched on and vals's slice taken
// once a page rather than once a value (valueAt's loop was 2.5% of the
// all-in-one's CPU at 20k spans/s).
func valuesAt(dst []parquet.Value, vals encoding.Values, k parquet.Kind, from int) {
	switch k {
	case parquet.Int32:
		for i, x := range vals.Int32()[from : from+len(dst)] {
			dst[i] = parquet.Int32Value(x)
		}
	case parquet.Int64:
		for i, x := range vals.Int64()[from : from+len(dst)] {
			dst[i] = parquet.Int64Value(x)
		}
	case parquet.FixedLenByteArray:
		b, size := vals.FixedLenByteArray()
		b = b[from*size : (from+len(dst))*size]
		for i := range dst {
			dst[i] = parquet.FixedLenByteArrayValue(b[i*size : (i+1)*size : (i+1)*size])
		}
	case parquet.ByteArray:
		b, offs := vals.ByteArray()
		offs = offs[from : from+len(dst)+1]
		for i := range dst {
			dst[i] = parquet.ByteArrayValue(b[offs[i]:offs[i+1]:offs[i+1]])
		}
	default:
		for i := range dst {
			dst[i] = valueAt(vals, k, from+i)
		}
	}
}

// valueAt returns value i of vals, which holds values of kind k, as
// checkValues has checked.
func valueAt(vals encoding.Values, k parquet.Kind, i int) parquet.Value {
	switch k {
	case parquet.Boolean:
		return parquet.BooleanValue(vals.Boolean()[i/8]&(1<<(i%8)) != 0)
	case parquet.Int32:
		return parquet.Int32Value(vals.Int32()[i])
	case parquet.Int64:
		return parquet.Int64Value(vals.Int64()[i])
	case parquet.Float:
		return parquet.FloatValue(vals.Float()[i])
	case parquet.Double:
		return parquet.DoubleValue(vals.Double()[i])
	case parquet.FixedLenByteArray:
		b, size := vals.FixedLenByteArray()
		return parquet.FixedLenByteArrayValue(b[i*size : (i+1)*size : (i+1)*size])
	default: // parquet.ByteArray
		b, offs := vals.ByteArray()
		return parquet.ByteArrayValue(b[offs[i]:offs[i+1]:offs[i+1]])
	}
}
