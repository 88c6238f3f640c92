"""CUDA kernels of the pooling family: one thread per output element of C-contiguous planes.

Inputs are ``x: (P, H, W)``, outputs ``(P, OH, OW)``, viewed flat so that consecutive threads write consecutive
outputs (coalesced stores; their window reads overlap in cache). Each thread visits its window in torch's order
(rows outer, columns inner) with torch's comparison ``v > m or v != v`` (max) or a float sum from 0 (average).
"""

import math

import numpy as np
from numba import cuda

from .._dispatch import register
from ._util import TPB, blocks, flat, stream


@cuda.jit(device=True, inline=True)
def _imin(a, b):
    return a if a < b else b


@cuda.jit(device=True, inline=True)
def _imax(a, b):
    return a if a > b else b


@cuda.jit
def _max_pool_kernel(out, idx, x, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, with_idx):
    """out[i] = max of the (dilated, -inf padded) window of output i = (p, oh, ow); NaN wins (the last NaN's
    index); idx[i] = h * W + w of the maximum when ``with_idx`` (else ``idx`` is a 1-element placeholder).
    x: (P, H, W); out, idx: (P * OH * OW,). One thread per output; grid = ceil(P * OH * OW / TPB) blocks of TPB.
    """
    i = cuda.grid(1)
    if i >= out.shape[0]:
        return
    H = x.shape[1]
    W = x.shape[2]
    ow = i % OW
    r = i // OW
    oh = r % OH
    p = r // OH
    hs = oh * SH - PH
    while hs < 0:
        hs += DH
    he = _imin(oh * SH - PH + (KH - 1) * DH + 1, H)
    ws = ow * SW - PW
    while ws < 0:
        ws += DW
    we = _imin(ow * SW - PW + (KW - 1) * DW + 1, W)
    m = x.dtype.type(-math.inf)
    mi = hs * W + ws
    for ih in range(hs, he, DH):
        for iw in range(ws, we, DW):
            v = x[p, ih, iw]
            if v > m or v != v:
                m = v
                mi = ih * W + iw
    out[i] = m
    if with_idx:
        idx[i] = mi


_PLACEHOLDERS = {}  # device uuid -> a 1-element int64 array standing in for idx when no indices are wanted


def _placeholder():
    dev = cuda.current_context().device.uuid
    if dev not in _PLACEHOLDERS:
        _PLACEHOLDERS[dev] = cuda.device_array(1, np.int64)
    return _PLACEHOLDERS[dev]


@register("max_pool", "cuda")
def max_pool(out, idx, x, KH, KW, SH, SW, PH, PW, DH, DW):
    """Max pooling of planes x: (P, H, W) into out (and idx when not None): (P, OH, OW)."""
    n = out.size
    OH, OW = out.shape[1], out.shape[2]
    with_idx = idx is not None
    iflat = flat(idx) if with_idx else _placeholder()
    _max_pool_kernel[blocks(n), TPB, stream()](flat(out), iflat, x, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, with_idx)


@cuda.jit
def _avg_pool_kernel(out, x, OH, OW, KH, KW, SH, SW, PH, PW, count_include_pad, divisor):
    """out[i] = sum of the zero-padded window of output i = (p, oh, ow) / torch's divisor (``divisor`` when
    nonzero, else the window clipped to the padded input or, without count_include_pad, to the input).
    x: (P, H, W); out: (P * OH * OW,). One thread per output, accumulating in the input dtype; grid =
    ceil(P * OH * OW / TPB) blocks of TPB.
    """
    i = cuda.grid(1)
    if i >= out.shape[0]:
        return
    H = x.shape[1]
    W = x.shape[2]
    ow = i % OW
    r = i // OW
    oh = r % OH
    p = r // OH
    h0 = oh * SH - PH
    w0 = ow * SW - PW
    h1 = _imin(h0 + KH, H + PH)
    w1 = _imin(w0 + KW, W + PW)
    pool = (h1 - h0) * (w1 - w0)
    hs = _imax(h0, 0)
    ws = _imax(w0, 0)
    he = _imin(h1, H)
    we = _imin(w1, W)
    t = x.dtype.type  # accumulate and divide in the input dtype, as torch does
    s = t(0)
    if hs >= he or ws >= we:
        out[i] = s
        return
    for ih in range(hs, he):
        for iw in range(ws, we):
            s += x[p, ih, iw]
    if divisor != 0:
        d = divisor
    elif count_include_pad:
        d = pool
    else:
        d = (he - hs) * (we - ws)
    out[i] = s / t(d)


@register("avg_pool", "cuda")
def avg_pool(out, x, KH, KW, SH, SW, PH, PW, count_include_pad, divisor):
    """Average pooling of planes x: (P, H, W) into out: (P, OH, OW)."""
    n = out.size
    _avg_pool_kernel[blocks(n), TPB, stream()](flat(out), x, out.shape[1], out.shape[2], KH, KW, SH, SW, PH, PW,
                                               count_include_pad, divisor)


@cuda.jit(device=True, inline=True)
def _bin(i, In, Out):
    """torch's adaptive bin [floor(i * In / Out), ceil((i + 1) * In / Out)) along one axis."""
    return (i // Out) * In + ((i % Out) * In) // Out, 1 + ((i + 1) * In - 1) // Out


@cuda.jit
def _adaptive_avg_pool_kernel(out, x, OH, OW):
    """out[i] = mean of x over the adaptive bin of output i = (p, oh, ow), divided by the bin height then width
    as torch does. x: (P, H, W); out: (P * OH * OW,). One thread per output, accumulating in the input dtype;
    grid = ceil(P * OH * OW / TPB) blocks of TPB.
    """
    i = cuda.grid(1)
    if i >= out.shape[0]:
        return
    H = x.shape[1]
    W = x.shape[2]
    ow = i % OW
    r = i // OW
    oh = r % OH
    p = r // OH
    hs, he = _bin(oh, H, OH)
    ws, we = _bin(ow, W, OW)
    t = x.dtype.type  # accumulate and divide in the input dtype, as torch does
    s = t(0)
    for ih in range(hs, he):
        for iw in range(ws, we):
            s += x[p, ih, iw]
    out[i] = s / t(he - hs) / t(we - ws)


@register("adaptive_avg_pool", "cuda")
def adaptive_avg_pool(out, x):
    """Adaptive average pooling of planes x: (P, H, W) into out: (P, OH, OW)."""
    _adaptive_avg_pool_kernel[blocks(out.size), TPB, stream()](flat(out), x, out.shape[1], out.shape[2])


@cuda.jit
def _adaptive_max_pool_kernel(out, idx, x, OH, OW):
    """out[i] = max of x over the adaptive bin of output i = (p, oh, ow) (NaN wins, the last NaN's index);
    idx[i] = h * W + w of it. x: (P, H, W); out, idx: (P * OH * OW,). One thread per output; grid =
    ceil(P * OH * OW / TPB) blocks of TPB.
    """
    i = cuda.grid(1)
    if i >= out.shape[0]:
        return
    W = x.shape[2]
    ow = i % OW
    r = i // OW
    oh = r % OH
    p = r // OH
    hs, he = _bin(oh, x.shape[1], OH)
    ws, we = _bin(ow, W, OW)
    m = x[p, hs, ws]
    mi = hs * W + ws
    for ih in range(hs, he):
        for iw in range(ws, we):
            v = x[p, ih, iw]
            if v > m or v != v:
                m = v
                mi = ih * W + iw
    out[i] = m
    idx[i] = mi


@register("adaptive_max_pool", "cuda")
def adaptive_max_pool(out, idx, x):
    """Adaptive max pooling of planes x: (P, H, W) into out and idx: (P, OH, OW)."""
    _adaptive_max_pool_kernel[blocks(out.size), TPB, stream()](flat(out), flat(idx), x, out.shape[1], out.shape[2])
