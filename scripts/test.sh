#!/usr/bin/env bash
# Runs every Sightline test on a fresh machine. It installs what the tests
# need by itself (Go modules; Debian's prometheus package, whose server and
# promtool the PromQL differential test runs against; Debian's Alertmanager,
# which the UI test's rules notify; Debian's chromium and playwright-core
# from npm for the UI's browser tests; podman, runc, rpm and systemd for
# the image and package tests; helm; SeaweedFS's S3 server), so CI and
# newcomers run the same thing: `./scripts/test.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
	echo "scripts/test.sh: Go is required (see go.mod for the version)" >&2
	exit 1
fi

# Debian packages the tests run for real. Installed once; later runs find
# them on PATH.
missing=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
# The container image test builds and runs the image with podman (runc:
# crun refuses the hybrid cgroups of CI's containers).
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
# The package test reads the .rpm with rpm and checks the unit with
# systemd-analyze.
command -v rpm >/dev/null 2>&1 || missing+=(rpm)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
	echo "== apt-get install ${missing[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	# The package's service is not started: the test runs its own server.
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# playwright-core drives Debian's chromium; it downloads no browser.
if [ ! -d e2e/ui/node_modules/playwright-core ]; then
	echo "== npm ci (e2e/ui)"
	(cd e2e/ui && npm ci --no-audit --no-fund --loglevel=error)
fi

# Every build static, as the e2e binary is (the container image has no
# libc): one setting, so that vet, the tests and the binary share the
# compiled packages instead of building everything twice.
export CGO_ENABLED=0

echo "== go mod download"
go mod download

# helm renders the chart in e2e/helm_test.go. It is built from its own
# module, outside Sightline's go.mod, so that its Kubernetes libraries do
# not move the ones the Collector's components are built with.
if ! command -v helm >/dev/null 2>&1 && [ ! -x "$(go env GOPATH)/bin/helm" ]; then
	echo "== go install helm"
	go install helm.sh/helm/v4/cmd/helm@v4.3.2
fi

# SeaweedFS's S3 server is the bucket e2e/cluster_test.go's processes
# share. Built from e2e/seaweedfs, a module of its own for the same reason;
# every run, so that the binary is the version that module pins (the build
# cache makes a later run a link).
echo "== go build weed (SeaweedFS, e2e/seaweedfs)"
go build -C e2e/seaweedfs -o "$(go env GOPATH)/bin/weed" github.com/seaweedfs/seaweedfs/weed

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test"
# The e2e package builds the binary and starts it as a process; the cold
# build of the collector components dominates the first run.
go test -count=1 -timeout 45m ./...
