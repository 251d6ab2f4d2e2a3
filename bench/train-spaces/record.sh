#!/usr/bin/env bash
# Records the training spaces: ktune's own CPU kernels timed on the development machine, as more
# real landscapes for PPO's policy to learn from (see README.md). Each is a uniform sample of its
# task's space (random search without replacement, seed 1, cut at SAMPLE measurements) or the
# whole space when smaller, exported in the T4 format. Files are named after the operation
# (gemm, convolution, softmax), so that leave-one-kernel-out leaves them out of the fold of the
# GPU kernel doing the same operation (KernelFamily strips the trailing digits).
#
#   bash bench/train-spaces/record.sh [BUILD_DIR=build] [NAME...]  # every space, or those NAMEs;
#                                                                   # about 10 minutes; idle machine
set -euo pipefail
sample=1500
# shellcheck source=../record_cpu_spaces.sh
source "$(dirname "$0")/../record_cpu_spaces.sh"
record_setup "$@"
record gemm128512 gemm M=128,N=512,K=256
record gemm102432 gemm M=1024,N=32,K=256
record gemm384 gemm M=384,N=384,K=128
record gemm128512256 gemm_lowp M=128,N=512,K=512
record convolution26 conv2d C=32,K=32,H=26,W=26,R=3,S=3
record convolution50 conv2d C=8,K=64,H=50,W=50,R=3,S=3
record convolution98 conv2d C=3,K=16,H=98,W=98,R=5,S=5
record softmax1024 softmax rows=1024,cols=4096
record softmax16384 softmax rows=16384,cols=256
ls -l "$here"/*.json.gz
