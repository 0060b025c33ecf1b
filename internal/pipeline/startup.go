package pipeline

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/otelcol"
)

// The one line printed for people once the collector runs: the version,
// what it listens on, where the data is and the UI's address. The log says
// all of it at length, in JSON or in a terminal's width of fields; a
// newcomer should not have to read it to find the UI.
//
//	sightline dev: OTLP/gRPC localhost:4317, OTLP/HTTP localhost:4318, Loki localhost:3100; data in /home/me/sightline-data; UI: http://localhost:3200/ui/
//
// Everything is read from the resolved config, so overlays and --set are
// reflected. Receivers count only when a pipeline uses them, extensions
// only when service::extensions lists them, as the collector runs them.

// listenDefaults are the endpoints of the receivers whose protocols each
// listen on their own default when the config names the protocol without
// an endpoint (`grpc:` alone), as their factories do.
var listenDefaults = map[string]map[string]string{
	"otlp": {"grpc": "localhost:4317", "http": "localhost:4318"},
	"loki": {"http": "localhost:3100"},
}

// protocolNames label a receiver type's protocols on the line.
var protocolNames = map[string]map[string]string{
	"otlp": {"grpc": "OTLP/gRPC", "http": "OTLP/HTTP"},
	"loki": {"http": "Loki", "grpc": "Loki/gRPC"},
}

const (
	storageType = "sightline_storage"
	queryType   = "sightline_query"
)

func startupLine(version string, conf *confmap.Conf) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sightline %s: ", version)
	listens := listeners(conf)
	if len(listens) == 0 {
		b.WriteString("receiving on nothing")
	} else {
		b.WriteString(strings.Join(listens, ", "))
	}
	var data []string
	for _, id := range serviceExtensions(conf) {
		if id.Type().String() == storageType {
			data = append(data, storageLocation(subMap(conf, "extensions::"+id.String())))
		}
	}
	if len(data) > 0 {
		b.WriteString("; data in " + strings.Join(data, ", "))
	}
	if ui := uiURLOf(conf); ui != "" {
		b.WriteString("; UI: " + ui)
	} else {
		b.WriteString("; no UI (no " + queryType + " extension)")
	}
	return b.String()
}

// listeners lists the listening endpoints of the receivers in use, in
// the order of their IDs.
func listeners(conf *confmap.Conf) []string {
	var out []string
	for _, id := range pipelineReceivers(conf) {
		typ := id.Type().String()
		sub := subMap(conf, "receivers::"+id.String())
		label := func(proto string) string {
			if n, ok := protocolNames[typ][proto]; ok && id.Name() == "" {
				return n
			}
			return id.String() + " " + proto
		}
		if protos, ok := sub["protocols"].(map[string]any); ok {
			for _, proto := range slices.Sorted(maps.Keys(protos)) {
				ep := endpointOf(protos[proto])
				if ep == "" {
					ep = listenDefaults[typ][proto]
				}
				if ep != "" {
					out = append(out, label(proto)+" "+ep)
				}
			}
			continue
		}
		if ep := endpointOf(sub); ep != "" {
			out = append(out, id.String()+" "+ep)
			continue
		}
		// syslog, tcplog, udplog and the like.
		for _, proto := range []string{"tcp", "udp"} {
			if m, ok := sub[proto].(map[string]any); ok {
				if ep, _ := m["listen_address"].(string); ep != "" {
					out = append(out, id.String()+" "+proto+" "+ep)
				}
			}
		}
	}
	return out
}

func endpointOf(v any) string {
	m, _ := v.(map[string]any)
	ep, _ := m["endpoint"].(string)
	return ep
}

// storageLocation is where a sightline_storage extension keeps its data:
// its directory, made absolute, and its bucket when blocks go to one.
func storageLocation(sub map[string]any) string {
	path, _ := sub["path"].(string)
	if path == "" {
		path = "./sightline-data" // the extension's default
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	st, _ := sub["storage"].(map[string]any)
	backend, _ := st["backend"].(string)
	switch backend {
	case "s3", "gcs":
		b, _ := st[backend].(map[string]any)
		bucket, _ := b["bucket"].(string)
		scheme := map[string]string{"s3": "s3", "gcs": "gs"}[backend]
		return fmt.Sprintf("%s (blocks in %s://%s)", path, scheme, bucket)
	case "azure":
		b, _ := st["azure"].(map[string]any)
		c, _ := b["container"].(string)
		return fmt.Sprintf("%s (blocks in Azure container %s)", path, c)
	}
	return path
}

// uiURLOf is the UI's address: that of the first sightline_query
// extension the service runs, or "" when it runs none.
func uiURLOf(conf *confmap.Conf) string {
	for _, id := range serviceExtensions(conf) {
		if id.Type().String() == queryType {
			return uiURL(subMap(conf, "extensions::"+id.String()))
		}
	}
	return ""
}

// uiURL is the UI's address on the query extension's endpoint. A wildcard
// host is shown as localhost, where the UI is reachable from this machine.
func uiURL(sub map[string]any) string {
	ep, _ := sub["endpoint"].(string)
	if ep == "" {
		ep = "localhost:3200"
	}
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		return ""
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	scheme := "http"
	if _, tls := sub["tls"].(map[string]any); tls {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/ui/"
}

// pipelineReceivers returns the IDs of the receivers that some pipeline
// uses, without repeats: OTLP's first, the others by ID.
func pipelineReceivers(conf *confmap.Conf) []component.ID {
	pipes := subMap(conf, "service::pipelines")
	seen := map[component.ID]bool{}
	for _, p := range pipes {
		m, _ := p.(map[string]any)
		list, _ := m["receivers"].([]any)
		for _, r := range list {
			s, _ := r.(string)
			var id component.ID
			if id.UnmarshalText([]byte(s)) == nil {
				seen[id] = true
			}
		}
	}
	ids := slices.Collect(maps.Keys(seen))
	slices.SortFunc(ids, func(a, b component.ID) int {
		ao, bo := a.Type().String() != "otlp", b.Type().String() != "otlp"
		if ao != bo {
			if bo {
				return -1
			}
			return 1
		}
		return strings.Compare(a.String(), b.String())
	})
	return ids
}

// serviceExtensions returns the IDs in service::extensions, in order.
func serviceExtensions(conf *confmap.Conf) []component.ID {
	list, _ := conf.Get("service::extensions").([]any)
	var ids []component.ID
	for _, e := range list {
		s, _ := e.(string)
		var id component.ID
		if id.UnmarshalText([]byte(s)) == nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// subMap is the map at a config path, empty when it is unset or not a map.
func subMap(conf *confmap.Conf, path string) map[string]any {
	if !conf.IsSet(path) {
		return map[string]any{}
	}
	sub, err := conf.Sub(path)
	if err != nil {
		return map[string]any{}
	}
	return sub.ToStringMap()
}

// announceWhenRunning writes line to w once col is running, which is when
// its receivers and the UI accept connections. It returns without a word
// if col stops first or ctx ends. The collector has no callback for this,
// so its state is polled, as its own tests do.
func announceWhenRunning(ctx context.Context, col *otelcol.Collector, w io.Writer, line string) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		switch col.GetState() {
		case otelcol.StateRunning:
			fmt.Fprintln(w, line)
			return
		case otelcol.StateClosing, otelcol.StateClosed:
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
