package block

import (
	"io"
	"os"
	"sync"
)

// PageFiles holds the temporary files that a block writer buffers each
// column's pages in until its row group is flushed (a parquet.BufferPool).
// Files are kept in a directory, not in memory, so that a merge of large
// blocks stays inside the memory budget.
//
// parquet-go's own file pool creates a named file for every column of
// every row group and removes it afterwards; in a profile of the
// all-in-one at 20k spans/s those open and unlink calls were 2% of the
// CPU. PageFiles unlinks a file as soon as it is created, truncates it
// when it is given back, and keeps up to maxIdlePageFiles of them for the
// next row group or block. It is safe for concurrent use.
type PageFiles struct {
	dir    string
	mu     sync.Mutex
	idle   []*os.File
	closed bool
}

// maxIdlePageFiles bounds the open files kept: about the columns of a
// span and a log block being written at once, twice over.
const maxIdlePageFiles = 256

// NewPageFiles returns a pool of page files in dir, which must exist.
func NewPageFiles(dir string) *PageFiles { return &PageFiles{dir: dir} }

// GetBuffer returns an empty file, positioned at its start.
func (p *PageFiles) GetBuffer() io.ReadWriteSeeker {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		f := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return f
	}
	p.mu.Unlock()
	f, err := os.CreateTemp(p.dir, "pages-*")
	if err != nil {
		return failedBuffer{err}
	}
	// Unlinked at once: the file lives as long as it is open, and a crash
	// leaves nothing behind. Where a system cannot remove an open file,
	// it is removed when closed (discard).
	_ = os.Remove(f.Name())
	return f
}

// PutBuffer takes a file back, emptied, or closes it past the bound.
func (p *PageFiles) PutBuffer(b io.ReadWriteSeeker) {
	f, ok := b.(*os.File)
	if !ok {
		return
	}
	if err := f.Truncate(0); err != nil {
		discard(f)
		return
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		discard(f)
		return
	}
	p.mu.Lock()
	if !p.closed && len(p.idle) < maxIdlePageFiles {
		p.idle = append(p.idle, f)
		f = nil
	}
	p.mu.Unlock()
	if f != nil {
		discard(f)
	}
}

// Close closes the idle files. Files still with writers are closed when
// they are given back.
func (p *PageFiles) Close() error {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, f := range idle {
		discard(f)
	}
	return nil
}

func discard(f *os.File) {
	_ = f.Close()
	_ = os.Remove(f.Name()) // unlinked already where the system allows it
}

// failedBuffer reports a page file that could not be created; the block
// write fails with it.
type failedBuffer struct{ err error }

func (b failedBuffer) Read([]byte) (int, error)       { return 0, b.err }
func (b failedBuffer) Write([]byte) (int, error)      { return 0, b.err }
func (b failedBuffer) Seek(int64, int) (int64, error) { return 0, b.err }
