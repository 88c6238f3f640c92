"""Convolutions. Mirrors :func:`torch.nn.functional.conv1d`, ``conv2d``, ``conv_transpose1d`` and
``conv_transpose2d``.

All four run on two launchers, ``conv2d`` and ``conv_transpose2d``, over canonical 4-D NCHW arrays: 1-D ops view
their input as height-1 images and unbatched inputs gain a batch of one. The public functions validate every
argument once, with torch's rules and wording, and resolve ``padding='same'`` to explicit (possibly asymmetric)
padding.
"""

import numbers

import numpy as np

from .. import _hostpool
from .._dispatch import FLOAT_DTYPES, Call, launch_cpu, plain_float_array, public
from .._shapes import conv_transpose_out_size, ntuple, plain_ints


def _int(op, name, value, minimum, message):
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{op}(): argument '{name}' must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{op}(): {message}, got {name}={value}")
    return int(value)


def _tuple(op, name, value, nd, minimum, message):
    out = ntuple(op, name, value, nd)
    if any(v < minimum for v in out):
        raise ValueError(f"{op}(): {message}, got {name}={value!r}")
    return out


def _prepare(op, nd, transposed, input, weight, bias, groups):
    """Check arrays, dtypes, ranks and channel counts; return (call, x, w, b, unbatched) with x and w as 2-D
    convolution operands (N, C, H, W) and (A, B, KH, KW), contiguous, in the input's dtype."""
    call = Call(op, input=input, weight=weight, bias=bias)
    dtype = call.check_dtype("input", FLOAT_DTYPES)
    for name in ("weight", "bias"):
        if name in call and np.dtype(call[name].dtype) != dtype:
            raise TypeError(
                f"{op}(): expected '{name}' to have the input's dtype {dtype}, got {np.dtype(call[name].dtype)}"
            )
    rank = call.check_ndim("input", (nd + 1, nd + 2))
    call.check_ndim("weight", (nd + 2,))
    groups = _int(op, "groups", groups, 1, "non-positive groups is not supported")
    x, w = call["input"], call["weight"]
    unbatched = rank == nd + 1
    xshape = (1,) + tuple(x.shape) if unbatched else tuple(x.shape)
    wshape = tuple(w.shape)
    C = xshape[1]
    if transposed:
        if wshape[0] != C:
            raise ValueError(
                f"{op}(): Given transposed=1, weight of size {list(wshape)}, expected input{list(xshape)} to have "
                f"{wshape[0]} channels, but got {C} channels instead (argument 'weight')"
            )
        if C % groups:
            raise ValueError(
                f"{op}(): Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, but got "
                f"weight of size {list(wshape)} instead (argument 'groups')"
            )
        OC = wshape[1] * groups
    else:
        if wshape[0] < 1:
            raise ValueError(
                f"{op}(): Given groups={groups}, expected weight to be at least 1 at dimension 0, but got weight of "
                f"size {list(wshape)} instead (argument 'weight')"
            )
        if wshape[0] % groups:
            raise ValueError(
                f"{op}(): Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, but got "
                f"weight of size {list(wshape)} instead (argument 'groups')"
            )
        if wshape[1] * groups != C:
            raise ValueError(
                f"{op}(): Given groups={groups}, weight of size {list(wshape)}, expected input{list(xshape)} to have "
                f"{wshape[1] * groups} channels, but got {C} channels instead (argument 'weight')"
            )
        OC = wshape[0]
    b = None
    if "bias" in call:
        if tuple(call["bias"].shape) != (OC,):
            raise ValueError(
                f"{op}(): Given weight of size {list(wshape)}, expected bias to be 1-dimensional with {OC} elements, "
                f"but got bias of size {list(call['bias'].shape)} instead (argument 'bias')"
            )
        b = call.contiguous(call["bias"])
    x = call.contiguous(x).reshape(xshape if nd == 2 else xshape[:2] + (1, xshape[2]))
    w = call.contiguous(w).reshape(wshape if nd == 2 else wshape[:2] + (1, wshape[2]))
    return call, x, w, b, unbatched


def _finish(call, out, nd, unbatched):
    if nd == 1:
        out = out.reshape(out.shape[:2] + (out.shape[3],))
    if unbatched:
        out = out.reshape(out.shape[1:])
    return call.wrap(out)


def _plain_conv_args(nd, input, weight, groups, stride, padding, dilation):
    """The fast paths' first test: (stride, padding, dilation) as nd-tuples (``plain_ints``) when input and weight
    are batched non-empty C-contiguous float32/float64 NumPy arrays of one dtype and rank nd + 2 and ``groups`` is a
    Python int >= 1; else None."""
    if not (plain_float_array(input) and plain_float_array(weight) and input.dtype is weight.dtype
            and input.ndim == nd + 2 and weight.ndim == nd + 2 and input.size and weight.size
            and type(groups) is int and groups >= 1):
        return None
    geometry = plain_ints(stride, nd, 1), plain_ints(padding, nd, 0), plain_ints(dilation, nd, 1)
    return None if None in geometry else geometry


def _plain_bias(bias, input, OC):
    """Whether ``bias`` is None or a C-contiguous NumPy array of input's dtype and shape (OC,)."""
    return bias is None or (plain_float_array(bias) and bias.dtype is input.dtype and bias.shape == (OC,))


def _fast_conv(op, nd, input, weight, bias, stride, padding, dilation, groups):
    """The common CPU call without the general path: batched non-empty C-contiguous float32/float64 NumPy input and
    weight of one dtype and rank nd + 2, bias None or such an array of shape (OC,), stride, padding and dilation
    Python ints or tuples or lists of nd of them (padding not a string), a Python int ``groups`` that fits the
    channels, a kernel no larger than the padded input. The same launcher and operands as the general path, without
    its argument objects and checks: 1 x 3 x 8 x 8 with 4 x 3 x 3 x 3, padding 1: 26.2-28.0 -> 12.6-14.0 us a call
    (torch 6.3-7.5; the launcher itself 8.2-9.2). Returns the result, or None for any other call, which then takes
    the general path (and its errors)."""
    geometry = _plain_conv_args(nd, input, weight, groups, stride, padding, dilation)
    if geometry is None:
        return None
    stride, pads, dilation = geometry
    N, C = input.shape[0], input.shape[1]
    OC, ICG = weight.shape[0], weight.shape[1]
    if OC % groups or ICG * groups != C or not _plain_bias(bias, input, OC):
        return None
    osz = []
    for size, k, st, p, d in zip(input.shape[2:], weight.shape[2:], stride, pads, dilation):
        span = size + 2 * p - d * (k - 1) - 1
        if span < 0:
            return None
        osz.append(span // st + 1)
    out = _hostpool.empty((N, OC, *osz), input.dtype)
    if nd == 1:
        launch_cpu(op, "conv2d", out.reshape(N, OC, 1, osz[0]), input.reshape(N, C, 1, -1),
                   weight.reshape(OC, ICG, 1, -1), bias, (1,) + stride, (0, 0, pads[0], pads[0]), (1,) + dilation,
                   groups)
    else:
        launch_cpu(op, "conv2d", out, input, weight, bias, stride, (pads[0], pads[0], pads[1], pads[1]), dilation,
                   groups)
    return out


def _conv(op, nd, input, weight, bias, stride, padding, dilation, groups):
    out = _fast_conv(op, nd, input, weight, bias, stride, padding, dilation, groups)
    if out is not None:
        return out
    call, x, w, b, unbatched = _prepare(op, nd, False, input, weight, bias, groups)
    stride = _tuple(op, "stride", stride, nd, 1, "non-positive stride is not supported")
    dilation = _tuple(op, "dilation", dilation, nd, 1, "dilation should be greater than zero")
    ksize = tuple(w.shape[4 - nd:])
    if isinstance(padding, str):
        if padding == "valid":
            pads = [(0, 0)] * nd
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{op}(): padding='same' is not supported for strided convolutions (argument "
                                 f"'padding')")
            # torch pads the extra element of an even effective kernel on the right/bottom
            pads = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for d, k in zip(dilation, ksize)]
        else:
            raise ValueError(f"{op}(): Invalid padding string {padding!r} (argument 'padding'); expected 'same', "
                             f"'valid', an int or a tuple of {nd} ints")
    else:
        pads = [(p, p) for p in _tuple(op, "padding", padding, nd, 0, "negative padding is not supported")]
    spatial = tuple(x.shape[4 - nd:])
    padded = [s + lo + hi for s, (lo, hi) in zip(spatial, pads)]
    eff = [d * (k - 1) + 1 for d, k in zip(dilation, ksize)]
    if any(e > p for e, p in zip(eff, padded)):
        raise ValueError(
            f"{op}(): Calculated padded input size per channel: ({' x '.join(map(str, padded))}). Kernel size: "
            f"({' x '.join(map(str, eff))}). Kernel size can't be greater than actual input size (argument 'weight')"
        )
    osz = [(p - e) // s + 1 for p, e, s in zip(padded, eff, stride)]
    if nd == 1:
        stride, dilation, pads, osz = (1,) + stride, (1,) + dilation, [(0, 0)] + pads, [1] + osz
    out = call.empty((x.shape[0], w.shape[0]) + tuple(osz), x.dtype)
    if out.size:
        call.launch("conv2d", out, x, w, b, stride, pads[0] + pads[1], dilation, groups)
    return _finish(call, out, nd, unbatched)


def _output_padding(op, nd, xshape, unbatched, ksize, stride, padding, dilation, output_padding, output_size):
    """output_padding as given, or the one that makes the output ``output_size`` (as nn.ConvTranspose does)."""
    if output_size is None:
        return _tuple(op, "output_padding", output_padding, nd, 0, "negative output_padding is not supported")
    try:
        size = [int(s) for s in output_size]
    except TypeError:
        raise TypeError(f"{op}(): argument 'output_size' must be a sequence of ints, got {output_size!r}") from None
    lead = 1 if unbatched else 2
    if len(size) == lead + nd:
        size = size[lead:]
    if len(size) != nd:
        raise ValueError(f"{op}(): for {nd + lead}D input, output_size must have {nd} or {nd + lead} elements "
                         f"(got {len(output_size)}) (argument 'output_size')")
    lo = [conv_transpose_out_size(xshape[2 + i], ksize[i], stride[i], padding[i], dilation[i], 0) for i in range(nd)]
    hi = [m + s - 1 for m, s in zip(lo, stride)]
    if any(not a <= s <= b for s, a, b in zip(size, lo, hi)):
        raise ValueError(f"{op}(): requested an output size of {size}, but valid sizes range from {lo} to {hi} (for "
                         f"an input of {list(xshape[2:])}) (argument 'output_size')")
    return tuple(s - a for s, a in zip(size, lo))


def _fast_conv_transpose(op, nd, input, weight, bias, stride, padding, output_padding, groups, dilation):
    """``_fast_conv`` for the transposed convolutions (no ``output_size``): weight (C, OC / groups, *kernel), an
    output padding below the stride or the dilation on each axis, a positive output size. 1 x 8 x 8 x 8 with 8 x 4
    x 3 x 3, stride 2, padding 1: 61 -> 37-39 us a call, the launcher 32-36 of it (torch 8.1). Returns the result, or
    None for any other call (the general path then parses it and raises its errors)."""
    geometry = _plain_conv_args(nd, input, weight, groups, stride, padding, dilation)
    opad = plain_ints(output_padding, nd, 0)
    if geometry is None or opad is None:
        return None
    stride, pads, dilation = geometry
    N, C = input.shape[0], input.shape[1]
    OC = weight.shape[1] * groups
    if weight.shape[0] != C or C % groups or not _plain_bias(bias, input, OC):
        return None
    osz = []
    for size, k, st, p, d, o in zip(input.shape[2:], weight.shape[2:], stride, pads, dilation, opad):
        length = conv_transpose_out_size(size, k, st, p, d, o)
        if o >= max(st, d) or length <= 0:
            return None
        osz.append(length)
    out = _hostpool.empty((N, OC, *osz), input.dtype)
    if nd == 1:
        launch_cpu(op, "conv_transpose2d", out.reshape(N, OC, 1, osz[0]), input.reshape(N, C, 1, -1),
                   weight.reshape(C, -1, 1, weight.shape[2]), bias, (1,) + stride, (0,) + pads, (1,) + dilation,
                   groups)
    else:
        launch_cpu(op, "conv_transpose2d", out, input, weight, bias, stride, pads, dilation, groups)
    return out


def _conv_transpose(op, nd, input, weight, bias, stride, padding, output_padding, groups, dilation, output_size):
    if output_size is None:
        out = _fast_conv_transpose(op, nd, input, weight, bias, stride, padding, output_padding, groups, dilation)
        if out is not None:
            return out
    call, x, w, b, unbatched = _prepare(op, nd, True, input, weight, bias, groups)
    stride = _tuple(op, "stride", stride, nd, 1, "non-positive stride is not supported")
    dilation = _tuple(op, "dilation", dilation, nd, 1, "dilation should be greater than zero")
    if isinstance(padding, str):
        raise TypeError(f"{op}(): argument 'padding' must be an int or a tuple of {nd} ints, got {padding!r}")
    padding = _tuple(op, "padding", padding, nd, 0, "negative padding is not supported")
    ksize = tuple(w.shape[4 - nd:])
    xshape = tuple(x.shape[:2]) + tuple(x.shape[4 - nd:])
    opad = _output_padding(op, nd, xshape, unbatched, ksize, stride, padding, dilation, output_padding, output_size)
    if any(o >= max(s, d) for o, s, d in zip(opad, stride, dilation)):
        names = ["height", "width"] if nd == 2 else ["width"]
        got = " ".join(
            f"output_padding_{n}: {o}" for n, o in zip(names, opad)
        ) + " " + " ".join(f"stride_{n}: {s}" for n, s in zip(names, stride)) + " " + " ".join(
            f"dilation_{n}: {d}" for n, d in zip(names, dilation))
        raise ValueError(f"{op}(): output padding must be smaller than either stride or dilation, but got {got} "
                         f"(argument 'output_padding')")
    osz = [conv_transpose_out_size(xshape[2 + i], ksize[i], stride[i], padding[i], dilation[i], opad[i])
           for i in range(nd)]
    if any(o <= 0 for o in osz):
        raise ValueError(
            f"{op}(): Given input size per channel: ({' x '.join(map(str, xshape[2:]))}). Calculated output size per "
            f"channel: ({' x '.join(map(str, osz))}). Output size is too small (argument 'padding')"
        )
    if nd == 1:
        stride, dilation, padding, osz = (1,) + stride, (1,) + dilation, (0,) + padding, [1] + osz
    OC = w.shape[1] * groups
    out = call.empty((x.shape[0], OC) + tuple(osz), x.dtype)
    if out.size:
        call.launch("conv_transpose2d", out, x, w, b, stride, padding, dilation, groups)
    return _finish(call, out, nd, unbatched)


@public("conv", kernels=("conv2d",))
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Applies a 1-D convolution (cross-correlation) over an input signal of several channels.

    Mirrors :func:`torch.nn.functional.conv1d`.

    Args:
        input: (N, C_in, L) or unbatched (C_in, L).
        weight: (C_out, C_in / groups, kL).
        bias: optional (C_out,). Default: None.
        stride: int or 1-tuple, >= 1. Default: 1.
        padding: int or 1-tuple >= 0, or 'valid' (no padding) or 'same' (output length = input length; stride must
            be 1; an odd total padding puts the extra element on the right, as torch does). Default: 0.
        dilation: int or 1-tuple, >= 1. Default: 1.
        groups: number of blocked connections from input to output channels; divides C_in and C_out. Default: 1.

    Returns:
        (N, C_out, L_out) or (C_out, L_out), input's dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.conv1d(np.ones((1, 1, 5), np.float32), np.ones((1, 1, 3), np.float32), padding=1)
    array([[[2., 3., 3., 3., 2.]]], dtype=float32)
    """
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


@public("conv", kernels=("conv2d",))
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Applies a 2-D convolution (cross-correlation) over an input image of several channels.

    Mirrors :func:`torch.nn.functional.conv2d`.

    Args:
        input: (N, C_in, H, W) or unbatched (C_in, H, W).
        weight: (C_out, C_in / groups, kH, kW).
        bias: optional (C_out,). Default: None.
        stride: int or (sH, sW), >= 1. Default: 1.
        padding: int or (pH, pW) >= 0, or 'valid' (no padding) or 'same' (output size = input size; stride must be
            1; an odd total padding puts the extra row/column at the bottom/right, as torch does). Default: 0.
        dilation: int or (dH, dW), >= 1. Default: 1.
        groups: number of blocked connections from input to output channels; divides C_in and C_out
            (groups = C_in is a depthwise convolution). Default: 1.

    Returns:
        (N, C_out, H_out, W_out) or (C_out, H_out, W_out), input's dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.conv2d(np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 2, 2), np.float32))
    array([[[[4., 4.],
             [4., 4.]]]], dtype=float32)
    """
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


@public("conv", kernels=("conv_transpose2d",))
def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     output_size=None):
    """Applies a 1-D transposed convolution (the gradient of conv1d with respect to its input).

    Mirrors :func:`torch.nn.functional.conv_transpose1d`; ``output_size`` as :class:`torch.nn.ConvTranspose1d`'s
    forward takes it.

    Args:
        input: (N, C_in, L) or unbatched (C_in, L).
        weight: (C_in, C_out / groups, kL).
        bias: optional (C_out,). Default: None.
        stride: int or 1-tuple, >= 1. Default: 1.
        padding: int or 1-tuple, >= 0; the output is cropped by padding on each side. Default: 0.
        output_padding: int or 1-tuple, extra length added on the right; smaller than stride or dilation.
            Default: 0.
        groups: divides C_in and C_out. Default: 1.
        dilation: int or 1-tuple, >= 1. Default: 1.
        output_size: keyword only, the wanted output length (an int sequence of 1, or of the input's rank); sets
            output_padding (the given one is ignored) as nn.ConvTranspose1d does. Default: None.

    Returns:
        (N, C_out, L_out) or (C_out, L_out), input's dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.conv_transpose1d(np.ones((1, 1, 3), np.float32), np.ones((1, 1, 2), np.float32), stride=2)
    array([[[1., 1., 1., 1., 1., 1.]]], dtype=float32)
    """
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, output_size)


@public("conv", kernels=("conv_transpose2d",))
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     output_size=None):
    """Applies a 2-D transposed convolution (the gradient of conv2d with respect to its input).

    Mirrors :func:`torch.nn.functional.conv_transpose2d`; ``output_size`` as :class:`torch.nn.ConvTranspose2d`'s
    forward takes it. Note the argument order: groups before dilation, as in torch.

    Args:
        input: (N, C_in, H, W) or unbatched (C_in, H, W).
        weight: (C_in, C_out / groups, kH, kW).
        bias: optional (C_out,). Default: None.
        stride: int or (sH, sW), >= 1. Default: 1.
        padding: int or (pH, pW), >= 0; the output is cropped by padding on each side. Default: 0.
        output_padding: int or (oH, oW), extra rows/columns at the bottom/right; each smaller than its stride or
            dilation. Default: 0.
        groups: divides C_in and C_out. Default: 1.
        dilation: int or (dH, dW), >= 1. Default: 1.
        output_size: keyword only, the wanted (H_out, W_out) (or the full output shape); sets output_padding (the
            given one is ignored) as nn.ConvTranspose2d does. Default: None.

    Returns:
        (N, C_out, H_out, W_out) or (C_out, H_out, W_out) with H_out = (H - 1) * sH - 2 * pH + dH * (kH - 1) + oH
        + 1; input's dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.conv_transpose2d(np.ones((1, 1, 2, 2), np.float32), np.ones((1, 1, 2, 2), np.float32))
    array([[[[1., 2., 1.],
             [2., 4., 2.],
             [1., 2., 1.]]]], dtype=float32)
    """
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, output_size)
