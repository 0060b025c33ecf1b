package block

import (
	"encoding/json"
	"fmt"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// Signal says what a block holds.
type Signal string

// Signals.
const (
	Traces Signal = "traces"
	Logs   Signal = "logs"
)

// Object names inside a block's directory. meta.json is written last: a
// block without it is incomplete and is ignored (and cleaned up).
// compacted.json marks a block of a shared bucket that a compaction or
// retention replaced: readers stop using it at once, and the compactor
// deletes it once it is older than the delete delay, so that a reader
// still working from an earlier listing finds it there (MarkCompacted).
const (
	MetaFile      = "meta.json"
	DataFile      = "data.parquet"
	BloomFile     = "bloom"
	IndexFile     = "index.json"
	CompactedFile = "compacted.json"
	// TraceTableFile is a trace block's table of whole traces (format 2
	// and later).
	TraceTableFile = "traces.parquet"
)

// Meta describes a block. It is the commit marker of the block.
type Meta struct {
	Format  int    `json:"format"`
	ID      string `json:"id"`
	Signal  Signal `json:"signal"`
	MinTime int64  `json:"min_time_unix_nano"`
	MaxTime int64  `json:"max_time_unix_nano"`
	// Rows is the number of spans or log records.
	Rows int64 `json:"rows"`
	// Traces is the number of distinct trace IDs (spans), or of log records
	// with a trace ID (logs).
	Traces    int64 `json:"traces"`
	DataBytes int64 `json:"data_bytes"`
	// TraceTableBytes is the size of traces.parquet (format 2+ trace
	// blocks); checked on open.
	TraceTableBytes int64 `json:"trace_table_bytes,omitempty"`
	RowGroups       int   `json:"row_groups"`
	// Level is 0 for a block cut from the head, n+1 for a compaction of
	// level-n blocks.
	Level int `json:"compaction_level"`
	// Writer is the ingester whose head this block's data came from, "" for
	// a store that is the only writer of its bucket; a merge of blocks of
	// several writers has none.
	Writer string `json:"writer,omitempty"`
	// WALSegment is the last WAL segment of Writer whose records are all in
	// this block or in earlier blocks; replay skips segments up to it.
	WALSegment int `json:"wal_segment,omitempty"`
	// WALSegments is WALSegment per writer, for a merge of blocks of
	// several writers (WALClaims).
	WALSegments map[string]int `json:"wal_segments,omitempty"`
	// Sources lists the blocks a compaction replaced.
	Sources []string `json:"sources,omitempty"`
	// Level0 lists every level-0 block whose data a merge holds, through
	// all the merges between: a querier of a shared bucket asks whether
	// an ingester's recent block is covered by what it reads
	// (docs/scaling.md).
	Level0                 []string `json:"level0,omitempty"`
	Services               []string `json:"services"`
	SpanNames              []Op     `json:"operations,omitempty"`
	AttributeNames         []string `json:"attribute_names"`
	ResourceAttributeNames []string `json:"resource_attribute_names"`
	// NamesTruncated: SpanNames, AttributeNames or ResourceAttributeNames
	// reached their bound (10,000 each) and left names out; the block
	// holds more than they list.
	NamesTruncated bool `json:"names_truncated,omitempty"`
}

// WALClaim is the last WAL segment of writer that the block holds all
// of, or 0.
func (m *Meta) WALClaim(writer string) int {
	if m.Writer == writer && len(m.WALSegments) == 0 {
		return m.WALSegment
	}
	return m.WALSegments[writer]
}

// MergeWALClaims sets opts' claims to those of a merge of blocks: the last
// segment of each writer, one writer as Writer and WALSegment, several in
// WALSegments.
func MergeWALClaims(opts *WriteOptions, sources []*Meta) {
	claims := map[string]int{}
	for _, m := range sources {
		if len(m.WALSegments) == 0 {
			claims[m.Writer] = max(claims[m.Writer], m.WALSegment)
		}
		for w, seg := range m.WALSegments {
			claims[w] = max(claims[w], seg)
		}
	}
	opts.Writer, opts.WALSegment, opts.WALSegments = "", 0, nil
	if len(claims) == 1 {
		for w, seg := range claims {
			opts.Writer, opts.WALSegment = w, seg
		}
		return
	}
	opts.WALSegments = claims
}

// MergeLevel0 returns the level-0 blocks whose data a merge of sources
// holds.
func MergeLevel0(sources []*Meta) []string {
	var out []string
	for _, m := range sources {
		if m.Level == 0 {
			out = append(out, m.ID)
		}
		out = append(out, m.Level0...)
	}
	return out
}

// Compacted is compacted.json: when a block was replaced, and by which
// block ("" when retention removed it).
type Compacted struct {
	At   int64  `json:"compacted_unix_nano"`
	Into string `json:"into,omitempty"`
}

// Op is a (service, span name, kind) triple, as the operations API needs.
type Op struct {
	Service string           `json:"service"`
	Name    string           `json:"name"`
	Kind    storage.SpanKind `json:"kind"`
}

// IndexEntry describes one row group.
type IndexEntry struct {
	FirstRow    int64           `json:"first_row"`
	Rows        int64           `json:"rows"`
	MinTraceID  storage.TraceID `json:"-"`
	MaxTraceID  storage.TraceID `json:"-"`
	MinTraceHex string          `json:"min_trace_id"`
	MaxTraceHex string          `json:"max_trace_id"`
	MinTime     int64           `json:"min_time_unix_nano"`
	MaxTime     int64           `json:"max_time_unix_nano"`
	Services    []string        `json:"services"`
}

// Index lists a block's row groups in file order.
type Index struct {
	RowGroups []IndexEntry `json:"row_groups"`
}

func (ix *Index) marshal() ([]byte, error) {
	for i := range ix.RowGroups {
		e := &ix.RowGroups[i]
		e.MinTraceHex, e.MaxTraceHex = e.MinTraceID.String(), e.MaxTraceID.String()
	}
	return json.Marshal(ix)
}

func unmarshalIndex(b []byte) (*Index, error) {
	var ix Index
	if err := json.Unmarshal(b, &ix); err != nil {
		return nil, fmt.Errorf("decode index: %w", err)
	}
	for i := range ix.RowGroups {
		e := &ix.RowGroups[i]
		var err error
		if e.MinTraceID, err = storage.ParseTraceID(e.MinTraceHex); err != nil {
			return nil, fmt.Errorf("decode index: %w", err)
		}
		if e.MaxTraceID, err = storage.ParseTraceID(e.MaxTraceHex); err != nil {
			return nil, fmt.Errorf("decode index: %w", err)
		}
	}
	return &ix, nil
}

// UnmarshalMeta decodes and checks meta.json.
func UnmarshalMeta(b []byte) (*Meta, error) {
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode meta: %w", err)
	}
	if m.Format < MinFormatVersion || m.Format > FormatVersion {
		return nil, fmt.Errorf("block %s: format version %d, this build reads %d to %d", m.ID, m.Format, MinFormatVersion, FormatVersion)
	}
	if m.Signal != Traces && m.Signal != Logs {
		return nil, fmt.Errorf("block %s: unknown signal %q", m.ID, m.Signal)
	}
	return &m, nil
}
