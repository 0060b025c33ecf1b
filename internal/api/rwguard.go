package api

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/golang/snappy"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sightlinehq/sightline/internal/otlpguard"
)

// Prometheus's remote-write handler decodes a request whole, then turns
// each series into the TSDB's labels, samples and exemplars: an empty
// series is two bytes of protobuf and about 740 bytes allocated, an empty
// histogram 1,450, and snappy shrinks a run of them twentyfold. A 197 KB
// request of 4 MiB of empty series allocated 1.5 GB. Before the handler
// sees a request, remoteWriteGuard estimates from its encoding what the
// handler will allocate for it and holds that against the bounds the OTLP
// receiver has (otlpguard.Inflight): half the Go soft limit for one
// request, 1/32 of it for all in flight.

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
// take the handler more than bound allows, its body (held as it is read)
// and what it decodes to: one request past bound's own limit, 413; past
// the bytes in flight, 503 with Retry-After, which Prometheus retries.
func remoteWriteGuard(next http.Handler, bound *otlpguard.Inflight) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			next.ServeHTTP(w, r)
			return
		}
		if bound.Full() {
			refuseRemoteWrite(w, bound.ErrFull())
			return
		}
		// The body is held as it is read, then with what it decodes to.
		hold := bound.Hold()
		defer hold.Release()
		body, err := hold.ReadBody(r)
		r.Body.Close()
		if err != nil {
			if errors.Is(err, otlpguard.ErrTooLarge) || errors.Is(err, otlpguard.ErrInflight) {
				refuseRemoteWrite(w, err)
				return
			}
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		est := remoteWriteEstimate(body, r.Header.Get("Content-Type"), bound.RequestLimit())
		if err := hold.Take(est); err != nil {
			refuseRemoteWrite(w, err)
			return
		}
		// Anything malformed is for Prometheus's handler to answer as it
		// does.
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

// remoteWriteEstimate is what the handler takes to decode body, a
// snappy-compressed remote-write request of content type ct: at least its
// decompressed size, which is all that is known of a request larger
// decompressed than limit (> 0), or that is not well-formed (the handler
// refuses it); else remoteWriteDecoded of it. The decompressed request is
// walked, then dropped: the handler decompresses it again.
func remoteWriteEstimate(body []byte, ct string, limit int64) int64 {
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return int64(len(body))
	}
	if limit > 0 && int64(n) > limit {
		return int64(n)
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return int64(n)
	}
	_, params, _ := mime.ParseMediaType(ct)
	est, err := remoteWriteDecoded(raw, params["proto"] == "io.prometheus.write.v2.Request")
	if err != nil {
		return int64(n)
	}
	return est
}

// refuseRemoteWrite answers an Inflight refusal: 413 for a request too
// large to ever take, 503 with Retry-After for one to send again later.
func refuseRemoteWrite(w http.ResponseWriter, err error) {
	msg := "remote write refused: " + grpcstatus.Convert(err).Message()
	if errors.Is(err, otlpguard.ErrTooLarge) {
		http.Error(w, msg, http.StatusRequestEntityTooLarge)
		return
	}
	otlpguard.SetRetryAfter(w.Header(), err)
	http.Error(w, msg, http.StatusServiceUnavailable)
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
