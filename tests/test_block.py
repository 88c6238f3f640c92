"""nbops/cuda/_block.py: warp and block reductions give every thread the same bits, in the documented tree order,
on the shared-memory path (the simulator; also a GPU) and the shuffle path (a GPU); the shuffle path compiles with
NVVM without local memory."""

import numpy as np
import pytest
from numba import cuda

from helpers import gpu_ptx, outside_simulator

PATHS = ["tree", pytest.param("shfl", marks=pytest.mark.gpu)]  # the simulator has no shuffles: real-GPU runs only
BLOCKS = [(32,), (96,), (32, 2)]  # one warp, three warps (not a power of two), two warps along y


def _tree(values, op):
    """op over up to 32 values in _block's order: value i with i + 16, then + 8, + 4, + 2, + 1."""
    v = list(values)
    off = 16
    while off:
        for i in range(off):
            if i + off < len(v):
                v[i] = op(v[i], v[i + off])
        off //= 2
    return v[0]


def _add(a, b):
    return a + b


def _max(a, b):
    return a if a > b or a != a else b


def _min(a, b):
    return a if a < b or a != a else b


OPS = {"sum": _add, "max": _max, "min": _min}


_COMPILED = {}


def _kernel(fn):
    """A test kernel calling ``fn`` (one per function, so a GPU compiles each once)."""
    if fn not in _COMPILED:
        _COMPILED[fn] = _make_kernel(fn)
    return _COMPILED[fn]


def _make_kernel(fn):
    from nbops.cuda._block import SCRATCH_TREE, thread_rank

    @cuda.jit
    def kernel(x, out):
        """out[b, tid, k] = fn of x[b, :] (k = 0) and of -x[b, :] (k = 1): two calls on one scratch."""
        scratch = cuda.shared.array(SCRATCH_TREE, dtype=x.dtype)
        tid = thread_rank()[0]
        b = cuda.blockIdx.x
        out[b, tid, 0] = fn(x[b, tid], scratch)
        out[b, tid, 1] = fn(-x[b, tid], scratch)

    return kernel


def _run(level, op, path, x, block):
    import nbops.cuda._block as B

    kernel = _kernel(getattr(B, f"{level}_{op}_{path}"))
    out = cuda.device_array(x.shape + (2,), x.dtype)
    kernel[x.shape[0], block](cuda.to_device(x), out)
    return out.copy_to_host()


@pytest.mark.cuda
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("level", ["warp", "block"])
@pytest.mark.parametrize("op,dtype", [("sum", np.float32), ("sum", np.float64), ("sum", np.int64),
                                      ("max", np.float32), ("min", np.float64)])
@pytest.mark.parametrize("block", BLOCKS)
def test_reductions_match_the_tree_order_bit_for_bit(path, level, op, dtype, block):
    nthreads = int(np.prod(block))
    rng = np.random.default_rng(nthreads)
    if dtype == np.int64:
        x = rng.integers(-(2 ** 40), 2 ** 40, size=(2, nthreads)).astype(dtype)
    else:
        x = (rng.standard_normal((2, nthreads)) * 1e3).astype(dtype)
    out = _run(level, op, path, x, block)
    for b in range(x.shape[0]):
        for k, vals in enumerate([x[b], -x[b]]):
            warps = [_tree(vals[w:w + 32], OPS[op]) for w in range(0, nthreads, 32)]
            if level == "warp":
                expected = np.repeat(np.array(warps, dtype), 32)
            else:
                expected = np.full(nthreads, _tree(warps, OPS[op]), dtype)
            np.testing.assert_array_equal(out[b, :, k], expected)


@pytest.mark.cuda
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("level", ["warp", "block"])
def test_max_and_min_propagate_nan(path, level):
    x = np.arange(64, dtype=np.float32).reshape(1, 64)
    x[0, 40] = np.nan
    for op in ["max", "min"]:
        out = _run(level, op, path, x, (64,))
        assert np.isnan(out[0, 32:]).all()
        if level == "warp":
            assert not np.isnan(out[0, :32]).any()
            assert out[0, 0, 0] == (31 if op == "max" else 0)


def _compile_shuffle_path():
    from numba import types

    import nbops.cuda._block as B

    for dtype in [types.float32, types.float64]:
        sig = (types.Array(dtype, 2, "C"), types.Array(dtype, 3, "C"))
        for name in ["warp_sum", "warp_max", "warp_min", "block_sum", "block_max", "block_min"]:
            assert getattr(B, name) is getattr(B, name + "_shfl")
            ptx = gpu_ptx(_kernel(getattr(B, name)), sig)
            assert "shfl.sync.down" in ptx and "shfl.sync.idx" in ptx, name
            assert "ld.local" not in ptx and "st.local" not in ptx, name


@pytest.mark.cuda
def test_shuffle_path_compiles_with_nvvm_without_local_memory():
    outside_simulator(_compile_shuffle_path)
