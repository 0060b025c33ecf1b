#!/usr/bin/env bash
# Compares the all-in-one default of two commits on the same load at the
# same time: both run side by side, each on its own ports and data
# directory, each fed RATE spans/s by its own bench/ingest. On these
# shared machines a build's CPU a span moves by a tenth between runs
# minutes apart (ab.sh's interleaving spreads that drift, but one pair
# of runs still decides little); two processes measured through the same
# minutes see the same machine, so their difference is the builds'. Each
# round swaps which build has the default ports, and a round of a commit
# against itself shows what is left of the noise (docs/benchmarks.md).
#
#   bench/ingest/pair.sh REV_A REV_B [SECONDS [ROUNDS [RATE]]]
#   bench/ingest/pair.sh b0db42b HEAD 300 2 20000
#   OVERLAY_B=no-connectors.yaml bench/ingest/pair.sh HEAD HEAD 300 2 20000
#
# OVERLAY_A and OVERLAY_B name a config file run over the all-in-one on
# that side (a setting against the default, one commit on both sides).
#
# Keep 2 x RATE within what the box takes with both on it: at 20k each
# the two servers use about 0.7 of its two cores.
set -euo pipefail
overlay=("${OVERLAY_A:+$(realpath "$OVERLAY_A")}" "${OVERLAY_B:+$(realpath "$OVERLAY_B")}")
cd "$(dirname "$0")/../.."
a=$(git rev-parse --short "$1") b=$(git rev-parse --short "$2")
secs=${3:-300} rounds=${4:-2} rate=${5:-20000}
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
for rev in "$a" "$b"; do
	[ -x "$tmp/sightline-$rev" ] && continue
	mkdir -p "$tmp/src-$rev"
	git archive "$rev" | tar -x -C "$tmp/src-$rev"
	(cd "$tmp/src-$rev" && CGO_ENABLED=0 go build -o "$tmp/sightline-$rev" ./cmd/sightline)
done
go build -o "$tmp/ingest" ./bench/ingest
for port in 13133 13134; do
	if curl -sf "http://localhost:$port/" >/dev/null 2>&1; then
		echo "something already answers on :$port; stop it first" >&2
		exit 1
	fi
done
# The second slot: every port of the all-in-one moved by one or by 1000.
cat >"$tmp/ports.yaml" <<'EOF'
extensions:
  health_check: {http: {endpoint: localhost:13134}}
  sightline_query: {endpoint: localhost:3201}
receivers:
  otlp: {protocols: {grpc: {endpoint: localhost:5317}, http: {endpoint: localhost:5318}}}
  loki: {protocols: {http: {endpoint: localhost:3101}}}
  prometheus/self:
    config:
      scrape_configs:
        - job_name: sightline
          scrape_interval: 15s
          static_configs: [{targets: [localhost:8889]}]
service:
  telemetry:
    metrics:
      readers:
        - pull: {exporter: {prometheus: {host: localhost, port: 8889, without_units: false, without_type_suffix: false}}}
EOF
revs=("$a" "$b") name=(A B)
# start SLOT SIDE: starts side 0's (A's) or side 1's (B's) build and
# overlay in slot 0 (the default ports) or slot 1.
start() {
	local slot=$1 side=$2 args=(--config builtin:all-in-one)
	if [ -n "${overlay[side]}" ]; then
		args+=(--config "${overlay[side]}")
	fi
	if [ "$slot" = 1 ]; then
		args+=(--config "$tmp/ports.yaml")
	fi
	rm -rf "$tmp/data$slot"
	SIGHTLINE_DATA=$tmp/data$slot "$tmp/sightline-${revs[side]}" "${args[@]}" >"$tmp/sightline$slot.log" 2>&1 &
	pids[slot]=$!
}
for round in $(seq "$rounds"); do
	order=(0 1)
	if ((round % 2 == 0)); then
		order=(1 0)
	fi
	pids=()
	start 0 "${order[0]}"
	start 1 "${order[1]}"
	for slot in 0 1; do
		for _ in $(seq 300); do
			curl -sf "http://localhost:$((13133 + slot))/" >/dev/null && break
			kill -0 "${pids[slot]}" || { cat "$tmp/sightline$slot.log"; exit 1; }
			sleep 0.2
		done
	done
	"$tmp/ingest" -pid "${pids[0]}" -addr 127.0.0.1:4317 -query http://127.0.0.1:3200 \
		-rate "$rate" -duration "${secs}s" -check 100 >"$tmp/out0" 2>&1 &
	g0=$!
	"$tmp/ingest" -pid "${pids[1]}" -addr 127.0.0.1:5317 -query http://127.0.0.1:3201 \
		-rate "$rate" -duration "${secs}s" -check 100 >"$tmp/out1" 2>&1 &
	g1=$!
	rc=0
	wait $g0 || rc=1
	wait $g1 || rc=1
	kill "${pids[@]}"
	wait "${pids[@]}" || true
	for slot in 0 1; do
		side=${order[slot]}
		echo "== round $round, ${name[side]}: ${revs[side]}${overlay[side]:+ with ${overlay[side]}} (slot $slot)"
		cat "$tmp/out$slot"
	done
	[ $rc = 0 ] || exit 1
done
