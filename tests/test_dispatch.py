"""The dispatch contract: every public op has a launcher on each target and a docs row; targets follow the arrays;
results come back as the caller's kind of array; mixed targets and unsupported arrays raise."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import nbops
from nbops import _cache, _dispatch
from helpers import make, to_numpy, to_target

OPS = sorted(_dispatch.PUBLIC_OPS)
DOCS = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "ops.md")


def test_registry_is_not_empty():
    assert "relu" in OPS and len(OPS) == len(set(OPS))


@pytest.mark.parametrize("name", OPS)
def test_public_op_is_exported(name):
    assert getattr(nbops, name) is _dispatch.PUBLIC_OPS[name].fn
    assert name in nbops.__all__


@pytest.mark.parametrize("target", ["cpu", "cuda"])
@pytest.mark.parametrize("name", OPS)
def test_every_public_op_has_a_launcher_per_target(name, target):
    """Importing a CUDA family module compiles nothing, so this runs on machines without a GPU too."""
    for k in _dispatch.PUBLIC_OPS[name].kernels:
        assert callable(_dispatch.kernel(k, target)), (name, k, target)


@pytest.mark.parametrize("name", OPS)
def test_every_public_op_has_a_docs_row(name):
    with open(DOCS) as f:
        rows = {m.group(1) for m in re.finditer(r"^\| *`?([A-Za-z_0-9]+)`? *\|", f.read(), re.M)}
    assert name in rows, f"docs/ops.md has no row for {name}"


@pytest.mark.parametrize("name", OPS)
def test_every_public_op_has_a_docstring_with_targets(name):
    doc = _dispatch.PUBLIC_OPS[name].fn.__doc__ or ""
    assert "Targets:" in doc and ">>>" in doc, f"{name}'s docstring lacks 'Targets:' or a doctest example"


def test_import_does_not_load_numba_cuda():
    code = "import sys, nbops; assert 'numba.cuda' not in sys.modules, sorted(m for m in sys.modules if 'cuda' in m)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_numpy_in_numpy_out():
    out = nbops.relu(make((3, 4)))
    assert type(out) is np.ndarray and out.dtype == np.float32


def test_torch_cpu_in_torch_cpu_out():
    x = torch.randn(3, 4)
    out = nbops.relu(x)
    assert isinstance(out, torch.Tensor) and out.device.type == "cpu" and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.relu(x))


def test_torch_inplace_writes_the_callers_memory():
    x = torch.randn(3, 4)
    expected = torch.relu(x)
    assert nbops.relu(x, inplace=True) is x
    torch.testing.assert_close(x, expected)


def test_torch_tensor_requiring_grad_is_read_without_error():
    x = torch.randn(5, requires_grad=True)
    torch.testing.assert_close(nbops.relu(x), torch.relu(x.detach()))


@pytest.mark.parametrize("bad", [[1.0, -2.0], "x", None, 3.0])
def test_non_array_input_raises_type_error(bad):
    with pytest.raises(TypeError, match=r"relu\(\): argument 'input'"):
        nbops.relu(bad)


@pytest.mark.parametrize("dtype", [np.float16, np.complex64, np.uint16, np.bool_, object])
def test_unsupported_dtype_raises_type_error(dtype):
    x = np.zeros(3, dtype=dtype)
    with pytest.raises(TypeError, match=r"relu\(\).*dtype"):
        nbops.relu(x)


@pytest.mark.cuda
def test_device_array_in_device_array_out():
    from numba import cuda

    x = make((3, 4))
    out = nbops.relu(to_target(x, "cuda"))
    assert cuda.devicearray.is_cuda_ndarray(out)
    np.testing.assert_array_equal(to_numpy(out), np.maximum(x, 0))


@pytest.mark.cuda
def test_mixed_targets_raise_value_error():
    x = make((3, 4))
    with pytest.raises(ValueError, match=r"add\(\).*one target"):
        nbops.add(x, to_target(x, "cuda"))
    with pytest.raises(ValueError, match=r"add\(\).*one target"):
        nbops.add(to_target(x, "cuda"), torch.from_numpy(x))


def test_set_num_threads_round_trips():
    n = nbops.get_num_threads()
    try:
        nbops.set_num_threads(1)
        assert nbops.get_num_threads() == 1
        np.testing.assert_array_equal(nbops.relu(make((100,))), np.maximum(make((100,)), 0))
    finally:
        nbops.set_num_threads(n)
    with pytest.raises(ValueError, match="set_num_threads"):
        nbops.set_num_threads(0)
    with pytest.raises(TypeError, match="set_num_threads"):
        nbops.set_num_threads(1.5)


def test_run_parallel_goes_serial_below_its_threshold_and_restores_the_count():
    # a small launch runs the kernel's serial twin on the calling thread (thread id 0 for every iteration, the
    # parallel version not even compiled), a large one the parallel kernel on every thread; a compiled entry pair
    # (Compiled) picks the same way; a plain njit function that launches parallel kernels runs them on one
    # thread; the caller's thread count comes back either way, also when the kernel raises
    import numba
    from numba import njit, prange, types

    from nbops.cpu._util import SERIAL_BELOW, Compiled, run_parallel, serial, thread_count

    @njit(parallel=True)
    def threads_seen(out):
        for i in prange(out.shape[0]):
            out[i, 0] = numba.get_num_threads()
            out[i, 1] = numba.get_thread_id()

    @njit
    def launches(out):
        threads_seen(out)

    @njit
    def fails():
        raise RuntimeError("kernel failed")

    n = nbops.get_num_threads()
    seen = np.full((64, 2), -1, np.int64)
    run_parallel(threads_seen, SERIAL_BELOW - 1, seen)
    assert (seen[:, 1] == 0).all() and thread_count() == n
    assert not threads_seen.signatures and serial(threads_seen).signatures and serial(threads_seen) is not threads_seen
    run_parallel(threads_seen, SERIAL_BELOW, seen)
    assert (seen[:, 0] == n).all() and thread_count() == n and threads_seen.signatures
    run_parallel(threads_seen, 10, seen, below=5)
    assert (seen[:, 0] == n).all()
    pair = Compiled(threads_seen, (types.Array(types.int64, 2, "C"),))
    seen[:] = -1
    run_parallel(pair, 1, seen)
    assert (seen[:, 1] == 0).all() and pair._parallel is None
    run_parallel(pair, SERIAL_BELOW, seen)
    assert (seen[:, 0] == n).all() and pair._parallel is not None
    run_parallel(launches, 1, seen)
    assert (seen[:, 0] == 1).all() and thread_count() == n
    with pytest.raises(RuntimeError, match="kernel failed"):
        run_parallel(fails, 1)
    assert thread_count() == n == numba.get_num_threads()


def test_cache_falls_back_to_a_temp_dir_when_the_package_is_read_only(monkeypatch):
    from numba.core import config

    monkeypatch.setattr(config, "CACHE_DIR", "")
    monkeypatch.setattr(_cache, "_writable", lambda d: False)
    assert _cache.ensure_cache_dir("/nonexistent/site-packages/nbops") == _cache.fallback_dir()
    assert config.CACHE_DIR == _cache.fallback_dir()


def test_cache_keeps_a_user_choice(monkeypatch):
    from numba.core import config

    monkeypatch.setattr(config, "CACHE_DIR", "/tmp/somewhere")
    assert _cache.ensure_cache_dir("/nonexistent") == "/tmp/somewhere"


def test_package_runs_when_its_tree_cannot_take_the_cache():
    """In a fresh process whose package tree reports unwritable (CI runs as root, for whom chmod changes nothing,
    so the probe is patched before nbops loads), the cache moves to the temp dir and kernels compile and run."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('nbops._cache', {_cache.__file__!r})\n"
        "c = importlib.util.module_from_spec(spec); spec.loader.exec_module(c); sys.modules['nbops._cache'] = c\n"
        "c._writable = lambda d: False\n"
        "import numpy as np, nbops\n"
        "from numba.core import config\n"
        "assert config.CACHE_DIR == c.fallback_dir(), config.CACHE_DIR\n"
        "print(nbops.relu(np.array([-1.0, 2.0], dtype=np.float32)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "[0. 2.]" in res.stdout
