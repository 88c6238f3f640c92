"""Pointwise (elementwise) ops with torch's broadcasting and type promotion.

Mirrors :func:`torch.add`, :func:`torch.sub`, :func:`torch.mul`, :func:`torch.div`, :func:`torch.pow`,
:func:`torch.sqrt`, :func:`torch.exp`, :func:`torch.log`, :func:`torch.abs`, :func:`torch.neg`,
:func:`torch.maximum`, :func:`torch.minimum`, :func:`torch.where` and :func:`torch.clamp`.

Every op follows one path: check the argument kinds and dtypes, compute torch's result dtype
(:func:`torch.result_type`: arrays with dims outrank 0-d arrays, which outrank Python numbers, unless a lower rank
brings a higher category, bool < integer < floating; a Python float counts as float32, a Python int as int64),
cast the array operands that differ from it, turn number operands into 0-d arrays of that dtype, allocate the
broadcast output and hand everything to one launcher, which takes operands of any strides. Bool operands are
computed as their uint8 bytes (``add`` of bools is logical or, ``mul`` logical and).
"""

import numbers

import numpy as np

from .. import _hostpool
from .._arrays import cuda_as_strided
from .._dispatch import BOOL_DTYPES, FLOAT_DTYPES, INT_DTYPES, Call, launch_cpu, plain_float_array, public
from .._shapes import broadcast_shapes

DTYPES = FLOAT_DTYPES + INT_DTYPES + BOOL_DTYPES
_F32 = np.dtype(np.float32)
_I64 = np.dtype(np.int64)
_BOOL = np.dtype(np.bool_)
_U8 = np.dtype(np.uint8)


def _category(dt):
    return 0 if dt == _BOOL else (2 if dt.kind == "f" else 1)


def _promote(a, b):
    """torch.promote_types for the supported dtypes (None is 'no operand yet')."""
    if a is None or b is None:
        return b if a is None else a
    ca, cb = _category(a), _category(b)
    if ca != cb:
        return a if ca > cb else b
    if ca == 2:
        return a if a.itemsize >= b.itemsize else b
    return np.promote_types(a, b)


def _combine(higher, lower):
    """torch's combine_categories: a lower-priority operand only wins by bringing a higher category."""
    if higher is None or lower is None:
        return lower if higher is None else higher
    if higher.kind == "f":
        return higher
    if higher == _BOOL or lower.kind == "f":
        return _promote(higher, lower)
    return higher


def _number_dtype(op, name, value):
    if isinstance(value, (bool, np.bool_)):
        return _BOOL
    if isinstance(value, numbers.Integral):
        return _I64
    if isinstance(value, numbers.Real):
        return _F32
    raise TypeError(f"{op}(): argument '{name}' must be a real number or an array, got {value!r}")


def _result_type(call, values):
    """torch.result_type of the named operands (arrays in ``call``, numbers otherwise); checks array dtypes."""
    dim = zero = wrapped = None
    for name, value in values.items():
        if value is None:
            continue
        if name in call:
            dt = call.check_dtype(name, DTYPES)
            if len(call[name].shape):
                dim = _promote(dim, dt)
            else:
                zero = _promote(zero, dt)
        else:
            wrapped = _promote(wrapped, _number_dtype(call.op, name, value))
    return _combine(dim, _combine(zero, wrapped))


def _operand(call, name, value, dtype):
    """Array operand ``name`` cast to ``dtype`` (kept as a view when it already has it), or the number ``value`` as
    a 0-d array of ``dtype`` on the call's target (integers wrap like torch's casts)."""
    if name in call:
        x = call[name]
        return x if np.dtype(x.dtype) == dtype else call.astype(x, dtype)
    v = np.array(value).astype(dtype)
    if call.target == "cpu":
        return v
    out = call.empty((), dtype)
    call.launch("fill", out, value=v[()])
    return out


def _view_as(call, x, dtype):
    """Array ``x`` reinterpreted as ``dtype`` of the same item size (no copy). numba-cuda's ``DeviceNDArray.view``
    fails on 0-d arrays (it hands the constructor an unhashable empty list of strides), so a 0-d device array goes
    through a 1-element 1-D view."""
    if call.target == "cuda" and not len(x.shape):
        return cuda_as_strided(cuda_as_strided(x, (1,), (0,)).view(dtype), (), ())
    return x.view(dtype)


def _as_uint8(call, x):
    """Bool array ``x`` viewed as its uint8 bytes."""
    return _view_as(call, x, _U8)


def _run(call, launcher, values, compute, **consts):
    """Broadcast, cast to ``compute``, allocate a ``compute`` output, launch, wrap."""
    shape = broadcast_shapes(call.op, *(tuple(call[n].shape) for n in values if n in call))
    ops = [_operand(call, n, v, compute) for n, v in values.items()]
    out = call.empty(shape, compute)
    if out.size:
        if compute == _BOOL:
            out_k, ops = _as_uint8(call, out), [_as_uint8(call, o) for o in ops]
        else:
            out_k = out
        call.launch(launcher, out_k, *ops, **consts)
    return call.wrap(out)


def _fast(op, kernel_op, input, other, alpha=1):
    """The common CPU call without the general path: ``input`` a C-contiguous float32/float64 NumPy array,
    ``other`` one of the same dtype and shape or a Python int or float, ``alpha`` a Python int or float. The result
    has input's dtype (a float array beats a wrapped number in torch's promotion) and goes through the same
    launcher with the same operands as the general path (the number as a 0-d array of that dtype), so the values
    are identical; the general path's argument objects, promotion and broadcasting cost ~10 us of a 20 us call on a
    small input. Returns the result, or None for any other call, which then takes the general path."""
    if not plain_float_array(input) or type(alpha) not in (int, float):
        return None
    if type(other) in (int, float):
        other = np.array(other).astype(input.dtype)
    elif not (plain_float_array(other) and other.dtype is input.dtype and other.shape == input.shape):
        return None
    out = _hostpool.empty(input.shape, input.dtype)
    if out.size:
        launch_cpu(op, "pointwise_binary", out, input, other, op=kernel_op, alpha=alpha)
    return out


def _fast_clamp(input, min, max):
    """``_fast`` for clamp: a C-contiguous float32/float64 NumPy ``input``, bounds None or Python ints or floats
    (not both None). The general path's operands exactly (the bounds as 0-d arrays of input's dtype, a missing one
    as an infinity) through the same launcher: a (8, 64) float32 clamp, 16.7-18.6 -> 7.6-8.1 us a call (torch
    1.3-1.9; the rest is the launcher's general broadcasting layout, which relu's does not pay: 3.1 us).
    Returns the result, or None for any other call."""
    if not plain_float_array(input) or (min is None and max is None):
        return None
    bounds = []
    for value, missing in ((min, -np.inf), (max, np.inf)):
        if value is None:
            value = missing
        elif type(value) not in (int, float):
            return None
        bounds.append(np.array(value).astype(input.dtype))
    out = _hostpool.empty(input.shape, input.dtype)
    if out.size:
        launch_cpu("clamp", "clamp", out, input, *bounds)
    return out


def _fast_where(condition, input, other):
    """``_fast`` for where: a C-contiguous bool NumPy ``condition``; ``input`` and ``other`` C-contiguous
    float32/float64 NumPy arrays of its shape and one dtype, or one of them a Python int or float (torch's
    promotion then keeps the array's dtype). The general path's operands exactly, through the same launcher: a
    (8, 64) float32 where with a number, 16.4 -> 9.0 us a call (torch 2.9). Returns the result, or None for any
    other call (broadcasting among them)."""
    if type(condition) is not np.ndarray or condition.dtype is not _BOOL or not condition.flags.c_contiguous:
        return None
    arrays = [x for x in (input, other) if type(x) not in (int, float)]
    if not arrays or not all(plain_float_array(x) and x.dtype is arrays[0].dtype and x.shape == condition.shape
                             for x in arrays):
        return None
    dtype = arrays[0].dtype
    ops = [x if type(x) is np.ndarray else np.array(x).astype(dtype) for x in (input, other)]
    out = _hostpool.empty(condition.shape, dtype)
    if out.size:
        launch_cpu("where", "where", out, condition, *ops)
    return out


def _no_bool(call, values, message):
    for name, value in values.items():
        if (name in call and np.dtype(call[name].dtype) == _BOOL) or isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{call.op}(): {message}")


def _binary_call(op, **operands):
    """The ``Call`` of a binary op whose operands may each be an array or a Python number (torch wraps a number in
    either place as a 0-d tensor); at least one must be an array, which gives the result's target and kind."""
    call = Call(op, scalars=tuple(operands), **operands)
    if not call.arrays:
        names = " and ".join(f"'{n}'" for n in operands)
        raise TypeError(f"{op}(): at least one of {names} must be an array")
    return call


def _check_number(op, name, value):
    if not isinstance(value, (numbers.Real, np.bool_)):
        raise TypeError(f"{op}(): argument '{name}' must be a number, got {value!r}")


@public("pointwise", kernels=("pointwise_binary", "copy", "fill"))
def add(input, other, *, alpha=1):
    """Adds ``other``, scaled by ``alpha``, to ``input``: ``input + alpha * other``, with broadcasting.

    Mirrors :func:`torch.add`.

    Args:
        input: array of any shape, or a number (then ``other`` must be an array).
        other: array broadcastable with ``input``, or a number.
        alpha: multiplier for ``other``. Default: 1. Must be an integer for integer results; a bool only for bool
            results (where ``add`` is logical or).

    Returns:
        array of the broadcast shape and torch's promoted dtype; same kind of array and device as the first array.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool.

    >>> import numpy as np, nbops
    >>> nbops.add(np.array([1.0, 2.0], dtype=np.float32), 0.5, alpha=2)
    array([2., 3.], dtype=float32)
    """
    out = _fast("add", "add", input, other, alpha)
    if out is not None:
        return out
    call = _binary_call("add", input=input, other=other)
    values = {"input": input, "other": other}
    rt = _alpha_check(call, _result_type(call, values), alpha)
    if rt == _BOOL:
        return _run(call, "pointwise_binary", values, rt, op="maximum" if alpha else "add", alpha=0)
    return _run(call, "pointwise_binary", values, rt, op="add", alpha=alpha)


def _alpha_check(call, rt, alpha):
    _check_number(call.op, "alpha", alpha)
    if rt.kind in "iu" and not isinstance(alpha, numbers.Integral):
        raise TypeError(f"{call.op}(): for integral input arrays, argument 'alpha' must not be a floating point "
                        f"number, got {alpha!r}")
    if isinstance(alpha, (bool, np.bool_)) and rt != _BOOL:
        raise TypeError(f"{call.op}(): a boolean 'alpha' is only supported for boolean results")
    return rt


@public("pointwise", kernels=("pointwise_binary", "copy", "fill"))
def sub(input, other, *, alpha=1):
    """Subtracts ``other``, scaled by ``alpha``, from ``input``: ``input - alpha * other``, with broadcasting.

    Mirrors :func:`torch.sub`.

    Args:
        input: array of any shape (not bool), or a number (then ``other`` must be an array).
        other: array broadcastable with ``input``, or a number (not bool).
        alpha: multiplier for ``other``. Default: 1. Must be an integer for integer results.

    Returns:
        array of the broadcast shape and torch's promoted dtype; same kind of array and device as the first array.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8.

    >>> import numpy as np, nbops
    >>> nbops.sub(np.array([3, 5]), np.array([1, 2]))
    array([2, 3])
    """
    out = _fast("sub", "add", input, other, -alpha) if type(alpha) in (int, float) else None
    if out is not None:
        return out
    call = _binary_call("sub", input=input, other=other)
    values = {"input": input, "other": other}
    rt = _result_type(call, values)
    _no_bool(call, values, "subtraction with a bool array or number is not supported; use logical_xor or "
                           "logical_not instead")
    _alpha_check(call, rt, alpha)
    return _run(call, "pointwise_binary", values, rt, op="add", alpha=-alpha)


@public("pointwise", kernels=("pointwise_binary", "copy", "fill"))
def mul(input, other):
    """Multiplies ``input`` by ``other`` elementwise, with broadcasting (logical and for bools).

    Mirrors :func:`torch.mul`.

    Args:
        input: array of any shape, or a number (then ``other`` must be an array).
        other: array broadcastable with ``input``, or a number.

    Returns:
        array of the broadcast shape and torch's promoted dtype; same kind of array and device as the first array.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool.

    >>> import numpy as np, nbops
    >>> nbops.mul(np.array([[1.0], [2.0]]), np.array([3.0, 4.0]))
    array([[3., 4.],
           [6., 8.]])
    """
    out = _fast("mul", "mul", input, other)
    if out is not None:
        return out
    call = _binary_call("mul", input=input, other=other)
    values = {"input": input, "other": other}
    rt = _result_type(call, values)
    return _run(call, "pointwise_binary", values, rt, op="minimum" if rt == _BOOL else "mul")


@public("pointwise", kernels=("pointwise_binary", "copy", "fill"))
def div(input, other, *, rounding_mode=None):
    """Divides ``input`` by ``other`` elementwise, with broadcasting.

    Mirrors :func:`torch.div`.

    Args:
        input: array of any shape, or a number (then ``other`` must be an array).
        other: array broadcastable with ``input``, or a number.
        rounding_mode: None (true division; integer and bool inputs give float32), ``'trunc'`` (round towards
            zero) or ``'floor'`` (round towards -inf, Python's ``//``). Integer results keep the promoted integer
            dtype; integer division by zero raises ZeroDivisionError on cpu (torch raises too) and is not checked
            on cuda. Default: None.

    Returns:
        array of the broadcast shape; float division gives inf/NaN for division by zero as torch does.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool (true division only).

    >>> import numpy as np, nbops
    >>> nbops.div(np.array([7, -7]), 2, rounding_mode="floor")
    array([ 3, -4])
    """
    out = _fast("div", "div", input, other) if rounding_mode is None else None
    if out is not None:
        return out
    call = _binary_call("div", input=input, other=other)
    values = {"input": input, "other": other}
    if rounding_mode not in (None, "trunc", "floor"):
        raise ValueError(f"div(): expected rounding_mode to be one of None, 'trunc', or 'floor' but found "
                         f"{rounding_mode!r}")
    rt = _result_type(call, values)
    if rounding_mode is None:
        return _run(call, "pointwise_binary", values, rt if rt.kind == "f" else _F32, op="div")
    if rt == _BOOL:
        raise TypeError(f"div(): rounding_mode={rounding_mode!r} is not implemented for bool")
    if rt.kind in "iu":
        if call.target == "cpu" and _has_zero(call, "other", other, rt):
            raise ZeroDivisionError("div(): integer division by zero")
    return _run(call, "pointwise_binary", values, rt, op="div_" + rounding_mode)


def _has_zero(call, name, value, dtype):
    if name in call:
        return bool((np.asarray(call[name]).astype(dtype, copy=False) == 0).any())
    return np.array(value).astype(dtype) == 0


@public("pointwise", kernels=("pointwise_binary", "copy", "fill"))
def pow(input, exponent):
    """Raises ``input`` to the power ``exponent`` elementwise, with broadcasting.

    Mirrors :func:`torch.pow`.

    Args:
        input: array of any shape, or a number (then ``exponent`` must be an array).
        exponent: array broadcastable with ``input``, or a number. Integer arrays raised to negative integer
            arrays give ``1 / input`` truncated (0, or +-1 for +-1), as torch does; a negative integer number as
            the exponent of an integer array raises ValueError, as torch does.

    Returns:
        array of the broadcast shape and torch's promoted dtype; same kind of array and device as the first array.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8.

    >>> import numpy as np, nbops
    >>> nbops.pow(np.array([1.0, 2.0, 3.0]), 2)
    array([1., 4., 9.])
    """
    call = _binary_call("pow", input=input, exponent=exponent)
    values = {"input": input, "exponent": exponent}
    rt = _result_type(call, values)
    if rt == _BOOL:
        raise TypeError("pow(): not implemented for bool inputs")
    if (rt.kind in "iu" and "exponent" not in call and isinstance(exponent, numbers.Integral)
            and exponent < 0):
        raise ValueError("pow(): integers to negative integer powers are not allowed")
    if rt.kind == "f" and "exponent" not in call and exponent in (0.5, -0.5):
        # torch computes x ** 0.5 as sqrt(x) and x ** -0.5 as 1 / sqrt(x): sqrt(-inf) is NaN and sqrt(-0.0) is -0.0,
        # where C's pow gives inf and 0.0
        root = sqrt(input)
        return root if exponent > 0 else pow(root, -1)
    return _run(call, "pointwise_binary", values, rt, op="pow")


def _minmax(op, input, other):
    call = Call(op, input=input, other=other)
    values = {"input": input, "other": other}
    return _run(call, "pointwise_binary", values, _result_type(call, values), op=op)


@public("pointwise", kernels=("pointwise_binary", "copy"))
def maximum(input, other):
    """Elementwise maximum of two arrays, with broadcasting; NaN in either propagates.

    Mirrors :func:`torch.maximum`.

    Args:
        input: array of any shape.
        other: array broadcastable with ``input`` (numbers are refused, as torch does).

    Returns:
        array of the broadcast shape and torch's promoted dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool.

    >>> import numpy as np, nbops
    >>> nbops.maximum(np.array([1.0, np.nan, 3.0]), np.array([2.0, 0.0, 1.0]))
    array([ 2., nan,  3.])
    """
    return _minmax("maximum", input, other)


@public("pointwise", kernels=("pointwise_binary", "copy"))
def minimum(input, other):
    """Elementwise minimum of two arrays, with broadcasting; NaN in either propagates.

    Mirrors :func:`torch.minimum`.

    Args:
        input: array of any shape.
        other: array broadcastable with ``input`` (numbers are refused, as torch does).

    Returns:
        array of the broadcast shape and torch's promoted dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool.

    >>> import numpy as np, nbops
    >>> nbops.minimum(np.array([1, 5]), np.array([3, 2]))
    array([1, 2])
    """
    return _minmax("minimum", input, other)


def _unary(op, input, float_only):
    if plain_float_array(input):  # the common call: no check can fail, same launcher and operands as below
        out = _hostpool.empty(input.shape, input.dtype)
        if out.size:
            launch_cpu(op, "pointwise_unary", out, input, op=op)
        return out
    call = Call(op, input=input)
    dt = call.check_dtype("input", DTYPES)
    if float_only:
        dt = dt if dt.kind == "f" else _F32
    elif dt == _BOOL:
        raise TypeError(f"{op}(): not supported for bool arrays; use logical_not instead")
    return _run(call, "pointwise_unary", {"input": input}, dt, op=op)


@public("pointwise", kernels=("pointwise_unary", "copy"))
def sqrt(input):
    """Square root, elementwise; negative inputs give NaN.

    Mirrors :func:`torch.sqrt`.

    Args:
        input: array of any shape; integer and bool arrays are computed in float32, as torch does.

    Returns:
        array of ``input``'s shape, floating dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64 (int and bool inputs give float32).

    >>> import numpy as np, nbops
    >>> nbops.sqrt(np.array([4.0, 9.0]))
    array([2., 3.])
    """
    return _unary("sqrt", input, True)


@public("pointwise", kernels=("pointwise_unary", "copy"))
def exp(input):
    """Exponential, elementwise.

    Mirrors :func:`torch.exp`.

    Args:
        input: array of any shape; integer and bool arrays are computed in float32, as torch does.

    Returns:
        array of ``input``'s shape, floating dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64 (int and bool inputs give float32).

    >>> import numpy as np, nbops
    >>> nbops.exp(np.array([0.0]))
    array([1.])
    """
    return _unary("exp", input, True)


@public("pointwise", kernels=("pointwise_unary", "copy"))
def log(input):
    """Natural logarithm, elementwise; 0 gives -inf and negative inputs NaN.

    Mirrors :func:`torch.log`.

    Args:
        input: array of any shape; integer and bool arrays are computed in float32, as torch does.

    Returns:
        array of ``input``'s shape, floating dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64 (int and bool inputs give float32).

    >>> import numpy as np, nbops
    >>> nbops.log(np.array([1.0, 0.0]))
    array([  0., -inf])
    """
    return _unary("log", input, True)


@public("pointwise", kernels=("pointwise_unary",))
def abs(input):
    """Absolute value, elementwise.

    Mirrors :func:`torch.abs`.

    Args:
        input: array of any shape (not bool, as in torch); unsigned arrays are returned unchanged in value.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8.

    >>> import numpy as np, nbops
    >>> nbops.abs(np.array([-1.5, 2.0]))
    array([1.5, 2. ])
    """
    return _unary("abs", input, False)


@public("pointwise", kernels=("pointwise_unary",))
def neg(input):
    """Negation, elementwise (unsigned integers wrap, as in torch).

    Mirrors :func:`torch.neg`.

    Args:
        input: array of any shape (not bool, as in torch).

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8.

    >>> import numpy as np, nbops
    >>> nbops.neg(np.array([1, -2]))
    array([-1,  2])
    """
    return _unary("neg", input, False)


@public("pointwise", kernels=("where", "copy", "fill"))
def where(condition, input, other):
    """Chooses ``input`` where ``condition`` is true and ``other`` elsewhere, with broadcasting of all three.

    Mirrors :func:`torch.where` (the three-argument form).

    Args:
        condition: bool array.
        input: array or number, taken where ``condition`` is true.
        other: array or number, taken where ``condition`` is false.

    Returns:
        array of the broadcast shape and the promoted dtype of ``input`` and ``other``; same kind of array and
        device as condition.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool.

    >>> import numpy as np, nbops
    >>> nbops.where(np.array([True, False]), np.array([1.0, 2.0]), 0.0)
    array([1., 0.])
    """
    out = _fast_where(condition, input, other)
    if out is not None:
        return out
    call = Call("where", condition=condition, input=input, other=other, scalars=("input", "other"))
    if np.dtype(call["condition"].dtype) != _BOOL:
        raise TypeError(f"where(): expected 'condition' to be a bool array, got dtype {call['condition'].dtype}")
    values = {"input": input, "other": other}
    rt = _result_type(call, values)
    shape = broadcast_shapes("where", *(tuple(call[n].shape) for n in ("condition", "input", "other") if n in call))
    cond = call["condition"]
    ops = [_operand(call, n, v, rt) for n, v in values.items()]
    out = call.empty(shape, rt)
    if out.size:
        if rt == _BOOL:
            call.launch("where", _as_uint8(call, out), cond, *(_as_uint8(call, o) for o in ops))
        else:
            call.launch("where", out, cond, *ops)
    return call.wrap(out)


@public("pointwise", kernels=("clamp", "copy", "fill"))
def clamp(input, min=None, max=None):
    """Clamps ``input`` into ``[min, max]`` elementwise: ``minimum(maximum(input, min), max)``, with broadcasting.

    Mirrors :func:`torch.clamp`.

    Args:
        input: array of any shape (bool only with a single array bound, as in torch).
        min: lower bound, an array broadcastable with ``input`` or a number; None for no lower bound.
        max: upper bound, likewise; None for no upper bound. At least one must be given. Where ``min > max`` the
            result is ``max``; NaN in ``input`` or in a bound gives NaN, as in torch.

    Returns:
        array of the broadcast shape and the promoted dtype of the arguments given; same kind of array and device
        as input.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool (one array bound).

    >>> import numpy as np, nbops
    >>> nbops.clamp(np.array([-2.0, 0.5, 3.0]), min=-1.0, max=1.0)
    array([-1. ,  0.5,  1. ])
    """
    out = _fast_clamp(input, min, max)
    if out is not None:
        return out
    call = Call("clamp", input=input, min=min, max=max, scalars=("min", "max"))
    if min is None and max is None:
        raise ValueError("clamp(): at least one of 'min' or 'max' must not be None")
    values = {"input": input, "min": min, "max": max}
    rt = _result_type(call, values)
    if rt == _BOOL and (min is not None and max is not None or "min" not in call and "max" not in call):
        raise TypeError("clamp(): bool is implemented only with one array bound (as in torch)")
    if rt == _BOOL:
        lo, hi = False, True
    elif rt.kind == "f":
        lo, hi = -np.inf, np.inf
    else:
        lo, hi = int(np.iinfo(rt).min), int(np.iinfo(rt).max)
    values = {"input": input, "min": lo if min is None else min, "max": hi if max is None else max}
    return _run(call, "clamp", values, rt)
