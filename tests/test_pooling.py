import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nbops
from helpers import DTYPES, TARGETS, check, gpu_ptx, make, make_int, outside_simulator, to_numpy, to_target

# (input shape, kwargs): window geometry rows shared by max and avg pooling (dilation only for max)
MAX2D = [
    ((2, 3, 9, 11), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 8, 8), dict(kernel_size=2)),
    ((2, 2, 7, 10), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), dilation=(2, 1), ceil_mode=True)),
    ((1, 1, 5, 5), dict(kernel_size=3, stride=3, padding=1, ceil_mode=True)),  # ceil window would start in padding
    ((1, 1, 6, 6), dict(kernel_size=2, stride=3, ceil_mode=True)),
    ((3, 6, 7), dict(kernel_size=2, stride=1)),  # unbatched
    ((1, 1, 1, 2), dict(kernel_size=(1, 2), padding=(0, 1), dilation=(1, 3), stride=1)),  # window wholly in padding
    ((2, 3, 1, 1), dict(kernel_size=1)),
    ((0, 3, 5, 5), dict(kernel_size=2)),  # empty batch
    ((1, 2, 7, 9), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 3))),
]
MAX2D_CPU = [  # wider rows: long vectorised interior sweeps and stride phases
    ((2, 4, 33, 47), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 40, 41), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)),
    ((1, 3, 20, 70), dict(kernel_size=(2, 5), stride=(2, 4), padding=(1, 2), dilation=(3, 2))),
]
MAX1D = [
    ((2, 3, 11), dict(kernel_size=3, stride=2, padding=1)),
    ((4, 9), dict(kernel_size=2)),  # unbatched
    ((1, 2, 10), dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)),
    ((2, 1, 1), dict(kernel_size=1)),
    ((0, 2, 6), dict(kernel_size=2)),
]
AVG2D = [
    ((2, 3, 9, 11), dict(kernel_size=3, stride=2, padding=1)),
    ((2, 3, 9, 11), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ((1, 2, 8, 8), dict(kernel_size=2)),
    ((2, 2, 7, 10), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), ceil_mode=True)),
    ((1, 2, 5, 5), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),  # window clipped to input+padding
    ((1, 2, 5, 5), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ((1, 2, 6, 7), dict(kernel_size=2, stride=3, ceil_mode=True)),
    ((1, 2, 6, 7), dict(kernel_size=3, padding=1, divisor_override=5)),
    ((3, 6, 7), dict(kernel_size=2, stride=1)),
    ((2, 3, 1, 1), dict(kernel_size=1)),
    ((0, 3, 5, 5), dict(kernel_size=2)),
]
AVG2D_CPU = [
    ((2, 4, 33, 47), dict(kernel_size=2, stride=2)),
    ((1, 2, 40, 41), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True, count_include_pad=False)),
    ((1, 3, 21, 70), dict(kernel_size=(3, 5), stride=(2, 3), padding=(1, 2), ceil_mode=True)),
]
AVG1D = [
    ((2, 3, 11), dict(kernel_size=3, stride=2, padding=1)),
    ((2, 3, 11), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ((4, 9), dict(kernel_size=2)),
    ((1, 2, 5), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((0, 2, 6), dict(kernel_size=2)),
]
ADAPTIVE2D = [
    ((2, 3, 7, 7), 1),
    ((2, 3, 13, 7), (4, 3)),
    ((1, 2, 13, 7), (5, None)),
    ((1, 2, 5, 6), (5, 6)),
    ((1, 2, 5, 6), (9, 11)),  # more bins than inputs: bins overlap
    ((3, 8, 9), (2, 4)),  # unbatched
    ((1, 2, 5, 6), (0, 3)),  # empty output
    ((0, 2, 5, 6), 2),
]
ADAPTIVE1D = [
    ((2, 3, 13), 4),
    ((2, 3, 13), (1,)),
    ((3, 7), 11),
    ((2, 3, 5), 0),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kw", MAX2D)
@pytest.mark.parametrize("return_indices", [False, True])
def test_max_pool2d(target, dtype, shape, kw, return_indices):
    check(nbops.max_pool2d, F.max_pool2d, target, make(shape, dtype), return_indices=return_indices, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kw", MAX2D_CPU)
@pytest.mark.parametrize("return_indices", [False, True])
def test_max_pool2d_wide_cpu(dtype, shape, kw, return_indices):
    check(nbops.max_pool2d, F.max_pool2d, "cpu", make(shape, dtype, seed=1), return_indices=return_indices, **kw)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kw", MAX1D)
@pytest.mark.parametrize("return_indices", [False, True])
def test_max_pool1d(target, dtype, shape, kw, return_indices):
    check(nbops.max_pool1d, F.max_pool1d, target, make(shape, dtype), return_indices=return_indices, **kw)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kw", AVG2D)
def test_avg_pool2d(target, dtype, shape, kw):
    check(nbops.avg_pool2d, F.avg_pool2d, target, make(shape, dtype), **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kw", AVG2D_CPU)
def test_avg_pool2d_wide_cpu(dtype, shape, kw):
    check(nbops.avg_pool2d, F.avg_pool2d, "cpu", make(shape, dtype, seed=1), **kw)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kw", AVG1D)
def test_avg_pool1d(target, dtype, shape, kw):
    check(nbops.avg_pool1d, F.avg_pool1d, target, make(shape, dtype), **kw)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,size", ADAPTIVE2D)
def test_adaptive_pool2d(target, dtype, shape, size):
    x = make(shape, dtype)
    check(nbops.adaptive_avg_pool2d, F.adaptive_avg_pool2d, target, x, size)
    check(nbops.adaptive_max_pool2d, F.adaptive_max_pool2d, target, x, size)
    check(nbops.adaptive_max_pool2d, F.adaptive_max_pool2d, target, x, size, return_indices=True)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,size", ADAPTIVE1D)
def test_adaptive_pool1d(target, dtype, shape, size):
    x = make(shape, dtype)
    check(nbops.adaptive_avg_pool1d, F.adaptive_avg_pool1d, target, x, size)
    check(nbops.adaptive_max_pool1d, F.adaptive_max_pool1d, target, x, size, return_indices=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_avg_pool_cpu(dtype):
    """The contiguous-run path of adaptive_avg_pool2d (whole planes and whole-row bins), on large-offset data."""
    x = make((3, 70, 7, 7), dtype, seed=2, offset=1e4)
    check(nbops.adaptive_avg_pool2d, F.adaptive_avg_pool2d, "cpu", x, 1)
    check(nbops.adaptive_avg_pool2d, F.adaptive_avg_pool2d, "cpu", x, (3, 1))
    check(nbops.adaptive_avg_pool2d, F.adaptive_avg_pool2d, "cpu", make((2, 5, 31, 29), dtype, seed=3), (1, 1))
    check(nbops.adaptive_avg_pool2d, F.adaptive_avg_pool2d, "cpu", x[0], 2)


def test_adaptive_avg_pool2d_fast_path_matches_general_path():
    """A contiguous float NumPy input with an int output_size skips the general argument path; the same kernel must
    give what the general path (a tuple output_size, a torch tensor) gives, bit for bit and in the same shape."""
    x = make((3, 70, 7, 7), np.float32, seed=4)
    for a, b in [(nbops.adaptive_avg_pool2d(x, 1), nbops.adaptive_avg_pool2d(x, (1, 1))),
                 (nbops.adaptive_avg_pool2d(x[1], 3), nbops.adaptive_avg_pool2d(x[1], (3, 3))),
                 (nbops.adaptive_avg_pool2d(x, 2), nbops.adaptive_avg_pool2d(torch.from_numpy(x), 2).numpy())]:
        assert a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_window_pool_fast_paths_match_the_general_path(dtype):
    """Plain NumPy calls of max and average pooling skip the general path (ops/pooling.py ``_fast_window``): the
    same launcher and operands, so the values equal the general path's (torch tensors in take it) bit for bit; any
    other call keeps the general path's checks."""
    from nbops.ops import pooling as ops

    rows = [(nbops.max_pool2d, 2, r) for r in MAX2D + MAX2D_CPU] + [(nbops.max_pool1d, 1, r) for r in MAX1D]
    rows += [(nbops.avg_pool2d, 2, r) for r in AVG2D + AVG2D_CPU] + [(nbops.avg_pool1d, 1, r) for r in AVG1D]
    taken = 0
    for fn, nd, (shape, kw) in rows:
        x = make(shape, dtype, seed=len(shape) + shape[-1])
        plain = len(shape) == nd + 2 and 0 not in shape  # a divisor_override then leaves it in _avg_pool
        args = [kw["kernel_size"], kw.get("stride"), kw.get("padding", 0), kw.get("dilation", 1),
                kw.get("ceil_mode", False)]
        assert (ops._fast_window(nd, x, *args) is not None) == plain, (fn, shape, kw)
        got = fn(x, **kw)
        general = fn(torch.from_numpy(x), **kw).numpy()
        assert got.dtype == general.dtype == dtype and got.shape == general.shape and np.array_equal(got, general)
        taken += plain
    assert taken >= 25
    x = make((1, 2, 6, 6), dtype, seed=1)
    for args in [(x[0], 2, None, 0, 1, False), (x, 2, None, 0, 1, 0), (x, True, None, 0, 1, False),
                 (x, (2,), None, 0, 1, False), (x, 2, (), 0, 1, False), (x, 2, None, 2, 1, False),
                 (x, 2, 0, 0, 1, False), (x, 2, None, 0, np.int64(1), False), (x, 7, None, 0, 1, False),
                 (x[:, :, ::2], 2, None, 0, 1, False), (x.astype(np.float16), 2, None, 0, 1, False)]:
        assert ops._fast_window(2, *args) is None, args[1:]
    assert ops._fast_window(2, x, [3, 2], [2, 1], (1, 0), 1, True) == ((3, 2), (2, 1), (1, 0), (1, 1), (4, 5))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("layout", ["transposed", "strided"])
def test_pool_noncontiguous(target, layout):
    x = make((2, 3, 8, 9), np.float32, layout=layout)
    check(nbops.max_pool2d, F.max_pool2d, target, x, 3, 2, 1, return_indices=True)
    check(nbops.avg_pool2d, F.avg_pool2d, target, x, 2)
    check(nbops.adaptive_avg_pool2d, F.adaptive_avg_pool2d, target, x, (3, 2))


@pytest.mark.parametrize("target", TARGETS)
def test_pool_large_offset(target):
    x = make((2, 3, 9, 10), np.float32, offset=1e4)
    check(nbops.max_pool2d, F.max_pool2d, target, x, 3, 2, 1, return_indices=True)
    check(nbops.avg_pool2d, F.avg_pool2d, target, x, 3, 2, 1, count_include_pad=False)
    check(nbops.adaptive_avg_pool2d, F.adaptive_avg_pool2d, target, x, (4, 3))


def _special(dtype):
    """A (1, 2, 6, 7) input with NaN, +inf and -inf placed in windows, and one plane of -inf only."""
    x = make((1, 2, 6, 7), dtype, seed=4)
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 1, 0] = np.nan  # two NaNs in one window: torch reports the last one's index
    x[0, 0, 3, 3] = np.inf
    x[0, 0, 4, 5] = -np.inf
    x[0, 0, 5, 6] = np.nan
    x[0, 1] = -np.inf
    return x


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # the simulator's NumPy scalars on inf - inf
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_nan_inf(target, dtype):
    x = _special(dtype)
    for kw in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, stride=1, dilation=2, ceil_mode=True)):
        check(nbops.max_pool2d, F.max_pool2d, target, x, return_indices=True, **kw)
        check(nbops.max_pool2d, F.max_pool2d, target, x, **kw)
    check(nbops.max_pool1d, F.max_pool1d, target, x[0], 3, 2, 1, return_indices=True)
    check(nbops.adaptive_max_pool2d, F.adaptive_max_pool2d, target, x, (3, 4), return_indices=True)
    check(nbops.avg_pool2d, F.avg_pool2d, target, x, 3, 2, 1)
    check(nbops.adaptive_avg_pool2d, F.adaptive_avg_pool2d, target, x, (3, 4))


@pytest.mark.parametrize("target", TARGETS)
def test_max_pool_ties(target):
    """Integer-valued inputs make many equal maxima: the index is the first in row-major window order."""
    x = make_int((2, 3, 9, 10), -2, 2, seed=5).astype(np.float32)
    check(nbops.max_pool2d, F.max_pool2d, target, x, 3, 2, 1, return_indices=True)
    check(nbops.max_pool2d, F.max_pool2d, target, x, (2, 3), 1, (1, 0), (2, 3), return_indices=True)
    check(nbops.adaptive_max_pool2d, F.adaptive_max_pool2d, target, x, (4, 4), return_indices=True)
    check(nbops.max_pool1d, F.max_pool1d, target, x[0], 3, 1, 1, return_indices=True)


@pytest.mark.parametrize("target", TARGETS)
def test_max_pool_random_geometry_ties_nan(target):
    """Random kernel/stride/padding/dilation/ceil_mode on integer-valued inputs sprinkled with NaN and -inf: values
    and indices are torch's, including which of several equal maxima or NaNs is reported."""
    rng = np.random.default_rng(7)
    done = 0
    while done < (40 if target == "cpu" else 6):
        H, W = (int(v) for v in rng.integers(1, 13, 2))
        k = tuple(int(v) for v in rng.integers(1, 4, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        d = tuple(int(v) for v in rng.integers(1, 3, 2))
        p = tuple(int(rng.integers(0, kv // 2 + 1)) for kv in k)
        ceil = bool(rng.integers(0, 2))
        if any(n + 2 * pv - dv * (kv - 1) - 1 < 0 for n, kv, pv, dv in zip((H, W), k, p, d)):
            continue  # torch: output size too small
        x = rng.integers(-2, 3, (1, 3, H, W)).astype(np.float32)
        x[rng.random(x.shape) < 0.1] = np.nan
        x[rng.random(x.shape) < 0.1] = -np.inf
        check(nbops.max_pool2d, F.max_pool2d, target, x, k, s, p, d, ceil, True)
        check(nbops.max_pool2d, F.max_pool2d, target, x, k, s, p, d, ceil)
        done += 1


@pytest.mark.parametrize("target", TARGETS)
def test_pool_torch_tensor_in_out(target):
    x = make((1, 2, 6, 6), np.float32)
    t = torch.from_numpy(x) if target == "cpu" else to_target(x, target)
    out, idx = nbops.max_pool2d(t, 2, return_indices=True)
    if target == "cpu":
        assert isinstance(out, torch.Tensor) and idx.dtype == torch.int64
    exp, exp_idx = F.max_pool2d(torch.from_numpy(x), 2, return_indices=True)
    np.testing.assert_array_equal(to_numpy(out), exp.numpy())
    np.testing.assert_array_equal(to_numpy(idx), exp_idx.numpy())



@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_pool_layouts(dtype):
    """Output rows wider than a warp (two column passes of a 32-thread row), windows clipped by padding and
    dilation, 2 x 2 windows loaded two rows at a time, and global average pooling of planes longer than the
    four-load main loop (13 x 11 = 143 values per warp)."""
    x = make((1, 2, 9, 70), dtype)
    check(nbops.max_pool2d, F.max_pool2d, "cuda", x, 3, 2, 1, return_indices=True)
    check(nbops.max_pool2d, F.max_pool2d, "cuda", x, (2, 3), 1, (1, 1), (2, 2), return_indices=True)
    check(nbops.avg_pool2d, F.avg_pool2d, "cuda", x, 2, 2)
    check(nbops.avg_pool2d, F.avg_pool2d, "cuda", x, (3, 5), 1, 1, count_include_pad=False)
    check(nbops.adaptive_avg_pool2d, F.adaptive_avg_pool2d, "cuda", make((2, 3, 13, 11), dtype, offset=50.0), 1)


def _compile_pool_kernels():
    from numba import types

    from nbops.cuda import pooling as K

    for dt in (types.float32, types.float64):
        a3, i3 = types.Array(dt, 3, "C"), types.Array(types.int64, 3, "C")
        a2, a1, i, b = types.Array(dt, 2, "C"), types.Array(dt, 1, "C"), types.int64, types.boolean
        sigs = [
            (K._max_pool_kernel, (a3, i3, a3, a2) + (i,) * 8 + (b, b)),
            (K._avg_pool_kernel, (a3, a3, a2) + (i,) * 6 + (b, i, b)),
            (K._adaptive_avg_pool_kernel, (a3, a3)),
            (K._global_avg_pool_kernel, (a1, a2, i, i)),
            (K._adaptive_max_pool_kernel, (a3, i3, a3)),
        ]
        for kernel, sig in sigs:
            ptx = gpu_ptx(kernel, sig)
            assert "ld.local" not in ptx and "st.local" not in ptx, kernel.py_func.__name__


@pytest.mark.cuda
def test_cuda_pool_kernels_compile_without_local_memory():
    outside_simulator(_compile_pool_kernels)


ERRORS = [
    (nbops.max_pool2d, make((1, 2, 5, 5)), dict(kernel_size=3, padding=2), ValueError, "max_pool2d.*half of kernel"),
    (nbops.max_pool2d, make((1, 2, 5, 5)), dict(kernel_size=0), ValueError, "max_pool2d.*kernel_size"),
    (nbops.max_pool2d, make((1, 2, 5, 5)), dict(kernel_size=2, stride=0), ValueError, "max_pool2d.*stride"),
    (nbops.max_pool2d, make((1, 2, 5, 5)), dict(kernel_size=2, dilation=0), ValueError, "max_pool2d.*dilation"),
    (nbops.max_pool2d, make((1, 2, 5, 5)), dict(kernel_size=2, padding=-1), ValueError, "max_pool2d.*non-negative"),
    (nbops.max_pool2d, make((1, 2, 5, 5)), dict(kernel_size=(2, 2, 2)), ValueError, "max_pool2d.*kernel_size"),
    (nbops.max_pool2d, make((1, 2, 5, 5)), dict(kernel_size=2.5), TypeError, "max_pool2d.*kernel_size"),
    (nbops.max_pool2d, make((1, 2, 5, 5)), dict(kernel_size=7), ValueError, "max_pool2d.*too small"),
    (nbops.max_pool2d, make((5, 5)), dict(kernel_size=2), ValueError, "max_pool2d.*3-D or 4-D"),
    (nbops.max_pool2d, make((2, 0, 5, 5)), dict(kernel_size=2), ValueError, "max_pool2d.*non-zero size"),
    (nbops.max_pool2d, make((0, 5, 5)), dict(kernel_size=2), ValueError, "max_pool2d.*non-zero size"),
    (nbops.max_pool2d, make_int((1, 2, 5, 5), 0, 5), dict(kernel_size=2), TypeError, "max_pool2d.*dtype"),
    (nbops.max_pool1d, make((1, 2, 5)), dict(kernel_size=3, padding=2), ValueError, "max_pool1d.*half of kernel"),
    (nbops.max_pool1d, make((1, 2, 5, 5)), dict(kernel_size=2), ValueError, "max_pool1d.*2-D or 3-D"),
    (nbops.avg_pool2d, make((1, 2, 5, 5)), dict(kernel_size=2, divisor_override=0), ValueError, "avg_pool2d.*zero"),
    (nbops.avg_pool2d, make((1, 2, 5, 5)), dict(kernel_size=2, divisor_override=1.5), TypeError, "avg_pool2d.*divisor"),
    (nbops.avg_pool2d, make((1, 2, 5, 5)), dict(kernel_size=3, padding=2), ValueError, "avg_pool2d.*half of kernel"),
    (nbops.avg_pool1d, make((1, 2, 5)), dict(kernel_size=6), ValueError, "avg_pool1d.*too small"),
    (nbops.adaptive_avg_pool2d, make((1, 2, 5, 5)), dict(output_size=(-1, 2)), ValueError,
     "adaptive_avg_pool2d.*greater than or equal"),
    (nbops.adaptive_avg_pool2d, make((1, 2, 0, 5)), dict(output_size=2), ValueError, "adaptive_avg_pool2d.*non-zero"),
    (nbops.adaptive_max_pool2d, make((2, 5)), dict(output_size=2), ValueError, "adaptive_max_pool2d.*3-D or 4-D"),
    (nbops.adaptive_avg_pool1d, make((1, 2, 5)), dict(output_size=None), TypeError, "adaptive_avg_pool1d.*output_size"),
    (nbops.adaptive_max_pool1d, make((1, 2, 5)), dict(output_size=(2, 2)), ValueError, "adaptive_max_pool1d.*output"),
    (nbops.max_pool2d, [[1.0, 2.0]], dict(kernel_size=1), TypeError, "max_pool2d.*input"),
]


@pytest.mark.parametrize("fn,x,kw,exc,match", ERRORS, ids=[f"{e[0].__name__}-{i}" for i, e in enumerate(ERRORS)])
def test_pool_errors(fn, x, kw, exc, match):
    with pytest.raises(exc, match=match):
        fn(x, **kw)
