package block

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// The cache answers by address: a key seen before is a hit, an equal key
// in other bytes is a miss (and the caller's slow path gives the same
// result), and a prefixed key always carries its own type.
func TestKeyCache(t *testing.T) {
	var c keyCache
	a := strings.Clone("http.route")
	require.False(t, c.seen(a))
	require.True(t, c.seen(a))
	require.True(t, c.seen(a[:]), "the same bytes")
	require.False(t, c.seen(a[:4]), "a prefix of the bytes is another key")
	require.False(t, c.seen(strings.Clone(a)), "equal, other bytes")

	var p keyCache
	require.Equal(t, "\x01http.route", p.prefixed(a, storage.TypeStr))
	require.Equal(t, "\x01http.route", p.prefixed(a, storage.TypeStr))
	require.Equal(t, "\x02http.route", p.prefixed(a, storage.TypeInt), "the type is part of the entry")
	require.Equal(t, "\x01", p.prefixed("", storage.TypeStr))
	// Many keys share the slots: every answer stays right.
	keys := make([]string, 2000)
	for i := range keys {
		keys[i] = strings.Repeat("k", i%7+1) + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
	}
	for range 2 {
		for i, k := range keys {
			typ := storage.ValueType(i%6 + 1)
			require.Equal(t, string(rune(typ))+k, p.prefixed(k, typ))
		}
	}
}
