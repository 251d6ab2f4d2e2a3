#!/usr/bin/env bash
# The build stage of every Dockerfile here runs this from the repository root, after
# scripts/install-deps.sh: it configures like scripts/build.sh, builds only the two binaries
# (tests need ../shared/datasets, which is not in the build context), and writes to OUT_DIR:
#   bin/ktune, bin/ktune-runner   the binaries (the runners must sit beside ktune)
#   bin/ktune-agent               unless KTUNE_IMAGE_ROLE=worker: what `ktune` runs for the
#                                 commands that run the PPO agent (serve, tune, agent, bench ...),
#                                 with LibTorch. A worker image leaves it, and LibTorch's
#                                 packages, out (cli/agent_front.h)
#   bin/ktune-cuda-runner         where the CUDA toolkit's headers were found (it loads the
#                                 driver, NVRTC and cuBLAS at run time)
#   runtime-packages.txt          the Debian packages their shared libraries come from
#
# KTUNE_MARCH (default: x86-64-v3 on x86-64, armv8.2-a on arm64) is the ISA the code, and above
# all the built-in CPU kernels, are compiled for. scripts/build.sh uses -march=native, which
# would tie the image to the build machine's CPU (SIGILL elsewhere). "native" keeps that
# behaviour for an image built on, and only run on, one CPU generation.
set -euo pipefail
out=${1:?usage: build-binaries.sh OUT_DIR}

march=${KTUNE_MARCH:-}
if [ -z "$march" ]; then
  case $(uname -m) in
    x86_64) march=x86-64-v3 ;;   # AVX2 + FMA: Haswell, Zen 1 and later
    aarch64) march=armv8.2-a ;;  # Neoverse N1 (Graviton 2) and later
    *) march=native ;;
  esac
fi
if [ "$march" = native ]; then
  arch_flags=(-DKTUNE_CPU_KERNELS_NATIVE=ON)
else
  arch_flags=(-DKTUNE_CPU_KERNELS_NATIVE=OFF "-DCMAKE_C_FLAGS=-march=$march"
              "-DCMAKE_CXX_FLAGS=-march=$march")
fi

# A build folder of its own: a build/ from the host that slipped into the context (a builder
# without per-Dockerfile ignore files) would carry another machine's CMake cache.
build=${KTUNE_BUILD_DIR:-/tmp/ktune-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${KTUNE_BUILD_TYPE:-RelWithDebInfo}" \
  "${arch_flags[@]}"
targets=(ktune ktune-runner)
# The CUDA runner exists where CMake found the toolkit (see CMakeLists.txt).
if cmake --build "$build" --target help | grep -q '^ktune-cuda-runner:'; then
  targets+=(ktune-cuda-runner)
fi
cmake --build "$build" -j "${KTUNE_BUILD_JOBS:-$(nproc)}" --target "${targets[@]}"

install -d "$out/bin"
binaries=("$build/cli/ktune" "$build/measurer/ktune-runner")
if [ "${KTUNE_IMAGE_ROLE:-server}" != worker ] && [ -x "$build/cli/ktune-agent" ]; then
  binaries+=("$build/cli/ktune-agent")
fi
[ -x "$build/measurer/ktune-cuda-runner" ] && binaries+=("$build/measurer/ktune-cuda-runner")
install -m 0755 "${binaries[@]}" "$out/bin/"
bash deploy/docker/runtime-packages.sh "$out"/bin/* > "$out/runtime-packages.txt"
echo "build-binaries: -march=$march; $(wc -l < "$out/runtime-packages.txt") runtime packages"
