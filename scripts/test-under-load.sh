#!/usr/bin/env bash
# Runs the whole test suite (scripts/test.sh) with every core kept busy by a spinning process, as
# on a loaded CI machine or a laptop mid-build: the suite must pass there too (tests wait for
# readiness with generous deadlines and take time from injected clocks, not from sleeps).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
busy=()
stop_busy() { [ ${#busy[@]} -eq 0 ] || kill "${busy[@]}" 2>/dev/null || true; }
trap stop_busy EXIT
for _ in $(seq "$(nproc)"); do
  (while :; do :; done) &
  busy+=($!)
done
echo "test-under-load: ${#busy[@]} busy loops on $(nproc) cores"
bash scripts/test.sh "$@"
