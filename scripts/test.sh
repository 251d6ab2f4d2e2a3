#!/usr/bin/env bash
# Installs, builds, and runs every test (CTest over the GoogleTest suites in tests/ and the
# Python client's pytest suite in python/tests).
# Tests read the recorded spaces in ../shared/datasets (override with KTUNE_DATASETS_DIR).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/build.sh
# The Python client's venv (python/, pinned; PyPI): made before CTest, which runs its tests.
bash scripts/setup-python.sh
cd build
ctest --output-on-failure -j "${KTUNE_TEST_JOBS:-2}"
