package block

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// A page file comes back empty and at its start, is reused, leaves no
// name in its directory, and is closed once the pool is.
func TestPageFilesAreReusedEmpty(t *testing.T) {
	dir := t.TempDir()
	p := NewPageFiles(dir)
	a := p.GetBuffer()
	_, err := a.Write([]byte("pages of a row group"))
	require.NoError(t, err)
	_, err = a.Seek(0, io.SeekStart)
	require.NoError(t, err)
	got, err := io.ReadAll(a)
	require.NoError(t, err)
	require.Equal(t, "pages of a row group", string(got))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "page files are unlinked while open")

	p.PutBuffer(a)
	b := p.GetBuffer()
	require.Same(t, a.(*pageFile).f, b.(*pageFile).f, "reused")
	got, err = io.ReadAll(b)
	require.NoError(t, err)
	require.Empty(t, got, "emptied")
	off, err := b.Seek(0, io.SeekCurrent)
	require.NoError(t, err)
	require.Zero(t, off)

	c := p.GetBuffer()
	require.NotSame(t, b.(*pageFile).f, c.(*pageFile).f)
	p.PutBuffer(b)
	require.NoError(t, p.Close())
	_, err = b.(*pageFile).f.Write([]byte("x"))
	require.Error(t, err, "idle files are closed with the pool")
	p.PutBuffer(c) // after Close: closed, not kept
	_, err = c.(*pageFile).f.Write([]byte("x"))
	require.Error(t, err)
}

// Writes are gathered and written out before the file is read, sought or
// copied, in order, whatever their sizes; a write that fails reaches the
// call that writes the buffer out.
func TestPageFileBuffersWrites(t *testing.T) {
	p := NewPageFiles(t.TempDir())
	defer p.Close()
	pf := p.GetBuffer().(*pageFile)
	var want []byte
	for i, n := range []int{12, 0, 3, 900, pageFileBuffer - 1, 5, 2 * pageFileBuffer, 7} {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(i*31 + j)
		}
		k, err := pf.Write(b)
		require.NoError(t, err)
		require.Equal(t, n, k)
		want = append(want, b...)
	}
	st, err := pf.f.Stat()
	require.NoError(t, err)
	require.Less(t, st.Size(), int64(len(want)), "the last writes are still buffered")

	var out bytes.Buffer
	_, err = pf.Seek(0, io.SeekStart)
	require.NoError(t, err)
	_, err = io.Copy(&out, pf)
	require.NoError(t, err)
	require.Equal(t, want, out.Bytes())

	// Copied into a file, as parquet-go copies a row group's pages.
	_, err = pf.Write([]byte("tail"))
	require.NoError(t, err)
	_, err = pf.Seek(0, io.SeekStart)
	require.NoError(t, err)
	dst, err := os.Create(filepath.Join(t.TempDir(), "block"))
	require.NoError(t, err)
	defer dst.Close()
	_, err = io.Copy(dst, pf)
	require.NoError(t, err)
	got, err := os.ReadFile(dst.Name())
	require.NoError(t, err)
	require.Equal(t, append(want, "tail"...), got)

	pf.f.Close() // a disk that fails the next write
	_, err = pf.Write([]byte("lost"))
	require.NoError(t, err, "buffered")
	_, err = pf.Seek(0, io.SeekStart)
	require.Error(t, err, "the failed write is reported")
}

// A directory that cannot hold files fails the write that asked, with the
// reason.
func TestPageFilesReportCreateErrors(t *testing.T) {
	p := NewPageFiles(t.TempDir() + "/missing")
	_, err := p.GetBuffer().Write([]byte("x"))
	require.ErrorIs(t, err, os.ErrNotExist)
}
