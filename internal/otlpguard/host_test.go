package otlpguard

import (
	"errors"
	"testing"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
)

// admitterExt is an extension that admits as its function does.
type admitterExt struct {
	component.StartFunc
	component.ShutdownFunc
	admit Admission
}

func (e admitterExt) Admit(sig Signal) error { return e.admit(sig) }

// extHost is a host with the given extensions.
type extHost struct {
	component.Host
	exts map[component.ID]component.Component
}

func (h extHost) GetExtensions() map[component.ID]component.Component { return h.exts }

// admitHost is a host whose one extension admits as admit does; with a
// nil admit it has no extension.
func admitHost(admit Admission) component.Host {
	h := extHost{Host: componenttest.NewNopHost(), exts: map[component.ID]component.Component{}}
	if admit != nil {
		h.exts[component.MustNewID("store")] = admitterExt{admit: admit}
	}
	return h
}

// Every admitter on the host is asked, in the order of the extension IDs,
// until one refuses; extensions that are not admitters are left alone, and
// a host without any admits everything.
func TestHostAdmission(t *testing.T) {
	if HostAdmission(componenttest.NewNopHost()) != nil {
		t.Fatal("a host without admitters must admit everything (nil)")
	}
	var asked []string
	refuse := errors.New("over budget")
	ext := func(name string, err error) admitterExt {
		return admitterExt{admit: func(Signal) error { asked = append(asked, name); return err }}
	}
	h := extHost{Host: componenttest.NewNopHost(), exts: map[component.ID]component.Component{
		component.MustNewIDWithName("store", "b"): ext("b", refuse),
		component.MustNewIDWithName("store", "a"): ext("a", nil),
		component.MustNewID("other"): struct {
			component.StartFunc
			component.ShutdownFunc
		}{},
	}}
	admit := HostAdmission(h)
	if err := admit(Traces); !errors.Is(err, refuse) {
		t.Fatalf("got %v, want the second admitter's refusal", err)
	}
	if len(asked) != 2 || asked[0] != "a" || asked[1] != "b" {
		t.Fatalf("asked %v, want [a b]", asked)
	}
}
