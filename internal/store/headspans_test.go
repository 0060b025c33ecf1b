package store

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/store/block"
	"github.com/sightlinehq/sightline/internal/store/storage"
	"github.com/sightlinehq/sightline/internal/workload"
)

// gen draws strings both short (interned) and past maxInternedLen
// (inline), attributes of every value type, and IDs from a small set so
// that traces repeat.
type gen struct{ r *rand.Rand }

func (g gen) str() string {
	n := g.r.IntN(8)
	if g.r.IntN(10) == 0 {
		n = maxInternedLen + g.r.IntN(64)
	}
	var b strings.Builder
	for range n {
		b.WriteByte(byte(g.r.IntN(256)))
	}
	return b.String()
}

func (g gen) value() storage.Value {
	v := storage.Value{Type: storage.ValueType(g.r.IntN(int(storage.TypeMap) + 1))}
	switch v.Type {
	case storage.TypeInt:
		v.Int = g.r.Int64() - math.MaxInt64/2
	case storage.TypeBool:
		v.Int = int64(g.r.IntN(2))
	case storage.TypeDouble:
		v.Double = g.r.NormFloat64() * 1e9
	case storage.TypeEmpty:
	default:
		v.Str = g.str()
	}
	return v
}

func (g gen) attrs() storage.Attrs {
	var a storage.Attrs
	for range g.r.IntN(5) {
		a = append(a, storage.Attr{Key: g.str(), Value: g.value()})
	}
	return a
}

func (g gen) id(b []byte) {
	for i := range b {
		b[i] = byte(g.r.IntN(4))
	}
}

var (
	testResources = []*storage.Resource{nil, {SchemaURL: "s", Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str("a")}}}, {Attrs: storage.Attrs{{Key: "k", Value: storage.Int(3)}}}}
	testScopes    = []*storage.InstrumentationScope{nil, {Name: "lib", Version: "1", Attrs: storage.Attrs{{Key: "x", Value: storage.Double(1.5)}}}}
)

// span draws a span that uses every field.
func (g gen) span() storage.Span {
	r := g.r
	s := storage.Span{
		TraceState: g.str(), Flags: r.Uint32(), Name: g.str(),
		Kind: storage.SpanKind(r.IntN(6)), StatusCode: storage.StatusCode(r.IntN(3)), StatusMessage: g.str(),
		StartUnixNano: r.Int64N(1 << 62), Attrs: g.attrs(),
		Resource: testResources[r.IntN(len(testResources))], Scope: testScopes[r.IntN(len(testScopes))],
	}
	s.EndUnixNano = s.StartUnixNano + r.Int64N(1<<40) - 1<<20 // ends before start too
	g.id(s.TraceID[:])
	g.id(s.SpanID[:])
	g.id(s.ParentSpanID[:])
	for range r.IntN(3) {
		s.Events = append(s.Events, storage.Event{TimeUnixNano: r.Int64N(1 << 62), Name: g.str(), Attrs: g.attrs()})
	}
	for range r.IntN(3) {
		l := storage.Link{TraceState: g.str(), Flags: r.Uint32(), Attrs: g.attrs()}
		g.id(l.TraceID[:])
		g.id(l.SpanID[:])
		s.Links = append(s.Links, l)
	}
	return s
}

// checkHeadSpans pushes spans drawn from seed and decodes every one back,
// after all were pushed, so that later pushes are seen not to disturb
// earlier records or the strings decoded from them.
func checkHeadSpans(t *testing.T, seed uint64, n int) {
	g := gen{rand.New(rand.NewPCG(seed, 1))}
	h := newHeadSpans(newArena())
	var want []storage.Span
	var early []storage.Span
	for i := range n {
		s := g.span()
		_, added := h.push(&s)
		require.GreaterOrEqual(t, added, int64(0))
		want = append(want, s)
		if i == 0 {
			var d storage.Span
			require.NoError(t, h.decode(0, &d))
			early = append(early, d)
		}
	}
	require.Equal(t, n, h.len())
	var got, core storage.Span
	for i := range want {
		require.NoError(t, h.decode(i, &got))
		requireSameSpan(t, &want[i], &got)
		// The core decode reads the same record's head and nothing past.
		require.NoError(t, h.decodeCore(i, &core))
		w := got
		w.Flags, w.TraceState, w.StatusMessage, w.Scope, w.Attrs, w.Events, w.Links = 0, "", "", nil, nil, nil, nil
		require.Equal(t, w, core)
	}
	if n > 0 {
		requireSameSpan(t, &want[0], &early[0])
	}
}

// requireSameRecord compares spans or log records by value; a nil
// resource or scope comes back as the empty one, as blocks return it, and
// empty attributes as nil. parts returns a record's resource, scope and
// attributes.
func requireSameRecord[T any](t *testing.T, want, got *T, parts func(*T) (**storage.Resource, **storage.InstrumentationScope, *storage.Attrs)) {
	t.Helper()
	w, g := *want, *got
	var res [2]storage.Resource
	var sc [2]storage.InstrumentationScope
	for i, v := range []*T{&w, &g} {
		r, s, a := parts(v)
		if *r != nil {
			res[i] = **r
		}
		if *s != nil {
			sc[i] = **s
		}
		*r, *s = nil, nil
		if len(*a) == 0 {
			*a = nil
		}
	}
	require.Equal(t, res[0], res[1])
	require.Equal(t, sc[0], sc[1])
	require.Equal(t, w, g)
}

func requireSameSpan(t *testing.T, want, got *storage.Span) {
	t.Helper()
	requireSameRecord(t, want, got, func(s *storage.Span) (**storage.Resource, **storage.InstrumentationScope, *storage.Attrs) {
		return &s.Resource, &s.Scope, &s.Attrs
	})
}

func TestHeadSpansRoundTrip(t *testing.T) {
	for seed := range uint64(20) {
		checkHeadSpans(t, seed, 500)
	}
}

// Past maxInterned strings, keys and names are stored inline and still
// come back.
func TestHeadSpansPastTheInternLimit(t *testing.T) {
	h := newHeadSpans(newArena())
	var want []storage.Span
	for i := range maxInterned + 100 {
		s := storage.Span{Name: "op", StartUnixNano: int64(i), Attrs: storage.Attrs{{Key: "k" + strconv.Itoa(i), Value: storage.Int(int64(i))}}}
		s.TraceID[0] = byte(i)
		h.push(&s)
		want = append(want, s)
	}
	require.Equal(t, maxInterned, len(h.a.strs))
	var got storage.Span
	for _, i := range []int{0, maxInterned - 1, maxInterned + 50, maxInterned + 99} {
		require.NoError(t, h.decode(i, &got))
		requireSameSpan(t, &want[i], &got)
	}
}

// Strings that share a slot of the arena's cache of recent strings take
// turns in it; each keeps its own index.
func TestArenaInternSharedSlot(t *testing.T) {
	a := newArena()
	first := "k0"
	var other string
	for i := 1; other == ""; i++ {
		if s := "k" + strconv.Itoa(i); recentSlot(s) == recentSlot(first) {
			other = s
		}
	}
	want := map[string]uint32{}
	for range 3 {
		for _, s := range []string{first, other, first, first, other} {
			i, _, ok := a.intern(s)
			require.True(t, ok)
			if w, seen := want[s]; seen {
				require.Equal(t, w, i, s)
			}
			want[s] = i
			require.Equal(t, s, a.strs[i])
		}
	}
	require.NotEqual(t, want[first], want[other])
	require.Len(t, a.strs, 2)
}

func FuzzHeadSpans(f *testing.F) {
	f.Add(uint64(0), uint8(1))
	f.Add(uint64(7), uint8(40))
	f.Fuzz(func(t *testing.T, seed uint64, n uint8) {
		checkHeadSpans(t, seed, int(n))
	})
}

// The flush reads the head in block order, each span valid until the next
// but one is yielded, which is all WriteSpans keeps.
func TestHeadSortedSpans(t *testing.T) {
	td, _ := workload.New(9, time.Unix(1_700_000_000, 0), workload.Options{}).Batch(300)
	spans := storage.AppendTraces(nil, td)
	h := newHead(0)
	h.appendSpans(spans, 0)
	want := slices.Clone(spans)
	slices.SortFunc(want, func(a, b storage.Span) int { return block.CompareSpans(&a, &b) })
	var (
		err  error
		prev *storage.Span
		kept storage.Span
		k    int
	)
	for s := range h.sortedSpans(&err) {
		if prev != nil {
			require.Equal(t, kept.SpanID, prev.SpanID, "the span before is intact")
			require.Negative(t, block.CompareSpans(prev, s))
		}
		requireSameSpan(t, &want[k], s)
		prev, kept = s, *s
		k++
	}
	require.NoError(t, err)
	require.Equal(t, len(want), k)
}

// Trace IDs that share their first bytes tie on the sort key's prefix,
// which leaves their order to the entries; so do the spans of one trace.
// Some tracers put the time there (X-Ray); 64-bit trace IDs leave the
// first eight bytes zero.
func TestHeadSortedTiedPrefixes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var spans []storage.Span
	for i := range 3000 {
		var s storage.Span
		s.TraceID[0] = byte(r.IntN(3)) // 1 and 2: five shared bytes; 0: 64-bit IDs
		if s.TraceID[0] == 0 {
			s.TraceID[8+r.IntN(8)] = byte(r.IntN(4))
		} else {
			s.TraceID[5+r.IntN(11)] = byte(r.IntN(4))
		}
		s.SpanID[0], s.SpanID[1] = byte(i), byte(i>>8)
		s.StartUnixNano = int64(r.IntN(5)) // ties on start too
		s.Resource = &storage.Resource{}
		spans = append(spans, s)
	}
	h := newHead(0)
	h.appendSpans(spans, 0)
	order := h.spans.sorted()
	require.Len(t, order, len(spans))
	seen := make([]bool, len(spans))
	for k, i := range order {
		require.False(t, seen[i], "span %d twice", i)
		seen[i] = true
		if k > 0 {
			require.Negative(t, compareEntries(h.spans.entry(int(order[k-1])), h.spans.entry(int(i))), "at %d", k)
		}
	}
}

// The head answers Services, Operations and TagNames from what it noted
// on append: span attribute keys only (not those of events or links), the
// keys of its spans' resources, and (service, name, kind) per span.
func TestHeadNameLists(t *testing.T) {
	res := func(svc, key string) *storage.Resource {
		return &storage.Resource{Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str(svc)}, {Key: key, Value: storage.Int(1)}}}
	}
	spans := []storage.Span{
		{Name: "GET", Kind: 2, Resource: res("a", "host"), Attrs: storage.Attrs{{Key: "http.route", Value: storage.Str("/")}},
			Events: []storage.Event{{Name: "e", Attrs: storage.Attrs{{Key: "event.only", Value: storage.Int(1)}}}}},
		{Name: "query", Kind: 3, Resource: res("b", "pod"), Attrs: storage.Attrs{{Key: "db.system", Value: storage.Str("pg")}}},
	}
	for i := range spans {
		spans[i].SpanID[0] = byte(i + 1)
	}
	// Keys past the first word of the bit set.
	for i := range 100 {
		spans[1].Attrs = append(spans[1].Attrs, storage.Attr{Key: "k" + strconv.Itoa(i), Value: storage.Int(1)})
	}
	h := newHead(0)
	h.appendSpans(spans, 0)
	// A log's resource is not a span's.
	h.appendLogs([]storage.LogRecord{{Resource: res("logs-only", "logkey")}}, 0)

	svcs := map[string]struct{}{}
	h.services(svcs)
	require.Equal(t, map[string]struct{}{"a": {}, "b": {}}, svcs)
	ops := storage.OperationSet{}
	h.operations("b", ops)
	require.Equal(t, []storage.Operation{{Name: "query", Kind: 3}}, ops.Sorted())
	span, resKeys := map[string]struct{}{}, map[string]struct{}{}
	h.tagNames(span, resKeys)
	require.Len(t, span, 102)
	require.Contains(t, span, "http.route")
	require.Contains(t, span, "k99")
	require.NotContains(t, span, "event.only")
	require.Equal(t, map[string]struct{}{"service.name": {}, "host": {}, "pod": {}}, resKeys)
}
