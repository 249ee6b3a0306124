#!/usr/bin/env bash
# Creates the virtual environment for the peer comparison (bench/peers/run.py): NumPyro + JAX (CPU),
# PyMC + PyTensor, numpy/scipy, and fastvi built from this repository.
#
#   bench/peers/setup_venv.sh [VENV_DIR]     (default: bench/peers/.venv, which git ignores)
#
# PYTHON picks the interpreter (default: python3). Needs network access to PyPI and a C++17
# compiler (fastvi's build; PyTensor also compiles C with g++ at run time). About 1.1 GB on disk.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${1:-${FASTVI_PEERS_VENV:-$here/.venv}}"
python="${PYTHON:-python3}"

echo "creating $venv with $("$python" --version 2>&1)"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
echo "installing the peers (numpyro, jax[cpu], pymc) ..."
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
echo "building and installing fastvi from $repo ..."
"$venv/bin/python" -m pip install --quiet "$repo"
"$venv/bin/python" - <<'PY'
import fastvi, jax, numpyro, pymc, pytensor
print(f"ok: fastvi {fastvi.__version__}, jax {jax.__version__}, numpyro {numpyro.__version__}, "
      f"pymc {pymc.__version__}, pytensor {pytensor.__version__}; fastvi kernels: {', '.join(fastvi.kernels())}")
PY
echo "run: $venv/bin/python $here/run.py --repeats 3"
