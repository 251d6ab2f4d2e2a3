#!/usr/bin/env bash
# `ktune explain` latency on a 1,000,000-record database (issue 22's goal: under 50 ms).
#
#   bench/explain/run.sh [BUILD_DIR] [RUNS]
#
# The database (made once, kept in $KTUNE_BENCH_DIR, default /tmp/ktune-bench-explain): the 17
# recorded spaces of ../shared/datasets/spaces plus synthetic records (make_records.py) up to
# 1,000,000. Then, RUNS times each, the wall time of the whole command (start-up included) for:
# the largest recorded task, a 1,000-record synthetic task, and `ktune best` on the same task as
# the baseline a user already pays. Prints medians and the ratio explain / best.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$repo/build}"
runs="${2:-20}"
ktune="$build/cli/ktune"
dir="${KTUNE_BENCH_DIR:-/tmp/ktune-bench-explain}"
db="$dir/explain-1m.db"
spaces="${KTUNE_DATASETS_DIR:-$repo/../shared/datasets/spaces}"
mkdir -p "$dir"
if [[ ! -f "$db" ]]; then
  echo "making $db (once)..." >&2
  for f in "$spaces"/*.json.gz; do "$ktune" db import "$f" --db "$db.partial" >/dev/null; done
  have=$("$ktune" db stats --db "$db.partial" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["records"])')
  python3 "$(dirname "${BASH_SOURCE[0]}")/make_records.py" $((1000000 - have)) > "$dir/synthetic.jsonl"
  "$ktune" db import "$dir/synthetic.jsonl" --db "$db.partial" >/dev/null
  rm "$dir/synthetic.jsonl"
  mv "$db.partial" "$db"
fi
"$ktune" db migrate --db "$db" >/dev/null  # a file kept from an older ktune
records=$("$ktune" db stats --db "$db" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["records"])')
echo "database: $db, $records records"

median_ms() {  # median wall time of "$@" over $runs runs, in ms
  local times=()
  for _ in $(seq "$runs"); do
    local t0=$(date +%s%N)
    "$@" >/dev/null
    times+=($(( ($(date +%s%N) - t0) / 1000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f", m/1000}'
}

row() {  # label, then the task flags
  local label="$1"; shift
  local explain best
  explain=$(median_ms "$ktune" explain --db "$db" "$@")
  best=$(median_ms "$ktune" best --db "$db" "$@")
  local n
  n=$("$ktune" explain --db "$db" "$@" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["records"])')
  printf '%-44s %8s records  explain %7s ms  best %6s ms  explain/best %5.2fx\n' "$label" "$n" "$explain" "$best" "$(awk "BEGIN {print $explain / $best}")"
}

echo "median wall time of the command over $runs runs (start-up included):"
row "dedispersion on A4000 (largest recorded)" --kernel dedispersion --device A4000
row "synthetic n=500 on bench-device" --kernel synthetic --problem n=500 --device bench-device
row "synthetic n=100000 (nothing known)" --kernel synthetic --problem n=100000 --device bench-device
