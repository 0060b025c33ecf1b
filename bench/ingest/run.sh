#!/usr/bin/env bash
# Runs the ingest benchmark against the all-in-one default config and
# charts RSS over time (docs/benchmarks.md):
#
#   bench/ingest/run.sh NAME [bench/ingest flags...]
#   bench/ingest/run.sh rss-20k -rate 20000 -duration 10m
#   OVERLAY=fanin8.yaml bench/ingest/run.sh fanin8-40k -rate 40000 -duration 10m
#
# It builds the binary and the load generator, starts `sightline` with no
# arguments on a fresh data directory, offers the load, reads a sample of
# acknowledged traces back by ID, and writes docs/bench/NAME.csv and
# NAME.png (gnuplot, Debian's gnuplot-nox).
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1
shift
out=${OUT:-docs/bench}
mkdir -p "$out"
tmp=$(mktemp -d)
# Static, as the image and the packages build it: a cgo build keeps 40-50
# MiB more of its file resident (175-178 MiB against 124-138), which the
# Go soft limit gives up (internal/memlimit), so it would measure a
# process with less heap and a lower admission threshold than users run.
CGO_ENABLED=0 go build -o "$tmp/sightline" ./cmd/sightline
go build -o "$tmp/ingest" ./bench/ingest
if curl -sf http://localhost:13133/ >/dev/null 2>&1; then
	echo "something already answers on :13133; stop it first" >&2
	exit 1
fi
# OVERLAY=file.yaml runs the all-in-one with that file over it (a setting
# to compare against the default).
args=()
if [ -n "${OVERLAY:-}" ]; then
	args=(--config builtin:all-in-one --config "$OVERLAY")
fi
SIGHTLINE_DATA=$tmp/data "$tmp/sightline" "${args[@]}" >"$tmp/sightline.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; cp "$tmp/sightline.log" "/tmp/sightline-$name.log"; rm -rf "$tmp"' EXIT
for _ in $(seq 300); do
	curl -sf http://localhost:13133/ >/dev/null && break
	kill -0 $pid || { cat "$tmp/sightline.log"; exit 1; }
	sleep 0.2
done
"$tmp/ingest" -pid "$pid" -csv "$out/$name.csv" "$@"
grep -E "store memory budget|wal replayed" "$tmp/sightline.log" | head -5 || true
gnuplot -e "csv='$out/$name.csv'; png='$out/$name.png'; name='$name'" bench/ingest/rss.gp
