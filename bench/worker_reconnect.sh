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
"$ktune" serve --listen "127.0.0.1:$port" --db "$work/r.db" > "$work/s0.log" 2>&1 &
sleep 4
"$ktune" worker --server "127.0.0.1:$port" --device "replay:$space" > "$work/worker.log" 2>&1 &
sleep 3
for i in 1 2 3 4; do
  pkill -TERM -f "listen 127.0.0.1:$port"
  sleep $((i * 3))
  "$ktune" serve --listen "127.0.0.1:$port" --db "$work/r.db" > "$work/s$i.log" 2>&1 &
  until grep -q "listening on port" "$work/s$i.log"; do sleep 0.05; done
  t0=$(date +%s.%N)
  for _ in $(seq 1 600); do grep -q worker_registered "$work/s$i.log" && break; sleep 0.05; done
  printf 'down %2d s: worker back %.2f s after the server listened\n' $((i * 3)) \
    "$(echo "$(date +%s.%N) - $t0" | bc)"
done
