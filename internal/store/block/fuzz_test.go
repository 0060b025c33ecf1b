package block

import (
	"testing"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// FuzzBloom: any bytes either fail to decode or give a filter that answers.
func FuzzBloom(f *testing.F) {
	b := NewBloom(10, 0.01)
	b.Add(storage.TraceID{1})
	enc, _ := b.MarshalBinary()
	f.Add(enc)
	f.Add(enc[:20])
	f.Fuzz(func(t *testing.T, p []byte) {
		bl, err := UnmarshalBloom(p)
		if err != nil {
			return
		}
		bl.MayContain(storage.TraceID{1})
		re, _ := bl.MarshalBinary()
		if string(re) != string(p) {
			t.Fatal("bloom does not re-encode to its input")
		}
	})
}

// FuzzResourceBlob: the resource and scope decoders never panic and
// round-trip what the encoder writes.
func FuzzResourceBlob(f *testing.F) {
	enc := newEncoder()
	res := &storage.Resource{SchemaURL: "s", Attrs: storage.Attrs{{Key: "service.name", Value: storage.Str("a")}, {Key: "n", Value: storage.Int(-3)}, {Key: "d", Value: storage.Double(1.5)}}}
	f.Add(enc.resource(res), enc.scopeOf(&storage.InstrumentationScope{Name: "x", Version: "1"}))
	f.Add([]byte{0xff, 0xff, 0xff}, []byte{})
	f.Fuzz(func(t *testing.T, rb, sb []byte) {
		c := newResourceCache()
		r := c.resource("svc", rb)
		c.scopeOf(sb)
		if c.err != nil {
			return
		}
		again := newEncoder().resource(r)
		if string(again) != string(rb) && len(r.Attrs) > 1 {
			// Re-encoding a decoded resource must be stable.
			if string(newEncoder().resource(newResourceCache().resource("svc", again))) != string(again) {
				t.Fatal("resource encoding is not stable")
			}
		}
	})
}

// FuzzMeta: meta.json and index.json decoding never panics.
func FuzzMeta(f *testing.F) {
	f.Add([]byte(`{"format":1,"id":"x","signal":"traces"}`), []byte(`{"row_groups":[{"min_trace_id":"00","max_trace_id":"ff"}]}`))
	f.Fuzz(func(t *testing.T, m, ix []byte) {
		UnmarshalMeta(m)
		unmarshalIndex(ix)
	})
}

// FuzzServicesBlob: the trace table's spans-per-service decoder never
// panics, and what the encoder writes decodes to what it was given.
func FuzzServicesBlob(f *testing.F) {
	f.Add(appendServices(nil, []storage.ServiceSpans{{Service: "cart", Spans: 3, Errors: 1}, {Service: "", Spans: 1}}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		svc := decodeServices(p)
		again := decodeServices(appendServices(nil, svc))
		if len(again) != len(svc) {
			t.Fatalf("re-encoded %d services, decoded %d", len(svc), len(again))
		}
		for i := range svc {
			if svc[i] != again[i] {
				t.Fatalf("service %d: %+v re-decoded as %+v", i, svc[i], again[i])
			}
		}
	})
}

// FuzzServiceSetBlobs: the trace table's service set and counts decoders
// never panic, whatever pair of blobs they get, and what the encoders
// write decodes to what they were given.
func FuzzServiceSetBlobs(f *testing.F) {
	svc := []storage.ServiceSpans{{Service: "cart", Spans: 3, Errors: 1}, {Service: "", Spans: 1}}
	f.Add(appendServiceSet(nil, svc), appendServiceCounts(nil, svc))
	f.Add(appendServiceSet(nil, svc), appendServiceCounts(nil, svc[:1])) // counts short of the set
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, []byte{0x80})
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, set, counts []byte) {
		got := decodeServiceCounts(nil, decodeServiceSet(set), counts)
		again := decodeServiceCounts(nil, decodeServiceSet(appendServiceSet(nil, got)), appendServiceCounts(nil, got))
		if len(again) != len(got) {
			t.Fatalf("re-encoded %d services, decoded %d", len(got), len(again))
		}
		for i := range got {
			if got[i] != again[i] {
				t.Fatalf("service %d: %+v re-decoded as %+v", i, got[i], again[i])
			}
		}
	})
}
