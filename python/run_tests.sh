#!/usr/bin/env bash
# Runs the Python client's tests (python/tests) against real `ktune serve` processes.
#   KTUNE_BIN           the ktune binary (default: <repo>/build/cli/ktune)
#   KTUNE_DATASETS_DIR  the recorded spaces (default: <repo>/../shared/datasets)
#   KTUNE_VENV          the virtual environment (default: <repo>/.venv, made by
#                       scripts/setup-python.sh, which this runs first: a no-op when up to date)
# Extra arguments go to pytest (e.g. -k best, -x, tests/test_client.py).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export KTUNE_BIN="${KTUNE_BIN:-$repo/build/cli/ktune}"
venv="${KTUNE_VENV:-$repo/.venv}"
# CTest runs two entries of these tests at once: one sets the venv up at a time.
mkdir -p "$venv"
KTUNE_VENV="$venv" flock "$venv/.setup.lock" "$repo/scripts/setup-python.sh"
if [[ ! -x "$KTUNE_BIN" ]]; then
  echo "run_tests.sh: no ktune binary at $KTUNE_BIN (build it, or set KTUNE_BIN)" >&2
  exit 1
fi
cd "$repo/python"
# -P: the installed package is tested, not the source tree beside the tests.
exec "$venv/bin/python" -P -m pytest -p no:cacheprovider -rxXs "$@"  # testpaths: tests
