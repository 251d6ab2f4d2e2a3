#!/usr/bin/env bash
# Packs what bench/cuda/run-on-gpu.sh and bench/service/run-on-device.sh need into
# .gpu/bundle.tar.xz: the built ktune binaries, the CUDA test binary, every shared library they
# load except glibc's and the C++ runtime's (the GPU machine's are newer) and the NVIDIA driver's
# (the GPU machine has its own), and the four recorded convolution spaces `ktune bench service`
# replays (datasets/spaces/: the ../shared beside the checkout does not travel to that machine).
#
# Why a bundle: the device tool's GPU machines run another distribution with no network, so
# neither scripts/install-deps.sh nor a build can run there; binaries built here, with their
# Debian libraries beside them, can. The build is a lean one (build-gpu/: no LibTorch, whose
# Debian package pulls in ~280 libraries, 160 MB compressed; the bench tunes with the model-based
# strategy instead of PPO) for a portable ISA (x86-64-v3). After scripts/install-deps.sh:
#   bash bench/cuda/bundle.sh      -> .gpu/bundle.tar.xz (ignored by git)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build-gpu
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKTUNE_WITH_TORCH=OFF \
  -DKTUNE_CPU_KERNELS_NATIVE=OFF -DCMAKE_C_FLAGS=-march=x86-64-v3 \
  -DCMAKE_CXX_FLAGS=-march=x86-64-v3 >/dev/null
cmake --build "$build" -j "${KTUNE_BUILD_JOBS:-$(nproc)}" --target ktune ktune-runner \
  ktune-cuda-runner cuda_test
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/datasets/spaces" "$root/.gpu"
bins=("$build/cli/ktune" "$build/measurer/ktune-runner" "$build/measurer/ktune-cuda-runner"
      "$build/tests/cuda_test")
cp "${bins[@]}" "$stage/bin/"
strip --strip-unneeded "$stage"/bin/*
ldd "${bins[@]}" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u | while read -r lib; do
  case $(basename "$lib") in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*|libstdc++.so.*|\
    libgcc_s.so.*|libcuda.so*) ;;
    *) cp -L "$lib" "$stage/lib/" ;;
  esac
done
datasets=${KTUNE_DATASETS_DIR:-$root/../shared/datasets}
cp "$datasets"/spaces/convolution_{A100,A4000,MI250X,W6600}_T4.json.gz "$stage/datasets/spaces/"
tar -C "$stage" -cf - bin lib datasets | xz -T0 -9 > "$root/.gpu/bundle.tar.xz"
grep -qx '/.gpu/' "$root/.git/info/exclude" 2>/dev/null || echo '/.gpu/' >> "$root/.git/info/exclude"
echo "bundle: $(du -h "$root/.gpu/bundle.tar.xz" | cut -f1) ($(ls "$stage/lib" | wc -l) libraries)"
