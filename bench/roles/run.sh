#!/usr/bin/env bash
# The all-in-one against an ingester, a querier and a compactor sharing a
# file:// bucket, on the same data, queried through the Tempo API both
# serve (docs/benchmarks.md, "Through a querier"):
#
#   bench/roles/run.sh
#
# It starts the four processes with their builtin configs (ports moved
# apart by the overlays here), sends both the same workload at RATE
# spans/s for DURATION with bench/sidebyside, waits until the all-in-one's
# head is empty and the ingester has cut and the querier polled, and runs
# every query RUNS times against each, alternating between them. The
# querier answers from the bucket and from the ingester's handoff.
set -euo pipefail
cd "$(dirname "$0")/../.."
rate=${RATE:-10000}
duration=${DURATION:-120s}
runs=${RUNS:-30}
tmp=$(mktemp -d)
CGO_ENABLED=0 go build -o "$tmp/sightline" ./cmd/sightline
go build -o "$tmp/sidebyside" ./bench/sidebyside
for port in 3200 4317 13133 8888 3300 3201 4417 13134 13135 13136 8889 8890 8891; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "port $port is taken; stop what listens there first" >&2
		exit 1
	fi
done
# The all-in-one keeps its blocks under its data directory, apart from the
# roles' bucket.
SIGHTLINE_DATA=$tmp/aio "$tmp/sightline" >"$tmp/aio.log" 2>&1 &
pids=($!)
for role in ingester querier compactor; do
	SIGHTLINE_BUCKET_URL=file://$tmp/bucket SIGHTLINE_DATA=$tmp/$role "$tmp/sightline" run --config builtin:$role --config bench/roles/$role.yaml >"$tmp/$role.log" 2>&1 &
	pids+=($!)
done
stop() {
	kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
	cp "$tmp"/*.log /tmp/ 2>/dev/null || true
	rm -rf "$tmp"
}
trap stop EXIT
for port in 13133 13134 13135 13136; do
	until curl -sf http://127.0.0.1:$port/ >/dev/null; do
		for p in "${pids[@]}"; do kill -0 "$p" || { tail -20 "$tmp"/*.log; exit 1; }; done
		sleep 1
	done
done
"$tmp/sidebyside" load -otlp 127.0.0.1:4317,127.0.0.1:4417 -rate "$rate" -duration "$duration" -out "$tmp/data"
echo "waiting for both to write their blocks"
until curl -sf http://127.0.0.1:3200/api/sightline/v1/status | grep -q '"spans_in_head":0[,}]'; do sleep 2; done
# The ingester cuts its head within block::max_duration (30 s) and the
# querier polls every 30 s.
sleep 65
du -sh "$tmp/aio" "$tmp/bucket"
"$tmp/sidebyside" query -http http://127.0.0.1:3200,http://127.0.0.1:3300 -names all-in-one,querier -in "$tmp/data" -runs "$runs"
