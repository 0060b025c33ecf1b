package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"go.yaml.in/yaml/v3"
)

// TestECSTaskDefinition checks deploy/ecs/task-definition.json as `aws ecs
// register-task-definition --cli-input-json` would take it: every field
// known to the ECS API (the SDK's own input type, unknown fields refused),
// every enum one of its values, the sidecar started before the app and
// probed with the image's health check, and its config, carried in an
// environment variable as seed 003 carries it, the same as
// deploy/ecs/sidecar.yaml and valid for `sightline validate`.
func TestECSTaskDefinition(t *testing.T) {
	raw, err := os.ReadFile("../deploy/ecs/task-definition.json")
	if err != nil {
		t.Fatal(err)
	}
	var td ecs.RegisterTaskDefinitionInput
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&td); err != nil {
		t.Fatalf("not an ECS task definition: %v", err)
	}

	enum := func(what, v string, values []string) {
		if !slices.Contains(values, v) {
			t.Errorf("%s %q is not one of %v", what, v, values)
		}
	}
	enum("networkMode", string(td.NetworkMode), strs(types.NetworkMode("").Values()))
	if !slices.Contains(td.RequiresCompatibilities, types.CompatibilityFargate) || td.NetworkMode != types.NetworkModeAwsvpc {
		t.Errorf("not a Fargate task: %v, %s", td.RequiresCompatibilities, td.NetworkMode)
	}
	volumes := map[string]bool{}
	for _, v := range td.Volumes {
		volumes[*v.Name] = true
	}
	containers := map[string]types.ContainerDefinition{}
	var memory int32
	for _, c := range td.ContainerDefinitions {
		containers[*c.Name] = c
		if c.Memory != nil {
			memory += *c.Memory
		}
		for _, d := range c.DependsOn {
			enum("dependsOn condition", string(d.Condition), strs(types.ContainerCondition("").Values()))
		}
		for _, m := range c.MountPoints {
			if !volumes[*m.SourceVolume] {
				t.Errorf("container %s mounts the undeclared volume %s", *c.Name, *m.SourceVolume)
			}
		}
		if c.LogConfiguration != nil {
			enum("logDriver", string(c.LogConfiguration.LogDriver), strs(types.LogDriver("").Values()))
		}
		for _, p := range c.PortMappings {
			enum("protocol", string(p.Protocol), strs(types.TransportProtocol("").Values()))
		}
	}
	if td.Memory == nil || memory > atoi(t, *td.Memory) {
		t.Errorf("the containers reserve %d MiB, more than the task's %v", memory, td.Memory)
	}

	sidecar, ok := containers["sightline"]
	if !ok {
		t.Fatal("no sightline container")
	}
	app := containers["app"]
	if !slices.ContainsFunc(app.DependsOn, func(d types.ContainerDependency) bool {
		return *d.ContainerName == "sightline" && d.Condition == types.ContainerConditionHealthy
	}) {
		// Seed 003 slept 4 s in its app because its collector image could
		// not be health-checked; this one can.
		t.Errorf("the app does not wait for the sidecar to be healthy: %v", app.DependsOn)
	}
	if sidecar.HealthCheck == nil || !slices.Equal(sidecar.HealthCheck.Command, []string{"CMD", "/sightline", "healthcheck"}) {
		t.Errorf("the sidecar's health check is not the image's: %+v", sidecar.HealthCheck)
	}
	if sidecar.Essential == nil || !*sidecar.Essential || sidecar.User == nil || *sidecar.User != "10001:10001" ||
		sidecar.ReadonlyRootFilesystem == nil || !*sidecar.ReadonlyRootFilesystem {
		t.Errorf("the sidecar should be essential, run as 10001 and have a read-only root")
	}
	if !slices.Equal(sidecar.Command, []string{"run", "--config", "env:SIGHTLINE_CONFIG"}) {
		t.Errorf("sidecar command %q", sidecar.Command)
	}
	if !slices.ContainsFunc(app.Environment, func(kv types.KeyValuePair) bool {
		return *kv.Name == "OTEL_EXPORTER_OTLP_ENDPOINT" && *kv.Value == "http://localhost:4317"
	}) {
		t.Errorf("the app does not send OTLP to the sidecar on localhost")
	}

	// The config it carries is sidecar.yaml.
	env := os.Environ()
	var config string
	for _, kv := range sidecar.Environment {
		env = append(env, *kv.Name+"="+*kv.Value)
		if *kv.Name == "SIGHTLINE_CONFIG" {
			config = *kv.Value
		}
	}
	for _, s := range sidecar.Secrets {
		env = append(env, *s.Name+"=from-"+*s.ValueFrom)
	}
	// Fargate sets the region.
	// What Fargate sets in every container: the region, and the task
	// metadata endpoint that resource detection and the
	// awsecscontainermetrics receiver read (the receiver will not build
	// without it, as upstream's will not).
	env = append(env, "AWS_REGION=eu-west-1", "ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/0123456789abcdef")
	file, err := os.ReadFile("../deploy/ecs/sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var fromEnv, fromFile map[string]any
	if err := yaml.Unmarshal([]byte(config), &fromEnv); err != nil {
		t.Fatalf("SIGHTLINE_CONFIG: %v", err)
	}
	if err := yaml.Unmarshal(file, &fromFile); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromEnv, fromFile) {
		t.Errorf("SIGHTLINE_CONFIG in task-definition.json differs from deploy/ecs/sidecar.yaml")
	}

	cmd := exec.Command(binary, append([]string{"validate"}, sidecar.Command[1:]...)...)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "configuration is valid") {
		t.Errorf("sightline validate of the sidecar's config: %v\n%s", err, out)
	}
}

func strs[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

func atoi(t *testing.T, s string) int32 {
	t.Helper()
	var n int32
	if err := json.Unmarshal([]byte(s), &n); err != nil {
		t.Fatalf("%q is not a number: %v", s, err)
	}
	return n
}
