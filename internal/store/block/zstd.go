package block

import (
	"errors"
	"sync"

	"github.com/klauspost/compress/s2"
	kzstd "github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/compress/snappy"
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
// merged again soon (WriteOptions.Fast). Every span is written three or
// four times on its way to a block that stays, and only that last write
// needs the smaller size. zstd's fastest level made blocks of the
// workload 2.8% larger than its default and their writing 12% faster;
// Snappy, as S2 writes it (s2Codec), makes them 16% larger than zstd's
// fastest (55.4 instead of 47.8 bytes a span) and their writing a fifth
// faster again, and merges of such blocks read them 4-8% faster
// (BenchmarkWriteSpans, BenchmarkMergeSpans). Readers decode all alike:
// each column chunk names its codec.
var (
	codec                    = &pageCodec{Codec: zstd.Codec{Level: zstd.DefaultLevel}, level: kzstd.SpeedDefault}
	fastCodec compress.Codec = &s2Codec{}
)

// s2Codec writes Snappy's block format with S2's fastest Snappy-compatible
// encoder, into the buffer it is given when that is large enough.
// parquet-go's own Snappy codec (the core columns', by their struct tags)
// encodes with the slower "better" matcher and allocates a buffer for
// every page, which made it slower than zstd's fastest level for whole
// blocks. Decoding is Snappy's.
type s2Codec struct{ snappy.Codec }

func (*s2Codec) Encode(dst, src []byte) ([]byte, error) {
	if s2.MaxEncodedLen(len(src)) < 0 {
		// EncodeSnappy would panic; pages are far smaller than this.
		return nil, errors.New("snappy: page too large to encode")
	}
	// EncodeSnappy writes into dst when its capacity allows.
	return s2.EncodeSnappy(dst, src), nil
}

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
