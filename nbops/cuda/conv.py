"""CUDA kernels of the convolution family: direct conv2d with shared-memory tiles, transposed conv as a gather.

A block computes a TH x TW tile of output pixels for OCT output channels of one image and group; each thread
computes OCT outputs (one pixel, OCT channels). For every input channel of the group the block stages the input
patch its tile reads (zero-filled where the padding is) and the OCT x KH x KW weights in shared memory, then each
thread accumulates from shared memory only. The transposed convolution stages the weights the same way and gathers,
per output pixel, the input pixels whose taps reach it. Shapes whose patch or weight block does not fit the shared
buffers run ``_conv2d_naive`` / ``_conv_transpose2d_naive`` (one thread per output, global memory only).

Shared buffers have a static size and dtype, so each kernel is built once per dtype (float32, float64) when this
module is imported, by a module-level factory.
"""

import numpy as np
from numba import cuda, float32, float64

from .._dispatch import register
from ._util import TPB, blocks, empty, stream
from .shape import fill

TH, TW = 8, 16  # output tile of a block (rows, columns): TH * TW threads
OCT = 4  # output channels per thread
SMEM_X = 2048  # elements of the staged input patch
SMEM_W = 1024  # elements of the staged weight block (OCT * KH * KW)


def _make_conv2d(dt):
    @cuda.jit
    def kernel(out, x, w, bias, SH, SW, PT, PL, DH, DW, G, PR, PC, TILES_W):
        """out (N, OC, OH, OW) = conv of x (N, C, H, W) with w (OC, C/G, KH, KW) plus bias (OC,).

        grid = (tiles of TH x TW output pixels, G * ceil(OCg / OCT), N), block = (TW, TH); one thread computes OCT
        channels at one pixel, accumulating in the input dtype. PR x PC is the input patch of a tile.
        """
        sx = cuda.shared.array(SMEM_X, dt)
        sw = cuda.shared.array(SMEM_W, dt)
        C, H, W = x.shape[1], x.shape[2], x.shape[3]
        OC, ICG, KH, KW = w.shape
        OH, OW = out.shape[2], out.shape[3]
        OCG = OC // G
        NOCT = (OCG + OCT - 1) // OCT
        K = KH * KW
        th0 = (cuda.blockIdx.x // TILES_W) * TH
        tw0 = (cuda.blockIdx.x % TILES_W) * TW
        g = cuda.blockIdx.y // NOCT
        oc0 = (cuda.blockIdx.y % NOCT) * OCT
        n = cuda.blockIdx.z
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * TW + tx
        ih0 = th0 * SH - PT
        iw0 = tw0 * SW - PL
        acc0 = dt(0)
        acc1 = dt(0)
        acc2 = dt(0)
        acc3 = dt(0)
        for ic in range(ICG):
            c = g * ICG + ic
            for i in range(tid, PR * PC, TH * TW):
                r = i // PC
                h = ih0 + r
                ww = iw0 + i - r * PC
                v = dt(0)
                if 0 <= h < H and 0 <= ww < W:
                    v = x[n, c, h, ww]
                sx[i] = v
            for i in range(tid, OCT * K, TH * TW):
                o = i // K
                k = i - o * K
                v = dt(0)
                if oc0 + o < OCG:
                    v = w[g * OCG + oc0 + o, ic, k // KW, k % KW]
                sw[i] = v
            # the patch and the weights of channel ic must be complete before any thread reads them
            cuda.syncthreads()
            for kh in range(KH):
                row = (ty * SH + kh * DH) * PC + tx * SW
                for kw in range(KW):
                    v = sx[row + kw * DW]
                    k = kh * KW + kw
                    acc0 += sw[k] * v
                    acc1 += sw[K + k] * v
                    acc2 += sw[2 * K + k] * v
                    acc3 += sw[3 * K + k] * v
            # every thread must be done reading channel ic before the next iteration overwrites the buffers
            cuda.syncthreads()
        oh = th0 + ty
        ow = tw0 + tx
        if oh < OH and ow < OW:
            oc = g * OCG + oc0
            if oc0 < OCG:
                out[n, oc, oh, ow] = acc0 + bias[oc]
            if oc0 + 1 < OCG:
                out[n, oc + 1, oh, ow] = acc1 + bias[oc + 1]
            if oc0 + 2 < OCG:
                out[n, oc + 2, oh, ow] = acc2 + bias[oc + 2]
            if oc0 + 3 < OCG:
                out[n, oc + 3, oh, ow] = acc3 + bias[oc + 3]

    return kernel


def _make_conv_transpose2d(dt):
    @cuda.jit
    def kernel(out, x, w, bias, SH, SW, PH, PW, DH, DW, G, TILES_W):
        """out (N, OC, OH, OW) = transposed conv of x (N, C, H, W) with w (C, OC/G, KH, KW) plus bias (OC,).

        grid = (tiles of TH x TW output pixels, G * ceil(OCg / OCT), N), block = (TW, TH); one thread gathers, for
        its pixel (oh, ow) and OCT channels, every input pixel (ih, iw) with ih * SH + kh * DH = oh + PH (and the
        same along the width), accumulating in the input dtype.
        """
        sw = cuda.shared.array(SMEM_W, dt)
        H, W = x.shape[2], x.shape[3]
        OCG, KH, KW = w.shape[1], w.shape[2], w.shape[3]
        ICG = x.shape[1] // G
        OH, OW = out.shape[2], out.shape[3]
        NOCT = (OCG + OCT - 1) // OCT
        K = KH * KW
        g = cuda.blockIdx.y // NOCT
        oc0 = (cuda.blockIdx.y % NOCT) * OCT
        n = cuda.blockIdx.z
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * TW + tx
        oh = (cuda.blockIdx.x // TILES_W) * TH + ty
        ow = (cuda.blockIdx.x % TILES_W) * TW + tx
        active = oh < OH and ow < OW
        acc0 = dt(0)
        acc1 = dt(0)
        acc2 = dt(0)
        acc3 = dt(0)
        for ic in range(ICG):
            c = g * ICG + ic
            for i in range(tid, OCT * K, TH * TW):
                o = i // K
                k = i - o * K
                v = dt(0)
                if oc0 + o < OCG:
                    v = w[c, oc0 + o, k // KW, k % KW]
                sw[i] = v
            # the weights of channel ic must be complete before any thread reads them
            cuda.syncthreads()
            if active:
                for kh in range(KH):
                    t = oh + PH - kh * DH
                    if t < 0 or t % SH != 0 or t // SH >= H:
                        continue
                    ih = t // SH
                    for kw in range(KW):
                        u = ow + PW - kw * DW
                        if u < 0 or u % SW != 0 or u // SW >= W:
                            continue
                        v = x[n, c, ih, u // SW]
                        k = kh * KW + kw
                        acc0 += sw[k] * v
                        acc1 += sw[K + k] * v
                        acc2 += sw[2 * K + k] * v
                        acc3 += sw[3 * K + k] * v
            # every thread must be done reading channel ic's weights before the next iteration overwrites them
            cuda.syncthreads()
        if active:
            oc = g * OCG + oc0
            if oc0 < OCG:
                out[n, oc, oh, ow] = acc0 + bias[oc]
            if oc0 + 1 < OCG:
                out[n, oc + 1, oh, ow] = acc1 + bias[oc + 1]
            if oc0 + 2 < OCG:
                out[n, oc + 2, oh, ow] = acc2 + bias[oc + 2]
            if oc0 + 3 < OCG:
                out[n, oc + 3, oh, ow] = acc3 + bias[oc + 3]

    return kernel


_conv2d_kernel = {np.dtype(np.float32): _make_conv2d(float32), np.dtype(np.float64): _make_conv2d(float64)}
_conv_transpose2d_kernel = {np.dtype(np.float32): _make_conv_transpose2d(float32),
                            np.dtype(np.float64): _make_conv_transpose2d(float64)}


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


def _bias(b, OC, dtype):
    """``b``, or (no bias) OC zeros made on the call's stream, so that nothing is copied from the host."""
    if b is not None:
        return b
    zeros = empty(OC, dtype)
    fill(zeros, 0)
    return zeros


def _grid(out, OCG, G, N):
    tiles_w = blocks(out.shape[3], TW)
    return (blocks(out.shape[2], TH) * tiles_w, G * blocks(OCG, OCT), N), tiles_w


@register("conv2d", "cuda")
def conv2d(out, x, w, b, stride, padding, dilation, groups):
    N = x.shape[0]
    OC, _, KH, KW = w.shape
    (SH, SW), (PT, _, PL, _), (DH, DW) = stride, padding, dilation
    bias = _bias(b, OC, x.dtype)
    PR = (TH - 1) * SH + (KH - 1) * DH + 1
    PC = (TW - 1) * SW + (KW - 1) * DW + 1
    if PR * PC > SMEM_X or OCT * KH * KW > SMEM_W:
        _conv2d_naive[blocks(out.size), TPB, stream()](out, x, w, bias, SH, SW, PT, PL, DH, DW, groups)
        return
    grid, tiles_w = _grid(out, OC // groups, groups, N)
    _conv2d_kernel[np.dtype(x.dtype)][grid, (TW, TH), stream()](out, x, w, bias, SH, SW, PT, PL, DH, DW, groups, PR, PC,
                                                                 tiles_w)


@register("conv_transpose2d", "cuda")
def conv_transpose2d(out, x, w, b, stride, padding, dilation, groups):
    N = x.shape[0]
    OCG, KH, KW = w.shape[1], w.shape[2], w.shape[3]
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    bias = _bias(b, OCG * groups, x.dtype)
    if OCT * KH * KW > SMEM_W:
        _conv_transpose2d_naive[blocks(out.size), TPB, stream()](out, x, w, bias, SH, SW, PH, PW, DH, DW, groups)
        return
    grid, tiles_w = _grid(out, OCG, groups, N)
    _conv_transpose2d_kernel[np.dtype(x.dtype)][grid, (TW, TH), stream()](out, x, w, bias, SH, SW, PH, PW, DH, DW,
                                                                           groups, tiles_w)
