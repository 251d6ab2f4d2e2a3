#!/usr/bin/env bash
# The whole Kernel Tuner peer benchmark as one command: setup.sh (pinned venv), then every
# strategy on every recorded space (run_kernel_tuner.py, 10 seeds, budget 400), rows to
# bench/results/kernel-tuner-<date>.jsonl, then the merged table of those rows.
#
#   bench/kernel_tuner/run.sh                 # all 17 spaces x 10 strategies x 10 seeds
#   bench/kernel_tuner/run.sh --jobs 2        # extra arguments go to run_kernel_tuner.py
#
#   KTUNE_KT_VENV        the venv (default bench/kernel_tuner/.venv)
#   KTUNE_DATASETS_DIR   the datasets folder holding spaces/ (default ../shared/datasets)
#   KTUNE_KT_OUT         the output file (default bench/results/kernel-tuner-<date>.jsonl)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${KTUNE_KT_VENV:-$here/.venv}"
out="${KTUNE_KT_OUT:-$repo/bench/results/kernel-tuner-$(date -u +%F).jsonl}"

if [[ -s "$out" ]]; then
  echo "run.sh: $out already exists; rows are appended, so move it away first (or set KTUNE_KT_OUT)" >&2
  exit 1
fi
KTUNE_KT_VENV="$venv" "$here/setup.sh"
mkdir -p "$(dirname "$out")"
start=$(date +%s)
"$venv/bin/python" "$here/run_kernel_tuner.py" --out "$out" "$@" >/dev/null
echo "run.sh: $(wc -l <"$out") rows in $out after $(( $(date +%s) - start )) s" >&2
python3 "$here/merge_table.py" "$out"
