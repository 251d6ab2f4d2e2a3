#!/usr/bin/env bash
# Records the development spaces: ktune's own CPU kernels timed on this machine, for checking a
# change to a search strategy on real landscapes that no reported result uses (see README.md).
# Each is a uniform sample of its task's space (random search without replacement, seed 1, cut
# at SAMPLE measurements) or the whole space when smaller, exported in the T4 format.
#
#   bash bench/dev-spaces/record.sh [BUILD_DIR=build]   # about 5 minutes; run it on an idle machine
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
ktune="$build/cli/ktune"
sample=3000
record() {  # record NAME KERNEL PROBLEM
  local name=$1 kernel=$2 problem=$3 db
  db=$(mktemp -u /tmp/dev-space-XXXXXX.db)
  echo "== $name: $kernel $problem"
  "$ktune" tune --device cpu --kernel "$kernel" --problem "$problem" --strategy random \
    --budget "$sample" --batch-size 128 --seed 1 --db "$db" --json | tail -c 300
  echo
  "$ktune" db export --db "$db" --format t4 --out "$here/${name}_cpu_T4.json.gz"
  rm -f "$db"
}
record cpugemm192 gemm M=192,N=192,K=192
record cpugemm64x1024 gemm M=64,N=1024,K=512
record cpuconv34 conv2d C=32,K=64,H=34,W=34,R=3,S=3
record cpuconv66 conv2d C=16,K=32,H=66,W=66,R=5,S=5
record cpusoftmax4096 softmax rows=4096,cols=1024
record cpusoftmax64 softmax rows=64,cols=65536
ls -l "$here"/*.json.gz
