"""Parity of the activation family (elementwise activations, glu, prelu, softmax, log_softmax) with torch."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numba import njit

import nbops
from helpers import DTYPES, TARGETS, assert_same, check, gpu_ptx, make, make_int, outside_simulator, to_numpy, to_target
from nbops.cpu import activation as cpu_act

INF, NAN = math.inf, math.nan


def _gelu_ref(x, approximate="none"):
    """torch's gelu, except at +inf: torch's vectorised float32 path returns NaN there while its scalar and
    float64 paths (and the maths) give +inf, which nbops returns everywhere."""
    out = F.gelu(x, approximate=approximate)
    return torch.where(x == INF, x, out)


# (nbops op, torch reference, keyword arguments)
ELEMENTWISE = [
    ("relu", F.relu, {}),
    ("relu6", F.relu6, {}),
    ("hardtanh", F.hardtanh, {}),
    ("hardtanh", F.hardtanh, {"min_val": -0.5, "max_val": 2.0}),
    ("leaky_relu", F.leaky_relu, {}),
    ("leaky_relu", F.leaky_relu, {"negative_slope": 0.2}),
    ("elu", F.elu, {}),
    ("elu", F.elu, {"alpha": 0.5}),
    ("selu", F.selu, {}),
    ("celu", F.celu, {"alpha": 1.5}),
    ("gelu", _gelu_ref, {}),
    ("gelu", _gelu_ref, {"approximate": "tanh"}),
    ("silu", F.silu, {}),
    ("mish", F.mish, {}),
    ("sigmoid", torch.sigmoid, {}),
    ("tanh", torch.tanh, {}),
    ("hardsigmoid", F.hardsigmoid, {}),
    ("hardswish", F.hardswish, {}),
    ("softplus", F.softplus, {}),
    ("softplus", F.softplus, {"beta": 2.0, "threshold": 5.0}),
    ("softsign", F.softsign, {}),
]
INPLACE = ["relu", "relu6", "hardtanh", "leaky_relu", "elu", "selu", "celu", "silu", "mish", "hardsigmoid",
           "hardswish"]
IDS = [name + "".join(f"-{k}={v}" for k, v in kw.items()) for name, _, kw in ELEMENTWISE]

# values around every activation's kinks and thresholds, the float specials, and magnitudes that overflow exp
SPECIALS = [NAN, INF, -INF, 0.0, -0.0, 1e-6, -1e-6, 0.3, -0.3, 2.9, -2.9, 3.0, -3.0, 6.0, 9.5, -9.5, 19.9, 20.5,
            45.0, -45.0, 100.0, -100.0]


def _values(dtype, n_random):
    return np.concatenate([np.array(SPECIALS), 4 * make((n_random,), np.float64, seed=3)]).astype(dtype)


@pytest.mark.parametrize("case", ELEMENTWISE, ids=IDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", TARGETS)
def test_elementwise_values(target, dtype, case):
    name, ref, kw = case
    x = _values(dtype, 1000 if target == "cpu" else 10)
    check(getattr(nbops, name), ref, target, x, **kw)


@pytest.mark.parametrize("case", ELEMENTWISE, ids=IDS)
@pytest.mark.parametrize("target", TARGETS)
def test_elementwise_large_offset(target, case):
    name, ref, kw = case
    check(getattr(nbops, name), ref, target, make((3, 5), np.float32, seed=1, offset=1e4))


SHAPES = [(7,), (3, 5), (2, 3, 4, 5), (1,), (0, 3), (), (5, 3, 32)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name,ref", [("relu", F.relu), ("sigmoid", torch.sigmoid), ("gelu", F.gelu)])
@pytest.mark.parametrize("target", TARGETS)
def test_elementwise_shapes(target, name, ref, shape):
    check(getattr(nbops, name), ref, target, make(shape, np.float64, seed=2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_spans_many_chunks(dtype):
    """More elements than one prange chunk, not a multiple of it: the kernels that run each chunk as two
    interleaved halves see an odd last chunk (a tail element past the halves), NaN and inf included."""
    x = make((3 * cpu_act.CHUNK + 17,), dtype, seed=4)
    x[::4099] = np.nan
    x[1::5003] = np.inf
    x[2::6007] = -np.inf
    # (not the erf gelu: torch's vectorised float32 GELU gives NaN at +inf, its scalar path and float64 give inf,
    # as nbops does)
    for name, ref in (("silu", F.silu), ("softplus", F.softplus), ("sigmoid", torch.sigmoid), ("mish", F.mish),
                      ("tanh", torch.tanh)):
        check(getattr(nbops, name), ref, "cpu", x)
    check(nbops.gelu, F.gelu, "cpu", x, approximate="tanh")
    check(nbops.exp, torch.exp, "cpu", x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_streaming_stores(monkeypatch, dtype):
    """relu writes outputs of STREAM_BYTES or more that start on a vector boundary with non-temporal stores:
    the same values bit for bit as plain stores (NaN, signed zeros, inf), for any length and any destination
    offset (stream_copy's plain head and tail), in place too; nothing outside the output is touched."""
    n = 2 * cpu_act.CHUNK + 3 * cpu_act.BLOCK + 11
    x = make((n,), dtype, seed=41)
    x[::97] = np.nan
    x[1::101] = -0.0
    x[2::103] = np.inf
    x[3::107] = -np.inf
    ref = np.empty_like(x)
    cpu_act._relu_kernel(ref, x, False)
    assert_same(ref, F.relu(torch.from_numpy(x)))
    for shift in (0, 1, 3, 7, 16):
        store = np.full(n + 40, 7, dtype)
        cpu_act._relu_kernel(store[shift:shift + n], x, True)
        assert np.array_equal(store[shift:shift + n].view(np.uint8), ref.view(np.uint8))
        assert (store[:shift] == 7).all() and (store[shift + n:] == 7).all()
    y = x.copy()
    cpu_act._relu_kernel(y, y, True)
    assert np.array_equal(y.view(np.uint8), ref.view(np.uint8))
    monkeypatch.setattr(cpu_act, "STREAM_BYTES", x.nbytes)  # the launcher's rule, through the public op
    out = nbops.relu(x)
    assert cpu_act._streams(out.reshape(-1)) == (out.__array_interface__["data"][0] % 64 == 0)
    assert np.array_equal(out.view(np.uint8), ref.view(np.uint8))
    assert not cpu_act._streams(np.empty(n + 1, dtype)[1:]) and not cpu_act._streams(ref[:-1])


@pytest.mark.parametrize("layout", ["transposed", "strided"])
@pytest.mark.parametrize("name", ["leaky_relu", "softplus"])
@pytest.mark.parametrize("target", TARGETS)
def test_elementwise_noncontiguous(target, name, layout):
    check(getattr(nbops, name), getattr(F, name), target, make((5, 6), np.float32, seed=5, layout=layout))


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided"])
@pytest.mark.parametrize("name", INPLACE)
@pytest.mark.parametrize("target", TARGETS)
def test_inplace_writes_into_the_input(target, name, layout):
    x = make((4, 6), np.float64, seed=6, layout=layout)
    expected = getattr(F, name)(torch.from_numpy(np.array(x)))
    dev = to_target(x, target)
    out = getattr(nbops, name)(dev, inplace=True)
    assert out is dev
    torch.testing.assert_close(torch.from_numpy(to_numpy(dev)), expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", INPLACE)
def test_inplace_over_many_chunks(name, dtype):
    """CPU in-place kernels stage BLOCKs of x on the stack (out aliases x): several prange chunks, full blocks and
    a ragged tail, NaN and inf included, against the out-of-place torch result."""
    x = make((2, 40001), dtype, seed=8)
    x[0, ::997] = np.nan
    x[1, ::991] = np.inf
    expected = getattr(F, name)(torch.from_numpy(x.copy()))
    assert getattr(nbops, name)(x, inplace=True) is x
    torch.testing.assert_close(torch.from_numpy(x), expected, equal_nan=True)


INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8]
# (op, torch reference, keyword arguments): the activations torch computes on integer inputs
INTEGER_CASES = [
    ("relu", F.relu, {}),
    ("relu6", F.relu6, {}),
    ("hardtanh", F.hardtanh, {"min_val": 0.5, "max_val": 7.9}),  # bounds truncate toward zero: [0, 7]
    ("sigmoid", torch.sigmoid, {}),
    ("tanh", torch.tanh, {}),
    ("softsign", F.softsign, {}),
]


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("case", INTEGER_CASES, ids=[c[0] for c in INTEGER_CASES])
@pytest.mark.parametrize("target", TARGETS)
def test_integer_inputs(target, case, dtype, layout):
    """relu, relu6 and hardtanh clamp an integer array in its own dtype (uint8 values past 127 included, where
    relu is the identity); sigmoid, tanh and softsign give float32: torch's dtypes and values."""
    name, ref, kw = case
    x = make_int((4, 10) if layout == "contiguous" else (4, 20), -120, 120, dtype, seed=11)
    check(getattr(nbops, name), ref, target, x if layout == "contiguous" else x[:, ::2], **kw)


@pytest.mark.parametrize("dtype", [np.int32, np.uint8])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("name", ["relu", "relu6", "hardtanh"])
@pytest.mark.parametrize("target", TARGETS)
def test_integer_inplace(target, name, layout, dtype):
    x = make_int((3, 8), -50, 50, dtype, seed=12)
    x = x if layout == "contiguous" else x[:, ::2]
    kw = {"min_val": 2.0, "max_val": 9.0} if name == "hardtanh" else {}
    expected = getattr(F, name)(torch.from_numpy(np.array(x)), **kw)
    dev = to_target(x, target)
    assert getattr(nbops, name)(dev, inplace=True, **kw) is dev
    torch.testing.assert_close(torch.from_numpy(to_numpy(dev)), expected)


@pytest.mark.parametrize("target", TARGETS)
def test_integer_edges(target):
    """Empty and 0-d integer inputs; bool through sigmoid and tanh; an unsigned input refuses a negative lower
    bound (torch: 'cannot do hardtanh on an unsigned type with negative limits')."""
    check(nbops.relu, F.relu, target, make_int((0, 3), -5, 5, np.int64))
    check(nbops.relu6, F.relu6, target, np.array(9, dtype=np.int16))
    flags = make_int((7,), 0, 2, np.int64, seed=13).astype(np.bool_)
    check(nbops.sigmoid, torch.sigmoid, target, flags)
    check(nbops.tanh, torch.tanh, target, flags)
    with pytest.raises(ValueError, match=r"hardtanh\(\): cannot clamp an unsigned \(uint8\)"):
        nbops.hardtanh(to_target(make_int((3,), 0, 9, np.uint8), target))
    with pytest.raises(TypeError, match=r"leaky_relu\(\): argument 'input' has dtype int32"):
        nbops.leaky_relu(to_target(make_int((3,), 0, 9, np.int32), target))


def test_inplace_on_a_torch_tensor_keeps_its_identity():
    t = torch.randn(4, 6).t()
    expected = F.elu(t.clone())
    assert nbops.elu(t, inplace=True) is t
    torch.testing.assert_close(t, expected)


def test_inplace_false_leaves_the_input_alone():
    x = make((4, 6), np.float32, seed=7)
    before = x.copy()
    nbops.relu6(x)
    np.testing.assert_array_equal(x, before)


def test_parameters_are_cast_to_the_input_dtype():
    """torch rounds negative_slope to float32 for float32 input; so does nbops (0.1 is not a float32)."""
    x = np.array([-3.0], dtype=np.float32)
    assert nbops.leaky_relu(x, negative_slope=0.1)[0] == x[0] * np.float32(0.1)


# ----------------------------------------------------------------------------------------------------------------
# glu and prelu

GLU = [((4, 6), -1), ((4, 6), 0), ((2, 4, 3), 1), ((8,), 0), ((3, 2, 5), -2), ((2, 0, 4), 2), ((1, 2), 1)]


@pytest.mark.parametrize("shape,dim", GLU)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", TARGETS)
def test_glu(target, dtype, shape, dim):
    check(nbops.glu, F.glu, target, make(shape, dtype, seed=8), dim=dim)


@pytest.mark.parametrize("target", TARGETS)
def test_glu_noncontiguous_and_specials(target):
    check(nbops.glu, F.glu, target, make((6, 4), np.float32, seed=9, layout="transposed"), dim=0)
    x = np.array([[NAN, 1.0, 2.0, -INF], [INF, -1.0, 0.0, INF]], dtype=np.float32)
    check(nbops.glu, F.glu, target, x)


def test_glu_rows_split_into_chunks():
    check(nbops.glu, F.glu, "cpu", make((2, 2 * cpu_act.CHUNK + 6), np.float32, seed=10), dim=0)


PRELU = [((2, 3, 4), (3,)), ((2, 3, 4), (1,)), ((2, 3), (3,)), ((5,), (1,)), ((), (1,)), ((2, 3, 4, 5), (3,)),
         ((2, 3, 4), ()), ((0, 3, 2), (3,))]


@pytest.mark.parametrize("shape,wshape", PRELU)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", TARGETS)
def test_prelu(target, dtype, shape, wshape):
    x = make(shape, dtype, seed=11)
    w = np.asarray(make(wshape, dtype, seed=12))
    check(nbops.prelu, F.prelu, target, x, w)


@pytest.mark.parametrize("target", TARGETS)
def test_prelu_noncontiguous_and_specials(target):
    check(nbops.prelu, F.prelu, target, make((3, 5), np.float32, seed=13, layout="transposed"),
          make((5,), np.float32, seed=14))
    x = np.array([[NAN, -INF, INF, -0.0], [1.0, -1.0, 2.0, -2.0]], dtype=np.float32)
    check(nbops.prelu, F.prelu, target, x, np.array([0.25, -2.0, 1.0, 3.0], dtype=np.float32))


# ----------------------------------------------------------------------------------------------------------------
# softmax and log_softmax

SOFTMAX_CPU = [((37, 41), 1), ((37, 41), 0), ((3, 1000), -1), ((2, 2053), 1), ((5, 300, 7), 1), ((2, 3, 300), 1),
               ((2, 3, 4, 5), 2), ((7,), 0), ((), 0), ((1, 1), 1), ((4, 0), 1), ((0, 5), 1)]
SOFTMAX_CUDA = [((3, 5), 1), ((3, 5), 0), ((2, 300), 1), ((2, 1100), 1), ((2, 9, 3), 1), ((2, 5, 40), 1),
                ((7,), 0), ((), 0), ((1, 1), 1), ((4, 0), 1)]
SOFTMAX_CASES = ([pytest.param("cpu", s, d, id=f"cpu-{s}-{d}") for s, d in SOFTMAX_CPU]
                 + [pytest.param("cuda", s, d, id=f"cuda-{s}-{d}", marks=pytest.mark.cuda) for s, d in SOFTMAX_CUDA])
SOFTMAXES = [(nbops.softmax, F.softmax), (nbops.log_softmax, F.log_softmax)]


@pytest.mark.parametrize("fns", SOFTMAXES, ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target,shape,dim", SOFTMAX_CASES)
def test_softmax(target, shape, dim, dtype, fns):
    check(*fns, target, make(shape, dtype, seed=15, scale=5.0), dim=dim)


@pytest.mark.parametrize("fns", SOFTMAXES, ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("target", TARGETS)
def test_softmax_large_offset_and_noncontiguous(target, fns):
    check(*fns, target, make((4, 9), np.float32, seed=16, offset=1e4), dim=1)
    check(*fns, target, make((4, 9), np.float32, seed=17, layout="transposed"), dim=1)
    check(*fns, target, make((4, 9), np.float64, seed=18, layout="strided"), dim=0)


# rows holding NaN or +inf come out NaN, -inf entries give 0 (log: -inf); listed per target because the CUDA
# simulator evaluates with Python floats, where log(0) and 0 / 0 raise instead of giving -inf and NaN
SPECIAL_ROWS = [[INF, 1.0, 2.0], [-INF, 1.0, 2.0], [NAN, 1.0, 2.0], [1.0, 2.0, NAN], [-INF, -INF, 3.0],
                [1e30, -1e30, 0.0], [3.0, 3.0, 3.0]]
ALL_NEG_INF = [-INF, -INF, -INF]


@pytest.mark.parametrize("fns", SOFTMAXES, ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", TARGETS)
def test_softmax_special_rows(target, dtype, fns):
    rows = SPECIAL_ROWS + ([ALL_NEG_INF] if target == "cpu" else [])
    x = np.array(rows, dtype=dtype)
    check(*fns, target, x, dim=1)
    check(*fns, target, np.ascontiguousarray(x.T), dim=0)


@pytest.mark.parametrize("fns", SOFTMAXES, ids=["softmax", "log_softmax"])
def test_softmax_special_values_across_online_blocks(fns):
    """Specials placed in different ROW_BLOCK / DEPTH_BLOCK steps of the online pass: a long -inf prefix before
    the first finite value, the max growing late, NaN and +inf in the last block."""
    D = 3 * cpu_act.ROW_BLOCK + 5
    x = make((5, D), np.float32, seed=19, scale=3.0)
    x[0, : 2 * cpu_act.ROW_BLOCK] = -INF
    x[1, -1] = 50.0
    x[2, -2] = NAN
    x[3, -3] = INF
    x[4, :] = -INF
    check(*fns, "cpu", x, dim=1)
    check(*fns, "cpu", np.ascontiguousarray(x.T), dim=0)


def test_softmax_inner_matches_naive_oracle():
    B = cpu_act.DEPTH_BLOCK
    x = make((3, 2 * B + 7, cpu_act.COL_TILE + 44), np.float64, seed=20, scale=4.0)
    x[0, : B + 3, :] = -INF  # a whole online step of -inf before the first finite value
    x[1, 5, 7] = NAN
    for log in (False, True):
        out, ref = np.empty_like(x), np.empty_like(x)
        cpu_act.softmax(out, x, log)
        cpu_act._softmax_naive(ref, x, log)
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


def test_softmax_dim_none_follows_torch_legacy_rule_and_warns():
    for shape in [(4,), (3, 4), (2, 3, 4), (2, 3, 4, 5)]:
        x = make(shape, np.float32, seed=21)
        with pytest.warns(UserWarning, match="Implicit dimension choice for softmax") as rec:
            out = nbops.softmax(x)
        assert rec[0].filename == __file__
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = F.softmax(torch.from_numpy(x))
        torch.testing.assert_close(torch.from_numpy(out), expected)
    with pytest.warns(UserWarning, match="log_softmax"):
        nbops.log_softmax(make((3, 4), np.float32, seed=22))


@pytest.mark.parametrize("fns", SOFTMAXES, ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("target", TARGETS)
def test_softmax_dtype_casts_first(target, fns):
    x = make((3, 5), np.float32, seed=23)
    out = check(*fns, target, x, dim=1, dtype=torch.float64)
    assert out.dtype == np.float64
    ints = np.arange(-6, 6, dtype=np.int64).reshape(3, 4)
    check(*fns, target, ints, dim=0, dtype=torch.float32)
    assert fns[0](to_target(ints, target), 1, dtype=np.float64).dtype == np.float64


def test_torch_tensors_come_back_as_tensors():
    t = torch.randn(3, 4)
    out = nbops.softmax(t, dim=1)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, F.softmax(t, dim=1))
    out = nbops.prelu(t, torch.tensor([0.5]))
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, F.prelu(t, torch.tensor([0.5])))


# ----------------------------------------------------------------------------------------------------------------
# the CUDA kernels behind the launchers: grid-stride maps, softmax layouts, their oracles, their PTX

MAP_PARAMS = {"hardtanh": (-0.5, 2.0), "leaky_relu": (0.2,), "elu": (1.5, 1.0, 1.0), "softplus": (2.0, 5.0),
              "gelu": (0.7071067811865476, 0.5, 1.0), "gelu_tanh": (0.7978845608028654, 0.044715, 0.5, 1.0)}


@pytest.mark.cuda
def test_cuda_activation_maps_grid_stride():
    """Each activation's flat map on one block of 32 threads (several unrolled passes, then a ragged tail) gives
    the bits of the same map with one element per thread; relu's also those of its oracle ``_relu_naive``. One
    dtype: the indexing under test does not depend on it (the formulas' dtypes are covered above)."""
    from numba import cuda

    from nbops.cuda import activation as ka

    dtype = np.float32
    x = _values(dtype, 278)
    n = x.size
    dx = cuda.to_device(x)
    for name, kern in ka._MAPS.items():
        p = tuple(dtype(v) for v in MAP_PARAMS.get(name, ()))
        strided, spread = cuda.device_array(n, dtype), cuda.device_array(n, dtype)
        kern[1, 32](strided, dx, 1, p)
        kern[3, 128](spread, dx, 1, p)
        np.testing.assert_array_equal(strided.copy_to_host(), spread.copy_to_host(), err_msg=name)
    naive = cuda.device_array(n, dtype)
    ka._relu_naive[3, 128](naive, dx)
    np.testing.assert_array_equal(naive.copy_to_host(), np.where(x < 0, 0, x))


@pytest.mark.cuda
def test_cuda_glu_prelu_maps_match_their_kernels():
    """glu's and prelu's maps (the launchers' path) against their one-thread-per-element kernels, to the bit."""
    from numba import cuda

    from nbops.cuda import activation as ka

    x = make((5, 2, 37), np.float64, seed=25, scale=3.0)
    w = make((2,), np.float64, seed=26)
    dx = cuda.to_device(x)
    outs = [cuda.device_array((5, 37)) for _ in range(2)]
    ka.glu(outs[0], dx)
    ka._glu_kernel[2, 128](outs[1], dx)
    np.testing.assert_array_equal(outs[0].copy_to_host(), outs[1].copy_to_host())
    outs = [cuda.device_array(x.shape) for _ in range(2)]
    ka.prelu(outs[0], dx, cuda.to_device(w))
    ka._prelu_kernel[3, 128](outs[1], dx, cuda.to_device(w))
    np.testing.assert_array_equal(outs[0].copy_to_host(), outs[1].copy_to_host())


def _softmax_rows_input(dtype, D):
    """11 rows of D elements with the online pass' specials: a -inf prefix, the max arriving last, NaN, +inf, a
    large offset."""
    x = make((11, D), dtype, seed=24, scale=4.0)
    x[0, : D // 2] = -INF
    x[1, -1] = 60.0
    x[2, D // 3] = NAN
    x[3, -2] = INF
    x[4] += 1e4
    return x


def _softmax_ref(x, axis, log):
    t = torch.from_numpy(x.astype(np.float64))
    return (F.log_softmax if log else F.softmax)(t, dim=axis).numpy()


@pytest.mark.cuda
@pytest.mark.parametrize("dtype,log", [(np.float32, False), (np.float64, True)])
def test_cuda_softmax_kernels_match_oracle(dtype, log):
    """The warp-per-row, block-per-row and column kernels (grids smaller than the work: rows and depth
    grid-strided, 4 loads in flight plus ragged tails) against ``_softmax_naive``, both against torch in float64:
    float32 inputs to float32 rounding (x - max is a float32 difference in every kernel, as in torch's)."""
    from numba import cuda

    from nbops.cuda import activation as ka

    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    warp_rows, block_rows, cols = ka._softmax_kernels(np.dtype(dtype))
    lo = dtype(-np.inf)
    for D, kern, grid, block in [(5, warp_rows, 1, 32 * ka.WARP_ROWS), (150, warp_rows, 1, 32 * ka.WARP_ROWS),
                                 (300, block_rows, 2, ka.ROW_TPB)]:
        x = _softmax_rows_input(dtype, D)
        dx = cuda.to_device(x)
        out, ref = cuda.device_array_like(x), cuda.device_array_like(x)
        kern[grid, block](out, dx, lo, log)
        ka._softmax_naive[1, 32](ref, dx, log)
        np.testing.assert_allclose(ref.copy_to_host(), _softmax_ref(x, 1, log), **tol)
        np.testing.assert_allclose(out.copy_to_host(), ref.copy_to_host(), **tol, err_msg=f"D={D}")
    x = np.ascontiguousarray(_softmax_rows_input(dtype, 37).T).reshape(37, 11, 1).repeat(4, 2).reshape(1, 37, 44)
    for depth in (2, ka.MAX_DEPTH if dtype == np.float32 else ka.MAX_DEPTH // 2):
        out = cuda.device_array_like(x)
        cols[2, (ka.COL_TPB, depth)](out, cuda.to_device(x), lo, log)
        np.testing.assert_allclose(out.copy_to_host(), _softmax_ref(x, 1, log), **tol, err_msg=f"depth={depth}")


def _compile_cuda_kernels():
    """The activation maps (float32; glu's and prelu's box kernels) and the softmax kernels (float32, float64)
    compiled to PTX by NVVM for the signatures their launchers pass: no local memory (ld.local / st.local)."""
    from numba import types

    from nbops.cuda import activation as ka

    a = types.Array(types.float32, 1, "C")
    ptx = [gpu_ptx(kern, (a, a, types.int64, types.UniTuple(types.float32, len(MAP_PARAMS.get(name, ())))))
           for name, kern in ka._MAPS.items() if name in ("relu", "gelu", "elu", "softplus", "mish")]
    s3 = types.UniTuple(types.int64, 3)
    for kern in (ka._GLU_MAP[1], ka._PRELU_MAP[1]):
        ptx.append(gpu_ptx(kern, (a, s3, types.Array(types.float32, 1, "A"), a, s3, s3, s3, types.int64,
                                  types.Tuple(()))))
    for dt in (types.float32, types.float64):
        rows, cube = types.Array(dt, 2, "C"), types.Array(dt, 3, "C")
        warp_rows, block_rows, cols = ka._softmax_kernels(np.dtype(str(dt)))
        ptx += [gpu_ptx(k, (rows, rows, dt, types.boolean)) for k in (warp_rows, block_rows)]
        ptx.append(gpu_ptx(cols, (cube, cube, dt, types.boolean)))
    for text in ptx:
        assert "ld.local" not in text and "st.local" not in text


def test_cuda_kernels_compile_without_local_memory():
    outside_simulator(_compile_cuda_kernels)


# ----------------------------------------------------------------------------------------------------------------
# the float32 building blocks against float64 references


@njit(error_model="numpy")
def _apply(which, x, out):
    for i in range(x.shape[0]):
        v = x[i]
        if which == 0:
            out[i] = cpu_act._exp(v)
        elif which == 1:
            out[i] = cpu_act._expm1(v)
        elif which == 2:
            out[i] = cpu_act._tanh(v)
        elif which == 3:
            out[i] = cpu_act._log1p(v)
        else:
            out[i] = cpu_act._erf(v)


MATH = [  # (index in _apply, float64 reference, float32 sample range, largest error in float32 ulps)
    (0, np.exp, (-87.0, 88.5), 1.5),
    (1, np.expm1, (-20.0, 20.0), 2.0),
    (2, np.tanh, (-12.0, 12.0), 2.0),
    (3, np.log1p, (-0.9999, 1e6), 2.0),
    (4, np.vectorize(math.erf), (-6.0, 6.0), 3.0),
]


@pytest.mark.parametrize("which,ref,span,max_ulp", MATH, ids=["exp", "expm1", "tanh", "log1p", "erf"])
def test_float32_math_is_within_a_few_ulp(which, ref, span, max_ulp):
    tiny = np.geomspace(1e-30, 1.0, 2001)
    x = np.concatenate([np.linspace(*span, 200001), tiny, -tiny]).astype(np.float32)
    x = x[(x >= span[0]) & (x <= span[1])]
    out = np.empty_like(x)
    _apply(which, x, out)
    exact = ref(x.astype(np.float64))
    keep = np.abs(exact) > np.finfo(np.float32).tiny
    ulps = np.abs(out[keep] - exact[keep]) / np.spacing(np.abs(exact[keep]).astype(np.float32))
    assert ulps.max() <= max_ulp


MATH64 = [  # as MATH, for float64 (erf is libm's there)
    (1, np.expm1, (-40.0, 40.0), 3.0),
    (2, np.tanh, (-25.0, 25.0), 4.0),
    (3, np.log1p, (-0.99999999, 1e300), 3.0),
]


@pytest.mark.parametrize("which,ref,span,max_ulp", MATH64, ids=["expm1", "tanh", "log1p"])
def test_float64_math_is_within_a_few_ulp(which, ref, span, max_ulp):
    tiny = np.geomspace(1e-300, 1.0, 2001)
    x = np.concatenate([np.linspace(span[0], min(span[1], 50.0), 200001), np.geomspace(1.0, span[1], 2001), tiny,
                        -tiny])
    x = x[(x >= span[0]) & (x <= span[1])]
    out = np.empty_like(x)
    _apply(which, x, out)
    exact = ref(x)
    assert (np.abs(out - exact) / np.spacing(np.abs(exact))).max() <= max_ulp


@pytest.mark.parametrize("which,ref", [(0, np.exp), (1, np.expm1), (2, np.tanh), (3, np.log1p)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_math_specials(which, ref, dtype):
    x = np.array([NAN, INF, -INF, 0.0, -1.0, -2.0, 1000.0, -1000.0], dtype=dtype)
    out = np.empty_like(x)
    _apply(which, x, out)
    with np.errstate(all="ignore"):
        expected = ref(x)
    np.testing.assert_allclose(out, expected, rtol=4 * np.finfo(dtype).eps, atol=0)


@njit(error_model="numpy")
def _scaled(p, n, out):
    for i in range(p.shape[0]):
        out[i] = cpu_act._times_pow2(p[i], n[i])


@pytest.mark.parametrize("dtype,lo,hi", [(np.float32, -151, 129), (np.float64, -1077, 1025)])
def test_times_pow2_is_the_two_factor_product(dtype, lo, hi):
    """exp's last step, p * 2 ** n, as integer arithmetic on n's bits, against its plain float form: p times
    2 ** floor(n / 2) times 2 ** (n - floor(n / 2)), each factor exact, each product rounded once in the dtype,
    bit for bit over every n the exp's clamped argument gives, with p across the polynomial's range [1/sqrt(2),
    sqrt(2)] and beyond (results from the overflow to inf down through the subnormals to 0)."""
    n = np.repeat(np.arange(lo, hi, dtype=np.int64), 61)
    p = np.tile(np.concatenate([np.linspace(0.70, 1.42, 57), [0.5, 1.0, 2.0, np.nextafter(1.0, 0.0)]]),
                hi - lo).astype(dtype)
    h = np.floor(n / 2)
    with np.errstate(over="ignore", under="ignore"):
        expected = p * np.ldexp(np.ones_like(p), h.astype(np.int64)) * np.ldexp(np.ones_like(p), n - h.astype(
            np.int64))
    out = np.empty_like(p)
    _scaled(p, n.astype(dtype), out)
    assert out.view(np.uint8).tobytes() == expected.view(np.uint8).tobytes()
    assert np.isinf(out).any() and (out == 0).any() and (np.abs(out[out > 0]) < np.finfo(dtype).tiny).any()


def test_exp32_matches_its_float_form_bit_for_bit():
    """``_exp32`` (its clamps as max / min, its last step through ``_times_pow2``) against the same formula with
    compare-and-select clamps and 2 ** n from a float floor and two float conversions, as it was written before:
    every 1021st float32 bit pattern (NaN, inf, subnormals and both signs among them) and the edges of the clamp,
    bit for bit (all 2 ** 32 patterns matched when it changed)."""
    @njit(fastmath={"contract"}, error_model="numpy")
    def float_form(x):
        f = np.float32
        xc = x if x > f(-104.0) else f(-104.0)
        xc = xc if xc < f(89.0) else f(89.0)
        n = np.rint(xc * f(1.44269504088896341))
        p = cpu_act._exp32_reduced(xc, n)  # the reduction and polynomial, unchanged, shared with _exp32
        h = np.floor(n * f(0.5))
        y = p * f(math.ldexp(1.0, int(h))) * f(math.ldexp(1.0, int(n - h)))
        return y if x == x else x

    @njit(fastmath={"contract"}, error_model="numpy")
    def both(x, fast, ref):
        for i in range(x.shape[0]):
            fast[i] = cpu_act._exp32(x[i])
            ref[i] = float_form(x[i])

    edges = np.array([-104.0, -103.97, -87.34, 88.72, 88.73, 89.0, 0.0, -0.0], np.float32)
    x = np.concatenate([np.arange(0, 2 ** 32, 1021, dtype=np.uint64).astype(np.uint32).view(np.float32), edges])
    fast, ref = np.empty_like(x), np.empty_like(x)
    both(x, fast, ref)
    assert fast.view(np.uint32).tobytes() == ref.view(np.uint32).tobytes()


def test_exp64_is_within_one_ulp():
    x = np.linspace(-745.0, 709.0, 400001)
    out = np.empty_like(x)
    _apply(0, x, out)
    assert (np.abs(out - np.exp(x)) / np.spacing(np.exp(x))).max() <= 1.0


@njit(error_model="numpy")
def _shifted_and_plain(x, shifted, plain):
    for i in range(x.shape[0]):
        shifted[i] = cpu_act._exp_shifted(x[i])
        plain[i] = cpu_act._exp(x[i])


def test_exp_shifted32_is_exp32_where_normal_and_zero_below():
    """The softmax exp of float32 x <= 0: every 7th float32 from -0.0 down to -88 and the specials. Within 1.02
    ulp of float64 exp and ``_exp32``'s bits wherever 2 ** n is normal (n >= -126, x >= -87.68; a few ties of
    x * log2(e) may round n the other way), 0 where ``_exp32`` gives a subnormal of 2 ** -127 scale or less,
    NaN for NaN, 0 for -inf."""
    bits = np.arange(np.float32(-0.0).view(np.uint32), np.float32(-88.0).view(np.uint32) + 1, 7, dtype=np.uint32)
    specials = np.array([np.nan, -np.inf, -0.0, 0.0, -87.68, -87.69, -88.0, -103.9, -1e30], np.float32)
    x = np.concatenate([bits.view(np.float32), specials])
    shifted, plain = np.empty_like(x), np.empty_like(x)
    _shifted_and_plain(x, shifted, plain)
    n = np.rint(x.astype(np.float64) * np.log2(np.e))
    scaled = n >= -126
    assert np.count_nonzero(shifted[scaled] != plain[scaled]) <= 1e-6 * x.size
    exact = np.exp(x[scaled].astype(np.float64))
    assert (np.abs(shifted[scaled] - exact) / np.spacing(shifted[scaled]).astype(np.float64)).max() <= 1.02
    low = (n < -126) | (x < -88)
    assert low.sum() > 1000 and (shifted[low] == 0).all() and (plain[low] > 0).any()
    assert np.isnan(shifted[0 - len(specials)]) and shifted[1 - len(specials)] == 0
    assert shifted[2 - len(specials)] == 1 and shifted[3 - len(specials)] == 1


def test_exp_shifted64_is_exp64():
    x = -np.geomspace(1e-300, 800.0, 20001)
    shifted, plain = np.empty_like(x), np.empty_like(x)
    _shifted_and_plain(x, shifted, plain)
    assert shifted.tobytes() == plain.tobytes()


@njit(error_model="numpy")
def _row_maxima(x, lengths, out):
    at = 0
    for i in range(lengths.shape[0]):
        out[i] = cpu_act._block_max(x[at:at + lengths[i]], x.dtype.type(-np.inf))
        at += lengths[i]


@pytest.mark.parametrize("dtype", DTYPES)
def test_block_max_ignores_nan_over_every_lane_and_tail(dtype):
    """``_block_max`` (LANES register lanes merged by halving, then the tail) against nanmax, on rows of every
    length 0-200 and a few long ones, with the largest value planted at each lane and tail position in turn, and
    rows holding NaN (ignored) or only -inf."""
    rng = np.random.default_rng(41)
    lengths = np.concatenate([np.arange(0, 201), [511, 512, 513, 4097]])
    x = rng.standard_normal(lengths.sum()).astype(dtype) - 10
    ends = np.cumsum(lengths)
    for i, (n, end) in enumerate(zip(lengths, ends)):
        if n:
            x[end - n + i % n] = i  # the row's max, at a different position in every row
        if n > 3 and i % 5 == 0:
            x[end - n + (i * 7) % n] = np.nan
        if n and i % 11 == 0:
            x[end - n:end] = -np.inf
    out = np.empty(len(lengths), dtype)
    _row_maxima(x, lengths, out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = [np.nanmax(x[e - n:e]) if n else -np.inf for n, e in zip(lengths, ends)]
    np.testing.assert_array_equal(out, np.array(expected, dtype))


# ----------------------------------------------------------------------------------------------------------------
# errors

ERRORS = [
    (lambda: nbops.relu(np.zeros(3, np.bool_)), TypeError, r"relu\(\).*dtype bool"),
    (lambda: nbops.sigmoid([1.0, 2.0]), TypeError, r"sigmoid\(\): argument 'input'"),
    (lambda: nbops.hardtanh(make((3,)), 2.0, 1.0), ValueError, r"hardtanh\(\): min_val cannot be greater"),
    (lambda: nbops.leaky_relu(make((3,)), "a"), TypeError, r"leaky_relu\(\): argument 'negative_slope'"),
    (lambda: nbops.softplus(make((3,)), beta=None), TypeError, r"softplus\(\): argument 'beta'"),
    (lambda: nbops.gelu(make((3,)), approximate="erf"), ValueError, r"gelu\(\): approximate"),
    (lambda: nbops.celu(make((3,)), alpha=0.0), ValueError, r"celu\(\): alpha cannot be 0"),
    (lambda: nbops.relu(_readonly(), inplace=True), ValueError, r"relu\(\): inplace=True needs a writeable"),
    (lambda: nbops.glu(make((3, 5))), ValueError, r"glu\(\): Halving dimension must be even.*dimension 1 is size 5"),
    (lambda: nbops.glu(np.ones((), np.float32)), ValueError, r"glu\(\).*scalars"),
    (lambda: nbops.glu(make((4, 4)), dim=2), IndexError, r"glu\(\): Dimension out of range"),
    (lambda: nbops.glu(make((4, 4)), dim=1.0), TypeError, r"glu\(\): argument 'dim'"),
    (lambda: nbops.prelu(make((2, 3)), make((4,))), ValueError, r"prelu\(\): Mismatch.*= 4.*channel size = 3"),
    (lambda: nbops.prelu(make((3,)), make((3,))), ValueError, r"prelu\(\): Mismatch.*channel size = 1"),
    (lambda: nbops.prelu(make((2, 3)), make((1, 3))), ValueError, r"prelu\(\): expected weight to be a scalar"),
    (lambda: nbops.prelu(make((2, 3)), make((3,), np.float64)), TypeError, r"prelu\(\): weight has dtype float64"),
    (lambda: nbops.prelu(make((2, 3)), 0.25), TypeError, r"prelu\(\): argument 'weight'"),
    (lambda: nbops.softmax(make((2, 3)), dim=2), IndexError, r"softmax\(\): Dimension out of range"),
    (lambda: nbops.log_softmax(make((2, 3)), dim=-3), IndexError, r"log_softmax\(\): Dimension out of range"),
    (lambda: nbops.softmax(np.arange(6).reshape(2, 3), dim=1), TypeError, r"softmax\(\).*dtype int64"),
    (lambda: nbops.softmax(make((2, 3)), dim=1, dtype=np.int32), TypeError, r"softmax\(\): argument 'dtype'"),
    (lambda: nbops.softmax(make((2, 3)), dim=1, dtype="nonsense"), TypeError, r"softmax\(\): argument 'dtype'"),
    (lambda: nbops.log_softmax(np.zeros(3, np.complex64), dim=0), TypeError, r"log_softmax\(\).*dtype"),
]


def _readonly():
    x = make((3,))
    x.setflags(write=False)
    return x


@pytest.mark.parametrize("i", range(len(ERRORS)))
def test_errors(i):
    fn, exc, match = ERRORS[i]
    with pytest.raises(exc, match=match):
        fn()


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_softmax_fast_path_matches_the_general_path(dtype):
    # a plain NumPy float array with an int dim skips the general path (ops/activation.py ``_fast_softmax``): the
    # same launcher and views, so the values equal the general path's (torch tensors in take it) bit for bit
    from nbops.ops import activation as ops

    x = make((3, 5, 7), dtype, seed=1)
    x[1, 2, 3] = np.nan
    for fn, dim in [(nbops.softmax, -1), (nbops.softmax, 1), (nbops.log_softmax, 0), (nbops.log_softmax, 2)]:
        assert ops._fast_softmax(fn.__name__, x, dim) is not None
        fast, general = fn(x, dim), fn(torch.from_numpy(x), dim).numpy()
        assert fast.dtype == general.dtype == dtype and np.array_equal(fast, general, equal_nan=True)
    for bad in [(x, 3), (x, 1.0), (x[..., ::2], 0), (make((), dtype), 0)]:
        assert ops._fast_softmax("softmax", *bad) is None
    with pytest.raises(IndexError, match=r"softmax\(\)"):
        nbops.softmax(x, 3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_elementwise_fast_path_matches_the_general_path(dtype):
    # a plain NumPy float array, not in place, goes straight to the launcher (ops/activation.py ``_elementwise``):
    # the values equal the general path's (torch tensors in take it) bit for bit, and in-place calls still write
    # the caller's array
    x = make((5, 7), dtype, seed=1) * 4
    x[0, 0], x[1, 1], x[2, 2] = np.nan, np.inf, -np.inf
    calls = [(nbops.relu, {}), (nbops.gelu, {"approximate": "tanh"}), (nbops.sigmoid, {}), (nbops.tanh, {}),
             (nbops.hardtanh, {"min_val": -0.5, "max_val": 2.0}), (nbops.softplus, {"beta": 2.0}), (nbops.elu, {}),
             (nbops.leaky_relu, {"negative_slope": 0.2}), (nbops.silu, {}), (nbops.mish, {}), (nbops.selu, {})]
    for fn, kw in calls:
        fast, general = fn(x, **kw), fn(torch.from_numpy(x), **kw).numpy()
        assert fast.dtype == general.dtype == dtype and fast is not x, fn.__name__
        assert np.array_equal(fast, general, equal_nan=True), fn.__name__
    y = x.copy()
    assert nbops.relu(y, inplace=True) is y and np.array_equal(y, nbops.relu(x), equal_nan=True)
    assert nbops.relu(x[:0]).shape == (0, 7)


def test_cpu_wide_vectors_marks_the_function_and_keeps_the_values():
    """``wide_vectors()`` gives the calling function LLVM's "prefer-vector-width"="512" where the CPU has AVX-512
    (nothing elsewhere): its exp loop then runs on 512-bit registers instead of LLVM's 256-bit default for this
    host's tuning, with the same values, element by element, as the same loop without it."""
    import re

    from nbops.cpu._util import vector_bytes, wide_vectors

    @njit(fastmath={"contract"}, error_model="numpy")
    def wide(o, a):
        wide_vectors()
        for j in range(a.shape[0]):
            o[j] = cpu_act._exp32(a[j])

    @njit(fastmath={"contract"}, error_model="numpy")
    def plain(o, a):
        for j in range(a.shape[0]):
            o[j] = cpu_act._exp32(a[j])

    x = make((1000,), np.float32, seed=3, scale=20)
    x[::17] = np.nan
    o1, o2 = np.empty_like(x), np.empty_like(x)
    wide(o1, x)
    plain(o2, x)
    assert np.array_equal(o1, o2, equal_nan=True)
    np.testing.assert_allclose(o1, np.exp(x.astype(np.float64)).astype(np.float32), rtol=3e-7)
    marked = '"prefer-vector-width"="512"' in wide.inspect_llvm(wide.signatures[0])
    assert '"prefer-vector-width"="512"' not in plain.inspect_llvm(plain.signatures[0])
    zmm = len(re.findall(r"%zmm", wide.inspect_asm(wide.signatures[0])))
    if vector_bytes() == 64:
        assert marked and zmm > 20
    else:
        assert not marked and not zmm


def test_first_compile_prints_no_numba_ir_warnings(tmp_path):
    """A fresh process with an empty numba cache compiles softplus, elu, gelu and tanh (both dtypes) without
    numba's "variable ... is not in scope" warnings about the IR-inlined bodies (silenced by name in
    cpu/activation.py), while a warning of the same kind about any other variable still shows."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, warnings, numpy as np\n"
        "from numba.core.errors import NumbaIRAssumptionWarning\n"
        "import nbops\n"
        "x = np.linspace(-9, 9, 99, dtype=np.float32)\n"
        "with warnings.catch_warnings(record=True) as got:\n"
        "    for f in (nbops.softplus, nbops.elu, nbops.gelu, nbops.tanh):\n"
        "        f(x), f(x.astype(np.float64))\n"
        "    warnings.warn(NumbaIRAssumptionWarning(\"variable 'other_v1_x.1' is not in scope.\"))\n"
        "print(json.dumps([str(w.message).splitlines()[0] for w in got]))\n"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == ["variable 'other_v1_x.1' is not in scope."]
