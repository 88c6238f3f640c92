"""Concurrency: 8 Python threads (and a concurrent.futures pool) calling a mix of ops give the serial results under
every threading layer numba can load here, each in its own subprocess; a forked child either works (workqueue, tbb)
or gets a clear RuntimeError (GNU OpenMP), never a silent SIGTERM."""

import importlib
import os
import re
import subprocess
import sys

import pytest

WORKERS = os.path.join(os.path.dirname(__file__), "workers.py")
SECONDS = 2.0


def _layers():
    out = ["workqueue"]
    for layer, module in [("omp", "omppool"), ("tbb", "tbbpool")]:
        try:
            importlib.import_module(f"numba.np.ufunc.{module}")
            out.append(layer)
        except ImportError:
            pass
    return out


def _run(layer, *args):
    env = dict(os.environ, NUMBA_THREADING_LAYER=layer)
    r = subprocess.run([sys.executable, WORKERS, *args], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@pytest.mark.parametrize("layer", _layers())
def test_threads_match_serial(layer):
    out = _run(layer, "threads", str(SECONDS))
    m = re.search(r"layer=(\w+) .* calls=(\d+) wrong=(\d+) errors=(\d+) pool_wrong=(\d+)", out)
    assert m, out
    assert m.group(1) == layer
    assert int(m.group(2)) > 8, out
    assert m.group(3, 4, 5) == ("0", "0", "0"), out
    print(out.strip())


@pytest.mark.parametrize("layer", _layers())
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_child_process(layer, method):
    out = _run(layer, "fork", method)
    if method == "fork" and layer == "omp":
        assert "child=('error', \"relu(): this process was forked" in out, out
        assert "'spawn'" in out
    else:
        assert "exit=0 child=('ok', True)" in out, out
