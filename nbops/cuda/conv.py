"""CUDA kernels of the convolution family: implicit GEMMs on the GEMM core of ``linear.py``, and a direct
depthwise kernel.

conv2d, per group g (the GEMM's problem z): C[r, oc] = sum_k A[r, k] * B[k, oc] + bias, where r = (n, oh, ow)
runs over the N * OH * OW output pixels, oc over the group's OCg output channels and k = (c, kh, kw) over its
ICg * KH * KW taps. The A loader gathers A[r, k] = x[n, g * ICg + c, oh * SH - PT + kh * DH, ow * SW - PL + kw * DW]
straight from NCHW (zero where that falls in the padding), B is the weight matrix w[g * OCg + oc, k] read in
place, and the store writes out[n, g * OCg + oc, oh, ow]. No im2col buffer exists: each patch element is read
from global memory (mostly L1/L2) when its K step is staged. A thread stages one pixel (A's staging walks m
fastest, so a warp reads 32 neighbouring pixels for one tap: coalesced along W, the tap's coordinates a
broadcast). A tap's (c, kh * DH, kw * DW) come from a small table built on the device once a call
(``_taps_kernel``), and a pixel's (n, oh * SH - PT, ow * SW - PL) are computed once a row tile (the core's
``row_a`` hook): no integer division in the K loop. 1 x 1 stride-1 unpadded convolutions,
groups 1, are plain batched GEMMs over strided views (A = x[n] viewed (H*W, C), B = w viewed (C, OC), C = out[n]
viewed (H*W, OC)).

conv_transpose2d gathers instead of scattering: an output pixel (oh, ow) receives x[ih, iw] * w[kh, kw] where
ih * SH + kh * DH = oh + PH, so for one stride phase (oh % SH, ow % SW) = (ph, pw) only the taps kh with
(ph + PH - kh * DH) % SH == 0 contribute (an arithmetic progression kh0 + a * KSH, likewise kw), and
ih = oh // SH + CH - a * EH. Each of the SH * SW phases is one implicit GEMM over its outputs (M = N * OHp * OWp)
and its taps (K = ICg * NKH * NKW): no zero-dilated input, no wasted products, no atomics.

Depthwise convolutions (one input and one output channel a group) are memory-bound: ``_depthwise_kernel`` gives
each thread one output of a plane at a time, neighbouring threads neighbouring ow (coalesced), taps read through
L1.

Compiled resources (ptxas -arch=sm_90 -v; every tile: 0 bytes stack, 0 spills; shared memory as the GEMM core's),
numba 0.68.1's built-in target / numba-cuda 0.30.4:
    conv2d float32 128 x 128: 156 / 148 registers; 128 x 64: 117 / 117 (two blocks an SM); 64 x 64: 98 / 98;
    float64 64 x 64: 128 / 128
    conv_transpose2d float32 128 x 128: 157 / 151; 128 x 64: 123 / 123; 64 x 64: 101 / 101; float64: 128 / 128

``_conv2d_naive`` / ``_conv_transpose2d_naive`` (one thread per output, global memory only) are the oracles.
"""

import numpy as np
from numba import cuda, float32, float64, uint64

from .._arrays import cuda_as_strided
from .._dispatch import register
from ._util import TPB, blocks, empty, stream
from .linear import P_BIAS, P_K, P_M, P_N, THREADS, TILES, gemm_grid, gemm_launch, make_gemm, tile_for

# p of a convolution GEMM: the core's 8 (BATCH = G, M, N = OCg, K, has_bias, act, 0, 0), then these: the pixel
# grid of the GEMM's rows (OHP x OWP), the input rows/columns a pixel reads, h = ohp * ISH - IPT + dh[k], and the
# output pixel it writes, (ohp * OSH + OPH, owp * OSW + OPW)
P_ICG, P_H, P_W, P_OHP, P_OWP, P_ISH, P_IPT, P_ISW, P_IPL, P_OSH, P_OPH, P_OSW, P_OPW = range(8, 21)
# rows of a tap table, (TAP_ROWS, K): tap k's input channel within the group, its row and column offsets in the
# input, and its weight's (kh, kw)
TAP_C, TAP_DH, TAP_DW, TAP_KH, TAP_KW = range(5)
TAP_ROWS = 5
OUTSIDE = -(1 << 40)  # an input row far outside every image: the padding rows of a GEMM's rows past M
MAX_PLANES = 65535  # the grid's y limit: the depthwise kernel's blocks loop over more planes


@cuda.jit
def _taps_kernel(tap, NA, NB, DH0, DHS, DW0, DWS, KH0, KHS, KW0, KWS):
    """tap (TAP_ROWS, K): for k = (c, a, b) over (K / (NA * NB), NA, NB), the tap (kh, kw) = (KH0 + a * KHS,
    KW0 + b * KWS) and its input offsets (DH0 + a * DHS, DW0 + b * DWS). One thread per tap; built once a call, so
    the GEMM's loaders read a tap's coordinates instead of dividing k."""
    k = cuda.grid(1)
    if k < tap.shape[1]:
        NAB = NA * NB
        c = k // NAB
        t = k - c * NAB
        ta = t // NB
        tb = t - ta * NB
        tap[TAP_C, k] = c
        tap[TAP_DH, k] = DH0 + ta * DHS
        tap[TAP_DW, k] = DW0 + tb * DWS
        tap[TAP_KH, k] = KH0 + ta * KHS
        tap[TAP_KW, k] = KW0 + tb * KWS


@cuda.jit(device=True)
def _conv_row(xt, g, r, p):
    """(n, ohp * ISH - IPT, owp * ISW - IPL) of pixel r = (n, ohp, owp): the image and the input row and column its
    taps start from; for r >= M an input row OUTSIDE, which no tap brings back into the image."""
    OWP, OHWP = p[P_OWP], p[P_OHP] * p[P_OWP]
    n = r // OHWP
    q = r - n * OHWP
    ohp = q // OWP
    if r >= p[P_M]:
        return 0, OUTSIDE, 0
    return n, ohp * p[P_ISH] - p[P_IPT], (q - ohp * OWP) * p[P_ISW] - p[P_IPL]


@cuda.jit(device=True)
def _conv_a(xt, g, n, h0, w0, k, p, zero):
    """A[r, k] of group g's implicit GEMM, xt = (x, tap): the input value tap k reads for the pixel whose
    ``_conv_row`` is (n, h0, w0), zero in the padding or outside M x K."""
    x, tap = xt
    if k < p[P_K]:
        h = h0 + tap[TAP_DH, uint64(k)]
        w = w0 + tap[TAP_DW, uint64(k)]
        if 0 <= h < p[P_H] and 0 <= w < p[P_W]:
            return x[uint64(n), uint64(g * p[P_ICG] + tap[TAP_C, uint64(k)]), uint64(h), uint64(w)]
    return zero


@cuda.jit(device=True)
def _conv_b(w2, g, k, oc, p, zero):
    """B[k, oc] of group g: the weight of tap k for output channel g * OCg + oc, w2 = w viewed (OC, ICg*KH*KW)."""
    if k < p[P_K] and oc < p[P_N]:
        return w2[uint64(g * p[P_N] + oc), uint64(k)]
    return zero


@cuda.jit(device=True)
def _convt_b(wt, g, k, oc, p, zero):
    """B[k, oc] of one stride phase of a transposed conv, wt = (w, tap): w[g * ICg + c, oc, kh, kw] of tap k."""
    w, tap = wt
    if k < p[P_K] and oc < p[P_N]:
        c, kh, kw = tap[TAP_C, uint64(k)], tap[TAP_KH, uint64(k)], tap[TAP_KW, uint64(k)]
        return w[uint64(g * p[P_ICG] + c), uint64(oc), uint64(kh), uint64(kw)]
    return zero


@cuda.jit(device=True)
def _conv_out_row(out, g, r, p):
    """(n, ohp * OSH + OPH, owp * OSW + OPW): the output image, row and column of GEMM row r = (n, ohp, owp)."""
    OWP, OHWP = p[P_OWP], p[P_OHP] * p[P_OWP]
    n = r // OHWP
    q = r - n * OHWP
    ohp = q // OWP
    return n, ohp * p[P_OSH] + p[P_OPH], (q - ohp * OWP) * p[P_OSW] + p[P_OPW]


@cuda.jit(device=True)
def _conv_store(out, bias, g, n, oh, ow, oc, v, beta, p):
    """out[n, g * OCg + oc, oh, ow] = v + bias."""
    c = g * p[P_N] + oc
    if p[P_BIAS]:
        v += bias[c]
    out[uint64(n), uint64(c), uint64(oh), uint64(ow)] = v


def _kernels(load_b):
    """The implicit-GEMM kernels of one convolution kind (its B loader), by (dtype, TM, TN)."""
    return {(np.dtype(d), tm, tn): make_gemm(t, tm, tn, _conv_row, _conv_a, load_b, _conv_out_row, _conv_store,
                                             a_kfast=0, b_nfast=0)
            for d, t in ((np.float32, float32), (np.float64, float64)) for tm, tn in TILES[np.dtype(d)]}


_conv2d_kernel = _kernels(_conv_b)
_conv_transpose2d_kernel = _kernels(_convt_b)


@cuda.jit
def _depthwise_kernel(out, x, w, bias, SH, SW, PT, PL, DH, DW, has_bias, zero):
    """out (N, C, OH, OW) = depthwise conv of x (N, C, H, W) with w (C, 1, KH, KW) (+ bias (C,)).

    grid = (blocks over one output plane's OH * OW pixels, min(N * C, MAX_PLANES)), TPB threads; a block walks the
    planes (n, c) from blockIdx.y by gridDim.y and, in each, the pixels from its first by the x grid's threads:
    neighbouring threads on neighbouring ow (coalesced), the KH x KW taps read through L1, the plane's weights the
    same for every thread of the block (broadcast); one division per pixel, plane coordinates once per plane.
    Accumulates in the input dtype. Napkin math: memory-bound, input and output once each (3x3 C256 28^2 batch
    32: 51 MB, ~13 us at 4 TB/s).
    """
    N, C, OH, OW = out.shape
    H, W = x.shape[2], x.shape[3]
    KH, KW = w.shape[2], w.shape[3]
    for plane in range(cuda.blockIdx.y, N * C, cuda.gridDim.y):
        n, c = plane // C, plane % C
        s0 = bias[c] if has_bias else zero
        for i in range(cuda.grid(1), OH * OW, cuda.gridsize(1)):
            oh = i // OW
            ow = i - oh * OW
            s = s0
            for kh in range(KH):
                h = oh * SH - PT + kh * DH
                if 0 <= h < H:
                    for kw in range(KW):
                        ww = ow * SW - PL + kw * DW
                        if 0 <= ww < W:
                            s += x[n, c, h, ww] * w[c, 0, kh, kw]
            out[n, c, oh, ow] = s


@cuda.jit
def _conv2d_naive(out, x, w, bias, SH, SW, PT, PL, DH, DW, G):
    """out (N, OC, OH, OW) = conv of x (N, C, H, W) with w (OC, C/G, KH, KW) plus bias; grid = ceil(out.size / TPB)
    blocks of TPB threads, one thread per output value, global memory only (accumulates in float64)."""
    i = cuda.grid(1)
    N, OC, OH, OW = out.shape
    if i >= N * OC * OH * OW:
        return
    ow = i % OW
    oh = (i // OW) % OH
    oc = (i // (OW * OH)) % OC
    n = i // (OW * OH * OC)
    H, W = x.shape[2], x.shape[3]
    ICG, KH, KW = w.shape[1], w.shape[2], w.shape[3]
    g = oc // (OC // G)
    s = 0.0
    for ic in range(ICG):
        for kh in range(KH):
            h = oh * SH - PT + kh * DH
            if h < 0 or h >= H:
                continue
            for kw in range(KW):
                ww = ow * SW - PL + kw * DW
                if 0 <= ww < W:
                    s += x[n, g * ICG + ic, h, ww] * w[oc, ic, kh, kw]
    out[n, oc, oh, ow] = s + bias[oc]


@cuda.jit
def _conv_transpose2d_naive(out, x, w, bias, SH, SW, PH, PW, DH, DW, G):
    """out (N, OC, OH, OW) = transposed conv of x (N, C, H, W) with w (C, OC/G, KH, KW) plus bias; grid =
    ceil(out.size / TPB) blocks of TPB threads, one thread per output value gathering from global memory
    (accumulates in float64)."""
    i = cuda.grid(1)
    N, OC, OH, OW = out.shape
    if i >= N * OC * OH * OW:
        return
    ow = i % OW
    oh = (i // OW) % OH
    oc = (i // (OW * OH)) % OC
    n = i // (OW * OH * OC)
    H, W = x.shape[2], x.shape[3]
    OCG, KH, KW = w.shape[1], w.shape[2], w.shape[3]
    ICG = x.shape[1] // G
    g = oc // OCG
    s = 0.0
    for ic in range(g * ICG, (g + 1) * ICG):
        for kh in range(KH):
            t = oh + PH - kh * DH
            if t < 0 or t % SH != 0 or t // SH >= H:
                continue
            for kw in range(KW):
                u = ow + PW - kw * DW
                if u >= 0 and u % SW == 0 and u // SW < W:
                    s += x[n, ic, t // SH, u // SW] * w[ic, oc - g * OCG, kh, kw]
    out[n, oc, oh, ow] = s + bias[oc]


def _bias_args(b, out):
    """(has_bias, a typed 1-D stand-in for an absent bias, never read)."""
    if b is not None:
        return 1, b
    return 0, cuda_as_strided(out, (1,), (out.strides[3],))


def _taps(K, NA, NB, DH0, DHS, DW0, DWS, KH0, KHS, KW0, KWS):
    """A tap table (TAP_ROWS, K) built on the device by ``_taps_kernel`` (a temporary of the call)."""
    tap = empty((TAP_ROWS, K), np.int64)
    if K:
        _taps_kernel[blocks(K), TPB, stream()](tap, NA, NB, DH0, DHS, DW0, DWS, KH0, KHS, KW0, KWS)
    return tap


def _gemm(kernels, out, a, b, bias, has_bias, G, M, OCG, K, params):
    """Launch one implicit GEMM of ``kernels`` (A staged m fastest, B k fastest) over G groups."""
    dt = np.dtype(out.dtype)
    tile = tile_for(dt, G, M, OCG)
    p = (G, M, OCG, K, has_bias, 0, 0, 0) + tuple(int(v) for v in params)
    kernels[(dt,) + tile][gemm_grid(G, M, OCG, tile), THREADS, stream()](out, a, b, bias, dt.type(1), dt.type(0), p)


@register("conv2d", "cuda")
def conv2d(out, x, w, b, stride, padding, dilation, groups):
    N, C, H, W = x.shape
    OC, ICG, KH, KW = w.shape
    OH, OW = out.shape[2], out.shape[3]
    (SH, SW), (PT, _, PL, _), (DH, DW) = stride, padding, dilation
    has_bias, bias = _bias_args(b, out)
    item = np.dtype(x.dtype).itemsize
    if ICG == 1 and OC == groups:
        grid = (max(1, blocks(OH * OW)), max(1, min(N * OC, MAX_PLANES)))
        _depthwise_kernel[grid, TPB, stream()](out, x, w, bias, SH, SW, PT, PL, DH, DW, has_bias,
                                               np.dtype(x.dtype).type(0))
        return
    if KH == KW == 1 and SH == SW == 1 and PT == PL == 0 and groups == 1 and (OH, OW) == (H, W):
        HW = H * W
        a = cuda_as_strided(x, (N, HW, C), (C * HW * item, item, HW * item))
        bw = cuda_as_strided(w, (N, C, OC), (0, item, C * item))
        c = cuda_as_strided(out, (N, HW, OC), (OC * HW * item, item, HW * item))
        gemm_launch(c, a, bw, 1, 0, b)
        return
    K = ICG * KH * KW
    tap = _taps(K, KH, KW, 0, DH, 0, DW, 0, 1, 0, 1)
    _gemm(_conv2d_kernel, out, (x, tap), w.reshape((OC, K)), bias, has_bias, groups, N * OH * OW, OC // groups, K,
          (ICG, H, W, OH, OW, SH, PT, SW, PL, 1, 0, 1, 0))


def _phase_taps(phase, pad, stride, dil, ksize):
    """The taps k of one stride phase of a transposed conv, (k0, kstep, count): k * dil = phase + pad (mod
    stride) for k in [0, ksize); (0, 1, 0) when none does."""
    ks = [k for k in range(ksize) if (phase + pad - k * dil) % stride == 0]
    if not ks:
        return 0, 1, 0
    return ks[0], (ks[1] - ks[0] if len(ks) > 1 else 1), len(ks)


@register("conv_transpose2d", "cuda")
def conv_transpose2d(out, x, w, b, stride, padding, dilation, groups):
    N, C, H, W = x.shape
    OCG, KH, KW = w.shape[1], w.shape[2], w.shape[3]
    OH, OW = out.shape[2], out.shape[3]
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    has_bias, bias = _bias_args(b, out)
    ICG = C // groups
    for ph in range(min(SH, OH)):
        kh0, ksh, nkh = _phase_taps(ph, PH, SH, DH, KH)
        for pw in range(min(SW, OW)):
            kw0, ksw, nkw = _phase_taps(pw, PW, SW, DW, KW)
            # output (ohp * SH + ph, owp * SW + pw) reads input row ohp + (ph + PH - kh * DH) / SH for its taps
            # kh = kh0 + a * ksh: the offset falls by ksh * DH / SH a tap (exact divisions)
            K = ICG * nkh * nkw  # 0 for a phase no tap reaches: its outputs are the bias
            tap = _taps(K, max(nkh, 1), max(nkw, 1), (ph + PH - kh0 * DH) // SH, -(ksh * DH // SH),
                        (pw + PW - kw0 * DW) // SW, -(ksw * DW // SW), kh0, ksh, kw0, ksw)
            OHP, OWP = (OH - ph + SH - 1) // SH, (OW - pw + SW - 1) // SW
            _gemm(_conv_transpose2d_kernel, out, (x, tap), (w, tap), bias, has_bias, groups, N * OHP * OWP, OCG, K,
                  (ICG, H, W, OHP, OWP, 1, 0, 1, 0, SH, ph, SW, pw))
