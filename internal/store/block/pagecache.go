package block

import (
	"container/list"
	"sync"
	"sync/atomic"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding"
)

// PageCache keeps pages of blocks' files decoded: the values a page read by
// the offset index decoded to (chunkPages), and the dictionaries of their
// column chunks. Blocks are immutable, so an entry never goes stale; it
// is found by the file's identity in the process (Block.fileKeys, not the
// reader, which the FileCache may drop and reopen) and the page's offset.
//
// A search's cost is mostly decompressing and decoding pages, not reading
// them (the page cache of the kernel holds their bytes): a limit-20 search
// over the side-by-side load decoded 1.4 MB from 0.5 MB read, and reads
// the same trace_id and start_unix_nano pages twice, to find its
// candidates and then to assemble them; a dashboard's panel asks the same
// question of the same newest blocks on every refresh. This is
// VictoriaMetrics' cache of unpacked blocks for Parquet pages.
//
// The cache is bounded in bytes (what its entries' values take) and drops
// the least recently used entries past its limit. Entries are read-only
// once put: a page made from one shares its values. Its methods are safe
// for concurrent use, and a nil cache keeps nothing.
type PageCache struct {
	mu           sync.Mutex
	limit, used  int64
	lru          list.List // of *cachedPage, the most recently used first
	pages        map[pageKey]*list.Element
	hits, misses atomic.Int64
}

// pageKey is a page's place: a file's identity (fileKey) and the page's
// offset in it.
type pageKey struct {
	file uint64
	off  int64
}

// fileKeys hands out file identities for PageCache keys.
var fileKeys atomic.Uint64

// newFileKey returns a file identity no other file of the process has.
func newFileKey() uint64 { return fileKeys.Add(1) }

// cachedPage is a decoded page, or a chunk's dictionary (dict alone,
// found by the dictionary page's offset). A dictionary-encoded page is
// its indexes and the dictionary they index; any other its values as
// encoding.Values holds them.
type cachedPage struct {
	key  pageKey
	n    int
	vals []byte
	offs []uint32
	idx  []int32
	dict parquet.Dictionary
	size int64
}

// cachedPageOverhead is what an entry costs beyond its values: the entry,
// its list element and its map slot.
const cachedPageOverhead = 160

// NewPageCache returns a cache of up to limit bytes; limit <= 0 returns
// nil, a cache that keeps nothing.
func NewPageCache(limit int64) *PageCache {
	if limit <= 0 {
		return nil
	}
	return &PageCache{limit: limit, pages: map[pageKey]*list.Element{}}
}

// Used returns the bytes the cache's entries take (0 for a nil cache).
func (c *PageCache) Used() int64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// Limit returns the cache's bound (0 for a nil cache).
func (c *PageCache) Limit() int64 {
	if c == nil {
		return 0
	}
	return c.limit
}

// Hits and Misses count lookups that found an entry and that did not.
func (c *PageCache) Hits() int64 {
	if c == nil {
		return 0
	}
	return c.hits.Load()
}

func (c *PageCache) Misses() int64 {
	if c == nil {
		return 0
	}
	return c.misses.Load()
}

func (c *PageCache) get(k pageKey) *cachedPage {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	e := c.pages[k]
	if e != nil {
		c.lru.MoveToFront(e)
	}
	c.mu.Unlock()
	if e == nil {
		c.misses.Add(1)
		return nil
	}
	c.hits.Add(1)
	return e.Value.(*cachedPage)
}

// put adds p, which the caller no longer changes, dropping the least
// recently used entries past the limit. An entry larger than the whole
// cache is not kept.
func (c *PageCache) put(p *cachedPage) {
	if c == nil {
		return
	}
	if p.size == 0 {
		p.size = int64(len(p.vals)) + 4*int64(len(p.offs)) + 4*int64(len(p.idx)) + cachedPageOverhead
	}
	if p.size > c.limit {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pages[p.key]; ok {
		return // read twice at once: the first one stays
	}
	c.pages[p.key] = c.lru.PushFront(p)
	c.used += p.size
	for c.used > c.limit {
		e := c.lru.Back()
		old := e.Value.(*cachedPage)
		c.lru.Remove(e)
		delete(c.pages, old.key)
		c.used -= old.size
	}
}

// page makes the cached page a page of column ci of type typ again. The
// page shares the entry's values.
func (p *cachedPage) page(typ parquet.Type, ci int) parquet.Page {
	if p.dict != nil {
		return p.dict.Type().NewPage(ci, p.n, encoding.Int32Values(p.idx))
	}
	return typ.NewPage(ci, p.n, typ.NewValues(p.vals, p.offs))
}

// dictSize estimates what a dictionary of n values decoded from data
// holds.
func dictSize(n int, data []byte) int64 { return int64(len(data)) + 4*int64(n) }
