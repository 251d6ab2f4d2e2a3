#!/usr/bin/env bash
# Installs every system package that ktune's build, tests and benchmarks need, on Debian 12.
# Non-interactive and idempotent: packages already present are left as they are.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake ninja-build ccache pkg-config git
  # RPC and API
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  # learning (the PPO agent)
  libtorch-dev
  # core libraries
  libabsl-dev libsqlite3-dev sqlite3 zlib1g-dev libxxhash-dev
  nlohmann-json3-dev libsimdjson-dev libcli11-dev libfmt-dev libspdlog-dev libyaml-cpp-dev
  # the server's Prometheus metrics and their HTTP endpoint (civetweb comes with it)
  prometheus-cpp-dev libcivetweb-dev
  # tests and benchmarks: OpenBLAS and oneDNN (the gemm baselines), openssl (TLS test certificates),
  # Prometheus and curl (the metrics test scrapes a real server), GNU time (bench/startup)
  googletest libgtest-dev libgmock-dev libbenchmark-dev libopenblas-dev libdnnl-dev openssl curl prometheus time
  # the model-based search baseline (gradient-boosted trees)
  libxgboost-dev
  # TCMalloc, the allocator of the programs that run the agent (CMakeLists.txt says why)
  libgoogle-perftools-dev
  # `ktune explain --plot` renders its SVG with gnuplot (without X11)
  gnuplot-nox
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
