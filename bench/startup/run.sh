#!/usr/bin/env bash
# Start-up cost of the light `ktune` front against `ktune-agent` (the same commands with the PPO
# agent's LibTorch loaded: what every command cost before the split), in one run (issue 21).
#
#   bench/startup/run.sh [BUILD_DIR] [RUNS]      (defaults: build, 20)
#
# For `--help`, `best --db` (a database of one imported recorded space) and `jobs --db`: the
# median and max wall time over RUNS runs, and the peak RSS (GNU time's %M). For a CPU worker
# registered with a server and idle: its resident set once registered (VmRSS) and its peak (VmHWM).
# Prints a table, then one JSON line per figure on stdout's last lines (prefix "json: ").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$(cd "${1:-$root/build}" && pwd)"
runs=${2:-20}
front="$build/cli/ktune"
agent="$build/cli/ktune-agent"
for b in "$front" "$agent"; do
  [ -x "$b" ] || { echo "startup: $b not built (scripts/build.sh)" >&2; exit 1; }
done
command -v /usr/bin/time >/dev/null || { echo "startup: needs GNU time (apt-get install time)" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
space=$(ls "${KTUNE_DATASETS_DIR:-$root/../shared/datasets}"/spaces/*.json.gz | head -1)
"$front" db import "$space" --db "$work/k.db" >/dev/null
"$front" db export --db "$work/k.db" >"$work/records.jsonl"
first=$(head -1 "$work/records.jsonl")
kernel=$(sed 's/.*"kernel":"\([^"]*\)".*/\1/' <<<"$first")
class=$(sed 's/.*"class":"\([^"]*\)".*/\1/' <<<"$first")

# median_ms max_ms rss_kb of RUNS runs of "$@".
measure() {
  local times=() rss=0
  for _ in $(seq "$runs"); do
    local s e
    s=$(date +%s%N)
    /usr/bin/time -f %M -o "$work/rss" "$@" >/dev/null 2>&1
    e=$(date +%s%N)
    times+=($(( (e - s) / 1000 )))
    local r; r=$(tail -1 "$work/rss"); if (( r > rss )); then rss=$r; fi
  done
  local sorted; sorted=$(printf '%s\n' "${times[@]}" | sort -n)
  local median; median=$(echo "$sorted" | awk -v n="$runs" 'NR==int((n+1)/2){print}')
  local max; max=$(echo "$sorted" | tail -1)
  awk -v m="$median" -v x="$max" -v r="$rss" 'BEGIN{printf "%.1f %.1f %d\n", m/1000, x/1000, r/1024}'
}

json=()
printf '%-16s %-12s %10s %10s %8s\n' command binary median_ms max_ms rss_mb
for name in help best jobs; do
  case $name in
    help) args=(--help) ;;
    best) args=(best --db "$work/k.db" --kernel "$kernel" --device "$class" --json) ;;
    jobs) args=(jobs --db "$work/k.db" --json) ;;
  esac
  declare -A res=()
  for bin in ktune ktune-agent; do
    read -r med max rss < <(measure "$build/cli/$bin" "${args[@]}")
    printf '%-16s %-12s %10s %10s %8s\n' "$name" "$bin" "$med" "$max" "$rss"
    res[$bin]="$med $rss"
    json+=("{\"figure\":\"$name\",\"binary\":\"$bin\",\"median_ms\":$med,\"max_ms\":$max,\"rss_mb\":$rss}")
  done
  read -r fm fr <<<"${res[ktune]}"; read -r am ar <<<"${res[ktune-agent]}"
  awk -v n="$name" -v fm="$fm" -v am="$am" -v fr="$fr" -v ar="$ar" \
    'BEGIN{printf "%-16s ktune-agent/ktune: %.1fx time, %.1fx memory\n", n, am/fm, ar/fr}'
done

# An idle CPU worker of each binary, registered with one server.
port=$(( 20000 + RANDOM % 20000 ))
"$front" serve --listen "127.0.0.1:$port" --db "$work/s.db" >"$work/serve.log" 2>&1 &
for _ in $(seq 240); do grep -q "listening" "$work/serve.log" && break; sleep 0.5; done
grep -q "listening" "$work/serve.log" || { echo "startup: the server did not start" >&2; cat "$work/serve.log" >&2; exit 1; }
for bin in ktune ktune-agent; do
  "$build/cli/$bin" worker --server "127.0.0.1:$port" --device cpu >"$work/worker-$bin.log" 2>&1 &
  pid=$!
  # Measured once it has registered and idles asking for leases (readiness, not a fixed delay).
  for _ in $(seq 240); do grep -q "worker_registered" "$work/worker-$bin.log" && break; sleep 0.5; done
  grep -q "worker_registered" "$work/worker-$bin.log" ||
    { echo "startup: the $bin worker did not register" >&2; cat "$work/worker-$bin.log" >&2; exit 1; }
  rss=$(awk '/VmRSS/{print int($2/1024)}' /proc/$pid/status)
  hwm=$(awk '/VmHWM/{print int($2/1024)}' /proc/$pid/status)
  kill -TERM $pid; wait $pid 2>/dev/null || true
  printf '%-16s %-12s %10s %10s %8s   (peak %s MB)\n' worker "$bin" - - "$rss" "$hwm"
  json+=("{\"figure\":\"cpu-worker\",\"binary\":\"$bin\",\"rss_mb\":$rss,\"peak_rss_mb\":$hwm}")
done
for j in "${json[@]}"; do echo "json: $j"; done
