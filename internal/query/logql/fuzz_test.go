package logql

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// FuzzParse: no panic or hang on any input; errors carry a position; what
// parses prints to a form that parses back to the same print. Seeds are the
// queries of testdata/*.test.
func FuzzParse(f *testing.F) {
	data, err := os.ReadFile("testdata/logs.test")
	if err != nil {
		f.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "fails "):
			q, _, _ := strings.Cut(strings.TrimPrefix(l, "fails "), "\t")
			f.Add(q)
		case strings.HasPrefix(l, "logs "), strings.HasPrefix(l, "metrics "):
			if i := strings.IndexAny(l, "{"); i >= 0 {
				start := strings.LastIndex(l[:i], " ")
				f.Add(l[start+1:])
			}
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

// FuzzDetectFields: detected_fields and patterns read any log line, JSON
// or logfmt or neither, without a panic; detected_fields takes at most
// MaxParsedLabels fields from it and names each as a label. Seeds are the
// lines of testdata/*.test.
func FuzzDetectFields(f *testing.F) {
	for _, file := range []string{"testdata/logs.test", "testdata/discover.test", "testdata/patterns.test"} {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if i := strings.Index(l, ` "`); i >= 0 && strings.HasPrefix(l, "  ") {
				if body, err := strconv.Unquote(fields(l[i+1:])[0]); err == nil {
					f.Add(body)
				}
			}
		}
	}
	f.Add(`{"a":{"b":[1,2]},"c":null,"d":1e400}`)
	f.Fuzz(func(t *testing.T, line string) {
		n := 0
		jsonFields(line, func(name, value string, path []string) {
			n++
			if len(path) == 0 || name != LabelName(name) {
				t.Fatalf("field %q (path %q) is not a label name", name, path)
			}
			_ = kindsOf(value).name()
		})
		if n > MaxParsedLabels {
			t.Fatalf("%d fields from one line", n)
		}
		for _, l := range parseLogfmt(line, nil) {
			_ = kindsOf(l.Value).name()
		}
		if toks := tokenize(line); len(toks) > 0 && match(toks, toks) != 1 {
			t.Fatalf("a line does not match its own tokens: %q", toks)
		}
	})
}
