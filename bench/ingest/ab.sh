#!/usr/bin/env bash
# Compares the all-in-one default of two commits on the same load, runs
# interleaved A B, B A, A B ... so that the machine's drift falls on both
# alike: with A B A B, a machine getting slower through the runs makes
# every B look slower (docs/benchmarks.md, "Block format 2"). Compare
# rounds in pairs. pair.sh runs the two at the same time instead, which
# resolves differences of a percent or two that runs minutes apart do
# not.
#
#   bench/ingest/ab.sh REV_A REV_B [SECONDS [ROUNDS [RATE]]]
#   bench/ingest/ab.sh 1dc96e0 b03b421 240 2 20000
#
# Each commit is built from `git archive` into a temporary directory; each
# run starts `sightline` with no arguments on a fresh data directory and
# offers RATE spans/s for SECONDS with bench/ingest (built from the work
# tree), which prints RSS, CPU per acknowledged span and refusals.
set -euo pipefail
cd "$(dirname "$0")/../.."
a=$1 b=$2 secs=${3:-240} rounds=${4:-2} rate=${5:-20000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for rev in "$a" "$b"; do
	mkdir -p "$tmp/src-$rev"
	git archive "$rev" | tar -x -C "$tmp/src-$rev"
	(cd "$tmp/src-$rev" && CGO_ENABLED=0 go build -o "$tmp/sightline-$rev" ./cmd/sightline)
done
go build -o "$tmp/ingest" ./bench/ingest
if curl -sf http://localhost:13133/ >/dev/null 2>&1; then
	echo "something already answers on :13133; stop it first" >&2
	exit 1
fi
for round in $(seq "$rounds"); do
	order=("$a" "$b")
	if ((round % 2 == 0)); then
		order=("$b" "$a")
	fi
	for rev in "${order[@]}"; do
		rm -rf "$tmp/data"
		SIGHTLINE_DATA=$tmp/data "$tmp/sightline-$rev" >"$tmp/sightline.log" 2>&1 &
		pid=$!
		for _ in $(seq 300); do
			curl -sf http://localhost:13133/ >/dev/null && break
			kill -0 $pid || { cat "$tmp/sightline.log"; exit 1; }
			sleep 0.2
		done
		echo "== round $round, $rev"
		"$tmp/ingest" -pid "$pid" -rate "$rate" -duration "${secs}s" -check 100
		kill $pid
		wait $pid || true
	done
done
