"""Pooling: max, average and adaptive pooling over 1 or 2 spatial dims. Mirrors :mod:`torch.nn.functional`'s pools.

Every op canonicalises its input to a C-contiguous stack of planes ``(P, H, W)`` with ``P = N * C`` (a 1-D pool is
a 2-D pool with ``H = 1``), so one compiled kernel per dtype serves the 1-D and the 2-D op, batched or not.
"""

import math
import numbers

import numpy as np

from .. import _hostpool
from .._dispatch import FLOAT_DTYPES, Call, launch_cpu, plain_float_array, public
from .._shapes import ntuple, plain_ints, pool_out_size

_INT64 = np.dtype(np.int64)


def _planes(call, nd, empty=None):
    """Validate the rank and sizes of ``call['input']`` for a pool over ``nd`` spatial dims; return the contiguous
    input viewed as ``(P, H, W)`` and the leading (batch and channel) shape.

    ``empty`` says which dims may be empty, as torch checks them: None (window pools: the batch dim of a batched
    input only), "first" (adaptive max: dim 0 of any input, an unbatched one's channels too) or "leading" (adaptive
    average: every dim before the spatial ones)."""
    call.check_dtype("input", FLOAT_DTYPES)
    rank = call.check_ndim("input", (nd + 1, nd + 2))
    x = call["input"]
    shape = tuple(int(s) for s in x.shape)
    first = {None: 1 if rank == nd + 2 else 0, "first": 1, "leading": rank - nd}[empty]
    for d in range(first, rank):
        if shape[d] == 0:
            raise ValueError(
                f"{call.op}(): expected input to have non-zero size for non-batch dimensions, but input has sizes "
                f"{list(shape)} with dimension {d} being empty"
            )
    lead = shape[:-nd]
    spatial = shape[-nd:]
    P = math.prod(lead)  # not np.prod: a NumPy call costs ~30 us when its code is out of cache (pooling: 0.2 ms)
    H, W = (1, spatial[0]) if nd == 1 else spatial
    x = call.contiguous(x)
    return x.reshape(P, H, W), lead


def _window_args(op, nd, kernel_size, stride, padding, dilation):
    """kernel, stride, padding and dilation as ``nd``-tuples, checked as torch checks them."""
    k = ntuple(op, "kernel_size", kernel_size, nd)
    s = k if stride is None or (not isinstance(stride, numbers.Integral) and len(stride) == 0) else ntuple(
        op, "stride", stride, nd)
    p = ntuple(op, "padding", padding, nd)
    d = ntuple(op, "dilation", dilation, nd)
    for name, vals in (("kernel_size", k), ("stride", s), ("dilation", d)):
        if any(v <= 0 for v in vals):
            raise ValueError(f"{op}(): {name} must be greater than zero, but got {name}={vals}")
    if any(v < 0 for v in p):
        raise ValueError(f"{op}(): padding must be non-negative, but got padding={p}")
    if any(pv > kv // 2 for pv, kv in zip(p, k)):
        raise ValueError(f"{op}(): pad should be at most half of kernel size, but got padding={p} and kernel_size={k}")
    return k, s, p, d


def _out_sizes(op, lead, nd, HW, k, s, p, d, ceil_mode):
    sizes = tuple(pool_out_size(n, kv, sv, pv, dv, bool(ceil_mode)) for n, kv, sv, pv, dv in zip(HW, k, s, p, d))
    if any(o < 1 for o in sizes):
        raise ValueError(
            f"{op}(): Given input size: {lead[-1:] + HW}. Calculated output size: {lead[-1:] + sizes}. "
            f"Output size is too small"
        )
    return sizes


def _as2d(nd, t, fill):
    return t if nd == 2 else (fill,) + t


def _fast_window(nd, input, kernel_size, stride, padding, dilation, ceil_mode):
    """The window of a common CPU pooling call, for the pools' fast paths: a batched non-empty C-contiguous
    float32/float64 NumPy input of rank nd + 2, kernel_size, stride (or None), padding and dilation Python ints or
    tuples or lists of nd of them, padding at most half the window, a bool ceil_mode, and every output size >= 1.
    Returns (kernel, stride, padding, dilation, output sizes) as nd-tuples, or None for any other call, which then
    takes the general path (and its errors). 2x2 windows over 1 x 8 x 8 x 8 float32, us a call: max pooling
    17.7-18.5 -> 9.1-9.3 (torch 4.4-5.0), average pooling 19.4-19.6 -> 11.1-11.2 (torch 3.2-3.6)."""
    if not (plain_float_array(input) and input.ndim == nd + 2 and input.size and type(ceil_mode) is bool):
        return None
    k = plain_ints(kernel_size, nd, 1)
    s = k if stride is None else plain_ints(stride, nd, 1)
    p, d = plain_ints(padding, nd, 0), plain_ints(dilation, nd, 1)
    if k is None or s is None or p is None or d is None:
        return None
    osz = []
    for n, kv, sv, pv, dv in zip(input.shape[2:], k, s, p, d):
        size = pool_out_size(n, kv, sv, pv, dv, ceil_mode)
        if pv > kv // 2 or size < 1:
            return None
        osz.append(size)
    return k, s, p, d, tuple(osz)


def _fast_planes(nd, input, osz):
    """(the input as (P, H, W) planes, the output array, the output as (P, OH, OW) planes) for a fast path."""
    P = input.shape[0] * input.shape[1]
    out = _hostpool.empty(input.shape[:2] + osz, input.dtype)
    if nd == 1:
        return input.reshape(P, 1, -1), out, out.reshape(P, 1, -1)
    return input.reshape(P, input.shape[2], -1), out, out.reshape(P, osz[0], -1)


def _max_pool(op, nd, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    window = None if return_indices else _fast_window(nd, input, kernel_size, stride, padding, dilation, ceil_mode)
    if window is not None:
        (KH, KW), (SH, SW), (PH, PW), (DH, DW) = (_as2d(nd, t, f) for t, f in zip(window[:4], (1, 1, 0, 1)))
        x, out, planes = _fast_planes(nd, input, window[4])
        launch_cpu(op, "max_pool", planes, None, x, KH=KH, KW=KW, SH=SH, SW=SW, PH=PH, PW=PW, DH=DH, DW=DW)
        return out
    call = Call(op, input=input)
    x, lead = _planes(call, nd)
    k, s, p, d = _window_args(op, nd, kernel_size, stride, padding, dilation)
    HW = tuple(int(v) for v in call["input"].shape[-nd:])
    osz = _out_sizes(op, lead, nd, HW, k, s, p, d, ceil_mode)
    P = x.shape[0]
    (OH, OW), (KH, KW), (SH, SW), (PH, PW), (DH, DW) = (_as2d(nd, t, f) for t, f in
                                                        ((osz, 1), (k, 1), (s, 1), (p, 0), (d, 1)))
    out = call.empty((P, OH, OW), x.dtype)
    idx = call.empty((P, OH, OW), _INT64) if return_indices else None
    if P:
        call.launch("max_pool", out, idx, x, KH=KH, KW=KW, SH=SH, SW=SW, PH=PH, PW=PW, DH=DH, DW=DW)
    shape = lead + osz
    if return_indices:
        return call.wrap(out.reshape(shape)), call.wrap(idx.reshape(shape))
    return call.wrap(out.reshape(shape))


@public("pooling", kernels=("max_pool",))
def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Applies a 1-D max pooling over an input made of several planes.

    Mirrors :func:`torch.nn.functional.max_pool1d`. Padding counts as ``-inf``; a NaN in a window makes that
    output NaN (its index is the window's last NaN).

    Args:
        input: ``(N, C, L)`` or ``(C, L)``.
        kernel_size: window length (int or 1-tuple).
        stride: step between windows. Default: ``kernel_size``.
        padding: implicit ``-inf`` padding on both sides, at most ``kernel_size // 2``. Default: 0.
        dilation: spacing between window elements. Default: 1.
        ceil_mode: round the output length up (the last window must start inside the input or the left
            padding). Default: False.
        return_indices: also return the int64 position in ``L`` of each maximum. Default: False.

    Returns:
        ``(N, C, L_out)`` (or ``(C, L_out)``) of input's dtype, and the indices when ``return_indices``; same kind
        of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.max_pool1d(np.array([[[1.0, 3.0, 2.0, 0.0]]], dtype=np.float32), 2)
    array([[[3., 2.]]], dtype=float32)
    """
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


@public("pooling", kernels=("max_pool",))
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Applies a 2-D max pooling over an input made of several planes.

    Mirrors :func:`torch.nn.functional.max_pool2d`. Padding counts as ``-inf``; a NaN in a window makes that
    output NaN (its index is the window's last NaN in row-major order).

    Args:
        input: ``(N, C, H, W)`` or ``(C, H, W)``.
        kernel_size: window size (int or pair).
        stride: step between windows (int or pair). Default: ``kernel_size``.
        padding: implicit ``-inf`` padding on both sides of each dim, at most half the kernel. Default: 0.
        dilation: spacing between window elements (int or pair). Default: 1.
        ceil_mode: round output sizes up (the last window must start inside the input or the left padding).
            Default: False.
        return_indices: also return the int64 flat position ``h * W + w`` in each ``H x W`` plane of each
            maximum. Default: False.

    Returns:
        ``(N, C, H_out, W_out)`` (or ``(C, H_out, W_out)``) of input's dtype, and the indices when
        ``return_indices``; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> nbops.max_pool2d(x, 2)
    array([[[[ 5.,  7.],
             [13., 15.]]]], dtype=float32)
    """
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def _avg_pool(op, nd, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    window = None
    if divisor_override is None and type(count_include_pad) is bool:
        window = _fast_window(nd, input, kernel_size, stride, padding, 1, ceil_mode)
    if window is not None:
        (KH, KW), (SH, SW), (PH, PW) = (_as2d(nd, t, f) for t, f in zip(window[:3], (1, 1, 0)))
        x, out, planes = _fast_planes(nd, input, window[4])
        launch_cpu(op, "avg_pool", planes, x, KH=KH, KW=KW, SH=SH, SW=SW, PH=PH, PW=PW,
                   count_include_pad=count_include_pad, divisor=0)
        return out
    call = Call(op, input=input)
    x, lead = _planes(call, nd)
    k, s, p, d = _window_args(op, nd, kernel_size, stride, padding, 1)
    if divisor_override is not None:
        if not isinstance(divisor_override, (numbers.Integral, np.integer)) or isinstance(divisor_override, bool):
            raise TypeError(f"{op}(): argument 'divisor_override' must be an int or None, got {divisor_override!r}")
        if divisor_override == 0:
            raise ValueError(f"{op}(): divisor must be not zero")
    HW = tuple(int(v) for v in call["input"].shape[-nd:])
    osz = _out_sizes(op, lead, nd, HW, k, s, p, d, ceil_mode)
    P = x.shape[0]
    (OH, OW), (KH, KW), (SH, SW), (PH, PW) = (_as2d(nd, t, f) for t, f in ((osz, 1), (k, 1), (s, 1), (p, 0)))
    out = call.empty((P, OH, OW), x.dtype)
    if P:
        call.launch("avg_pool", out, x, KH=KH, KW=KW, SH=SH, SW=SW, PH=PH, PW=PW,
                    count_include_pad=bool(count_include_pad),
                    divisor=0 if divisor_override is None else int(divisor_override))
    return call.wrap(out.reshape(lead + osz))


@public("pooling", kernels=("avg_pool",))
def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Applies a 1-D average pooling over an input made of several planes.

    Mirrors :func:`torch.nn.functional.avg_pool1d`.

    Args:
        input: ``(N, C, L)`` or ``(C, L)``.
        kernel_size: window length (int or 1-tuple).
        stride: step between windows. Default: ``kernel_size``.
        padding: implicit zero padding on both sides, at most ``kernel_size // 2``. Default: 0.
        ceil_mode: round the output length up (the last window must start inside the input or the left
            padding). Default: False.
        count_include_pad: divide by the window length clipped to the padded input (True) or by the number of
            input elements in the window (False). Default: True.

    Returns:
        ``(N, C, L_out)`` (or ``(C, L_out)``) of input's dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.avg_pool1d(np.array([[[1.0, 3.0, 2.0, 0.0]]], dtype=np.float32), 2)
    array([[[2., 1.]]], dtype=float32)
    """
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


@public("pooling", kernels=("avg_pool",))
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Applies a 2-D average pooling over an input made of several planes.

    Mirrors :func:`torch.nn.functional.avg_pool2d`, including its divisor under ``ceil_mode`` and padding: with
    ``count_include_pad`` the window is clipped to the padded input before it is counted.

    Args:
        input: ``(N, C, H, W)`` or ``(C, H, W)``.
        kernel_size: window size (int or pair).
        stride: step between windows (int or pair). Default: ``kernel_size``.
        padding: implicit zero padding on both sides of each dim, at most half the kernel. Default: 0.
        ceil_mode: round output sizes up. Default: False.
        count_include_pad: count padding elements in the divisor. Default: True.
        divisor_override: a nonzero int to divide every window sum by instead. Default: None.

    Returns:
        ``(N, C, H_out, W_out)`` (or ``(C, H_out, W_out)``) of input's dtype; same kind of array and device as
        input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> nbops.avg_pool2d(x, 2)
    array([[[[ 2.5,  4.5],
             [10.5, 12.5]]]], dtype=float32)
    """
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


def _adaptive_size(op, nd, output_size, HW):
    """``output_size`` as an ``nd``-tuple; ``None`` entries (2-D only, as torch) take the input's size."""
    if nd == 2 and not isinstance(output_size, (numbers.Integral, np.integer)) and output_size is not None:
        try:
            items = tuple(output_size)
        except TypeError:
            items = None
        if items is not None and len(items) == 2:
            output_size = tuple(h if v is None else v for v, h in zip(items, HW))
    size = ntuple(op, "output_size", output_size, nd)
    if any(v < 0 for v in size):
        raise ValueError(f"{op}(): elements of output_size must be greater than or equal to 0 but received {size}")
    return size


def _adaptive(op, nd, input, output_size, want_max, return_indices):
    call = Call(op, input=input)
    HW = tuple(int(v) for v in call["input"].shape[-nd:]) if len(call["input"].shape) >= nd else ()
    x, lead = _planes(call, nd, "first" if want_max else "leading")
    osz = _adaptive_size(op, nd, output_size, HW)
    P = x.shape[0]
    OH, OW = _as2d(nd, osz, 1)
    out = call.empty((P, OH, OW), x.dtype)
    idx = call.empty((P, OH, OW), _INT64) if want_max else None
    if out.size:
        if want_max:
            call.launch("adaptive_max_pool", out, idx, x)
        else:
            call.launch("adaptive_avg_pool", out, x)
    shape = lead + osz
    if return_indices:
        return call.wrap(out.reshape(shape)), call.wrap(idx.reshape(shape))
    return call.wrap(out.reshape(shape))


def _fast_adaptive_avg2d(input, output_size):
    """adaptive_avg_pool2d's common call run without the general path: a C-contiguous float32/float64 NumPy
    ``(N, C, H, W)`` or ``(C, H, W)`` array with no empty dim and ``output_size`` one int >= 1 (global average
    pooling among them). No check can fail there; the general path's Python costs ~40 us per call when its code is
    not in the cache, next to a 0.13-0.2 ms kernel for N32 C2048 7x7. Returns None for any other call."""
    if not plain_float_array(input) or type(output_size) is not int or output_size < 1:
        return None
    shape = input.shape
    if len(shape) not in (3, 4) or not all(shape):
        return None
    lead = shape[:-2]
    P = math.prod(lead)
    out = np.empty((P, output_size, output_size), input.dtype)
    launch_cpu("adaptive_avg_pool2d", "adaptive_avg_pool", out, input.reshape(P, shape[-2], shape[-1]))
    return out.reshape(lead + (output_size, output_size))


@public("pooling", kernels=("adaptive_avg_pool",))
def adaptive_avg_pool1d(input, output_size):
    """Applies a 1-D adaptive average pooling: output bin ``i`` averages ``[floor(i*L/O), ceil((i+1)*L/O))``.

    Mirrors :func:`torch.nn.functional.adaptive_avg_pool1d`.

    Args:
        input: ``(N, C, L)`` or ``(C, L)``.
        output_size: the output length ``O`` (int or 1-tuple, >= 0).

    Returns:
        ``(N, C, O)`` (or ``(C, O)``) of input's dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.adaptive_avg_pool1d(np.array([[[1.0, 3.0, 2.0]]], dtype=np.float32), 2)
    array([[[2. , 2.5]]], dtype=float32)
    """
    return _adaptive("adaptive_avg_pool1d", 1, input, output_size, False, False)


@public("pooling", kernels=("adaptive_avg_pool",))
def adaptive_avg_pool2d(input, output_size):
    """Applies a 2-D adaptive average pooling with torch's overlapping bins; ``adaptive_avg_pool2d(x, 1)`` is global
    average pooling.

    Mirrors :func:`torch.nn.functional.adaptive_avg_pool2d`.

    Args:
        input: ``(N, C, H, W)`` or ``(C, H, W)``.
        output_size: ``(OH, OW)`` or one int for both; a ``None`` entry keeps that input size.

    Returns:
        ``(N, C, OH, OW)`` (or ``(C, OH, OW)``) of input's dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> nbops.adaptive_avg_pool2d(x, 1)
    array([[[[7.5]]]], dtype=float32)
    """
    out = _fast_adaptive_avg2d(input, output_size)
    if out is not None:
        return out
    return _adaptive("adaptive_avg_pool2d", 2, input, output_size, False, False)


@public("pooling", kernels=("adaptive_max_pool",))
def adaptive_max_pool1d(input, output_size, return_indices=False):
    """Applies a 1-D adaptive max pooling over torch's bins; NaN propagates.

    Mirrors :func:`torch.nn.functional.adaptive_max_pool1d`.

    Args:
        input: ``(N, C, L)`` or ``(C, L)``.
        output_size: the output length ``O`` (int or 1-tuple, >= 0).
        return_indices: also return the int64 position in ``L`` of each maximum. Default: False.

    Returns:
        ``(N, C, O)`` (or ``(C, O)``) of input's dtype, and the indices when ``return_indices``; same kind of array
        and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.adaptive_max_pool1d(np.array([[[1.0, 3.0, 2.0]]], dtype=np.float32), 2)
    array([[[3., 3.]]], dtype=float32)
    """
    return _adaptive("adaptive_max_pool1d", 1, input, output_size, True, return_indices)


@public("pooling", kernels=("adaptive_max_pool",))
def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Applies a 2-D adaptive max pooling over torch's bins; NaN propagates.

    Mirrors :func:`torch.nn.functional.adaptive_max_pool2d`.

    Args:
        input: ``(N, C, H, W)`` or ``(C, H, W)``.
        output_size: ``(OH, OW)`` or one int for both; a ``None`` entry keeps that input size.
        return_indices: also return the int64 flat position ``h * W + w`` in each plane of each maximum.
            Default: False.

    Returns:
        ``(N, C, OH, OW)`` (or ``(C, OH, OW)``) of input's dtype, and the indices when ``return_indices``; same
        kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> nbops.adaptive_max_pool2d(x, (1, None))
    array([[[[12., 13., 14., 15.]]]], dtype=float32)
    """
    return _adaptive("adaptive_max_pool2d", 2, input, output_size, True, return_indices)
