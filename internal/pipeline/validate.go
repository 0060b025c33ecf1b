package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/pipeline"
	"go.opentelemetry.io/collector/service"
)

// Validate resolves the config of set and checks it, returning every error
// it finds, each prefixed with the config path it is about
// ("exporters::loki: ...").
//
// otelcol stops at the first unknown type or undecodable component, in map
// order; Validate instead checks every component on its own, then every
// pipeline reference, and only when all of that passes hands the config to
// the collector's own dry run for the checks that need the built graph
// (connector and signal compatibility).
func Validate(ctx context.Context, set otelcol.CollectorSettings) []error {
	_, errs := resolveAndValidate(ctx, set)
	return errs
}

// resolveAndValidate is Validate that also returns the resolved config,
// when it resolves.
func resolveAndValidate(ctx context.Context, set otelcol.CollectorSettings) (*confmap.Conf, []error) {
	factories, err := set.Factories()
	if err != nil {
		return nil, []error{fmt.Errorf("initialize components: %w", err)}
	}
	resolver, err := confmap.NewResolver(set.ConfigProviderSettings.ResolverSettings)
	if err != nil {
		return nil, []error{err}
	}
	conf, err := resolver.Resolve(ctx)
	_ = resolver.Shutdown(ctx)
	if err != nil {
		return nil, []error{fmt.Errorf("resolve config: %w", err)}
	}
	if errs := checkConf(conf, factories); len(errs) > 0 {
		return conf, errs
	}
	col, err := otelcol.NewCollector(set)
	if err != nil {
		return conf, []error{err}
	}
	if err := col.DryRun(ctx); err != nil {
		return conf, splitErrors("", err)
	}
	return conf, nil
}

// section is one top-level component map of a config.
type section struct {
	name   string
	kind   component.Kind
	lookup func(component.Type) (component.Factory, bool)
}

func sections(f otelcol.Factories) []section {
	return []section{
		{"receivers", component.KindReceiver, lookupIn(f.Receivers)},
		{"processors", component.KindProcessor, lookupIn(f.Processors)},
		{"exporters", component.KindExporter, lookupIn(f.Exporters)},
		{"connectors", component.KindConnector, lookupIn(f.Connectors)},
		{"extensions", component.KindExtension, lookupIn(f.Extensions)},
	}
}

func lookupIn[F component.Factory](m map[component.Type]F) func(component.Type) (component.Factory, bool) {
	return func(t component.Type) (component.Factory, bool) {
		f, ok := m[t]
		return f, ok
	}
}

func typesOf[F component.Factory](m map[component.Type]F) []string {
	out := make([]string, 0, len(m))
	for t := range m {
		out = append(out, t.String())
	}
	sort.Strings(out)
	return out
}

// checkConf checks each component and the service section independently.
func checkConf(conf *confmap.Conf, f otelcol.Factories) []error {
	var errs []error
	known := map[string]map[component.ID]bool{}
	for _, s := range sections(f) {
		ids, serrs := checkSection(conf, s, f)
		known[s.name] = ids
		errs = append(errs, serrs...)
	}
	errs = append(errs, checkService(conf, f, known)...)
	return errs
}

func checkSection(conf *confmap.Conf, s section, f otelcol.Factories) (map[component.ID]bool, []error) {
	ids := map[component.ID]bool{}
	if !conf.IsSet(s.name) {
		return ids, nil
	}
	sub, err := conf.Sub(s.name)
	if err != nil {
		return ids, []error{fmt.Errorf("%s: %w", s.name, err)}
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range sub.ToStringMap() {
			if !yield(k) {
				return
			}
		}
	})
	var errs []error
	for _, key := range keys {
		path := s.name + "::" + key
		var id component.ID
		if err := id.UnmarshalText([]byte(key)); err != nil {
			errs = append(errs, fmt.Errorf("%s: invalid component id: %w", path, err))
			continue
		}
		ids[id] = true
		compConf, err := sub.Sub(key)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		factory, ok := s.lookup(id.Type())
		if !ok {
			errs = append(errs, unknownComponent(path, s, id, compConf, f)...)
			continue
		}
		cfg := factory.CreateDefaultConfig()
		if err := compConf.Unmarshal(&cfg); err != nil {
			errs = append(errs, splitErrors(path, err)...)
			continue
		}
		if err := confmap.Validate(cfg); err != nil {
			errs = append(errs, splitErrors(path, err)...)
		}
	}
	return ids, errs
}

// unknownComponent explains a type with no factory: a removed upstream
// component gets why and what to use instead, anything else the valid types.
func unknownComponent(path string, s section, id component.ID, compConf *confmap.Conf, f otelcol.Factories) []error {
	if r, ok := removedComponents[removedKey{s.kind, id.Type().String()}]; ok {
		return r.check(path, compConf)
	}
	var valid []string
	switch s.kind {
	case component.KindReceiver:
		valid = typesOf(f.Receivers)
	case component.KindProcessor:
		valid = typesOf(f.Processors)
	case component.KindExporter:
		valid = typesOf(f.Exporters)
	case component.KindConnector:
		valid = typesOf(f.Connectors)
	case component.KindExtension:
		valid = typesOf(f.Extensions)
	}
	return []error{fmt.Errorf("%s: unknown type %q; Sightline has: %s", path, id.Type(), strings.Join(valid, ", "))}
}

// checkService decodes the service section and checks that every pipeline
// and extension reference names a declared component, reporting all of them.
func checkService(conf *confmap.Conf, f otelcol.Factories, known map[string]map[component.ID]bool) []error {
	svc := service.Config{Telemetry: f.Telemetry.CreateDefaultConfig()}
	sub, err := conf.Sub("service")
	if err != nil {
		return []error{fmt.Errorf("service: %w", err)}
	}
	if err := sub.Unmarshal(&svc); err != nil {
		return splitErrors("service", err)
	}
	var errs []error
	if err := confmap.Validate(&svc); err != nil {
		errs = append(errs, splitErrors("service", err)...)
	}
	for i, ref := range svc.Extensions {
		if !known["extensions"][ref] {
			errs = append(errs, fmt.Errorf("service::extensions::%d: references extension %q which is not configured", i, ref))
		}
	}
	pids := make([]pipeline.ID, 0, len(svc.Pipelines))
	for pid := range svc.Pipelines {
		pids = append(pids, pid)
	}
	sort.Slice(pids, func(i, j int) bool { return pids[i].String() < pids[j].String() })
	for _, pid := range pids {
		p := svc.Pipelines[pid]
		path := "service::pipelines::" + pid.String()
		for _, ref := range p.Receivers {
			if !known["receivers"][ref] && !known["connectors"][ref] {
				errs = append(errs, fmt.Errorf("%s::receivers: references receiver %q which is not configured", path, ref))
			}
		}
		for _, ref := range p.Processors {
			if !known["processors"][ref] {
				errs = append(errs, fmt.Errorf("%s::processors: references processor %q which is not configured", path, ref))
			}
		}
		for _, ref := range p.Exporters {
			if !known["exporters"][ref] && !known["connectors"][ref] {
				errs = append(errs, fmt.Errorf("%s::exporters: references exporter %q which is not configured", path, ref))
			}
		}
	}
	return errs
}

// splitErrors turns a joined or multi-line decode error into one error per
// problem, each prefixed with its config path and followed by a hint where
// one is known.
//
// mapstructure reports a nested problem as a header line naming the field
// ("'protocols.grpc' decoding failed due to the following error(s):")
// followed by the problem, which names the Go type instead of the key
// ("'configgrpc.ServerConfig' has invalid keys: endpont"). The header's
// field is folded into the path and the Go type name is dropped, giving
// "receivers::otlp::protocols::grpc: has invalid keys: endpont".
func splitErrors(path string, err error) []error {
	var parts []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		parts = j.Unwrap()
	} else {
		parts = []error{err}
	}
	var out []error
	for _, p := range parts {
		nested := ""
		for _, line := range strings.Split(p.Error(), "\n") {
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			name, rest := quotedPrefix(line)
			if rest == "decoding failed due to the following error(s):" {
				nested = name
				continue
			}
			if strings.HasPrefix(line, "decoding failed due to the following error(s)") {
				continue
			}
			full := joinPath(path, nested)
			if name != "" {
				if !isGoTypeName(name) {
					full = joinPath(full, name)
				}
				line = rest
			}
			msg := line
			if full != "" {
				msg = full + ": " + line
			}
			if h := hintFor(line); h != "" {
				msg += " (" + h + ")"
			}
			out = append(out, errors.New(msg))
		}
	}
	if len(out) == 0 {
		// Nothing but headers: the message itself, on one line as every
		// other problem is.
		var lines []string
		for _, line := range strings.Split(err.Error(), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				lines = append(lines, line)
			}
		}
		msg := strings.Join(lines, "; ")
		if path != "" {
			msg = path + ": " + msg
		}
		out = append(out, errors.New(msg))
	}
	return out
}

// quotedPrefix splits "'name' rest" into name and rest.
func quotedPrefix(line string) (name, rest string) {
	if !strings.HasPrefix(line, "'") {
		return "", line
	}
	end := strings.Index(line[1:], "' ")
	if end < 0 {
		return "", line
	}
	return line[1 : end+1], line[end+3:]
}

// isGoTypeName reports whether a mapstructure name is a Go type
// (configgrpc.ServerConfig) rather than a config key. Keys are lowercase
// snake_case; a type has an upper-case letter after its package's dot.
func isGoTypeName(name string) bool {
	if name == "" {
		return true
	}
	i := strings.LastIndexByte(name, '.')
	return i >= 0 && i+1 < len(name) && strings.ToLower(name[i+1:]) != name[i+1:]
}

func joinPath(path, field string) string {
	if field == "" {
		return path
	}
	field = strings.ReplaceAll(field, ".", "::")
	if path == "" {
		return field
	}
	return path + "::" + field
}
