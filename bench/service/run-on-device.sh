#!/usr/bin/env bash
# The service benchmark (`ktune bench service`) on a machine with more cores than the
# development machine's 2: the device tool's machines have 16. The benchmark runs three times on
# all the machine's cores, then three times held to two of them (taskset -c 0,1). It is the same
# binary on the same machine, so the core count is the only thing that changes between the two
# sets, and the two-core set can be compared with the development machine's numbers.
#
# Output under $OUT (or ./device-out): cpu.txt (lscpu), service-all-cores.jsonl,
# service-2-cores.jsonl (one JSON line per load level and one for dispatch, per run), log.txt.
# It takes about 2.5 minutes.
#
# The binaries and the recorded spaces come from .gpu/bundle.tar.xz (bench/cuda/bundle.sh, run
# where the project builds). With the device tool: `bash bench/cuda/bundle.sh` here, then
#   run(command="bash bench/service/run-on-device.sh", carry=[".gpu"], timeout_s=400)
source "$(dirname "$0")/../cuda/unpack-bundle.sh" device-out
[ -d "$kt/datasets/spaces" ] || { echo "the bundle has no datasets/: rebuild it with bench/cuda/bundle.sh"; exit 1; }
export LD_LIBRARY_PATH="$kt/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cd /tmp

lscpu > "$out/cpu.txt" 2>&1
echo "cores: $(nproc)"
bench() {  # $1: output file; the rest: a command prefix (e.g. taskset)
  local file=$1
  shift
  for run in 1 2 3; do
    echo "== $file, run $run"
    timeout 60 "$@" "$kt/bin/ktune" bench service --datasets "$kt/datasets" --json 2>/dev/null |
      tee -a "$out/$file"
  done
}
bench service-all-cores.jsonl
bench service-2-cores.jsonl taskset -c 0,1
