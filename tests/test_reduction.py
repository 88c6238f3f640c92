import math

import numpy as np
import pytest
import torch
from numba import config

import nbops
from helpers import DTYPES, TARGETS, check, make, make_int, outside_simulator, to_numpy, to_target

CPU = ["cpu"]
CUDA = [pytest.param("cuda", marks=pytest.mark.cuda)]

# (shape, dim, keepdim): every layout the canonical (O, R, I) form takes -- rows (I == 1), columns (I > 1), all dims,
# non-adjacent dims (one copy), size-1 dims between reduced ones, 0-d, empty outputs and empty reductions.
CASES = [
    ((7,), None, False),
    ((3, 5), 1, False),
    ((3, 5), 0, True),
    ((3, 5), -1, True),
    ((2, 3, 4), (0, 2), False),
    ((2, 3, 4), (1, 2), True),
    ((2, 3, 4), 1, False),
    ((4, 1, 5), (0, 2), False),
    ((2, 1, 3, 4), (1, 2), False),
    ((1,), 0, False),
    ((), None, False),
    ((0, 3), 1, False),
]
# row and column reductions long enough to be split into chunks across threads and merged
BIG = [((3, 70001), 1, False), ((5000, 3), 0, False), ((300, 2100), 0, True), ((140001,), None, False)]
TINY = [((7,), None, False), ((3, 5), 1, False), ((3, 5), 0, True), ((2, 3, 4), (0, 2), False), ((), None, False),
        ((0, 3), 1, False)]


def _dim_kwargs(dim, keepdim):
    return {"dim": dim, "keepdim": keepdim}


def _all_dims(shape, dim):
    return tuple(range(len(shape))) if dim is None else dim


def _single(dim, shape):
    """A single dim for the ops that take one (max, argmax, prod): the case's dim, or its first entry."""
    if dim is None:
        return -1 if shape else 0
    return dim if isinstance(dim, int) else dim[0]


# -------------------------------------------------------------------------------------------------- sum / mean / prod


@pytest.mark.parametrize("target,shape,dim,keepdim", [("cpu",) + c for c in CASES + BIG] +
                         [pytest.param("cuda", *c, marks=pytest.mark.cuda) for c in TINY])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_mean(target, dtype, shape, dim, keepdim):
    x = make(shape, dtype, seed=1)
    kw = _dim_kwargs(dim, keepdim)
    check(nbops.sum, torch.sum, target, x, **kw)
    check(nbops.mean, torch.mean, target, x, **kw)


@pytest.mark.parametrize("target,shape,dim,keepdim", [("cpu",) + c for c in CASES + BIG] +
                         [pytest.param("cuda", *c, marks=pytest.mark.cuda) for c in TINY])
@pytest.mark.parametrize("dtype", DTYPES)
def test_prod(target, dtype, shape, dim, keepdim):
    x = make(shape, dtype, seed=2, scale=0.05, offset=1.0)
    d = _single(dim, shape)
    check(nbops.prod, torch.prod, target, x, d, keepdim)
    check(nbops.prod, torch.prod, target, x)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("layout", ["transposed", "strided"])
@pytest.mark.parametrize("dim", [0, 1, (0, 1)])
def test_sum_noncontiguous(target, layout, dim):
    x = make((6, 5), np.float32, seed=3, layout=layout)
    check(nbops.sum, torch.sum, target, x, dim=dim)
    check(nbops.amax, torch.amax, target, x, dim=dim)


@pytest.mark.parametrize("target", TARGETS)
def test_sum_integer_inputs(target):
    xi = make_int((4, 6), -50, 50, np.int32, seed=4)
    check(nbops.sum, torch.sum, target, xi, dim=1)
    check(nbops.sum, torch.sum, target, xi.astype(np.int8), dim=0)
    check(nbops.sum, torch.sum, target, xi > 0)
    check(nbops.prod, torch.prod, target, make_int((3, 5), -3, 4, np.int16, seed=5), 1)
    check(nbops.sum, torch.sum, target, xi, dim=1, dtype=torch.float64)
    check(nbops.sum, torch.sum, target, xi, dtype=torch.int32)
    check(nbops.mean, torch.mean, target, xi, dim=0, dtype=torch.float32)


@pytest.mark.parametrize("target", TARGETS)
def test_sum_dtype_cast_and_nan(target):
    x = make((5, 7), np.float32, seed=6)
    check(nbops.sum, torch.sum, target, x, dim=0, dtype=torch.float64)
    x[2, 3] = np.nan
    x[4, 1] = np.inf
    check(nbops.sum, torch.sum, target, x, dim=0)
    check(nbops.mean, torch.mean, target, x, dim=1)


@pytest.mark.parametrize("target", TARGETS)
def test_empty_reductions(target):
    x = np.zeros((0, 3), np.float32)
    check(nbops.sum, torch.sum, target, x, dim=0)
    check(nbops.mean, torch.mean, target, x, dim=0)
    check(nbops.prod, torch.prod, target, x, 0)
    check(nbops.logsumexp, torch.logsumexp, target, x, 0)
    with pytest.warns(UserWarning):
        check(nbops.var, torch.var, target, x, 0)
    check(nbops.sum, torch.sum, target, np.zeros((0,), np.float64))
    check(nbops.mean, torch.mean, target, np.zeros((0,), np.float64))
    check(nbops.max, torch.max, target, x, 1)
    for fn, args in [(nbops.max, (0,)), (nbops.amax, (0,)), (nbops.argmax, (0,)), (nbops.argmin, (0,)),
                     (nbops.max, ()), (nbops.argmax, ()), (nbops.min, (0,))]:
        with pytest.raises(IndexError, match=fn.__name__ + r"\(\): Expected reduction dim"):
            fn(to_target(x, target), *args)


def test_sum_float32_1e7_is_accurate():
    x = make((10_000_000,), np.float32, seed=7, offset=1.0)
    exact = x.astype(np.float64).sum()
    got = float(nbops.sum(x))
    assert abs(got - exact) <= 1e-6 * abs(exact), (got, exact)
    got = float(nbops.sum(x.reshape(10_000, 1000), 0).astype(np.float64).sum())
    assert abs(got - exact) <= 1e-6 * abs(exact), (got, exact)
    col = nbops.sum(x.reshape(100_000, 100), 0)
    exact_col = x.reshape(100_000, 100).astype(np.float64).sum(0)
    np.testing.assert_allclose(col, exact_col, rtol=2e-6)


# -------------------------------------------------------------------------------------------------- var / std


@pytest.mark.parametrize("target,shape,dim,keepdim", [("cpu",) + c for c in CASES[:-1] + BIG] +
                         [pytest.param("cuda", *c, marks=pytest.mark.cuda) for c in TINY[:-1]])
@pytest.mark.parametrize("dtype", DTYPES)
def test_var_std(target, dtype, shape, dim, keepdim):
    x = make(shape, dtype, seed=8, offset=1e4)
    kw = _dim_kwargs(dim, keepdim)
    if math.prod(shape) <= 1:
        kw["correction"] = 0
    check(nbops.var, torch.var, target, x, **kw)
    check(nbops.std, torch.std, target, x, **kw)
    check(nbops.var_mean, torch.var_mean, target, x, **kw)
    check(nbops.std_mean, torch.std_mean, target, x, **kw)


@pytest.mark.parametrize("target", TARGETS)
def test_var_correction_forms(target):
    x = make((4, 6), np.float64, seed=9)
    check(nbops.var, torch.var, target, x, 1, correction=0)
    check(nbops.var, torch.var, target, x, 1, correction=2.5, keepdim=True)
    check(nbops.var, torch.var, target, x, 0, False)
    check(nbops.std, torch.std, target, x, 0, True, True)
    check(nbops.var, torch.var, target, x, False)
    check(nbops.std_mean, torch.std_mean, target, x, dim=(0, 1), unbiased=False)
    with pytest.warns(UserWarning):
        check(nbops.var, torch.var, target, x[:1], 0)  # one element, correction 1: 0 / 0 = NaN
    with pytest.warns(UserWarning):
        check(nbops.var, torch.var, target, x[:2], 0, correction=2)  # M2 > 0 over a zero divisor: inf


def test_var_large_offset_1e7_is_accurate():
    x = make((10_000_000,), np.float32, seed=10, offset=1e4)
    v, m = nbops.var_mean(x)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(float(v), x64.var(ddof=1), rtol=1e-5)
    np.testing.assert_allclose(float(m), x64.mean(), rtol=1e-7)
    cols = nbops.std(x.reshape(100_000, 100), 0)
    np.testing.assert_allclose(cols, x64.reshape(100_000, 100).std(0, ddof=1), rtol=1e-5)


# -------------------------------------------------------------------------------------------------- max / min family


@pytest.mark.parametrize("target,shape,dim,keepdim", [("cpu",) + c for c in CASES[:-1] + BIG] +
                         [pytest.param("cuda", *c, marks=pytest.mark.cuda) for c in TINY[:-1]])
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_min_family(target, dtype, shape, dim, keepdim):
    x = make(shape, dtype, seed=11)
    d = _single(dim, shape)
    check(nbops.max, torch.max, target, x, d, keepdim)
    check(nbops.min, torch.min, target, x, d, keepdim=keepdim)
    check(nbops.argmax, torch.argmax, target, x, d, keepdim)
    check(nbops.argmin, torch.argmin, target, x, dim=d, keepdim=keepdim)
    check(nbops.argmax, torch.argmax, target, x, keepdim=keepdim)
    check(nbops.max, torch.max, target, x)
    check(nbops.min, torch.min, target, x)
    amd = () if dim is None else dim
    check(nbops.amax, torch.amax, target, x, amd, keepdim)
    check(nbops.amin, torch.amin, target, x, dim=amd, keepdim=keepdim)


@pytest.mark.parametrize("n", [63, 64, 65, 130, 1000, 4099])
@pytest.mark.parametrize("dtype", DTYPES + [np.int64])
def test_argmax_rows_ties_across_lanes_and_blocks(dtype, n):
    """Rows longer than the CPU kernel's 64 register lanes, from few distinct values: the extreme occurs in many
    lanes and blocks and the first one must win; one row holds NaNs, another only -0.0 and 0.0 (int64: rows at
    the type's limits), another its extreme only in the tail and in an early lane of a late block."""
    rng = np.random.default_rng(n)
    x = rng.integers(-3, 4, size=(6, n)).astype(dtype)
    x[1, :] = -3
    x[1, n - 1] = 3
    x[1, (n // 64 - 1) * 64 + 1 if n >= 128 else 0] = 3
    if dtype != np.int64:
        x[2, [n // 3, n // 2]] = np.nan
        x[3] = -0.0
        x[3, rng.integers(0, n, size=3)] = 0.0
    else:  # the smallest keys there are: a lane that never improves on its start must still be right
        x[2] = np.iinfo(np.int64).min
        x[2, n - 60] = np.iinfo(np.int64).min + 1
        x[3] = np.iinfo(np.int64).max
        x[3, n - 60] = np.iinfo(np.int64).max - 1
    for fn, ref in [(nbops.argmax, torch.argmax), (nbops.argmin, torch.argmin), (nbops.max, torch.max),
                    (nbops.min, torch.min)]:
        check(fn, ref, "cpu", x, 1)
    check(nbops.argmax, torch.argmax, "cpu", x[::2, ::3], 1)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_nan_ties_and_infinities(target, dtype):
    x = np.array([[1.0, 3.0, 3.0, -np.inf, 0.0],
                  [np.nan, 2.0, np.nan, 5.0, 5.0],
                  [-np.inf, -np.inf, -np.inf, -np.inf, -np.inf],
                  [2.0, np.inf, 7.0, np.nan, np.inf]], dtype=dtype)
    for fn, ref in [(nbops.max, torch.max), (nbops.min, torch.min), (nbops.argmax, torch.argmax),
                    (nbops.argmin, torch.argmin)]:
        check(fn, ref, target, x, 1)
        check(fn, ref, target, x, 0)
        check(fn, ref, target, x)
    check(nbops.amax, torch.amax, target, x, 1)
    check(nbops.amin, torch.amin, target, x, 0)
    check(nbops.argmax, torch.argmax, target, np.array([-0.0, 0.0, -0.0], dtype))
    check(nbops.argmin, torch.argmin, target, np.array([0.0, -0.0], dtype))


def test_argmax_first_nan_and_ties_across_chunks():
    x = np.zeros((2, 200_000), np.float32)
    x[0, 150_000] = x[0, 180_000] = 1.0
    x[1, 120_000] = np.nan
    x[1, 190_000] = np.nan
    x[1, 100] = 9.0
    check(nbops.max, torch.max, "cpu", x, 1)
    check(nbops.argmin, torch.argmin, "cpu", x, 1)
    check(nbops.argmax, torch.argmax, "cpu", x)
    y = np.ascontiguousarray(x.T)
    check(nbops.max, torch.max, "cpu", y, 0)
    check(nbops.argmin, torch.argmin, "cpu", y, 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_values_only_extremes_across_chunks(dtype):
    """max()/min() without dim, amax and amin run the values-only kernels: rows split into chunks (NaN or the
    extreme in a late chunk), columns, and the merge of chunk results; NaN propagates, infinities count."""
    x = make((3, 200_001), dtype, seed=22)
    x[0, 170_000] = 50.0
    x[1, 199_999] = np.nan
    x[2, 5] = -np.inf
    for fn, ref in [(nbops.amax, torch.amax), (nbops.amin, torch.amin)]:
        check(fn, ref, "cpu", x, 1)
        check(fn, ref, "cpu", np.ascontiguousarray(x.T), 0)
        check(fn, ref, "cpu", x[[0, 2]])
    check(nbops.max, torch.max, "cpu", x)
    check(nbops.min, torch.min, "cpu", x)
    check(nbops.max, torch.max, "cpu", x[[0, 2]])
    check(nbops.min, torch.min, "cpu", x[[0, 2]])
    col = make((70_000, 3), dtype, seed=23)
    col[65_000, 1] = np.nan
    check(nbops.amax, torch.amax, "cpu", col, 0)
    check(nbops.amin, torch.amin, "cpu", col, 0, True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_values_only_extremes_lanes_and_tail(dtype):
    """The values-only row kernel keeps 64 running lanes and a tail: NaN first (it seeds every lane), in a lane
    and in the tail, infinities and the extreme in a lane or in the tail, all of them reach the result."""
    x = make((7, 200), dtype, seed=31)
    x[0, 0] = np.nan
    x[1, 70] = np.nan
    x[2, 195] = np.nan
    x[3, 100] = np.inf
    x[3, 101] = -np.inf
    x[4, 199] = 40.0
    x[4, 198] = -40.0
    x[5, 63] = 40.0
    x[5, 64] = -40.0
    for fn, ref in [(nbops.amax, torch.amax), (nbops.amin, torch.amin)]:
        check(fn, ref, "cpu", x, 1)
    for i in range(7):
        check(nbops.max, torch.max, "cpu", x[i])
        check(nbops.min, torch.min, "cpu", x[i])


def test_fast_path_matches_general_path():
    """A contiguous float NumPy array with an int dim (or none) skips the general argument path: the same kernels
    give bit-identical results to the general path (taken here by a NumPy integer dim or a tuple)."""
    x = make((37, 3001), np.float32, seed=24, offset=10.0)
    for fn in (nbops.sum, nbops.mean, nbops.amax, nbops.amin):
        for d in (0, 1, -1):
            fast, general = fn(x, d), fn(x, np.int64(d))
            assert fast.shape == general.shape and fast.dtype == general.dtype
            assert np.array_equal(fast, general)
    assert np.array_equal(nbops.sum(x), nbops.sum(x, (0, 1)))
    assert np.array_equal(nbops.max(x), nbops.amax(x, (0, 1)))
    assert nbops.sum(x).shape == () and nbops.mean(x.astype(np.float64), 0).dtype == np.float64


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_output_fast_paths_match_general_path(dtype):
    """argmax, argmin, var, std and var_mean of a contiguous float NumPy array over an int dim (or all) skip the
    general path (``_fast_two``): bit for bit what the general path gives (taken by a NumPy integer dim, or a torch
    tensor for the flat argmax), ties and NaN included, and the odd cases still take the general path."""
    from nbops.ops import reduction as ops

    x = make((37, 301), dtype, seed=25, offset=10.0)
    x[3, 7] = x[3, 9] = x[3].max() + 1  # a tie: the first index wins
    x[5, 11] = np.nan
    for fn in (nbops.argmax, nbops.argmin, nbops.var, nbops.std, nbops.var_mean):
        for d in (0, 1, -2):
            fast, general = fn(x, d), fn(x, np.int64(d))
            for f, g in zip(fast if fn is nbops.var_mean else (fast,), general if fn is nbops.var_mean else (general,)):
                assert f.shape == g.shape and f.dtype == g.dtype and np.array_equal(f, g, equal_nan=True)
        check(fn, getattr(torch, fn.__name__), "cpu", x, 1)
    for fn in (nbops.argmax, nbops.argmin):
        assert np.array_equal(fn(x), fn(torch.from_numpy(x)).numpy()) and fn(x).shape == ()
    assert np.array_equal(nbops.var(x), nbops.var(x, (0, 1)), equal_nan=True)
    one = make((4, 1), dtype, seed=3)
    assert np.isnan(nbops.var(one, 1)).all() and np.array_equal(nbops.var(one, 1, correction=0), np.zeros(4, dtype))
    for args in [(x, 2), (x, (0,)), (x, True), (x[:, ::2], 0), (x[:0], 0), (x.astype(np.float16), 0), (x.tolist(), 0)]:
        assert ops._fast_view(*args) is None
    with pytest.raises(IndexError, match=r"argmax\(\)"):
        nbops.argmax(x[:, :0], 1)
    assert nbops.var(x, 1, keepdim=True).shape == (37, 1) and nbops.argmax(x, 0, keepdim=True).shape == (1, 301)


@pytest.mark.parametrize("target", TARGETS)
def test_max_integer_and_bool_inputs(target):
    xi = make_int((5, 4), -9, 9, np.int32, seed=12)
    xi[1, 2] = np.iinfo(np.int32).min
    kinds = (xi, xi.astype(np.int64), xi.astype(np.int8), (xi > 0)) if target == "cpu" else (xi, xi > 0)
    for a in kinds:
        check(nbops.max, torch.max, target, a, 1)
        check(nbops.min, torch.min, target, a, 0)
        check(nbops.amax, torch.amax, target, a, 0)
        if a.dtype != np.bool_:
            check(nbops.argmin, torch.argmin, target, a)
    big = np.array([np.iinfo(np.int64).min, 3, np.iinfo(np.int64).max, np.iinfo(np.int64).min], np.int64)
    check(nbops.min, torch.min, target, big, 0)
    check(nbops.max, torch.max, target, big, 0)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_binary(target, dtype):
    a = make((3, 4), dtype, seed=13)
    b = make((4,), dtype, seed=14)
    a[0, 1] = np.nan
    b[2] = np.nan
    check(nbops.max, torch.max, target, a, b)
    check(nbops.min, torch.min, target, a, b)
    check(nbops.max, torch.max, target, a, a[::-1].copy())
    check(nbops.min, torch.min, target, b, make_int((2, 1), -1, 2, np.int64, seed=15))
    check(nbops.max, torch.max, target, make_int((3,), 0, 9, np.int8, seed=16), make_int((3,), 0, 9, np.int8, 17))


# -------------------------------------------------------------------------------------------------- logsumexp


@pytest.mark.parametrize("target,shape,dim,keepdim", [("cpu",) + c for c in CASES + BIG] +
                         [pytest.param("cuda", *c, marks=pytest.mark.cuda) for c in TINY])
@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp(target, dtype, shape, dim, keepdim):
    x = make(shape, dtype, seed=18, scale=10.0, offset=30.0)
    check(nbops.logsumexp, torch.logsumexp, target, x, _all_dims(shape, dim), keepdim)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp_infinities_and_nan(target, dtype):
    x = np.array([[np.inf, 1.0, 2.0], [-np.inf, -np.inf, -np.inf], [np.nan, np.inf, 0.0], [-np.inf, 0.0, 500.0],
                  [-800.0, -1000.0, -900.0]], dtype=dtype)
    check(nbops.logsumexp, torch.logsumexp, target, x, 1)
    check(nbops.logsumexp, torch.logsumexp, target, np.ascontiguousarray(x.T), 0)
    check(nbops.logsumexp, torch.logsumexp, target, make_int((3, 4), -5, 5, np.int64, seed=19), 1)


# -------------------------------------------------------------------------------------------------- chunk merges


# (shape, dim, WARP_ROW_MAX): rows by warps, rows by blocks (a lower warp-row limit), columns in a narrow strip and
# in two strips (the second ragged); with chunks of as little as one element a thread, every one is cut into chunks
CHUNKED = [((2, 100), 1, 1024), ((2, 150), 1, 16), ((40, 3), 0, 1024), ((2, 12, 33), 1, 1024)]


@pytest.mark.cuda
@pytest.mark.parametrize("shape,dim,warp_rows", CHUNKED)
def test_cuda_chunked_reductions_merge(shape, dim, warp_rows, monkeypatch):
    """Small inputs split into chunks (as large ones are on a GPU) so that the merge passes run; NaN and ties
    across chunks."""
    import nbops.cuda.reduction as cr

    monkeypatch.setattr(cr, "MIN_CHUNK_LOADS", 1)
    monkeypatch.setattr(cr, "QUANTUM_LOADS", 1)
    monkeypatch.setattr(cr, "WARP_ROW_MAX", warp_rows)
    O, R = math.prod(shape[:dim]), shape[dim]
    I = math.prod(shape[dim + 1:])
    plan = cr._rows_plan(O, R) if I == 1 else cr._cols_plan(O, R, I)
    assert plan[2] > 1
    x = make(shape, np.float32, seed=21, offset=3.0)
    x.reshape(O, R, I)[0, 1, 0] = x.reshape(O, R, I)[0, R - 2, 0] = 9.0  # a tie, in the first and last chunks
    check(nbops.sum, torch.sum, "cuda", x, dim)
    check(nbops.mean, torch.mean, "cuda", x, dim)
    check(nbops.var_mean, torch.var_mean, "cuda", x, dim)
    check(nbops.max, torch.max, "cuda", x, dim)
    check(nbops.argmin, torch.argmin, "cuda", x, dim)
    check(nbops.logsumexp, torch.logsumexp, "cuda", x, dim)
    x.reshape(O, R, I)[-1, R - 1, -1] = x.reshape(O, R, I)[-1, R // 2, -1] = np.nan
    check(nbops.argmax, torch.argmax, "cuda", x, dim)
    check(nbops.amax, torch.amax, "cuda", x, dim)
    check(nbops.logsumexp, torch.logsumexp, "cuda", x, dim)
    check(nbops.sum, torch.sum, "cuda", x)
    check(nbops.max, torch.max, "cuda", x)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,dim", [((3, 45), 1), ((45, 2, 5), 0)])
def test_cuda_fast_kernels_match_their_oracles(dtype, shape, dim, monkeypatch):
    """The fast launchers (chunked) against the one-thread-per-output oracle kernels on the same device data:
    sums and variances to rounding, argmax/argmin and the extremes exactly."""
    from numba import cuda

    import nbops.cuda.reduction as cr

    monkeypatch.setattr(cr, "MIN_CHUNK_LOADS", 1)
    monkeypatch.setattr(cr, "QUANTUM_LOADS", 1)
    x = make(shape, dtype, seed=5, offset=2.0)
    x.reshape(-1)[[7, 30]] = x.max() + 1  # a tie for the max
    O, R = math.prod(shape[:dim]), shape[dim]
    I = math.prod(shape[dim + 1:])
    x3 = cuda.to_device(x.reshape(O, R, I))

    def oracle(kernel, outs, *args):
        dev = [cuda.device_array((O, I), dt) for dt in outs]
        kernel[cr.blocks(O * I, cr.TPB), cr.TPB](*dev, x3, *args)
        return [d.copy_to_host().reshape(np.delete(np.array(shape), dim)) for d in dev]

    xd = to_target(x, "cuda")
    np.testing.assert_allclose(to_numpy(nbops.sum(xd, dim)), oracle(cr._sum_naive, [dtype], False, dtype(1))[0],
                               rtol=1e-5)
    np.testing.assert_allclose(to_numpy(nbops.var_mean(xd, dim)), oracle(cr._var_naive, [dtype, dtype],
                                                                         float(R - 1), False), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(nbops.logsumexp(xd, dim)), oracle(cr._lse_naive, [dtype])[0], rtol=1e-6)
    for fn, is_min in [(nbops.max, False), (nbops.min, True)]:
        vals, idx = oracle(cr._argmax_naive, [dtype, np.int64], is_min)
        got = to_numpy(fn(xd, dim))
        np.testing.assert_array_equal(got[0], vals)
        np.testing.assert_array_equal(got[1], idx)


@pytest.mark.cuda
def test_cuda_reductions_are_deterministic(monkeypatch):
    """The same input twice gives the same bits (fixed merge orders, no atomics), chunked rows and columns."""
    import nbops.cuda.reduction as cr

    monkeypatch.setattr(cr, "MIN_CHUNK_LOADS", 1)
    monkeypatch.setattr(cr, "QUANTUM_LOADS", 1)
    x = to_target(make((3, 100), np.float32, seed=8, scale=100.0), "cuda")
    for fn, args in [(nbops.sum, ()), (nbops.var, (1,)), (nbops.logsumexp, (0,))]:
        first, second = to_numpy(fn(x, *args)), to_numpy(fn(x, *args))
        assert first.tobytes() == second.tobytes(), fn.__name__


@pytest.mark.cuda
@pytest.mark.gpu
def test_cuda_fast_kernels_on_mid_sizes_keep_two_blocks_resident(monkeypatch):
    """On a GPU: the fast kernels on sizes the simulator cannot run (long rows by blocks, chunked rows and strips)
    match torch, and their float32 variants leave room for at least 2 resident blocks of TPB threads (<= 128
    registers; ptxas -v for sm_90 gives 32-64, and ``_fit`` caps the grid at what is resident)."""
    from numba import types

    import nbops.cuda.reduction as cr

    monkeypatch.setattr(cr, "MIN_CHUNK_LOADS", 1)
    monkeypatch.setattr(cr, "QUANTUM_LOADS", 1)
    for shape, dim in [((4, 3000), 1), ((300, 70), 0), ((70, 40), 1)]:
        x = make(shape, np.float32, seed=3)
        for fn, ref in [(nbops.sum, torch.sum), (nbops.amax, torch.amax), (nbops.var, torch.var),
                        (nbops.argmax, torch.argmax), (nbops.logsumexp, torch.logsumexp)]:
            check(fn, ref, "cuda", x, dim)
    budget = 65536 // (2 * cr.TPB)
    names = ["_sum_rows", "_sum_cols", "_max_rows", "_max_cols", "_var_rows", "_var_cols", "_argmax_rows",
             "_argmax_cols", "_lse_rows", "_lse_cols", "_argmax_merge_rows", "_lse_merge_rows"]
    regs = {name: {sig: r for sig, r in getattr(cr, name).get_regs_per_thread().items()
                   if any(getattr(a, "dtype", None) == types.float32 for a in sig)} for name in names}
    over = {name: r for name, r in regs.items() if max(r.values(), default=0) > budget}
    assert not over, f"registers over {budget}: {over}"


def test_cuda_grid_fits_the_blocks_a_kernel_keeps_resident(monkeypatch):
    """The launch grid is capped by the kernel's registers once it is compiled (a stand-in for a compiled
    dispatcher: 132 SMs, 256-thread blocks): up to 64 registers 4 blocks an SM, 72 three, 112 two."""
    import nbops.cuda.reduction as cr

    class Compiled:
        def __init__(self, regs):
            self.overloads = {"sig": None} if regs else {}
            self.regs = regs

        def get_regs_per_thread(self):
            return {"sig": self.regs}

    monkeypatch.setattr(cr.config, "ENABLE_CUDASIM", False)
    monkeypatch.setattr(cr, "_SMS", [132])
    monkeypatch.setattr(cr, "TPB", 256)
    assert cr._fit(Compiled(0), 1000) == 1000
    assert [cr._fit(Compiled(r), 1000) for r in (32, 64, 72, 112)] == [528, 528, 396, 264]
    assert cr._fit(Compiled(72), 100) == 100


def _compile_fast_kernels():
    from numba import types

    from helpers import gpu_ptx

    import nbops.cuda.reduction as cr

    i64, b1 = types.int64, types.boolean
    for dt in (types.float32, types.float64):
        v1, v2, v3 = (types.Array(dt, n, "C") for n in (1, 2, 3))
        d2, d3 = types.Array(types.float64, 2, "C"), types.Array(types.float64, 3, "C")
        k2, k3 = types.Array(i64, 2, "C"), types.Array(i64, 3, "C")
        sigs = [(cr._sum_rows, (v2, v1, i64, i64, i64, dt, dt)), (cr._max_rows, (v2, v1, i64, i64, i64, dt, dt)),
                (cr._sum_cols, (v3, v1, i64, i64, i64, dt, dt)), (cr._min_cols, (v3, v1, i64, i64, i64, dt, dt)),
                (cr._var_rows, (v2, v2, v1, i64, i64, i64, types.float64, b1, b1)),
                (cr._var_rows, (d2, d2, v1, i64, i64, i64, types.float64, b1, b1)),
                (cr._var_cols, (v3, v3, v1, i64, i64, i64, types.float64, b1, b1)),
                (cr._argmax_rows, (v2, k2, v1, i64, i64, i64, b1, dt)),
                (cr._argmax_cols, (v3, k3, v1, i64, i64, i64, b1, dt)),
                (cr._lse_rows, (v2, v2, v1, i64, i64, i64, dt, dt, b1)),
                (cr._lse_cols, (d3, d3, v1, i64, i64, i64, dt, dt, b1)),
                (cr._argmax_merge_rows, (v2, k2, v2, k2, i64, b1, dt)),
                (cr._lse_merge_rows, (v2, d2, d2, i64, dt, dt))]
        for kernel, sig in sigs:
            ptx = gpu_ptx(kernel, sig)
            name = kernel.py_func.__name__
            assert "ld.local" not in ptx and "st.local" not in ptx, name
            if "_rows" in name:
                assert "shfl.sync" in ptx, name


@pytest.mark.cuda
def test_cuda_fast_kernels_compile_with_nvvm_without_local_memory():
    outside_simulator(_compile_fast_kernels)


# -------------------------------------------------------------------------------------------------- kinds and errors


def test_torch_tensors_in_and_out():
    x = torch.randn(4, 5)
    out = nbops.max(x, 1)
    assert isinstance(out.values, torch.Tensor) and isinstance(out.indices, torch.Tensor)
    torch.testing.assert_close(out.values, x.max(1).values)
    v, m = nbops.var_mean(x, 0)
    torch.testing.assert_close(v, x.var(0))
    torch.testing.assert_close(m, x.mean(0))
    assert nbops.sum(x, dtype=torch.float64).dtype == torch.float64


ERRORS = [
    (nbops.sum, ([1.0, 2.0],), {}, TypeError, "sum"),
    (nbops.sum, (np.zeros((2, 3)),), {"dim": 2}, IndexError, "sum"),
    (nbops.sum, (np.zeros((2, 3)),), {"dim": (0, -2)}, ValueError, "sum"),
    (nbops.sum, (np.zeros((2, 3)),), {"dim": 1.5}, TypeError, "sum"),
    (nbops.sum, (np.zeros((2, 3)),), {"keepdim": 1}, TypeError, "sum"),
    (nbops.sum, (np.zeros((2, 3)),), {"dtype": "complex64"}, TypeError, "sum"),
    (nbops.mean, (np.zeros((2, 3), np.int64),), {}, TypeError, "mean"),
    (nbops.prod, (np.zeros((2, 3)),), {"dim": (0, 1)}, TypeError, "prod"),
    (nbops.var, (np.zeros((2, 3), np.int32),), {}, TypeError, "var"),
    (nbops.var, (np.zeros((2, 3)),), {"unbiased": True, "correction": 0}, TypeError, "var"),
    (nbops.std, (np.zeros((2, 3)),), {"dim": 3}, IndexError, "std"),
    (nbops.var_mean, (np.zeros((2, 3)),), {"correction": "1"}, TypeError, "var_mean"),
    (nbops.max, (np.zeros((2, 3)), 1.0), {}, TypeError, "max"),
    (nbops.max, (np.zeros((2, 3)), (0, 1)), {}, TypeError, "max"),
    (nbops.min, (np.zeros((2, 3)), np.zeros((4,))), {}, ValueError, "minimum"),
    (nbops.min, (np.zeros((2, 3)), np.zeros((3,))), {"other": np.zeros(3)}, TypeError, "min"),
    (nbops.argmax, (np.zeros((2, 3)),), {"dim": -3}, IndexError, "argmax"),
    (nbops.argmin, (np.zeros((2, 3)),), {"dim": (0,)}, TypeError, "argmin"),
    (nbops.argmax, (np.zeros((2, 3), np.bool_),), {}, TypeError, "argmax"),
    (nbops.amax, (np.zeros((2, 3)),), {"dim": (1, 1)}, ValueError, "amax"),
    (nbops.amin, (np.zeros((2, 3), np.complex64),), {}, TypeError, "amin"),
    (nbops.logsumexp, (np.zeros((2, 3)), 2), {}, IndexError, "logsumexp"),
]


@pytest.mark.parametrize("fn,args,kwargs,exc,name", ERRORS, ids=[f"{e[4]}-{i}" for i, e in enumerate(ERRORS)])
def test_errors(fn, args, kwargs, exc, name):
    with pytest.raises(exc, match=rf"{name}\(\)"):
        fn(*args, **kwargs)


def test_result_is_fresh_memory():
    x = make((4,), np.float32, seed=20)
    out = nbops.sum(x[None, :], 0)
    out[0] = 123.0
    assert x[0] != 123.0 and to_numpy(out)[0] == 123.0
