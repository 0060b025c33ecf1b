#!/usr/bin/env bash
# Ingest through one and through three ingesters of a shared file://
# bucket (docs/benchmarks.md, "Ingesters"):
#
#   bench/roles/ingest.sh        # INGESTERS="1 3" RATE=20000 DURATION=120s
#
# For each count in INGESTERS it starts a compactor, that many ingesters
# and a querier on a fresh bucket, each with its builtin config, and offers
# RATE spans/s for DURATION with bench/ingest, which sends each request (a
# batch of whole traces) to the next ingester in turn, as a gateway's
# trace-ID load balancing places whole traces. It prints the ingesters'
# summed CPU per acknowledged span and summed peak RSS, and reads 600
# acknowledged traces back by ID through the querier. Every process shares
# the machine's cores: on two cores three ingesters add no cores, only
# their per-process cost.
set -euo pipefail
cd "$(dirname "$0")/../.."
counts=${INGESTERS:-1 3}
rate=${RATE:-20000}
duration=${DURATION:-120s}
tmp=$(mktemp -d)
CGO_ENABLED=0 go build -o "$tmp/sightline" ./cmd/sightline
go build -o "$tmp/ingest" ./bench/ingest
pids=()
stop() {
	kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
	pids=()
}
trap 'stop; rm -rf "$tmp"' EXIT
healthy() {
	until curl -sf "http://127.0.0.1:$1/" >/dev/null; do
		for p in "${pids[@]}"; do kill -0 "$p" || { tail -20 "$tmp"/*.log; exit 1; }; done
		sleep 1
	done
}
for n in $counts; do
	bucket=$tmp/bucket-$n
	export SIGHTLINE_BUCKET_URL=file://$bucket
	SIGHTLINE_DATA=$tmp/compactor-$n "$tmp/sightline" run --config builtin:compactor --config bench/roles/compactor.yaml >"$tmp/compactor.log" 2>&1 &
	pids+=($!)
	addrs=() handoffs=() ingesters=()
	for i in $(seq 0 $((n - 1))); do
		BENCH_INGESTER=$i BENCH_HEALTH_PORT=$((13140 + i)) BENCH_HANDOFF_PORT=$((3210 + i)) \
			BENCH_OTLP_PORT=$((4420 + 2 * i)) BENCH_OTLP_HTTP_PORT=$((4421 + 2 * i)) BENCH_METRICS_PORT=$((8900 + i)) \
			SIGHTLINE_DATA=$tmp/ingester-$n-$i "$tmp/sightline" run --config builtin:ingester --config bench/roles/ingester.yaml >"$tmp/ingester-$i.log" 2>&1 &
		pids+=($!)
		ingesters+=($!)
		addrs+=("127.0.0.1:$((4420 + 2 * i))")
		handoffs+=("http://127.0.0.1:$((3210 + i))")
	done
	BENCH_INGESTERS="[$(IFS=,; echo "${handoffs[*]}")]" SIGHTLINE_DATA=$tmp/querier-$n \
		"$tmp/sightline" run --config builtin:querier --config bench/roles/querier.yaml >"$tmp/querier.log" 2>&1 &
	pids+=($!)
	healthy 13136
	healthy 13135
	for i in $(seq 0 $((n - 1))); do healthy $((13140 + i)); done
	echo "== $n ingester(s), $rate spans/s for $duration"
	"$tmp/ingest" -addr "$(IFS=,; echo "${addrs[*]}")" -pid "$(IFS=,; echo "${ingesters[*]}")" \
		-rate "$rate" -duration "$duration" -query http://127.0.0.1:3300 -check 600
	stop
done
