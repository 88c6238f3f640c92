"""Shared test helpers: fresh random inputs, moving them to a target, and the one-line parity check against torch.

    check(nbops.relu, torch.relu, target, make((3, 5)))

moves the array arguments to ``target`` (keeping their strides), runs nbops there and torch on the CPU, and asserts
shape, then dtype, then values (``torch.testing.assert_close`` tolerances unless loosened with a stated reason).
"""

import numpy as np
import pytest
import torch

TARGETS = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
DTYPES = [np.float32, np.float64]


def make(shape, dtype=np.float32, seed=0, offset=0.0, scale=1.0, layout="contiguous"):
    """A fresh standard-normal array (times ``scale``, plus ``offset``) of ``shape`` and ``dtype``.

    ``layout``: 'contiguous'; 'transposed' (a view with its last two axes swapped in memory); 'strided' (a view
    taking every other element of the last axis). Views keep positive strides so every array kind can hold them.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    if layout == "contiguous":
        base = rng.standard_normal(shape)
        return np.asarray(base * scale + offset).astype(dtype)
    if layout == "transposed":
        if len(shape) < 2:
            raise ValueError("'transposed' needs 2 or more dims")
        swapped = shape[:-2] + (shape[-1], shape[-2])
        base = (rng.standard_normal(swapped) * scale + offset).astype(dtype)
        return np.swapaxes(base, -1, -2)
    if layout == "strided":
        wide = shape[:-1] + (2 * shape[-1],) if shape else shape
        base = (rng.standard_normal(wide) * scale + offset).astype(dtype)
        return base[..., ::2]
    raise ValueError(f"unknown layout {layout!r}")


def make_int(shape, low, high, dtype=np.int64, seed=0):
    return np.random.default_rng(seed).integers(low, high, size=shape).astype(dtype)


def to_target(x, target):
    """``x`` (a NumPy array, or anything else) on ``target``: a numba device array on 'cuda' with the same shape
    and strides (a view of a copy of ``x``'s base), unchanged on 'cpu' or when ``x`` is not an array."""
    if target == "cpu" or not isinstance(x, np.ndarray):
        return x
    from numba import cuda

    from nbops._arrays import cuda_as_strided

    if x.flags.c_contiguous or x.size == 0:
        return cuda.to_device(np.asarray(x, order="C"))
    base = x
    while isinstance(base.base, np.ndarray):
        base = base.base
    base = np.ascontiguousarray(base)
    start = x.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    assert all(s >= 0 for s in x.strides) and 0 <= start < base.nbytes, "to_target needs a forward view"
    dev = cuda.to_device(base.reshape(-1).view(np.uint8))
    return cuda_as_strided(dev[start:].view(x.dtype), x.shape, x.strides)


def to_numpy(x):
    """A host NumPy copy of any array kind nbops returns (and tuples/lists of them); other values unchanged."""
    if isinstance(x, (tuple, list)):
        return type(x)(to_numpy(v) for v in x) if not hasattr(x, "_fields") else tuple(to_numpy(v) for v in x)
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if hasattr(x, "copy_to_host"):
        return x.copy_to_host()
    return x


def to_torch(x):
    """A CPU torch tensor with ``x``'s values (copies NumPy arrays, so torch cannot alias test inputs)."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.array(x))
    if isinstance(x, (list, tuple)):
        return type(x)(to_torch(v) for v in x)
    return x


def assert_same(actual, expected, rtol=None, atol=None, check_dtype=True):
    """Assert shape, then dtype, then values of ``actual`` (a NumPy array) against ``expected`` (a torch tensor,
    NumPy array or number), NaN == NaN."""
    if isinstance(expected, (tuple, list)):
        assert isinstance(actual, (tuple, list)) and len(actual) == len(expected), (type(actual), len(expected))
        for a, e in zip(actual, expected):
            assert_same(a, e, rtol, atol, check_dtype)
        return
    exp = expected if isinstance(expected, torch.Tensor) else torch.as_tensor(np.asarray(expected))
    act = np.asarray(actual)
    assert tuple(act.shape) == tuple(exp.shape), f"shape {act.shape} != torch's {tuple(exp.shape)}"
    act_t = torch.from_numpy(np.array(act))
    if check_dtype:
        assert act_t.dtype == exp.dtype, f"dtype {act.dtype} != torch's {exp.dtype}"
    else:
        act_t = act_t.to(exp.dtype)
    torch.testing.assert_close(act_t, exp, rtol=rtol, atol=atol, equal_nan=True, check_dtype=check_dtype)


def check(nb_fn, torch_fn, target, *args, rtol=None, atol=None, check_dtype=True, **kwargs):
    """Run ``nb_fn`` on ``target`` and ``torch_fn`` on the CPU with the same arguments and compare the results.

    NumPy arrays among ``args``/``kwargs`` (also inside lists) go to the target for nbops and become CPU tensors
    for torch. Returns nbops' result as NumPy.
    """
    nb_args = [_move(a, target) for a in args]
    nb_kwargs = {k: _move(v, target) for k, v in kwargs.items()}
    t_args = [to_torch(a) for a in args]
    t_kwargs = {k: to_torch(v) for k, v in kwargs.items()}
    expected = torch_fn(*t_args, **t_kwargs)
    actual = to_numpy(nb_fn(*nb_args, **nb_kwargs))
    assert_same(actual, expected, rtol=rtol, atol=atol, check_dtype=check_dtype)
    return actual


def _move(x, target):
    if isinstance(x, list):
        return [to_target(v, target) for v in x]
    if isinstance(x, tuple) and any(isinstance(v, np.ndarray) for v in x):
        return tuple(to_target(v, target) for v in x)
    return to_target(x, target)


def gpu_ptx(kernel, argtypes, cc=(9, 0)):
    """PTX of ``@cuda.jit`` ``kernel`` for the numba types ``argtypes``, built by the real CUDA compiler (NVVM):
    catches the typing and lowering errors the simulator cannot see, without a GPU. Where no GPU is present the
    compute capability that device functions are compiled for is taken as ``cc`` for the duration of the call.
    Needs numba's real CUDA target: run it through :func:`outside_simulator`."""
    import types as pytypes

    from numba import cuda
    from numba.cuda import dispatcher

    if cuda.is_available():
        return cuda.compile_ptx(kernel.py_func, argtypes, cc=cc)[0]
    found = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=cc)
    try:
        return cuda.compile_ptx(kernel.py_func, argtypes, cc=cc)[0]
    finally:
        dispatcher.get_current_device = found


def outside_simulator(fn):
    """Call ``fn()`` (a test module's function taking no arguments) here, or, when this process runs the CUDA
    simulator (whose numba.cuda cannot compile), in a child Python without NUMBA_ENABLE_CUDASIM."""
    import os
    import subprocess
    import sys

    from numba import config

    if not config.ENABLE_CUDASIM:
        fn()
        return
    module, name = fn.__module__, fn.__name__
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(here)] + [p for p in [env.get("PYTHONPATH")] if p])
    done = subprocess.run([sys.executable, "-c", f"import {module}; {module}.{name}()"], cwd=here, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
