#!/usr/bin/env bash
# Sightline's all-in-one default and Tempo 3's single binary on the same
# ingest load, in turn (S T, then T S, ...), so that a CPU figure per span
# is read against a peer measured on the same machine in the same hour:
# absolute figures on these shared machines move by up to 1.8x from day
# to day (docs/benchmarks.md).
#
#   TEMPO=/tmp/tempo bench/ingest/tempo.sh [SECONDS [ROUNDS [RATE]]]
#
# Build Tempo from its published source, outside this repository, as
# bench/sidebyside/run.sh says. Tempo runs with bench/sidebyside/tempo.yaml
# (local storage, OTLP/gRPC on 4417, its API on 3210); Sightline with no
# arguments. Each run starts on a fresh directory and offers RATE spans/s
# for SECONDS with bench/ingest, which samples the server's RSS and CPU.
# Sightline's runs then read 100 acknowledged traces back by ID through
# the Tempo API; Tempo's do not, since its live store takes spans from its
# distributor asynchronously and a trace acknowledged in the last seconds
# is not yet found (32 of 100 on 2026-12-06).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${TEMPO:?set TEMPO to a tempo binary}"
secs=${1:-240} rounds=${2:-2} rate=${3:-20000}
tmp=$(mktemp -d)
pid=
# A failed run (a read-back that finds a trace incomplete) stops the
# script: leave no server behind on the ports.
trap '[ -z "$pid" ] || kill -9 $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -o "$tmp/sightline" ./cmd/sightline
go build -o "$tmp/ingest" ./bench/ingest
for port in 3200 4317 3210 4417 13133; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "port $port is taken; stop what listens there first" >&2
		exit 1
	fi
done
run() {
	rm -rf "$tmp/data"
	mkdir -p "$tmp/data"
	local ready addr query check=100
	if [ "$1" = tempo ]; then
		sed "s#@DIR@#$tmp/data#g" bench/sidebyside/tempo.yaml >"$tmp/tempo.yaml"
		"$TEMPO" -config.file "$tmp/tempo.yaml" >"$tmp/server.log" 2>&1 &
		ready=http://127.0.0.1:3210/ready addr=127.0.0.1:4417 query=http://127.0.0.1:3210 check=0
	else
		SIGHTLINE_DATA=$tmp/data "$tmp/sightline" >"$tmp/server.log" 2>&1 &
		ready=http://127.0.0.1:13133/ addr=127.0.0.1:4317 query=http://127.0.0.1:3200
	fi
	pid=$!
	until curl -sf "$ready" >/dev/null; do
		kill -0 $pid || { tail -20 "$tmp/server.log"; exit 1; }
		sleep 0.5
	done
	echo "== round $round, $1"
	"$tmp/ingest" -addr "$addr" -query "$query" -pid "$pid" -rate "$rate" -duration "${secs}s" -check $check
	kill $pid
	# Tempo's live store can take minutes to drain on SIGTERM; the next
	# run needs the ports, not its data.
	for _ in $(seq 30); do
		kill -0 $pid 2>/dev/null || break
		sleep 1
	done
	kill -9 $pid 2>/dev/null || true
	wait $pid 2>/dev/null || true
	pid=
}
for round in $(seq "$rounds"); do
	if ((round % 2 == 1)); then
		run sightline
		run tempo
	else
		run tempo
		run sightline
	fi
done
