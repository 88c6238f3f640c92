"""Normalization ops: batch, layer, instance, group and RMS norm with torch's semantics, plus SwitchNorm, DeepNorm
and DyT, defined from their papers.

Every op canonicalises its input to (outer, reduce, inner) form before the kernel: rows (M, K) for layer, deep and
RMS norm and DyT; (N, C, L) for batch, instance, group and switch norm (L = the product of the spatial dims).
Statistics are computed by Welford's method in one pass over the data (blocked on the CPU, per thread on CUDA),
with partial statistics merged by Chan's formula; see ``nbops/cpu/norm.py`` and ``nbops/cuda/norm.py``.
"""

import math
import numbers
from collections import namedtuple

import numpy as np

from .. import _hostpool
from .._dispatch import Call, is_scalar, launch_cpu, plain_float_array, public


# ---------------------------------------------------------------------------------------------------------------
# validation and canonicalisation helpers


def _number(op, name, value, positive=False):
    """``value`` as a Python float, or TypeError; ValueError where ``positive`` and it is not > 0."""
    if isinstance(value, bool) or not is_scalar(value) or isinstance(value, complex):
        raise TypeError(f"{op}(): argument '{name}' must be a float, got {value!r}")
    value = float(value)
    if positive and not value > 0:
        raise ValueError(f"{op}(): argument '{name}' must be positive, got {value}")
    return value


def _shape_tuple(op, normalized_shape):
    """``normalized_shape`` (an int or a sequence of ints) as a non-empty tuple of ints."""
    if isinstance(normalized_shape, (numbers.Integral, np.integer)) and not isinstance(normalized_shape, bool):
        return (int(normalized_shape),)
    try:
        shape = tuple(normalized_shape)
    except TypeError:
        raise TypeError(f"{op}(): argument 'normalized_shape' must be a tuple of ints, got {normalized_shape!r}") \
            from None
    if not all(isinstance(s, (numbers.Integral, np.integer)) and not isinstance(s, bool) for s in shape):
        raise TypeError(f"{op}(): argument 'normalized_shape' must be a tuple of ints, got {normalized_shape!r}")
    if not shape:
        raise ValueError(
            f"{op}(): Expected normalized_shape to be at least 1-dimensional, i.e., containing at least one "
            f"element, but got normalized_shape = {list(shape)}"
        )
    return tuple(int(s) for s in shape)


def _rows(call, name, normalized_shape):
    """Input ``name`` as contiguous (M, K) rows over its trailing ``normalized_shape`` dims, with (M, K)."""
    x = call[name]
    shape = tuple(x.shape)
    k = len(normalized_shape)
    if len(shape) < k or shape[len(shape) - k:] != normalized_shape:
        raise ValueError(
            f"{call.op}(): Given normalized_shape={list(normalized_shape)}, expected input with shape "
            f"[*, {', '.join(map(str, normalized_shape))}], but got input of size {list(shape)}"
        )
    K = math.prod(normalized_shape)
    M = math.prod(shape[:len(shape) - k])
    return call.contiguous(x), M, K


def _dtype_like(call, name, dtype):
    if name in call and np.dtype(call[name].dtype) != dtype:
        raise TypeError(
            f"{call.op}(): expected argument '{name}' to have the input's dtype {dtype}, got {call[name].dtype}"
        )


FILLS_KEPT = 8  # filled CPU parameter arrays kept for reuse, the most recently used
FILLS_MAX_BYTES = 64 << 20  # a larger one is filled afresh each call
_fills = {}  # (values, fill, dtype) -> a (values,) array of fill: a missing weight or bias on the CPU


def _filled(n, fill, dtype):
    """A (n,) CPU array of ``fill`` in ``dtype`` standing in for a missing weight or bias, kept for the next call
    that needs the same one. Filling it cost a layer norm over one row of 200,704 float32 values 44 of its 200 us
    (two 784 KiB writes at 37 GB/s; torch, which branches on the missing parameters instead, took 100). Only the
    kernels see it, and they never write their weight or bias. No lock: under threads the worst case is an array
    filled twice or one more kept for a while."""
    key = (n, fill, dtype)
    a = _fills.pop(key, None)
    if a is None:
        a = np.full(n, fill, dtype)
        if a.nbytes > FILLS_MAX_BYTES:
            return a
        while len(_fills) >= FILLS_KEPT:  # drop the least recently used
            try:
                del _fills[next(iter(_fills))]
            except (RuntimeError, StopIteration, KeyError):  # another thread changed the dict meanwhile
                break
    _fills[key] = a  # reinserted: the dict's order is the order of last use
    return a


def _param(call, name, shape, fill, dtype, message, numel_only=False):
    """Optional affine parameter ``name`` as a contiguous 1-D array of prod(shape) values on the target, checked
    to have exactly ``shape`` (only prod(shape) values with ``numel_only``, as torch's batch_norm); ``fill``
    everywhere when it was None. ``message`` is the error, formatted with {name}, {shape} and {numel}."""
    n = math.prod(shape)
    if name not in call:
        if call.target == "cpu":
            return _filled(n, fill, dtype)
        out = call.empty((n,), dtype)
        if n:
            call.launch("fill", out, value=fill)
        return out
    a = call[name]
    _dtype_like(call, name, dtype)
    if (math.prod(a.shape) != n) if numel_only else (tuple(a.shape) != tuple(shape)):
        detail = message.format(name=name, shape=list(a.shape), numel=math.prod(a.shape))
        raise ValueError(f"{call.op}(): {detail}")
    return call.contiguous(a).reshape(n)


def _channel_message(call):
    return ("Expected {name} to be a vector of size equal to the number of channels in input, but got {name} of "
            f"shape {{shape}} and input of shape {list(call['input'].shape)}")


def _running(call, name, C, dtype, written):
    """Running statistic ``name`` (1-D, C values, input's dtype) as the caller's own memory, or None; ``written``:
    the op updates it in place, so it must be writeable."""
    if name not in call:
        return None
    a = call[name]
    if written:
        call.require_writeable(name, "running statistics are updated in place")
    _dtype_like(call, name, dtype)
    if len(a.shape) != 1 or a.shape[0] != C:
        raise ValueError(f"{call.op}(): {name} should be a 1-D array of {C} elements, got shape {tuple(a.shape)}")
    return a


def _channels(call, min_ndim=2):
    """Input as contiguous (N, C, L) with L the product of the spatial dims."""
    x = call["input"]
    shape = tuple(x.shape)
    if len(shape) < min_ndim:
        raise ValueError(f"{call.op}(): expected input with at least {min_ndim} dims (N, C, *), got shape {shape}")
    N, C = shape[0], shape[1]
    L = math.prod(shape[2:])
    return call.contiguous(x).reshape(N, C, L), N, C, L


# ---------------------------------------------------------------------------------------------------------------
# torch's normalizations


@public("norm", kernels=("batch_norm",))
def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Applies batch normalization over each channel (dim 1) of a batch.

    Mirrors :func:`torch.nn.functional.batch_norm`.

    y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c. In training the statistics are the batch's (biased
    variance, over every dim but dim 1) and ``running_mean`` / ``running_var`` are updated IN PLACE (in the
    caller's own memory, for NumPy, torch and CUDA arrays alike) as
    ``running = (1 - momentum) * running + momentum * stat`` with the unbiased variance; in evaluation the running
    statistics are used.

    Args:
        input: (N, C, *) array, at least 2-D.
        running_mean: (C,) array or None (then not updated; required when not training).
        running_var: (C,) array or None (then not updated; required when not training).
        weight: (C,) scale, or None for 1. Default: None.
        bias: (C,) shift, or None for 0. Default: None.
        training: use and accumulate batch statistics. Default: False.
        momentum: weight of the new statistic in the running update. Default: 0.1.
        eps: added to the variance. Default: 1e-5.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> x = np.array([[1.0, 2.0], [3.0, 6.0]], dtype=np.float32)
    >>> rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)
    >>> nbops.batch_norm(x, rm, rv, training=True).round(4)
    array([[-1., -1.],
           [ 1.,  1.]], dtype=float32)
    >>> rm, rv
    (array([0.2, 0.4], dtype=float32), array([1.1, 1.7], dtype=float32))
    """
    if training is False:
        out = _fast_batch_norm_eval(input, running_mean, running_var, weight, bias, momentum, eps)
        if out is not None:
            return out
    op = "batch_norm"
    call = Call(op, input=input, running_mean=running_mean, running_var=running_var, weight=weight, bias=bias)
    dt = call.check_dtype("input")
    momentum = _number(op, "momentum", momentum)
    eps = _number(op, "eps", eps)
    x, N, C, L = _channels(call)
    rm = _running(call, "running_mean", C, dt, training)
    rv = _running(call, "running_var", C, dt, training)
    msg = f"{{name}} should contain {C} elements not {{numel}}"
    w = _param(call, "weight", (C,), 1, dt, msg, numel_only=True)
    b = _param(call, "bias", (C,), 0, dt, msg, numel_only=True)
    if training:
        if N * L == 1:
            raise ValueError(
                f"{op}(): Expected more than 1 value per channel when training, got input size "
                f"{tuple(call['input'].shape)}"
            )
        if not eps > 0:
            raise ValueError(f"{op}(): eps must be positive during training, but got {eps}")
    elif rm is None or rv is None:
        raise ValueError(f"{op}(): running_mean and running_var must be defined in evaluation mode")
    out = call.empty(x.shape, dt)
    if out.size:
        call.launch("batch_norm", out, x, w, b, rm, rv, training=bool(training), momentum=momentum, eps=eps)
    return call.wrap(out.reshape(call["input"].shape))


@public("norm", kernels=("group_norm", "running_update", "batch_norm"))
def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    """Applies instance normalization: each (sample, channel) plane normalised by its own statistics.

    Mirrors :func:`torch.nn.functional.instance_norm`.

    With ``use_input_stats`` the statistics are each instance's (biased variance) and, when given, the running
    statistics are updated IN PLACE with the batch average of the per-instance mean and unbiased variance, as
    torch does: ``running = (1 - momentum) * running + momentum * mean_n(stat)``. Without it the running
    statistics normalise every instance.

    Args:
        input: (N, C, *) array, at least 2-D.
        running_mean: (C,) array or None. Default: None.
        running_var: (C,) array or None (given together with ``running_mean``). Default: None.
        weight: (C,) scale, or None for 1. Default: None.
        bias: (C,) shift, or None for 0. Default: None.
        use_input_stats: normalise by each instance's statistics. Default: True.
        momentum: weight of the new statistic in the running update. Default: 0.1.
        eps: added to the variance. Default: 1e-5.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.instance_norm(np.array([[[1.0, 3.0], [2.0, 2.0]]], dtype=np.float32), eps=0.0)
    array([[[-1.,  1.],
            [nan, nan]]], dtype=float32)
    """
    op = "instance_norm"
    call = Call(op, input=input, running_mean=running_mean, running_var=running_var, weight=weight, bias=bias)
    dt = call.check_dtype("input")
    momentum = _number(op, "momentum", momentum)
    eps = _number(op, "eps", eps)
    x, N, C, L = _channels(call)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}(): running_mean and running_var must either both be None or neither be None")
    rm = _running(call, "running_mean", C, dt, use_input_stats)
    rv = _running(call, "running_var", C, dt, use_input_stats)
    msg = _channel_message(call)
    w = _param(call, "weight", (C,), 1, dt, msg)
    b = _param(call, "bias", (C,), 0, dt, msg)
    if use_input_stats and L == 1:
        raise ValueError(
            f"{op}(): Expected more than 1 spatial element when training, got input size {tuple(call['input'].shape)}"
        )
    if not use_input_stats and rm is None:
        raise ValueError(f"{op}(): Expected running_mean and running_var to be defined when use_input_stats is false")
    out = call.empty(x.shape, dt)
    if out.size:
        if use_input_stats:
            mean = call.empty((N, C), dt)
            m2 = call.empty((N, C), dt)
            call.launch("group_norm", out, mean.reshape(N * C), m2.reshape(N * C), x, w, b, num_groups=C, eps=eps)
            if rm is not None:
                call.launch("running_update", rm, mean, divisor=1.0, momentum=momentum)
                call.launch("running_update", rv, m2, divisor=L - 1.0, momentum=momentum)
        else:
            call.launch("batch_norm", out, x, w, b, rm, rv, training=False, momentum=momentum, eps=eps)
    return call.wrap(out.reshape(call["input"].shape))


@public("norm", kernels=("layer_norm",))
def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Applies layer normalization over the trailing ``normalized_shape`` dims.

    Mirrors :func:`torch.nn.functional.layer_norm`.

    y = (x - mean) / sqrt(var + eps) * weight + bias, with the mean and biased variance of each row of the last
    ``len(normalized_shape)`` dims.

    Args:
        input: (*, *normalized_shape) array.
        normalized_shape: int or tuple of ints, the trailing dims to normalise over.
        weight: array of shape ``normalized_shape``, or None for 1. Default: None.
        bias: array of shape ``normalized_shape``, or None for 0. Default: None.
        eps: added to the variance. Default: 1e-5.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.layer_norm(np.array([[1.0, 3.0], [2.0, 6.0]], dtype=np.float32), (2,), eps=0.0)
    array([[-1.,  1.],
           [-1.,  1.]], dtype=float32)
    """
    out = _fast_layer_norm(input, normalized_shape, weight, bias, eps)
    if out is not None:
        return out
    op = "layer_norm"
    call = Call(op, input=input, weight=weight, bias=bias)
    dt = call.check_dtype("input")
    shape = _shape_tuple(op, normalized_shape)
    eps = _number(op, "eps", eps)
    x, M, K = _rows(call, "input", shape)
    w, b = _affine_like(call, shape, dt)
    out = call.empty((M, K), dt)
    if out.size:
        call.launch("layer_norm", out, x.reshape(M, K), w, b, eps=eps)
    return call.wrap(out.reshape(call["input"].shape))


def _plain_affine(weight, bias, shape, dt):
    """[weight, bias] for a fast path, as flat arrays of prod(shape) values: each None (then filled with 1 or 0) or
    a C-contiguous NumPy array of dtype ``dt`` and exactly ``shape``; None if either is anything else."""
    n = math.prod(shape)
    params = []
    for p, fill in ((weight, 1), (bias, 0)):
        if p is None:
            params.append(_filled(n, fill, dt))
        elif plain_float_array(p) and p.dtype is dt and p.shape == shape:
            params.append(p.reshape(n))
        else:
            return None
    return params


def _fast_layer_norm(input, normalized_shape, weight, bias, eps):
    """The common CPU call without the general path: a non-empty C-contiguous float32/float64 NumPy array, an int
    or a tuple or list of ints equal to its trailing dims, weight and bias None or such arrays of its dtype and
    exactly that shape, eps a Python int or float. The same launcher and operands as the general path (a missing
    weight or bias filled with 1 or 0), without its argument objects and checks (~7 us of a 14 us call on a small
    input). Returns the result, or None for any other call, which then takes the general path."""
    if not plain_float_array(input) or not input.size or type(eps) not in (int, float):
        return None
    shape = (normalized_shape,) if type(normalized_shape) is int else normalized_shape
    if type(shape) is list:
        shape = tuple(shape)
    if (type(shape) is not tuple or not 0 < len(shape) <= input.ndim or input.shape[input.ndim - len(shape):] != shape
            or not all(type(s) is int for s in shape)):
        return None
    K = math.prod(shape)
    dt = input.dtype
    params = _plain_affine(weight, bias, shape, dt)
    if params is None:
        return None
    out = _hostpool.empty(input.shape, dt)
    launch_cpu("layer_norm", "layer_norm", out.reshape(-1, K), input.reshape(-1, K), *params, eps=float(eps))
    return out


def _fast_batch_norm_eval(input, running_mean, running_var, weight, bias, momentum, eps):
    """The common CPU evaluation call without the general path: a non-empty C-contiguous float32/float64 NumPy input
    of at least 2 dims, running statistics and weight and bias (or None) C-contiguous NumPy arrays of its dtype and
    shape (C,), momentum and eps Python ints or floats. The same launcher and operands as the general path (a
    missing weight or bias filled with 1 or 0), without its argument objects and checks: a (32, 512) float32 call
    18.8 -> 12.0 us, (1, 256, 14, 14) 20.1 -> 13.2 us. Returns the result, or None for any other call, which then
    takes the general path."""
    if (not plain_float_array(input) or input.ndim < 2 or not input.size or type(eps) not in (int, float)
            or type(momentum) not in (int, float)):
        return None
    dt = input.dtype
    C = input.shape[1]
    for p in (running_mean, running_var):
        if not (plain_float_array(p) and p.dtype is dt and p.shape == (C,)):
            return None
    params = _plain_affine(weight, bias, (C,), dt)
    if params is None:
        return None
    N = input.shape[0]
    out = _hostpool.empty(input.shape, dt)
    launch_cpu("batch_norm", "batch_norm", out.reshape(N, C, -1), input.reshape(N, C, -1), *params, running_mean,
               running_var, training=False, momentum=float(momentum), eps=float(eps))
    return out


def _fast_group_norm(input, num_groups, weight, bias, eps):
    """The common CPU call without the general path: a C-contiguous float32/float64 NumPy input of at least 2 dims
    with more than one value per (sample, group), a Python int ``num_groups`` that divides its channels, weight and
    bias None or C-contiguous NumPy arrays of its dtype and shape (C,), eps a Python int or float. The same launcher
    and operands as the general path (a missing weight or bias filled with 1 or 0), without its argument objects
    and checks. float32, us per call, with the launcher's float64 copies of the statistics also gone: (1, 64, 28,
    28) G = 8 27.5 -> 17.3, (2, 256, 7, 7) G = 32 25.5 -> 16.0 (torch 12.2 and 11.5). Returns the result, or None
    for any other call, which then takes the general path (and its errors)."""
    if (not plain_float_array(input) or input.ndim < 2 or not input.size or type(num_groups) is not int
            or type(eps) not in (int, float)):
        return None
    N, C = input.shape[0], input.shape[1]
    L = input.size // (N * C)
    if num_groups < 1 or C % num_groups or N * (C // num_groups) * L == 1:
        return None
    dt = input.dtype
    params = _plain_affine(weight, bias, (C,), dt)
    if params is None:
        return None
    out = _hostpool.empty(input.shape, dt)
    R = N * num_groups
    launch_cpu("group_norm", "group_norm", out.reshape(N, C, L), np.empty(R, dt), np.empty(R, dt),
               input.reshape(N, C, L), *params, num_groups=num_groups, eps=float(eps))
    return out


def _affine_like(call, shape, dt):
    msg = (f"Expected {{name}} to be of same shape as normalized_shape, but got {{name}} of shape {{shape}} and "
           f"normalized_shape = {list(shape)}")
    return _param(call, "weight", shape, 1, dt, msg), _param(call, "bias", shape, 0, dt, msg)


@public("norm", kernels=("group_norm",))
def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Applies group normalization: the channels are split into ``num_groups`` groups and each (sample, group)
    is normalised by its own mean and biased variance, then scaled and shifted per channel.

    Mirrors :func:`torch.nn.functional.group_norm`.

    Args:
        input: (N, C, *) array, at least 2-D.
        num_groups: number of groups; must divide C.
        weight: (C,) scale, or None for 1. Default: None.
        bias: (C,) shift, or None for 0. Default: None.
        eps: added to the variance. Default: 1e-5.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.group_norm(np.array([[1.0, 3.0, 5.0, 9.0]], dtype=np.float32), 2, eps=0.0)
    array([[-1.,  1., -1.,  1.]], dtype=float32)
    """
    out = _fast_group_norm(input, num_groups, weight, bias, eps)
    if out is not None:
        return out
    op = "group_norm"
    call = Call(op, input=input, weight=weight, bias=bias)
    dt = call.check_dtype("input")
    eps = _number(op, "eps", eps)
    if isinstance(num_groups, bool) or not isinstance(num_groups, (numbers.Integral, np.integer)):
        raise TypeError(f"{op}(): argument 'num_groups' must be an int, got {num_groups!r}")
    x, N, C, L = _channels(call)
    G = int(num_groups)
    if G < 1 or C % G:
        raise ValueError(
            f"{op}(): Expected number of channels in input to be divisible by num_groups, but got input of shape "
            f"{list(call['input'].shape)} and num_groups={G}"
        )
    if N * (C // G) * L == 1:
        raise ValueError(
            f"{op}(): Expected more than 1 value per channel when training, got input size "
            f"{[N * C // G, G] + list(call['input'].shape[2:])}"
        )
    msg = _channel_message(call)
    w = _param(call, "weight", (C,), 1, dt, msg)
    b = _param(call, "bias", (C,), 0, dt, msg)
    out = call.empty(x.shape, dt)
    if out.size:
        mean = call.empty((N * G,), dt)
        m2 = call.empty((N * G,), dt)
        call.launch("group_norm", out, mean, m2, x, w, b, num_groups=G, eps=eps)
    return call.wrap(out.reshape(call["input"].shape))


@public("norm", kernels=("rms_norm",))
def rms_norm(input, normalized_shape, weight=None, eps=None):
    """Applies root-mean-square normalization over the trailing ``normalized_shape`` dims:
    y = x / sqrt(mean(x**2) + eps) * weight.

    Mirrors :func:`torch.nn.functional.rms_norm`.

    Args:
        input: (*, *normalized_shape) array.
        normalized_shape: int or tuple of ints, the trailing dims to normalise over.
        weight: array of shape ``normalized_shape``, or None for 1. Default: None.
        eps: added to the mean square; None means the machine epsilon of the input's dtype
            (``np.finfo(dtype).eps``), as torch. Default: None.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.rms_norm(np.array([[2.0, -2.0]], dtype=np.float32), (2,), eps=0.0)
    array([[ 1., -1.]], dtype=float32)
    """
    op = "rms_norm"
    call = Call(op, input=input, weight=weight)
    dt = call.check_dtype("input")
    shape = _shape_tuple(op, normalized_shape)
    eps = float(np.finfo(dt).eps) if eps is None else _number(op, "eps", eps)
    x, M, K = _rows(call, "input", shape)
    w = _affine_like(call, shape, dt)[0]
    out = call.empty((M, K), dt)
    if out.size:
        call.launch("rms_norm", out, x.reshape(M, K), w, eps=eps)
    return call.wrap(out.reshape(call["input"].shape))


# ---------------------------------------------------------------------------------------------------------------
# normalizations from papers


@public("norm", kernels=("switch_norm",))
def switch_norm(input, weight, bias, mean_weight, var_weight, running_mean, running_var, training=False,
                momentum=0.1, eps=1e-5, using_bn=True):
    """Applies switchable normalization (Luo et al. 2018, "Differentiable Learning-to-Normalize via Switchable
    Normalization"): a softmax-weighted mix of instance, layer and batch statistics.

    Not in torch. With x viewed as (N, C, L), following the authors' reference code::

        mean_in[n, c] = mean_l x[n, c, l]           var_in[n, c] = unbiased variance over l
        t[n, c] = var_in + mean_in**2
        mean_ln[n] = mean_c mean_in                  var_ln[n] = mean_c t - mean_ln**2
        mean_bn[c] = mean_n mean_in                  var_bn[c] = mean_n t - mean_bn**2   (training)
        mean_bn, var_bn = running_mean, running_var                                      (evaluation)
        wm, wv = softmax(mean_weight), softmax(var_weight)
        mean = wm[0] mean_in + wm[1] mean_ln + wm[2] mean_bn     (likewise var with wv)
        y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]

    In training with ``using_bn`` the running statistics (when given) are updated IN PLACE:
    ``running = (1 - momentum) * running + momentum * stat_bn``. Note: ``momentum`` follows torch's convention;
    the authors' code keeps ``momentum`` of the old value (its 0.9 is 0.1 here). Without ``using_bn`` only IN and
    LN are mixed and the running statistics are unused.

    Args:
        input: (N, C, *) array with at least one spatial dim and more than one spatial value.
        weight: (C,) scale, or None for 1.
        bias: (C,) shift, or None for 0.
        mean_weight: (3,) logits of the mean mix (IN, LN, BN), (2,) without ``using_bn``.
        var_weight: (3,) logits of the variance mix, (2,) without ``using_bn``.
        running_mean: (C,) array or None (then not updated; required in evaluation with ``using_bn``).
        running_var: (C,) array or None (likewise).
        training: use batch statistics for the BN part. Default: False.
        momentum: weight of the new statistic in the running update. Default: 0.1.
        eps: added to the variance. Default: 1e-5.
        using_bn: include the batch statistics in the mix. Default: True.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> x = np.array([[[1.0, 2.0, 3.0]], [[5.0, 7.0, 9.0]]], dtype=np.float32)
    >>> logits = np.array([0.0, -np.inf, -np.inf], dtype=np.float32)  # IN statistics only
    >>> nbops.switch_norm(x, None, None, logits, logits, None, None, training=True, eps=0.0)
    array([[[-1.,  0.,  1.]],
    <BLANKLINE>
           [[-1.,  0.,  1.]]], dtype=float32)
    """
    op = "switch_norm"
    call = Call(op, input=input, weight=weight, bias=bias, mean_weight=mean_weight, var_weight=var_weight,
                running_mean=running_mean, running_var=running_var)
    dt = call.check_dtype("input")
    momentum = _number(op, "momentum", momentum)
    eps = _number(op, "eps", eps)
    x, N, C, L = _channels(call, min_ndim=3)
    if L < 2:
        raise ValueError(
            f"{op}(): Expected more than 1 spatial element (the IN variance is unbiased), got input size "
            f"{tuple(call['input'].shape)}"
        )
    k = 3 if using_bn else 2
    mix = []
    for name in ("mean_weight", "var_weight"):
        if name not in call:
            raise TypeError(f"{op}(): argument '{name}' must be an array of {k} logits, got None")
        _dtype_like(call, name, dt)
        if tuple(call[name].shape) != (k,):
            raise ValueError(
                f"{op}(): {name} should have shape ({k},) with using_bn={bool(using_bn)}, got {tuple(call[name].shape)}"
            )
        mix.append(call.contiguous(call[name]))
    rm = _running(call, "running_mean", C, dt, training) if using_bn else None
    rv = _running(call, "running_var", C, dt, training) if using_bn else None
    if using_bn and not training and (rm is None or rv is None):
        raise ValueError(f"{op}(): running_mean and running_var must be defined in evaluation mode with using_bn")
    msg = f"{{name}} should have shape ({C},), got {{shape}}"
    w = _param(call, "weight", (C,), 1, dt, msg)
    b = _param(call, "bias", (C,), 0, dt, msg)
    out = call.empty(x.shape, dt)
    if out.size:
        call.launch("switch_norm", out, x, w, b, mix[0], mix[1], rm, rv, training=bool(training),
                    using_bn=bool(using_bn), momentum=momentum, eps=eps)
    return call.wrap(out.reshape(call["input"].shape))


@public("norm", kernels=("deep_norm",))
def deep_norm(x, fx, alpha, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Applies DeepNorm (Wang et al. 2022, "DeepNet: Scaling Transformers to 1,000 Layers"), the post-LN residual
    with an up-weighted skip: y = layer_norm(alpha * x + fx).

    Not in torch; fused in one pass (``alpha * x + fx`` is never written to memory on the CPU). Take ``alpha``
    (and the init gain ``beta``) from :func:`deep_norm_coefficients`.

    Args:
        x: (*, *normalized_shape) array, the residual branch's input.
        fx: array of ``x``'s shape, the sublayer's output f(x).
        alpha: number, the skip-connection weight.
        normalized_shape: int or tuple of ints, the trailing dims to normalise over.
        weight: array of shape ``normalized_shape``, or None for 1. Default: None.
        bias: array of shape ``normalized_shape``, or None for 0. Default: None.
        eps: added to the variance. Default: 1e-5.

    Returns:
        array of ``x``'s shape and dtype; same kind of array and device as x.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> x = np.array([[1.0, 2.0]], dtype=np.float32)
    >>> nbops.deep_norm(x, np.array([[0.0, 1.0]], dtype=np.float32), 2.0, (2,), eps=0.0)
    array([[-1.,  1.]], dtype=float32)
    """
    op = "deep_norm"
    call = Call(op, x=x, fx=fx, weight=weight, bias=bias)
    dt = call.check_dtype("x")
    if "fx" not in call:
        raise TypeError(f"{op}(): argument 'fx' must be an array, got None")
    _dtype_like(call, "fx", dt)
    if tuple(call["fx"].shape) != tuple(call["x"].shape):
        raise ValueError(f"{op}(): fx must have x's shape {tuple(call['x'].shape)}, got {tuple(call['fx'].shape)}")
    alpha = _number(op, "alpha", alpha)
    shape = _shape_tuple(op, normalized_shape)
    eps = _number(op, "eps", eps)
    xs, M, K = _rows(call, "x", shape)
    fxs = call.contiguous(call["fx"])
    w, b = _affine_like(call, shape, dt)
    out = call.empty((M, K), dt)
    if out.size:
        call.launch("deep_norm", out, xs.reshape(M, K), fxs.reshape(M, K), w, b, alpha=alpha, eps=eps)
    return call.wrap(out.reshape(call["x"].shape))


DeepNormCoefficients = namedtuple(
    "DeepNormCoefficients", ["encoder_alpha", "encoder_beta", "decoder_alpha", "decoder_beta"]
)


@public("norm", kernels=())
def deep_norm_coefficients(num_encoder_layers=0, num_decoder_layers=0):
    """DeepNet's alpha (DeepNorm's skip weight) and beta (the Xavier init gain of the FFN, value and output
    projections) for N encoder and M decoder layers (Wang et al. 2022, table in section 4):

        encoder only (M = 0):   alpha = (2N)^(1/4),             beta = (8N)^(-1/4)
        decoder only (N = 0):   alpha = (2M)^(1/4),             beta = (8M)^(-1/4)
        encoder-decoder:        encoder alpha = 0.81 (N^4 M)^(1/16), beta = 0.87 (N^4 M)^(-1/16)
                                decoder alpha = (3M)^(1/4),          beta = (12M)^(-1/4)

    Not in torch; plain host arithmetic, no kernel.

    Args:
        num_encoder_layers: N, the number of encoder layers (0 for none). Default: 0.
        num_decoder_layers: M, the number of decoder layers (0 for none). Default: 0.

    Returns:
        DeepNormCoefficients(encoder_alpha, encoder_beta, decoder_alpha, decoder_beta) of Python floats, None for
        a stack that does not exist.

    Targets: cpu, cuda (no arrays involved). Dtypes: not applicable.

    >>> import nbops
    >>> nbops.deep_norm_coefficients(num_encoder_layers=2)
    DeepNormCoefficients(encoder_alpha=1.4142135623730951, encoder_beta=0.5, decoder_alpha=None, decoder_beta=None)
    """
    op = "deep_norm_coefficients"
    counts = []
    for name, v in (("num_encoder_layers", num_encoder_layers), ("num_decoder_layers", num_decoder_layers)):
        if isinstance(v, bool) or not isinstance(v, (numbers.Integral, np.integer)):
            raise TypeError(f"{op}(): argument '{name}' must be an int, got {v!r}")
        if v < 0:
            raise ValueError(f"{op}(): argument '{name}' must be >= 0, got {v}")
        counts.append(int(v))
    N, M = counts
    if N == 0 and M == 0:
        raise ValueError(f"{op}(): at least one of num_encoder_layers and num_decoder_layers must be positive")
    if M == 0:
        return DeepNormCoefficients((2 * N) ** 0.25, (8 * N) ** -0.25, None, None)
    if N == 0:
        return DeepNormCoefficients(None, None, (2 * M) ** 0.25, (8 * M) ** -0.25)
    return DeepNormCoefficients(0.81 * (N ** 4 * M) ** (1 / 16), 0.87 * (N ** 4 * M) ** (-1 / 16),
                                (3 * M) ** 0.25, (12 * M) ** -0.25)


@public("norm", kernels=("dyt",))
def dyt(input, alpha, weight, bias):
    """Applies Dynamic Tanh (Zhu et al. 2025, "Transformers without Normalization"), the normalization-free
    replacement of LayerNorm: y = weight * tanh(alpha * x) + bias.

    Not in torch. ``weight`` and ``bias`` act on the trailing dims (channels last, as in a Transformer).

    Args:
        input: array of any shape (at least 1-D).
        alpha: number or 1-element array (the learnable scalar).
        weight: array of the shape of ``input``'s trailing dims (usually (C,)), or None for 1.
        bias: array of ``weight``'s shape, or None for 0.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.dyt(np.array([[0.0, 100.0]], dtype=np.float32), 0.5, np.array([2.0, 3.0], dtype=np.float32), None)
    array([[0., 3.]], dtype=float32)
    """
    op = "dyt"
    call = Call(op, input=input, alpha=alpha, weight=weight, bias=bias, scalars=("alpha",))
    dt = call.check_dtype("input")
    xshape = tuple(call["input"].shape)
    if not xshape:
        raise ValueError(f"{op}(): expected input with at least 1 dim, got a 0-d array")
    pshape = None
    for name in ("weight", "bias"):
        if name in call:
            s = tuple(call[name].shape)
            if pshape is not None and s != pshape:
                raise ValueError(f"{op}(): weight and bias must have one shape, got {pshape} and {s}")
            pshape = s
    pshape = pshape if pshape is not None else xshape[-1:]
    if not pshape or len(pshape) > len(xshape) or xshape[len(xshape) - len(pshape):] != pshape:
        raise ValueError(f"{op}(): weight and bias must have the shape of input's trailing dims, got {pshape} for "
                         f"input of shape {xshape}")
    msg = f"{{name}} must have shape {pshape}, got {{shape}}"
    w = _param(call, "weight", pshape, 1, dt, msg)
    b = _param(call, "bias", pshape, 0, dt, msg)
    if "alpha" in call:
        _dtype_like(call, "alpha", dt)
        if math.prod(call["alpha"].shape) != 1:
            raise ValueError(f"{op}(): alpha must be a number or a 1-element array, got shape "
                             f"{tuple(call['alpha'].shape)}")
        a = call.contiguous(call["alpha"]).reshape(1)
    else:
        a = _param(call, "alpha", (1,), _number(op, "alpha", alpha), dt, None)
    x = call.contiguous(call["input"])
    K = math.prod(pshape)
    M = math.prod(xshape) // K if K else 0
    out = call.empty((M, K), dt)
    if out.size:
        call.launch("dyt", out, x.reshape(M, K), a, w, b)
    return call.wrap(out.reshape(xshape))
