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
