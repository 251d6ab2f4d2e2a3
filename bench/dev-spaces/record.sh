#!/usr/bin/env bash
# Records the development spaces: ktune's own CPU kernels timed on this machine, for checking a
# change to a search strategy on real landscapes that no reported result uses (see README.md).
# Each is a uniform sample of its task's space (random search without replacement, seed 1, cut
# at SAMPLE measurements) or the whole space when smaller, exported in the T4 format.
#
#   bash bench/dev-spaces/record.sh [BUILD_DIR=build] [NAME...]   # every space, or those NAMEs;
#                                                                  # about 16 minutes; idle machine
set -euo pipefail
sample=3000
# shellcheck source=../record_cpu_spaces.sh
source "$(dirname "$0")/../record_cpu_spaces.sh"
record_setup "$@"
record cpugemm192 gemm M=192,N=192,K=192
record cpugemm64x1024 gemm M=64,N=1024,K=512
record cpuconv34 conv2d C=32,K=64,H=34,W=34,R=3,S=3
record cpuconv66 conv2d C=16,K=32,H=66,W=66,R=5,S=5
record cpusoftmax4096 softmax rows=4096,cols=1024
record cpusoftmax64 softmax rows=64,cols=65536
record cpugemm512x64 gemm M=512,N=64,K=768
record cpuconv18 conv2d C=64,K=64,H=18,W=18,R=3,S=3
record cpuconv130 conv2d C=3,K=32,H=130,W=130,R=7,S=7
record cpulowp256 gemm_lowp M=256,N=256,K=512
record cpulowp1x4096 gemm_lowp M=1,N=4096,K=4096
ls -l "$here"/*.json.gz
