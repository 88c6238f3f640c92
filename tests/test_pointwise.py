"""Parity of the pointwise family with torch: broadcasting, layouts, scalars, type promotion, NaN/inf, integer and
bool semantics, errors. Every case runs on cpu and (tiny shapes) on the CUDA simulator."""

import numpy as np
import pytest
import torch

import nbops
from helpers import DTYPES, TARGETS, check, gpu_ptx, make, make_int, outside_simulator, to_target

# the CUDA simulator runs kernels as NumPy scalar code, which warns where integers wrap and where NaN/inf arise on
# purpose (the tests feed them in)
pytestmark = [pytest.mark.filterwarnings(f"ignore:{m}:RuntimeWarning")
              for m in ("overflow encountered", "invalid value encountered", "divide by zero encountered")]

BROADCASTS = [  # (shape of input, shape of other)
    ((7,), (7,)),
    ((3, 5), (5,)),
    ((2, 3, 4, 5), (3, 1, 5)),
    ((4, 1), (1, 6)),
    ((1,), (3, 1)),
    ((2, 1, 3), (2, 4, 1)),
    ((0, 3), (3,)),
    ((), (4,)),
    ((), ()),
    ((5, 3), ()),
]
BIG = [  # cpu only: several prange blocks, long and short rows
    ((40000,), (40000,)),
    ((130, 257), (257,)),
    ((3000, 7), (3000, 1)),
    ((2, 1, 2, 1, 2, 1, 2, 1, 2), (1, 2, 1, 2, 1, 2, 1, 2, 1)),
]
BINARY = [
    (nbops.add, torch.add),
    (nbops.sub, torch.sub),
    (nbops.mul, torch.mul),
    (nbops.div, torch.div),
    (nbops.maximum, torch.maximum),
    (nbops.minimum, torch.minimum),
]
IDS = [f.__name__ for f, _ in BINARY]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", BROADCASTS, ids=str)
@pytest.mark.parametrize("fns", BINARY, ids=IDS)
def test_binary_broadcast(fns, shapes, dtype, target):
    check(*fns, target, make(shapes[0], dtype, 1), make(shapes[1], dtype, 2))


@pytest.mark.parametrize("shapes", BIG, ids=str)
@pytest.mark.parametrize("fns", BINARY[:4], ids=IDS[:4])
def test_binary_large_cpu(fns, shapes):
    check(*fns, "cpu", make(shapes[0], np.float32, 1), make(shapes[1], np.float32, 2))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("layout", ["transposed", "strided"])
@pytest.mark.parametrize("fns", BINARY, ids=IDS)
def test_binary_noncontiguous(fns, layout, target):
    a = make((6, 5), np.float64, 1, layout=layout)
    check(*fns, target, a, make((6, 5), np.float64, 2))
    check(*fns, target, make((5,), np.float64, 3), a)
    check(*fns, target, a, make((6, 5), np.float64, 4, layout=layout))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("fns", BINARY, ids=IDS)
def test_binary_large_offset(fns, target):
    check(*fns, target, make((4, 9), np.float32, 1, offset=1e4), make((9,), np.float32, 2, offset=1e4))


def test_reversed_and_broadcast_numpy_views_cpu():
    a = make((8, 6), np.float32, 1)
    check(nbops.add, torch.add, "cpu", np.ascontiguousarray(a[::-1]), make((6,), np.float32, 2))
    out = nbops.add(a[::-1, ::2], np.broadcast_to(make((3,), np.float32, 3), (8, 3)))
    np.testing.assert_allclose(out, a[::-1, ::2] + make((3,), np.float32, 3), rtol=1e-6)


SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 1e-30, 7.0, -7.0], dtype=np.float64)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fns", BINARY + [(nbops.pow, torch.pow)], ids=IDS + ["pow"])
def test_binary_nan_inf_zero(fns, dtype, target):
    """Every pair of special values, including division by +-0 and by +-inf."""
    a = SPECIAL.astype(dtype)[:, None]
    b = SPECIAL.astype(dtype)[None, :]
    check(*fns, target, a, b)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["trunc", "floor"])
def test_div_rounding_float(mode, dtype, target):
    a = np.concatenate([SPECIAL, [-0.5, 0.5, 5.0, 1e20, -3.0]]).astype(dtype)[:, None]
    b = np.concatenate([SPECIAL, [3.0, -3.0, 2.5, 0.1, 3.0]]).astype(dtype)[None, :]
    check(nbops.div, torch.div, target, a, b, rounding_mode=mode)
    check(nbops.div, torch.div, target, make((4, 5), dtype, 1, scale=10), make((5,), dtype, 2), rounding_mode=mode)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8])
@pytest.mark.parametrize("mode", ["trunc", "floor"])
def test_div_rounding_int(mode, dtype, target):
    a = make_int((6, 1), -20, 20, dtype, 1)
    b = np.array([-7, -3, -1, 1, 2, 5], dtype=dtype)
    check(nbops.div, torch.div, target, a, b, rounding_mode=mode)
    check(nbops.div, torch.div, target, a, 3, rounding_mode=mode)
    check(nbops.div, torch.div, target, a, -2.5, rounding_mode=mode)


def test_div_int8_wraps_like_torch():
    check(nbops.div, torch.div, "cpu", np.array([-128], np.int8), np.array([-1], np.int8), rounding_mode="floor")
    check(nbops.div, torch.div, "cpu", np.array([-128], np.int8), np.array([-1], np.int8), rounding_mode="trunc")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pow_float(dtype, target):
    base = np.abs(make((3, 4), dtype, 1)) + 0.5
    check(nbops.pow, torch.pow, target, base, make((4,), dtype, 2))
    check(nbops.pow, torch.pow, target, make((3, 4), dtype, 3), 2)
    check(nbops.pow, torch.pow, target, base, 0.5)
    check(nbops.pow, torch.pow, target, 2.5, make((5,), dtype, 4))
    check(nbops.pow, torch.pow, target, make((5,), dtype, 5), -1.0)


@pytest.mark.parametrize("target", TARGETS)
def test_pow_int(target):
    a = np.array([[-3], [-1], [0], [1], [2], [3]], dtype=np.int64)
    b = np.array([-3, -2, -1, 0, 1, 2, 5, 63], dtype=np.int64)
    check(nbops.pow, torch.pow, target, a, b)
    check(nbops.pow, torch.pow, target, a.astype(np.int32), 3)
    check(nbops.pow, torch.pow, target, 2, b[3:])
    check(nbops.pow, torch.pow, target, a, 0.5)
    check(nbops.pow, torch.pow, target, np.array([2, 3], np.uint8), np.array([7, 9], np.uint8))


PROMOTION = [  # (a, b): arrays (dimensioned or 0-d) and numbers in every priority combination
    (np.array([1, 2], np.int32), 2),
    (np.array([1, 2], np.int32), 2.5),
    (np.array([1, 2], np.int32), np.array(2.0, np.float64)),
    (np.array([1, 2], np.float32), np.array(2.0, np.float64)),
    (np.array([1, 2], np.float32), np.array([2.0], np.float64)),
    (np.array([1, 2], np.uint8), np.array([-1], np.int8)),
    (np.array([1, 2], np.uint8), np.array(-1, np.int64)),
    (np.array([True, False]), 1),
    (np.array([True, False]), 2.5),
    (np.array([True, False]), np.array([3, 4], np.int16)),
    (np.array(3, np.int64), np.array([1.5, 2.5], np.float32)),
    (np.array([1, 2], np.int8), 1000),
    (np.array([250, 3], np.uint8), np.array([10, 5], np.uint8)),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("pair", PROMOTION, ids=lambda p: f"{getattr(p[0], 'dtype', '')}-{p[1]!r}"[:40])
@pytest.mark.parametrize("fns", [(nbops.add, torch.add), (nbops.mul, torch.mul), (nbops.div, torch.div)],
                         ids=["add", "mul", "div"])
def test_type_promotion(fns, pair, target):
    check(*fns, target, *pair)


@pytest.mark.parametrize("target", TARGETS)
def test_sub_and_minmax_promotion(target):
    check(nbops.sub, torch.sub, target, np.array([1, 2], np.uint8), np.array([3, 1], np.uint8))
    check(nbops.sub, torch.sub, target, np.array([1, 2], np.int32), 2.5)
    check(nbops.maximum, torch.maximum, target, np.array([1, 5], np.int32), np.array([2.5, 1.5], np.float32))
    check(nbops.minimum, torch.minimum, target, np.array([True, False]), np.array([True, True]))
    check(nbops.maximum, torch.maximum, target, np.array([True, False]), np.array([False, False]))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES + [np.int64, np.int32])
def test_alpha(dtype, target):
    alpha = 3 if np.dtype(dtype).kind == "i" else 2.5
    a, b = make_int((3, 4), -9, 9, dtype, 1), make_int((4,), -9, 9, dtype, 2)
    check(nbops.add, torch.add, target, a, b, alpha=alpha)
    check(nbops.sub, torch.sub, target, a, b, alpha=alpha)
    check(nbops.sub, torch.sub, target, a, 2, alpha=-2)


@pytest.mark.parametrize("target", TARGETS)
def test_bool_arithmetic(target):
    a = np.array([[True], [False]])
    b = np.array([True, False, True])
    check(nbops.add, torch.add, target, a, b)
    check(nbops.add, torch.add, target, a, b, alpha=False)
    check(nbops.add, torch.add, target, a, b, alpha=2)
    check(nbops.mul, torch.mul, target, a, b)
    check(nbops.div, torch.div, target, a, b)


@pytest.mark.parametrize("target", TARGETS)
def test_uint8_wraps(target):
    a = np.array([0, 1, 200, 255], np.uint8)
    check(nbops.add, torch.add, target, a, np.array([1, 255, 100, 1], np.uint8))
    check(nbops.mul, torch.mul, target, a, np.array([2, 3, 2, 255], np.uint8))
    check(nbops.neg, torch.neg, target, a)
    check(nbops.abs, torch.abs, target, a)


UNARY = [(nbops.sqrt, torch.sqrt), (nbops.exp, torch.exp), (nbops.log, torch.log), (nbops.abs, torch.abs),
         (nbops.neg, torch.neg)]
UIDS = [f.__name__ for f, _ in UNARY]
UNARY_SHAPES = [(7,), (3, 5), (2, 3, 4, 5), (1,), (0, 3), ()]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", UNARY_SHAPES, ids=str)
@pytest.mark.parametrize("fns", UNARY, ids=UIDS)
def test_unary(fns, shape, dtype, target):
    x = make(shape, dtype, 1)
    if fns[0] in (nbops.sqrt, nbops.log):
        x = np.asarray(np.abs(x) + 0.1, dtype=dtype)
    check(*fns, target, x)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fns", UNARY, ids=UIDS)
def test_unary_special_and_layouts(fns, dtype, target):
    check(*fns, target, np.concatenate([SPECIAL, [-1e-3, 100.0, 800.0, -800.0]]).astype(dtype))
    check(*fns, target, make((5, 6), dtype, 2, layout="transposed"))
    check(*fns, target, make((5, 6), dtype, 3, layout="strided"))
    check(*fns, target, make((4, 3), dtype, 4, offset=1e4))


def test_exp_float32_sweep_cpu():
    """The cpu float32 exp is a polynomial, not libm: sweep its whole range, both overflow edges and denormals."""
    x = np.concatenate([np.linspace(-110, 90, 200001, dtype=np.float32),
                        np.nextafter(np.float32(88.72283935546875), np.float32([-np.inf, np.inf])),
                        np.array([-87.33655, -103.97208, 1e-8, -1e-8], np.float32)])
    check(nbops.exp, torch.exp, "cpu", x)
    check(nbops.exp, torch.exp, "cpu", x[x > -87], rtol=2.4e-7, atol=0)  # 2 ulp where results are normal

@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("fns", UNARY, ids=UIDS)
def test_unary_int(fns, target):
    check(*fns, target, make_int((4, 5), -50, 50, np.int64, 1))
    check(*fns, target, make_int((7,), -5, 5, np.int32, 2))
    if fns[0] in (nbops.sqrt, nbops.exp, nbops.log):
        check(*fns, target, np.array([True, False]))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4), (3, 4)), ((3, 1), (4,), (2, 1, 1)), ((5,), (), (5,)),
                                    ((0, 2), (2,), (1,)), ((), (), ())], ids=str)
def test_where(shapes, dtype, target):
    cond = np.asarray(make(shapes[0], np.float32, 1) > 0)
    check(nbops.where, torch.where, target, cond, make(shapes[1], dtype, 2), make(shapes[2], dtype, 3))


@pytest.mark.parametrize("target", TARGETS)
def test_where_scalars_and_promotion(target):
    cond = make((4, 5), np.float32, 1) > 0
    check(nbops.where, torch.where, target, cond, make((5,), np.float32, 2), 2.5)
    check(nbops.where, torch.where, target, cond, 1.0, 0.0)
    check(nbops.where, torch.where, target, cond, 1, 0)
    check(nbops.where, torch.where, target, cond, make_int((5,), 0, 9, np.int32, 3), 2.5)
    check(nbops.where, torch.where, target, cond, make((5,), np.float32, 4), make((4, 1), np.float64, 5))
    check(nbops.where, torch.where, target, cond, np.array([True, False, True, False, True]), False)
    check(nbops.where, torch.where, target, np.array(False), np.array(False), True)  # 0-d bool output
    check(nbops.where, torch.where, target, cond, make((4, 5), np.float32, 6, layout="transposed"), np.nan)


CLAMPS = [  # (min, max): numbers, arrays, None, crossed, NaN
    (-0.5, 0.5),
    (-0.5, None),
    (None, 0.5),
    (1.0, -1.0),
    (np.nan, None),
    (None, np.nan),
    (None, np.inf),
    ("array", "array"),
    ("array", None),
    (None, "array"),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bounds", CLAMPS, ids=str)
def test_clamp(bounds, dtype, target):
    x = make((4, 6), dtype, 1)
    x[0, :3] = [np.nan, np.inf, -np.inf]
    lo, hi = (make((6,), dtype, 2) - 0.5 if bounds[0] == "array" else bounds[0],
              make((4, 1), dtype, 3) + 0.5 if bounds[1] == "array" else bounds[1])
    check(nbops.clamp, _torch_clamp, target, x, min=lo, max=hi)


def _torch_clamp(input, min=None, max=None):
    """torch.clamp with a NaN number bound passed as a 0-d tensor of input's dtype (same result dtype). torch 2.11
    and older ignore a lone NaN number bound (pytorch/pytorch#172067, fixed since) while the tensor form propagates
    NaN in every version since 1.12; nbops follows the current rule, NaN everywhere."""
    def bound(v):
        return torch.tensor(v, dtype=input.dtype) if isinstance(v, float) and v != v else v
    return torch.clamp(input, min=bound(min), max=bound(max))


@pytest.mark.parametrize("target", TARGETS)
def test_clamp_int_and_nan_bounds(target):
    x = make_int((3, 5), -10, 10, np.int64, 1)
    check(nbops.clamp, torch.clamp, target, x, min=-3, max=4)
    check(nbops.clamp, torch.clamp, target, x, min=-2.5)
    check(nbops.clamp, torch.clamp, target, x, max=make((5,), np.float32, 2))
    check(nbops.clamp, torch.clamp, target, x.astype(np.uint8), max=7)
    f = make((3, 5), np.float32, 3)
    check(nbops.clamp, torch.clamp, target, f, min=np.array([np.nan, 0, 0, 0, 0], np.float32))
    check(nbops.clamp, torch.clamp, target, f, max=np.array([[np.nan], [0], [1]], np.float64))
    b = np.array([[True, False, True]])
    check(nbops.clamp, torch.clamp, target, b, max=np.array([[False], [True]]))
    check(nbops.clamp, torch.clamp, target, b.T, min=np.array([True, False]))
    lo = make((3, 5), np.float32, 4, layout="transposed")
    check(nbops.clamp, torch.clamp, target, f, min=lo, max=np.array(1.0, np.float32))


def test_clamp_mixes_array_and_number_bounds():
    """torch refuses an array and a number together; nbops takes them as torch takes a 0-d bound."""
    x, lo = make((3, 5), np.float32, 1), make((5,), np.float32, 2) - 1
    expected = torch.clamp(torch.from_numpy(x), min=torch.from_numpy(lo), max=torch.tensor(0.5))
    np.testing.assert_array_equal(nbops.clamp(x, min=lo, max=0.5), expected.numpy())


def test_torch_tensors_in_torch_tensors_out():
    a, b = torch.randn(3, 4), torch.randn(4)
    out = nbops.add(a, b, alpha=2)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, torch.add(a, b, alpha=2))
    torch.testing.assert_close(nbops.where(a > 0, a, 0.0), torch.where(a > 0, a, 0.0))
    torch.testing.assert_close(nbops.exp(a.t()), torch.exp(a.t()))


@pytest.mark.cuda
def test_cuda_returns_device_array():
    out = nbops.mul(to_target(make((3, 4)), "cuda"), 2.0)
    assert hasattr(out, "copy_to_host") and out.shape == (3, 4)
    np.testing.assert_allclose(out.copy_to_host(), make((3, 4)) * 2, rtol=1e-6)


def test_cpu_kernel_compiles_one_signature_per_dtype():
    """Every layout, rank and broadcast of one dtype goes through one compiled signature."""
    from nbops.cpu import pointwise as cpu

    for a, b in [((3, 4), (4,)), ((2, 3, 4), (2, 3, 4)), ((5,), ())]:
        nbops.mul(make(a, np.float64, 1), make(b, np.float64, 2))
    nbops.mul(make((4, 3), np.float64, 1, layout="transposed"), 3.0)
    keys = [k for k in cpu._ENTRIES if k[0] is cpu._binary_kernel and k[1][0] == "float64"]
    assert len(keys) == 1 and len(cpu._binary_kernel.signatures) <= 2



def test_cpu_flat_layouts_are_shared_per_size_and_scalar_operands():
    """The flat iteration spaces of the 8-D kernels are cached by (size, which operands are scalars): each pairing
    of one size gets its own strides, every call the right values, and the cache empties itself when it is full.
    Integers: contiguous float operands take the flat kernels instead (next test)."""
    from nbops.cpu import pointwise as cpu

    x, y, s = make_int((5, 7), -50, 50, np.int32, 1), make_int((5, 7), -50, 50, np.int32, 2), make_int((1,), 1, 9,
                                                                                                      np.int32, 3)
    for a, b in [(x, y), (x, s), (s, y), (x, y), (s, x)]:
        check(nbops.add, torch.add, "cpu", a, b)
    assert {k[1] for k in cpu._LAYOUTS if k[0] == 35} >= {(False, False), (False, True), (True, False)}
    shape, st = cpu._flat_layout(35, (False, True))
    assert list(shape) == [1] * 7 + [35] and st.tolist() == [[0] * 7 + [1], [0] * 7 + [1], [0] * 8]
    for n in range(cpu.MAX_LAYOUTS + 1):
        cpu._flat_layout(n + 1000, (False,))
    assert len(cpu._LAYOUTS) <= cpu.MAX_LAYOUTS
    check(nbops.mul, torch.mul, "cpu", x, s)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_flat_kernels_match_the_8d_kernels(dtype, monkeypatch):
    """Float operands laid out like a C-contiguous output (the other operand may be one value) run the flat binary
    and unary kernels; their values equal the 8-D kernels' on the same operands bit for bit, for every op code,
    sizes across CHUNK boundaries, size 1 and a float32 exp's two interleaved halves; other layouts keep the 8-D
    kernels."""
    from numba import types
    from numba.np.numpy_support import from_dtype

    from nbops.cpu import pointwise as cpu

    def eight_d(kern, out, xs, *scalars):
        flats, shape, st = cpu._operands(out, xs)
        entry = cpu._entry(kern, tuple(f.dtype for f in flats), tuple(t for t, _ in scalars))
        cpu.run_parallel(entry, out.size, *flats, shape, st, *(v for _, v in scalars))

    for shape in [(1,), (7, 5), (3, cpu.CHUNK + 13), (2 * cpu.CHUNK + 1,)]:
        x, y = make(shape, dtype, seed=1), make(shape, dtype, seed=2)
        x.reshape(-1)[::7] = np.nan
        y.reshape(-1)[1::5] = 0
        one = make((1,), dtype, seed=3)
        for op, code in cpu._BINARY.items():
            for other in (y, one):
                flat, ref = np.empty(shape, dtype), np.empty(shape, dtype)
                alpha = -1.5 if op == "add" else 1
                cpu.pointwise_binary(flat, x, other, op, alpha)
                eight_d(cpu._binary_kernel, ref, [x, other], (types.int64, code),
                        (from_dtype(np.dtype(dtype)), np.dtype(dtype).type(alpha)))
                assert np.array_equal(flat, ref, equal_nan=True), (op, shape)
        for op, code in cpu._UNARY.items():
            code = cpu.EXP_F32 if op == "exp" and dtype == np.float32 else code
            flat, ref = np.empty(shape, dtype), np.empty(shape, dtype)
            cpu.pointwise_unary(flat, x, op)
            eight_d(cpu._unary_kernel, ref, [x], (types.int64, code))
            assert np.array_equal(flat, ref, equal_nan=True), (op, shape)
    assert {k[0] for k in cpu._FLAT_ENTRIES if k[1] == np.dtype(dtype)} == {cpu._binary_flat_kernel,
                                                                           cpu._unary_flat_kernel}
    x = make((6, 5), dtype, seed=4)
    ran = []
    run = cpu._run
    monkeypatch.setattr(cpu, "_run", lambda kern, *args: ran.append(kern) or run(kern, *args))
    for a, b in [(x, make((5,), dtype, seed=5)), (x.T.copy().T, x), (make((1, 5), dtype, seed=6), x)]:
        check(nbops.add, torch.add, "cpu", a, b)
    assert ran == [cpu._binary_kernel] * 3  # broadcast, transposed, and a broadcast first operand: the 8-D kernel

# --- the grid-stride maps (nbops/cuda/_util.py map_kernels): the flat kernel, the 3-D box kernel, the 8-D fallback
# 899 elements on one simulated block of 256 threads: threads below 899 - 3 * 256 run the unrolled body (4 elements),
# the rest the ragged tail

MAP_LAYOUTS = [  # (input, other) as (shape, layout) or a number; the path each takes on cuda
    (((31, 29), "contiguous"), ((31, 29), "contiguous")),  # flat, ragged
    (2.5, ((31, 29), "contiguous")),  # flat, scalar first operand
    (((), "contiguous"), ((), "contiguous")),  # flat, 0-d
    (((1,), "contiguous"), ((1, 1), "contiguous")),  # flat, size 1
    (((31, 29), "contiguous"), ((29,), "contiguous")),  # box: row broadcast
    (((31, 29), "contiguous"), ((31, 1), "contiguous")),  # box: column broadcast
    (((2, 3, 4, 5), "contiguous"), ((3, 1, 1), "contiguous")),  # box: per-channel
    (((31, 29), "transposed"), ((31, 29), "strided")),  # box: non-contiguous operands
    (((2, 3, 4, 5), "transposed"), ((3, 1, 5), "contiguous")),  # 8-D fallback: folds to 4 dims
    (((0, 3), "contiguous"), ((3,), "contiguous")),  # empty
]


def _map_operand(spec, dtype, seed):
    """A number as is; (shape, layout) as an array of ``dtype`` (integers laid out as ``make`` lays out floats)."""
    if not isinstance(spec, tuple):
        return spec
    shape, layout = spec
    if np.dtype(dtype).kind == "f":
        return make(shape, dtype, seed=seed, layout=layout)
    if layout == "transposed":
        return np.swapaxes(make_int(shape[:-2] + (shape[-1], shape[-2]), -50, 50, dtype, seed), -1, -2)
    if layout == "strided":
        return make_int(shape[:-1] + (2 * shape[-1],), -50, 50, dtype, seed)[..., ::2]
    return make_int(shape, -50, 50, dtype, seed)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES + [np.int32])
@pytest.mark.parametrize("pair", MAP_LAYOUTS, ids=range(len(MAP_LAYOUTS)))
def test_cuda_map_layouts(pair, dtype):
    x, y = (_map_operand(spec, dtype, seed) for spec, seed in zip(pair, (30, 31)))
    check(nbops.sub, torch.sub, "cuda", x, y)
    if np.dtype(dtype).kind == "f" and not isinstance(x, float):
        check(nbops.exp, torch.exp, "cuda", x)
        check(lambda c, a, b: nbops.where(c, a, b), torch.where, "cuda", np.ascontiguousarray(x > 0), x, y)
        check(lambda a, b: nbops.clamp(a, b), lambda a, b: torch.clamp(a, b), "cuda", x, y)


def test_collapse_picks_the_paths():
    """The folds behind MAP_LAYOUTS' paths: a row broadcast to 2 dims, per-channel to 3, a transposed 4-D input
    with a broadcast other to 4 (the 8-D fallback), a contiguous copy to 1."""
    from nbops.cuda._util import collapse

    assert collapse((31, 29), [[29, 1], [0, 1]]) == ([31, 29], [[29, 1], [0, 1]])
    assert collapse((2, 3, 4, 5), [[60, 20, 5, 1], [0, 1, 0, 0]]) == ([2, 3, 20], [[60, 20, 1], [0, 1, 0]])
    dims, _ = collapse((2, 3, 4, 5), [[60, 20, 5, 1], [60, 20, 1, 4], [0, 5, 0, 1]])
    assert len(dims) == 4
    assert collapse((2, 1, 3), [[3, 3, 1]]) == ([6], [[1]])


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 31, 130, 300])
def test_cuda_maps_grid_stride_match_the_8d_oracle(n, dtype):
    """The flat and box kernels on a small grid (one block of 32 threads: several unrolled passes, then a ragged
    tail; the box kernel with 8 lanes per row, and with 2 lanes per row of 5 and 16 rows per block) give the 8-D
    one-thread-per-element kernel's bits."""
    from numba import cuda

    from nbops.cuda import pointwise as pw
    from nbops.cuda._util import box_lanes, pad_rank

    x, y = make((n,), dtype, seed=32), make((n,), dtype, seed=33)
    dx, dy = cuda.to_device(x), cuda.to_device(y)
    ref = cuda.device_array(n, dtype)
    pw._binary_kernel[n, 1](ref, pad_rank(dx), pad_rank(dy), pw.DIV_FLOOR, dtype(1))
    flat, box = cuda.device_array(n, dtype), cuda.device_array(n, dtype)
    pw._BINARY_FLOAT_MAP[0][1, 32](flat, dx, dy, 1, 1, (pw.DIV_FLOOR, dtype(1)))
    pw._BINARY_FLOAT_MAP[1][1, 32](box, (0, 0, 1), dx, dy, (0, 0, 1), (0, 0, 1), (1, 1, n), 8,
                                   (pw.DIV_FLOOR, dtype(1)))
    np.testing.assert_array_equal(flat.copy_to_host(), ref.copy_to_host())
    np.testing.assert_array_equal(box.copy_to_host(), ref.copy_to_host())
    m = make((n, 3, 5), dtype, seed=34)  # per-channel operand over (n, 3, 5): rows of 5 shared by 2 lanes
    ch = make((3,), dtype, seed=35)
    out = cuda.device_array((n * 15,), dtype)
    assert box_lanes(5) == 2
    pw._BINARY_FLOAT_MAP[1][1, 32](out, (15, 5, 1), cuda.to_device(m.reshape(-1)), cuda.to_device(ch), (15, 5, 1),
                                   (0, 1, 0), (n, 3, 5), 2, (pw.ADD, dtype(1)))
    np.testing.assert_array_equal(out.copy_to_host().reshape(n, 3, 5), m + ch[:, None])


def _compile_cuda_maps():
    """The grid-stride maps compiled to PTX by NVVM for the signatures their launchers pass (1-D C arrays, int64
    strides, tuples of parameters): no local memory (ld.local) in any of them."""
    from numba import types

    from nbops.cuda import pointwise as pw

    s3 = types.UniTuple(types.int64, 3)
    for dt in (types.float32, types.float64, types.int32):
        a = types.Array(dt, 1, "C")
        maps = pw._BINARY_FLOAT_MAP if dt in (types.float32, types.float64) else pw._BINARY_INT_MAP
        p2 = types.Tuple((types.int64, dt))
        ptx = [gpu_ptx(maps[0], (a, a, a, types.int64, types.int64, p2)),
               gpu_ptx(maps[1], (a, s3, a, a, s3, s3, s3, types.int64, p2))]
        if dt != types.int32:
            cond = types.Array(types.boolean, 1, "C")
            ptx += [gpu_ptx(pw._UNARY_MAP[0], (a, a, types.int64, types.UniTuple(types.int64, 1))),
                    gpu_ptx(pw._WHERE_MAP[1], (a, s3, cond, a, a, s3, s3, s3, s3, types.int64, types.Tuple(()))),
                    gpu_ptx(pw._CLAMP_MAP[0], (a, a, a, a, types.int64, types.int64, types.int64, types.Tuple(())))]
        for text in ptx:
            assert "ld.local" not in text and "st.local" not in text


def test_cuda_maps_compile_without_local_memory():
    outside_simulator(_compile_cuda_maps)


def _compile_cuda_kernels():
    """Every pointwise CUDA kernel, for every signature its launcher can pass (out flat C-contiguous, operands
    8-D strided views, bool computed as uint8), compiled to PTX by NVVM; the float kernels that must propagate NaN
    contain no PTX max/min instruction (those return the non-NaN operand)."""
    from numba import types

    from nbops.cuda import pointwise as cuda_pointwise

    floats = (types.float32, types.float64)
    ints = (types.int8, types.int16, types.int32, types.int64, types.uint8)
    flat, nd = (lambda dt: types.Array(dt, 1, "C")), (lambda dt: types.Array(dt, 8, "A"))
    for dt in floats + ints:
        binary = cuda_pointwise._binary_kernel if dt in floats else cuda_pointwise._binary_int_kernel
        ptx = {
            "binary": gpu_ptx(binary, (flat(dt), nd(dt), nd(dt), types.int64, dt)),
            "unary": gpu_ptx(cuda_pointwise._unary_kernel, (flat(dt), nd(dt), types.int64)),
            "where": gpu_ptx(cuda_pointwise._where_kernel, (flat(dt), nd(types.boolean), nd(dt), nd(dt))),
            "clamp": gpu_ptx(cuda_pointwise._clamp_kernel, (flat(dt), nd(dt), nd(dt), nd(dt))),
        }
        if dt in floats:
            for name in ("binary", "clamp"):
                assert "max.f" not in ptx[name] and "min.f" not in ptx[name], (name, dt)


def test_cuda_kernels_compile_for_gpu():
    outside_simulator(_compile_cuda_kernels)


ERRORS = [
    (lambda: nbops.add(make((2, 3)), make((4,))), ValueError, "add"),
    (lambda: nbops.add([1.0], make((2,))), TypeError, "add"),
    (lambda: nbops.add(make((2,)), "x"), TypeError, "add"),
    (lambda: nbops.add(make((2,)).astype(np.float16), 1.0), TypeError, "add"),
    (lambda: nbops.add(make_int((2,), 0, 3), make_int((2,), 0, 3), alpha=2.5), TypeError, "alpha"),
    (lambda: nbops.add(make((2,)), make((2,)), alpha=True), TypeError, "alpha"),
    (lambda: nbops.sub(np.array([True]), np.array([True])), TypeError, "sub"),
    (lambda: nbops.sub(make((2,)), True), TypeError, "sub"),
    (lambda: nbops.div(make((2,)), 2.0, rounding_mode="round"), ValueError, "rounding_mode"),
    (lambda: nbops.div(np.array([1, 2]), np.array([1, 0]), rounding_mode="floor"), ZeroDivisionError, "div"),
    (lambda: nbops.div(np.array([1, 2]), 0, rounding_mode="trunc"), ZeroDivisionError, "div"),
    (lambda: nbops.div(np.array([True]), np.array([True]), rounding_mode="floor"), TypeError, "div"),
    (lambda: nbops.pow(np.array([2, 3]), -1), ValueError, "negative"),
    (lambda: nbops.pow(np.array([True]), np.array([True])), TypeError, "pow"),
    (lambda: nbops.pow(2, 3), TypeError, "pow"),
    (lambda: nbops.maximum(make((2,)), 1.0), TypeError, "maximum"),
    (lambda: nbops.minimum(make((2, 3)), make((3, 2))), ValueError, "minimum"),
    (lambda: nbops.abs(np.array([True])), TypeError, "abs"),
    (lambda: nbops.neg(np.array([True])), TypeError, "neg"),
    (lambda: nbops.exp(make((2,)).astype(np.complex64)), TypeError, "exp"),
    (lambda: nbops.where(make((2,)), make((2,)), 0.0), TypeError, "condition"),
    (lambda: nbops.where(np.array([True, False]), make((3,)), 0.0), ValueError, "where"),
    (lambda: nbops.clamp(make((2,))), ValueError, "clamp"),
    (lambda: nbops.clamp(np.array([True]), min=False), TypeError, "bool"),
    (lambda: nbops.clamp(np.array([True]), min=np.array([False]), max=np.array([True])), TypeError, "bool"),
    (lambda: nbops.clamp(make((2,)), min=make((3,))), ValueError, "clamp"),
    (lambda: nbops.add(make((2,)), 1j), TypeError, "add"),
]


@pytest.mark.parametrize("case", range(len(ERRORS)))
def test_errors(case):
    fn, exc, match = ERRORS[case]
    with pytest.raises(exc, match=match):
        fn()


@pytest.mark.cuda
def test_mixed_targets_raise():
    with pytest.raises(ValueError, match="add"):
        nbops.add(make((2,)), to_target(make((2,)), "cuda"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_unary_fast_path_matches_the_general_path(dtype, monkeypatch):
    """A plain NumPy float array skips the general path of sqrt, exp, log, abs and neg (ops/pointwise.py
    ``_unary``): no ``Call`` is made, and the values equal the general path's (torch tensors in take it) bit for
    bit, NaN from negative inputs included; empty and 0-d arrays too. Integer and strided inputs keep the general
    path."""
    from nbops.ops import pointwise as ops

    fns = [nbops.sqrt, nbops.exp, nbops.log, nbops.abs, nbops.neg]
    arrays = [make((5, 7), dtype, seed=1, scale=3), make((3, 20000), dtype, seed=2), make((), dtype, seed=3),
              make((0, 4), dtype, seed=4)]
    general = {(f, i): f(torch.from_numpy(a)).numpy() for f in fns for i, a in enumerate(arrays)}

    def no_call(*args, **kwargs):
        raise AssertionError("the general path ran")

    with monkeypatch.context() as m:
        m.setattr(ops, "Call", no_call)
        for (f, i), ref in general.items():
            fast = f(arrays[i])
            assert type(fast) is np.ndarray and fast.dtype == ref.dtype == dtype and fast.shape == ref.shape
            assert np.array_equal(fast, ref, equal_nan=True), (f.__name__, arrays[i].shape)
        for a in (make_int((4, 5), -9, 9, np.int32, 5), make((4, 6), dtype, seed=6)[:, ::2]):
            with pytest.raises(AssertionError, match="general path ran"):
                nbops.exp(a)
    check(nbops.exp, torch.exp, "cpu", make_int((4, 5), -9, 9, np.int32, 5))
    check(nbops.sqrt, torch.sqrt, "cpu", make((4, 6), dtype, seed=6, offset=3)[:, ::2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_fast_path_matches_the_general_path(dtype):
    """Plain NumPy float operands of one dtype and shape, or an array and a Python number, skip the general path
    (ops/pointwise.py ``_fast``): same launcher, same operands, so the values are identical to the general path's
    (torch tensors in take it); every other call still gets the general path's promotion and checks."""
    from nbops.ops import pointwise as ops

    x, y = make((5, 7), dtype, seed=1), make((5, 7), dtype, seed=2)
    x0, y0, e = make((), dtype, seed=3), make((), dtype, seed=4), make((0, 3), dtype, seed=5)
    calls = [(nbops.add, (x, y), {}), (nbops.add, (x, y), {"alpha": 2.5}), (nbops.add, (x, 3), {}),
             (nbops.sub, (x, y), {"alpha": -2}), (nbops.sub, (x, 0.1), {}), (nbops.mul, (x, y), {}),
             (nbops.mul, (x, 1e30), {}), (nbops.div, (x, y), {}), (nbops.div, (x, 7), {}), (nbops.add, (x0, y0), {}),
             (nbops.mul, (e, e), {})]
    for fn, args, kw in calls:
        alpha = -kw.get("alpha", 1) if fn is nbops.sub else kw.get("alpha", 1)
        assert ops._fast(fn.__name__, fn.__name__ if fn is not nbops.sub else "add", *args, alpha) is not None
        fast = fn(*args, **kw)
        general = fn(*(torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args), **kw).numpy()
        assert fast.dtype == general.dtype == dtype and fast.shape == general.shape
        assert np.array_equal(fast, general, equal_nan=True), (fn.__name__, args[1:], kw)
    other = np.float32 if dtype == np.float64 else np.float64
    for a, b, alpha in [(x, y.astype(other), 1), (x, y[0], 1), (x, True, 1), (x, y, True), (x, y.T, 1), (3, x, 1)]:
        assert ops._fast("add", "add", a, b, alpha) is None
    check(nbops.add, torch.add, "cpu", x, y.astype(other))
    check(nbops.add, torch.add, "cpu", x, y[0])
    with pytest.raises(TypeError, match=r"add\(\): a boolean 'alpha'"):
        nbops.add(x, y, alpha=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_clamp_and_where_fast_paths_match_the_general_path(dtype):
    """Plain NumPy clamp (number bounds) and where (arrays of the condition's shape, or one number) skip the general
    path (``_fast_clamp``, ``_fast_where``): the same operands through the same launchers, so the values equal the
    general path's (torch tensors in take it), NaN included; broadcasting, bools and mixed dtypes keep it."""
    from nbops.ops import pointwise as ops

    x, y = make((5, 7), dtype, seed=1), make((5, 7), dtype, seed=2)
    x[1, 2] = np.nan
    c = make((5, 7), np.float32, seed=3) > 0
    T = torch.from_numpy
    for lo, hi in [(-0.5, 0.5), (None, 0), (-1, None), (1.0, -1.0), (-1e40, 1e40)]:
        assert ops._fast_clamp(x, lo, hi) is not None
        fast, general = nbops.clamp(x, lo, hi), nbops.clamp(T(x), lo, hi).numpy()
        assert fast.dtype == general.dtype == dtype and np.array_equal(fast, general, equal_nan=True), (lo, hi)
    for a, b in [(x, y), (x, 0.0), (-2, y), (x, 7)]:
        assert ops._fast_where(c, a, b) is not None
        fast = nbops.where(c, a, b)
        general = nbops.where(T(c), *(T(v) if isinstance(v, np.ndarray) else v for v in (a, b))).numpy()
        assert fast.dtype == general.dtype == dtype and np.array_equal(fast, general, equal_nan=True)
    other = np.float32 if dtype == np.float64 else np.float64
    for args in [(x, None, None), (x, True, None), (x, np.float32(1), None), (x, y, None), (x.T, 0, 1),
                 (x.astype(np.int32), 0, 1), (3.0, 0, 1)]:
        assert ops._fast_clamp(*args) is None
    for args in [(c, x, y[0]), (c, x, y.astype(other)), (c, 1.0, 2.0), (c.astype(np.uint8), x, y), (c.T, x.T, y.T),
                 (c, x, True), (c[0], x[0], np.float32(0)), (c, x.astype(np.int64), 0)]:
        assert ops._fast_where(*args) is None
    check(nbops.where, torch.where, "cpu", c, x, y[0])
    with pytest.raises(ValueError, match=r"clamp\(\): at least one"):
        nbops.clamp(x)
