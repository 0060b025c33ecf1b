package traceql

import (
	"strings"
	"testing"

	"github.com/sightlinehq/sightline/internal/store/storage"
)

// A query built from conditions is the query its text parses to, values
// with quotes included, and a type error is reported as a parsed query's
// would be.
func TestAllOfIsTheParsedQuery(t *testing.T) {
	q, err := AllOf(
		Cond{Field: ResourceAttribute("service.name"), Op: "=", Value: NewString(`check"out`)},
		Cond{Field: IntrinsicField(IntrinsicDuration), Op: ">=", Value: NewDuration(1_500_000)},
		Cond{Field: IntrinsicField(IntrinsicStatus), Op: "=", Value: NewStatus(storage.StatusError)},
		Cond{Field: UnscopedAttribute("http.status_code"), Op: "=", Value: NewInt(500)},
	)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := Parse(q.String())
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if parsed.String() != q.String() {
		t.Fatalf("built %s, its text parses to %s", q, parsed)
	}
	if !strings.Contains(q.String(), `"check\"out"`) {
		t.Fatalf("value not quoted: %s", q)
	}
	all, err := AllOf()
	if err != nil || all.String() != "{ }" && all.String() != "{}" {
		t.Fatalf("no conditions: %v %v", all, err)
	}
	if _, err := AllOf(Cond{Field: IntrinsicField(IntrinsicKind), Op: "=", Value: NewString("server")}); err == nil {
		t.Fatal("kind = a string was accepted")
	}
}
