#!/usr/bin/env bash
# Creates <repo>/.venv for the Python client (python/): the pinned packages of
# python/requirements.txt (gRPC, protobuf, pytest, Kernel Tuner 1.5.0, apache-tvm 0.27 and their
# closures), then the `ktune` package itself (`pip install ./python`, which generates the ktune.v1
# stubs from proto/).
# Idempotent: when the requirements and the package sources are unchanged since the last run, it
# only checks that `import ktune` works (about a second).
#
#   KTUNE_VENV   where the venv goes (default: <repo>/.venv)
#   PYTHON       interpreter to build it with (default: the python3 on PATH; Python >= 3.11,
#                since the pinned numpy needs it)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${KTUNE_VENV:-$repo/.venv}"
python="${PYTHON:-python3}"
req="$repo/python/requirements.txt"
stamp="$venv/.ktune-setup.sha256"
# What the venv depends on: the pins, the package's sources and the API it is generated from.
want="$(cd "$repo" && find python/requirements.txt python/pyproject.toml python/setup.py \
          python/ktune proto/ktune -type f \( -name '*.py' -o -name '*.proto' -o -name '*.toml' \
          -o -name '*.txt' \) ! -name '*_pb2*.py' -print0 | sort -z | xargs -0 sha256sum |
        sha256sum | cut -d' ' -f1)"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
   "$venv/bin/python" -c 'import ktune, ktune.kernel_tuner' 2>/dev/null; then
  echo "setup-python.sh: $venv is up to date" >&2
  exit 0
fi

# A fresh Debian 12 has no python3, or one without venv's ensurepip (package python3-venv):
# then the interpreter and python3-venv come from Debian (only those: every Python package
# comes from PyPI).
debian_python() {
  [[ "$(command -v "$python" || echo /usr/bin/python3)" == /usr/bin/python3 ]] &&
    command -v apt-get >/dev/null || return 1
  echo "setup-python.sh: installing Debian's python3 and python3-venv" >&2
  local sudo_cmd=()
  [[ "$(id -u)" -eq 0 ]] || sudo_cmd=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    python3 python3-venv
}

if [[ ! -x "$venv/bin/python" ]]; then
  if ! command -v "$python" >/dev/null; then
    debian_python || { echo "setup-python.sh: no $python on PATH" >&2; exit 1; }
  fi
  "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "setup-python.sh: $python is $("$python" --version 2>&1); Python >= 3.11 is needed" >&2
    exit 1
  }
  echo "setup-python.sh: creating $venv with $(command -v "$python") ($("$python" --version 2>&1))" >&2
  if ! "$python" -m venv "$venv"; then
    rm -rf "$venv"
    debian_python || { echo "setup-python.sh: $python cannot make a virtual environment" >&2; exit 1; }
    "$python" -m venv "$venv"
  fi
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet -r "$req"
# The build needs setuptools and grpcio-tools, both pinned above: no isolated build environment
# (nothing more to download).
"${pip[@]}" install --quiet --no-build-isolation --no-deps --force-reinstall "$repo/python"
"$venv/bin/python" -c 'import ktune, ktune.kernel_tuner, ktune.tvm, kernel_tuner, grpc, tvm, google.protobuf as pb; print("setup-python.sh: ktune", ktune.__version__, "grpcio", grpc.__version__, "protobuf", pb.__version__, "tvm", tvm.__version__)' >&2
echo "$want" > "$stamp"
