#!/usr/bin/env bash
# The main job, on the embedded default (a SQLite file, no server): installs and builds ktune,
# imports a recorded GPU tuning space from ../shared/datasets and prints its best known
# configurations, then the database's contents.
#
# Until the tuning path lands (kernels, measurer, agent), this is what `ktune` can do end to end;
# `ktune tune` will replace the import step.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/build.sh
datasets="${KTUNE_DATASETS_DIR:-$root/../shared/datasets}"
space="$datasets/spaces/gemm_RTX_Titan_kernel_tuner_cache.json.gz"
db="${KTUNE_DB:-$root/ktune.db}"
ktune="$root/build/cli/ktune"

echo "== ktune db import $space"
"$ktune" db import "$space" --db "$db"
echo
echo "== ktune best --kernel gemm --device RTX_Titan --top 3"
"$ktune" best --db "$db" --kernel gemm --device RTX_Titan --top 3
echo
echo "== ktune best --kernel gemm --device RTX_2080_Ti   (never measured: falls back to the family)"
"$ktune" best --db "$db" --kernel gemm --device RTX_2080_Ti
echo
echo "== ktune db stats"
"$ktune" db stats --db "$db"
