package pipeline

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func runCommand(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := NewCommand("test")
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// TestValidateCommandSetFlag checks --set: dots become path separators and
// the value is applied over every --config.
func TestValidateCommandSetFlag(t *testing.T) {
	out, err := runCommand(t, "validate", "--config", "builtin:all-in-one",
		"--set", "processors.batch.send_batch_size=100", "--set", "processors.batch.send_batch_max_size=10")
	if !errors.Is(err, errInvalidConfig) {
		t.Fatalf("err = %v, want errInvalidConfig", err)
	}
	if !strings.Contains(out, "processors::batch: send_batch_max_size must be greater or equal to send_batch_size") {
		t.Errorf("output:\n%s", out)
	}
	if _, err := runCommand(t, "validate", "--set", "no-equals-sign"); err == nil {
		t.Error("--set without = accepted")
	}
}

// TestValidateCommandEnvProvider checks the env: provider, which the
// Fargate seed uses to pass its whole config (-config=env:OTEL_CONFIG).
func TestValidateCommandEnvProvider(t *testing.T) {
	t.Setenv("SIGHTLINE_TEST_CONFIG", `
receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:0"}}}}
exporters: {debug: {verbosity: loud}}
service: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}
`)
	out, err := runCommand(t, "validate", "--config", "env:SIGHTLINE_TEST_CONFIG")
	if !errors.Is(err, errInvalidConfig) || !strings.Contains(out, "exporters::debug:") || !strings.Contains(out, "loud") {
		t.Fatalf("err = %v, output:\n%s", err, out)
	}
	t.Setenv("SIGHTLINE_TEST_CONFIG", `
receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:0"}}}}
exporters: {debug: {verbosity: basic}}
service: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}
`)
	out, err = runCommand(t, "validate", "--config", "env:SIGHTLINE_TEST_CONFIG")
	if err != nil || !strings.Contains(out, "configuration is valid") {
		t.Fatalf("err = %v, output:\n%s", err, out)
	}
}
