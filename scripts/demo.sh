#!/usr/bin/env bash
# The main job, on the embedded default (server, worker and SQLite file in one process): installs
# and builds ktune, then tunes the built-in CPU GEMM (512^3, float32) with the PPO agent on this
# machine: each candidate is checked against a reference and timed in an isolated runner
# process, every measurement is committed to ktune.db, and the best configuration is printed
# with its GFLOP/s, % of this machine's peak and speedup over the untuned default. Then it asks
# the database for the best known configuration, as a compiler would.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/build.sh
db="${KTUNE_DB:-$root/ktune.db}"
ktune="$root/build/cli/ktune"

echo "== ktune tune --kernel gemm --problem M=512,N=512,K=512 --device cpu --budget 64"
"$ktune" tune --db "$db" --kernel gemm --problem M=512,N=512,K=512 --device cpu --budget 64
echo
echo "== ktune best --kernel gemm --problem M=512,N=512,K=512 --device cpu --top 3"
"$ktune" best --db "$db" --kernel gemm --problem M=512,N=512,K=512 --device cpu --top 3
echo
echo "== ktune explain --kernel gemm --problem M=512,N=512,K=512 --device cpu"
"$ktune" explain --db "$db" --kernel gemm --problem M=512,N=512,K=512 --device cpu
echo
echo "== ktune db stats"
"$ktune" db stats --db "$db"
