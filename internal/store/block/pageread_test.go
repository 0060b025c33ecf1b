package block

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/objstore"
	"github.com/sightlinehq/sightline/internal/store/storage"
)

// pageValuesOf returns a page's values, copied.
func pageValuesOf(t *testing.T, pg parquet.Page) []parquet.Value {
	t.Helper()
	var out []parquet.Value
	buf := make([]parquet.Value, 256)
	r := pg.Values()
	for {
		n, err := r.ReadValues(buf)
		for _, v := range buf[:n] {
			out = append(out, v.Clone())
		}
		if err != nil {
			break
		}
	}
	return out
}

// Every page of every column chunk, read by the offset index, holds what
// FilePages reads there: in the data files and trace tables of a block
// written for the head (S2), one written to stay (zstd) and a merge of
// them, read in both directions, without a page cache and with one the
// blocks and files share (read twice: decoded, then from the cache). The
// columns this package writes flat are read without FilePages; the
// nested ones (levels) through it.
func TestChunkPagesReadWhatFilePagesRead(t *testing.T) {
	t.Run("uncached", func(t *testing.T) { testChunkPages(t, nil, 1) })
	cache := NewPageCache(64 << 20)
	t.Run("cached", func(t *testing.T) { testChunkPages(t, cache, 2) })
	require.Positive(t, cache.Hits())
	require.Positive(t, cache.Misses())
	require.Positive(t, cache.Used())
}

// codecBlocks writes two thirds of spans as a block for the head (S2) and
// as one to stay (zstd), in row groups of 1,500, and merges the two in row
// groups of 2,000: the three ways a block's pages come to be written.
func codecBlocks(t *testing.T, st *objstore.Store, spans []storage.Span) []*Block {
	ctx := context.Background()
	var blocks []*Block
	for _, fast := range []bool{true, false} {
		m, err := WriteSpans(ctx, st, seqSpans(spans[:len(spans)*2/3]), WriteOptions{TempDir: t.TempDir(), Fast: fast, RowGroupRows: 1500})
		require.NoError(t, err)
		b, err := Open(ctx, st, Traces, m.ID)
		require.NoError(t, err)
		t.Cleanup(func() { b.Close() })
		require.True(t, b.pageSource(dataFile, nil).direct)
		blocks = append(blocks, b)
	}
	m, err := MergeSpans(ctx, st, blocks, WriteOptions{TempDir: t.TempDir(), Level: 1, RowGroupRows: 2000})
	require.NoError(t, err)
	merged, err := Open(ctx, st, Traces, m.ID)
	require.NoError(t, err)
	t.Cleanup(func() { merged.Close() })
	return append(blocks, merged)
}

func testChunkPages(t *testing.T, cache *PageCache, passes int) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 400)
	blocks := codecBlocks(t, st, spans)

	viaFilePages := map[string]bool{}
	pages := 0
	for range passes {
		for _, b := range blocks {
			for fi, f := range []*parquet.File{b.pinned[dataFile], b.pinned[traceTableFile]} {
				require.NotNil(t, f)
				for i, rg := range f.RowGroups() {
					for ci, cc := range rg.ColumnChunks() {
						name := strings.Join(f.Metadata().RowGroups[i].Columns[ci].MetaData.PathInSchema, ".")
						if fi == 1 {
							name = "table." + name
						}
						oi, err := cc.OffsetIndex()
						require.NoError(t, err, name)
						var want [][]parquet.Value
						fp := cc.Pages()
						for {
							pg, err := fp.ReadPage()
							if err != nil {
								break
							}
							want = append(want, pageValuesOf(t, pg))
						}
						require.NoError(t, fp.Close())
						require.Equal(t, len(want), oi.NumPages(), name)
						c := openChunkPages(f, cc, oi, i, ci, pageSource{direct: true, cache: cache, file: b.fileKeys[fi], stats: &storage.Stats{}})
						order := make([]int, 0, 2*len(want))
						for p := len(want) - 1; p >= 0; p-- {
							order = append(order, p)
						}
						for p := range want {
							order = append(order, p)
						}
						for _, p := range order {
							pg, err := c.page(p)
							require.NoError(t, err, "%s page %d", name, p)
							got := pageValuesOf(t, pg)
							require.Equal(t, len(want[p]), len(got), "%s page %d", name, p)
							for k := range got {
								require.True(t, parquet.Equal(want[p][k], got[k]), "%s page %d value %d: %v, want %v", name, p, k, got[k], want[p][k])
							}
							pages++
						}
						if c.fp != nil {
							viaFilePages[name] = true
						}
						c.close()
					}
				}
			}
		}
	}
	require.Greater(t, pages, 500)
	for _, col := range coreColumns {
		require.False(t, viaFilePages[col], "core column %s was read through FilePages", col)
	}
	for _, col := range traceColumnNames {
		require.False(t, viaFilePages["table."+col], "trace table column %s was read through FilePages", col)
	}
	require.True(t, viaFilePages["attrs.key"], "a nested column is read through FilePages")
}

// A page whose bytes were damaged on disk is an error that says so, not
// values or a crash: its checksum, read directly, or its header.
func TestChunkPagesRefuseDamagedPages(t *testing.T) {
	dir := t.TempDir()
	st, err := objstore.OpenFilesystem(dir)
	require.NoError(t, err)
	spans, _ := genSpans(t, 200)
	b := writeTestBlock(t, st, spans, 1000)
	data, err := os.ReadFile(filepath.Join(dir, "traces", b.Meta.ID, DataFile))
	require.NoError(t, err)
	f := b.pinned[dataFile]
	for _, col := range []string{"span_id", "trace_id", "name"} {
		ci := b.cols[col]
		cc := f.RowGroups()[0].ColumnChunks()[ci]
		oi, err := cc.OffsetIndex()
		require.NoError(t, err)
		at, size := oi.Offset(0), oi.CompressedPageSize(0)
		for _, damage := range []int64{at + size - 1, at + 1} { // the values, the header
			bad := bytes.Clone(data)
			bad[damage] ^= 0x5a
			bf, err := parquet.OpenFile(bytes.NewReader(bad), int64(len(bad)), parquet.SkipBloomFilters(true))
			require.NoError(t, err)
			bcc := bf.RowGroups()[0].ColumnChunks()[ci]
			boi, err := bcc.OffsetIndex()
			require.NoError(t, err)
			c := openChunkPages(bf, bcc, boi, 0, ci, pageSource{direct: true})
			_, err = c.page(0)
			c.close()
			require.Error(t, err, "%s damaged at %d", col, damage-at)
			if damage == at+size-1 {
				require.ErrorIs(t, err, parquet.ErrCorrupted, col)
			}
		}
	}
}

// pageHeaderSeeds are encoded page headers of the kinds a block holds and
// a few it does not.
func pageHeaderSeeds(t testing.TB) [][]byte {
	var out [][]byte
	add := func(h format.PageHeader) {
		b, err := thrift.Marshal(new(thrift.CompactProtocol), &h)
		require.NoError(t, err)
		out = append(out, b)
	}
	add(format.PageHeader{Type: format.DataPageV2, UncompressedPageSize: 8192, CompressedPageSize: 4100, CRC: -12345,
		DataPageHeaderV2: thrift.New(format.DataPageHeaderV2{NumValues: 1024, NumRows: 1024, Encoding: format.DeltaBinaryPacked, IsCompressed: thrift.New(false)})})
	add(format.PageHeader{Type: format.DataPageV2, UncompressedPageSize: 100, CompressedPageSize: 100,
		DataPageHeaderV2: thrift.New(format.DataPageHeaderV2{NumValues: 30, NumNulls: 2, NumRows: 9, Encoding: format.RLEDictionary, DefinitionLevelsByteLength: 4, RepetitionLevelsByteLength: 3,
			Statistics: format.Statistics{MinValue: []byte("a"), MaxValue: []byte("z"), NullCount: 2}})})
	add(format.PageHeader{Type: format.DictionaryPage, UncompressedPageSize: 512, CompressedPageSize: 300, CRC: 77,
		DictionaryPageHeader: thrift.New(format.DictionaryPageHeader{NumValues: 40, Encoding: format.Plain, IsSorted: true})})
	add(format.PageHeader{Type: format.DataPage, UncompressedPageSize: 64, CompressedPageSize: 64,
		DataPageHeader: thrift.New(format.DataPageHeader{NumValues: 8, Encoding: format.Plain, DefinitionLevelEncoding: format.RLE, RepetitionLevelEncoding: format.RLE})})
	return out
}

// The header decoder reads what parquet-go's reads, fields it skips
// included.
func TestParsePageHeader(t *testing.T) {
	for _, b := range pageHeaderSeeds(t) {
		checkPageHeader(t, b)
	}
}

// checkPageHeader parses b with both decoders: where parquet-go's reads a
// header, parsePageHeader reads the same one of the same length or fails;
// it never panics.
func checkPageHeader(t *testing.T, b []byte) {
	got, n, err := parsePageHeader(b)
	if err != nil {
		require.ErrorIs(t, err, parquet.ErrCorrupted)
		return
	}
	require.LessOrEqual(t, n, len(b))
	var want format.PageHeader
	r := bytes.NewReader(b)
	if thrift.NewDecoder(new(thrift.CompactProtocol).NewReader(r)).Decode(&want) != nil {
		return
	}
	require.Equal(t, len(b)-r.Len(), n, "header length")
	require.Equal(t, want.Type, got.typ)
	require.Equal(t, want.UncompressedPageSize, got.uncompressedSize)
	require.Equal(t, want.CompressedPageSize, got.compressedSize)
	require.Equal(t, want.CRC, got.crc)
	require.Equal(t, want.DataPageHeaderV2.Valid, got.v2)
	if v2 := want.DataPageHeaderV2.V; got.v2 && !got.dict {
		require.Equal(t, v2.NumValues, got.numValues)
		require.Equal(t, v2.NumNulls, got.numNulls)
		require.Equal(t, v2.NumRows, got.numRows)
		require.Equal(t, v2.Encoding, got.encoding)
		require.Equal(t, v2.DefinitionLevelsByteLength, got.defLen)
		require.Equal(t, v2.RepetitionLevelsByteLength, got.repLen)
		require.Equal(t, !v2.IsCompressed.Valid || v2.IsCompressed.V, got.isCompressed)
	}
	require.Equal(t, want.DictionaryPageHeader.Valid, got.dict)
	if d := want.DictionaryPageHeader.V; got.dict && !got.v2 {
		require.Equal(t, d.NumValues, got.numValues)
		require.Equal(t, d.Encoding, got.encoding)
	}
}

func FuzzPageHeader(f *testing.F) {
	for _, b := range pageHeaderSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkPageHeader(t, b)
	})
}

// The cache holds what its limit allows, dropping the least recently used
// entries first, and keeps nothing larger than itself.
func TestPageCacheIsBounded(t *testing.T) {
	c := NewPageCache(10 * (1000 + cachedPageOverhead))
	put := func(off int64) { c.put(&cachedPage{key: pageKey{file: 1, off: off}, n: 250, vals: make([]byte, 1000)}) }
	for off := range int64(10) {
		put(off)
	}
	require.Equal(t, c.Limit(), c.Used())
	require.NotNil(t, c.get(pageKey{file: 1, off: 0})) // now the most recent
	put(10)
	require.Nil(t, c.get(pageKey{file: 1, off: 1}), "the least recently used is dropped")
	require.NotNil(t, c.get(pageKey{file: 1, off: 0}))
	require.NotNil(t, c.get(pageKey{file: 1, off: 10}))
	require.Nil(t, c.get(pageKey{file: 2, off: 10}), "another file's page at that offset")
	c.put(&cachedPage{key: pageKey{file: 1, off: 99}, vals: make([]byte, 20000)})
	require.Nil(t, c.get(pageKey{file: 1, off: 99}))
	require.LessOrEqual(t, c.Used(), c.Limit())
	for off := range int64(1000) {
		put(100 + off)
	}
	require.LessOrEqual(t, c.Used(), c.Limit())
	require.Equal(t, int64(3), c.Hits())
	require.Equal(t, int64(3), c.Misses())

	// A query keeps at most a quarter of the cache; a read outside one
	// keeps nothing.
	src := pageSource{cache: NewPageCache(4000), stats: &storage.Stats{}}
	require.True(t, src.keep(600))
	require.True(t, src.keep(400))
	require.False(t, src.keep(1))
	require.False(t, (&pageSource{cache: src.cache}).keep(1))

	var none *PageCache
	none.put(&cachedPage{})
	require.Nil(t, none.get(pageKey{}))
	require.Nil(t, NewPageCache(0))
}

// Readers that share a cache, at once, each read what FilePages reads,
// while the cache, a fraction of what they read, drops pages under them.
func TestPageCacheSharedByConcurrentReaders(t *testing.T) {
	st, err := objstore.OpenFilesystem(t.TempDir())
	require.NoError(t, err)
	spans, _ := genSpans(t, 300)
	b := writeTestBlock(t, st, spans, 1000)
	f := b.pinned[dataFile]
	type chunk struct {
		i, ci int
		cc    parquet.ColumnChunk
		oi    parquet.OffsetIndex
		want  [][]parquet.Value
	}
	var chunks []chunk
	for _, col := range coreColumns {
		ci := b.cols[col]
		for i, rg := range f.RowGroups() {
			cc := rg.ColumnChunks()[ci]
			oi, err := cc.OffsetIndex()
			require.NoError(t, err)
			c := chunk{i: i, ci: ci, cc: cc, oi: oi}
			fp := cc.Pages()
			for {
				pg, err := fp.ReadPage()
				if err != nil {
					break
				}
				c.want = append(c.want, pageValuesOf(t, pg))
			}
			require.NoError(t, fp.Close())
			chunks = append(chunks, c)
		}
	}
	cache := NewPageCache(256 << 10)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 3 {
				src := pageSource{direct: true, cache: cache, file: b.fileKeys[dataFile], stats: &storage.Stats{}}
				for k := range chunks {
					c := &chunks[(k+g*7+round)%len(chunks)]
					cp := openChunkPages(f, c.cc, c.oi, c.i, c.ci, src)
					for p, want := range c.want {
						pg, err := cp.page(p)
						if err != nil {
							errs <- err
							cp.close()
							return
						}
						got := pageValuesOf(t, pg)
						if len(got) != len(want) {
							errs <- fmt.Errorf("column %d page %d: %d values, want %d", c.ci, p, len(got), len(want))
							cp.close()
							return
						}
						for v := range got {
							if !parquet.Equal(got[v], want[v]) {
								errs <- fmt.Errorf("column %d page %d value %d: %v, want %v", c.ci, p, v, got[v], want[v])
								cp.close()
								return
							}
						}
					}
					cp.close()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Positive(t, cache.Hits())
	require.LessOrEqual(t, cache.Used(), cache.Limit())
}

func offsetIndexSeeds(t testing.TB) [][]byte {
	var out [][]byte
	add := func(oi format.OffsetIndex) {
		b, err := thrift.Marshal(new(thrift.CompactProtocol), &oi)
		require.NoError(t, err)
		out = append(out, b)
	}
	add(format.OffsetIndex{})
	add(format.OffsetIndex{PageLocations: []format.PageLocation{{Offset: 4, CompressedPageSize: 8100, FirstRowIndex: 0}}})
	var many []format.PageLocation
	for i := range 40 { // past 14: the list's long header
		many = append(many, format.PageLocation{Offset: 4 + int64(i)*9000, CompressedPageSize: 8990 - int32(i), FirstRowIndex: int64(i) * 2048})
	}
	add(format.OffsetIndex{PageLocations: many, UnencodedByteArrayDataBytes: []int64{1 << 40, 7, 0}})
	add(format.OffsetIndex{PageLocations: []format.PageLocation{{Offset: 1 << 40, CompressedPageSize: -1, FirstRowIndex: 1<<62 + 3}}})
	return out
}

// The offset index decoder reads what parquet-go's reads: the same page
// locations, or an error; it never panics.
func TestParseOffsetIndex(t *testing.T) {
	for _, b := range offsetIndexSeeds(t) {
		checkOffsetIndex(t, b)
	}
}

func checkOffsetIndex(t *testing.T, b []byte) {
	got, err := parseOffsetIndex(b, nil)
	if err != nil {
		require.ErrorIs(t, err, parquet.ErrCorrupted)
		require.Empty(t, got)
		return
	}
	var want format.OffsetIndex
	if thrift.Unmarshal(new(thrift.CompactProtocol), b, &want) != nil {
		return
	}
	if len(want.PageLocations) == 0 {
		require.Empty(t, got)
		return
	}
	require.Equal(t, []format.PageLocation(want.PageLocations), got)
}

func FuzzOffsetIndex(f *testing.F) {
	for _, b := range offsetIndexSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkOffsetIndex(t, b)
	})
}
