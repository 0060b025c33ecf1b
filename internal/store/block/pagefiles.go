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
//
// parquet-go writes a page as four writes (its header, repetition and
// definition levels, values), three of them a few bytes or none, and a
// write(2) costs the same few microseconds whatever its size: a flush of
// 160k spans made 7,900 of them, 6,300 under 1 KiB. A page file gathers
// them in a buffer of pageFileBuffer bytes (pageFile).
type PageFiles struct {
	dir    string
	mu     sync.Mutex
	idle   []*pageFile
	closed bool
}

// pageFileBuffer is the write buffer of a page file in use. A block being
// written has one page file per column (about 60 with its trace table),
// and a flush and two merges may write at once: about 3 MiB in all.
const pageFileBuffer = 16 << 10

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
	return &pageFile{f: f}
}

// PutBuffer takes a file back, emptied, or closes it past the bound.
func (p *PageFiles) PutBuffer(b io.ReadWriteSeeker) {
	pf, ok := b.(*pageFile)
	if !ok {
		return
	}
	pf.buf = nil // what it held is discarded; an idle file keeps no buffer
	if err := pf.f.Truncate(0); err != nil {
		discard(pf.f)
		return
	}
	if _, err := pf.f.Seek(0, io.SeekStart); err != nil {
		discard(pf.f)
		return
	}
	p.mu.Lock()
	if !p.closed && len(p.idle) < maxIdlePageFiles {
		p.idle = append(p.idle, pf)
		pf = nil
	}
	p.mu.Unlock()
	if pf != nil {
		discard(pf.f)
	}
}

// Close closes the idle files. Files still with writers are closed when
// they are given back.
func (p *PageFiles) Close() error {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, pf := range idle {
		discard(pf.f)
	}
	return nil
}

// pageFile is a page file whose small writes are gathered in buf and
// written once it would overflow, and before the file is read, sought or
// copied out. A write error surfaces from the call that writes the buffer
// out; parquet-go seeks to the start of every page file and copies it out
// when its row group ends, checking both, so a failed write fails the
// block.
type pageFile struct {
	f   *os.File
	buf []byte // allocated at the first write; dropped when given back
}

func (pf *pageFile) Write(b []byte) (int, error) {
	if len(pf.buf)+len(b) > pageFileBuffer {
		if err := pf.flush(); err != nil {
			return 0, err
		}
		if len(b) >= pageFileBuffer {
			return pf.f.Write(b)
		}
	}
	if pf.buf == nil {
		pf.buf = make([]byte, 0, pageFileBuffer)
	}
	pf.buf = append(pf.buf, b...)
	return len(b), nil
}

func (pf *pageFile) flush() error {
	if len(pf.buf) == 0 {
		return nil
	}
	_, err := pf.f.Write(pf.buf) // a short write returns an error
	pf.buf = pf.buf[:0]
	return err
}

func (pf *pageFile) Read(b []byte) (int, error) {
	if err := pf.flush(); err != nil {
		return 0, err
	}
	return pf.f.Read(b)
}

func (pf *pageFile) Seek(offset int64, whence int) (int64, error) {
	if err := pf.flush(); err != nil {
		return 0, err
	}
	return pf.f.Seek(offset, whence)
}

// WriteTo copies the file out from its offset, through the file's own
// WriteTo: into a file, that is copy_file_range(2), which copies no bytes
// through this process.
func (pf *pageFile) WriteTo(w io.Writer) (int64, error) {
	if err := pf.flush(); err != nil {
		return 0, err
	}
	return pf.f.WriteTo(w)
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
