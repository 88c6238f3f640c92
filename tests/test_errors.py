"""Bad input, op by op, driven by the registry: every public op needs a valid sample call here, and each sample is
then broken in the ways every op must answer clearly (a non-array, float16, complex, mixed targets), with an error
of the right type whose message names the op. Family-specific bad input (shapes, parameters, dims, indices) is
tested in each family's test file."""

import re

import numpy as np
import pytest

import nbops
from nbops._dispatch import PUBLIC_OPS
from helpers import make, make_int, to_target


def f32(*shape, seed=0):
    return make(shape, np.float32, seed)


def _norm_sample():
    return (f32(4, 3, 5), f32(3), f32(3, seed=1) ** 2 + 1), {"training": True}


def _switch_norm_sample():
    C = 3
    return (f32(2, C, 4, 4), f32(C), f32(C, seed=1), f32(3, seed=2), f32(3, seed=3), f32(C, seed=4),
            f32(C, seed=5) ** 2 + 1), {}


# op -> () -> (args, kwargs): a valid call whose first argument is the op's main array
SAMPLES = {
    **{n: (lambda: ((f32(3, 5),), {})) for n in [
        "abs", "exp", "log", "neg", "sqrt", "sigmoid", "tanh", "relu", "relu6", "leaky_relu", "elu", "selu", "celu",
        "gelu", "silu", "mish", "hardtanh", "hardsigmoid", "hardswish", "softplus", "softsign", "contiguous",
        "sum", "mean", "prod", "var", "std", "var_mean", "std_mean", "max", "min", "amax", "amin", "argmax", "argmin",
        "dropout", "alpha_dropout", "flatten"]},
    **{n: (lambda: ((f32(3, 5), f32(3, 5, seed=1)), {})) for n in ["add", "sub", "mul", "div", "maximum", "minimum"]},
    "pow": lambda: ((f32(3, 5) ** 2, f32(3, 5, seed=1)), {}),
    "clamp": lambda: ((f32(3, 5), f32(3, 5, seed=1) - 1, f32(3, 5, seed=2) + 1), {}),
    "where": lambda: ((f32(3, 5) > 0, f32(3, 5, seed=1), f32(3, 5, seed=2)), {}),
    "glu": lambda: ((f32(3, 4),), {}),
    "prelu": lambda: ((f32(2, 3, 4), f32(3, seed=1)), {}),
    "softmax": lambda: ((f32(3, 5),), {"dim": 1}),
    "log_softmax": lambda: ((f32(3, 5),), {"dim": 1}),
    "logsumexp": lambda: ((f32(3, 5),), {"dim": 1}),
    "reshape": lambda: ((f32(3, 4), (4, 3)), {}),
    "view": lambda: ((f32(3, 4), 4, 3), {}),
    "permute": lambda: ((f32(2, 3, 4), (2, 0, 1)), {}),
    "transpose": lambda: ((f32(3, 4), 0, 1), {}),
    "squeeze": lambda: ((f32(3, 1, 4),), {}),
    "unsqueeze": lambda: ((f32(3, 4), 1), {}),
    "cat": lambda: (([f32(2, 3), f32(4, 3, seed=1)],), {}),
    "stack": lambda: (([f32(2, 3), f32(2, 3, seed=1)],), {}),
    "expand": lambda: ((f32(3, 1), 3, 4), {}),
    "split": lambda: ((f32(5, 3), 2), {}),
    "chunk": lambda: ((f32(5, 3), 2), {}),
    "narrow": lambda: ((f32(5, 3), 0, 1, 2), {}),
    "matmul": lambda: ((f32(3, 4), f32(4, 5, seed=1)), {}),
    "mm": lambda: ((f32(3, 4), f32(4, 5, seed=1)), {}),
    "bmm": lambda: ((f32(2, 3, 4), f32(2, 4, 5, seed=1)), {}),
    "linear": lambda: ((f32(3, 4), f32(5, 4, seed=1), f32(5, seed=2)), {}),
    "addmm": lambda: ((f32(3, 5), f32(3, 4, seed=1), f32(4, 5, seed=2)), {}),
    "baddbmm": lambda: ((f32(2, 3, 5), f32(2, 3, 4, seed=1), f32(2, 4, 5, seed=2)), {}),
    "conv1d": lambda: ((f32(2, 3, 9), f32(4, 3, 3, seed=1), f32(4, seed=2)), {}),
    "conv2d": lambda: ((f32(2, 3, 7, 6), f32(4, 3, 3, 3, seed=1), f32(4, seed=2)), {}),
    "conv_transpose1d": lambda: ((f32(2, 3, 7), f32(3, 4, 3, seed=1), f32(4, seed=2)), {"stride": 2}),
    "conv_transpose2d": lambda: ((f32(2, 3, 5, 4), f32(3, 4, 3, 3, seed=1), f32(4, seed=2)), {"stride": 2}),
    "batch_norm": _norm_sample,
    "instance_norm": lambda: ((f32(2, 3, 6),), {}),
    "layer_norm": lambda: ((f32(3, 5), (5,), f32(5, seed=1), f32(5, seed=2)), {}),
    "group_norm": lambda: ((f32(2, 4, 5), 2, f32(4, seed=1), f32(4, seed=2)), {}),
    "rms_norm": lambda: ((f32(3, 5), (5,), f32(5, seed=1)), {}),
    "dyt": lambda: ((f32(3, 5), 0.5, f32(5, seed=1), f32(5, seed=2)), {}),
    "deep_norm": lambda: ((f32(3, 5), f32(3, 5, seed=1), 2.0, (5,)), {}),
    "switch_norm": _switch_norm_sample,
    "max_pool1d": lambda: ((f32(2, 3, 9), 3), {}),
    "max_pool2d": lambda: ((f32(2, 3, 7, 6), 3), {}),
    "avg_pool1d": lambda: ((f32(2, 3, 9), 3), {}),
    "avg_pool2d": lambda: ((f32(2, 3, 7, 6), 3), {}),
    "adaptive_avg_pool1d": lambda: ((f32(2, 3, 9), 4), {}),
    "adaptive_avg_pool2d": lambda: ((f32(2, 3, 7, 6), 3), {}),
    "adaptive_max_pool1d": lambda: ((f32(2, 3, 9), 4), {}),
    "adaptive_max_pool2d": lambda: ((f32(2, 3, 7, 6), 3), {}),
    "dropout1d": lambda: ((f32(2, 3, 5),), {}),
    "dropout2d": lambda: ((f32(2, 3, 4, 4),), {}),
    "dropout3d": lambda: ((f32(2, 3, 2, 2, 2),), {}),
    "embedding": lambda: ((make_int((3, 4), 0, 10), f32(10, 6)), {}),
}
# ops whose main argument is not a float array (its dtype is checked in the family's tests instead)
NON_FLOAT_FIRST = {"where", "embedding"}
# ops that take any dtype torch stores (shape ops move data, they do not compute with it)
ANY_DTYPE = {"reshape", "view", "permute", "transpose", "squeeze", "unsqueeze", "cat", "stack", "expand", "flatten",
             "split", "chunk", "narrow", "contiguous"}
# public helpers that take no array at all
NO_ARRAY = {"deep_norm_coefficients"}
OPS = sorted(n for n in PUBLIC_OPS if n not in NO_ARRAY)


def _sample(name):
    return SAMPLES[name]()


def _replace_first(args, value):
    if isinstance(args[0], list):
        return ([value] + args[0][1:],) + tuple(args[1:])
    return (value,) + tuple(args[1:])


def _first_array(args):
    return args[0][0] if isinstance(args[0], list) else args[0]


def _raises(exc, name, fn, *args, **kwargs):
    with pytest.raises(exc, match=rf"(^|\W){re.escape(name)}\(\)"):
        fn(*args, **kwargs)


def test_every_public_op_has_a_sample():
    assert set(OPS) <= set(SAMPLES), sorted(set(OPS) - set(SAMPLES))


@pytest.mark.parametrize("name", OPS)
def test_sample_is_valid(name):
    args, kwargs = _sample(name)
    getattr(nbops, name)(*args, **kwargs)


@pytest.mark.parametrize("bad", [[[1.0, 2.0]], "text", {"a": 1}])
@pytest.mark.parametrize("name", OPS)
def test_non_array_main_argument_raises_type_error(name, bad):
    args, kwargs = _sample(name)
    _raises(TypeError, name, getattr(nbops, name), *_replace_first(args, bad), **kwargs)


BAD_DTYPES = [np.dtype(np.float16), np.dtype(np.complex64), np.dtype(object)]
DTYPE_CELLS = [(n, d) for n in OPS if n not in NON_FLOAT_FIRST for d in BAD_DTYPES
               if n not in ANY_DTYPE or d == np.dtype(object)]


@pytest.mark.parametrize("name, dtype", DTYPE_CELLS)
def test_unsupported_dtype_raises_type_error(name, dtype):
    args, kwargs = _sample(name)
    bad = _first_array(args).astype(dtype)
    _raises(TypeError, name, getattr(nbops, name), *_replace_first(args, bad), **kwargs)


def _array_count(args, kwargs):
    flat = [a for a in args for a in (a if isinstance(a, list) else [a])] + list(kwargs.values())
    return sum(isinstance(a, np.ndarray) for a in flat)


@pytest.mark.cuda
@pytest.mark.parametrize("name", [n for n in OPS if _array_count(*SAMPLES[n]()) >= 2])
def test_mixed_targets_raise_value_error(name):
    args, kwargs = _sample(name)
    first = to_target(_first_array(args), "cuda")
    _raises(ValueError, name, getattr(nbops, name), *_replace_first(args, first), **kwargs)
