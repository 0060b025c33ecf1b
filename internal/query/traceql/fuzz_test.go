package traceql

import (
	"os"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary text to the parser. It must not panic or hang,
// every error must carry a position, and whatever parses must print to a
// form that parses back to the same print. Seeds: every case in testdata.
func FuzzParse(f *testing.F) {
	for _, file := range []string{"testdata/valid.txt", "testdata/parse_fails.txt", "testdata/validate_fails.txt"} {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			q, _, _ := strings.Cut(l, "\t")
			f.Add(strings.ReplaceAll(q, `\n`, "\n"))
		}
	}
	f.Fuzz(func(t *testing.T, src string) {
		q, err := Parse(src)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error without position: %v", err)
			}
			return
		}
		printed := q.String()
		q2, err := Parse(printed)
		if err != nil {
			t.Fatalf("%q parsed, but its print %q does not: %v", src, printed, err)
		}
		if q2.String() != printed {
			t.Fatalf("print is not stable: %q then %q", printed, q2.String())
		}
	})
}
