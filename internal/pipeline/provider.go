package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"go.opentelemetry.io/collector/confmap"

	"github.com/sightlinehq/sightline/configs"
)

// BuiltinScheme is the confmap scheme of the configs embedded in the binary:
// --config builtin:gateway loads configs/gateway.yaml.
const BuiltinScheme = "builtin"

// DefaultConfigURI is the config `sightline` runs with when given none.
const DefaultConfigURI = BuiltinScheme + ":all-in-one"

// errUnknownBuiltin is returned for a builtin: URI that names no embedded config.
var errUnknownBuiltin = errors.New("no such builtin config")

type builtinProvider struct{ fsys fs.FS }

// newBuiltinProviderFactory serves the configs embedded from configs/.
func newBuiltinProviderFactory() confmap.ProviderFactory {
	return confmap.NewProviderFactory(func(confmap.ProviderSettings) confmap.Provider {
		return &builtinProvider{fsys: configs.FS}
	})
}

func (p *builtinProvider) Retrieve(_ context.Context, uri string, _ confmap.WatcherFunc) (*confmap.Retrieved, error) {
	name := strings.TrimPrefix(uri, BuiltinScheme+":")
	b, err := fs.ReadFile(p.fsys, name+".yaml")
	if err != nil {
		return nil, fmt.Errorf("%w %q (have: %s)", errUnknownBuiltin, name, strings.Join(builtinNames(p.fsys), ", "))
	}
	return confmap.NewRetrievedFromYAML(b)
}

func (*builtinProvider) Scheme() string { return BuiltinScheme }

func (*builtinProvider) Shutdown(context.Context) error { return nil }

func builtinNames(fsys fs.FS) []string {
	files, _ := fs.Glob(fsys, "*.yaml")
	names := make([]string, 0, len(files))
	for _, f := range files {
		names = append(names, strings.TrimSuffix(f, ".yaml"))
	}
	sort.Strings(names)
	return names
}
