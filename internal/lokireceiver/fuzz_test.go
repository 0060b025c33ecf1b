package lokireceiver

import (
	"testing"
	"time"
)

// The decoders take bytes straight off the network: no input may panic,
// hang or allocate without bound. Seeds are valid requests and near misses.
func FuzzDecodeProtobuf(f *testing.F) {
	f.Add(pushRequest(map[string][]entry{`{service_name="cart"}`: {{time.Unix(1, 2), "line", [][2]string{{"trace_id", "0102030405060708090a0b0c0d0e0f10"}}}}}))
	f.Add([]byte{})
	f.Add([]byte("\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeProtobuf(b, true, time.Unix(0, 0), DefaultLimits)
	})
}

func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"streams":[{"stream":{"a":"b"},"values":[["1","x",{"trace_id":"01"}]]}]}`))
	f.Add([]byte(`{"streams":[{"stream":{},"values":[[]]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeJSON(b, true, time.Unix(0, 0), DefaultLimits)
	})
}

func FuzzParseLabels(f *testing.F) {
	f.Add(`{a="b", c="d\"e"}`)
	f.Add(`{}`)
	f.Add(`{a="`)
	f.Fuzz(func(t *testing.T, s string) {
		if ls, err := ParseLabels(s); err == nil && ls == nil {
			t.Fatal("nil labels without error")
		}
	})
}
