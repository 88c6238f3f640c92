"""torch semantics a torch user relies on across families (issue 17): a Python number as the first operand of a
binary op, dtype promotion of mixed inputs in cat/stack (float16 and bfloat16 inputs included), and what the norm,
pooling and reduction families return (or raise) for empty and degenerate inputs. Every case compares with torch's
own call, result dtype included, on cpu and on the CUDA simulator."""

import numpy as np
import pytest
import torch

import nbops
from helpers import TARGETS, assert_same, check, make, make_int, to_numpy, to_target

# the CUDA simulator runs kernels as NumPy scalar code, which warns where integers wrap and where inf arises
pytestmark = [pytest.mark.filterwarnings(f"ignore:{m}:RuntimeWarning")
              for m in ("overflow encountered", "invalid value encountered", "divide by zero encountered")]

ALL_DTYPES = [np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.bool_]


def _array(shape, dtype, seed, nonzero=False):
    """Fresh random data of ``dtype``: normal floats, small integers (never 0 when ``nonzero``: divisors), bools."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return make(shape, dtype, seed)
    if dtype == np.bool_:
        return np.ones(shape, np.bool_) if nonzero else make_int(shape, 0, 2, np.int64, seed).astype(np.bool_)
    low = 0 if dtype.kind == "u" else -5
    x = make_int(shape, low, 6, dtype, seed)
    if nonzero:
        x[x == 0] = 3
    return x


def _same_outcome(nb_fn, torch_fn, target, *args, **kwargs):
    """torch's result (shape, dtype, values) when torch accepts the call; an error naming the op when it refuses."""
    try:
        torch_fn(*[torch.from_numpy(np.array(a)) if isinstance(a, np.ndarray) else a for a in args], **kwargs)
    except (RuntimeError, TypeError, ValueError, ZeroDivisionError):
        with pytest.raises((TypeError, ValueError, ZeroDivisionError), match=nb_fn.__name__):
            nb_fn(*[to_target(a, target) for a in args], **kwargs)
        return
    check(nb_fn, torch_fn, target, *args, **kwargs)


# ------------------------------------------------------------------------------------- a number as the first operand
NUMBER_FIRST = [  # (nbops op, torch op, keyword arguments)
    (nbops.add, torch.add, {}),
    (nbops.add, torch.add, {"alpha": 2}),
    (nbops.sub, torch.sub, {}),
    (nbops.sub, torch.sub, {"alpha": -3}),
    (nbops.mul, torch.mul, {}),
    (nbops.div, torch.div, {}),
    (nbops.div, torch.div, {"rounding_mode": "trunc"}),
    (nbops.div, torch.div, {"rounding_mode": "floor"}),
    (nbops.pow, torch.pow, {}),
]
# (number, shape, layout): each number kind on a 2-D non-contiguous array and on a 0-d array, then size 1 and empty
NUMBER_OPERANDS = [(n, shape, layout) for n in (3, -2.5, True) for shape, layout in (((3, 4), "strided"), ((), None))]
NUMBER_OPERANDS += [(-7, (1,), None), (0.5, (0, 3), None)]


# every dtype on cpu; on the (slow) simulator one of each kind of integer
DTYPE_TARGETS = [(np.dtype(d), "cpu") for d in ALL_DTYPES] + [
    pytest.param(np.dtype(d), "cuda", marks=pytest.mark.cuda) for d in (np.float32, np.float64, np.int32, np.uint8,
                                                                         np.bool_)]


@pytest.mark.parametrize("dtype, target", DTYPE_TARGETS, ids=str)
@pytest.mark.parametrize("case", NUMBER_FIRST, ids=lambda c: f"{c[0].__name__}{c[2] or ''}")
def test_number_as_first_operand(case, dtype, target):
    nb_fn, torch_fn, kwargs = case
    for i, (number, shape, layout) in enumerate(NUMBER_OPERANDS):
        x = _array(shape[:-1] + (2 * shape[-1],) if layout else shape, dtype, i, nonzero=True)
        x = x[..., ::2] if layout else x
        if nb_fn is nbops.pow and np.dtype(dtype).kind in "iu":
            x = np.abs(x)  # an integer number to a negative integer power: torch gives 1 / x truncated, tested apart
        _same_outcome(nb_fn, torch_fn, target, number, x, **kwargs)


@pytest.mark.parametrize("target", TARGETS)
def test_number_first_promotes_by_torch_rules(target):
    """The number is a 0-d operand of the lowest priority: it only raises the category (int -> float)."""
    check(nbops.add, torch.add, target, 2.0, np.array([1, 2], np.int32))
    check(nbops.mul, torch.mul, target, 0.5, np.array([1, 2], np.uint8))
    check(nbops.add, torch.add, target, 1000, np.array([1, 2], np.int8))  # wraps, as torch's cast of the number
    check(nbops.sub, torch.sub, target, 1, np.array([1.5, 2.5], np.float64))
    check(nbops.div, torch.div, target, 1.0, np.array([0.0, -0.0, 2.0], np.float32))
    check(nbops.add, torch.add, target, 2, np.array(1.5, np.float64))  # 0-d array and number: the array's dtype
    check(nbops.mul, torch.mul, target, True, np.array([4, 5], np.int16))
    check(nbops.add, torch.add, target, 1e4, make((4, 3), np.float32, 2, offset=1e4))


def test_number_first_keeps_the_array_kind():
    t = torch.randn(3, 2)
    out = nbops.sub(1.0, t, alpha=2)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, torch.sub(1.0, t, alpha=2))


@pytest.mark.parametrize("fn", [nbops.add, nbops.sub, nbops.mul, nbops.div, nbops.pow])
def test_two_numbers_raise(fn):
    with pytest.raises(TypeError, match=rf"{fn.__name__}\(\): at least one of"):
        fn(2, 3)


# ------------------------------------------------------------------------------------ mixed dtypes in cat and stack
TORCH_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.int16, torch.int32,
                torch.int64, torch.uint8, torch.bool]
_SUPPORTED = {torch.float32, torch.float64, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool}


def _torch_data(shape, dtype, seed):
    """Random values of torch ``dtype``: normals (NaN and inf among them for floats), small integers, bools."""
    x = torch.from_numpy(make(shape, np.float64, seed) * 4)
    if dtype.is_floating_point:
        x.view(-1)[:2] = torch.tensor([float("nan"), float("-inf")])[: x.numel()]
    return x.to(dtype)


@pytest.mark.parametrize("first", TORCH_DTYPES, ids=str)
def test_cat_stack_promote_every_dtype_pair_cpu(first):
    """torch tensors of every pair of dtypes (bfloat16 has no NumPy view: it comes in as its int16 bits); the result
    has torch's promoted dtype, or is a TypeError naming that dtype when nbops does not compute in it."""
    for second in TORCH_DTYPES:
        a, b = _torch_data((2, 3), first, 1), _torch_data((3, 2), second, 2).t()  # b non-contiguous
        want = torch.promote_types(first, second)
        if want not in _SUPPORTED:
            name = str(want).removeprefix("torch.")
            for fn in (nbops.cat, nbops.stack):
                with pytest.raises(TypeError, match=rf"{fn.__name__}\(\): the result dtype {name} "):
                    fn([a, b])
            continue
        for nb_fn, torch_fn, dim in ((nbops.cat, torch.cat, 1), (nbops.stack, torch.stack, -1)):
            out = nb_fn([a, b], dim)
            assert isinstance(out, torch.Tensor)
            assert_same(out, torch_fn([a, b], dim))


CAT_MIXES = [  # dtypes of the inputs, in order: NumPy arrays, so float16 but no bfloat16
    (np.float32, np.float64),
    (np.float16, np.float32),
    (np.float64, np.float16, np.int32),
    (np.int32, np.float32),
    (np.uint8, np.int8),
    (np.bool_, np.int16, np.bool_),
    (np.int64, np.bool_),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtypes", CAT_MIXES, ids=lambda ds: "-".join(np.dtype(d).name for d in ds))
def test_cat_stack_mixed_dtypes(dtypes, target):
    xs = [_array((2, 3), d, i) for i, d in enumerate(dtypes)]
    xs[0] = _array((3, 2), dtypes[0], 9).T  # non-contiguous
    for d in (0, 1, -1):
        check(nbops.cat, torch.cat, target, xs, d)
    check(nbops.stack, torch.stack, target, xs, 2)
    check(nbops.cat, torch.cat, target, [_array((0, 3), dtypes[-1], 1), xs[-1]])  # an empty input
    check(nbops.stack, torch.stack, target, [_array((), d, i) for i, d in enumerate(dtypes)])  # 0-d inputs


@pytest.mark.parametrize("target", TARGETS)
def test_cat_half_only_result_raises(target):
    for dtypes in ((np.float16, np.float16), (np.float16, np.int64), (np.bool_, np.float16)):
        xs = [to_target(_array((2,), d, i), target) for i, d in enumerate(dtypes)]
        with pytest.raises(TypeError, match=r"cat\(\): the result dtype float16 .* supported: float32"):
            nbops.cat(xs)


@pytest.mark.parametrize("target", TARGETS)
def test_bfloat16_bits_to_float32(target):
    """The bfloat16 conversion on each target (the cuda one is what a CUDA bfloat16 torch tensor takes): int16 bits
    of random values, -0.0, subnormals, inf and NaN, in a non-contiguous 2-D array and a 0-d one."""
    from nbops._dispatch import Call
    from nbops.ops.shape import _bfloat16_to_float32

    values = torch.from_numpy(make((4, 6), np.float64, 3) * 100)
    values.view(-1)[:5] = torch.tensor([-0.0, 1e-40, float("inf"), float("-inf"), float("nan")], dtype=torch.float64)
    bf16 = values.to(torch.bfloat16)
    bits = bf16.view(torch.int16).numpy()
    for b, want in ((bits[:, ::2], bf16[:, ::2]), (bits[1, 1], bf16[1, 1])):
        x = to_target(np.asarray(b), target)
        call = Call("cat", tensors=x)
        got = to_numpy(_bfloat16_to_float32(call, call["tensors"]))
        assert got.dtype == np.float32
        assert_same(got, want.float(), rtol=0, atol=0)
        assert np.array_equal(np.signbit(got), np.signbit(want.float().numpy()))
