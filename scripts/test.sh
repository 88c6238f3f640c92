#!/usr/bin/env bash
# The test suite, set-up included: the CPU kernels and doctests, then the CUDA kernels under numba's CUDA
# simulator (NUMBA_ENABLE_CUDASIM=1 must be set before numba is imported, hence a second pytest process).
# Extra arguments go to both pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh test
py=.venv/bin/python
echo "== cpu: kernels, doctests, dispatch and errors"
"$py" -m pytest -q -n 2 -m "not cuda" "$@"
echo "== cuda kernels under the simulator (not the real-GPU tests, marked gpu: scripts/gpu-check.sh runs those)"
NUMBA_ENABLE_CUDASIM=1 "$py" -m pytest -q -n 2 -m "cuda and not gpu" "$@"
