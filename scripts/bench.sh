#!/usr/bin/env bash
# nbops' main job, set-up included: the benchmark-and-parity report against torch (python -m bench).
# Arguments go to python -m bench, e.g. --family conv,norm --quick --target cuda.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh bench
exec .venv/bin/python -m bench "$@"
