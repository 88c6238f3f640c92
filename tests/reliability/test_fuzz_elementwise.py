"""Property-based parity with torch for the activation and pointwise families: random ranks (0-4) and sizes (0-6),
permuted and sliced views, float32/float64, NaN/inf/-0.0/denormal salt and large offsets, random parameters within
torch's valid ranges."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import strategies as st

import nbops
from helpers import TARGETS, check
from strategies import DTYPES, arrays, run, shapes

UNARY_ACT = ["relu", "relu6", "selu", "silu", "mish", "sigmoid", "tanh", "hardsigmoid", "hardswish", "softsign"]


@st.composite
def activation_case(draw, target):
    dtype = draw(st.sampled_from(DTYPES))
    op = draw(st.sampled_from(UNARY_ACT + ["leaky_relu", "elu", "celu", "hardtanh", "softplus", "gelu", "glu",
                                           "prelu", "softmax", "log_softmax"]))
    min_rank = 1 if op in ("glu", "softmax", "log_softmax", "prelu") else 0
    shape = list(draw(shapes(target, min_rank)))
    kw, extra = {}, ()
    if op == "leaky_relu":
        kw["negative_slope"] = draw(st.floats(-2, 2))
    elif op in ("elu", "celu"):
        kw["alpha"] = draw(st.floats(0.1, 3))
    elif op == "hardtanh":
        lo = draw(st.floats(-3, 2))
        kw.update(min_val=lo, max_val=lo + draw(st.floats(0, 3)))
    elif op == "softplus":
        kw.update(beta=draw(st.floats(0.25, 4)), threshold=draw(st.floats(0.5, 30)))
    elif op == "gelu":
        kw["approximate"] = draw(st.sampled_from(["none", "tanh"]))
    elif op == "glu":
        d = draw(st.integers(-len(shape), len(shape) - 1))
        shape[d] = 2 * draw(st.integers(0, 3))
        kw["dim"] = d
    elif op in ("softmax", "log_softmax"):
        kw["dim"] = draw(st.integers(-len(shape), len(shape) - 1))
    elif op == "prelu":
        n = shape[1] if len(shape) > 1 else 1
        extra = (draw(arrays((draw(st.sampled_from([1, n])),), dtype, special=False, offset=False)),)
    x = draw(arrays(shape, dtype))
    return op, x, extra, kw


@pytest.mark.parametrize("target", TARGETS)
def test_activation(target, pytestconfig):
    def prop(case):
        op, x, extra, kw = case
        ref = getattr(F, op) if hasattr(F, op) else getattr(torch, op)
        check(getattr(nbops, op), ref, target, x, *extra, **kw)

    run("activation", target, 60, activation_case(target), prop, pytestconfig)


def _broadcast_partner(draw, shape):
    """A shape that broadcasts with ``shape``: some leading dims dropped, some dims set to 1."""
    keep = draw(st.integers(0, len(shape)))
    out = list(shape[len(shape) - keep:])
    return tuple(1 if draw(st.booleans()) else s for s in out)


@st.composite
def pointwise_case(draw, target):
    dtype = draw(st.sampled_from(DTYPES))
    op = draw(st.sampled_from(["add", "sub", "mul", "div", "pow", "maximum", "minimum", "sqrt", "exp", "log", "abs",
                               "neg", "where", "clamp"]))
    shape = draw(shapes(target))
    other = _broadcast_partner(draw, shape)
    if draw(st.booleans()):
        shape, other = other, shape
    x = draw(arrays(shape, dtype))
    y = draw(arrays(other, dtype))
    if op in ("add", "sub"):
        return op, (x, y), {"alpha": draw(st.sampled_from([1, 2, -0.5]))}
    if op == "div":
        return op, (x, y), {"rounding_mode": draw(st.sampled_from([None, "trunc", "floor"]))}
    if op in ("mul", "maximum", "minimum"):
        return op, (x, y), {}
    if op == "pow":
        y = y if draw(st.booleans()) else draw(st.sampled_from([2, 3, 0.5, -1, 0]))
        return op, (x, y), {}
    if op == "where":
        cond = np.asarray(draw(arrays(other, np.float64, special=False, offset=False)) > 0)
        return op, (cond, x, y), {}
    if op == "clamp":
        lo = draw(st.sampled_from([None, -0.5, y]))
        hi = draw(st.sampled_from([None, np.asarray(y + 1)] if lo is y else [0.7, None]))
        if lo is None and hi is None:
            hi = 1.0
        return op, (x,), {"min": lo, "max": hi}
    return op, (x,), {}


@pytest.mark.parametrize("target", TARGETS)
def test_pointwise(target, pytestconfig):
    def prop(case):
        op, args, kw = case
        check(getattr(nbops, op), getattr(torch, op), target, *args, **kw)

    run("pointwise", target, 60, pointwise_case(target), prop, pytestconfig)
