#!/usr/bin/env bash
# Runs every Sightline test on a fresh machine. It installs what the tests
# need by itself (today: Go modules only), so CI and newcomers run the same
# thing: `./scripts/test.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
	echo "scripts/test.sh: Go is required (see go.mod for the version)" >&2
	exit 1
fi

echo "== go mod download"
go mod download

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
