package otlpguardtest

import "io"

// CountingReader counts the bytes read from R: how much of a body a
// handler read before it refused it.
type CountingReader struct {
	R io.Reader
	N int64
}

func (c *CountingReader) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N += int64(n)
	return n, err
}
