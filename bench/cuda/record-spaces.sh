#!/usr/bin/env bash
# Records tuning spaces on a GPU machine (the device tool's H100 or H200), like the brute-forced
# spaces of ../shared/datasets: every configuration of a task is compiled, run and timed by
# ktune's CUDA back end (uniform random order without replacement, so a run cut short by its
# time limit is still a uniform sample), then exported as T4 files that `ktune bench search
# --space` replays. These are spaces no strategy was developed on: a device outside ../shared
# (Hopper) and, for cuda_gemm, a kernel outside it. First the CUDA tests, whose GPU tests run
# where a GPU is present.
#
# Output under $OUT (or ./gpu-out), at most 8 files: log.txt, nvidia-smi.txt, cuda_test.txt and
# one NAME_<GPU>_T4.json.gz per space (NAME without '_': the part before the first '_' is the
# space's kernel when ktune reads the file). About 9 minutes (device run: timeout_s 600).
#
# SET (the first argument) picks the spaces: `gemm-conv` (the default; the CUDA tests first) or
# `rows` (cuda_softmax and cuda_reduce_rows, kernels no recorded space of ../shared has).
#
# The binaries come from .gpu/bundle.tar.xz (bench/cuda/bundle.sh, run where the project
# builds). With the device tool: `bash bench/cuda/bundle.sh` here, then
#   run(command="bash bench/cuda/record-spaces.sh [SET]", carry=[".gpu"], timeout_s=600)
set_name=${1:-gemm-conv}
case $set_name in gemm-conv|rows) ;; *) echo "unknown SET '$set_name': gemm-conv or rows"; exit 2 ;; esac
source "$(dirname "$0")/unpack-bundle.sh" gpu-out
source "$(dirname "$0")/cuda-env.sh"

nvidia-smi > "$out/nvidia-smi.txt" 2>&1
head -12 "$out/nvidia-smi.txt"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | grep -oE 'H100|H200|A100|L40S?' | head -1)
gpu=${gpu:-GPU}
[ "$set_name" = gemm-conv ] && echo "== cuda_test" && timeout 120 "$kt/bin/cuda_test" 2>&1 | tee "$out/cuda_test.txt" | grep -E '^\[ *(OK|FAILED|SKIPPED|PASSED) '

# record NAME SECONDS KERNEL ARGS...: the whole space of one task (budget above any space's size),
# for at most SECONDS; the records measured by then are exported.
record() {
  local name=$1 seconds=$2 kernel=$3
  shift 3
  local db=/tmp/space-$name.db
  echo "== $name: ktune tune --kernel $kernel $* (at most ${seconds}s)"
  timeout "$seconds" "$kt/bin/ktune" tune --device cuda --kernel "$kernel" "$@" --strategy random \
    --budget 100000 --batch-size 128 --seed 1 --db "$db" --json | tail -c 600
  echo
  "$kt/bin/ktune" db stats --db "$db"
  "$kt/bin/ktune" db export --db "$db" --format t4 --out "$out/${name}_${gpu}_T4.json.gz"
}
if [ "$set_name" = gemm-conv ]; then
  # cuda_gemm f16 at 4096^3: 547 configurations; at M=16 (split-K matters): 1,290; cuda_conv2d
  # (Kernel Tuner's convolution) at 2048^2, 15x15 filter: 4,348.
  record cudagemm-f16-4096 90 cuda_gemm --dtype f16 --problem M=4096,N=4096,K=4096
  record cudagemm-f16-M16 120 cuda_gemm --dtype f16 --problem M=16,N=4096,K=4096
  record cudaconv2d-2048 200 cuda_conv2d --problem width=2048,height=2048,filter_width=15,filter_height=15
else
  # cuda_softmax at 4096x4096: 880 configurations; at 65536x512 (short rows): 1,184;
  # cuda_reduce_rows at 4096x4096: 1,224; at 64 rows of 2^20 (col_split matters): 5,616.
  record softmax-4096 130 cuda_softmax --problem rows=4096,cols=4096
  record reducerows-4096 170 cuda_reduce_rows --problem rows=4096,cols=4096
  record softmax-65536x512 130 cuda_softmax --problem rows=65536,cols=512
  record reducerows-64x1M 110 cuda_reduce_rows --problem rows=64,cols=1048576
fi
ls -l "$out"
