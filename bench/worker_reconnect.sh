#!/usr/bin/env bash
# How soon an idle worker is back after its server restarts: a `ktune serve` with one replay
# worker is stopped (SIGTERM) four times, down 3, 6, 9 and 12 s, and the time from the new server's
# "listening on port" to its worker_registered line is printed.
#
#   bench/worker_reconnect.sh [BUILD_DIR]     (default: build)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
ktune="${1:-$root/build}/cli/ktune"
space="$root/../shared/datasets/spaces/pnpoly_RTX_3090_T4.json.gz"
work="$(mktemp -d)"
port=$(( 20000 + RANDOM % 20000 ))
trap 'pkill -f "listen 127.0.0.1:$port" || true; pkill -f "worker --server 127.0.0.1:$port" || true; rm -rf "$work"' EXIT
# Polls with a deadline (60 s): the line that says the server or the worker is ready.
wait_for() {  # FILE TEXT
  for _ in $(seq 1 1200); do grep -q "$2" "$1" && return 0; sleep 0.05; done
  echo "worker_reconnect: no '$2' in $1 within 60 s" >&2; exit 1
}
"$ktune" serve --listen "127.0.0.1:$port" --db "$work/r.db" > "$work/s0.log" 2>&1 &
wait_for "$work/s0.log" "listening on port"
"$ktune" worker --server "127.0.0.1:$port" --device "replay:$space" > "$work/worker.log" 2>&1 &
wait_for "$work/s0.log" worker_registered
for i in 1 2 3 4; do
  pkill -TERM -f "listen 127.0.0.1:$port"
  sleep $((i * 3))
  "$ktune" serve --listen "127.0.0.1:$port" --db "$work/r.db" > "$work/s$i.log" 2>&1 &
  wait_for "$work/s$i.log" "listening on port"
  t0=$(date +%s.%N)
  wait_for "$work/s$i.log" worker_registered
  printf 'down %2d s: worker back %.2f s after the server listened\n' $((i * 3)) \
    "$(echo "$(date +%s.%N) - $t0" | bc)"
done
