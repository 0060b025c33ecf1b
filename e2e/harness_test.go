// Package e2e tests the real sightline binary as a process: it is built
// once in TestMain, started with config files on free ports, fed with the
// OpenTelemetry Go SDK and raw OTLP clients, and stopped with SIGTERM.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sightline-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "sightline")
	build := exec.Command("go", "build", "-o", binary, "../cmd/sightline")
	// Static, as the container image needs it (TestContainerImage puts
	// this binary in it); scripts/test.sh sets the same for every build,
	// so that the packages compiled for the other tests are reused.
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build sightline:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	// Below the kernel's ephemeral range (32768-60999 on Linux), so that no
	// outgoing connection of a running instance (a scrape, a gRPC client)
	// takes the port between this check and the child's bind: a port from
	// Listen(":0") is an ephemeral one, and that race failed a CI run with
	// "address already in use". Never handed out twice in one test binary.
	for range 1000 {
		p := 20000 + rand.IntN(12000)
		if portsHanded[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		portsHanded[p] = true
		return p
	}
	t.Fatal("no free port below the ephemeral range")
	return 0
}

var (
	portsMu     sync.Mutex
	portsHanded = map[int]bool{}
)

// syncBuffer collects a child's output while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// instance is one running sightline process.
type instance struct {
	t       *testing.T
	cmd     *exec.Cmd
	out     *syncBuffer
	done    chan struct{}
	waitErr error

	GRPC, HTTP, Health, Metrics int
	Dir                         string

	// args and env are what launch ran, for restart.
	args, env []string
}

// start runs `sightline run` with the given --config arguments (paths or
// URIs). The environment gives every config the ports and output directory
// it needs: OTLP_GRPC_PORT, OTLP_HTTP_PORT, HEALTH_PORT, METRICS_PORT and
// OUT_DIR, plus extra "K=V" pairs. It returns once the health check
// answers 200.
func start(t *testing.T, configs []string, extraEnv ...string) *instance {
	t.Helper()
	return newInstance(t).launch(runArgs(configs), extraEnv)
}

// newInstance returns an instance with free ports and its own directory,
// not yet started.
func newInstance(t *testing.T) *instance {
	return &instance{
		t: t, out: &syncBuffer{}, done: make(chan struct{}),
		GRPC: freePort(t), HTTP: freePort(t), Health: freePort(t), Metrics: freePort(t),
		Dir: t.TempDir(),
	}
}

// runArgs is `run` with a --config for each of configs.
func runArgs(configs []string) []string {
	args := []string{"run"}
	for _, c := range configs {
		args = append(args, "--config", c)
	}
	return args
}

// launch starts the binary with args and waits for the health check on
// in.Health.
func (in *instance) launch(args, extraEnv []string) *instance {
	t := in.t
	t.Helper()
	in.spawn(args, extraEnv)
	healthURL := fmt.Sprintf("http://127.0.0.1:%d/", in.Health)
	in.waitFor("health check to answer 200", 60*time.Second, func() bool {
		select {
		case <-in.done:
			t.Fatalf("sightline exited early (%v):\n%s", in.waitErr, in.out.String())
		default:
		}
		resp, err := http.Get(healthURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return in
}

// spawn starts the binary with args and returns at once; the process is
// killed at the end of the test if it still runs.
func (in *instance) spawn(args, extraEnv []string) {
	t := in.t
	t.Helper()
	in.args, in.env = args, extraEnv
	in.cmd = exec.Command(binary, args...)
	in.cmd.Env = append(os.Environ(),
		"OTLP_GRPC_PORT="+strconv.Itoa(in.GRPC),
		"OTLP_HTTP_PORT="+strconv.Itoa(in.HTTP),
		"HEALTH_PORT="+strconv.Itoa(in.Health),
		"METRICS_PORT="+strconv.Itoa(in.Metrics),
		"OUT_DIR="+in.Dir,
		"SIGHTLINE_DATA="+filepath.Join(in.Dir, "data"),
	)
	in.cmd.Env = append(in.cmd.Env, extraEnv...)
	in.cmd.Stdout, in.cmd.Stderr = in.out, in.out
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { in.waitErr = in.cmd.Wait(); close(in.done) }()
	t.Cleanup(func() {
		select {
		case <-in.done:
		default:
			_ = in.cmd.Process.Kill()
			<-in.done
		}
		if t.Failed() {
			t.Logf("sightline output:\n%s", in.out.String())
		}
	})
}

// waitFor polls cond until it holds or the deadline passes.
func (in *instance) waitFor(what string, timeout time.Duration, cond func() bool) {
	in.t.Helper()
	waitFor(in.t, what, timeout, cond)
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill ends the process with SIGKILL, as the kernel's OOM killer or a
// node's loss would, and waits for it.
func (in *instance) kill() {
	in.t.Helper()
	if err := in.cmd.Process.Kill(); err != nil {
		in.t.Fatal(err)
	}
	<-in.done
}

// restart runs the same command again, on the same ports and in the same
// directory, after the process has exited; it returns the new instance
// once its health check answers.
func (in *instance) restart() *instance {
	in.t.Helper()
	select {
	case <-in.done:
	default:
		in.t.Fatal("restart of a process that still runs")
	}
	next := &instance{
		t: in.t, out: &syncBuffer{}, done: make(chan struct{}),
		GRPC: in.GRPC, HTTP: in.HTTP, Health: in.Health, Metrics: in.Metrics, Dir: in.Dir,
	}
	return next.launch(in.args, in.env)
}

// stop sends SIGTERM and requires a clean exit with status 0.
func (in *instance) stop() {
	in.t.Helper()
	if err := in.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		in.t.Fatal(err)
	}
	select {
	case <-in.done:
	case <-time.After(60 * time.Second):
		in.t.Fatalf("sightline did not exit within 60s of SIGTERM:\n%s", in.out.String())
	}
	if in.waitErr != nil {
		in.t.Fatalf("sightline exited with %v after SIGTERM:\n%s", in.waitErr, in.out.String())
	}
}

// validate runs `sightline validate` and returns its combined output and exit code.
func validate(t *testing.T, env []string, configs ...string) (string, int) {
	t.Helper()
	args := []string{"validate"}
	for _, c := range configs {
		args = append(args, "--config", c)
	}
	cmd := exec.CommandContext(context.Background(), binary, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	default:
		t.Fatal(err)
		return "", -1
	}
}

// lines returns the non-empty lines of s.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}
