# Sourced by bench/dev-spaces/record.sh and bench/train-spaces/record.sh: records tuning spaces of
# ktune's own CPU kernels on this machine. Each is a uniform sample of its task's space (random
# search without replacement, seed 1, cut at $sample measurements) or the whole space when
# smaller, exported in the T4 format next to the sourcing script.
#
# The sourcing script sets `sample`, then calls `record_setup "$@"` (arguments: [BUILD_DIR=build]
# [NAME...], every space or only those NAMEs) and `record NAME KERNEL PROBLEM` per space.
record_setup() {
  build=${1:-build}
  shift || true
  only=" $* "
  here=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
  ktune="$build/cli/ktune"
  tmp=$(mktemp -d)  # one recording database per space, removed at the end
  trap 'rm -rf "$tmp"' EXIT
}
record() {  # record NAME KERNEL PROBLEM
  local name=$1 kernel=$2 problem=$3
  [ "$only" = "  " ] || [[ "$only" == *" $name "* ]] || return 0
  local db="$tmp/$name.db"
  echo "== $name: $kernel $problem"
  "$ktune" tune --device cpu --kernel "$kernel" --problem "$problem" --strategy random \
    --budget "$sample" --batch-size 128 --seed 1 --db "$db" --json | tail -c 300
  echo
  "$ktune" db export --db "$db" --format t4 --out "$here/${name}_cpu_T4.json.gz"
}
