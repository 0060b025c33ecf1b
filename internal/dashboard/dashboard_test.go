package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sightlinehq/sightline/internal/objstore"
)

func newStore(t *testing.T, dir string) *Store {
	t.Helper()
	b, err := objstore.OpenFilesystem(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	builtin, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	return New(b, builtin)
}

func TestSaveGetListDelete(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newStore(t, dir)
	m, err := s.Save(ctx, "", []byte(`{"title":"Checkout","tags":["shop"],"id":42,"panels":[{"type":"timeseries"},{"type":"row","panels":[{"type":"stat"}]}],"custom":{"kept":true}}`), false)
	if err != nil {
		t.Fatal(err)
	}
	if m.UID == "" || m.Version != 1 || m.Panels != 3 {
		t.Fatalf("meta = %+v", m)
	}
	// A new Store over the same directory sees it: it is on disk, not in memory.
	s2 := newStore(t, dir)
	d, err := s2.Get(ctx, "", m.UID)
	if err != nil {
		t.Fatal(err)
	}
	var model map[string]any
	if err := json.Unmarshal(d.Model, &model); err != nil {
		t.Fatal(err)
	}
	if model["uid"] != m.UID || model["version"] != 1.0 || model["custom"].(map[string]any)["kept"] != true {
		t.Fatalf("model = %v", model)
	}
	if _, ok := model["id"]; ok {
		t.Fatalf("Grafana's database id was kept: %v", model)
	}
	list, err := s2.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var titles []string
	for _, l := range list {
		titles = append(titles, l.Title)
	}
	// Sorted by title, the built-in ones among them.
	if got := strings.Join(titles, "|"); got != "Checkout|RED: requests, errors, duration|Sightline: self-monitoring" {
		t.Fatalf("titles = %s", got)
	}
	if _, err := s2.Delete(ctx, "", m.UID); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Get(ctx, "", m.UID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestVersionMismatch(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, t.TempDir())
	m, err := s.Save(ctx, "", []byte(`{"uid":"a","title":"A"}`), false)
	if err != nil {
		t.Fatal(err)
	}
	// Two people opened version 1; the first save wins...
	if m, err = s.Save(ctx, "", []byte(`{"uid":"a","title":"A by Ann","version":1}`), false); err != nil || m.Version != 2 {
		t.Fatalf("first save: %+v %v", m, err)
	}
	// ...the second is refused, and is kept only with overwrite.
	if _, err := s.Save(ctx, "", []byte(`{"uid":"a","title":"A by Bob","version":1}`), false); !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("second save: %v", err)
	}
	if m, err = s.Save(ctx, "", []byte(`{"uid":"a","title":"A by Bob","version":1}`), true); err != nil || m.Version != 3 {
		t.Fatalf("overwrite: %+v %v", m, err)
	}
	d, _ := s.Get(ctx, "", "a")
	if d.Meta.Title != "A by Bob" {
		t.Fatalf("title = %q", d.Meta.Title)
	}
}

func TestTenantsApart(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, t.TempDir())
	if _, err := s.Save(ctx, "acme", []byte(`{"uid":"x","title":"Acme's"}`), false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "globex", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another tenant read it: %v", err)
	}
	if _, err := s.Get(ctx, "", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the tenant-less view read it: %v", err)
	}
	list, _ := s.List(ctx, "globex")
	for _, m := range list {
		if m.UID == "x" {
			t.Fatal("listed for another tenant")
		}
	}
	if _, err := s.Delete(ctx, "globex", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another tenant deleted it: %v", err)
	}
}

func TestBuiltinReadOnly(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, t.TempDir())
	d, err := s.Get(ctx, "anyone", "sightline-red")
	if err != nil || !d.Meta.Provisioned {
		t.Fatalf("built-in: %+v %v", d.Meta, err)
	}
	if _, err := s.Save(ctx, "", []byte(`{"uid":"sightline-red","title":"mine"}`), true); !errors.Is(err, ErrProvisioned) {
		t.Fatalf("overwrote a built-in: %v", err)
	}
	if _, err := s.Delete(ctx, "", "sightline-self"); !errors.Is(err, ErrProvisioned) {
		t.Fatalf("deleted a built-in: %v", err)
	}
}

func TestParseReportsEveryError(t *testing.T) {
	_, err := Parse([]byte(`{"uid":"no/slash","panels":[{"title":"x"},{"type":"row","panels":[{}]}]}`))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"title: required", "uid: ", "panels[0].type: required", "panels[1].panels[0].type: required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q missing from %v", want, err)
		}
	}
	for _, bad := range []string{``, `[]`, `"x"`, `{"title":"a"} {}`, `{"title":"a"}}`, `{"title":"a"}]`, "{\"title\":\"a\"}\v", `{"title":"a","panels":{}}`, `{"title":` + strings.Repeat("[", 20000)} {
		if _, err := Parse([]byte(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%.30q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"title":"many","panels":[`)
	for i := 0; i <= MaxPanels; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"type":"stat"}`)
	}
	b.WriteString(`]}`)
	if _, err := Parse([]byte(b.String())); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("err = %v", err)
	}
	big := `{"title":"big","description":"` + strings.Repeat("x", MaxBytes) + `"}`
	if _, err := Parse([]byte(big)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
}

// TestPublicDashboardsParse reads the public Grafana dashboards the UI
// import test uses (testdata/README.md names their sources and licence).
func TestPublicDashboardsParse(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.json")
	if len(files) < 2 {
		t.Fatalf("want the public dashboards in testdata, found %v", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if m.Panels < 5 {
			t.Errorf("%s: %d panels", f, m.Panels)
		}
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("builtin/*.json")
	for _, f2 := range files {
		b, _ := os.ReadFile(f2)
		f.Add(b)
	}
	f.Add([]byte(`{"title":"t","panels":[{"type":"row","panels":[{"type":"x"}]}],"rows":[{"panels":[{"type":"y"}]}]}`))
	f.Add([]byte(`{"title":"t","uid":"\u0000","templating":{"list":[1,2]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error is not ErrInvalid: %v", err)
			}
			return
		}
		if m.Title == "" || (m.UID != "" && CheckUID(m.UID) != nil) {
			t.Fatalf("accepted %+v", m)
		}
		if _, err := setFields(b, "u", 1); err != nil {
			t.Fatalf("accepted by Parse, refused by setFields: %v", err)
		}
	})
}
