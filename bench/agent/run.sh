#!/usr/bin/env bash
# Agent-role benchmark: telemetrygen -> sightline (OTLP in, batch, OTLP out)
# -> a second sightline as the sink. Prints what the agent accepted and
# exported, its CPU-seconds per million spans, its peak RSS and the binary
# size. Loopback only; every process is stopped at the end.
#
#   bench/agent/run.sh [seconds] [procs] [workers] [rate-per-worker]
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${1:-60}
PROCS=${2:-2}
WORKERS=${3:-40}
RATE=${4:-1000}
OUT=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT

go build -ldflags "-s -w" -o "$OUT/sightline" ./cmd/sightline
GOBIN="$OUT" go install github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@v0.161.0

"$OUT/sightline" run --config bench/agent/sink.yaml >"$OUT/sink.log" 2>&1 &
"$OUT/sightline" run --config bench/agent/agent.yaml >"$OUT/agent.log" 2>&1 &
AGENT=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:18888/metrics >/dev/null && curl -sf http://127.0.0.1:28888/metrics >/dev/null && break; sleep 0.1; done

cpu() { awk '{print $14+$15}' /proc/$AGENT/stat; }
# Sums a counter over its series; newer collectors add a _total suffix.
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '{ split($1, n, "{") } n[1] == m || n[1] == m "_total" { s += $2 } END { printf "%d", s }'; }

cpu0=$(cpu)
acc0=$(metric 18888 otelcol_receiver_accepted_spans)
gens=()
for _ in $(seq "$PROCS"); do
	"$OUT/telemetrygen" traces --otlp-endpoint 127.0.0.1:14317 --otlp-insecure \
		--workers "$WORKERS" --rate "$RATE" --duration "${DUR}s" --child-spans 4 >/dev/null 2>&1 &
	gens+=($!)
done
wait "${gens[@]}" || true
# Let the last batch (timeout 1s) reach the sink.
for _ in $(seq 50); do
	[ "$(metric 18888 otelcol_exporter_sent_spans)" -ge "$(metric 18888 otelcol_receiver_accepted_spans)" ] && break
	sleep 0.1
done
cpu1=$(cpu)
acc1=$(metric 18888 otelcol_receiver_accepted_spans)
sent=$(metric 18888 otelcol_exporter_sent_spans)
sunk=$(metric 28888 otelcol_receiver_accepted_spans)
hz=$(getconf CLK_TCK)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$AGENT/status)
spans=$((acc1 - acc0))
cpus=$(echo "scale=2; ($cpu1 - $cpu0) / $hz" | bc)
echo "load:               $PROCS telemetrygen x $WORKERS workers x $RATE/s, ${DUR}s, 5 spans per trace"
echo "agent accepted:     $spans spans ($((spans / DUR)) spans/s)"
echo "agent exported:     $sent spans; sink accepted: $sunk"
echo "agent CPU:          ${cpus} s ($(echo "scale=2; $cpus * 1000000 / $spans" | bc) CPU-s per million spans)"
echo "agent peak RSS:     $((hwm / 1024)) MiB"
echo "binary (-s -w):     $(( $(stat -c %s "$OUT/sightline") / 1024 / 1024 )) MiB"
