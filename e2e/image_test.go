package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// podman runs Debian's podman on a store of the test's own, so that the
// test neither needs nor touches the machine's images. The vfs driver and
// cgroupfs work inside the unprivileged containers CI machines are; runc,
// not crun, because crun refuses hybrid cgroup hierarchies; no default
// ulimits, because raising them is refused there too.
type podman struct {
	t    *testing.T
	args []string
	env  []string
}

func newPodman(t *testing.T) *podman {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatal("podman is not installed: scripts/test.sh installs Debian's podman and runc")
	}
	dir, err := os.MkdirTemp("", "sightline-podman")
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "containers.conf")
	if err := os.WriteFile(conf, []byte("[containers]\ndefault_ulimits = []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &podman{
		t: t,
		args: []string{
			"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
			"--storage-driver", "vfs", "--runtime", "runc", "--cgroup-manager", "cgroupfs",
		},
		env: append(os.Environ(), "CONTAINERS_CONF="+conf),
	}
	t.Cleanup(func() {
		// vfs layers are plain directories; podman removes what it made.
		_, _ = p.try("rm", "--all", "--force")
		_, _ = p.try("rmi", "--all", "--force")
		os.RemoveAll(dir)
	})
	return p
}

// try runs podman and returns its standard output and any error, with its
// standard error in the error.
func (p *podman) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", append(slices.Clone(p.args), args...)...)
	cmd.Env = p.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("podman %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func (p *podman) run(args ...string) string {
	p.t.Helper()
	out, err := p.try(args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

// TestContainerImage builds the image's final stage, as the Dockerfile
// has it, from the binary the tests built (static: TestMain builds it
// with CGO off, as the Dockerfile's build stage does) and the root
// filesystem deploy/docker/rootfs.sh lays out, since CI cannot pull the
// Go base image. It checks the image's config and files, then runs it:
// the health check passes inside the container, OTLP sent to it is
// queryable, its startup line names the UI, and it stops cleanly.
func TestContainerImage(t *testing.T) {
	pm := newPodman(t)

	// The build stage's output, made by the same script.
	ctxDir := t.TempDir()
	if out, err := exec.Command("../deploy/docker/rootfs.sh", binary, filepath.Join(ctxDir, "image")).CombinedOutput(); err != nil {
		t.Fatalf("rootfs.sh: %v\n%s", err, out)
	}
	dockerfile, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	final := string(dockerfile)
	final = final[strings.LastIndex(final, "\nFROM ")+1:]
	if !strings.HasPrefix(final, "FROM scratch\n") {
		t.Fatalf("the Dockerfile's last stage is not FROM scratch:\n%.200s", final)
	}
	containerfile := filepath.Join(t.TempDir(), "Containerfile")
	if err := os.WriteFile(containerfile, []byte(final), 0o644); err != nil {
		t.Fatal(err)
	}
	const image = "localhost/sightline:e2e"
	// Docker's format, not OCI's: only it keeps HEALTHCHECK.
	pm.run("build", "--format", "docker", "--build-context", "build="+ctxDir,
		"--build-arg", "VERSION=e2e", "--build-arg", "REVISION=abc123",
		"-f", containerfile, "-t", image, ctxDir)

	var inspected []struct {
		// podman keeps the health check beside the config.
		Healthcheck struct{ Test []string }
		Config      struct {
			User         string
			Entrypoint   []string
			Env          []string
			ExposedPorts map[string]struct{}
			Volumes      map[string]struct{}
			Labels       map[string]string
			WorkingDir   string
		}
	}
	if err := json.Unmarshal([]byte(pm.run("image", "inspect", image)), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("image inspect: %v", err)
	}
	cfg := inspected[0].Config
	if cfg.User != "10001:10001" {
		t.Errorf("user %q, want 10001:10001 (numeric, non-root)", cfg.User)
	}
	if !slices.Equal(cfg.Entrypoint, []string{"/sightline"}) {
		t.Errorf("entrypoint %q", cfg.Entrypoint)
	}
	for _, port := range []string{"4317/tcp", "4318/tcp", "3100/tcp", "3200/tcp", "13133/tcp", "8888/tcp"} {
		if _, ok := cfg.ExposedPorts[port]; !ok {
			t.Errorf("port %s not exposed: %v", port, cfg.ExposedPorts)
		}
	}
	if _, ok := cfg.Volumes["/data"]; !ok || cfg.WorkingDir != "/data" {
		t.Errorf("volumes %v, working dir %q: want /data", cfg.Volumes, cfg.WorkingDir)
	}
	for _, env := range []string{"SIGHTLINE_DATA=/data", "SIGHTLINE_LISTEN_HOST=0.0.0.0"} {
		if !slices.Contains(cfg.Env, env) {
			t.Errorf("env lacks %s: %v", env, cfg.Env)
		}
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.title":    "Sightline",
		"org.opencontainers.image.version":  "e2e",
		"org.opencontainers.image.revision": "abc123",
		"org.opencontainers.image.source":   "https://github.com/sightlinehq/sightline",
	} {
		if cfg.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, cfg.Labels[k], v)
		}
	}
	if hc := inspected[0].Healthcheck.Test; !slices.Equal(hc, []string{"CMD", "/sightline", "healthcheck"}) {
		t.Errorf("health check %q", hc)
	}

	// The files: the binary and certificates owned by root, the data
	// directory by the image's user, and no shell.
	files := imageFiles(t, pm, image)
	for path, want := range map[string]int{"sightline": 0, "etc/ssl/certs/ca-certificates.crt": 0, "etc/passwd": 0, "data": 10001} {
		h, ok := files[path]
		if !ok {
			t.Errorf("the image has no /%s", path)
			continue
		}
		if h.Uid != want || h.Gid != want {
			t.Errorf("/%s is owned by %d:%d, want %d:%d", path, h.Uid, h.Gid, want, want)
		}
	}
	for path := range files {
		if strings.HasSuffix(path, "bin/sh") || strings.HasSuffix(path, "bin/bash") || strings.HasSuffix(path, "busybox") {
			t.Errorf("the image has a shell: /%s", path)
		}
	}

	// Run it on the host's network (the default ports; the e2e tests that
	// use them run one at a time), with the anonymous /data volume.
	pm.run("run", "--detach", "--name", "sightline-e2e", "--network", "host", image)
	logs := func() string {
		out, err := pm.try("logs", "sightline-e2e")
		if err != nil {
			return err.Error()
		}
		return out
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the container's output:\n%s", logs())
		}
	})
	waitFor(t, "the container's startup line", 2*time.Minute, func() bool {
		return strings.Contains(logs(), "sightline dev: OTLP/gRPC 0.0.0.0:4317, OTLP/HTTP 0.0.0.0:4318, Loki 0.0.0.0:3100; data in /data; UI: http://localhost:3200/ui/")
	})
	// The image's own HEALTHCHECK command, run inside the container.
	waitFor(t, "the image's health check to pass", time.Minute, func() bool {
		_, err := pm.try("healthcheck", "run", "sightline-e2e")
		return err == nil
	})

	ctx := context.Background()
	te, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint("127.0.0.1:4317"), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(te), sdktrace.WithResource(testResource()))
	_, span := tp.Tracer("e2e").Start(ctx, "GET /in-a-container")
	span.End()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatalf("export to the container: %v\n%s", err, logs())
	}
	traceURL := "http://127.0.0.1:3200/api/traces/" + span.SpanContext().TraceID().String()
	waitFor(t, "the span on the container's query API", time.Minute, func() bool {
		resp, err := http.Get(traceURL)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && strings.Contains(string(b), "GET /in-a-container")
	})

	// SIGTERM, as docker stop and the kubelet send it: a clean exit.
	pm.run("stop", "--time", "60", "sightline-e2e")
	if code := strings.TrimSpace(pm.run("inspect", "--format", "{{.State.ExitCode}}", "sightline-e2e")); code != "0" {
		t.Errorf("the container exited with %s after SIGTERM:\n%s", code, logs())
	}
}

// imageFiles lists the files of an image by exporting a container made
// from it, without running it.
func imageFiles(t *testing.T, pm *podman, image string) map[string]*tar.Header {
	t.Helper()
	id := strings.TrimSpace(pm.run("create", image))
	defer pm.try("rm", id)
	out := filepath.Join(t.TempDir(), "fs.tar")
	pm.run("export", "--output", out, id)
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string]*tar.Header{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")] = h
	}
}
