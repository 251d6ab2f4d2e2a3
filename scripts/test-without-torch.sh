#!/usr/bin/env bash
# The LibTorch-free configuration (-DKTUNE_WITH_TORCH=OFF: no ppo strategy; jobs that name no
# strategy get `model`): installs, builds it in build-notorch/, and runs every test there. CI
# runs scripts/test.sh only; run this after changing a default strategy or a build option.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/install-deps.sh
cmake -S . -B build-notorch -G Ninja -DCMAKE_BUILD_TYPE="${KTUNE_BUILD_TYPE:-RelWithDebInfo}" \
  -DKTUNE_WITH_TORCH=OFF ${KTUNE_DATASETS_DIR:+-DKTUNE_DATASETS_DIR="$KTUNE_DATASETS_DIR"}
cmake --build build-notorch -j "${KTUNE_BUILD_JOBS:-$(nproc)}"
bash scripts/setup-python.sh
cd build-notorch
ctest --output-on-failure -j "${KTUNE_TEST_JOBS:-2}"
