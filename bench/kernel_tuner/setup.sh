#!/usr/bin/env bash
# Creates the virtual environment for the Kernel Tuner peer benchmark and installs the pinned
# packages of requirements.txt into it. Idempotent: a venv whose installed packages already match
# requirements.txt is left alone.
#
#   KTUNE_KT_VENV   where the venv goes (default: bench/kernel_tuner/.venv)
#   PYTHON          interpreter to build it with (default: the python3 on PATH; Python >= 3.11,
#                   since the pinned numpy needs it)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${KTUNE_KT_VENV:-$here/.venv}"
python="${PYTHON:-python3}"
req="$here/requirements.txt"
stamp="$venv/.ktune-requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
   "$venv/bin/python" -c 'import kernel_tuner' 2>/dev/null; then
  echo "setup.sh: $venv is up to date" >&2
  exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "setup.sh: $python is $("$python" --version 2>&1); Python >= 3.11 is needed" >&2
    exit 1
  }
  echo "setup.sh: creating $venv with $(command -v "$python") ($("$python" --version 2>&1))" >&2
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
"$venv/bin/python" -c 'import kernel_tuner, numpy, scipy; print("setup.sh: kernel_tuner", kernel_tuner.__version__ if hasattr(kernel_tuner, "__version__") else "?", "numpy", numpy.__version__, "scipy", scipy.__version__)' >&2
echo "$want" > "$stamp"
