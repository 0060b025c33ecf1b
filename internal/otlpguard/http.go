package otlpguard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// HTTPHandler checks the OTLP requests that next serves at paths (URL path
// → signal) and answers 400 with an OTLP error body, in the request's
// encoding, to those that must not be decoded. Other requests, and content
// types that are not OTLP's, pass through untouched.
//
// It must run after the body is decompressed and bounded (confighttp's
// middlewares do), since it reads the whole body; next then reads it from
// memory.
//
// The bodies of the requests it serves at once, held as they are read,
// and their estimated decoded bytes are bounded (Limits.MaxInflightBytes);
// past the bound a request is answered 503 with Retry-After, undecoded. A
// request that alone would take more than Limits.MaxRequestBytes decoded,
// or whose body declares more, is answered 413, undecoded.
func HTTPHandler(next http.Handler, paths map[string]Signal, lim Limits) http.Handler {
	return httpHandler(next, paths, lim, NewInflight(lim))
}

func httpHandler(next http.Handler, paths map[string]Signal, lim Limits, fl *Inflight) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sig, ok := exportRequest(r, paths)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		var check func([]byte) (Report, error)
		switch ct {
		case "application/x-protobuf":
			check = func(b []byte) (Report, error) { return ScanProto(sig, b, lim) }
		case "application/json":
			check = func(b []byte) (Report, error) { return ScanJSON(b, lim) }
		default:
			next.ServeHTTP(w, r)
			return
		}
		if fl.Full() {
			// Refused as Acquire would, before the body is even read.
			writeRetryable(w, ct, fl.ErrFull())
			return
		}
		hold := fl.Hold()
		defer hold.Release()
		body, err := hold.ReadBody(r)
		r.Body.Close()
		if err != nil {
			// Over a size limit, past the bound in flight, or a broken
			// stream: the receiver would fail the same way at its own
			// limit; answer as it does.
			var mbe *http.MaxBytesError
			switch {
			case errors.As(err, &mbe), errors.Is(err, ErrTooLarge):
				WriteHTTPError(w, ct, http.StatusRequestEntityTooLarge, fmt.Errorf("read request body: %w", err))
			case errors.Is(err, ErrInflight):
				writeRetryable(w, ct, err)
			default:
				WriteHTTPError(w, ct, http.StatusBadRequest, fmt.Errorf("read request body: %w", err))
			}
			return
		}
		rep, err := check(body)
		if err != nil {
			WriteHTTPError(w, ct, http.StatusBadRequest, fmt.Errorf("otlp %s request refused: %w", sig, err))
			return
		}
		// The body stays in memory while it is decoded: the request holds
		// both.
		if err := hold.Take(rep.Decoded); err != nil {
			if errors.Is(err, ErrTooLarge) {
				WriteHTTPError(w, ct, http.StatusRequestEntityTooLarge, fmt.Errorf("otlp %s request refused: %w", sig, err))
				return
			}
			writeRetryable(w, ct, err)
			return
		}
		// The walk finds invalid span IDs in protobuf; JSON is decoded to
		// look (CheckJSON has made that safe).
		if sig == Traces && (rep.InvalidSpans > 0 || ct == "application/json") {
			servePartial(next, w, r, ct, body)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

// exportRequest tells whether r is an OTLP export request, and of which
// signal, by its method and its path among paths.
func exportRequest(r *http.Request, paths map[string]Signal) (Signal, bool) {
	sig, ok := paths[r.URL.Path]
	return sig, ok && r.Method == http.MethodPost
}

// servePartial passes a traces request on without its spans with invalid
// IDs and answers with partial success naming them.
func servePartial(next http.Handler, w http.ResponseWriter, r *http.Request, ct string, body []byte) {
	isJSON := ct == "application/json"
	req := ptraceotlp.NewExportRequest()
	var err error
	if isJSON {
		err = req.UnmarshalJSON(body)
	} else {
		err = req.UnmarshalProto(body)
	}
	if err != nil {
		// The receiver answers undecodable requests itself, as always.
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
		return
	}
	rejected, kept := filterInvalidSpans(req)
	if rejected == 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
		return
	}
	if kept == 0 {
		WriteHTTPError(w, ct, http.StatusBadRequest, fmt.Errorf("otlp traces request refused: %w", errAllInvalid(rejected)))
		return
	}
	if isJSON {
		body, err = req.MarshalJSON()
	} else {
		body, err = req.MarshalProto()
	}
	if err != nil {
		WriteHTTPError(w, ct, http.StatusBadRequest, fmt.Errorf("otlp traces request refused: %w", err))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		// Refused (backpressure, auth, ...): the client hears that.
		copyResponse(w, rec)
		return
	}
	resp := partialResponse(rejection{spans: int64(rejected)})
	var out []byte
	if isJSON {
		out, err = resp.MarshalJSON()
	} else {
		out, err = resp.MarshalProto()
	}
	if err != nil {
		copyResponse(w, rec)
		return
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// WriteHTTPError answers with OTLP/HTTP's error body: a google.rpc.Status
// in the request's encoding (JSON for anything but protobuf).
func WriteHTTPError(w http.ResponseWriter, contentType string, code int, err error) {
	writeStatus(w, contentType, code, &spb.Status{Code: int32(grpcCode(code)), Message: err.Error()})
}

// writeStatus writes st as the body, in the request's encoding: protobuf
// with its details, or JSON with its code and message (protojson would
// render the details as Any with a type URL; the code and message are what
// JSON clients read).
func writeStatus(w http.ResponseWriter, contentType string, code int, st *spb.Status) {
	var (
		body []byte
		ct   string
	)
	if contentType == "application/x-protobuf" {
		body, _ = proto.Marshal(st)
		ct = "application/x-protobuf"
	} else {
		body, _ = json.Marshal(map[string]any{"code": st.Code, "message": st.Message})
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

func grpcCode(httpCode int) codes.Code {
	switch httpCode {
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusRequestEntityTooLarge:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	}
	return codes.Unknown
}
