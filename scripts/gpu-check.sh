#!/usr/bin/env bash
# The one GPU check: on a bare GPU machine with its own python3 (torch with CUDA, numba, numba-cuda), run
#   1. the CUDA tests on the device (pytest -m "cuda and not gpu", real kernels, no simulator),
#   2. the real-GPU tests (pytest -m gpu: streams, no syncs inside ops, asynchrony, CUDA graph capture, warp
#      shuffles, register budgets),
#   3. each scripts/gpu_*.py (e.g. gpu_calls_profile.py: where an nbops call's host time goes),
#   4. host and device microseconds per call for a few ops against torch, and a ResNet-18 forward replayed from a
#      CUDA graph against eager,
#   5. python -m bench --target cuda (last: cut short by its limit, it still reports the cases it finished),
# then print a short table last. Installs nothing from a network: wheels carried in .whl/ (say the numpy 2.4 this
# project is tested with, where the image's numba refuses the image's numpy 2.5) are installed with --no-index
# into $SITE, ahead of the image's packages. Fetch them here, once, with
#   echo /.whl/ >> .git/info/exclude
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl numpy==2.4.1
# and name .whl in the device tool's carry.
# Every stage runs under a time limit and the whole script under GPU_CHECK_SECONDS (default 540, inside one
# 10-minute device call); logs go to $OUT (the device tool's folder that comes back) or /tmp/gpu-check.
# Environment: PYTHON, GPU_CHECK_SECONDS, TEST_WORKERS, BENCH_ARGS, SITE, and each stage's limit in seconds:
# TESTS_S, GPU_TESTS_S, BENCH_S, CALLS_S, EXTRA_S (the optional scripts/gpu_*.py stages, each).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOG=${OUT:-/tmp/gpu-check}
SITE=${SITE:-/tmp/gpu-check-site}
DEADLINE=${GPU_CHECK_SECONDS:-540}
mkdir -p "$LOG"
stamp() { date -u +%H:%M:%S; }
ROWS=()

stage() {  # stage NAME LIMIT CMD...: run CMD under min(LIMIT, time left), log to $LOG/NAME.log, record a table row
    local name=$1 limit=$2 rc=0 t0=$SECONDS left
    shift 2
    left=$((DEADLINE - SECONDS - 15))
    ((limit < left)) || limit=$left
    if ((limit < 20)); then
        ROWS+=("$name|skipped|0|no time left")
        return
    fi
    echo "== $(stamp) $name (limit ${limit}s)"
    timeout --signal=INT --kill-after=15 "$limit" "$@" 2>&1 | tee "$LOG/$name.log" || rc=$?
    ((rc != 124)) || rc="timeout"
    ROWS+=("$name|$rc|$((SECONDS - t0))|$(grep -v '^[[:space:]]*$' "$LOG/$name.log" | tail -n 1 | cut -c1-100)")
}

if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
    export PYTHONPATH=$SITE
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

echo "== $(stamp) environment"
"$PY" - <<'EOF' | tee "$LOG/env.log"
import sys
from importlib.metadata import PackageNotFoundError, version

import numba
import numpy
import torch
from numba import cuda

try:
    numba_cuda = version("numba-cuda")
except PackageNotFoundError:
    numba_cuda = "not installed (numba's built-in CUDA target)"
print(f"python {sys.version.split()[0]}, numpy {numpy.__version__}, numba {numba.__version__}, "
      f"numba-cuda {numba_cuda}, torch {torch.__version__}")
assert cuda.is_available() and torch.cuda.is_available(), "no CUDA device seen by numba and torch"
print(f"device: {torch.cuda.get_device_name()}, cc {cuda.get_current_device().compute_capability}")
EOF

# -v prints each result as it lands, so a stage cut short by its limit still names every failure it reached
stage cuda-tests "${TESTS_S:-240}" "$PY" -m pytest -v --tb=short -p no:cacheprovider -n "${TEST_WORKERS:-8}" \
    --timeout 120 -m "cuda and not gpu" tests
stage gpu-tests "${GPU_TESTS_S:-90}" "$PY" -m pytest -q -p no:cacheprovider -p no:xdist -m gpu tests
for extra in scripts/gpu_*.py; do
    [[ -f $extra ]] || continue
    name=$(basename "$extra" .py)
    stage "${name#gpu_}" "${EXTRA_S:-60}" "$PY" "$extra"
done
stage calls "${CALLS_S:-90}" "$PY" - <<'EOF'
"""Host and device us per call (median of 5 rounds of 50 back-to-back calls; device time from CUDA events around
each round), nbops against torch on the same tensors; then a ResNet-18 forward, eager against CUDA-graph replay."""
import statistics
import time

import torch
from numba import cuda

import nbops
from nbops.models import resnet18

F = torch.nn.functional
torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False


def r(*shape):
    return torch.randn(*shape, device="cuda")


def per_call(fn, args, calls=50, rounds=5):
    fn(*args)
    host, device = [], []
    for _ in range(rounds):
        torch.cuda.synchronize()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(*args)
        host.append((time.perf_counter() - t0) / calls * 1e6)
        e1.record()
        e1.synchronize()
        device.append(e0.elapsed_time(e1) / calls * 1e3)
    return statistics.median(host), statistics.median(device)


big = r(8192, 8192)
cases = [
    ("relu 4x4", (r(4, 4),), nbops.relu, torch.relu),
    ("add 64x64", (r(64, 64), r(64, 64)), nbops.add, torch.add),
    ("softmax (4096,1024)", (r(4096, 1024),), lambda x: nbops.softmax(x, 1), lambda x: torch.softmax(x, 1)),
    ("layer_norm (32768,1024)", (r(32768, 1024),), lambda x: nbops.layer_norm(x, (1024,)),
     lambda x: F.layer_norm(x, (1024,))),
    ("sum dim 1 (4096,4096)", (r(4096, 4096),), lambda x: nbops.sum(x, 1), lambda x: torch.sum(x, 1)),
    ("var dim 1 (4096,4096)", (r(4096, 4096),), lambda x: nbops.var(x, 1), lambda x: torch.var(x, 1)),
    ("batch_norm train (32,256,28,28)", (r(32, 256, 28, 28),), lambda x: nbops.batch_norm(x, None, None, training=True),
     lambda x: F.batch_norm(x, None, None, training=True)),
    ("relu 8192^2 numba array in", (cuda.as_cuda_array(big),), nbops.relu, lambda x: torch.relu(big)),
]
print(f"| {'us per call':34} {'nbops host':>10} {'nbops dev':>10} {'torch host':>10} {'torch dev':>10}")
for name, args, ours, theirs in cases:
    (oh, od), (th, td) = per_call(ours, args), per_call(theirs, args)
    print(f"| {name:34} {oh:10.1f} {od:10.1f} {th:10.1f} {td:10.1f}")

model = resnet18().eval().cuda()
x = r(8, 3, 224, 224)
side = torch.cuda.Stream()
side.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(side):
    for _ in range(2):
        model(x)
torch.cuda.current_stream().wait_stream(side)
graph = torch.cuda.CUDAGraph()
with torch.cuda.graph(graph):
    y = model(x)
_, eager = per_call(model, (x,), calls=5, rounds=3)
_, replay = per_call(graph.replay, (), calls=5, rounds=3)
torch.cuda.synchronize()
assert torch.allclose(y, model(x), rtol=1e-4, atol=1e-4), "graph replay differs from eager"
print(f"| resnet18 (8,3,224,224) forward: eager {eager / 1e3:.2f} ms, CUDA graph replay {replay / 1e3:.2f} ms")
EOF
# last: a bench cut short by its limit (SIGINT) still prints the report of the cases it finished
# shellcheck disable=SC2086
stage bench "${BENCH_S:-180}" "$PY" -m bench --target cuda --no-save ${BENCH_ARGS:-}

echo
echo "== $(stamp) gpu-check summary (logs in $LOG)"
cat "$LOG/env.log"
printf '%-10s | %-7s | %5s | %s\n' stage rc s "last line"
failed=0
for row in "${ROWS[@]}"; do
    IFS='|' read -r name rc secs last <<<"$row"
    printf '%-10s | %-7s | %5s | %s\n' "$name" "$rc" "$secs" "$last"
    [[ $rc == 0 ]] || failed=1
done
if [[ -f $LOG/calls.log ]]; then
    grep '^| ' "$LOG/calls.log" || true
fi
exit "$failed"
