package block

import (
	"sync"

	kzstd "github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/compress/zstd"
)

// pageCodec is the zstd codec parquet-go writes with (same format, level
// and frames, so any reader decodes it), except that its encoders use a
// 1 MiB window instead of the default level's 8 MiB. Pages are cut at
// 256 KiB of values, so the larger window finds nothing more to match,
// but each pooled encoder would keep its history allocated: tens of MiB
// while a head flush and a compaction write at once.
type pageCodec struct {
	zstd.Codec // decoding, name and format id
	encoders   sync.Pool
}

// codec compresses every block written.
var codec = &pageCodec{Codec: zstd.Codec{Level: zstd.DefaultLevel}}

func (c *pageCodec) Encode(dst, src []byte) ([]byte, error) {
	e, _ := c.encoders.Get().(*kzstd.Encoder)
	if e == nil {
		var err error
		e, err = kzstd.NewWriter(nil,
			kzstd.WithEncoderConcurrency(1),
			kzstd.WithEncoderLevel(zstd.DefaultLevel),
			kzstd.WithZeroFrames(true),
			kzstd.WithEncoderCRC(false),
			kzstd.WithWindowSize(1<<20),
		)
		if err != nil {
			return nil, err
		}
	}
	defer c.encoders.Put(e)
	return e.EncodeAll(src, dst[:0]), nil
}
