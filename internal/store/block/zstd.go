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
	level      kzstd.EncoderLevel
	encoders   sync.Pool
}

// codec compresses the blocks that stay; fastCodec those that will be
// merged again soon (WriteOptions.Fast). zstd's fastest level made blocks
// of the workload 2.8% larger (45.9 instead of 44.7 bytes a span) and
// their writing 12% faster (BenchmarkWriteSpans); every span is written
// four or five times on its way to a block that stays, and only that
// last write needs the smaller size. Readers decode both alike.
var (
	codec     = &pageCodec{Codec: zstd.Codec{Level: zstd.DefaultLevel}, level: kzstd.SpeedDefault}
	fastCodec = &pageCodec{Codec: zstd.Codec{Level: zstd.SpeedFastest}, level: kzstd.SpeedFastest}
)

func (c *pageCodec) Encode(dst, src []byte) ([]byte, error) {
	e, _ := c.encoders.Get().(*kzstd.Encoder)
	if e == nil {
		var err error
		e, err = kzstd.NewWriter(nil,
			kzstd.WithEncoderConcurrency(1),
			kzstd.WithEncoderLevel(c.level),
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
