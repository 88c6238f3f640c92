"""CUDA kernels of the pooling family.

Inputs are C-contiguous planes ``x: (P, H, W)``, outputs ``(P, OH, OW)``. The window kernels map a block of
(TX, TY) threads onto TY output rows at a time (row t = (p, oh) of the P * OH output rows, grid-stride over them)
and TX consecutive output columns: one division per output row, none per element; consecutive threads write
consecutive outputs and read overlapping, cached windows. Each thread visits its window in torch's order (rows
outer, columns inner) with torch's comparison ``v > m or v != v`` (max) or a sum from 0 in the input dtype
(average). A tap loop waits for each load before it issues the next (the compare needs it) and pays 64-bit
index and negative-index wrap code per tap, so the common small windows have straight-line fast paths for the
windows inside the plane: 3 x 3 max (nine loads at once) and 2 x 2 average (four), at unsigned offsets from the
window's first tap. Global average pooling (adaptive to 1 x 1, the ResNet head) is a row reduction: a warp per
plane.

Napkin math, max_pool2d 3x3 s2 p1 on (32, 64, 112, 112) float32: 103 MB read + 26 MB written, 32 us at 4 TB/s;
avg_pool2d 2x2 the same bytes.
"""

import math

import numpy as np
from numba import cuda, uint64

from .._dispatch import register
from ._block import SCRATCH, warp_sum
from ._util import TPB, sm_count, stream

BLOCKS_PER_SM = 8  # resident blocks per SM at TPB = 256 threads (2048 threads per SM)
TAPS_3X3 = True  # max pooling: 3 x 3 windows inside the plane load their nine taps at once (_max3x3)
TAPS_2X2 = True  # average pooling: 2 x 2 windows inside the plane load their four taps at once (_sum2x2)


@cuda.jit(device=True, inline=True)
def _imin(a, b):
    return a if a < b else b


@cuda.jit(device=True, inline=True)
def _imax(a, b):
    return a if a > b else b


@cuda.jit(device=True, inline=True)
def _first_tap(start, step):
    """The first of start, start + step, ... that is >= 0 (start may be negative: padding)."""
    if start < 0:
        start += ((step - 1 - start) // step) * step
    return start


@cuda.jit(device=True, inline=True)
def _row4(x, p, ih, iw, DW, we, fill):
    """Taps iw, iw + DW, iw + 2 DW, iw + 3 DW of input row (p, ih), ``fill`` for those at or past ``we``: four
    independent loads issued together."""
    i1 = iw + DW
    i2 = i1 + DW
    i3 = i2 + DW
    return (x[p, ih, iw], x[p, ih, i1] if i1 < we else fill, x[p, ih, i2] if i2 < we else fill,
            x[p, ih, i3] if i3 < we else fill)


@cuda.jit(device=True, inline=True)
@cuda.jit(device=True, inline=True)
def _sum4(s, v):
    """s + v[0] + v[1] + v[2] + v[3], added one by one in torch's order (taps past the row end are 0)."""
    for j in range(4):
        s += v[j]
    return s


def _block(OW):
    """(TX, TY): TX the smallest power of two >= OW from 32 to TPB, TY = TPB // TX output rows per block."""
    tx = 32
    while tx < OW and tx < TPB:
        tx *= 2
    return tx, TPB // tx


def _grid(rows, ty):
    """Blocks for a grid-stride loop over ``rows`` output rows, ty per block: at most BLOCKS_PER_SM per SM."""
    return max(1, min((rows + ty - 1) // ty, sm_count() * BLOCKS_PER_SM))


@cuda.jit(device=True, inline=True)
def _fold_max(m, mi, v, i):
    """(v, i) when v beats the running max m by torch's rule ``v > m or v != v`` (the first maximum, the last
    NaN), else (m, mi)."""
    if v > m or v != v:
        return v, i
    return m, mi


@cuda.jit(device=True, inline=True)
def _max3x3(xf, i, W, m):
    """Max and flat index of the 3 x 3 window whose top-left tap is xf[i] (xf: a plane, flat; the window inside
    it). The nine loads are issued together at unsigned offsets (no negative-index wrap code per tap), then folded
    in torch's order: rows outer, columns inner."""
    one = uint64(1)
    two = uint64(2)
    w = uint64(W)
    j0 = uint64(i)
    j1 = j0 + w
    j2 = j1 + w
    a0, a1, a2 = xf[j0], xf[j0 + one], xf[j0 + two]
    b0, b1, b2 = xf[j1], xf[j1 + one], xf[j1 + two]
    c0, c1, c2 = xf[j2], xf[j2 + one], xf[j2 + two]
    mi = i
    m, mi = _fold_max(m, mi, a0, i)
    m, mi = _fold_max(m, mi, a1, i + 1)
    m, mi = _fold_max(m, mi, a2, i + 2)
    m, mi = _fold_max(m, mi, b0, i + W)
    m, mi = _fold_max(m, mi, b1, i + W + 1)
    m, mi = _fold_max(m, mi, b2, i + W + 2)
    m, mi = _fold_max(m, mi, c0, i + 2 * W)
    m, mi = _fold_max(m, mi, c1, i + 2 * W + 1)
    m, mi = _fold_max(m, mi, c2, i + 2 * W + 2)
    return m, mi


@cuda.jit
def _max_pool_kernel(out, idx, x, xflat, KH, KW, SH, SW, PH, PW, DH, DW, with_idx, taps3):
    """out[p, oh, ow] = max of the (dilated, -inf padded) window of that output; NaN wins (the last NaN's
    index); idx[p, oh, ow] = h * W + w of the maximum when ``with_idx`` (else ``idx`` is a (1, 1, 1) placeholder).
    x: (P, H, W), xflat: the same memory as (P, H * W); out, idx: (P, OH, OW). Block (TX, TY) over TY output rows
    and TX output columns, grid-stride over the P * OH output rows. With ``taps3`` (a 3 x 3 window, dilation 1)
    windows inside the plane go through ``_max3x3``; the others (borders, other windows) walk their taps."""
    P, H, W = x.shape
    OH = out.shape[1]
    OW = out.shape[2]
    t = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    while t < P * OH:
        p = t // OH
        oh = t - p * OH
        xp = x[p]
        h0 = oh * SH - PH
        hs = _first_tap(h0, DH)
        he = _imin(h0 + (KH - 1) * DH + 1, H)
        ow = cuda.threadIdx.x
        while ow < OW:
            w0 = ow * SW - PW
            ws = _first_tap(w0, DW)
            we = _imin(w0 + (KW - 1) * DW + 1, W)
            m = x.dtype.type(-math.inf)
            mi = hs * W + ws
            if taps3 and hs == h0 and he == h0 + 3 and ws == w0 and we == w0 + 3:
                m, mi = _max3x3(xflat[p], h0 * W + w0, W, m)
            else:
                ih = hs
                while ih < he:
                    xr = xp[ih]
                    iw = ws
                    while iw < we:
                        m, mi = _fold_max(m, mi, xr[iw], ih * W + iw)
                        iw += DW
                    ih += DH
            out[p, oh, ow] = m
            if with_idx:
                idx[p, oh, ow] = mi
            ow += cuda.blockDim.x
        t += cuda.gridDim.x * cuda.blockDim.y


_PLACEHOLDERS = {}  # device uuid -> a (1, 1, 1) int64 array standing in for idx when no indices are wanted


def _placeholder():
    dev = cuda.current_context().device.uuid
    if dev not in _PLACEHOLDERS:
        _PLACEHOLDERS[dev] = cuda.device_array((1, 1, 1), np.int64)
    return _PLACEHOLDERS[dev]


@register("max_pool", "cuda")
def max_pool(out, idx, x, KH, KW, SH, SW, PH, PW, DH, DW):
    """Max pooling of planes x: (P, H, W) into out (and idx when not None): (P, OH, OW)."""
    P, OH, OW = out.shape
    with_idx = idx is not None
    block = _block(OW)
    taps3 = TAPS_3X3 and KH == 3 and KW == 3 and DH == 1 and DW == 1
    _max_pool_kernel[_grid(P * OH, block[1]), block, stream()](out, idx if with_idx else _placeholder(), x,
                                                                x.reshape(P, x.shape[1] * x.shape[2]), KH, KW, SH,
                                                                SW, PH, PW, DH, DW, with_idx, taps3)


@cuda.jit(device=True, inline=True)
def _sum2x2(xf, i, W):
    """Sum of the 2 x 2 window whose top-left tap is xf[i] (xf: a plane, flat; the window inside it), the four
    loads issued together at unsigned offsets and added in torch's order from 0."""
    one = uint64(1)
    j0 = uint64(i)
    j1 = j0 + uint64(W)
    a0, a1, b0, b1 = xf[j0], xf[j0 + one], xf[j1], xf[j1 + one]
    return ((xf.dtype.type(0) + a0) + a1 + b0) + b1


@cuda.jit
def _avg_pool_kernel(out, x, xflat, KH, KW, SH, SW, PH, PW, count_include_pad, divisor, taps2):
    """out[p, oh, ow] = sum of the zero-padded window of that output / torch's divisor (``divisor`` when
    nonzero, else the window clipped to the padded input or, without count_include_pad, to the input).
    x: (P, H, W), xflat: the same memory as (P, H * W); out: (P, OH, OW). Accumulates in the input dtype, as torch
    does. Block (TX, TY) over TY output rows and TX output columns, grid-stride over the P * OH output rows. With
    ``taps2`` (a 2 x 2 window) windows inside the plane load their four taps at once (``_sum2x2``); the others
    walk their window rows four taps, two rows at a time."""
    P, H, W = x.shape
    OH = out.shape[1]
    OW = out.shape[2]
    t_ = x.dtype.type
    t = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    while t < P * OH:
        p = t // OH
        oh = t - p * OH
        h0 = oh * SH - PH
        h1 = _imin(h0 + KH, H + PH)
        hs = _imax(h0, 0)
        he = _imin(h1, H)
        ow = cuda.threadIdx.x
        while ow < OW:
            w0 = ow * SW - PW
            w1 = _imin(w0 + KW, W + PW)
            ws = _imax(w0, 0)
            we = _imin(w1, W)
            s = t_(0)
            pair = we - ws <= 4  # a window row is one group of 4 taps: two rows go together, same order
            ih = hs
            if taps2 and hs == h0 and he == h0 + 2 and ws == w0 and we == w0 + 2:
                s = _sum2x2(xflat[p], h0 * W + w0, W)
                ih = he
            while ih < he:
                ih2 = ih + 1 if pair else he
                iw = ws
                while iw < we:
                    a = _row4(x, p, ih, iw, 1, we, t_(0))
                    b = _row4(x, p, ih2, iw, 1, we, t_(0)) if ih2 < he else a
                    s = _sum4(s, a)
                    if ih2 < he:
                        s = _sum4(s, b)
                    iw += 4
                ih += 2 if pair else 1
            if hs < he and ws < we:
                if divisor != 0:
                    d = divisor
                elif count_include_pad:
                    d = (h1 - h0) * (w1 - w0)
                else:
                    d = (he - hs) * (we - ws)
                s = s / t_(d)
            out[p, oh, ow] = s
            ow += cuda.blockDim.x
        t += cuda.gridDim.x * cuda.blockDim.y


@register("avg_pool", "cuda")
def avg_pool(out, x, KH, KW, SH, SW, PH, PW, count_include_pad, divisor):
    """Average pooling of planes x: (P, H, W) into out: (P, OH, OW)."""
    P, OH, OW = out.shape
    block = _block(OW)
    taps2 = TAPS_2X2 and KH == 2 and KW == 2
    _avg_pool_kernel[_grid(P * OH, block[1]), block, stream()](out, x, x.reshape(P, x.shape[1] * x.shape[2]), KH, KW,
                                                                SH, SW, PH, PW, count_include_pad, divisor, taps2)


@cuda.jit(device=True, inline=True)
def _bin(i, In, Out):
    """torch's adaptive bin [floor(i * In / Out), ceil((i + 1) * In / Out)) along one axis."""
    return (i // Out) * In + ((i % Out) * In) // Out, 1 + ((i + 1) * In - 1) // Out


@cuda.jit
def _adaptive_avg_pool_kernel(out, x):
    """out[p, oh, ow] = mean of x over the adaptive bin of that output, divided by the bin height then width as
    torch does; accumulates in the input dtype. x: (P, H, W); out: (P, OH, OW). Block (TX, TY) over TY output
    rows and TX output columns, grid-stride over the P * OH output rows."""
    P, H, W = x.shape
    OH = out.shape[1]
    OW = out.shape[2]
    t_ = x.dtype.type
    t = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    while t < P * OH:
        p = t // OH
        oh = t - p * OH
        hs, he = _bin(oh, H, OH)
        ow = cuda.threadIdx.x
        while ow < OW:
            ws, we = _bin(ow, W, OW)
            s = t_(0)
            for ih in range(hs, he):
                for iw in range(ws, we):
                    s += x[p, ih, iw]
            out[p, oh, ow] = s / t_(he - hs) / t_(we - ws)
            ow += cuda.blockDim.x
        t += cuda.gridDim.x * cuda.blockDim.y


@cuda.jit
def _global_avg_pool_kernel(out, x, H, W):
    """out[p] = sum(x[p]) / H / W (torch's order of the two divisions); x: (P, H * W) planes; out: (P,).
    A warp per plane (TPB / 32 planes per block, grid-stride over the planes with the same trip count for the
    whole block, as the warp sum needs): each lane sums every 32nd value with four loads in flight, in the input
    dtype, then a warp sum (``_block``). The ResNet head, (32, 2048, 7, 7) float32: 12.8 MB read, 3 us at
    4 TB/s."""
    scratch = cuda.shared.array(SCRATCH, x.dtype)
    P, L = x.shape
    t_ = x.dtype.type
    warp = cuda.threadIdx.x // 32
    lane = cuda.threadIdx.x - warp * 32
    wpb = cuda.blockDim.x // 32
    p0 = cuda.blockIdx.x * wpb
    while p0 < P:
        p = p0 + warp
        s = t_(0)
        if p < P:
            k = lane
            while k + 96 < L:  # four unconditional loads in flight, then a one-by-one tail
                a = x[p, k]
                b = x[p, k + 32]
                c = x[p, k + 64]
                d = x[p, k + 96]
                s += (a + b) + (c + d)
                k += 128
            while k < L:
                s += x[p, k]
                k += 32
        s = warp_sum(s, scratch)
        if p < P and lane == 0:
            out[p] = s / t_(H) / t_(W)
        p0 += cuda.gridDim.x * wpb


@register("adaptive_avg_pool", "cuda")
def adaptive_avg_pool(out, x):
    """Adaptive average pooling of planes x: (P, H, W) into out: (P, OH, OW); global pooling (OH = OW = 1) as a
    warp per plane."""
    P, OH, OW = out.shape
    H, W = x.shape[1], x.shape[2]
    if OH == 1 and OW == 1:
        wpb = TPB // 32
        _global_avg_pool_kernel[_grid(P, wpb), TPB, stream()](out.reshape(P), x.reshape(P, H * W), H, W)
        return
    block = _block(OW)
    _adaptive_avg_pool_kernel[_grid(P * OH, block[1]), block, stream()](out, x)


@cuda.jit
def _adaptive_max_pool_kernel(out, idx, x):
    """out[p, oh, ow] = max of x over the adaptive bin of that output (NaN wins, the last NaN's index);
    idx[p, oh, ow] = h * W + w of it. x: (P, H, W); out, idx: (P, OH, OW). Block (TX, TY) over TY output rows and
    TX output columns, grid-stride over the P * OH output rows."""
    P, H, W = x.shape
    OH = out.shape[1]
    OW = out.shape[2]
    t = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    while t < P * OH:
        p = t // OH
        oh = t - p * OH
        hs, he = _bin(oh, H, OH)
        ow = cuda.threadIdx.x
        while ow < OW:
            ws, we = _bin(ow, W, OW)
            m = x[p, hs, ws]
            mi = hs * W + ws
            for ih in range(hs, he):
                for iw in range(ws, we):
                    v = x[p, ih, iw]
                    if v > m or v != v:
                        m = v
                        mi = ih * W + iw
            out[p, oh, ow] = m
            idx[p, oh, ow] = mi
            ow += cuda.blockDim.x
        t += cuda.gridDim.x * cuda.blockDim.y


@register("adaptive_max_pool", "cuda")
def adaptive_max_pool(out, idx, x):
    """Adaptive max pooling of planes x: (P, H, W) into out and idx: (P, OH, OW)."""
    P, OH, OW = out.shape
    block = _block(OW)
    _adaptive_max_pool_kernel[_grid(P * OH, block[1]), block, stream()](out, idx, x)
