package store

import "unsafe"

// chunked is an append-only sequence kept in fixed-size chunks. A head
// grows by a request at a time to a hundred thousand records and more; in
// one slice, every doubling copied all of it and left the old array to the
// collector, so the head allocated twice what it held and up to half its
// capacity sat unused. Chunks are allocated once and
// never copied, and a pointer to an element stays valid for the chunked's
// life.
//
// It is not safe for concurrent use; the head's lock guards it.
type chunked[T any] struct {
	chunks [][]T
	n      int
}

// chunkLen elements per chunk: 1024 span entries are 40 KiB, large enough
// that the chunk headers cost nothing and small enough that a nearly
// empty head holds little.
const chunkLen = 1024

func (c *chunked[T]) len() int { return c.n }

// at returns element i, which must be below len().
func (c *chunked[T]) at(i int) *T { return &c.chunks[i/chunkLen][i%chunkLen] }

// push appends a copy of *v and returns its index and the heap bytes it
// allocated: a chunk's worth when it starts one, else nothing.
func (c *chunked[T]) push(v *T) (int32, int64) {
	var added int64
	if c.n%chunkLen == 0 {
		c.chunks = append(c.chunks, make([]T, 0, chunkLen))
		added = chunkLen * int64(unsafe.Sizeof(*v))
	}
	last := &c.chunks[len(c.chunks)-1]
	*last = append(*last, *v)
	c.n++
	return int32(c.n - 1), added
}
