package block

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// Merging a column at a time.
//
// parquet-go's merge of row groups rebuilds every row from all 32 of its
// columns, compares rows, and takes them apart again into the writer's
// columns; each input holds a page and its buffers for every column
// while the merge runs. Yet a row group is laid out a column at a time,
// and the order of a merge is decided by three columns alone. So
// mergeColumns, for each output row group:
//
//  1. reads the sort columns (trace_id, start_unix_nano, span_id) of
//     every input, which it holds open for the whole merge, and decides
//     from them which input each of the group's rows comes from and which
//     rows are duplicates (the same three as the row before, the ones
//     WriteSpans drops): the group's plan, two bytes a row;
//  2. copies each column in turn, reading that column of every input from
//     where the group starts in it, and writing the rows the plan names,
//     values and levels as stored, into the writer's column;
//  3. writes the row group, and adds its rows to the index, bloom filter
//     and trace table from the few columns it kept in step 2.
//
// A merge then holds one column's pages of each input at a time (and the
// three sort columns'), instead of all 32, and never makes a row. Pages
// are read by the offset index, as readRows reads them: it reads what
// this package writes, from local disk; anything else is errNotDirect,
// and MergeSpans merges such blocks row by row.

// mergeInput is a merge's source block, read by columns.
type mergeInput struct {
	f   *parquet.File
	rgs []parquet.RowGroup
	// ends[g] is the block's row after row group g: rows are counted over
	// the block, whose row groups are in order.
	ends []int64
	src  pageSource
}

// colCursor reads one column of a merge input, a run of rows at a time,
// across the input's row groups. It reads each page once, whole.
type colCursor struct {
	in    *mergeInput
	ci    int
	g     int   // the row group open in lc, -1 for none
	start int64 // its first row
	at    int64 // the next row
	lc    levelCursor
	// The held page's entries, and where each of its rows starts among
	// them, empty for an entry a row (levelCursor.entries). Their buffers
	// are kept from one column to the next.
	vals []parquet.Value
	rows []int32
	// The open chunk's offset index, and its bytes (offsetIndex).
	locs pageLocations
	raw  []byte
}

// spanLevels are the maximum repetition and definition levels of each
// leaf column of spanSchema.
var spanLevels = func() [][2]byte {
	cols := spanSchema.Columns()
	out := make([][2]byte, len(cols))
	for _, path := range cols {
		leaf, _ := spanSchema.Lookup(path...)
		out[leaf.ColumnIndex] = [2]byte{byte(leaf.MaxRepetitionLevel), byte(leaf.MaxDefinitionLevel)}
	}
	return out
}()

// reset positions c at row at of column ci of in.
func (c *colCursor) reset(in *mergeInput, ci int, at int64) {
	c.close()
	*c = colCursor{in: in, ci: ci, g: -1, at: at, vals: c.vals[:0], rows: c.rows[:0]}
}

func (c *colCursor) close() {
	if c.lc.cp != nil {
		c.lc.cp.close()
		c.lc.cp = nil
	}
	c.g = -1
}

// take returns the entries of the next rows, at most n of them, all from
// one page, and how many rows they are; the cursor moves past them. They
// are valid until the cursor moves to another page.
func (c *colCursor) take(n int) ([]parquet.Value, int, error) {
	if err := c.page(); err != nil {
		return nil, 0, err
	}
	k := int(c.at - c.start - c.lc.first)
	m := min(n, int(c.lc.n)-k)
	c.at += int64(m)
	if c.lc.rep == 0 && c.lc.def == 0 { // an entry a row
		return c.vals[k : k+m], m, nil
	}
	return c.vals[c.rows[k]:c.rows[k+m]], m, nil
}

// skip passes the next row.
func (c *colCursor) skip() { c.at++ }

// page makes the page that holds the next row the one held.
func (c *colCursor) page() error {
	if c.g < 0 || c.at >= c.in.ends[c.g] {
		if err := c.open(); err != nil {
			return err
		}
	}
	r := c.at - c.start
	if c.lc.page >= 0 && r >= c.lc.first && r < c.lc.first+c.lc.n {
		return nil
	}
	if !c.lc.cp.direct {
		return errNotDirect
	}
	oi := c.lc.cp.oi
	p := sort.Search(oi.NumPages(), func(p int) bool { return oi.FirstRowIndex(p) > r }) - 1
	if p < 0 {
		return fmt.Errorf("row %d before the first page of column %d: %w", r, c.ci, parquet.ErrCorrupted)
	}
	if err := c.lc.load(p); err != nil {
		c.lc.page = -1
		return err
	}
	if r-c.lc.first >= c.lc.n {
		c.lc.page = -1
		return fmt.Errorf("row %d past page %d of column %d: %w", r, p, c.ci, parquet.ErrCorrupted)
	}
	var err error
	if c.vals, c.rows, err = c.lc.entries(c.vals[:0], c.rows[:0]); err != nil {
		c.lc.page = -1
	}
	return err
}

// open opens the row group that holds the next row.
func (c *colCursor) open() error {
	c.close()
	ends := c.in.ends
	g := sort.Search(len(ends), func(g int) bool { return ends[g] > c.at })
	if g == len(ends) {
		return fmt.Errorf("column %d: row %d past the block's %d: %w", c.ci, c.at, ends[len(ends)-1], parquet.ErrCorrupted)
	}
	rg := c.in.rgs[g]
	ccs := rg.ColumnChunks()
	if c.ci >= len(ccs) || c.ci >= len(spanLevels) {
		return errNotDirect
	}
	cc := ccs[c.ci]
	oi, err := c.offsetIndex(g)
	if err != nil || oi.NumPages() == 0 {
		return errNotDirect
	}
	c.g, c.start = g, ends[g]-rg.NumRows()
	c.lc = levelCursor{page: -1, rows: rg.NumRows(), rep: spanLevels[c.ci][0], def: spanLevels[c.ci][1],
		cp: openChunkPages(c.in.f, cc, oi, g, c.ci, c.in.src)}
	return nil
}

// pageLocations is a column chunk's offset index as colCursor.offsetIndex
// decodes it.
type pageLocations []format.PageLocation

func (p pageLocations) NumPages() int                  { return len(p) }
func (p pageLocations) Offset(i int) int64             { return p[i].Offset }
func (p pageLocations) CompressedPageSize(i int) int64 { return int64(p[i].CompressedPageSize) }
func (p pageLocations) FirstRowIndex(i int) int64      { return p[i].FirstRowIndex }

// offsetIndex decodes the offset index of the cursor's column in row
// group g for the cursor alone, into its own buffers. parquet-go's
// ColumnChunk.OffsetIndex keeps what it decodes in the file for as long
// as the file lives, and a merge's inputs live until the merged block
// replaces them: reading every chunk of every input, the merge of 64
// level-0 blocks (8 KiB pages, 10M spans) left 13 MiB of indexes behind
// in them at its end, on top of what it holds itself, and with a head at
// its cut that tipped the process over its admission threshold
// (memlimit.CheckHeap). Here a cursor's index is overwritten when it
// moves to the next row group or column. The previous one is no longer
// read by then: open closes the chunk reader first.
func (c *colCursor) offsetIndex(g int) (pageLocations, error) {
	rgs := c.in.f.Metadata().RowGroups
	if g >= len(rgs) || c.ci >= len(rgs[g].Columns) {
		return nil, errNotDirect
	}
	col := &rgs[g].Columns[c.ci]
	if col.OffsetIndexOffset <= 0 || col.OffsetIndexLength <= 0 || len(col.EncryptedColumnMetadata) > 0 {
		return nil, errNotDirect
	}
	c.raw = grow(c.raw[:0], int(col.OffsetIndexLength))
	if _, err := c.in.f.ReadAt(c.raw, col.OffsetIndexOffset); err != nil {
		return nil, fmt.Errorf("read the offset index of column %d: %w", c.ci, err)
	}
	var err error
	c.locs, err = parseOffsetIndex(c.raw, c.locs)
	return c.locs, err
}

// sortKey is a row's place in block order (CompareSpans): the trace ID
// and span ID as big-endian integers compare as their bytes do.
type sortKey struct {
	hi, lo uint64
	start  int64
	span   uint64
}

func (a sortKey) less(b sortKey) bool {
	if a.hi != b.hi {
		return a.hi < b.hi
	}
	if a.lo != b.lo {
		return a.lo < b.lo
	}
	if a.start != b.start {
		return a.start < b.start
	}
	return a.span < b.span
}

func (a sortKey) traceID() (id storage.TraceID) {
	binary.BigEndian.PutUint64(id[:8], a.hi)
	binary.BigEndian.PutUint64(id[8:], a.lo)
	return id
}

// planKey is a written row's trace and start.
type planKey struct {
	trace storage.TraceID
	start int64
}

// A plan entry is the input a row comes from, with dropRow set for a
// duplicate, which is read past and not written.
const (
	dropRow   = 1 << 15
	maxInputs = dropRow
)

// mergePlan is an output row group: where its rows come from, and what
// the index, bloom filter and trace table need of the rows it writes.
type mergePlan struct {
	from []int64  // each input's first row in the group
	ops  []uint16 // a plan entry a row read
	// Of each row written: its trace and start (from the sort columns),
	// then the columns copyColumn keeps.
	keys     []planKey
	duration []int64
	status   []int32
	root     []bool
	service  []int32 // into services
	services []string
	roots    map[int]string // the names of root spans, by row
	// rootName makes a root's name a string (traceTable.rootName); nil
	// when the block has no trace table, which keeps no names.
	rootName func([]byte) string
}

// reset empties p for a group of about n rows, sized for them once: a
// group ends at the first trace after n rows, a few rows past n.
func (p *mergePlan) reset(n int) {
	n += n / 16
	if cap(p.keys) < n {
		p.ops, p.keys = make([]uint16, 0, n), make([]planKey, 0, n)
		p.duration, p.status, p.root, p.service = make([]int64, 0, n), make([]int32, 0, n), make([]bool, 0, n), make([]int32, 0, n)
	}
	p.ops, p.keys = p.ops[:0], p.keys[:0]
	p.duration, p.status, p.root, p.service, p.services = p.duration[:0], p.status[:0], p.root[:0], p.service[:0], p.services[:0]
	clear(p.roots)
}

// keySorter reads the sort columns of every input and merges them.
type keySorter struct {
	ins  []mergeInput
	cols [][3]colCursor // trace_id, start_unix_nano, span_id of each input
	head []sortKey      // each input's next row
	live []bool         // whether it has one
	at   []int64        // each input's next row not yet planned
	last sortKey        // the last row planned
	any  bool
	// heap holds the inputs that have a next row, least head first (of
	// equal heads, the earlier input): a merge takes up to
	// compaction::level0_blocks inputs, sixty-four by default, where a
	// scan of every head for each row planned took 4% of a merge's CPU.
	heap []int
}

func newKeySorter(ins []mergeInput) (*keySorter, error) {
	k := &keySorter{ins: ins, cols: make([][3]colCursor, len(ins)), head: make([]sortKey, len(ins)),
		live: make([]bool, len(ins)), at: make([]int64, len(ins))}
	for i := range ins {
		for j, ci := range [3]int{spanKeyColumns.traceID, spanKeyColumns.start, spanKeyColumns.spanID} {
			k.cols[i][j].reset(&ins[i], ci, 0)
		}
		if err := k.read(i); err != nil {
			k.close()
			return nil, err
		}
		if k.live[i] {
			k.heap = append(k.heap, i)
		}
	}
	for j := len(k.heap)/2 - 1; j >= 0; j-- {
		k.down(j)
	}
	return k, nil
}

// before orders inputs by their heads, and equal heads by input, so that
// of duplicates the earliest input's row is kept.
func (k *keySorter) before(a, b int) bool {
	ha, hb := k.head[a], k.head[b]
	return ha.less(hb) || (ha == hb && a < b)
}

// down moves the input at heap position j down to its place.
func (k *keySorter) down(j int) {
	h := k.heap
	for {
		c := 2*j + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && k.before(h[c+1], h[c]) {
			c++
		}
		if !k.before(h[c], h[j]) {
			return
		}
		h[j], h[c] = h[c], h[j]
		j = c
	}
}

func (k *keySorter) close() {
	for i := range k.cols {
		for j := range k.cols[i] {
			k.cols[i][j].close()
		}
	}
}

// read reads input i's next row's key into head[i].
func (k *keySorter) read(i int) error {
	in := &k.ins[i]
	if len(in.ends) == 0 || k.at[i] >= in.ends[len(in.ends)-1] {
		k.live[i] = false
		return nil
	}
	var raw [3][]byte
	var start int64
	for j := range k.cols[i] {
		vals, _, err := k.cols[i][j].take(1)
		if err != nil {
			return err
		}
		if len(vals) != 1 {
			return fmt.Errorf("sort column %d: %d values in a row: %w", k.cols[i][j].ci, len(vals), parquet.ErrCorrupted)
		}
		if j == 1 {
			start = vals[0].Int64()
		} else {
			raw[j] = vals[0].ByteArray()
		}
	}
	if len(raw[0]) != 16 || len(raw[2]) != 8 {
		return fmt.Errorf("trace or span ID of %d and %d bytes: %w", len(raw[0]), len(raw[2]), parquet.ErrCorrupted)
	}
	k.head[i] = sortKey{hi: binary.BigEndian.Uint64(raw[0][:8]), lo: binary.BigEndian.Uint64(raw[0][8:]),
		start: start, span: binary.BigEndian.Uint64(raw[2])}
	k.live[i] = true
	return nil
}

// plan plans the next output row group into p: rows until rowsPerGroup
// are written and the next row begins another trace, or the inputs end.
// It plans no row when they have ended.
func (k *keySorter) plan(p *mergePlan, rowsPerGroup int) error {
	p.from = append(p.from[:0], k.at...)
	p.reset(rowsPerGroup)
	for {
		if len(k.heap) == 0 {
			return nil
		}
		i := k.heap[0]
		h := k.head[i]
		dup := k.any && h == k.last
		if !dup && len(p.keys) >= rowsPerGroup && (h.hi != k.last.hi || h.lo != k.last.lo) {
			return nil
		}
		op := uint16(i)
		if dup {
			op |= dropRow
		} else {
			p.keys = append(p.keys, planKey{h.traceID(), h.start})
		}
		p.ops = append(p.ops, op)
		k.last, k.any = h, true
		k.at[i]++
		if err := k.read(i); err != nil {
			return err
		}
		if !k.live[i] {
			last := len(k.heap) - 1
			k.heap[0] = k.heap[last]
			k.heap = k.heap[:last]
		}
		// A trace's rows come from one input one after another, so its
		// next head mostly stays on top: two comparisons.
		k.down(0)
	}
}

// copyColumn copies column ci of the rows p plans from ins into cw,
// through curs (one per input), keeping in p what the index needs of
// that column. Rows planned one after another from one input, a trace's
// mostly, are written as one run from the page that holds them.
func copyColumn(cw *parquet.ColumnWriter, ins []mergeInput, p *mergePlan, ci int, curs []colCursor) error {
	for i := range ins {
		curs[i].reset(&ins[i], ci, p.from[i])
	}
	defer func() {
		for i := range curs {
			curs[i].close()
		}
	}()
	sparse := slices.Contains(sparseLeaves, ci)
	var svcRaw []byte
	row := 0 // rows written
	for j := 0; j < len(p.ops); {
		op := p.ops[j]
		c := &curs[op&^dropRow]
		if op&dropRow != 0 {
			c.skip()
			j++
			continue
		}
		run := 1
		for j+run < len(p.ops) && p.ops[j+run] == op {
			run++
		}
		j += run
		for run > 0 {
			n := run
			if sparse {
				// End the page: a sparse column's pages hold sparsePageRows rows.
				n = min(n, sparsePageRows-row%sparsePageRows)
			}
			vals, m, err := c.take(n)
			if err != nil {
				return err
			}
			if spanLevels[ci][0] == 0 && len(vals) != m { // a value or a null a row
				return fmt.Errorf("column %d: %d values in %d rows: %w", ci, len(vals), m, parquet.ErrCorrupted)
			}
			p.keep(ci, row, vals, &svcRaw)
			if _, err := cw.WriteRowValues(vals); err != nil {
				return err
			}
			run -= m
			row += m
			if sparse && row%sparsePageRows == 0 {
				if err := cw.Flush(); err != nil {
					return err
				}
			}
		}
	}
	if row != len(p.keys) {
		return fmt.Errorf("column %d: %d rows copied of %d: %w", ci, row, len(p.keys), parquet.ErrCorrupted)
	}
	return nil
}

// keep keeps what the index needs of vals, the values of column ci of
// the rows written from row on: one each, for the columns it keeps.
func (p *mergePlan) keep(ci, row int, vals []parquet.Value, svcRaw *[]byte) {
	switch ci {
	case spanKeyColumns.duration:
		for _, v := range vals {
			p.duration = append(p.duration, v.Int64())
		}
	case spanKeyColumns.status:
		for _, v := range vals {
			p.status = append(p.status, v.Int32())
		}
	case spanKeyColumns.parent:
		for _, v := range vals {
			p.root = append(p.root, storage.SpanID(v.ByteArray()).IsEmpty())
		}
	case spanKeyColumns.name:
		if p.rootName == nil {
			break
		}
		for i, v := range vals {
			if p.root[row+i] {
				p.roots[row+i] = p.rootName(v.ByteArray())
			}
		}
	case spanKeyColumns.service:
		for _, v := range vals {
			// Rows of a trace mostly share a service: convert on change.
			if s := v.ByteArray(); len(p.services) == 0 || !bytes.Equal(s, *svcRaw) {
				p.services = append(p.services, string(s))
				*svcRaw = append((*svcRaw)[:0], s...)
			}
			p.service = append(p.service, int32(len(p.services)-1))
		}
	}
}

// mergeColumns merges files, the data files of blocks, a column at a
// time. It returns errNotDirect, having written nothing, if a block is
// not on local disk or has a page this package would not write; such
// blocks merge row by row.
func mergeColumns(ctx context.Context, st *objstore.Store, blocks []*Block, files []*parquet.File, opts WriteOptions) (*Meta, error) {
	if len(files) >= maxInputs {
		return nil, errNotDirect
	}
	ins := make([]mergeInput, len(files))
	for i, f := range files {
		if blocks[i].ra == nil || !objstore.IsLocal(blocks[i].ra) {
			return nil, errNotDirect
		}
		in := &ins[i]
		in.f, in.rgs, in.src = f, f.RowGroups(), pageSource{direct: true}
		var n int64
		for _, rg := range in.rgs {
			n += rg.NumRows()
			in.ends = append(in.ends, n)
		}
	}
	keys, err := newKeySorter(ins)
	if err != nil {
		return nil, err
	}
	defer keys.close()

	b, f, w, done, err := mergeTarget(blocks, opts)
	if err != nil {
		return nil, err
	}
	defer done()
	// The parent span ID says which rows are roots, whose names the trace
	// table keeps: copy it before the names.
	order := []int{spanKeyColumns.parent}
	for ci := range spanLevels {
		if ci != spanKeyColumns.parent {
			order = append(order, ci)
		}
	}
	curs := make([]colCursor, len(ins))
	p := mergePlan{roots: map[int]string{}}
	if b.table != nil {
		p.rootName = b.table.rootName
	}
	var prev storage.TraceID
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := keys.plan(&p, b.opts.RowGroupRows); err != nil {
			return nil, err
		}
		if len(p.keys) == 0 {
			break
		}
		cws := w.ColumnWriters()
		for _, ci := range order {
			if err := copyColumn(cws[ci], ins, &p, ci, curs); err != nil {
				return nil, err
			}
		}
		if err := w.Flush(); err != nil {
			return nil, fmt.Errorf("write block: %w", err)
		}
		for j, k := range p.keys {
			id := k.trace
			if b.meta.Rows == 0 || id != prev {
				b.addTrace(id)
			}
			end := k.start + p.duration[j]
			svc := p.services[p.service[j]]
			b.add(id, k.start, end, svc, nil, nil)
			if b.table != nil {
				b.table.span(id, k.start, end, p.root[j], p.roots[j], svc, p.status[j])
			}
			prev = id
		}
		b.endRowGroup()
	}
	if b.meta.Rows == 0 {
		return nil, nil
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("write block: %w", err)
	}
	return b.finish(ctx, st, f)
}
