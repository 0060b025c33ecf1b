package block

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding"
	"github.com/parquet-go/parquet-go/encoding/rle"
	"github.com/parquet-go/parquet-go/format"
	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// rowsSpans are the workload's spans and a few that fill the columns it
// leaves empty: links (with and without attributes, trace state and
// flags), events without attributes, span flags and trace state.
func rowsSpans(t *testing.T) ([]storage.Span, []storage.LogRecord) {
	spans, logs := genSpans(t, 300)
	for i := range 40 {
		s := spans[i*7]
		s.TraceState = fmt.Sprintf("k=v%d", i)
		s.Flags = uint32(i % 3)
		s.SpanID[0] ^= 0xff
		for j := range i % 4 {
			l := storage.Link{TraceID: storage.TraceID{byte(i), byte(j), 1}, SpanID: storage.SpanID{byte(j), 2}}
			if j%2 == 0 {
				l.TraceState, l.Flags = "a=b", 1
				l.Attrs = storage.Attrs{{Key: "link.n", Value: storage.Int(int64(j))}, {Key: "link.s", Value: storage.Str("x")}}
			}
			s.Links = append(s.Links, l)
		}
		if i%5 == 0 {
			s.Events = append(slices.Clone(s.Events), storage.Event{TimeUnixNano: s.StartUnixNano + 1, Name: "bare"})
		}
		spans = append(spans, s)
	}
	slices.SortFunc(spans, func(a, b storage.Span) int { return CompareSpans(&a, &b) })
	return spans, logs
}

// readRows reads rows as parquet-go's reader does, in every column of
// spans and logs written for the head (S2), to stay (zstd) and merged,
// whatever rows are asked for: all (which parquet-go reads), a sparse
// few, runs across pages. The direct path must be the one taken for these
// files.
func TestReadRowsAsParquetGo(t *testing.T) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, logs := rowsSpans(t)
	traces := codecBlocks(t, st, spans)
	var logBlocks []*Block
	for _, fast := range []bool{true, false} {
		m, err := WriteLogs(context.Background(), st, seqLogs(logs), WriteOptions{TempDir: t.TempDir(), Fast: fast, RowGroupRows: 1500})
		require.NoError(t, err)
		lb, err := Open(context.Background(), st, Logs, m.ID)
		require.NoError(t, err)
		t.Cleanup(func() { lb.Close() })
		logBlocks = append(logBlocks, lb)
	}

	for _, b := range traces {
		checkReadRows(t, b, fromSpanRow)
	}
	for _, b := range logBlocks {
		checkReadRows(t, b, fromLogRow)
	}
}

func checkReadRows[R, T any](t *testing.T, b *Block, conv func(*R, *resourceCache) T) {
	t.Helper()
	f := b.pinned[dataFile]
	require.True(t, sameLeaves(f.Schema(), parquet.SchemaOf(new(R))))
	src := b.pageSource(dataFile, nil)
	require.True(t, src.direct)
	for i, rg := range f.RowGroups() {
		n := int(rg.NumRows())
		all := make([]bool, n)
		for r := range all {
			all[r] = true
		}
		var want []T
		_, err := readRuns(rg, all, func(r *R) bool {
			want = append(want, conv(r, newResourceCache()))
			return true
		})
		require.NoError(t, err)
		require.Len(t, want, n)

		// Row by row, directly: no fallback to parquet-go.
		rr := newRowReader(f, rg, i, parquet.SchemaOf(new(R)), src)
		for r := range n {
			var row R
			require.NoError(t, rr.read(int64(r), &row), "%s row group %d row %d", b.Meta.ID, i, r)
			require.Equal(t, want[r], conv(&row, newResourceCache()), "%s row group %d row %d", b.Meta.ID, i, r)
		}
		rr.close()

		sparse := make([]bool, n)
		for r := 0; r < n; r += 13 { // at most an eighth: read directly
			sparse[r] = true
		}
		runs := make([]bool, n)
		for r := range runs {
			runs[r] = r%1000 >= 990 || r%1000 < 30 // around each 1,024-row page
		}
		for name, keep := range map[string][]bool{"all": all, "sparse": sparse, "runs": runs} {
			var got []T
			_, err := readRows(f, rg, i, keep, src, func(r *R) bool {
				got = append(got, conv(r, newResourceCache()))
				return true
			})
			require.NoError(t, err)
			var exp []T
			for r, k := range keep {
				if k {
					exp = append(exp, want[r])
				}
			}
			require.Equal(t, exp, got, "%s row group %d, %s", b.Meta.ID, i, name)
		}
	}
}

// A damaged page of a nested column is an error, not a row made of
// whatever the bytes say; so is a damaged value of a flat one.
func TestReadRowsRefuseDamagedPages(t *testing.T) {
	dir := t.TempDir()
	st, err := objstore.OpenFilesystem(dir)
	require.NoError(t, err)
	spans, _ := rowsSpans(t)
	b := writeTestBlock(t, st, spans, 1000)
	data, err := os.ReadFile(filepath.Join(dir, "traces", b.Meta.ID, DataFile))
	require.NoError(t, err)
	schema := parquet.SchemaOf(new(spanRow))
	for _, col := range []string{"attrs.key", "events.attrs.value", "http_route", "duration_nano"} {
		at, size := firstPage(t, b, col)
		for _, damage := range []int64{at + size - 1, at + size/2} {
			bad := bytes.Clone(data)
			bad[damage] ^= 0x5a
			bf, err := parquet.OpenFile(bytes.NewReader(bad), int64(len(bad)), parquet.SkipBloomFilters(true))
			require.NoError(t, err)
			rr := newRowReader(bf, bf.RowGroups()[0], 0, schema, pageSource{direct: true})
			var row spanRow
			err = rr.read(0, &row)
			rr.close()
			require.ErrorIs(t, err, parquet.ErrCorrupted, "%s damaged at %d of %d", col, damage-at, size)
		}
	}
}

// firstPage returns where the first page of column col (its path, dotted)
// of b's first row group is in its data file, and its size.
func firstPage(t *testing.T, b *Block, col string) (at, size int64) {
	t.Helper()
	ci := -1
	for c, path := range spanSchema.Columns() {
		if strings.Join(path, ".") == col {
			ci = c
		}
	}
	require.GreaterOrEqual(t, ci, 0, col)
	oi, err := b.pinned[dataFile].RowGroups()[0].ColumnChunks()[ci].OffsetIndex()
	require.NoError(t, err)
	return oi.Offset(0), oi.CompressedPageSize(0)
}

// nthZero finds the m-th zero as counting one by one does, across and
// inside its blocks of 512.
func TestNthZero(t *testing.T) {
	b := make([]byte, 3000)
	for i := range b {
		if i%3 != 0 || i > 1200 && i < 2100 {
			b[i] = 1
		}
	}
	for from := int64(0); from < int64(len(b)); from += 97 {
		seen := int64(0)
		for i := from; i < int64(len(b)); i++ {
			if b[i] == 0 {
				seen++
				require.Equal(t, i, nthZero(b, from, seen), "from %d, zero %d", from, seen)
			}
		}
	}
}

// levelPageSeed is a valid page of a nested column: levels of rows
// [0 1 1] [0] [0 1] of which the entries at definition level 2 hold the
// values.
func levelPageSeed(t testing.TB, kind byte) (rep, def []byte, data []byte, present int) {
	reps, defs := []byte{0, 1, 1, 0, 0, 1}, []byte{2, 2, 1, 0, 2, 2}
	rep, err := (&rle.Encoding{BitWidth: 1}).EncodeLevels(nil, reps)
	require.NoError(t, err)
	def, err = (&rle.Encoding{BitWidth: 2}).EncodeLevels(nil, defs)
	require.NoError(t, err)
	typ, enc := fuzzPageType(kind)
	var vals encoding.Values
	switch typ.Kind() {
	case parquet.Int64:
		vals = encoding.Int64Values([]int64{5, -3, 1 << 40, 7})
	case parquet.Int32:
		vals = encoding.Int32Values([]int32{0, 1, 2, 3})
	default:
		if kind%4 == 2 { // dictionary indexes
			data, err = parquet.RLEDictionary.EncodeInt32(nil, []int32{0, 2, 1, 2})
			require.NoError(t, err)
			return rep, def, data, 4
		}
		vals = encoding.ByteArrayValues([]byte("abcdefgh"), []uint32{0, 1, 3, 6, 8})
	}
	data, err = typ.Encode(nil, vals, enc)
	require.NoError(t, err)
	return rep, def, data, 4
}

// fuzzPageType is the column type and encoding a fuzzed page holds.
func fuzzPageType(kind byte) (parquet.Type, encoding.Encoding) {
	switch kind % 4 {
	case 0:
		return parquet.ByteArrayType, &parquet.Plain
	case 1:
		return parquet.Int64Type, &parquet.DeltaBinaryPacked
	case 2:
		return parquet.ByteArrayType, &parquet.RLEDictionary
	default:
		return parquet.Int32Type, &parquet.Plain
	}
}

// A page's levels and values, however crafted, decode to rows or to an
// error, never to a panic or an allocation its counts alone ask for.
func FuzzLevelPage(f *testing.F) {
	for kind := range byte(4) {
		rep, def, data, present := levelPageSeed(f, kind)
		levels := append(slices.Clone(rep), def...)
		f.Add(kind, byte(1), byte(2), int32(6), int32(6-present), int32(3), uint16(len(rep)), levels, data)
	}
	f.Fuzz(func(t *testing.T, kind, maxRep, maxDef byte, nv, nulls, rows int32, repLen uint16, levels, data []byte) {
		if nv < 0 || nulls < 0 || nulls > nv || rows < 0 {
			return // refused before decode (load)
		}
		maxRep, maxDef = maxRep%3, maxDef%4
		typ, enc := fuzzPageType(kind)
		split := int(repLen) % (len(levels) + 1)
		if maxRep == 0 {
			split = 0
		}
		if maxDef == 0 {
			levels = levels[:split]
		}
		h := pageHeader{typ: format.DataPageV2, v2: true, numValues: nv, numNulls: nulls, numRows: rows,
			encoding: enc.Encoding(), repLen: int32(split), defLen: int32(len(levels) - split)}
		cp := &chunkPages{typ: typ, direct: true, sc: new(pageScratch)}
		if kind%4 == 2 {
			cp.dict = typ.NewDictionary(0, 3, encoding.ByteArrayValues([]byte("xyzzy"), []uint32{0, 1, 3, 5}))
		}
		c := &levelCursor{cp: cp, rep: maxRep, def: maxDef, rows: int64(rows)}
		if err := c.decode(&h, levels, data, 0, int64(rows)); err != nil {
			return
		}
		c.page = 0
		var want [][]parquet.Value
		for k := range int64(rows) {
			vs, err := c.appendRow(nil, k)
			if err != nil {
				return
			}
			want = append(want, vs)
		}
		checkEntries(t, c, want)
	})
}

// checkEntries checks that a merge reads c's page, by entries, as the
// rows want that appendRow reads.
func checkEntries(t *testing.T, c *levelCursor, want [][]parquet.Value) {
	vals, starts, err := c.entries(nil, nil)
	require.NoError(t, err, "a page whose rows read reads whole")
	for k, w := range want {
		got := vals[k : k+1]
		if len(starts) > 0 {
			got = vals[starts[k]:starts[k+1]]
		}
		require.Len(t, got, len(w), "row %d", k)
		for i := range w {
			require.Equal(t, w[i].RepetitionLevel(), got[i].RepetitionLevel(), "row %d", k)
			require.Equal(t, w[i].DefinitionLevel(), got[i].DefinitionLevel(), "row %d", k)
			require.True(t, parquet.Equal(w[i], got[i]), "row %d: %v, %v", k, w[i], got[i])
		}
	}
}

// The fuzzer's seeds decode to their rows: three, of 3, 1 and 2 entries,
// the values where the definition level is full, read a row at a time
// (appendRow) and a page at a time (entries) alike.
func TestLevelPageSeeds(t *testing.T) {
	for kind := range byte(4) {
		rep, def, data, present := levelPageSeed(t, kind)
		typ, enc := fuzzPageType(kind)
		h := pageHeader{typ: format.DataPageV2, v2: true, numValues: 6, numNulls: int32(6 - present), numRows: 3,
			encoding: enc.Encoding(), repLen: int32(len(rep)), defLen: int32(len(def))}
		cp := &chunkPages{typ: typ, direct: true, sc: new(pageScratch)}
		if kind == 2 {
			cp.dict = typ.NewDictionary(0, 3, encoding.ByteArrayValues([]byte("xyzzy"), []uint32{0, 1, 3, 5}))
		}
		c := &levelCursor{cp: cp, rep: 1, def: 2, rows: 3}
		require.NoError(t, c.decode(&h, append(slices.Clone(rep), def...), data, 0, 3), "kind %d", kind)
		var got []string
		var rows [][]parquet.Value
		for k, want := range []int{3, 1, 2} {
			vs, err := c.appendRow(nil, int64(k))
			require.NoError(t, err)
			require.Len(t, vs, want)
			rows = append(rows, vs)
			for _, v := range vs {
				got = append(got, fmt.Sprintf("%d/%d:%s", v.RepetitionLevel(), v.DefinitionLevel(), v))
			}
		}
		require.Len(t, got, 6)
		require.Equal(t, []string{"0/2", "1/2", "1/1", "0/0", "0/2", "1/2"}, levelsOnly(got), "kind %d", kind)
		if kind == 2 {
			require.Equal(t, []string{"0/2:x", "1/2:zy", "1/1:<null>", "0/0:<null>", "0/2:yz", "1/2:zy"}, got)
		}
		checkEntries(t, c, rows)
	}
}

func levelsOnly(s []string) []string {
	out := make([]string, len(s))
	for i, e := range s {
		out[i], _, _ = strings.Cut(e, ":")
	}
	return out
}
