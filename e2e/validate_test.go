package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seedEnv is what the seed configs read from the environment. The seeds'
// own deployments set these; awss3 in particular requires a region.
var seedEnv = []string{
	"AWS_REGION=eu-west-1",
	"S3_LOGS_BUCKET=acme-logs",
	"ENVIRONMENT=production",
	"SIGNOZ_ENDPOINT=ingest.eu.signoz.cloud:443",
	"SIGNOZ_INGESTION_KEY=key",
	"OTEL_BEARER_TOKEN=token",
	"OTEL_GATEWAY_ENDPOINT=https://collector.internal:4318",
	"OTEL_TLS_CERT_FILE=/etc/otel/tls.crt",
	"OTEL_TLS_KEY_FILE=/etc/otel/tls.key",
	"GRAFANA_CLOUD_OTLP_ENDPOINT=https://otlp-gateway.grafana.net/otlp",
	"GRAFANA_CLOUD_OTLP_AUTH=dXNlcjpwYXNz",
	"MY_POD_IP=10.0.0.7",
}

// TestValidateSeedConfigs runs `sightline validate` on copies of every seed
// config. Those the seed README lists no invalid keys for must pass; the
// others must fail naming each listed key path, why, and what to use.
func TestValidateSeedConfigs(t *testing.T) {
	// want maps each file to the substrings its errors must contain, one
	// list per expected error line. nil means the file must validate.
	want := map[string][][]string{
		"lifemote-sidecar.yaml":   nil,
		"lifemote-gateway.yaml":   nil,
		"otel-demo-two-tier.yaml": nil,
		"fargate-sidecar.yaml":    nil,
		"k8s-configmap.yaml": {
			{"exporters::loki:", "removed", "v0.131.0", "otlp_http", "/otlp"},
		},
		"production-observability.yaml": {
			{"exporters::loki:", "removed", "v0.131.0", "otlp_http", "/otlp"},
		},
		"production-bundle.yaml": {
			{"processors::batch:", "send_batch_max_size must be greater or equal to send_batch_size", "set send_batch_size"},
			{"exporters::loki:", "removed", "v0.131.0", "otlp_http", "/otlp"},
			{"exporters::loki:", "has invalid keys: batch", "never had"},
		},
	}
	files, err := filepath.Glob("testdata/seed-configs/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Fatalf("found %d seed configs, the test knows %d", len(files), len(want))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			expect, ok := want[filepath.Base(f)]
			if !ok {
				t.Fatalf("no expectation for %s", f)
			}
			out, code := validate(t, seedEnv, f)
			if expect == nil {
				if code != 0 {
					t.Fatalf("validate failed (exit %d):\n%s", code, out)
				}
				return
			}
			if code == 0 {
				t.Fatalf("validate passed, want errors:\n%s", out)
			}
			errLines := errorLines(out)
			if len(errLines) != len(expect) {
				t.Errorf("got %d errors, want %d:\n%s", len(errLines), len(expect), out)
			}
			for _, parts := range expect {
				if !anyLineHasAll(errLines, parts) {
					t.Errorf("no error line contains all of %q:\n%s", parts, out)
				}
			}
		})
	}
}

// TestValidateReportsEveryError checks that one validate run reports all
// of a config's mistakes, each with its path.
func TestValidateReportsEveryError(t *testing.T) {
	out, code := validate(t, nil, "testdata/several-mistakes.yaml")
	if code == 0 {
		t.Fatalf("validate passed:\n%s", out)
	}
	expect := [][]string{
		{"receivers::otlp::protocols::grpc: has invalid keys: endpont"},
		{"receivers::awsfirehose:", `unknown type "awsfirehose"`, "otlp, prometheus"},
		{"processors::batch:", "send_batch_max_size"},
		{"processors::memory_limiter:", "limit"},
		{"exporters::loki:", "otlp_http"},
		{"exporters::logging:", "debug exporter"},
		{"exporters::awss3:", "s3_bucket is required"},
		{"exporters::awss3:", "region is required"},
		{"exporters::awss3:", `unknown marshaler "yaml"`},
		{"service::pipelines::traces::processors:", `"tail_sampling"`, "not configured"},
		{"service::pipelines::traces::exporters:", `"jaeger_thrift"`, "not configured"},
		{"service::extensions::0:", `"pprof"`, "not configured"},
	}
	errLines := errorLines(out)
	for _, parts := range expect {
		if !anyLineHasAll(errLines, parts) {
			t.Errorf("no error line contains all of %q", parts)
		}
	}
	if len(errLines) != len(expect) {
		t.Errorf("got %d errors, want %d", len(errLines), len(expect))
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

// TestRunRefusesInvalidConfig checks that run reports the same errors and
// exits non-zero instead of starting.
func TestRunRefusesInvalidConfig(t *testing.T) {
	out, code := runOnce(t, "testdata/several-mistakes.yaml")
	if code == 0 {
		t.Fatalf("run accepted an invalid config:\n%s", out)
	}
	if !strings.Contains(out, "service::pipelines::traces::exporters") || !strings.Contains(out, "exporters::awss3") {
		t.Errorf("run did not report every error:\n%s", out)
	}
}

// TestExampleConfigsValidate keeps configs/ loadable.
func TestExampleConfigsValidate(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeSelfSignedCert(t, dir)
	env := []string{
		"SIGHTLINE_GATEWAY_ENDPOINT=gateway:4317", "SIGHTLINE_TOKEN=t",
		"SIGHTLINE_QUEUE_DIR=" + dir, "SIGHTLINE_TLS_CERT_FILE=" + cert, "SIGHTLINE_TLS_KEY_FILE=" + key,
	}
	files, _ := filepath.Glob("../configs/*.yaml")
	if len(files) < 3 {
		t.Fatalf("expected the example configs, found %v", files)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		if out, code := validate(t, env, f); code != 0 {
			t.Errorf("%s: exit %d:\n%s", f, code, out)
		}
		// The embedded copy is the same file.
		if out, code := validate(t, env, "builtin:"+name); code != 0 {
			t.Errorf("builtin:%s: exit %d:\n%s", name, code, out)
		}
	}
	if _, err := os.Stat("../configs/all-in-one.yaml"); err != nil {
		t.Fatal(err)
	}
}

func errorLines(out string) []string {
	var errs []string
	for _, l := range lines(out) {
		if strings.HasPrefix(strings.TrimSpace(l), "- ") {
			errs = append(errs, l)
		}
	}
	return errs
}

func anyLineHasAll(ls []string, parts []string) bool {
	for _, l := range ls {
		ok := true
		for _, p := range parts {
			if !strings.Contains(l, p) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// TestValidateDaemonSetAgent runs `sightline validate` on a node agent laid
// out as Kubernetes users run one: pod logs through filelog's container
// parser, host and kubelet metrics, k8sattributes, delta metrics made
// cumulative, Fluent Bit and syslog forwarders, and trace-ID load
// balancing to gateways. Each of those components must be linked in and
// accept its upstream configuration.
//
// validate builds every component, as the collector does before it starts,
// and kubeletstats with auth_type serviceAccount reads the pod's service
// account CA when it is built. Outside a pod the test gives it client
// certificates instead, in an overlay, and leaves the file as users write it.
func TestValidateDaemonSetAgent(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeSelfSignedCert(t, dir)
	overlay := filepath.Join(dir, "kubelet-tls.yaml")
	if err := os.WriteFile(overlay, []byte("receivers:\n  kubeletstats:\n    auth_type: tls\n    ca_file: "+cert+"\n    cert_file: "+cert+"\n    key_file: "+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"MY_POD_IP=10.0.0.7", "K8S_NODE_NAME=node-1", "HOST_ROOT_PATH=" + dir}
	out, code := validate(t, env, "testdata/daemonset-agent.yaml", overlay)
	if code != 0 {
		t.Fatalf("validate failed (exit %d):\n%s", code, out)
	}
	if !strings.Contains(out, "configuration is valid") {
		t.Fatalf("validate passed without saying so:\n%s", out)
	}
}
