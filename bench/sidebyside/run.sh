#!/usr/bin/env bash
# Sightline and Tempo on the same data, queried through the Tempo API both
# serve (docs/benchmarks.md, "Side by side with Tempo"):
#
#   TEMPO=/tmp/tempo bench/sidebyside/run.sh
#
# Build Tempo from its published source first, outside this repository:
#
#   git clone https://github.com/grafana/tempo && cd tempo && git checkout v3.0.3
#   CGO_ENABLED=0 GOFLAGS=-mod=vendor GOPROXY=off go build -o /tmp/tempo ./cmd/tempo
#
# It starts the all-in-one with its defaults and Tempo's single binary
# (bench/sidebyside/tempo.yaml) on fresh directories, sends both the same
# workload at RATE spans/s for DURATION, waits until each has written
# everything to blocks, and runs every query RUNS times against each,
# alternating between them.
#
# BASE=/path/to/an/older/sightline adds that build to the same run, for an
# A/B of a change: once both have written their blocks, Sightline stops,
# its data directory is copied, and the older build serves the copy on the
# ports of bench/sidebyside/base.yaml while this tree's build serves the
# original. All three are queried in turn.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${TEMPO:?set TEMPO to a tempo binary}"
rate=${RATE:-20000}
duration=${DURATION:-120s}
runs=${RUNS:-50}
tmp=$(mktemp -d)
go build -o "$tmp/sightline" ./cmd/sightline
go build -o "$tmp/sidebyside" ./bench/sidebyside
sed "s#@DIR@#$tmp/tempo#g" bench/sidebyside/tempo.yaml >"$tmp/tempo.yaml"
base=${BASE:-}
for port in 3200 4317 3210 4417 13133 ${base:+3300 4327 13143}; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "port $port is taken; stop what listens there first" >&2
		exit 1
	fi
done
SIGHTLINE_DATA=$tmp/sightline-data "$tmp/sightline" >"$tmp/sightline.log" 2>&1 &
sl=$!
"$TEMPO" -config.file "$tmp/tempo.yaml" >"$tmp/tempo.log" 2>&1 &
tp=$!
bp=
stop() {
	kill $sl $tp $bp 2>/dev/null || true
	# Tempo's live store can take minutes to drain on SIGTERM; a benchmark
	# does not need its data afterwards.
	for _ in $(seq 30); do
		kill -0 $sl 2>/dev/null || kill -0 $tp 2>/dev/null || { [ -n "$bp" ] && kill -0 $bp 2>/dev/null; } || break
		sleep 1
	done
	kill -9 $sl $tp $bp 2>/dev/null || true
	cp "$tmp/sightline.log" "$tmp/tempo.log" /tmp/ 2>/dev/null || true
	[ -z "$bp" ] || cp "$tmp/base.log" /tmp/sightline-base.log 2>/dev/null || true
	rm -rf "$tmp"
}
trap stop EXIT
until curl -sf http://127.0.0.1:13133/ >/dev/null && curl -sf http://127.0.0.1:3210/ready >/dev/null; do
	kill -0 $sl && kill -0 $tp || { tail -20 "$tmp/sightline.log" "$tmp/tempo.log"; exit 1; }
	sleep 1
done
"$tmp/sidebyside" load -otlp 127.0.0.1:4317,127.0.0.1:4417 -rate "$rate" -duration "$duration" -out "$tmp/data"
# Both query their heads too, but the comparison is of blocks: wait until
# Sightline's head is empty and Tempo has no live trace or block waiting.
echo "waiting for both to write their blocks"
until curl -sf http://127.0.0.1:3200/api/sightline/v1/status | grep -q '"spans_in_head":0[,}]'; do sleep 2; done
until m=$(curl -sf http://127.0.0.1:3210/metrics) &&
	! grep -E '^tempo_live_store_(live_traces|complete_queue_length)(\{[^}]*\})? [1-9]' <<<"$m" >/dev/null &&
	grep -E '^tempo_live_store_blocks_completed_total [1-9]' <<<"$m" >/dev/null; do
	sleep 2
done
du -sh "$tmp/sightline-data" "$tmp/tempo/blocks"
urls=http://127.0.0.1:3200,http://127.0.0.1:3210
names=sightline,tempo
if [ -n "$base" ]; then
	kill $sl
	wait $sl || true
	cp -a "$tmp/sightline-data" "$tmp/base-data"
	SIGHTLINE_DATA=$tmp/sightline-data "$tmp/sightline" >>"$tmp/sightline.log" 2>&1 &
	sl=$!
	SIGHTLINE_DATA=$tmp/base-data "$base" --config builtin:all-in-one --config bench/sidebyside/base.yaml >"$tmp/base.log" 2>&1 &
	bp=$!
	until curl -sf http://127.0.0.1:13133/ >/dev/null && curl -sf http://127.0.0.1:13143/ >/dev/null; do
		kill -0 $sl && kill -0 $bp || { tail -20 "$tmp/sightline.log" "$tmp/base.log"; exit 1; }
		sleep 1
	done
	urls=$urls,http://127.0.0.1:3300
	names=$names,base
fi
"$tmp/sidebyside" query -http "$urls" -names "$names" -in "$tmp/data" -runs "$runs"
