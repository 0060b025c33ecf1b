package block

import (
	"io"
	"os"
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
	require.Same(t, a.(*os.File), b.(*os.File), "reused")
	got, err = io.ReadAll(b)
	require.NoError(t, err)
	require.Empty(t, got, "emptied")
	off, err := b.Seek(0, io.SeekCurrent)
	require.NoError(t, err)
	require.Zero(t, off)

	c := p.GetBuffer()
	require.NotSame(t, b.(*os.File), c.(*os.File))
	p.PutBuffer(b)
	require.NoError(t, p.Close())
	_, err = b.Write([]byte("x"))
	require.Error(t, err, "idle files are closed with the pool")
	p.PutBuffer(c) // after Close: closed, not kept
	_, err = c.Write([]byte("x"))
	require.Error(t, err)
}

// A directory that cannot hold files fails the write that asked, with the
// reason.
func TestPageFilesReportCreateErrors(t *testing.T) {
	p := NewPageFiles(t.TempDir() + "/missing")
	_, err := p.GetBuffer().Write([]byte("x"))
	require.ErrorIs(t, err, os.ErrNotExist)
}
