package e2e

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
)

const chartDir = "../deploy/helm/sightline"

// helmBinary finds the helm CLI: on PATH, or where scripts/test.sh
// installs it ($(go env GOPATH)/bin).
func helmBinary(t *testing.T) string {
	return goTool(t, "helm", "scripts/test.sh installs it with go install helm.sh/helm/v4/cmd/helm")
}

// goTool finds a program the tests run that scripts/test.sh builds from a
// Go module: on PATH, or in $(go env GOPATH)/bin. how says where it comes
// from when it is missing.
func goTool(t *testing.T, name, how string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("%s is not installed: %s", name, how)
	return ""
}

// TestHelmChart renders deploy/helm/sightline for every values profile
// with helm, decodes every manifest strictly with client-go's scheme (an
// unknown or misspelt field fails), checks what each profile makes and
// how its pods are locked down, and runs `sightline validate` on the
// config each container would run, as the container would run it.
func TestHelmChart(t *testing.T) {
	helm := helmBinary(t)
	profiles, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(profiles) == 0 {
		t.Fatalf("no profiles in %s/ci: %v", chartDir, err)
	}
	lint := exec.Command(helm, "lint", "--strict", chartDir)
	if out, err := lint.CombinedOutput(); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}

	wantKinds := map[string][]string{
		"":                          {"ServiceAccount", "ConfigMap", "Service", "StatefulSet", "NetworkPolicy"},
		"all-in-one-s3-values.yaml": {"StatefulSet"},
		"agent-gateway-values.yaml": {"StatefulSet", "DaemonSet", "Deployment", "HorizontalPodAutoscaler",
			"PodDisruptionBudget", "ClusterRole", "ClusterRoleBinding"},
	}
	for _, profile := range append([]string{""}, profiles...) {
		name := filepath.Base(profile)
		if profile == "" {
			name = ""
		}
		t.Run("values="+name, func(t *testing.T) {
			args := []string{"template", "sl", chartDir, "--namespace", "observability"}
			if profile != "" {
				args = append(args, "--values", profile)
				lint := exec.Command(helm, "lint", "--strict", chartDir, "--values", profile)
				if out, err := lint.CombinedOutput(); err != nil {
					t.Fatalf("helm lint: %v\n%s", err, out)
				}
			}
			out, err := exec.Command(helm, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, out)
			}
			objs := decodeManifests(t, out)
			kinds := map[string]bool{}
			for _, o := range objs {
				kinds[o.GetObjectKind().GroupVersionKind().Kind] = true
			}
			want, ok := wantKinds[name]
			if !ok {
				t.Fatalf("no expectations for profile %s: add them here", name)
			}
			for _, k := range want {
				if !kinds[k] {
					t.Errorf("no %s rendered", k)
				}
			}
			checkWorkloads(t, objs)
		})
	}

	// What a profile cannot leave out is refused with a message.
	for _, set := range [][]string{
		{"gateway.enabled=true"},
		{"gateway.enabled=true", "auth.tokenSecret=tok"},
		{"agent.enabled=true", "auth.tokenSecret=tok"},
	} {
		args := []string{"template", "sl", chartDir}
		for _, s := range set {
			args = append(args, "--set", s)
		}
		out, err := exec.Command(helm, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "required") && !strings.Contains(string(out), "enable") {
			t.Errorf("helm template --set %v: want a refusal that says what is missing, got %v\n%s", set, err, out)
		}
	}
}

// decodeManifests splits helm's output into documents and decodes each
// with client-go's scheme, refusing unknown and duplicate fields.
func decodeManifests(t *testing.T, out []byte) []runtime.Object {
	t.Helper()
	dec := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var objs []runtime.Object
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(out), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		obj, _, err := dec.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Errorf("manifest does not decode strictly: %v\n%s", err, doc)
			continue
		}
		objs = append(objs, obj)
	}
	return objs
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// checkWorkloads checks every pod template: locked down, probed, bounded,
// and running a config that `sightline validate` accepts.
func checkWorkloads(t *testing.T, objs []runtime.Object) {
	configMaps := map[string]*corev1.ConfigMap{}
	for _, o := range objs {
		if cm, ok := o.(*corev1.ConfigMap); ok {
			configMaps[cm.Name] = cm
		}
	}
	for _, o := range objs {
		var name string
		var spec *corev1.PodSpec
		switch w := o.(type) {
		case *appsv1.StatefulSet:
			name, spec = w.Name, &w.Spec.Template.Spec
		case *appsv1.Deployment:
			name, spec = w.Name, &w.Spec.Template.Spec
		case *appsv1.DaemonSet:
			name, spec = w.Name, &w.Spec.Template.Spec
		default:
			continue
		}
		psc := spec.SecurityContext
		if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: no RuntimeDefault seccomp profile", name)
		}
		// Only the agent runs as root, to read the kubelet's 0640 pod logs.
		root := psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0
		if root != strings.HasSuffix(name, "-agent") {
			t.Errorf("%s: runs as root: %v", name, root)
		}
		if !root && (psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot) {
			t.Errorf("%s: runAsNonRoot not set", name)
		}
		for _, c := range spec.Containers {
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s/%s: not read-only, unprivileged and without capabilities: %+v", name, c.Name, sc)
			}
			if c.StartupProbe == nil || c.LivenessProbe == nil || c.ReadinessProbe == nil {
				t.Errorf("%s/%s: missing probes", name, c.Name)
			}
			if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
				t.Errorf("%s/%s: no memory limit or CPU request", name, c.Name)
			}
			validateContainer(t, name, spec, c, configMaps)
		}
	}
}

// validateContainer runs `sightline validate` with the container's
// arguments and environment, its mounted ConfigMaps written to files.
// Values from Secrets and the downward API get stand-ins. kubeletstats
// with auth_type serviceAccount reads the pod's CA when it is built, so
// outside a pod an overlay gives it client certificates instead, as
// TestValidateDaemonSetAgent does.
func validateContainer(t *testing.T, name string, spec *corev1.PodSpec, c corev1.Container, configMaps map[string]*corev1.ConfigMap) {
	t.Helper()
	dir := t.TempDir()
	// Every mount is a local directory; a ConfigMap's holds its keys.
	mounts := map[string]string{} // container path -> local dir
	for _, m := range c.VolumeMounts {
		local := filepath.Join(dir, "mnt", m.Name)
		if err := os.MkdirAll(local, 0o755); err != nil {
			t.Fatal(err)
		}
		mounts[m.MountPath] = local
		for _, v := range spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			cm, ok := configMaps[v.ConfigMap.Name]
			if !ok {
				t.Errorf("%s: mounts the ConfigMap %s, which the chart does not render", name, v.ConfigMap.Name)
				continue
			}
			for k, data := range cm.Data {
				if err := os.WriteFile(filepath.Join(local, k), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// Longest mount path first, so that a mount inside another wins.
	paths := slices.SortedFunc(maps.Keys(mounts), func(a, b string) int { return len(b) - len(a) })
	local := func(p string) string {
		for _, m := range paths {
			if p == m || strings.HasPrefix(p, m+"/") {
				return mounts[m] + strings.TrimPrefix(p, m)
			}
		}
		return p
	}
	args := slices.Clone(c.Args)
	if len(args) == 0 || args[0] != "run" {
		t.Errorf("%s: args %q do not start with run", name, args)
		return
	}
	args[0] = "validate"
	for i, a := range args {
		args[i] = local(a)
	}
	env := []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	vars := map[string]string{}
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			v = "stand-in-for-" + e.Name
			if e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
				v = "node-1"
			}
		}
		// $(VAR) refers to a variable defined before, as Kubernetes expands it.
		for k, val := range vars {
			v = strings.ReplaceAll(v, "$("+k+")", val)
		}
		v = local(v)
		vars[e.Name] = v
		env = append(env, e.Name+"="+v)
	}
	if slices.Contains(args, "builtin:agent") {
		cert, key := writeSelfSignedCert(t, dir)
		overlay := filepath.Join(dir, "kubelet-tls.yaml")
		if err := os.WriteFile(overlay, []byte("receivers:\n  kubeletstats:\n    auth_type: tls\n    ca_file: "+cert+"\n    cert_file: "+cert+"\n    key_file: "+key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", overlay)
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || !strings.Contains(out.String(), "configuration is valid") {
		t.Errorf("%s/%s: sightline %s: %v\n%s", name, c.Name, strings.Join(args, " "), err, out.String())
	}
}
