package pipeline

import (
	"context"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/collector/confmap"
)

func resolved(t *testing.T, uris ...string) *confmap.Conf {
	t.Helper()
	r, err := confmap.NewResolver(Settings("test", uris).ConfigProviderSettings.ResolverSettings)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := r.Resolve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return conf
}

func TestStartupLine(t *testing.T) {
	dataDir := t.TempDir()
	t.Setenv("SIGHTLINE_DATA", dataDir)
	rel, err := filepath.Abs("rel-data")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		uris []string
		want string
	}{{
		name: "all-in-one",
		want: "sightline test: OTLP/gRPC localhost:4317, OTLP/HTTP localhost:4318, Loki localhost:3100; data in " + dataDir + "; UI: http://localhost:3200/ui/",
	}, {
		// A container overlay: every listener on all interfaces; the UI is
		// shown at localhost, where this machine reaches it.
		name: "all-in-one on 0.0.0.0",
		uris: []string{DefaultConfigURI,
			"yaml:receivers::otlp::protocols::grpc::endpoint: 0.0.0.0:4317",
			"yaml:extensions::sightline_query::endpoint: 0.0.0.0:3200",
			"yaml:extensions::sightline_storage::path: rel-data",
		},
		want: "sightline test: OTLP/gRPC 0.0.0.0:4317, OTLP/HTTP localhost:4318, Loki localhost:3100; data in " + rel + "; UI: http://localhost:3200/ui/",
	}, {
		// Protocols named without endpoints listen on their defaults; a
		// receiver no pipeline uses is not started, so not listed.
		name: "defaults and unused receivers",
		uris: []string{`yaml:
receivers:
  otlp:
    protocols:
      grpc:
  otlp/unused:
    protocols:
      http:
        endpoint: localhost:9999
  syslog:
    tcp:
      listen_address: localhost:5140
    protocol: rfc5424
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
    logs:
      receivers: [syslog]
      exporters: [debug]
`},
		want: "sightline test: OTLP/gRPC localhost:4317, syslog tcp localhost:5140; no UI (no sightline_query extension)",
	}, {
		name: "UI over TLS, blocks in a bucket",
		uris: []string{DefaultConfigURI,
			"yaml:extensions::sightline_query::tls::cert_file: /etc/tls.crt",
			"yaml:extensions::sightline_storage::storage::backend: s3",
			"yaml:extensions::sightline_storage::storage::s3::bucket: traces",
		},
		want: "sightline test: OTLP/gRPC localhost:4317, OTLP/HTTP localhost:4318, Loki localhost:3100; data in " + dataDir + " (blocks in s3://traces); UI: https://localhost:3200/ui/",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if got := startupLine("test", resolved(t, tc.uris...)); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}
