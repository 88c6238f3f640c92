"""Activation functions, softmax and log_softmax. Mirrors :mod:`torch.nn.functional`'s activations.

Scalar parameters (slopes, alphas, beta, threshold, clamp bounds) are cast to the input's dtype before the kernel
runs, as torch casts them. The CPU kernels evaluate every formula in the input's dtype, as torch's CPU kernels do;
the CUDA kernels evaluate float32 formulas in float64 and round once (see nbops/cuda/activation.py).
"""

import math
import numbers
import warnings

import numpy as np

from .. import _hostpool
from .._dispatch import BOOL_DTYPES, FLOAT_DTYPES, INT_DTYPES, Call, launch_cpu, plain_float_array, public
from .._shapes import normalize_dim
from .pointwise import _as_uint8, _operand, abs, add, div  # noqa: A004

_INPLACE = ("store_strided",)  # the write-back launcher of in-place ops on non-contiguous inputs

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _number(op, name, value):
    """``value`` as a Python float, or a TypeError naming the op and the argument."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{op}(): argument '{name}' must be a real number, got {value!r}")
    return float(value)


def _elementwise(op, launcher, input, inplace=False, integers=None, **consts):
    """The shared path of the elementwise activations: validate, make contiguous, allocate, launch, wrap.

    With ``inplace`` the result lands in the caller's array and the caller's object is returned; a non-contiguous
    input is computed into a contiguous scratch array, then written back through its own strides.

    ``integers`` says what an integer input does, where torch accepts one: ``"float"`` computes in float32 (bool
    too), as torch's sigmoid and tanh do; ``(lo, hi)`` clamps in the input's own dtype (relu, relu6, hardtanh; see
    ``_integer_bounds``). Without it only float32 and float64 are accepted.

    A C-contiguous float32/float64 NumPy array, not in place, goes straight to the launcher: the general path
    would pass it the same operands after checks that cannot fail for it (~2 us of a 9 us call on a small input).
    """
    if not inplace and plain_float_array(input):
        out = _hostpool.empty(input.shape, input.dtype)
        if out.size:
            launch_cpu(op, launcher, out, input, **consts)
        return out
    return _run_elementwise(Call(op, input=input), launcher, input, inplace, integers, **consts)


def _run_elementwise(call, launcher, input, inplace=False, integers=None, **consts):
    """``_elementwise`` for a ``Call`` already made."""
    op = call.op
    allowed = FLOAT_DTYPES if integers is None else FLOAT_DTYPES + INT_DTYPES
    dt = call.check_dtype("input", allowed + BOOL_DTYPES if integers == "float" else allowed)
    src = call["input"]
    if inplace and call.target == "cpu" and not src.flags.writeable:
        raise ValueError(f"{op}(): inplace=True needs a writeable input, got a read-only array")
    if dt.kind != "f" and integers == "float":
        x = call.astype(_as_uint8(call, src) if dt == BOOL_DTYPES[0] else src, np.float32)
    else:
        x = call.contiguous(src)
    clamps = dt.kind in "iu" and integers != "float"
    bounds = _integer_bounds(op, dt, *integers) if clamps else None
    out = x if inplace and x is src else call.empty(x.shape, x.dtype)
    if x.size and clamps:
        call.launch("clamp", out, x, *(_operand(call, name, b, dt) for name, b in zip(("min", "max"), bounds)))
    elif x.size:
        call.launch(launcher, out, x, **consts)
    if not inplace:
        return call.wrap(out)
    if out is not src and out.size:
        call.launch("store_strided", src, out)
    return input


def _integer_bounds(op, dtype, lo, hi):
    """The clamp bounds of relu, relu6 or hardtanh on an integer ``dtype``, as torch casts them: truncated toward
    zero and held to the dtype's range (an infinite bound is the range's end). An unsigned dtype refuses a negative
    lower bound, as torch does (relu's 0 is fine: relu of a uint8 array is the array)."""
    info = np.iinfo(dtype)
    if info.min == 0 and lo < 0:
        raise ValueError(f"{op}(): cannot clamp an unsigned ({dtype}) input to a negative lower bound {lo}")
    return (info.min if lo <= info.min else int(lo)), (info.max if hi >= info.max else int(hi))


@public("activation", kernels=("relu", "clamp", "fill") + _INPLACE)
def relu(input, inplace=False):
    """Applies the rectified linear unit elementwise: ``max(0, x)``; NaN stays NaN.

    Mirrors :func:`torch.nn.functional.relu`.

    Args:
        input: array of any shape.
        inplace: write the result into ``input`` and return it. Default: False.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64, int8/16/32/64, uint8 (integers clamp in their own dtype,
    the bounds truncated toward zero, as torch does).

    >>> import numpy as np, nbops
    >>> nbops.relu(np.array([-1.0, 0.5], dtype=np.float32))
    array([0. , 0.5], dtype=float32)
    """
    return _elementwise("relu", "relu", input, inplace, integers=(0, math.inf))


@public("activation", kernels=("hardtanh", "clamp", "fill") + _INPLACE)
def relu6(input, inplace=False):
    """Applies ``min(max(0, x), 6)`` elementwise; NaN stays NaN.

    Mirrors :func:`torch.nn.functional.relu6`.

    Args:
        input: array of any shape.
        inplace: write the result into ``input`` and return it. Default: False.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64, int8/16/32/64, uint8 (integers clamp in their own dtype,
    the bounds truncated toward zero, as torch does).

    >>> import numpy as np, nbops
    >>> nbops.relu6(np.array([-1.0, 3.0, 7.0], dtype=np.float32))
    array([0., 3., 6.], dtype=float32)
    """
    return _elementwise("relu6", "hardtanh", input, inplace, integers=(0, 6), min_val=0.0, max_val=6.0)


@public("activation", kernels=("hardtanh", "clamp", "fill") + _INPLACE)
def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """Clamps every element to ``[min_val, max_val]``; NaN stays NaN.

    Mirrors :func:`torch.nn.functional.hardtanh`.

    Args:
        input: array of any shape.
        min_val: lower bound. Default: -1.0.
        max_val: upper bound, ``>= min_val``. Default: 1.0.
        inplace: write the result into ``input`` and return it. Default: False.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64, int8/16/32/64, uint8 (integers clamp in their own dtype,
    the bounds truncated toward zero, as torch does).

    >>> import numpy as np, nbops
    >>> nbops.hardtanh(np.array([-2.0, 0.5, 2.0], dtype=np.float32))
    array([-1. ,  0.5,  1. ], dtype=float32)
    """
    lo, hi = _number("hardtanh", "min_val", min_val), _number("hardtanh", "max_val", max_val)
    if lo > hi:
        raise ValueError("hardtanh(): min_val cannot be greater than max_val")
    if lo != lo or hi != hi:  # torch returns all NaN; the kernel's comparisons would silently ignore the bound
        raise ValueError(f"hardtanh(): min_val and max_val must not be NaN, got {min_val} and {max_val}")
    return _elementwise("hardtanh", "hardtanh", input, inplace, integers=(lo, hi), min_val=lo, max_val=hi)


@public("activation", kernels=("leaky_relu",) + _INPLACE)
def leaky_relu(input, negative_slope=0.01, inplace=False):
    """Applies ``x if x > 0 else negative_slope * x`` elementwise.

    Mirrors :func:`torch.nn.functional.leaky_relu`.

    Args:
        input: array of any shape.
        negative_slope: slope for ``x <= 0``. Default: 0.01.
        inplace: write the result into ``input`` and return it. Default: False.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.leaky_relu(np.array([-2.0, 3.0]), negative_slope=0.5)
    array([-1.,  3.])
    """
    slope = _number("leaky_relu", "negative_slope", negative_slope)
    return _elementwise("leaky_relu", "leaky_relu", input, inplace, negative_slope=slope)


@public("activation", kernels=("elu",) + _INPLACE)
def elu(input, alpha=1.0, inplace=False):
    """Applies the exponential linear unit: ``x if x > 0 else alpha * (exp(x) - 1)``.

    Mirrors :func:`torch.nn.functional.elu`.

    Args:
        input: array of any shape.
        alpha: scale of the negative part. Default: 1.0.
        inplace: write the result into ``input`` and return it. Default: False.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.elu(np.array([-1.0, 0.5], dtype=np.float32))
    array([-0.63212055,  0.5       ], dtype=float32)
    """
    a = _number("elu", "alpha", alpha)
    return _elementwise("elu", "elu", input, inplace, alpha=a, scale=1.0, input_scale=1.0)


@public("activation", kernels=("elu",) + _INPLACE)
def selu(input, inplace=False):
    """Applies the scaled ELU: ``scale * (x if x > 0 else alpha * (exp(x) - 1))`` with torch's constants
    (alpha = 1.6732632423543772, scale = 1.0507009873554805).

    Mirrors :func:`torch.nn.functional.selu`.

    Args:
        input: array of any shape.
        inplace: write the result into ``input`` and return it. Default: False.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.selu(np.array([-1.0, 1.0]))
    array([-1.11133074,  1.05070099])
    """
    return _elementwise("selu", "elu", input, inplace, alpha=SELU_ALPHA, scale=SELU_SCALE, input_scale=1.0)


@public("activation", kernels=("elu",) + _INPLACE)
def celu(input, alpha=1.0, inplace=False):
    """Applies the continuously differentiable ELU: ``x if x > 0 else alpha * (exp(x / alpha) - 1)``.

    Mirrors :func:`torch.nn.functional.celu`.

    Args:
        input: array of any shape.
        alpha: scale of the negative part, nonzero. Default: 1.0.
        inplace: write the result into ``input`` and return it. Default: False.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.celu(np.array([-1.0, 1.0]), alpha=2.0)
    array([-0.78693868,  1.        ])
    """
    a = _number("celu", "alpha", alpha)
    if a == 0:
        raise ValueError("celu(): alpha cannot be 0")
    return _elementwise("celu", "elu", input, inplace, alpha=a, scale=1.0, input_scale=1.0 / a)


@public("activation", kernels=("gelu",))
def gelu(input, approximate="none"):
    """Applies the Gaussian error linear unit: ``x * Phi(x)``, exactly (``x/2 * (1 + erf(x/sqrt(2)))``) or with
    the tanh approximation (``x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))``).

    Mirrors :func:`torch.nn.functional.gelu`.

    Args:
        input: array of any shape.
        approximate: ``'none'`` or ``'tanh'``. Default: ``'none'``.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.gelu(np.array([-1.0, 0.5]))
    array([-0.15865525,  0.34573123])
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu(): approximate argument must be either none or tanh, got {approximate!r}")
    return _elementwise("gelu", "gelu", input, approximate=approximate)


@public("activation", kernels=("silu",) + _INPLACE)
def silu(input, inplace=False):
    """Applies the sigmoid linear unit (swish): ``x * sigmoid(x)``.

    Mirrors :func:`torch.nn.functional.silu`.

    Args:
        input: array of any shape.
        inplace: write the result into ``input`` and return it. Default: False.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.silu(np.array([-1.0, 2.0]))
    array([-0.26894142,  1.76159416])
    """
    return _elementwise("silu", "silu", input, inplace)


@public("activation", kernels=("mish",) + _INPLACE)
def mish(input, inplace=False):
    """Applies ``x * tanh(softplus(x))`` elementwise.

    Mirrors :func:`torch.nn.functional.mish`.

    Args:
        input: array of any shape.
        inplace: write the result into ``input`` and return it. Default: False.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.mish(np.array([-1.0, 2.0]))
    array([-0.30340146,  1.94395896])
    """
    return _elementwise("mish", "mish", input, inplace)


@public("activation", kernels=("sigmoid", "copy"))
def sigmoid(input):
    """Applies the logistic function ``1 / (1 + exp(-x))`` elementwise.

    Mirrors :func:`torch.sigmoid` (and :func:`torch.nn.functional.sigmoid`).

    Args:
        input: array of any shape.

    Returns:
        array of ``input``'s shape and dtype (float32 for an integer input); same kind of array and device as
        input.

    Targets: cpu, cuda. Dtypes: float32, float64; integer and bool inputs give float32, as in torch.

    >>> import numpy as np, nbops
    >>> nbops.sigmoid(np.array([0.0, 2.0]))
    array([0.5       , 0.88079708])
    """
    return _elementwise("sigmoid", "sigmoid", input, integers="float")


@public("activation", kernels=("tanh", "copy"))
def tanh(input):
    """Applies the hyperbolic tangent elementwise.

    Mirrors :func:`torch.tanh` (and :func:`torch.nn.functional.tanh`).

    Args:
        input: array of any shape.

    Returns:
        array of ``input``'s shape and dtype (float32 for an integer input); same kind of array and device as
        input.

    Targets: cpu, cuda. Dtypes: float32, float64; integer and bool inputs give float32, as in torch.

    >>> import numpy as np, nbops
    >>> nbops.tanh(np.array([0.0, 1.0]))
    array([0.        , 0.76159416])
    """
    return _elementwise("tanh", "tanh", input, integers="float")


@public("activation", kernels=("hardsigmoid",) + _INPLACE)
def hardsigmoid(input, inplace=False):
    """Applies ``min(max(x + 3, 0), 6) / 6`` elementwise.

    Mirrors :func:`torch.nn.functional.hardsigmoid`.

    Args:
        input: array of any shape.
        inplace: write the result into ``input`` and return it. Default: False.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.hardsigmoid(np.array([-4.0, 0.0, 1.5]))
    array([0.  , 0.5 , 0.75])
    """
    return _elementwise("hardsigmoid", "hardsigmoid", input, inplace)


@public("activation", kernels=("hardswish",) + _INPLACE)
def hardswish(input, inplace=False):
    """Applies ``x * min(max(x + 3, 0), 6) / 6`` elementwise.

    Mirrors :func:`torch.nn.functional.hardswish`.

    Args:
        input: array of any shape.
        inplace: write the result into ``input`` and return it. Default: False.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.hardswish(np.array([-4.0, 1.5, 4.0]))
    array([-0.   ,  1.125,  4.   ])
    """
    return _elementwise("hardswish", "hardswish", input, inplace)


@public("activation", kernels=("softplus",))
def softplus(input, beta=1.0, threshold=20.0):
    """Applies ``log(1 + exp(beta * x)) / beta``, reverting to ``x`` where ``beta * x > threshold``.

    Mirrors :func:`torch.nn.functional.softplus`.

    Args:
        input: array of any shape.
        beta: scale of the input inside the exponential. Default: 1.0.
        threshold: above ``beta * x > threshold`` the result is ``x``. Default: 20.0.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.softplus(np.array([-1.0, 0.0, 30.0]))
    array([ 0.31326169,  0.69314718, 30.        ])
    """
    b, t = _number("softplus", "beta", beta), _number("softplus", "threshold", threshold)
    return _elementwise("softplus", "softplus", input, beta=b, threshold=t)


@public("activation", kernels=("softsign", "pointwise_unary", "pointwise_binary", "copy", "fill"))
def softsign(input):
    """Applies ``x / (1 + |x|)`` elementwise.

    Mirrors :func:`torch.nn.functional.softsign`.

    Args:
        input: array of any shape.

    Returns:
        array of ``input``'s shape and dtype (float32 for an integer input); same kind of array and device as
        input.

    Targets: cpu, cuda. Dtypes: float32, float64; an integer input gives float32, computed as torch computes it
    (``x / (1 + |x|)`` with the sum in the input's dtype).

    >>> import numpy as np, nbops
    >>> nbops.softsign(np.array([-3.0, 1.0]))
    array([-0.75,  0.5 ])
    """
    call = Call("softsign", input=input)
    if call.check_dtype("input", FLOAT_DTYPES + INT_DTYPES).kind != "f":
        # torch computes an integer input by its composite x / (1 + |x|), the sum in the input's dtype (so 255 in
        # uint8 gives inf and -128 in int8 gives 128/127); the same three pointwise ops give the same numbers
        return div(input, add(abs(input), 1))
    return _run_elementwise(call, "softsign", input)


@public("activation", kernels=("glu",))
def glu(input, dim=-1):
    """Applies the gated linear unit: splits ``input`` in halves ``a``, ``b`` along ``dim`` and returns
    ``a * sigmoid(b)``.

    Mirrors :func:`torch.nn.functional.glu`.

    Args:
        input: array with at least one dim; ``input.shape[dim]`` must be even.
        dim: the dim to split. Default: -1.

    Returns:
        array of ``input``'s shape with ``shape[dim]`` halved, ``input``'s dtype; same kind of array and device as
        input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.glu(np.array([1.0, 2.0, 0.0, 100.0]))
    array([0.5, 2. ])
    """
    call = Call("glu", input=input)
    call.check_dtype("input", FLOAT_DTYPES)
    x = call["input"]
    shape = tuple(x.shape)
    if not shape:
        raise ValueError("glu(): glu does not support scalars because halving size must be even")
    d = normalize_dim("glu", dim, len(shape))
    if shape[d] % 2:
        raise ValueError(f"glu(): Halving dimension must be even, but dimension {d} is size {shape[d]}")
    out_shape = shape[:d] + (shape[d] // 2,) + shape[d + 1:]
    out = call.empty(out_shape, x.dtype)
    if out.size:
        O = math.prod(shape[:d])
        L = (shape[d] // 2) * math.prod(shape[d + 1:])
        x = call.contiguous(x)
        call.launch("glu", out.reshape(O, L), x.reshape(O, 2, L))
    return call.wrap(out)


@public("activation", kernels=("prelu",))
def prelu(input, weight):
    """Applies ``x if x > 0 else weight[c] * x``, with one learnable slope per channel (dim 1) or one for all.

    Mirrors :func:`torch.nn.functional.prelu`.

    Args:
        input: array of any shape; dim 1 is the channel dim (an input of fewer than 2 dims has one channel).
        weight: 0-D or 1-D array of 1 or ``C`` slopes, ``input``'s dtype.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.prelu(np.array([[-1.0, 2.0], [-3.0, 4.0]]), np.array([0.25, 0.5]))
    array([[-0.25,  2.  ],
           [-0.75,  4.  ]])
    """
    call = Call("prelu", input=input, weight=weight)
    dt = call.check_dtype("input", FLOAT_DTYPES)
    wdt = call.check_dtype("weight", FLOAT_DTYPES)
    if wdt != dt:
        raise TypeError(f"prelu(): weight has dtype {wdt} but input has dtype {dt}; type promotion is not supported")
    x, w = call["input"], call["weight"]
    if len(w.shape) > 1:
        raise ValueError(f"prelu(): expected weight to be a scalar or 1-D array, got {len(w.shape)}-D")
    shape = tuple(x.shape)
    C = shape[1] if len(shape) >= 2 else 1
    P = math.prod(w.shape)
    if P != 1 and P != C:
        raise ValueError(
            f"prelu(): Mismatch of parameter numbers and input channel size. Found parameter numbers = {P} and "
            f"channel size = {C}."
        )
    out = call.empty(shape, dt)
    if out.size:
        x, w = call.contiguous(x), call.contiguous(w).reshape(P)
        if P == 1:
            dims = (1, 1, math.prod(shape))
        else:
            dims = (shape[0], C, math.prod(shape[2:]))
        call.launch("prelu", out.reshape(dims), x.reshape(dims), w)
    return call.wrap(out)


def _softmax_dim(op, ndim, stacklevel):
    """torch's legacy choice when ``dim`` is None: 0 for 0-, 1- and 3-D inputs, else 1; warns as torch does."""
    warnings.warn(
        f"Implicit dimension choice for {op} has been deprecated. Change the call to include dim=X as an argument.",
        UserWarning,
        stacklevel=stacklevel,
    )
    return 0 if ndim in (0, 1, 3) else 1


def _dtype_arg(op, dtype):
    """A NumPy or torch dtype as a NumPy dtype, or a TypeError naming the op."""
    try:
        return np.dtype(str(dtype).replace("torch.", "") if type(dtype).__module__ == "torch" else dtype)
    except TypeError:
        raise TypeError(f"{op}(): argument 'dtype' must be a dtype, got {dtype!r}") from None


def _fast_softmax(op, input, dim):
    """The common CPU call without the general path: a C-contiguous float32/float64 NumPy array of rank 1 or more
    and an int ``dim`` in range, no ``dtype``: the same launcher and views as the general path, without its
    argument objects and checks (4 us of a 9 us call on a small input). Returns the result, or None for any other
    call, which then takes the general path."""
    if not plain_float_array(input) or type(dim) is not int or not -input.ndim <= dim < input.ndim:
        return None
    shape = input.shape
    d = dim % len(shape)
    out = _hostpool.empty(shape, input.dtype)
    if out.size:
        dims = (math.prod(shape[:d]), shape[d], math.prod(shape[d + 1:]))
        launch_cpu(op, "softmax", out.reshape(dims), input.reshape(dims), log=op == "log_softmax")
    return out


def _softmax(op, input, dim, stacklevel, dtype):
    if dtype is None:
        out = _fast_softmax(op, input, dim)
        if out is not None:
            return out
    call = Call(op, input=input)
    if dtype is None:
        dt = call.check_dtype("input", FLOAT_DTYPES)
    else:
        call.check_dtype("input", FLOAT_DTYPES + INT_DTYPES + BOOL_DTYPES)
        dt = _dtype_arg(op, dtype)
        if dt not in FLOAT_DTYPES:
            raise TypeError(f"{op}(): argument 'dtype' is {dt}; supported: float32, float64")
    x = call["input"]
    shape = tuple(x.shape)
    if dim is None:
        dim = _softmax_dim(op, len(shape), stacklevel + 1)
    d = normalize_dim(op, dim, len(shape))
    out = call.empty(shape, dt)
    if out.size:
        x = call.astype(x, dt)
        dims = (math.prod(shape[:d]), shape[d] if shape else 1, math.prod(shape[d + 1:]))
        call.launch("softmax", out.reshape(dims), x.reshape(dims), log=op == "log_softmax")
    return call.wrap(out)


@public("activation", kernels=("softmax",))
def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """Applies ``exp(x) / sum(exp(x))`` along ``dim``, computed stably (the row max subtracted first).

    Mirrors :func:`torch.nn.functional.softmax`. A slice containing NaN or +inf gives NaN, a slice of -inf
    gives NaN, as in torch.

    Args:
        input: array of any shape.
        dim: the dim to normalise. Default: None, torch's deprecated implicit choice (0 for 0-, 1- and 3-D
            inputs, else 1) with a UserWarning.
        _stacklevel: stack level of that warning, as in torch. Default: 3.
        dtype: cast ``input`` to this float dtype (NumPy or torch dtype) before the op. Default: None.

    Returns:
        array of ``input``'s shape, dtype ``dtype`` or ``input``'s; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64 (any numeric input with ``dtype=``).

    >>> import numpy as np, nbops
    >>> nbops.softmax(np.array([[1.0, 2.0, 3.0]]), dim=1)
    array([[0.09003057, 0.24472847, 0.66524096]])
    """
    return _softmax("softmax", input, dim, _stacklevel, dtype)


@public("activation", kernels=("softmax",))
def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """Applies ``x - log(sum(exp(x)))`` along ``dim``, computed stably (the row max subtracted first).

    Mirrors :func:`torch.nn.functional.log_softmax`. NaN/inf behave as in :func:`softmax`.

    Args:
        input: array of any shape.
        dim: the dim to normalise. Default: None, torch's deprecated implicit choice (0 for 0-, 1- and 3-D
            inputs, else 1) with a UserWarning.
        _stacklevel: stack level of that warning, as in torch. Default: 3.
        dtype: cast ``input`` to this float dtype (NumPy or torch dtype) before the op. Default: None.

    Returns:
        array of ``input``'s shape, dtype ``dtype`` or ``input``'s; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64 (any numeric input with ``dtype=``).

    >>> import numpy as np, nbops
    >>> nbops.log_softmax(np.array([[1.0, 2.0, 3.0]]), dim=1)
    array([[-2.40760596, -1.40760596, -0.40760596]])
    """
    return _softmax("log_softmax", input, dim, _stacklevel, dtype)
