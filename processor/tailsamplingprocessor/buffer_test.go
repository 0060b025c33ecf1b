package tailsamplingprocessor

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sightlinehq/sightline/internal/store/wal"
)

// addTrace adds a one-span trace numbered i in a request of its own.
func addTrace(t *testing.T, b *buffer, i int, now time.Time, attrBytes int) pcommon.TraceID {
	t.Helper()
	var id pcommon.TraceID
	binary.BigEndian.PutUint64(id[8:], uint64(i+1))
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "svc")
	sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetTraceID(id)
	sp.SetSpanID(pcommon.SpanID{1})
	sp.Attributes().PutStr("pad", string(make([]byte, attrBytes)))
	var m ptrace.ProtoMarshaler
	skel, chunks, err := encodeRequest(td, now.UnixNano(), &m, nil)
	require.NoError(t, err)
	_, err = b.add(now, td, skel, chunks, never)
	require.NoError(t, err)
	return id
}

func never(pcommon.TraceID) bool { return false }

func testBuffer(t *testing.T, opts bufferOptions) *buffer {
	t.Helper()
	opts.dir = t.TempDir()
	if opts.wait == 0 {
		opts.wait = time.Hour
	}
	if opts.segmentSize == 0 {
		opts.segmentSize = 1 << 20
	}
	opts.sync = wal.SyncInterval
	opts.syncInterval = time.Second
	b, err := openBuffer(opts)
	require.NoError(t, err)
	t.Cleanup(func() { b.close() })
	return b
}

// Past num_traces waiting, the oldest are handed over at once instead of
// at their deadline, oldest first.
func TestOverNumTracesDecidesOldestEarly(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	b := testBuffer(t, bufferOptions{numTraces: 10})
	for i := range 19 {
		addTrace(t, b, i, now.Add(time.Duration(i)*time.Millisecond), 10)
	}
	td, ids, err := b.release(now.Add(time.Second), 100)
	require.NoError(t, err)
	require.Len(t, ids, 9)
	for i, id := range ids {
		require.Equal(t, uint64(i+1), binary.BigEndian.Uint64(id[8:]), "oldest first")
	}
	require.Equal(t, 9, td.SpanCount())
	st := b.snapshot()
	require.Equal(t, int64(9), st.earlyTraces)
	require.Equal(t, 10, st.pending)
	require.Equal(t, 9, st.released)

	// With decisions stuck (nothing released), summaries stop at twice
	// num_traces: past it requests are refused retryably.
	for i := 19; b.snapshot().pending < 20; i++ {
		addTrace(t, b, i, now, 10)
	}
	_, err = b.add(now, ptrace.NewTraces(), nil, []chunk{{}}, never)
	require.ErrorIs(t, err, ErrBufferFull)
	require.Equal(t, int64(1), b.snapshot().refusedTraces)
}

// Over buffer::max_size, the traces in the oldest file are decided at
// once; once decided the file goes; over 1.5 times the size, requests are
// refused retryably until it shrinks.
func TestOverMaxSizeDecidesTheOldestFile(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	const seg = 8 << 10
	b := testBuffer(t, bufferOptions{numTraces: 1 << 20, segmentSize: seg, maxSize: 4 * seg})
	i := 0
	for b.snapshot().bytes <= 4*seg {
		addTrace(t, b, i, now, 1000)
		i++
	}
	_, ids, err := b.release(now, 1000)
	require.NoError(t, err)
	require.NotEmpty(t, ids)
	require.Less(t, len(ids), i, "only the oldest file's traces")
	require.Equal(t, int64(len(ids)), b.snapshot().earlyDisk)
	files := b.snapshot().files
	b.released(ids)
	for _, id := range ids {
		b.decidedNotSampled(id)
	}
	st := b.snapshot()
	require.Less(t, st.files, files, "the oldest file is deleted once its traces are decided")
	require.LessOrEqual(t, st.bytes, int64(4*seg))

	for b.snapshot().bytes <= 6*seg {
		addTrace(t, b, i, now, 1000)
		i++
	}
	td := ptrace.NewTraces()
	_, err = b.add(now, td, nil, []chunk{{}}, never)
	require.ErrorIs(t, err, ErrBufferFull)
	require.Equal(t, int64(1), b.snapshot().refusedDisk)
}

// A file is deleted only when nothing in it, nor in an older file, waits.
func TestFilesGoOldestFirst(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	const seg = 4 << 10
	b := testBuffer(t, bufferOptions{numTraces: 1 << 20, segmentSize: seg})
	var ids []pcommon.TraceID
	for i := range 30 {
		ids = append(ids, addTrace(t, b, i, now, 1000))
	}
	files := b.snapshot().files
	require.Greater(t, files, 4)
	_, out, err := b.release(now.Add(2*time.Hour), 1000)
	require.NoError(t, err)
	require.Len(t, out, 30)
	b.released(out)
	// Decide all but the first: every file stays, the first holds a chunk
	// that waits.
	for _, id := range ids[1:] {
		b.decidedNotSampled(id)
	}
	require.Equal(t, files, b.snapshot().files)
	b.decidedNotSampled(ids[0])
	require.Equal(t, 1, b.snapshot().files, "all but the file being written")
}

// A trace read back alone, far into a large request, gets its resource
// from the request's skeleton even when the two are read in separate
// runs of the file.
func TestReadBackFarFromTheSkeleton(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	b := testBuffer(t, bufferOptions{numTraces: 1 << 20})
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "far")
	// A skeleton larger than the chunk, so that the chunk's read could
	// land in the skeleton's buffer.
	rs.Resource().Attributes().PutStr("big", string(make([]byte, 100<<10)))
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	const n = 100
	for i := range n {
		sp := spans.AppendEmpty()
		var id pcommon.TraceID
		binary.BigEndian.PutUint64(id[8:], uint64(i+1))
		sp.SetTraceID(id)
		sp.SetSpanID(pcommon.SpanID{byte(i + 1)})
		sp.Attributes().PutStr("pad", string(make([]byte, 2000)))
	}
	var m ptrace.ProtoMarshaler
	skel, chunks, err := encodeRequest(td, now.UnixNano(), &m, nil)
	require.NoError(t, err)
	_, err = b.add(now, td, skel, chunks, never)
	require.NoError(t, err)

	later := now.Add(2 * time.Hour)
	first, ids, err := b.release(later, n-1)
	require.NoError(t, err)
	require.Len(t, ids, n-1)
	require.Equal(t, n-1, first.SpanCount())
	last, ids, err := b.release(later, 1)
	require.NoError(t, err)
	require.Len(t, ids, 1)
	require.Equal(t, uint64(n), binary.BigEndian.Uint64(ids[0][8:]))
	require.Equal(t, 1, last.SpanCount())
	svc, ok := last.ResourceSpans().At(0).Resource().Attributes().Get("service.name")
	require.True(t, ok)
	require.Equal(t, "far", svc.Str())
}
