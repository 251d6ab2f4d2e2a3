# Sourced (not run) by the scripts that run on the device tool's machines, with the name of
# their default output folder as $1. Sets $out ($OUT, else ./$1) and tees everything printed to
# $out/log.txt; sets $root (the checkout) and $kt (/tmp/ktune-bundle, where .gpu/bundle.tar.xz
# of bench/cuda/bundle.sh is unpacked); exits when there is no bundle.
set -uo pipefail
out=${OUT:-$PWD/$1}
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kt=/tmp/ktune-bundle
rm -rf "$kt" && mkdir -p "$kt"
xz -dc "$root/.gpu/bundle.tar.xz" | tar -C "$kt" -xf - || { echo "no bundle: run bench/cuda/bundle.sh first"; exit 1; }
