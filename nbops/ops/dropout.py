"""Dropout: elementwise, channel-wise (dropout1d/2d/3d) and alpha dropout. Mirrors :mod:`torch.nn.functional`'s
dropouts, with nbops' seedable generator (:func:`nbops.manual_seed`, or the keyword-only ``seed=`` extension).

As in torch, a kept element is ``x * noise`` with ``noise = 1 / (1 - p)`` computed in the input dtype and a
dropped one is ``x * 0`` (so NaN and inf inputs stay NaN, as torch's ``input * noise`` does). The result does not
alias the input unless torch's does: ``training=False``, ``p == 0`` and empty inputs return ``input`` itself.
"""

import math
import numbers
import warnings

import numpy as np

from .. import _random
from .._dispatch import FLOAT_DTYPES, Call, public

_SELU_ALPHA = 1.7580993408473766  # torch's alpha_dropout constant: -selu_scale * selu_alpha


def _check_p(op, p):
    if isinstance(p, bool) or not isinstance(p, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{op}(): argument 'p' must be a float, got {p!r}")
    p = float(p)
    if not 0.0 <= p <= 1.0:  # NaN fails too
        raise ValueError(f"{op}(): dropout probability has to be between 0 and 1, but got {p}")
    return p


def _coefficients(dtype, p, alpha):
    """(keep_mul, keep_add, drop_add) in ``dtype``, computed as torch computes its noise tensors."""
    t = np.dtype(dtype).type
    if alpha:
        a = 1.0 / math.sqrt((_SELU_ALPHA * _SELU_ALPHA * p + 1) * (1 - p))
        keep_add = t(t(0) * t(_SELU_ALPHA * a) + t(_SELU_ALPHA * a * p))
        drop_add = t(t(-1) * t(_SELU_ALPHA * a) + t(_SELU_ALPHA * a * p))
        return t(a), keep_add, drop_add
    keep_mul = t(0) if p == 1.0 else t(1) * (t(1) / t(1 - p))
    return keep_mul, t(0), t(0)


def _threshold(p):
    """Keep an element when its 32 random bits are below this (keep probability 1 - p, to 2**-32)."""
    return min(int(round((1.0 - p) * 2.0 ** 32)), 2 ** 32)


def _run(op, input, p, training, inplace, seed, rows=None, alpha=False):
    """Shared path: ``rows`` is None for elementwise dropout (the input is viewed as ``(1, size)``), else the
    number of channels, each sharing one draw (the input is viewed as ``(rows, L)``)."""
    p = _check_p(op, p)
    call = Call(op, input=input)
    call.check_dtype("input", FLOAT_DTYPES)
    if seed is not None:
        _random._check_seed(op, seed)
    x = call["input"]
    if inplace:
        call.require_writeable("input", "inplace=True")
    if not training or p == 0.0 or x.size == 0:
        return input
    xc = call.contiguous(x)
    out = xc if inplace and xc is x else call.empty(xc.shape, xc.dtype)
    n = int(xc.size)
    R = 1 if rows is None else rows
    alpha = alpha and p < 1.0  # torch's p == 1 is input * 0 for alpha dropout too
    keep_mul, keep_add, drop_add = _coefficients(xc.dtype, p, alpha)
    call.launch("dropout", out.reshape(R, n // R), xc.reshape(R, n // R), threshold=_threshold(p),
                keep_mul=keep_mul, keep_add=keep_add, drop_add=drop_add, affine=alpha, per_row=rows is not None,
                seed=seed)
    if inplace:
        if out is not x:
            call.launch("copy", x, out)
        return input
    return call.wrap(out)


@public("dropout", kernels=("dropout",))
def dropout(input, p=0.5, training=True, inplace=False, *, seed=None):
    """Zeroes each element with probability ``p`` and scales the survivors by ``1 / (1 - p)``.

    Mirrors :func:`torch.nn.functional.dropout`; ``seed`` is an nbops extension.

    Args:
        input: array of any shape.
        p: probability of zeroing an element, in [0, 1]. Default: 0.5.
        training: apply dropout; when False, ``input`` itself is returned. Default: True.
        inplace: write the result into ``input`` and return it. Default: False.
        seed: keyword-only int: draw this call's mask from ``seed`` (same seed, same target and shape: same mask)
            instead of the global generator set by :func:`nbops.manual_seed`. Default: None.

    Returns:
        array of input's shape and dtype (``input`` itself when ``training`` is False, ``p`` is 0 or ``input`` is
        empty, as torch); same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> y = nbops.dropout(np.ones(1000, dtype=np.float32), 0.25, seed=7)
    >>> sorted(set(y.tolist())) == [0.0, np.float32(1) / np.float32(0.75)]
    True
    """
    return _run("dropout", input, p, training, inplace, seed)


@public("dropout", kernels=("dropout",))
def alpha_dropout(input, p=0.5, training=False, inplace=False, *, seed=None):
    """Alpha dropout for SELU networks: dropped elements take SELU's negative saturation value and an affine map
    keeps the mean and variance. Mirrors :func:`torch.nn.functional.alpha_dropout`; ``seed`` is an nbops extension.

    Args:
        input: array of any shape.
        p: probability of dropping an element, in [0, 1]. Default: 0.5.
        training: apply alpha dropout; when False (the default, as torch), ``input`` itself is returned.
        inplace: write the result into ``input`` and return it. Default: False.
        seed: keyword-only int: draw this call's mask from ``seed``. Default: None (the global generator).

    Returns:
        array of input's shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.alpha_dropout(np.ones(3, dtype=np.float32), 0.5, training=True, seed=0).shape
    (3,)
    """
    return _run("alpha_dropout", input, p, training, inplace, seed, alpha=True)


def _channels(shape, unbatched):
    """Channels sharing one draw: ``shape[0]`` for an input torch unsqueezes to batch 1, else ``N * C``."""
    if unbatched:
        return int(shape[0])
    return int(shape[0]) * int(shape[1])


def _shape_of(op, input):
    shape = getattr(input, "shape", None)
    if shape is None:
        Call(op, input=input)  # raises the TypeError naming the argument
    return tuple(shape)


@public("dropout", kernels=("dropout",))
def dropout1d(input, p=0.5, training=True, inplace=False, *, seed=None):
    """Zeroes whole channels: each ``(n, c)`` row of an ``(N, C, L)`` (or ``(C, L)``) input is zeroed with
    probability ``p``, survivors scaled by ``1 / (1 - p)``.

    Mirrors :func:`torch.nn.functional.dropout1d`; ``seed`` is an nbops extension.

    Args:
        input: ``(N, C, L)`` or ``(C, L)``.
        p: probability of zeroing a channel, in [0, 1]. Default: 0.5.
        training: apply dropout; when False, ``input`` itself is returned. Default: True.
        inplace: write the result into ``input`` and return it. Default: False.
        seed: keyword-only int: draw this call's mask from ``seed``. Default: None (the global generator).

    Returns:
        array of input's shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> y = nbops.dropout1d(np.ones((4, 3), dtype=np.float32), seed=1)
    >>> bool(((y == 0).all(axis=1) | (y == 2).all(axis=1)).all())
    True
    """
    p = _check_p("dropout1d", p)
    shape = _shape_of("dropout1d", input)
    if len(shape) not in (2, 3):
        raise ValueError(
            f"dropout1d(): Expected 2D or 3D input, but received a {len(shape)}D input. Note that dropout1d "
            "exists to provide channel-wise dropout on inputs with 1 spatial dimension, a channel dimension, and "
            "an optional batch dimension (i.e. 2D or 3D inputs)."
        )
    rows = _channels(shape, len(shape) == 2)
    return _run("dropout1d", input, p, training, inplace, seed, rows=rows)


@public("dropout", kernels=("dropout",))
def dropout2d(input, p=0.5, training=True, inplace=False, *, seed=None):
    """Zeroes whole channels of an ``(N, C, H, W)`` input: each ``(n, c)`` plane is zeroed with probability ``p``,
    survivors scaled by ``1 / (1 - p)``.

    Mirrors :func:`torch.nn.functional.dropout2d`, including its warnings: a 3-D input is taken as ``(N, C, L)``
    (channel-wise 1-D dropout), and inputs that are not 3-D or 4-D are deprecated. ``seed`` is an nbops extension.

    Args:
        input: ``(N, C, H, W)`` (or ``(N, C, L)``, with torch's warning).
        p: probability of zeroing a channel, in [0, 1]. Default: 0.5.
        training: apply dropout; when False, ``input`` itself is returned. Default: True.
        inplace: write the result into ``input`` and return it. Default: False.
        seed: keyword-only int: draw this call's mask from ``seed``. Default: None (the global generator).

    Returns:
        array of input's shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> y = nbops.dropout2d(np.ones((2, 3, 2, 2), dtype=np.float32), seed=1)
    >>> bool((y.reshape(6, 4).min(axis=1) == y.reshape(6, 4).max(axis=1)).all())
    True
    """
    p = _check_p("dropout2d", p)
    shape = _shape_of("dropout2d", input)
    nd = len(shape)
    if nd not in (3, 4):
        warnings.warn(
            f"dropout2d: Received a {nd}-D input to dropout2d, which is deprecated and will result in an error in a "
            "future release. To retain the behavior and silence this warning, please use dropout instead. Note "
            "that dropout2d exists to provide channel-wise dropout on inputs with 2 spatial dimensions, a channel "
            "dimension, and an optional batch dimension (i.e. 3D or 4D inputs).",
            stacklevel=2,
        )
    if nd == 3:
        warnings.warn(
            "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout behavior is "
            "desired - input is interpreted as shape (N, C, L), where C is the channel dim. This behavior will "
            "change in a future release to interpret the input as one without a batch dimension, i.e. shape "
            "(C, H, W). To maintain the 1D channel-wise dropout behavior, please switch to using dropout1d instead.",
            stacklevel=2,
        )
    if nd < 2:
        raise ValueError("dropout2d(): Feature dropout requires at least 2 dimensions in the input")
    return _run("dropout2d", input, p, training, inplace, seed, rows=_channels(shape, False))


@public("dropout", kernels=("dropout",))
def dropout3d(input, p=0.5, training=True, inplace=False, *, seed=None):
    """Zeroes whole channels of an ``(N, C, D, H, W)`` (or unbatched ``(C, D, H, W)``) input with probability
    ``p``, survivors scaled by ``1 / (1 - p)``.

    Mirrors :func:`torch.nn.functional.dropout3d`, including its deprecation warning for inputs that are not 4-D
    or 5-D (which, as in torch, are taken as unbatched). ``seed`` is an nbops extension.

    Args:
        input: ``(N, C, D, H, W)`` or ``(C, D, H, W)``.
        p: probability of zeroing a channel, in [0, 1]. Default: 0.5.
        training: apply dropout; when False, ``input`` itself is returned. Default: True.
        inplace: write the result into ``input`` and return it. Default: False.
        seed: keyword-only int: draw this call's mask from ``seed``. Default: None (the global generator).

    Returns:
        array of input's shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.dropout3d(np.ones((1, 2, 2, 2, 2), dtype=np.float32), seed=3).shape
    (1, 2, 2, 2, 2)
    """
    p = _check_p("dropout3d", p)
    shape = _shape_of("dropout3d", input)
    nd = len(shape)
    if nd not in (4, 5):
        warnings.warn(
            f"dropout3d: Received a {nd}-D input to dropout3d, which is deprecated and will result in an error in a "
            "future release. To retain the behavior and silence this warning, please use dropout instead. Note "
            "that dropout3d exists to provide channel-wise dropout on inputs with 3 spatial dimensions, a channel "
            "dimension, and an optional batch dimension (i.e. 4D or 5D inputs).",
            stacklevel=2,
        )
    if nd == 0:
        raise ValueError("dropout3d(): Feature dropout requires at least 2 dimensions in the input")
    return _run("dropout3d", input, p, training, inplace, seed, rows=_channels(shape, nd != 5))
