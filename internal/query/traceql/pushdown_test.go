package traceql

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestExactPushdown lists which filters the store applies in full, so
// that a search may skip evaluating them on what it returns. A filter
// wrongly called exact would return spans it does not match.
func TestExactPushdown(t *testing.T) {
	for q, want := range map[string]bool{
		`{ }`:                true,
		`{ status = error }`: true,
		`{ resource.service.name = "checkout" && status = error && duration > 5ms }`: true,
		`{ 5ms <= duration && duration < 1s && kind = server && name = "GET /" }`:    true,
		`{ duration = 10 }`:                                 true,
		`{ duration > 0 }`:                                  true,
		`{ duration = 0 }`:                                  false, // a zero bound pushes as none
		`{ duration <= 0 }`:                                 false,
		`{ duration < 1 }`:                                  false,
		`{ duration >= 0 }`:                                 false, // negative durations exist in bad data
		`{ duration > -1 }`:                                 false,
		`{ name = "" }`:                                     false, // an empty name pushes as none
		`{ resource.service.name = "" }`:                    false,
		`{ duration > 1.5 }`:                                false, // a float bound is not pushed
		`{ status != error }`:                               false,
		`{ resource.service.name != "a" }`:                  false,
		`{ resource.service.name =~ "a.*" }`:                false,
		`{ .service.name = "a" }`:                           false, // unscoped: the span's attribute first
		`{ span.http.status_code = 200 }`:                   false, // attribute matchers type values their own way
		`{ status = error || kind = server }`:               false,
		`{ trace:id = "0102030405060708090a0b0c0d0e0f10" }`: false,
		`{ name = "a" && span.x }`:                          false,
	} {
		p, err := Parse(q)
		require.NoError(t, err, q)
		f, ok := p.spanwise()
		require.True(t, ok, q)
		require.Equal(t, want, exactPushdown(f.Expr), q)
	}
}
