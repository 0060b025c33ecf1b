package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPackages builds the .deb and .rpm from the tests' binary with
// deploy/packages and checks what they hold with dpkg-deb and rpm. Where
// the test runs as root (CI), it installs the .deb on the machine,
// verifies the systemd unit there, runs the unit's commands as the
// package's user, and removes the package again.
func TestPackages(t *testing.T) {
	out := t.TempDir()
	build := exec.Command("go", "run", "./deploy/packages", "-binary", binary, "-version", "0.1.0-e2e", "-out", out)
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	built, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("deploy/packages: %v\n%s", err, built)
	}
	var deb, rpm string
	for _, p := range strings.Fields(string(built)) {
		switch filepath.Ext(p) {
		case ".deb":
			deb = p
		case ".rpm":
			rpm = p
		}
	}
	if deb == "" || rpm == "" {
		t.Fatalf("deploy/packages wrote no .deb and .rpm:\n%s", built)
	}

	// The .deb: its control fields, its files and which of them are
	// configuration that an upgrade keeps.
	info := runOut(t, "dpkg-deb", "--info", deb)
	for _, want := range []string{"Package: sightline", "Version: 0.1.0~e2e", "Architecture: amd64", "Depends: passwd"} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb --info lacks %q:\n%s", want, info)
		}
	}
	contents := runOut(t, "dpkg-deb", "--contents", deb)
	for _, want := range []string{"./usr/bin/sightline", "./lib/systemd/system/sightline.service", "./etc/sightline/config.yaml", "./etc/default/sightline"} {
		if !strings.Contains(contents, want) {
			t.Errorf("the .deb lacks %s:\n%s", want, contents)
		}
	}
	control := t.TempDir()
	runOut(t, "dpkg-deb", "--control", deb, control)
	conffiles, err := os.ReadFile(filepath.Join(control, "conffiles"))
	if err != nil || !strings.Contains(string(conffiles), "/etc/sightline/config.yaml") || !strings.Contains(string(conffiles), "/etc/default/sightline") {
		t.Errorf("conffiles: %q %v", conffiles, err)
	}
	for _, script := range []string{"postinst", "prerm"} {
		runOut(t, "sh", "-n", filepath.Join(control, script))
	}

	// The .rpm: the same files and the scripts.
	rpmFiles := runOut(t, "rpm", "-qpl", rpm)
	for _, want := range []string{"/usr/bin/sightline", "/lib/systemd/system/sightline.service", "/etc/sightline/config.yaml"} {
		if !strings.Contains(rpmFiles, want) {
			t.Errorf("the .rpm lacks %s:\n%s", want, rpmFiles)
		}
	}
	if scripts := runOut(t, "rpm", "-qp", "--scripts", rpm); !strings.Contains(scripts, "useradd --system") {
		t.Errorf("the .rpm's scripts do not create the user:\n%s", scripts)
	}
	if cfg := runOut(t, "rpm", "-qpc", rpm); !strings.Contains(cfg, "/etc/sightline/config.yaml") {
		t.Errorf("the .rpm does not mark the config as configuration:\n%s", cfg)
	}

	if os.Geteuid() != 0 {
		t.Log("not root: the packages were checked but not installed, nor the unit verified")
		return
	}
	installAndRun(t, deb)
}

// installAndRun installs the .deb on this machine, runs the unit's
// command as the package's user with the unit's environment, and purges
// the package, its user and its data afterwards.
func installAndRun(t *testing.T, deb string) {
	if _, err := exec.Command("dpkg-query", "-W", "sightline").CombinedOutput(); err == nil {
		t.Fatal("a sightline package is installed on this machine already; the test will not touch it")
	}
	t.Cleanup(func() {
		exec.Command("dpkg", "--purge", "sightline").Run()
		exec.Command("userdel", "sightline").Run()
		exec.Command("groupdel", "sightline").Run()
		os.RemoveAll("/var/lib/sightline")
	})
	runOut(t, "dpkg", "--install", deb)

	// As systemd would load it, with its binary and users in place.
	runOut(t, "systemd-analyze", "verify", "/lib/systemd/system/sightline.service")

	pw := runOut(t, "getent", "passwd", "sightline")
	if !strings.HasSuffix(strings.TrimSpace(pw), ":/var/lib/sightline:/usr/sbin/nologin") {
		t.Errorf("the sightline user: %s", pw)
	}
	fi, err := os.Stat("/var/lib/sightline")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o750 {
		t.Errorf("/var/lib/sightline has mode %v, want 0750", fi.Mode().Perm())
	}
	// ExecStartPre, then ExecStart, as the unit's user with its
	// environment (no systemd runs in CI's containers).
	uid, gid := atou(t, runOut(t, "id", "-u", "sightline")), atou(t, runOut(t, "id", "-g", "sightline"))
	asUser := func(args ...string) *exec.Cmd {
		cmd := exec.Command("/usr/bin/sightline", args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		cmd.Dir = "/var/lib/sightline"
		cmd.Env = append(os.Environ(), "SIGHTLINE_DATA=/var/lib/sightline")
		return cmd
	}
	if b, err := asUser("validate", "--config", "/etc/sightline/config.yaml").CombinedOutput(); err != nil {
		t.Fatalf("ExecStartPre: %v\n%s", err, b)
	}
	in := &instance{t: t, out: &syncBuffer{}, done: make(chan struct{}), Health: 13133, Dir: "/var/lib/sightline"}
	in.cmd = asUser("run", "--config", "/etc/sightline/config.yaml")
	in.cmd.Stdout, in.cmd.Stderr = in.out, in.out
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { in.waitErr = in.cmd.Wait(); close(in.done) }()
	defer func() {
		select {
		case <-in.done:
		default:
			in.cmd.Process.Kill()
			<-in.done
		}
	}()
	in.waitFor("the installed service's startup line", 2*time.Minute, func() bool {
		return strings.Contains(in.out.String(), "data in /var/lib/sightline; UI: http://localhost:3200/ui/")
	})
	if httpGet(t, "http://localhost:13133/") == "" {
		t.Error("the installed service's health check answered nothing")
	}
	// Its WAL is written by the service's user.
	var st syscall.Stat_t
	if err := syscall.Stat("/var/lib/sightline/wal", &st); err != nil {
		t.Errorf("the service wrote no WAL: %v\n%s", err, in.out.String())
	}
	if st.Uid != uid {
		t.Errorf("/var/lib/sightline/wal is owned by uid %d, not sightline (%d)", st.Uid, uid)
	}
	in.stop()

	runOut(t, "dpkg", "--remove", "sightline")
	if _, err := os.Stat("/usr/bin/sightline"); !os.IsNotExist(err) {
		t.Errorf("/usr/bin/sightline is still there after dpkg --remove: %v", err)
	}
	if _, err := os.Stat("/var/lib/sightline/wal"); err != nil {
		t.Errorf("dpkg --remove took the data with it: %v", err)
	}
}

func runOut(t *testing.T, name string, args ...string) string {
	t.Helper()
	b, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
	return string(b)
}

func atou(t *testing.T, s string) uint32 {
	t.Helper()
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}
