package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sightlinehq/sightline/internal/otlpguard"
)

// Prometheus's remote-write handler decodes a request whole, then turns
// each series into the TSDB's labels, samples and exemplars: an empty
// series is two bytes of protobuf and about 740 bytes allocated, an empty
// histogram 1,450, and snappy shrinks a run of them twentyfold. A 197 KB
// request of 4 MiB of empty series allocated 1.5 GB. Before the handler
// sees a request, remoteWriteGuard estimates from its encoding what the
// handler will allocate for it and refuses it, 413, past what one request
// may take decoded (otlpguard.MaxRequestBytes, half the Go soft limit).

// rwCost is what the handler allocates for one message of each kind
// beyond its strings, for remote write 1.0 and 2.0, measured with
// Prometheus's handler by writing requests of 1M empty messages of each
// kind (TotalAlloc, so garbage counts too, a refused series' error
// message among it), rounded up. A 2.0 label is a pair of references
// into the request's symbols.
type rwCost struct {
	series, label, sample, exemplar, histogram, bucketSpan, metadata, symbol int64
}

var (
	rwV1 = rwCost{series: 760, label: 600, sample: 270, exemplar: 380, histogram: 1480, bucketSpan: 64, metadata: 520}
	rwV2 = rwCost{series: 1450, label: 240, sample: 310, exemplar: 390, histogram: 1540, bucketSpan: 64, metadata: 520, symbol: 96}
)

// remoteWriteGuard refuses, undecoded, a remote-write request that would
// take the handler more than maxBytes (0: no limit) to decode.
func remoteWriteGuard(next http.Handler, maxBytes func() int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := maxBytes()
		if r.Method != http.MethodPost || limit <= 0 {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		n, err := snappy.DecodedLen(body)
		if err == nil && int64(n) <= limit {
			var raw []byte
			if raw, err = snappy.Decode(nil, body); err == nil {
				_, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
				var est int64
				est, err = remoteWriteDecoded(raw, params["proto"] == "io.prometheus.write.v2.Request")
				if err == nil && est > limit {
					err = fmt.Errorf("%w: about %d MiB decoded, over the %d MiB a request may take; send smaller requests", otlpguard.ErrTooLarge, est>>20, limit>>20)
				}
			}
		} else if err == nil {
			err = fmt.Errorf("%w: %d MiB decompressed, over the %d MiB a request may take; send smaller requests", otlpguard.ErrTooLarge, n>>20, limit>>20)
		}
		if errors.Is(err, otlpguard.ErrTooLarge) {
			http.Error(w, "remote write refused: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		// Anything else, malformed input included, is for Prometheus's
		// handler to answer as it does.
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

// remoteWriteDecoded estimates what decoding raw, a remote-write request
// (prometheus.WriteRequest, or io.prometheus.write.v2.Request when v2)
// takes: its length and rwCost for each message in it.
func remoteWriteDecoded(raw []byte, v2 bool) (int64, error) {
	c := &rwV1
	if v2 {
		c = &rwV2
	}
	est := int64(len(raw))
	err := eachField(raw, func(f protowire.Number, t protowire.Type, v []byte) error {
		switch {
		case !v2 && f == 1 && t == protowire.BytesType, v2 && f == 5 && t == protowire.BytesType:
			est += c.series
			return eachField(v, func(f protowire.Number, t protowire.Type, v []byte) error {
				est += c.seriesField(f, t, v, v2)
				if t == protowire.BytesType && (!v2 && f == 3 || v2 && f == 4) { // exemplar's labels
					return eachField(v, func(f protowire.Number, t protowire.Type, v []byte) error {
						if f == 1 {
							est += c.labels(t, v, v2)
						}
						return nil
					})
				}
				if t == protowire.BytesType && (!v2 && f == 4 || v2 && f == 3) { // histogram's spans
					return eachField(v, func(f protowire.Number, t protowire.Type, _ []byte) error {
						if (f == 8 || f == 11) && t == protowire.BytesType {
							est += c.bucketSpan
						}
						return nil
					})
				}
				return nil
			})
		case !v2 && f == 3 && t == protowire.BytesType:
			est += c.metadata
		case v2 && f == 4 && t == protowire.BytesType:
			est += c.symbol
		}
		return nil
	})
	return est, err
}

// seriesField is the cost of field f of a series.
func (c *rwCost) seriesField(f protowire.Number, t protowire.Type, v []byte, v2 bool) int64 {
	switch {
	case f == 1:
		return c.labels(t, v, v2)
	case f == 2 && t == protowire.BytesType:
		return c.sample
	case t == protowire.BytesType && (!v2 && f == 3 || v2 && f == 4):
		return c.exemplar
	case t == protowire.BytesType && (!v2 && f == 4 || v2 && f == 3):
		return c.histogram
	case v2 && f == 5 && t == protowire.BytesType:
		return c.metadata
	}
	return 0
}

// labels is the cost of a labels field: a 1.0 Label message, or 2.0's
// label references, packed or not, each costing half a pair.
func (c *rwCost) labels(t protowire.Type, v []byte, v2 bool) int64 {
	if !v2 {
		if t == protowire.BytesType {
			return c.label
		}
		return 0
	}
	if t != protowire.BytesType {
		return c.label / 2
	}
	var refs int64
	for _, b := range v {
		if b < 0x80 {
			refs++
		}
	}
	return refs * c.label / 2
}

// eachField calls fn with every field of the protobuf message m, a
// length-delimited field's contents as v; it stops at the first error,
// or at malformed input.
func eachField(m []byte, fn func(protowire.Number, protowire.Type, []byte) error) error {
	for len(m) > 0 {
		f, t, n := protowire.ConsumeTag(m)
		if n < 0 {
			return protowire.ParseError(n)
		}
		m = m[n:]
		var v []byte
		if t == protowire.BytesType {
			v, n = protowire.ConsumeBytes(m)
		} else {
			n = protowire.ConsumeFieldValue(f, t, m)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		m = m[n:]
		if err := fn(f, t, v); err != nil {
			return err
		}
	}
	return nil
}
