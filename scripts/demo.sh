#!/usr/bin/env bash
# The main job, on the embedded default (in-process, a SQLite file, no server): installs and
# builds ktune, then tunes GEMM with the PPO agent on a recorded GPU space (an RTX 2080 Ti's
# brute-forced measurements from ../shared/datasets, replayed as the measurement device), stores
# every measurement in ktune.db and prints the best configuration found, then asks the database
# for the best known configuration of a GPU that was never tuned (family fallback).
#
# CPU and CUDA devices come with the kernel registry and measurers (later issues); the replay
# device is the same tuning path with recorded measurements.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/build.sh
datasets="${KTUNE_DATASETS_DIR:-$root/../shared/datasets}"
space="$datasets/spaces/gemm_RTX_2080_Ti_kernel_tuner_cache.json.gz"
db="${KTUNE_DB:-$root/ktune.db}"
ktune="$root/build/cli/ktune"

echo "== ktune tune --device replay:$(basename "$space") --budget 100 --strategy ppo"
"$ktune" tune --db "$db" --device "replay:$space" --budget 100 --strategy ppo
echo
echo "== ktune best --kernel gemm --device RTX_2080_Ti --top 3"
"$ktune" best --db "$db" --kernel gemm --device RTX_2080_Ti --top 3
echo
echo "== ktune best --kernel gemm --device RTX_Titan   (never tuned: falls back to the family)"
"$ktune" best --db "$db" --kernel gemm --device RTX_Titan
echo
echo "== ktune db stats"
"$ktune" db stats --db "$db"
