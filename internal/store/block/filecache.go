package block

import (
	"container/list"
	"sync"

	"github.com/parquet-go/parquet-go"
)

// FileCache bounds the memory the Parquet readers of open blocks hold: a
// data file's footer (about 0.3 bytes a span, decoded) and the page index
// its readers have asked for (about 1.2 bytes a span when all of it was).
// Both grow with the data a block holds, so kept for every open block they
// grew with everything the store kept: 1.7 MiB per million spans, 20 GiB
// for a week at 20k spans/s. A block opened with a cache keeps only its
// meta, index and bloom filter; its readers are opened when a query or a
// merge asks for them, and the least recently used are dropped past the
// limit.
//
// Dropping a reader never disturbs a query that is using it: the query
// holds the *parquet.File it was given, which stays valid (the block's
// file handle stays open until the block is closed) and is collected after
// it. A query may so hold one reader past the limit per block it reads at
// once. Its methods are safe for concurrent use.
type FileCache struct {
	mu    sync.Mutex
	limit int64
	used  int64
	lru   list.List // of *cachedFile, the most recently used first
}

// cachedFile is one reader in a FileCache. slot is the owning block's
// pointer to it, cleared when it is dropped; both are guarded by the
// cache's mutex.
type cachedFile struct {
	f    *parquet.File
	size int64
	slot **cachedFile
	elem *list.Element
}

// NewFileCache returns a cache that holds readers up to limit bytes (as
// fileCharge counts them). It always holds the one most recently opened,
// whatever its size.
func NewFileCache(limit int64) *FileCache { return &FileCache{limit: limit} }

// Used returns the bytes the cache charges for the readers it holds (0
// for a nil cache).
func (c *FileCache) Used() int64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// Limit returns the cache's bound (0 for a nil cache).
func (c *FileCache) Limit() int64 {
	if c == nil {
		return 0
	}
	return c.limit
}

// get returns the reader in slot, or nil.
func (c *FileCache) get(slot **cachedFile) *parquet.File {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := *slot
	if e == nil {
		return nil
	}
	c.lru.MoveToFront(e.elem)
	return e.f
}

// put caches f, charged size bytes, in slot and returns the reader the
// slot holds: f, or the one another caller put there first.
func (c *FileCache) put(slot **cachedFile, f *parquet.File, size int64) *parquet.File {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := *slot; e != nil {
		c.lru.MoveToFront(e.elem)
		return e.f
	}
	e := &cachedFile{f: f, size: size, slot: slot}
	e.elem = c.lru.PushFront(e)
	*slot = e
	c.used += size
	for c.used > c.limit && c.lru.Len() > 1 {
		c.removeLocked(c.lru.Back().Value.(*cachedFile))
	}
	return f
}

// drop removes the reader in slot, if any.
func (c *FileCache) drop(slot **cachedFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := *slot; e != nil {
		c.removeLocked(e)
	}
}

func (c *FileCache) removeLocked(e *cachedFile) {
	c.lru.Remove(e.elem)
	*e.slot = nil
	c.used -= e.size
}

// fileCharge is what a reader of f is counted as in a FileCache: its
// footer and all of its page index, decoded, as if every column chunk's
// had been read. The footer's encoded size is not kept by parquet-go, so
// it is estimated from the column chunks it describes (TestFileCharge
// holds both estimates to the heap an opened file really takes).
func fileCharge(f *parquet.File) int64 {
	md := f.Metadata()
	var index int64
	chunks := 0
	for i := range md.RowGroups {
		for j := range md.RowGroups[i].Columns {
			cc := &md.RowGroups[i].Columns[j]
			index += int64(cc.ColumnIndexLength) + int64(cc.OffsetIndexLength)
			chunks++
		}
	}
	return int64(chunks)*footerBytesPerChunk + index*pageIndexExpansion
}

const (
	// footerBytesPerChunk is the heap a decoded footer takes per column
	// chunk: its metadata, statistics and path, and parquet-go's column
	// reader state.
	footerBytesPerChunk = 1 << 10
	// pageIndexExpansion is the heap a decoded page index takes per byte
	// of its encoding.
	pageIndexExpansion = 4
)
