"""Reductions. Mirrors :func:`torch.sum`, :func:`torch.mean`, :func:`torch.var`, :func:`torch.max` and friends.

Every reduction is canonicalised here to a C-contiguous (O, R, I) array reduced over its middle axis: the reduced
dims, once size-1 dims are ignored, must be adjacent in memory, with the kept dims before them forming O and those
after forming I. A non-contiguous input whose axes, sorted by stride, form a contiguous array is used as that
permuted view, without a copy. Only when the reduced dims are not adjacent (e.g. ``dim=(0, 2)`` of a 3-D array)
is the input copied once, kept dims first, so that the reduction runs over the contiguous last axis.
"""

import math
import numbers
from collections import namedtuple

import numpy as np

from .. import _arrays
from .._dispatch import (BOOL_DTYPES, FLOAT_DTYPES, INT_DTYPES, Call, dtype_names, launch_cpu, plain_float_array,
                         public)
from .._shapes import normalize_dim, normalize_dims
from .pointwise import maximum, minimum

_KERNEL_DTYPES = FLOAT_DTYPES + (np.dtype(np.int64),)
_NUMERIC = FLOAT_DTYPES + INT_DTYPES
_ALL_DTYPES = _NUMERIC + BOOL_DTYPES
_INT64 = np.dtype(np.int64)

max_result = namedtuple("max", ["values", "indices"])
min_result = namedtuple("min", ["values", "indices"])


def _np_dtype(op, dtype):
    """``dtype`` (a NumPy dtype or name, or a torch dtype) as a NumPy dtype."""
    if type(dtype).__module__.split(".")[0] == "torch":
        dtype = str(dtype).rsplit(".", 1)[-1]
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{op}(): argument 'dtype' must be a dtype, got {dtype!r}") from None
    if dt not in _ALL_DTYPES:
        raise TypeError(f"{op}(): argument 'dtype' is {dt}; supported: {dtype_names(_ALL_DTYPES)}")
    return dt


def _reduced_dims(op, dim, ndim):
    """The reduced dims as a sorted tuple; None and () mean all dims, as in torch."""
    if dim is None:
        return tuple(range(ndim))
    if not isinstance(dim, (numbers.Integral, np.integer)):
        try:
            dim = tuple(dim)
        except TypeError:
            raise TypeError(f"{op}(): argument 'dim' must be an int, a tuple of ints or None, got {dim!r}") from None
        if not all(isinstance(d, (numbers.Integral, np.integer)) and not isinstance(d, bool) for d in dim):
            raise TypeError(f"{op}(): argument 'dim' must be an int, a tuple of ints or None, got {dim!r}")
        if not dim:
            return tuple(range(ndim))
    dims = normalize_dims(op, dim, ndim)
    return tuple(sorted(d for d in dims if d < ndim))


def _shape(input):
    return tuple(getattr(input, "shape", ()))


def _single_dim(op, dim, ndim):
    if isinstance(dim, bool) or not isinstance(dim, (numbers.Integral, np.integer)):
        raise TypeError(f"{op}(): argument 'dim' must be an int, got {dim!r}")
    return normalize_dim(op, dim, ndim)


def _permute(call, x, perm):
    if call.target == "cpu":
        return x.transpose(perm)
    return _arrays.cuda_as_strided(x, [x.shape[d] for d in perm], [x.strides[d] for d in perm])


def _canonical(call, x, red, allow_perm=True):
    """``x`` as a C-contiguous (O, R, I) array reduced over R (see the module docstring).

    ``allow_perm=False`` keeps the logical element order (flat indices of argmax over all dims).
    """
    shape = tuple(x.shape)
    nd = len(shape)
    O_I = math.prod(s for d, s in enumerate(shape) if d not in red)
    R = math.prod(shape[d] for d in red)
    order = list(range(nd))
    if not _arrays.is_c_contiguous(x) and allow_perm and nd > 1:
        by_stride = sorted(range(nd), key=lambda d: -x.strides[d])
        xp = _permute(call, x, by_stride)
        if _arrays.is_c_contiguous(xp):
            x, order = xp, by_stride
    if _arrays.is_c_contiguous(x):
        eff = [d for d in order if shape[d] != 1]
        pos = [k for k, d in enumerate(eff) if d in red]
        kept = [d for d in eff if d not in red]
        if not pos and kept == sorted(kept):
            return x.reshape((O_I, 1, 1))
        if pos and pos == list(range(pos[0], pos[-1] + 1)) and kept == sorted(kept):
            O = math.prod(shape[d] for d in eff[:pos[0]])
            return x.reshape((O, R, O_I // O if O else math.prod(shape[d] for d in eff[pos[-1] + 1:])))
        x = _permute(call, x, [order.index(d) for d in range(nd)])
    kept = [d for d in range(nd) if d not in red]
    x = call.contiguous(_permute(call, x, kept + list(red)))
    return x.reshape((O_I, R, 1))


def _out_shape(shape, red, keepdim):
    if keepdim:
        return tuple(1 if d in red else s for d, s in enumerate(shape))
    return tuple(s for d, s in enumerate(shape) if d not in red)


def _fast_view(input, dim):
    """(O, R, I, result shape) of a plain reduction: a C-contiguous float32/float64 NumPy array reduced over all dims
    (``dim`` None) or one Python int dim in range, none of O, R, I zero; None for any other call. Its (O, R, I)
    view is a plain reshape."""
    if not plain_float_array(input):
        return None
    shape = input.shape
    nd = len(shape)
    if dim is None:
        O, R, I, out_shape = 1, input.size, 1, ()
    elif type(dim) is int and -nd <= dim < nd:
        d = dim % nd
        O, R, I, out_shape = math.prod(shape[:d]), shape[d], math.prod(shape[d + 1:]), shape[:d] + shape[d + 1:]
    else:
        return None
    if R == 0 or O * I == 0:
        return None
    return O, R, I, out_shape


def _fast(op, name, input, dim, mean=False, **consts):
    """The common call run without the general path: a C-contiguous float32/float64 NumPy array reduced over all
    dims (``dim`` None) or one int dim in range, its result in its own dtype (``_fast_view``). Such a call cannot
    fail a check; the general path's Python (argument objects, dim normalisation, layout search) costs 30-50 us
    per call when that code is not in the cache, as it is not after the caller's own work, next to kernels of
    0.2-1.5 ms. ``consts`` go to the launcher, with ``div=R`` for a ``mean``. Returns the result, or None for any
    other call, which then takes the general path."""
    view = _fast_view(input, dim)
    if view is None:
        return None
    O, R, I, out_shape = view
    if mean:
        consts["div"] = R
    out = np.empty((O, I), input.dtype)
    launch_cpu(op, name, out, input.reshape(O, R, I), **consts)
    return out.reshape(out_shape)


def _fast_two(op, name, input, dim, second, **consts):
    """``_fast`` for the launchers with two outputs, (values, indices) for argmax / argmin and (variance, mean) for
    var_mean: ``second`` is the dtype of the second (None: the input's). Returns both, or None for any other call.
    (8, 64) float32 over dim 1, us a call: argmax 18.3 -> 8.2, var 19.1 -> 8.9 (torch 2.7 and 5.6)."""
    view = _fast_view(input, dim)
    if view is None:
        return None
    O, R, I, out_shape = view
    first, other = np.empty((O, I), input.dtype), np.empty((O, I), input.dtype if second is None else second)
    launch_cpu(op, name, first, other, input.reshape(O, R, I), **consts)
    return first.reshape(out_shape), other.reshape(out_shape)


def _filled(call, shape, dtype, value):
    out = call.empty(shape, dtype)
    if math.prod(shape):
        call.launch("fill", out, value=value)
    return out


def _prepare(op, input, dim, keepdim, allowed, allow_perm=True):
    """Validate; return (call, canonical (O, R, I) input, output shape, reduced dims)."""
    call = Call(op, input=input)
    call.check_dtype("input", allowed)
    x = call["input"]
    if not isinstance(keepdim, (bool, np.bool_)):
        raise TypeError(f"{op}(): argument 'keepdim' must be a bool, got {keepdim!r}")
    red = _reduced_dims(op, dim, len(x.shape))
    out_shape = _out_shape(tuple(x.shape), red, keepdim)
    return call, x, red, out_shape


def _run_sum_like(op, kernel, input, dim, keepdim, dtype, mean=False):
    if dtype is None and keepdim is False:
        out = _fast(op, kernel, input, dim, mean)
        if out is not None:
            return out
    call, x, red, out_shape = _prepare(op, input, dim, keepdim, _ALL_DTYPES)
    src = np.dtype(x.dtype)
    if dtype is not None:
        res = _np_dtype(op, dtype)
    elif mean:
        res = src
    else:
        res = src if src in FLOAT_DTYPES else _INT64
    if mean and res not in FLOAT_DTYPES:
        raise TypeError(
            f"{op}(): could not infer output dtype. Input dtype must be either a floating point or complex dtype. "
            f"Got: {res}"
        )
    acc = res if res in FLOAT_DTYPES else _INT64
    x3 = _canonical(call, x, red)
    O, R, I = x3.shape
    if R == 0 or O * I == 0:
        value = (math.nan if mean else 0) if kernel == "sum" else 1
        return call.wrap(_filled(call, out_shape, res, value))
    x3 = call.astype(x3, acc)
    out = call.empty((O, I), acc)
    if mean:
        call.launch(kernel, out, x3, div=R)
    else:
        call.launch(kernel, out, x3)
    if acc != res:
        out = call.astype(out, res)
    return call.wrap(out.reshape(out_shape))


@public("reduction", kernels=("sum",))
def sum(input, dim=None, keepdim=False, *, dtype=None):
    """Sum of the elements over ``dim``; pairwise (blocked) accumulation keeps float32 sums accurate.

    Mirrors :func:`torch.sum`.

    Args:
        input: array of any shape; float, integer or bool.
        dim: int, tuple of ints, or None (all dims; ``()`` also means all, as in torch). Default: None.
        keepdim: keep the reduced dims with size 1. Default: False.
        dtype: cast the input to this dtype (NumPy or torch dtype) before summing. Default: None (integer and bool
            inputs sum to int64).

    Returns:
        array of ``input``'s shape without (or with size 1 at) the reduced dims; same kind of array and device as
        input. An empty reduction gives 0.

    Targets: cpu, cuda. Dtypes: float32, float64; integer and bool inputs (int64 result).

    >>> import numpy as np, nbops
    >>> nbops.sum(np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32), dim=0)
    array([4., 6.], dtype=float32)
    """
    return _run_sum_like("sum", "sum", input, dim, keepdim, dtype)


@public("reduction", kernels=("sum",))
def mean(input, dim=None, keepdim=False, *, dtype=None):
    """Mean of the elements over ``dim``.

    Mirrors :func:`torch.mean`.

    Args:
        input: array of any shape; float, or integer/bool with a float ``dtype``.
        dim: int, tuple of ints, or None (all dims). Default: None.
        keepdim: keep the reduced dims with size 1. Default: False.
        dtype: cast the input to this float dtype first. Default: None.

    Returns:
        array of the reduced shape; same kind of array and device as input. An empty reduction gives NaN.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.mean(np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32), dim=1)
    array([1.5, 3.5], dtype=float32)
    """
    return _run_sum_like("mean", "sum", input, dim, keepdim, dtype, mean=True)


@public("reduction", kernels=("prod",))
def prod(input, dim=None, keepdim=False, *, dtype=None):
    """Product of the elements over one dim, or of all elements.

    Mirrors :func:`torch.prod`.

    Args:
        input: array of any shape; float, integer or bool.
        dim: int or None (all elements). Default: None.
        keepdim: keep the reduced dim with size 1. Default: False.
        dtype: cast the input to this dtype first. Default: None (integer and bool inputs give int64).

    Returns:
        array of the reduced shape; same kind of array and device as input. An empty reduction gives 1.

    Targets: cpu, cuda. Dtypes: float32, float64; integer and bool inputs (int64 result).

    >>> import numpy as np, nbops
    >>> nbops.prod(np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32), 1)
    array([ 2., 12.], dtype=float32)
    """
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (numbers.Integral, np.integer))):
        raise TypeError(f"prod(): argument 'dim' must be an int or None, got {dim!r}")
    return _run_sum_like("prod", "prod", input, dim, keepdim, dtype)


def _correction(op, unbiased, correction):
    if unbiased is not None and correction is not None:
        raise TypeError(f"{op}(): pass either 'unbiased' or 'correction', not both")
    if unbiased is not None:
        if not isinstance(unbiased, (bool, np.bool_)):
            raise TypeError(f"{op}(): argument 'unbiased' must be a bool, got {unbiased!r}")
        return 1 if unbiased else 0
    if correction is None:
        return 1
    if isinstance(correction, bool) or not isinstance(correction, numbers.Real):
        raise TypeError(f"{op}(): argument 'correction' must be a number, got {correction!r}")
    return correction


def _var_like(op, input, dim, unbiased, keepdim, correction, take_sqrt, with_mean):
    if unbiased is None and correction is None and keepdim is False:
        res = _fast_two(op, "var_mean", input, dim, None, correction=1, take_sqrt=take_sqrt)
        if res is not None:
            return res if with_mean else res[0]
    if isinstance(dim, (bool, np.bool_)):  # the legacy var(input, unbiased) form
        if unbiased is not None:
            raise TypeError(f"{op}(): got 'unbiased' twice")
        dim, unbiased = None, bool(dim)
    corr = _correction(op, unbiased, correction)
    call = Call(op, input=input)
    x = call["input"]
    dt = np.dtype(x.dtype)
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{op}(): std and var only support floating point dtypes, got {dt}")
    if not isinstance(keepdim, (bool, np.bool_)):
        raise TypeError(f"{op}(): argument 'keepdim' must be a bool, got {keepdim!r}")
    red = _reduced_dims(op, dim, len(x.shape))
    out_shape = _out_shape(tuple(x.shape), red, keepdim)
    x3 = _canonical(call, x, red)
    O, R, I = x3.shape
    if R == 0 or O * I == 0:
        v, m = _filled(call, out_shape, dt, math.nan), _filled(call, out_shape, dt, math.nan)
    else:
        v, m = call.empty((O, I), dt), call.empty((O, I), dt)
        call.launch("var_mean", v, m, x3, correction=corr, take_sqrt=take_sqrt)
        v, m = v.reshape(out_shape), m.reshape(out_shape)
    return call.wrap((v, m)) if with_mean else call.wrap(v)


_VAR_ARGS = """
    Args:
        input: float array of any shape.
        dim: int, tuple of ints, or None (all dims). Default: None. A bool here is torch's legacy ``unbiased``.
        unbiased: legacy form of ``correction`` (True -> 1, False -> 0); give one or the other.
        keepdim: keep the reduced dims with size 1. Default: False.
        correction: keyword-only; the divisor is ``max(0, N - correction)``. Default: 1 (Bessel's correction).
"""


@public("reduction", kernels=("var_mean",))
def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance over ``dim``: chunked Welford / Chan merges, accurate for large means.

    Mirrors :func:`torch.var`.
    {args}
    Returns:
        array of the reduced shape; same kind of array and device as input. Too few elements give NaN (0/0) or
        inf, as in torch.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.var(np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32))
    array(1.6666666, dtype=float32)
    """
    return _var_like("var", input, dim, unbiased, keepdim, correction, False, False)


@public("reduction", kernels=("var_mean",))
def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Standard deviation over ``dim`` (the square root of :func:`var`).

    Mirrors :func:`torch.std`.
    {args}
    Returns:
        array of the reduced shape; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.std(np.array([1.0, 3.0], dtype=np.float32))
    array(1.4142135, dtype=float32)
    """
    return _var_like("std", input, dim, unbiased, keepdim, correction, True, False)


@public("reduction", kernels=("var_mean",))
def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance and mean over ``dim`` in one pass.

    Mirrors :func:`torch.var_mean`.
    {args}
    Returns:
        tuple (var, mean), arrays of the reduced shape; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.var_mean(np.array([1.0, 3.0], dtype=np.float32))
    (array(2., dtype=float32), array(2., dtype=float32))
    """
    return _var_like("var_mean", input, dim, unbiased, keepdim, correction, False, True)


@public("reduction", kernels=("var_mean",))
def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Standard deviation and mean over ``dim`` in one pass.

    Mirrors :func:`torch.std_mean`.
    {args}
    Returns:
        tuple (std, mean), arrays of the reduced shape; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.std_mean(np.array([1.0, 3.0], dtype=np.float32))
    (array(1.4142135, dtype=float32), array(2., dtype=float32))
    """
    return _var_like("std_mean", input, dim, unbiased, keepdim, correction, True, True)


for _f in (var, std, var_mean, std_mean):
    _f.__doc__ = _f.__doc__.replace("{args}", _VAR_ARGS)


def _extreme(op, input, red, keepdim, is_min, flat_order, empty_msg, allowed=_ALL_DTYPES, indices=True):
    """(call, values, indices) of the max (min) over ``red``; indices along the single reduced dim, or flat over all
    dims when ``flat_order``; None without ``indices`` (the values-only kernel, with no index search)."""
    call = Call(op, input=input)
    call.check_dtype("input", allowed)
    x = call["input"]
    if not isinstance(keepdim, (bool, np.bool_)):
        raise TypeError(f"{op}(): argument 'keepdim' must be a bool, got {keepdim!r}")
    dt = np.dtype(x.dtype)
    out_shape = _out_shape(tuple(x.shape), red, keepdim)
    x3 = _canonical(call, x, red, allow_perm=not flat_order)
    O, R, I = x3.shape
    if R == 0:
        raise IndexError(empty_msg)
    if O * I == 0:
        return call, call.empty(out_shape, dt), call.empty(out_shape, _INT64) if indices else None
    kdt = dt if dt in FLOAT_DTYPES else _INT64
    x3 = call.astype(x3, kdt)
    vals = call.empty((O, I), kdt)
    if indices:
        idx = call.empty((O, I), _INT64)
        call.launch("argmax", vals, idx, x3, is_min=is_min)
        idx = idx.reshape(out_shape)
    else:
        idx = None
        call.launch("amax", vals, x3, is_min=is_min)
    if kdt != dt:
        vals = call.astype(vals, dt)
    return call, vals.reshape(out_shape), idx


def _empty_msg(op, shape, red, flat):
    """torch's message for a max-like reduction over no elements."""
    if flat:
        return f"{op}(): Expected reduction dim to be specified for input.numel() == 0."
    zero = [d for d in red if d < len(shape) and shape[d] == 0]
    return f"{op}(): Expected reduction dim {zero[0] if zero else 0} to have non-zero size."


def _max_like(op, input, dim, keepdim, other, is_min):
    if dim is None and other is None and keepdim is False:
        out = _fast(op, "amax", input, None, is_min=is_min)
        if out is not None:
            return out
    if other is not None or _arrays.is_array(dim):
        if other is None:
            other = dim
        elif dim is not None:
            raise TypeError(f"{op}(): pass either 'dim' or 'other', not both")
        return (minimum if is_min else maximum)(input, other)
    ndim = len(_shape(input))
    if dim is None:
        if keepdim:
            raise TypeError(f"{op}(): 'keepdim' needs 'dim'")
        red = tuple(range(ndim))
        call, vals, _ = _extreme(op, input, red, False, is_min, False, _empty_msg(op, _shape(input), red, True) +
                                 " Specify the reduction dim with the 'dim' argument.", indices=False)
        return call.wrap(vals)
    d = _single_dim(op, dim, ndim)
    red = (d,) if ndim else ()
    call, vals, idx = _extreme(op, input, red, keepdim, is_min, False, _empty_msg(op, _shape(input), (d,), False))
    return call.wrap((min_result if is_min else max_result)(vals, idx))


@public("reduction", kernels=("argmax", "amax"))
def max(input, dim=None, keepdim=False, *, other=None):
    """Maximum: of all elements, along one dim with its index, or elementwise against another array.

    Mirrors :func:`torch.max` (all three forms: ``max(input)``, ``max(input, dim, keepdim=False)``,
    ``max(input, other)``).

    Args:
        input: array of any shape; float, integer or bool.
        dim: int; or an array, meaning the elementwise form ``max(input, other)``. Default: None (all elements).
        keepdim: keep the reduced dim with size 1. Default: False.
        other: keyword form of the elementwise operand (broadcast against ``input``).

    Returns:
        no dim: a 0-d array. With dim: a namedtuple ``(values, indices)``, indices int64, the first index of the
        maximum (NaN counts as the maximum; the first NaN wins). Elementwise: :func:`nbops.maximum`, NaN where
        either input is NaN.
        Same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64; integer and bool inputs.

    >>> import numpy as np, nbops
    >>> nbops.max(np.array([[1.0, 5.0], [7.0, 2.0]], dtype=np.float32), 1)
    max(values=array([5., 7.], dtype=float32), indices=array([1, 0]))
    """
    return _max_like("max", input, dim, keepdim, other, False)


@public("reduction", kernels=("argmax", "amax"))
def min(input, dim=None, keepdim=False, *, other=None):
    """Minimum: of all elements, along one dim with its index, or elementwise against another array.

    Mirrors :func:`torch.min` (``min(input)``, ``min(input, dim, keepdim=False)``, ``min(input, other)``).

    Args:
        input: array of any shape; float, integer or bool.
        dim: int; or an array, meaning the elementwise form. Default: None (all elements).
        keepdim: keep the reduced dim with size 1. Default: False.
        other: keyword form of the elementwise operand.

    Returns:
        as :func:`max`, with a namedtuple ``min(values, indices)`` along a dim.

    Targets: cpu, cuda. Dtypes: float32, float64; integer and bool inputs.

    >>> import numpy as np, nbops
    >>> nbops.min(np.array([3.0, 1.0, 1.0], dtype=np.float32), 0)
    min(values=array(1., dtype=float32), indices=array(1))
    """
    return _max_like("min", input, dim, keepdim, other, True)


def _amax_like(op, input, dim, keepdim, is_min):
    if keepdim is False and (type(dim) is int or (type(dim) is tuple and not dim)):
        out = _fast(op, "amax", input, None if dim == () else dim, is_min=is_min)
        if out is not None:
            return out
    red = _reduced_dims(op, dim, len(_shape(input)))
    call, vals, _ = _extreme(op, input, red, keepdim, is_min, False, _empty_msg(op, _shape(input), red, False),
                             indices=False)
    return call.wrap(vals)


@public("reduction", kernels=("amax",))
def amax(input, dim=(), keepdim=False):
    """Maximum over one or more dims (values only); NaN propagates.

    Mirrors :func:`torch.amax`.

    Args:
        input: array of any shape; float, integer or bool.
        dim: int or tuple of ints; ``()`` (the default) reduces all dims.
        keepdim: keep the reduced dims with size 1. Default: False.

    Returns:
        array of the reduced shape; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64; integer and bool inputs.

    >>> import numpy as np, nbops
    >>> nbops.amax(np.array([[1.0, 5.0], [7.0, 2.0]], dtype=np.float32), dim=0)
    array([7., 5.], dtype=float32)
    """
    return _amax_like("amax", input, dim, keepdim, False)


@public("reduction", kernels=("amax",))
def amin(input, dim=(), keepdim=False):
    """Minimum over one or more dims (values only); NaN propagates.

    Mirrors :func:`torch.amin`.

    Args:
        input: array of any shape; float, integer or bool.
        dim: int or tuple of ints; ``()`` (the default) reduces all dims.
        keepdim: keep the reduced dims with size 1. Default: False.

    Returns:
        array of the reduced shape; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64; integer and bool inputs.

    >>> import numpy as np, nbops
    >>> nbops.amin(np.array([[1.0, 5.0], [7.0, 2.0]], dtype=np.float32), dim=1)
    array([1., 2.], dtype=float32)
    """
    return _amax_like("amin", input, dim, keepdim, True)


def _argmax_like(op, input, dim, keepdim, is_min):
    if keepdim is False:
        res = _fast_two(op, "argmax", input, dim, _INT64, is_min=is_min)
        if res is not None:
            return res[1]
    ndim = len(_shape(input))
    if dim is None:
        red = tuple(range(ndim))
        call, _, idx = _extreme(op, input, red, False, is_min, True, _empty_msg(op, _shape(input), red, True), _NUMERIC)
        if keepdim:
            idx = idx.reshape((1,) * ndim)
        return call.wrap(idx)
    d = _single_dim(op, dim, ndim)
    red = (d,) if ndim else ()
    call, _, idx = _extreme(op, input, red, keepdim, is_min, False, _empty_msg(op, _shape(input), (d,), False),
                            _NUMERIC)
    return call.wrap(idx)


@public("reduction", kernels=("argmax",))
def argmax(input, dim=None, keepdim=False):
    """Index of the maximum: flat over all elements (``dim=None``) or along one dim; first index on ties, and the
    first NaN counts as the maximum.

    Mirrors :func:`torch.argmax`.

    Args:
        input: array of any shape; float, integer or bool.
        dim: int or None (flat index into the whole array). Default: None.
        keepdim: keep the reduced dim(s) with size 1. Default: False.

    Returns:
        int64 array of the reduced shape; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64; integer inputs (not bool, as in torch).

    >>> import numpy as np, nbops
    >>> nbops.argmax(np.array([[1.0, 5.0], [7.0, 2.0]], dtype=np.float32))
    array(2)
    """
    return _argmax_like("argmax", input, dim, keepdim, False)


@public("reduction", kernels=("argmax",))
def argmin(input, dim=None, keepdim=False):
    """Index of the minimum: flat over all elements (``dim=None``) or along one dim; first index on ties, and the
    first NaN counts as the minimum.

    Mirrors :func:`torch.argmin`.

    Args:
        input: array of any shape; float, integer or bool.
        dim: int or None (flat index into the whole array). Default: None.
        keepdim: keep the reduced dim(s) with size 1. Default: False.

    Returns:
        int64 array of the reduced shape; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64; integer inputs (not bool, as in torch).

    >>> import numpy as np, nbops
    >>> nbops.argmin(np.array([[1.0, 5.0], [7.0, 2.0]], dtype=np.float32), dim=1)
    array([0, 1])
    """
    return _argmax_like("argmin", input, dim, keepdim, True)


@public("reduction", kernels=("logsumexp",))
def logsumexp(input, dim, keepdim=False):
    """log(sum(exp(input))) over ``dim``, computed stably around the maximum.

    Mirrors :func:`torch.logsumexp`.

    Args:
        input: array of any shape; integer inputs are computed in float32, as torch does.
        dim: int or tuple of ints (required; ``()`` reduces all dims).
        keepdim: keep the reduced dims with size 1. Default: False.

    Returns:
        float array of the reduced shape; same kind of array and device as input. An empty reduction gives -inf;
        +inf in the input gives +inf, NaN gives NaN.

    Targets: cpu, cuda. Dtypes: float32, float64 (integer and bool inputs give float32).

    >>> import numpy as np, nbops
    >>> nbops.logsumexp(np.log(np.array([[1.0, 3.0], [2.0, 2.0]], dtype=np.float32)), 1)
    array([1.3862944, 1.3862944], dtype=float32)
    """
    call, x, red, out_shape = _prepare("logsumexp", input, dim, keepdim, _ALL_DTYPES)
    dt = np.dtype(x.dtype)
    res = dt if dt in FLOAT_DTYPES else np.dtype(np.float32)
    x3 = _canonical(call, x, red)
    O, R, I = x3.shape
    if R == 0 or O * I == 0:
        return call.wrap(_filled(call, out_shape, res, -math.inf))
    x3 = call.astype(x3, res)
    out = call.empty((O, I), res)
    call.launch("logsumexp", out, x3)
    return call.wrap(out.reshape(out_shape))

