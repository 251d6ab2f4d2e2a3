#!/usr/bin/env bash
# Precision under an accuracy budget, end to end on this CPU (issue 23): gemm_lowp tuned by
# `ktune tune` (embedded default, PPO) with and without a budget, on uniform and heavy-tailed
# inputs; then the time/error front and the explanation of the budget's answer.
# Usage: bench/precision/run.sh [BUDGET_MEASUREMENTS]   (from the repository root, after a build)
set -euo pipefail
ktune=build/cli/ktune
n="${1:-48}"
db="$(mktemp -d)/precision.db"
for data in uniform heavy_tailed; do
  p="M=8,N=4096,K=4096,data=$data"
  echo "== $p: no budget =="
  $ktune tune --kernel gemm_lowp --problem "$p" --device cpu --threads 1 --budget "$n" --db "$db"
  echo "== $p: --max-rel-error 1e-3 (the same database: earlier records are reused) =="
  $ktune tune --kernel gemm_lowp --problem "$p" --device cpu --threads 1 --budget "$n" \
    --max-rel-error 1e-3 --db "$db"
  for budget in 1e-1 2e-2 1e-3 1e-5; do
    echo "-- best --max-rel-error $budget"
    $ktune best --kernel gemm_lowp --problem "$p" --device cpu --db "$db" --max-rel-error "$budget"
  done
  echo "-- best --pareto"
  $ktune best --kernel gemm_lowp --problem "$p" --device cpu --db "$db" --pareto
  echo "-- explain --max-rel-error 1e-3"
  $ktune explain --kernel gemm_lowp --problem "$p" --device cpu --db "$db" --max-rel-error 1e-3 |
    sed -n '1,8p'
done
