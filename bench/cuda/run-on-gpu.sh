#!/usr/bin/env bash
# The GPU check of the CUDA issue, for a machine with an NVIDIA GPU (the device tool's H100 or
# H200), in at most 9.5 minutes (device run: timeout_s 600): the CUDA tests (the GPU ones run
# when a GPU is present), then `ktune bench kernel --vs cublas` tuning cuda_gemm at 4096³ and at
# M=16, N=K=4096, in f32 and f16 (budget 200 each; the model-based strategy, as the bundle has
# no LibTorch), each compared with cuBLAS in the same run. Output under $OUT (or ./gpu-out):
# nvidia-smi.txt, cuda_test.txt, bench-f32.jsonl, bench-f16.jsonl, log.txt.
#
# The binaries come from .gpu/bundle.tar.xz (bench/cuda/bundle.sh, run where the project
# builds). With the device tool: `bash bench/cuda/bundle.sh` here, then
#   run(command="bash bench/cuda/run-on-gpu.sh", carry=[".gpu"], timeout_s=600)
source "$(dirname "$0")/unpack-bundle.sh" gpu-out
source "$(dirname "$0")/cuda-env.sh"

nvidia-smi > "$out/nvidia-smi.txt" 2>&1
head -15 "$out/nvidia-smi.txt"
echo "== cuda_test"
timeout 150 "$kt/bin/cuda_test" 2>&1 | tee "$out/cuda_test.txt" | grep -E '^\[ *(OK|FAILED|SKIPPED|PASSED) ' 
for dtype in f32 f16; do
  echo "== bench $dtype"
  timeout 210 "$kt/bin/ktune" bench kernel --device cuda --kernel cuda_gemm --vs cublas \
    --dtype "$dtype" --problem M=4096,N=4096,K=4096 --problem M=16,N=4096,K=4096 \
    --budget 200 --rounds 5 --strategy model --db "/tmp/bench-$dtype.db" --json | tee "$out/bench-$dtype.jsonl"
done
