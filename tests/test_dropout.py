"""Dropout is random, so it is tested by its properties: keep rate within binomial bounds, survivors exactly torch's
``x * (1 / (1 - p))`` in the input dtype, whole channels for the channel-wise variants, determinism by seed, and
torch's edge cases (p = 0, p = 1, training=False, in place)."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nbops
from nbops import _random
from helpers import DTYPES, TARGETS, gpu_ptx, make, outside_simulator, to_numpy, to_target

pytestmark = pytest.mark.filterwarnings("ignore::numba.NumbaWarning")  # the simulator's object-mode RNG setup

# per target: a shape large enough for the binomial bounds (the simulator runs one Python thread per element)
BIG = {"cpu": (300, 1000), "cuda": (32, 32)}


def _scale(dtype, p):
    t = np.dtype(dtype).type
    return t(1) / t(1 - p)


def _run(fn, x, target, *args, **kwargs):
    return to_numpy(fn(to_target(x, target), *args, **kwargs))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 1 / 3])
def test_dropout_keep_rate_and_scale(target, dtype, p):
    x = make(BIG[target], dtype, offset=3.0)  # no zeros in x: a zero in y means dropped
    y = _run(nbops.dropout, x, target, p, seed=11)
    assert y.shape == x.shape and y.dtype == x.dtype
    kept = y != 0
    n = x.size
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(kept.sum() - n * (1 - p)) < 6 * sigma, (kept.mean(), 1 - p)
    np.testing.assert_array_equal(y[kept], x[kept] * _scale(dtype, p))  # torch's x * noise, bit for bit
    np.testing.assert_array_equal(y[~kept], 0)


@pytest.mark.parametrize("target", TARGETS)
def test_dropout_determinism(target):
    x = make(BIG[target], np.float32, offset=3.0)
    a = _run(nbops.dropout, x, target, 0.5, seed=5)
    b = _run(nbops.dropout, x, target, 0.5, seed=5)
    c = _run(nbops.dropout, x, target, 0.5, seed=6)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    nbops.manual_seed(123)
    g1 = _run(nbops.dropout, x, target, 0.5)
    g2 = _run(nbops.dropout, x, target, 0.5)
    nbops.manual_seed(123)
    np.testing.assert_array_equal(_run(nbops.dropout, x, target, 0.5), g1)
    np.testing.assert_array_equal(_run(nbops.dropout, x, target, 0.5), g2)
    assert (g1 != g2).any()  # the generator advances between calls
    nbops.manual_seed(124)
    assert (_run(nbops.dropout, x, target, 0.5) != g1).any()
    nbops.manual_seed(-1)  # a global seed >= 2**63
    h = _run(nbops.dropout, x, target, 0.5)
    nbops.manual_seed(-1)
    np.testing.assert_array_equal(_run(nbops.dropout, x, target, 0.5), h)
    big = [seed for seed in range(40) if _random.next_key("dropout", seed) >= 2**63][:2]
    assert len(big) == 2  # seeds whose keys are >= 2**63, after one whose key is small
    small = next(seed for seed in range(40) if _random.next_key("dropout", seed) < 2**63)
    _run(nbops.dropout, x, target, 0.5, seed=small)
    for seed in big:
        np.testing.assert_array_equal(_run(nbops.dropout, x, target, 0.5, seed=seed),
                                      _run(nbops.dropout, x, target, 0.5, seed=seed))


def test_dropout_mask_independent_of_threads():
    x = make((200, 1000), np.float32, offset=3.0)
    before = nbops.get_num_threads()
    try:
        nbops.set_num_threads(1)
        one = nbops.dropout(x, 0.3, seed=9)
        nbops.set_num_threads(before)
        many = nbops.dropout(x, 0.3, seed=9)
    finally:
        nbops.set_num_threads(before)
    np.testing.assert_array_equal(one, many)


@pytest.mark.parametrize("target", TARGETS)
def test_dropout_identity_cases(target):
    x = to_target(make((4, 5)), target)
    assert nbops.dropout(x, 0.5, training=False) is x
    assert nbops.dropout(x, 0.0) is x
    x4 = to_target(make((2, 3, 2, 2)), target)
    assert nbops.dropout2d(x4, 0.7, training=False) is x4
    v = x4[0]
    assert nbops.dropout1d(v, 0.0) is v
    empty = to_target(make((0, 3)), target)
    assert nbops.dropout(empty, 0.5) is empty
    t = torch.from_numpy(make((3, 3)))
    assert nbops.dropout(t, 0.5, training=False) is t


@pytest.mark.parametrize("target", TARGETS)
def test_dropout_p_one_and_specials(target):
    """p = 1 gives torch's input * 0: signed zeros, with NaN and inf turned into NaN as torch does. The sign bit
    of the NaN that inf * 0 makes is the hardware's (set on x86, clear on GPUs, for torch too), so signs are
    compared on the zeros only."""
    x = np.array([[1.5, -2.0, np.nan, np.inf, -np.inf, 0.0, -0.0]], dtype=np.float32)
    y = _run(nbops.dropout, x, target, 1.0)
    expected = F.dropout(torch.from_numpy(x.copy()), 1.0).numpy()
    np.testing.assert_array_equal(y, expected)
    zeros = ~np.isnan(expected)
    np.testing.assert_array_equal(np.signbit(y[zeros]), np.signbit(expected[zeros]))
    np.testing.assert_array_equal(np.signbit(y[zeros]), [False, True, False, True])
    ch = _run(nbops.dropout2d, make((2, 3, 2, 2)), target, 1.0)
    np.testing.assert_array_equal(ch, 0)


@pytest.mark.parametrize("target", TARGETS)
def test_dropout_inplace(target):
    x = make((8, 16), np.float32, offset=3.0)
    ref = _run(nbops.dropout, x, target, 0.4, seed=3)
    buf = to_target(x.copy(), target)
    res = nbops.dropout(buf, 0.4, inplace=True, seed=3)
    assert res is buf
    np.testing.assert_array_equal(to_numpy(buf), ref)
    # a non-contiguous input is updated through its own strides
    base = make((8, 32), np.float32, offset=3.0)
    expected = _run(nbops.dropout, np.ascontiguousarray(base[:, ::2]), target, 0.4, seed=3)
    dev = to_target(base.copy(), target)
    view = dev[:, ::2]
    assert nbops.dropout(view, 0.4, inplace=True, seed=3) is view
    after = to_numpy(dev)
    np.testing.assert_array_equal(after[:, ::2], expected)
    np.testing.assert_array_equal(after[:, 1::2], base[:, 1::2])


def test_dropout_torch_tensor_inplace():
    t = torch.from_numpy(make((6, 7), offset=3.0))
    ref = nbops.dropout(t.numpy().copy(), 0.5, seed=2)
    out = nbops.dropout(t, 0.5, inplace=True, seed=2)
    assert out is t
    np.testing.assert_array_equal(t.numpy(), ref)
    assert isinstance(nbops.dropout(t, 0.5), torch.Tensor)


def _channels_whole(y, x, rows, p):
    y2 = y.reshape(rows, -1)
    x2 = x.reshape(rows, -1)
    kept = (y2 != 0).all(axis=1)
    dropped = (y2 == 0).all(axis=1)
    assert (kept | dropped).all(), "a channel was partly dropped"
    np.testing.assert_array_equal(y2[kept], x2[kept] * _scale(x.dtype, p))
    return kept


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("fn,shape,rows", [
    (nbops.dropout1d, (4, 6, 5), 24),
    (nbops.dropout1d, (6, 5), 6),  # unbatched (C, L)
    (nbops.dropout2d, (3, 4, 3, 5), 12),
    (nbops.dropout3d, (2, 3, 2, 2, 3), 6),
    (nbops.dropout3d, (3, 2, 2, 3), 3),  # unbatched (C, D, H, W)
])
def test_channel_dropout(target, fn, shape, rows):
    x = make(shape, np.float32, offset=3.0)
    y = _run(fn, x, target, 0.5, seed=4)
    assert y.shape == x.shape
    kept = _channels_whole(y, x, rows, 0.5)
    np.testing.assert_array_equal(_run(fn, x, target, 0.5, seed=4), y)
    assert 0 < kept.sum() < rows or rows < 8


@pytest.mark.parametrize("target", TARGETS)
def test_channel_dropout_keep_rate(target):
    rows = {"cpu": 20000, "cuda": 512}[target]
    x = make((rows, 1, 3), np.float64, offset=3.0)
    kept = _channels_whole(_run(nbops.dropout1d, x, target, 0.25, seed=8), x, rows, 0.25)
    assert abs(kept.sum() - rows * 0.75) < 6 * math.sqrt(rows * 0.25 * 0.75)


def test_dropout2d_warnings_as_torch():
    x = make((4, 6, 5), np.float32)
    with pytest.warns(UserWarning, match="dropout2d: Received a 3D input"):
        y = nbops.dropout2d(x, 0.5, seed=1)
    _channels_whole(y, x, 24, 0.5)
    with pytest.warns(UserWarning, match="dropout2d: Received a 5-D input"):
        nbops.dropout2d(make((2, 2, 2, 2, 2)), 0.5)
    with pytest.warns(UserWarning, match="dropout3d: Received a 3-D input"):
        y3 = nbops.dropout3d(x, 0.5, seed=1)
    _channels_whole(y3, x, 4, 0.5)  # torch takes it as unbatched: channels along dim 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nbops.dropout2d(make((2, 3, 4, 4)), 0.5)


@pytest.mark.parametrize("target", TARGETS)
def test_alpha_dropout(target):
    p = 0.2
    x = make(BIG[target], np.float32)
    y = _run(nbops.alpha_dropout, x, target, p, True, seed=3)
    alpha = 1.7580993408473766
    a = 1.0 / math.sqrt((alpha * alpha * p + 1) * (1 - p))
    f = np.float32
    keep_add = f(f(alpha * a) * f(0) + f(alpha * a * p))
    drop_add = f(f(alpha * a) * f(-1) + f(alpha * a * p))
    kept_val = x * f(a) + keep_add
    # a GPU contracts x * a + b into one FMA (one rounding, not two): a kept value then differs from the two-rounding
    # value by up to an ulp of the product and one of the sum, which near cancellation is far more than an ulp of
    # the result, so the bound is absolute in those terms
    ulps = 0 if target == "cpu" else 2 * np.finfo(np.float32).eps
    kept = np.abs(y - kept_val) <= ulps * (np.abs(x * f(a)) + np.abs(keep_add))
    dropped = y == drop_add
    assert (kept | dropped).all()
    n = x.size
    assert abs(kept.sum() - n * (1 - p)) < 6 * math.sqrt(n * p * (1 - p))
    if target == "cpu":  # alpha dropout keeps a standard normal input's mean and variance
        assert abs(y.mean()) < 0.02 and abs(y.std() - 1) < 0.02
    z = to_target(x, target)
    assert nbops.alpha_dropout(z, p) is z  # training defaults to False, as in torch


ERRORS = [
    (nbops.dropout, make((3,)), dict(p=-0.1), ValueError, "dropout.*between 0 and 1"),
    (nbops.dropout, make((3,)), dict(p=1.5), ValueError, "dropout.*between 0 and 1"),
    (nbops.dropout, make((3,)), dict(p=float("nan")), ValueError, "dropout.*between 0 and 1"),
    (nbops.dropout, make((3,)), dict(p=1.5, training=False), ValueError, "dropout.*between 0 and 1"),
    (nbops.dropout, make((3,)), dict(p="0.5"), TypeError, "dropout.*'p'"),
    (nbops.dropout, make((3,)), dict(seed=1.5), TypeError, "dropout.*'seed'"),
    (nbops.dropout, np.arange(3), {}, TypeError, "dropout.*dtype"),
    (nbops.dropout, [1.0, 2.0], {}, TypeError, "dropout.*input"),
    (nbops.dropout1d, make((2, 3, 4, 5)), {}, ValueError, "dropout1d.*Expected 2D or 3D input"),
    (nbops.dropout1d, make((2, 3)), dict(p=2.0), ValueError, "dropout1d.*between 0 and 1"),
    (nbops.dropout2d, make((5,)), {}, ValueError, "dropout2d.*at least 2 dimensions"),
    (nbops.alpha_dropout, make((3,)), dict(p=-1.0), ValueError, "alpha_dropout.*between 0 and 1"),
]


@pytest.mark.filterwarnings("ignore:dropout2d")
@pytest.mark.parametrize("fn,x,kw,exc,match", ERRORS, ids=[f"{e[0].__name__}-{i}" for i, e in enumerate(ERRORS)])
def test_dropout_errors(fn, x, kw, exc, match):
    with pytest.raises(exc, match=match):
        fn(x, **kw)


def test_manual_seed_errors():
    with pytest.raises(TypeError, match="manual_seed.*'seed'"):
        nbops.manual_seed("1")
    nbops.manual_seed(-1)  # wraps to uint64, as torch
    assert nbops._random.initial_seed() == 2**64 - 1


@pytest.mark.cuda
@pytest.mark.parametrize("dtype,affine", [(np.float32, False), (np.float64, True)])
def test_cuda_dropout_kernel_matches_naive(dtype, affine):
    """The register-state, 8-loads-in-flight kernel draws what its oracle (state in global memory, one element per
    step) draws: same outputs and same final states, over unrolled passes and a ragged tail (300 elements, one
    block of 32 threads)."""
    from numba import cuda

    import nbops.cuda.dropout as kd

    x = make((300,), dtype, seed=5, offset=3.0)
    t = np.dtype(dtype).type
    p = (t(2.0), t(0.5 if affine else 0.0), t(-1.5 if affine else 0.0), affine)
    keep = np.float32(0.6)
    results = []
    for kern in (kd._dropout_kernel, kd._dropout_naive):
        states = cuda.to_device(kd._host_states(7, 32))
        out = cuda.device_array_like(x)
        kern[1, 32](out, cuda.to_device(x), states, keep, p)
        results.append((out.copy_to_host(), states.copy_to_host()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    kept = results[0][0] == x * t(2.0) + p[1]
    assert 0.4 < kept.mean() < 0.8


# --- the real CUDA target, checked without a GPU --------------------------------------------------------------------
# The simulator runs kernels and launch arguments as Python, so it misses what only real numba rejects: these tests
# run without NUMBA_ENABLE_CUDASIM (in a child process when it is set) and type-check and compile the family's
# kernels for sm_90, and make generator states from 64-bit seeds as the launcher does.


def _compile_cuda_kernels():
    from numba import types, typeof
    from numba.cuda.random import xoroshiro128p_dtype

    import nbops.cuda.dropout as kd
    from nbops.ops.dropout import _coefficients, _threshold

    states = typeof(np.empty(4, xoroshiro128p_dtype))
    noise = typeof(np.empty(4, np.uint8))
    keep = typeof(np.float32(_threshold(0.3) / 2.0 ** 32))
    s3 = types.UniTuple(types.int64, 3)
    compiled = set()
    for dtype in DTYPES:
        arr = typeof(np.empty(4, dtype))
        coef = tuple(typeof(c) for c in _coefficients(dtype, 0.3, True))
        assert all(str(c) == np.dtype(dtype).name for c in coef)
        p = types.Tuple(coef + (typeof(True),))
        sigs = [
            (kd._dropout_kernel, (arr, arr, states, keep, p)),
            (kd._dropout_naive, (arr, arr, states, keep, p)),
            (kd._feature_mask_kernel, (noise, states, keep)),
            (kd._FEATURE_MAP[0], (arr, arr, noise, types.int64, types.int64, p)),
            (kd._FEATURE_MAP[1], (arr, s3, arr, noise, s3, s3, s3, types.int64, p)),
        ]
        for kernel, sig in sigs:
            ptx = gpu_ptx(kernel, sig)  # raises where a kernel's return type is not void
            assert ".target sm_90" in ptx, kernel.py_func.__name__
            assert "ld.local" not in ptx and "st.local" not in ptx, kernel.py_func.__name__
            compiled.add(kernel.py_func.__name__)
    kernels = {name for name in vars(kd) if name.endswith(("_kernel", "_naive"))}
    assert kernels <= compiled


def test_cuda_kernels_compile_for_sm90():
    """Every kernel of nbops/cuda/dropout.py, typed as its launcher's arguments type at launch (numba.typeof of the
    same kinds of values: C-contiguous 1-D arrays, numpy scalars, a bool), compiles to PTX for sm_90 with no
    local memory."""
    outside_simulator(_compile_cuda_kernels)


def _host_states_take_any_64bit_seed():
    from numba.cuda.random import init_xoroshiro128p_states_cpu, xoroshiro128p_dtype

    import nbops.cuda.dropout as kd

    by_int = np.empty(3, xoroshiro128p_dtype)
    init_xoroshiro128p_states_cpu(by_int, 12345, 0)  # the int64 overload
    np.testing.assert_array_equal(kd._host_states(12345, 3), by_int)
    seen = set()
    for seed in (2**63, 2**64 - 1, _random.next_key("dropout", 3)):
        st = kd._host_states(seed, 3)
        assert st.dtype == xoroshiro128p_dtype and st.shape == (3,)
        seen.add(st.tobytes())
    assert len(seen) == 3


def test_cuda_host_states_take_any_64bit_seed():
    """States for keys >= 2**63 even after an int64 overload of numba's state initialiser exists (a small Python
    int seed makes one; real numba then fails to convert a big int: 'int too big to convert')."""
    outside_simulator(_host_states_take_any_64bit_seed)
