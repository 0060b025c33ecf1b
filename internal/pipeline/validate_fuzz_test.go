package pipeline

import (
	"errors"
	"strings"
	"testing"
)

// FuzzSplitErrors feeds arbitrary decoder messages to the error splitter:
// it must not panic, must keep every problem under the component's path,
// and must drop mapstructure's header lines.
func FuzzSplitErrors(f *testing.F) {
	f.Add("exporters::loki", "decoding failed due to the following error(s):\n\n'' has invalid keys: batch")
	f.Add("receivers::otlp", "'protocols.grpc' decoding failed due to the following error(s):\n\n'configgrpc.ServerConfig' has invalid keys: endpont")
	f.Add("processors::batch", "'timeout' time: invalid duration \"abc\"")
	f.Add("service", "'pipelines' expected a map, got 'slice'")
	f.Add("x", "'")
	f.Add("x", "'' ")
	f.Add("x", "'a.B' ")
	f.Fuzz(func(t *testing.T, path, msg string) {
		if path == "" || strings.ContainsAny(path, "\n:") {
			return
		}
		out := splitErrors(path, errors.New(msg))
		if len(out) == 0 {
			t.Fatal("no error returned")
		}
		for _, e := range out {
			s := e.Error()
			if !strings.HasPrefix(s, path+":") {
				t.Errorf("%q lost its path %q", s, path)
			}
			if strings.Contains(s, "\n") {
				t.Errorf("%q spans lines", s)
			}
		}
	})
}
