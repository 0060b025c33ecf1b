package pipeline

import (
	"context"
	"strings"
	"testing"
)

func errStrings(errs []error) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}

func TestValidateBuiltinDefault(t *testing.T) {
	if errs := Validate(context.Background(), Settings("test", nil)); len(errs) > 0 {
		t.Fatalf("the embedded default config is invalid:\n%s", strings.Join(errStrings(errs), "\n"))
	}
}

func TestValidateUnknownBuiltin(t *testing.T) {
	errs := Validate(context.Background(), Settings("test", []string{"builtin:nope"}))
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `no such builtin config "nope"`) ||
		!strings.Contains(errs[0].Error(), "all-in-one") {
		t.Fatalf("got %v, want one error naming the builtin configs", errs)
	}
}

// TestValidateMergesConfigsAndSet checks otelcol's merge rules: later
// --config files and --set override earlier ones, maps merge, lists replace.
func TestValidateMergesConfigsAndSet(t *testing.T) {
	uris := []string{
		DefaultConfigURI,
		"yaml:processors::batch::send_batch_size: 100",
		"yaml:processors::batch::send_batch_max_size: 50",
	}
	errs := Validate(context.Background(), Settings("test", uris))
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "processors::batch: send_batch_max_size") {
		t.Fatalf("got %q, want the merged batch config rejected", errStrings(errs))
	}
	t.Setenv("SIGHTLINE_TEST_SIZE", "10")
	uris[2] = "yaml:processors::batch::send_batch_max_size: ${env:SIGHTLINE_TEST_SIZE}"
	errs = Validate(context.Background(), Settings("test", uris))
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "send_batch_max_size") {
		t.Fatalf("got %q, want ${env:} expanded in a yaml: URI", errStrings(errs))
	}
}

func TestSplitErrorsDropsDecoderHeader(t *testing.T) {
	errs := Validate(context.Background(), Settings("test", []string{
		DefaultConfigURI, "yaml:processors::batch::sned_batch_size: 1",
	}))
	got := errStrings(errs)
	if len(got) != 1 || got[0] != "processors::batch: has invalid keys: sned_batch_size" {
		t.Fatalf("got %q", got)
	}
}
