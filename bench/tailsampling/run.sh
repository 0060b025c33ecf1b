#!/usr/bin/env bash
# Runs Sightline's tail_sampling and upstream's (tail_sampling_upstream)
# one after the other on the same load, in gateway.yaml, and charts RSS
# over time (docs/benchmarks.md):
#
#   bench/tailsampling/run.sh [SECONDS [RATE [WAITS...]]]
#   bench/tailsampling/run.sh 180 20000 30s 50s
#
# For each decision_wait and processor it starts the gateway on a fresh
# data directory, offers RATE workload-generator spans/s over OTLP/gRPC
# for SECONDS (bench/ingest, refusals counted, not retried), then reads the
# processor's decision counts from the gateway's self-metrics. It writes
# docs/bench/tailsampling-*.csv and tailsampling.png (gnuplot-nox).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-180}
rate=${2:-20000}
shift $(( $# > 2 ? 2 : $# ))
waits=("$@")
[ ${#waits[@]} -gt 0 ] || waits=(30s 50s)
out=${OUT:-docs/bench}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -o "$tmp/sightline" ./cmd/sightline
go build -o "$tmp/ingest" ./bench/ingest
if curl -sf http://localhost:13133/ >/dev/null 2>&1; then
	echo "something already answers on :13133; stop it first" >&2
	exit 1
fi
for wait in "${waits[@]}"; do
	for type in tail_sampling tail_sampling_upstream; do
		name=tailsampling-$type-$wait
		sed "s/TS_TYPE/$type/g" bench/tailsampling/gateway.yaml >"$tmp/gateway.yaml"
		rm -rf "$tmp/data"
		TS_WAIT=$wait SIGHTLINE_DATA=$tmp/data "$tmp/sightline" run --config "$tmp/gateway.yaml" >"$tmp/$name.log" 2>&1 &
		pid=$!
		for _ in $(seq 300); do
			curl -sf http://localhost:13133/ >/dev/null && break
			kill -0 $pid || { cat "$tmp/$name.log"; exit 1; }
			sleep 0.2
		done
		echo "== $type, decision_wait $wait"
		"$tmp/ingest" -pid "$pid" -csv "$out/$name.csv" -rate "$rate" -duration "${secs}s" -check 0
		metrics=$(curl -sf http://localhost:8888/metrics)
		grep -E '^otelcol_processor_tail_sampling_global_count_traces_sampled' <<<"$metrics" | sed -E 's/\{.*decision="([a-z_]+)".*\}/ \1/' || true
		grep -E '^otelcol_processor_tail_sampling_count_traces_sampled.*sampled="true"' <<<"$metrics" | sed -E 's/.*policy="([^"]+)".*\} /  policy \1: /' || true
		grep -E '^sightline_tail_sampling_(buffer_size|traces)' <<<"$metrics" || true
		kill $pid
		wait $pid || true
	done
done
gnuplot -e "dir='$out'; png='$out/tailsampling.png'" bench/tailsampling/rss.gp
