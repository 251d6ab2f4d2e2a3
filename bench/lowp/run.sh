#!/usr/bin/env bash
# Issue 23's int8 goals, measured on this CPU: gemm_lowp tuned by `ktune tune` (embedded default,
# PPO) within an accuracy budget, against ktune's best fp32 gemm (tuned the same way) and oneDNN's
# int8 and fp32 gemm, one thread, at 1024^3 and M=32, N=K=4096.
#
#   bench/lowp/run.sh [BUILD_DIR] [MEASUREMENTS] [MAX_REL_ERROR]   (defaults: build 60 1e-2)
#
# 1. Tunes gemm (2 x MEASUREMENTS: it is the baseline, so it gets the larger search) and gemm_lowp
#    (MEASUREMENTS, with --max-rel-error) for each problem into a fresh database.
# 2. Re-times the three best of each and oneDNN head to head with ktune-lowp-sweep: rounds interleave
#    the contenders, so that the machine's load hits all alike. Twice: with the best ISA this CPU
#    has (AVX-VNNI for int8 where present, oneDNN capped at the same set: kernels/cpu/cpu_isa.h),
#    then with KTUNE_CPU_ISA=avx2 (both at AVX2; the int8 configuration tuned for the first).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$repo/build}"
n="${2:-60}"
budget="${3:-1e-2}"
ktune="$build/cli/ktune"
sweep="$build/bench/ktune-lowp-sweep"
db="$(mktemp -d)/lowp.db"  # the tuning runs' output goes to $db.log
echo "# $(date -u +%F) $(git -C "$repo" rev-parse --short HEAD); $(grep -m1 'model name' /proc/cpuinfo)"
echo "# AVX-VNNI: $(grep -qw avx_vnni /proc/cpuinfo && echo yes || echo no); load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# The 3 best configurations of KERNEL for PROBLEM (within the budget for gemm_lowp), as the
# sweep wants them: KERNEL:values in the kernel definition's parameter order. Three, because a
# tuning run's ranking is as noisy as the machine: the sweep re-times them side by side.
best_points() {
  local kernel="$1" problem="$2"; shift 2
  "$ktune" best --kernel "$kernel" --problem "$problem" --device cpu --db "$db" --json --top 3 "$@" |
    KERNEL="$kernel" DEFINITION="$("$ktune" kernels "$kernel" --json)" python3 -c '
import json, os, sys
best = json.load(sys.stdin)
order = [p["name"] for p in json.loads(os.environ["DEFINITION"])[0]["parameters"]]
for record in best["best"]:
    config = record["config"]
    print(os.environ["KERNEL"] + ":" + ",".join(str(config[name]) for name in order))'
}

for problem in M=1024,N=1024,K=1024 M=32,N=4096,K=4096; do
  echo "== $problem: tuning gemm ($((2 * n)) measurements) and gemm_lowp ($n) =="
  "$ktune" tune --kernel gemm --problem "$problem" --device cpu --threads 1 --budget $((2 * n)) \
    --db "$db" >>"$db.log" 2>&1
  "$ktune" tune --kernel gemm_lowp --problem "$problem" --device cpu --threads 1 --budget "$n" \
    --max-rel-error "$budget" --db "$db" >>"$db.log" 2>&1
  mapfile -t fp32 < <(best_points gemm "$problem")
  mapfile -t int8 < <(best_points gemm_lowp "$problem" --max-rel-error "$budget")
  echo "tuned, fp32: ${fp32[*]}"
  echo "tuned, within $budget: ${int8[*]}"
  IFS=, read -r m n_ k <<<"${problem//[MNK]=/}"
  for isa in best avx2; do
    echo "-- head to head, ISA: $isa"
    if [[ $isa == avx2 ]]; then export KTUNE_CPU_ISA=avx2; else unset KTUNE_CPU_ISA; fi
    "$sweep" "$m" "$n_" "$k" "${fp32[@]}" "${int8[@]}" gemm_onednn_int8:1,1 gemm_onednn:1
  done
  unset KTUNE_CPU_ISA
done
