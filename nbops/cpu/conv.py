"""CPU kernels of the convolution family: direct convolution as a GEMM over packed planes, Winograd for 3x3.

Both conv2d and conv_transpose2d run on one kernel, ``_conv_gemm_kernel``. Its input is a stack of *planes*: each
input channel, zero-padded and split into ``P = SH * SW`` stride phases, flattened to 1-D rows of width ``WQ``. In
that layout every kernel tap ``k`` of a stride-1 view is a fixed plane and a fixed flat offset ``TAPS[k]``, so
``NR`` consecutive output pixels read ``NR`` consecutive values per tap, whatever the stride and dilation. Pixels
whose column falls in ``[NB, WQ)`` are computed and dropped (the few columns of padding per row). Where the
images share out evenly among the threads, a convolution that packs its planes runs ``_conv_image_kernel`` instead:
the same tiles, each image packed by the thread that then computes it, while its planes are in that core's L2.

So a group's output (OCG channels x pixels) is a GEMM: its weights (OCG x T taps) times the T x pixels matrix whose
row k is the planes from offset ``TAPS[k]``. The kernel copies that matrix's rows for NR pixels at a time into a
small panel and runs the linear family's micro-kernel (``linear._tile_into``: an MR x NR register tile written as
LLVM vector IR, so it is full-width zmm code on AVX-512 even where LLVM's tuning prefers ymm) over the weights,
packed once per call as MR-channel panels. On this machine's Xeon (one of its two threads busy elsewhere, same
process, medians) against the register-blocked direct kernel it replaced, float32: 3x3 s2 C64->128 56^2 113 ->
174 GFLOP/s, 7x7 s2 C3->64 224^2 62 -> 76, 3x3 C64 56^2 84 -> 102, 3x3 C128 28^2 147 -> 216. Unpadded 1x1
convolutions run the linear family's GEMM itself (a strided one on the rows and columns it reads, gathered first),
but for unstrided channel reductions over large planes, which run the tile kernel (DIRECT_1X1_PIXELS).

conv_transpose2d is the same gather: for each output phase ``(oh + PH) % SH, (ow + PW) % SW`` the taps that reach it
form a stride-1 correlation with a sub-kernel over the zero-padded input, computed with its own tap table. With
SW == 1 a phase writes its rows straight into the output (row stride SH); with SW == 2 and one group the two column
phases of a row phase run as one kernel that stores them interleaved (``_conv_gemm_pair_kernel``); otherwise the
phases write into a phase buffer, and ``_interleave_kernel`` merges the SW column phases into the output rows. No
zero-dilated input is ever built. A stride-2 transposed convolution whose phases read a 3x3 window of the input (4x4
padding 1, a decoder's upsampling) is instead one 3x3 convolution to 4 * OC channels, one per phase, by Winograd
(``_phases_winograd``).

3x3 stride-1 layers with enough channels and tiles take Winograd F(4x4, 3x3) (``winograd.py``). Depthwise
convolution (one input channel per group) has its own kernel, ``_depthwise_kernel``, that pads each plane into a
thread-local buffer and accumulates ``DW_PB``-pixel tiles over the taps (stride-1 layers on AVX-512 CPUs that LLVM
tunes for ymm: ``_depthwise_wide_kernel``, its twin on zmm).
"""

import functools
import math
import threading

import numba
import numpy as np
from llvmlite import binding as llvm
from numba import njit, prange

from .. import _hostpool
from .._dispatch import kernel, register
from ._util import flat_view, run_parallel, stack_empty, thread_count, vector_bytes, wide_vectors
from .linear import MR, ROW_BYTES, SERIAL_MACS, _copy_row, _l2_bytes, _pack_a, _row_width, _rows_tile, \
    _taps_tile_into
from .winograd import E, LANES, SPLIT_DEPTH, SPLIT_PANELS, _filter_transform_kernel, _winograd_kernel, \
    _winograd_split_kernel

# Intel's AVX-512 cores that LLVM tunes to prefer 256-bit vectors: the njit kernels compile to ymm there, so a
# 32-pixel tile is 8 x 4 ymm accumulators and spills. One thread, N8, direct kernel against F.conv2d with 32 / 16
# pixels (rocketlake as LLVM names this KVM guest's Xeon): 3x3 s2 C64->128 56^2 0.385 / 0.454x, 3x3 C64 56^2
# 0.434 / 0.534x, 7x7 s2 C3->64 224^2 1.00 / 1.20x.
_PREFER_YMM = {"skylake-avx512", "skx", "cascadelake", "cooperlake", "cannonlake", "icelake-client", "icelake-server",
               "rocketlake", "tigerlake", "sapphirerapids", "emeraldrapids", "graniterapids", "graniterapids-d"}


def _prefers_ymm():
    """Whether LLVM compiles the AVX-512 kernels of this process for ymm: the CPU numba targets is in _PREFER_YMM
    and NUMBA_CPU_FEATURES does not turn the preference off with '-prefer-256-bit' (with it, on this machine, an
    8 x 32 float32 register tile ran at 175 GFLOP/s on one core, the best ymm tile at 100-112)."""
    if "-prefer-256-bit" in (numba.config.CPU_FEATURES or "").split(","):
        return False
    name = numba.config.CPU_NAME
    return (llvm.get_host_cpu_name() if not name or name == "host" else name) in _PREFER_YMM


# a vector's worth of pixels as the depthwise kernel's loops compile: 2 zmm; 2 ymm where LLVM keeps to ymm; 1 ymm
# of AVX2's; also the zeros kept past the packed planes
PB = 8 if vector_bytes() == 32 else 16 if _prefers_ymm() else 32
DW_PB = 4 * PB  # output pixels per depthwise tile (8 zmm or 8 or 4 ymm: more FMAs per tap's address arithmetic)
DW_WIDE = vector_bytes() == 64 and _prefers_ymm()  # the depthwise kernel has a 512-bit twin for such CPUs
DW_WIDE_PB = 128  # ... with tiles of this many pixels (``_depthwise_wide_kernel``)
DW_WIDE_PIXELS = 256  # ... taken by stride-1 layers with at least this many pixels a plane (flattened rows). 2
# threads, N8, float32, same process, ms, ymm / zmm: 3x3 C256 28^2 0.62 / 0.53, C144 56^2 1.33 / 1.18, C32 112^2
# 1.27 / 1.15, 5x5 C256 28^2 1.18 / 1.01, float64 3x3 C256 28^2 1.13 / 1.02; tiles of 64 on zmm gained half as
# much; stride 2 lost 1-18 % (C128 56^2, C512 14^2, C96 112^2); smaller planes were not measured on zmm
ITEMS_PER_THREAD = 4  # split pixels into chunks until there are this many prange items per thread
SMALL_PLANE = 256  # 1x1 convolutions with fewer output pixels than this run one GEMM over all images' pixels
# Unstrided 1x1 convolutions that reduce channels (C > OC) over planes of at least this many pixels run the tile
# kernel, not the GEMM: the GEMM packs all of its B (the input, the larger operand here) before few output-channel
# panels use it, where the tiles copy each 32-pixel panel into L1 and use it at once. 2 threads, N8, float32,
# GEMM / tiles, ms: C256->64 56^2 6.4-7.4 / 5.6-5.8, C512->128 28^2 5.8-6.2 / 4.8-5.4, C1024->256 14^2 6.2-6.5 /
# 5.1, C128->64 56^2 4.0-4.2 / 3.7-4.0, C96->64 56^2 3.5 / 3.2-3.4; C2048->512 7^2 5.6-5.9 / 5.9-6.0 (2 tiles a
# plane, 23 % of them padding); and where C <= OC the GEMM wins: C64->256 56^2 4.9-5.5 / 7.7, C64->64 56^2
# 1.5-2.0 / 1.6-2.1, C256->256 14^2 1.2 / 1.5.
DIRECT_1X1_PIXELS = 128
CHUNK_BYTES = 512 * 1024  # output bytes of one pixel chunk, buffered in L2 until the chunk is stored
# Direct convolutions with weights of at least an L2 run as im2col and a GEMM (``_im2col``): the tile kernel reads
# every weight once per 32-pixel tile, from L3 once they outgrow L2, where the GEMM keeps a packed block of them in
# L1 across all the pixels of the images. 2 threads, float32, 3x3 stride 2, ms, tiles / im2col + GEMM (weights):
# C256->512 14^2 N8 5.32 / 4.33 (4.7 MB), N2 1.55 / 1.37, C512->512 14^2 N8 10.9 / 8.4 (9.4 MB); below it, C128->256
# 28^2 N8 4.02 / 3.99 (1.2 MB), C64->128 56^2 3.94 / 4.68 (0.3 MB), 7x7 C3->64 224^2 8.4 / 14.5.
IM2COL_WEIGHT_BYTES = _l2_bytes()
IM2COL_BYTES = 16 << 20  # the im2col matrix of one GEMM: the images are taken in groups that fit
PARALLEL_PANEL_BYTES = 1 << 20  # weight panels from this size are interleaved on every thread
# a Winograd item's V and M (36 x (C + OC) values per tile) stay in L2 between its steps; one thread, N8, by V + M
# per item: C256 14^2 1.2 MB 10.0 ms, 2.4 MB 8.1, 4.7 MB 8.2; C128 28^2 0.6 MB 9.1, 1.8-2.4 MB 7.8; C64 56^2 0.3 MB
# 11.2, 0.9-1.8 MB 10.6
WINOGRAD_ITEM_BYTES = 5 * 512 * 1024
# 3x3 stride-1 layers take Winograd with >= 32 input and output channels and >= 32 4x4 output tiles (all images
# together). Measured on one thread against the direct kernel (same process, medians of 7): float32 N8 C64 56^2
# 1.97x, C256 14^2 1.67x, C512 7^2 (32 tiles) 1.28x, C32 28^2 1.15x, C16->64 56^2 1.06x; but C16 28^2 0.78x,
# C8 28^2 0.59x, N1 C64 14^2 (16 tiles) 0.89x, N1 C512 7^2 (4 tiles: the filter transform is all) 0.26x.
# float64: 2.3-2.7x on C32 28^2 ... C512 7^2.
WINOGRAD_MIN_CHANNELS = 32
WINOGRAD_MIN_TILES = 2 * LANES
FM = {"contract"}  # FMA contraction only: NaN/inf propagate as in separate multiply-add


@njit(inline="always")
def _pack_plane(dst, d0, L, src, s0, H, W, SH, SW, PT, PL, WQ, borders):
    """Zero-pad one (H, W) plane by (PT top, PL left) and split it into SH*SW stride phases.

    src: a C-contiguous array holding the plane's H * W pixels from flat element s0; dst: a C-contiguous array
    whose flat elements ``[d0 + r * L, d0 + (r + 1) * L)`` are phase row r. Phase ``(i, j)`` is row ``i * SW + j``
    and holds padded pixel ``(hq*SH + i, wq*SW + j)`` at ``hq * WQ + wq``; everything else is zero. With ``borders``
    False only the input pixels are written (the zeros of a previous plane of the same geometry are kept). With
    SW == 2 both column phases of a row are filled by one loop over the input's column pairs (``_pack_pairs``),
    which LLVM turns into two vector loads and an even/odd shuffle per vector of output; a strided loop per phase
    stays scalar (``_pack_kernel``, 2 threads, same process, strided loops / pairs: N8 C64 56^2 pad 1 0.53 / 0.30
    ms, N8 C3 224^2 pad 3 0.33 / 0.12 ms). Rows are borrowed views (``_util.flat_view``), not slices (two slices a row,
    each two atomic reference-count updates), and a row's source is a view that starts at its first pixel, so the
    copy loop indexes from 0 and needs no negative-index wrap-around (with it the loop stayed scalar); medians of
    back-to-back calls, same process, slices / views: ``_pack_kernel`` N8 C64 56^2 s2 pad 1 0.48 / 0.28 ms, N8 C3
    224^2 s2 pad 3 0.17 / 0.13 ms, N8 C256 28^2 s1 pad 1 0.39 / 0.21 ms; the depthwise kernel (N8 C256 28^2 3x3),
    which packs one small plane per output plane and so has this function inlined, 0.60-0.67 / 0.53-0.60 ms.
    """
    if borders:
        zeros = flat_view(dst, d0, SH * SW * L)
        for q in range(SH * SW * L):
            zeros[q] = 0
    if SW == 2 and (W - 1 + PL) // 2 < WQ:  # every input column lands inside its phase row
        _pack_pairs(dst, d0, L, src, s0, H, W, SH, PT, PL, WQ)
        return
    for i in range(SH):
        hq_lo = max(0, -((i - PT) // SH))
        hq_hi = min(L // WQ, (H - 1 + PT - i) // SH + 1)
        for j in range(SW):
            lo = max(0, -((j - PL) // SW))
            hi = min(WQ, (W - 1 + PL - j) // SW + 1)
            m = hi - lo
            if m <= 0:
                continue
            for hq in range(hq_lo, hq_hi):
                d = flat_view(dst, d0 + (i * SW + j) * L + hq * WQ + lo, m)
                first = s0 + (hq * SH + i - PT) * W + lo * SW + j - PL  # the input pixel of d[0]
                if SW == 1:
                    sr = flat_view(src, first, m)
                    for q in range(m):
                        d[q] = sr[q]
                else:
                    sr = flat_view(src, first, (m - 1) * SW + 1)
                    for q in range(m):
                        d[q] = sr[q * SW]


@njit(cache=True)
def _pack_pairs(dst, d0, L, src, s0, H, W, SH, PT, PL, WQ):
    """The pixels of ``_pack_plane`` for SW == 2 where every input column lands inside its phase row: input column
    2t goes to column phase PL % 2 at t + PL // 2, column 2t + 1 to the other phase at t + (PL + 1) // 2."""
    W2 = W // 2
    for i in range(SH):
        hq_lo = max(0, -((i - PT) // SH))
        hq_hi = min(L // WQ, (H - 1 + PT - i) // SH + 1)
        ev = d0 + (i * 2 + PL % 2) * L + PL // 2
        od = d0 + (i * 2 + (PL + 1) % 2) * L + (PL + 1) // 2
        for hq in range(hq_lo, hq_hi):
            sr = flat_view(src, s0 + (hq * SH + i - PT) * W, W)
            de = flat_view(dst, ev + hq * WQ, W2 + W % 2)
            do = flat_view(dst, od + hq * WQ, W2)
            for t in range(W2):
                de[t] = sr[2 * t]
                do[t] = sr[2 * t + 1]
            if W % 2:
                de[W2] = sr[W - 1]


@njit(inline="always")
def _row_segment(a, p0, pend, WQ):
    """The flat pixels of [p0, pend) (row width WQ) that lie in grid row a: their first column, their count, and
    the first one's offset from p0 (where a chunk buffer that starts at pixel p0 holds it)."""
    lo = max(p0, a * WQ)
    return lo - a * WQ, min(pend, a * WQ + WQ) - lo, lo - p0


@njit(inline="always")
def _store_tile(o, o0, OW, acc, a0, n, bv, p0, NPIX, WQ, NB, OH0, OSH):
    """Write ``n`` flat pixels ``p0 + j`` (row width WQ, the first NB columns real) from ``acc[a0:]`` plus ``bv``
    into the plane of row width OW that starts at ``o[o0]`` (C-contiguous arrays, flat indices), pixel (a, b) at
    row ``OH0 + a*OSH``, column b: one contiguous row segment at a time (the copy vectorises; a per-pixel scatter
    costs more than the taps of a small convolution). Segments are borrowed views (``_util.flat_view``), not two
    slices per output row and channel; 2 threads, same process, N8, old / new median ratio: 7x7 s2 C3->64 224^2
    (112 rows a plane) 1.04, conv_transpose2d 3x3 s2 op1 C128->64 28^2 1.02-1.03, 3x3 s2 C64->128 56^2 1.01-1.02."""
    pend = min(p0 + n, NPIX)
    for a in range(p0 // WQ, -(-pend // WQ)):
        b, seg, at = _row_segment(a, p0, pend, WQ)
        m = min(seg, NB - b)
        if m > 0:
            src = flat_view(acc, a0 + at, m)
            d = flat_view(o, o0 + (OH0 + a * OSH) * OW + b, m)
            for q in range(m):
                d[q] = src[q] + bv


@njit(parallel=True, cache=True)
def _pack_kernel(xs, x, SH, SW, PT, PL, WQ):
    """Planes for the tile kernel: x (N, C, H, W) -> xs (N, C*SH*SW, L), see ``_pack_plane``.

    One prange iteration packs one (n, c) plane.
    """
    N, C, H, W = x.shape
    L = xs.shape[2]
    P = SH * SW
    for it in prange(N * C):
        _pack_plane(xs, it * P * L, L, x, it * H * W, H, W, SH, SW, PT, PL, WQ, True)


@njit(inline="always")
def _taps_rows_tile(wp, w_at, T, xn, gp, TAPS, tmp, i0, j0, rows):
    """One MR-channel panel's tile of the direct convolution, B read in place: tmp[i0:i0 + rows, j0:j0 + NR] = the
    panel at wp[w_at:] times the T rows ``xn[gp + TAPS[k]:][:NR]`` (``linear._taps_tile_into``), on the shortest
    register tile that holds ``rows`` rows (4, 8 where MR is larger, else MR), as ``linear._rows_tile`` picks."""
    if rows <= 4:
        _taps_tile_into(4, wp, w_at, MR, 1, T, xn, gp, TAPS, tmp, i0, j0, rows, False)
    elif rows <= 8 and MR > 8:
        _taps_tile_into(8, wp, w_at, MR, 1, T, xn, gp, TAPS, tmp, i0, j0, rows, False)
    else:
        _taps_tile_into(MR, wp, w_at, MR, 1, T, xn, gp, TAPS, tmp, i0, j0, rows, False)


@njit(inline="always")
def _chunk_tiles(tmp, r0, xn, wp, w_at, TAPS, gp0, t_lo, t_hi, base, NPIX, OCG, IN_PLACE, bp):
    """The NR-pixel tiles t_lo <= t < t_hi of one chunk, every output channel of a group: tmp[r0 + c, p - base] =
    the group's channel c at flat pixel p (weights: the OCG channels' MR-row panels from wp[w_at:]; B: the tap
    rows ``xn[gp0 + TAPS[k] + p]``, read in place where ``IN_PLACE``, else copied into the (T * NR,) panel ``bp``
    first). A last partial tile is shifted back to end at pixel NPIX - 1, its first pixels recomputed."""
    T = TAPS.shape[0]
    NR = _row_width(xn)
    NS = (OCG + MR - 1) // MR
    zero = xn.dtype.type(0)
    for t in range(t_lo, t_hi):
        p0 = min(t * NR, NPIX - NR) if NPIX >= NR else 0
        valid = min(NR, NPIX - p0)
        gp = gp0 + p0
        q = p0 - base
        if valid == NR and IN_PLACE:
            for sp in range(NS):
                _taps_rows_tile(wp, w_at + sp * T * MR, T, xn, gp, TAPS, tmp, r0 + sp * MR, q, min(MR, OCG - sp * MR))
            continue
        if valid == NR:
            for k in range(T):
                _copy_row(bp, k * NR, xn, TAPS[k] + gp)
        else:
            for k in range(T):
                s = TAPS[k] + gp
                d = k * NR
                for j in range(NR):
                    bp[d + j] = xn[s + j] if j < valid else zero
        for sp in range(NS):
            _rows_tile(wp, w_at + sp * T * MR, MR, 1, T, bp, 0, NR, tmp, r0 + sp * MR, q, min(MR, OCG - sp * MR),
                       False)


@njit(parallel=True, cache=True)
def _conv_gemm_kernel(out, xs, wp, bias, TAPS, G, GSTRIDE, WQ, NA, NB, OH0, OSH, NCH, IN_PLACE):
    """The direct convolution as a GEMM per pixel tile, on the linear family's vector-IR micro-kernel.

    xs: (N, G*ICg*P*L) planes, flat per image; wp: (G * NS * T * MR,) the weights as the micro-kernel's A panels,
    ``wp[((g * NS + s) * T + k) * MR + r]`` = the weight of tap k (input channel, kernel position) of output channel
    ``g * OCG + s * MR + r``, zero past the group's OCG channels (``_panels``); bias: (OC,); TAPS: (T,) the flat
    offset in xs[n] of each tap of group 0, GSTRIDE the offset between the G groups; out: (N, OC, OH, OW),
    OC = G * OCG. The pixel grid covers NA x NB output pixels, flattened with row width WQ; pixel ``(a, b)`` goes to
    ``out[..., OH0 + a*OSH, b]`` (rows of a transposed convolution's phase are OSH apart; its column phases come back
    through a buffer). NCH pixel chunks per (n, g).

    Seen as a GEMM, a group's output (OCG, pixels) is its weights (OCG, T) times the (T, pixels) matrix whose row k
    is the packed planes from flat offset TAPS[k]: each row is a contiguous run of the input. One prange iteration
    takes one (n, g, pixel chunk); for each NR-pixel tile it runs the micro-kernel for each MR-channel panel with
    B read in place through the tap table (``_taps_rows_tile``): MR x 2 vector accumulators in registers, each k
    step a tap offset, 2 vector loads of that tap's NR pixels, MR broadcasts of A and 2 MR FMAs on full-width
    vectors (zmm with AVX-512 whatever LLVM's tuning prefers: the loop is written as vector IR). The tiles land in
    a (NS * MR, chunk) buffer whose rows are stored to ``out`` with the bias at the end of the chunk
    (``_store_tile``: dropped columns skipped, phase rows OSH apart). A last partial tile is shifted back to end at
    the last pixel (recomputing a few pixels with identical results), so no read passes the last pixel's taps;
    fewer than NR pixels in all are copied into a zero-filled (T, NR) panel ``bp``.

    B is read in place where ``IN_PLACE`` (the launchers' rule: at least two taps per input channel), else each
    tile first copies its T rows' NR values into ``bp`` (``_copy_row``) and runs ``_tile_into`` on that panel.
    The copy is T * NR values a tile, 1 / OCG of its FMAs, but 8-20 % of the time where neighbouring taps share
    cache lines: 2 threads, same process, copied / in place, ms: 3x3 s2 C64->128 56^2 N8 5.46 / 4.99, 7x7 s2
    C3->64 224^2 N8 11.4 / 10.6, conv_transpose2d 3x3 s2 op1 C128->64 28^2 N8 8.22 / 7.38, 3x3 C16->32 56^2 N8
    1.56 / 1.36. With one tap per channel each k step reads new lines one plane apart, and the panel wins: 1x1
    C256->64 56^2 N8 5.8 / 8.0.
    """
    N = xs.shape[0]
    per = _tiles_per_chunk((NA - 1) * WQ + NB, _row_width(xs), NCH)
    for it in prange(N * G * NCH):
        r = it // NCH
        bp, tmp = _chunk_buffers(xs, out.shape[1] // G, TAPS.shape[0], per)
        _group_chunk(out, xs[r // G], r // G, r % G, it % NCH, per, wp, bias, TAPS, G, GSTRIDE, WQ, NA, NB, OH0, OSH,
                     IN_PLACE, bp, tmp)


@njit(inline="always")
def _tiles_per_chunk(NPIX, NR, NCH):
    """NR-pixel tiles a chunk when NPIX pixels are cut into NCH chunks (the last ones may hold fewer or none)."""
    return ((NPIX + NR - 1) // NR + NCH - 1) // NCH


@njit(inline="always")
def _chunk_buffers(like, OCG, T, per):
    """A chunk's (T * NR,) B panel and (NS * MR, (per + 1) * NR) output buffer for ``_group_chunk``."""
    NR = _row_width(like)
    return np.empty(T * NR, like.dtype), np.empty(((OCG + MR - 1) // MR * MR, per * NR + NR), like.dtype)


@njit(inline="always")
def _group_chunk(out, xn, n, g, ch, per, wp, bias, TAPS, G, GSTRIDE, WQ, NA, NB, OH0, OSH, IN_PLACE, bp, tmp):
    """Pixel chunk ch (tiles ``ch * per`` up to ``(ch + 1) * per``) of group g of image n, whose packed planes are
    ``xn`` (flat): its tiles into ``tmp`` (``_chunk_tiles``), then stored to ``out`` with the bias; arguments as
    ``_conv_gemm_kernel``'s, buffers from ``_chunk_buffers``."""
    OC, OW = out.shape[1], out.shape[3]
    OHW = out.shape[2] * OW
    T = TAPS.shape[0]
    OCG = OC // G
    NR = _row_width(xn)
    NS = (OCG + MR - 1) // MR
    NPIX = (NA - 1) * WQ + NB
    NT = (NPIX + NR - 1) // NR
    t_lo = ch * per
    t_hi = min(NT, (ch + 1) * per)
    if t_hi > t_lo:
        TW = tmp.shape[1]
        base = min(t_lo * NR, NPIX - NR) if NPIX >= NR else 0
        _chunk_tiles(tmp, 0, xn, wp, g * NS * T * MR, TAPS, g * GSTRIDE, t_lo, t_hi, base, NPIX, OCG, IN_PLACE, bp)
        start = t_lo * NR
        stop = min(t_hi * NR, NPIX)
        for o in range(OCG):
            c = g * OCG + o
            _store_tile(out, (n * OC + c) * OHW, OW, tmp, o * TW + start - base, stop - start, bias[c], start, NPIX,
                        WQ, NB, OH0, OSH)


@njit(parallel=True, cache=True)
def _conv_image_kernel(out, x, wp, bias, TAPS, G, SH, SW, PT, PL, WQ, L, NA, NB, NCH, IN_PLACE):
    """``_conv_gemm_kernel`` with the packing inside: one prange iteration takes one image, packs its planes
    (``_pack_plane``, C * SH * SW planes of L elements, as ``_pack_kernel`` would) into a buffer of its own and
    runs every (group, pixel chunk) of the image over them, NCH chunks a group. x: (N, C, H, W); the rest as
    ``_conv_gemm_kernel``'s (GSTRIDE = C / G * SH * SW * L).

    The planes of one image (0.9 MB for C64 56^2 stride 2) are written and then read while they are in the
    thread's L2; packed for all images by one launch first, 7.2 MB of them went to memory and came back: one
    thread, N8, GFLOP/s of the kernel alone after the packing, 8 images / 1: 3x3 s2 C64->128 56^2 113 / 135.
    """
    N, C, H, W = x.shape
    P = SH * SW
    per = _tiles_per_chunk((NA - 1) * WQ + NB, _row_width(x), NCH)
    for n in prange(N):
        xn = np.empty(C * P * L, x.dtype)
        for c in range(C):
            _pack_plane(xn, c * P * L, L, x, (n * C + c) * H * W, H, W, SH, SW, PT, PL, WQ, True)
        bp, tmp = _chunk_buffers(x, out.shape[1] // G, TAPS.shape[0], per)
        for g in range(G):
            for ch in range(NCH):
                _group_chunk(out, xn, n, g, ch, per, wp, bias, TAPS, G, C // G * P * L, WQ, NA, NB, 0, 1, IN_PLACE,
                             bp, tmp)


@njit(inline="always")
def _store_pair(o, o0, OW, acc, e0, d1, n, bv, p0, NPIX, WQ, NB0, NB1, OH0, OSH):
    """``_store_tile`` for the two column phases of a transposed convolution with column stride 2, computed
    together: flat pixel p (row width WQ) of the even phase (NB0 columns, ``acc[e0 + p - p0]``) goes to column 2b
    of output row OH0 + a * OSH, the odd phase's (NB1 = NB0 or NB0 - 1 columns, ``d1`` elements further in acc) to
    column 2b + 1: one loop over the pairs of each row segment, which LLVM turns into interleaving vector stores,
    where storing each phase with a column stride is a scalar store a pixel."""
    pend = min(p0 + n, NPIX)
    for a in range(p0 // WQ, -(-pend // WQ)):
        b, seg, at = _row_segment(a, p0, pend, WQ)
        m = min(seg, NB1 - b)
        row = flat_view(o, o0 + (OH0 + a * OSH) * OW, OW)
        if m > 0:
            ev = flat_view(acc, e0 + at, m)
            od = flat_view(acc, e0 + d1 + at, m)
            for q in range(m):
                row[2 * (b + q)] = ev[q] + bv
                row[2 * (b + q) + 1] = od[q] + bv
        if NB0 > NB1 and b <= NB1 < b + seg:  # the even phase's last column, which has no odd partner
            last = flat_view(acc, e0 + at + NB1 - b, 1)
            row[2 * NB1] = last[0] + bv


@njit(parallel=True, cache=True)
def _conv_gemm_pair_kernel(out, xs, wp0, TAPS0, wp1, TAPS1, bias, WQ, NA, NB0, NB1, OH0, OSH, NCH, IN0, IN1):
    """``_conv_gemm_kernel`` for the two column phases of one row phase of a transposed convolution with column
    stride 2 and one group, run together so that their outputs are stored interleaved (``_store_pair``) rather
    than into a phase buffer that ``_interleave_kernel`` then merges (a read and a write of the output's size).

    The even phase (output columns 2b, NB0 of them; weights wp0, tap table TAPS0, B read in place where IN0) and the
    odd one (columns 2b + 1, NB1 = NB0 or NB0 - 1; wp1, TAPS1, IN1) share the pixel grid (NA x NB0 flat pixels of
    row width WQ; the odd phase's extra column is computed and dropped) and the packed planes. One prange
    iteration takes one (n, pixel chunk): the chunk's tiles of both phases into one buffer, the even phase's
    channels in its first rows, then the stores. 2 threads, same process, N8, float32, ms, a launch per phase
    and the interleave / pairs: 3x3 s2 op1 C128->64 28^2 4.95 / 4.38 (the interleave was 0.37 of it), C64->32 56^2
    6.58 / 5.35, 3x3 s2 C128->64 27^2 (odd output width) 4.45 / 3.95; same values bit for bit."""
    N = xs.shape[0]
    OC, OW = out.shape[1], out.shape[3]
    OHW = out.shape[2] * OW
    NR = _row_width(xs)
    NS = (OC + MR - 1) // MR
    NPIX = (NA - 1) * WQ + NB0
    NT = (NPIX + NR - 1) // NR
    per = (NT + NCH - 1) // NCH
    for it in prange(N * NCH):
        ch = it % NCH
        n = it // NCH
        t_lo = ch * per
        t_hi = min(NT, (ch + 1) * per)
        if t_hi <= t_lo:
            continue
        xn = xs[n]
        bp = np.empty(max(TAPS0.shape[0], TAPS1.shape[0]) * NR, xs.dtype)
        TW = per * NR + NR
        tmp = np.empty((2 * NS * MR, TW), xs.dtype)
        base = min(t_lo * NR, NPIX - NR) if NPIX >= NR else 0
        _chunk_tiles(tmp, 0, xn, wp0, 0, TAPS0, 0, t_lo, t_hi, base, NPIX, OC, IN0, bp)
        _chunk_tiles(tmp, NS * MR, xn, wp1, 0, TAPS1, 0, t_lo, t_hi, base, NPIX, OC, IN1, bp)
        start = t_lo * NR
        stop = min(t_hi * NR, NPIX)
        for c in range(OC):
            _store_pair(out, (n * OC + c) * OHW, OW, tmp, c * TW + start - base, NS * MR * TW, stop - start, bias[c],
                        start, NPIX, WQ, NB0, NB1, OH0, OSH)


@njit(inline="always")
def _fill_panel(wp, w, G, gs):
    """Panel gs = g * NS + s of the weights' A panels: wp[gs, k, r] = w[g * OCG + s * MR + r, k], zero past the
    group's OCG channels; w: (OC, T) C-contiguous, wp: (G * NS, T, MR). The linear family's A packing
    (``linear._pack_a``: 16 steps of the panel at a time through a register transpose) on the panel's rows; one
    thread, hot, us, element by element / this: C64->128 3x3 26.9 / 9.7, C3->64 7x7 4.3 / 2.1, C8->256 3x3 in 32
    groups 10.3 / 6.6."""
    OC, T = w.shape
    OCG = OC // G
    NS = (OCG + MR - 1) // MR
    g = gs // NS
    s = gs - g * NS
    _pack_a(wp[gs:gs + 1], w.reshape(-1), (g * OCG + s * MR) * T, T, 1, min(MR, OCG - s * MR), T)


@njit(cache=True)
def _panels_serial(wp, w, G, panels):
    """Every panel (``_fill_panel``) on one thread: a small layer's, where a parallel launch costs more."""
    for gs in range(panels):
        _fill_panel(wp, w, G, gs)


@njit(parallel=True, cache=True)
def _panels_parallel(wp, w, G, panels):
    """Every panel (``_fill_panel``), one per prange iteration."""
    for gs in prange(panels):
        _fill_panel(wp, w, G, gs)


def _panels(w, G):
    """(OC, T) weights -> the A panels of ``_conv_gemm_kernel`` (``_fill_panel``), flat, made on every call: 4.7 MB
    for a C256 -> 512 3x3 layer, 0.17 ms on two threads (0.59 copied element by element; NumPy's transposing copy
    took 1.1). Below PARALLEL_PANEL_BYTES one thread does it (a parallel launch costs more than the copy)."""
    OC, T = w.shape
    panels = G * -(-(OC // G) // MR)
    wp = np.empty((panels, T, MR), w.dtype)
    fill = _panels_parallel if wp.nbytes >= PARALLEL_PANEL_BYTES else _panels_serial
    fill(wp, np.ascontiguousarray(w), G, panels)
    return wp.reshape(-1)


@njit(inline="always", fastmath=FM)
def _depthwise_chunk(out, x, w, bias, TOFF, TPL, SH, SW, PT, PL, WQ, L, ch, per, acc):
    """Chunk ``ch`` (``per`` output planes) of ``_depthwise_kernel``: per plane, input channel oc // M packed into a
    (SH*SW, L) buffer (see ``_pack_plane``; the zero borders are written once per chunk), then the KH*KW taps summed
    into the stack accumulator ``acc``, a tile of acc.shape[0] output pixels (input dtype). Rows and tiles are
    borrowed views (``_util.flat_view``), not slices: a slice costs two atomic reference-count updates, about 130
    of them per 28^2 plane (2 threads, same process, N8 C256 28^2 3x3: 0.955 -> 0.876 ms)."""
    N, C, H, W = x.shape
    OC, K = w.shape
    OH, OW = out.shape[2], out.shape[3]
    M = OC // C
    P = acc.shape[0]
    NPIX = (OH - 1) * WQ + OW
    NT = (NPIX + P - 1) // P
    buf = np.empty((SH * SW, L), x.dtype)
    tmp = np.empty(L, x.dtype)
    for it in range(ch * per, min(N * OC, (ch + 1) * per)):
        n = it // OC
        oc = it - n * OC
        _pack_plane(buf, 0, L, x, (n * C + oc // M) * H * W, H, W, SH, SW, PT, PL, WQ, it == ch * per)
        wk = flat_view(w, oc * K, K)
        bv = bias[oc]
        for t in range(NT):
            p0 = min(t * P, NPIX - P) if NPIX >= P else 0
            for j in range(P):
                acc[j] = 0
            for k in range(K):
                s = TOFF[k] + p0
                xv = flat_view(buf, TPL[k] * L + s, P)
                wv = wk[k]
                for j in range(P):
                    acc[j] += wv * xv[j]
            tv = flat_view(tmp, p0, P)
            for j in range(P):
                tv[j] = acc[j] + bv
        for a in range(OH):
            orow = flat_view(out, ((n * OC + oc) * OH + a) * OW, OW)
            trow = flat_view(tmp, a * WQ, OW)
            for b in range(OW):
                orow[b] = trow[b]


@njit(parallel=True, cache=True, fastmath=FM)
def _depthwise_kernel(out, x, w, bias, TOFF, TPL, SH, SW, PT, PL, WQ, L, NCH):
    """Depthwise convolution: one input channel per group, M = OC // C output channels per input channel.

    x: (N, C, H, W); w: (OC, K); bias: (OC,); TOFF, TPL: (K,) tap offsets and planes as ``_taps`` gives them;
    out: (N, OC, OH, OW); L: a packed phase plane's length, DW_PB past its last pixel. One prange iteration
    computes a chunk of the N * OC output planes (``_depthwise_chunk``), DW_PB pixels a tile.
    """
    per = (x.shape[0] * w.shape[0] + NCH - 1) // NCH
    for ch in prange(NCH):
        _depthwise_chunk(out, x, w, bias, TOFF, TPL, SH, SW, PT, PL, WQ, L, ch, per, stack_empty(DW_PB, x))


@njit(parallel=True, cache=True, fastmath=FM)
def _depthwise_wide_kernel(out, x, w, bias, TOFF, TPL, SH, SW, PT, PL, WQ, L, NCH):
    """``_depthwise_kernel`` on 512-bit vectors (``wide_vectors`` in the prange body) and tiles of DW_WIDE_PB
    pixels (8 zmm of float32), for the stride-1 layers of an AVX-512 CPU whose LLVM tuning keeps to ymm (see
    DW_WIDE_PB); L: DW_WIDE_PB past the plane's last pixel."""
    per = (x.shape[0] * w.shape[0] + NCH - 1) // NCH
    for ch in prange(NCH):
        wide_vectors()
        _depthwise_chunk(out, x, w, bias, TOFF, TPL, SH, SW, PT, PL, WQ, L, ch, per, stack_empty(DW_WIDE_PB, x))


@njit(parallel=True, cache=True)
def _interleave_kernel(out, ph):
    """Interleave the column phases of a strided transposed convolution: ``out[n, c, oh, b*SW + j] = ph[j, n, c,
    oh, b]``.

    out: (N, OC, OH, OW); ph: (SW, N, OC, OH, NB), NB = ceil(OW / SW); phase j's column NB - 1 is read only where
    ``(NB - 1) * SW + j < OW`` (the ragged last column when SW does not divide OW). One prange iteration writes one
    (n, c) plane, row by row; with SW == 2 each row is one loop over the pairs of both phases, which LLVM turns
    into interleaving vector stores (vpermt2ps) instead of one scalar store per pixel.
    """
    SW = ph.shape[0]
    N, OC, OH, OW = out.shape
    NF = OW // SW
    for it in prange(N * OC):
        n = it // OC
        c = it - n * OC
        o = out[n, c]
        for oh in range(OH):
            row = o[oh]
            if SW == 2:
                p0 = ph[0, n, c, oh]
                p1 = ph[1, n, c, oh]
                for b in range(NF):
                    row[2 * b] = p0[b]
                    row[2 * b + 1] = p1[b]
            else:
                for b in range(NF):
                    for j in range(SW):
                        row[b * SW + j] = ph[j, n, c, oh, b]
            for j in range(OW - NF * SW):
                row[NF * SW + j] = ph[j, n, c, oh, NF]


@njit(parallel=True, cache=True)
def _shuffle2_kernel(out, comb):
    """Spread the four stride phases of a stride-2 transposed convolution into place: ``out[n, c, 2*i + rh, 2*j +
    rw] = comb[n, 4*c + 2*rh + rw, i, j]`` (a pixel shuffle by 2, cropped to out).

    out: (N, OC, OH, OW); comb: (N, 4 * OC, I, J), I = ceil(OH / 2), J = ceil(OW / 2). One prange iteration writes
    one (n, c) plane, row by row; each row is one loop over the column pairs of two phase rows, which LLVM turns
    into interleaving vector stores, as in ``_interleave_kernel``. Rows are borrowed views (``_util.flat_view``).
    Napkin: N8 OC64 56^2 float32 moves 6.4 MB in and out, about 0.5 ms at the 29 GB/s copy rate of this machine.
    """
    N, OC, OH, OW = out.shape
    I, J = comb.shape[2], comb.shape[3]
    NF = OW // 2
    for it in prange(N * OC):
        for oh in range(OH):
            i = oh // 2
            src = ((it * 4 + 2 * (oh - 2 * i)) * I + i) * J  # phase (oh % 2, 0) at row i; phase (oh % 2, 1) follows
            p0 = flat_view(comb, src, J)
            p1 = flat_view(comb, src + I * J, J)
            row = flat_view(out, (it * OH + oh) * OW, OW)
            for b in range(NF):
                row[2 * b] = p0[b]
                row[2 * b + 1] = p1[b]
            if OW % 2:
                row[OW - 1] = p0[NF]


@njit(parallel=True, cache=True)
def _phase_weights_kernel(w3, w, taps):
    """The 3x3 weights of a stride-2 transposed convolution's four phases (``_phases_winograd``):
    ``w3[4*oc + 2*rh + rw, c, a, b] = w[c, oc, taps[0, rh, a], taps[1, rw, b]]``, zero where a tap is -1.

    w: (C, OC, KH, KW); w3: (4 * OC, C, 3, 3); taps: (2, 2, 3). One prange iteration fills one output channel's
    four phases, every element written (w3 comes uninitialised). NumPy's 16 strided block copies into a zeroed
    array took 0.43 ms for C128 -> 64 4x4, 5 % of the layer.
    """
    C, OC = w.shape[0], w.shape[1]
    for oc in prange(OC):
        for rh in range(2):
            for rw in range(2):
                for c in range(C):
                    for a in range(3):
                        kh = taps[0, rh, a]
                        for b in range(3):
                            kw = taps[1, rw, b]
                            w3[4 * oc + 2 * rh + rw, c, a, b] = w[c, oc, kh, kw] if kh >= 0 and kw >= 0 else 0


@njit(parallel=True, cache=True)
def _conv2d_naive(out, x, w, bias, SH, SW, PT, PL, DH, DW, G):
    """Reference convolution, one output value at a time with bounds checks (the oracle of the fast kernels).

    x: (N, C, H, W); w: (OC, C/G, KH, KW); bias: (OC,); out: (N, OC, OH, OW); padding PT top, PL left (the bottom
    and right padding follow from out's shape). One prange iteration computes one (n, oc) plane, accumulating in
    float64.
    """
    N, C, H, W = x.shape
    OC, ICG, KH, KW = w.shape
    OH, OW = out.shape[2], out.shape[3]
    OCG = OC // G
    for it in prange(N * OC):
        n = it // OC
        oc = it - n * OC
        g = oc // OCG
        for oh in range(OH):
            for ow in range(OW):
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


def _chunks(N, G, OCG, NA, NB, WQ, itemsize):
    """Pixel chunks per (n, g) for ``_conv_gemm_kernel``: enough that every thread gets ITEMS_PER_THREAD prange
    items or more, and small enough that a chunk's output buffer (every output channel of the group over the
    chunk's pixels) stays in L2 until it is stored (CHUNK_BYTES)."""
    NR = ROW_BYTES // itemsize
    tiles = -(-((NA - 1) * WQ + NB) // NR)
    balance = -(-ITEMS_PER_THREAD * thread_count() // (N * G))
    fit = max(1, CHUNK_BYTES // (-(-OCG // MR) * MR * NR * itemsize))
    return max(1, min(tiles, max(balance, -(-tiles // fit))))


_SCRATCH = threading.local()


def _planes(shape, dtype, use="planes"):
    """An uninitialised array for packed planes, carved from a per-thread buffer kept between calls: a fresh
    multi-MiB array costs page faults on every call, often more than the packing itself. One buffer per ``use``:
    arrays of different uses may be alive together."""
    size = math.prod(shape)
    key = use + np.dtype(dtype).str
    buf = getattr(_SCRATCH, key, None)
    if buf is None or buf.size < size:
        buf = np.empty(size, dtype)
        setattr(_SCRATCH, key, buf)
    return buf[:size].reshape(shape)


def _linear_matmul():
    """The linear family's CPU matmul launcher, or None where it is not available (``_gemm`` and ``_im2col`` then
    leave the layer to the conv tiles)."""
    try:
        return kernel("matmul", "cpu")
    except (KeyError, ImportError, NotImplementedError):
        return None


def _gemm(out, x, w, b):
    """An unpadded 1x1 convolution as the linear family's GEMM (its cache-blocked kernel beats the conv tiles when
    there is one tap per input channel, but for the channel reductions of DIRECT_1X1_PIXELS). x: (N, C, OH, OW),
    the pixels the convolution reads (a strided view for a strided one). Planes of SMALL_PLANE pixels or more run
    out[n] = w @ x[n] per image; smaller ones, where a GEMM over so few columns wastes most of its register tiles,
    run one GEMM over the pixels of all images, (OC, C) @ (C, N*OH*OW), and transpose the result into place. False
    when the linear family is not available (the caller then runs the conv tiles)."""
    matmul = _linear_matmul()
    if matmul is None:
        return False
    N, C = x.shape[0], x.shape[1]
    OC = w.shape[0]
    HW = x.shape[2] * x.shape[3]
    w2 = w.reshape(OC, C)
    out3 = out.reshape(N, OC, HW)
    if HW < SMALL_PLANE:
        cols = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(1, C, N * HW)
        res = np.empty((1, OC, N * HW), x.dtype)
        matmul(res, w2[None], cols)
        out3[...] = res.reshape(OC, N, HW).transpose(1, 0, 2)
        if b is not None:
            out3 += b[None, :, None]
        return True
    a = np.broadcast_to(w2[None], (N, OC, C))
    x3 = np.ascontiguousarray(x).reshape(N, C, HW)
    if b is None:
        matmul(out3, a, x3)
    else:
        out3[...] = b[None, :, None]
        matmul(out3, a, x3, 1, 1)
    return True


def _winograd_pays(N, C, OC, OH, OW):
    """Whether a 3x3, stride-1 convolution runs faster as Winograd F(4x4, 3x3) than as the direct kernel (see
    WINOGRAD_MIN_CHANNELS for the measurements)."""
    return min(C, OC) >= WINOGRAD_MIN_CHANNELS and N * -(-OH // 4) * -(-OW // 4) >= WINOGRAD_MIN_TILES


def _winograd_splits(N, OC, OH, OW):
    """Whether a Winograd layer runs the split schedule: at least 4 output channels per 4x4 tile, where U (36 x OC x
    C values), stored and read whole by every worker, outweighs V (36 x C x tiles) read once per channel panel
    group. 2 threads, float32, ms, per-item / split / torch, by OC per tile: C64 28^2 N8 (0.16) 1.25 / 1.89 / 1.75,
    C256 14^2 N32 (0.5) 14.3 / 20.2 / 23.9, C128 14^2 N8 (1) 1.74 / 2.30 / 1.77, C256 14^2 N8 (2) 3.94 / 4.76 /
    5.58, C512 14^2 N8 (4) 28.1 / 15.2 / 23.9, C512 7^2 N32 (4) 27.6 / 17.1 / 21.9, C512 7^2 N8 (16) 15.1 / 4.2 /
    5.0."""
    return OC >= 4 * N * -(-OH // 4) * -(-OW // 4)


def _winograd(out, x, w, bias, PT, PL, split=None):
    """out = the 3x3, stride-1 convolution of x (N, C, H, W) with w (OC, C, 3, 3) by Winograd's F(4x4, 3x3) (see
    winograd.py), padding PT top and PL left (bottom and right follow from out's shape). Layers with at least as many
    output channels as tiles run the split schedule (``_winograd_split_kernel``, U made panel by panel, never
    stored), the rest the per-item one over stored transformed filters (``split`` forces one, for the tests).
    Buffers are carved from the per-thread
    scratch buffer. False, with out overwritten, when an output is not finite: the caller then recomputes the layer
    with the direct kernel, whose NaN/inf pattern is torch's."""
    N, C = x.shape[0], x.shape[1]
    OC, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    tiles = N * -(-OH // 4) * -(-OW // 4)
    threads = thread_count()
    ns = -(-OC // MR)  # U's micro-kernel panels per element
    cs = C * MR + LANES  # one panel of U and the slack its last channel's runs overhang into
    if _winograd_splits(N, OC, OH, OW) if split is None else split:
        NR = ROW_BYTES // x.itemsize
        sl = -(-tiles // NR) * NR
        nv, nm = E * (C * sl + LANES) + sl, E * (ns * MR + 1) * sl + sl
        P, KB = SPLIT_PANELS, SPLIT_DEPTH
        lp = P * E * (KB * MR + LANES)  # one worker's U blocks
        buf = _planes((nv + nm + threads * lp,), x.dtype)
        flags = np.empty(threads, x.dtype)
        _winograd_split_kernel(out, x, w, bias, PT, PL, buf[:nv], buf[nv:nv + nm], buf[nv + nm:].reshape(threads, lp),
                               P, KB, flags)
        return not np.isnan(flags).any()
    nb = max(1, min(WINOGRAD_ITEM_BYTES // (E * LANES * (C + OC) * x.itemsize), tiles // (LANES * threads)))
    nw = min(threads, -(-tiles // LANES))
    sl = (nb + 1) * LANES
    nu = E * ns * cs
    per = E * (C * sl + LANES) + E * (ns * MR + 1) * sl  # one worker's V and M
    buf = _planes((nu + nw * per,), x.dtype)
    u = buf[:nu].reshape(E, ns, cs)
    _filter_transform_kernel(u, w)
    flags = np.empty(nw, x.dtype)
    _winograd_kernel(out, x, u, bias, PT, PL, nb, buf[nu:].reshape(nw, per), flags)
    return not np.isnan(flags).any()


def _taps(KH, KW, SH, SW, DH, DW, WQ):
    """Flat offset and phase plane of each tap (kh, kw) of a KH x KW kernel, in row-major tap order, in the packed
    planes of row width WQ."""
    kh, kw = np.divmod(np.arange(KH * KW), KW)
    return (kh * DH // SH) * WQ + kw * DW // SW, (kh * DH % SH) * SW + kw * DW % SW


@functools.lru_cache(maxsize=256)
def _tap_table(ICG, P, L, KH, KW, SH, SW, DH, DW, WQ):
    """The direct kernel's tap table: the flat offset of tap (c, kh, kw) in channel c's packed planes of L elements
    (P phase planes a channel, rows of WQ), for c < ICG. Kept per geometry and shared (the kernel only reads it):
    its NumPy operations on tiny arrays took 7 us of a 41 us call on a 1 x 3 x 8 x 8 input."""
    toff, tpl = _taps(KH, KW, SH, SW, DH, DW, WQ)
    return ((np.arange(ICG)[:, None] * P + tpl[None, :]) * L + toff[None, :]).reshape(-1)


def _bias(b, OC, dtype):
    return np.zeros(OC, dtype) if b is None else b


@register("conv2d", "cpu")
def conv2d(out, x, w, b, stride, padding, dilation, groups):
    """out (N, OC, OH, OW) = conv of x (N, C, H, W) with w (OC, C/groups, KH, KW); padding (top, bottom, left,
    right)."""
    N, C, H, W = x.shape
    OC, ICG, KH, KW = w.shape
    OH, OW = out.shape[2], out.shape[3]
    (SH, SW), (PT, PB_, PL, PR), (DH, DW) = stride, padding, dilation
    bias = _bias(b, OC, x.dtype)
    K = KH * KW
    if ICG == 1 and groups == C:
        WQ = -(-(W + PL + PR) // SW)
        HQ = -(-(H + PT + PB_) // SH)
        toff, tpl = _taps(KH, KW, SH, SW, DH, DW, WQ)
        nch = min(N * OC, 8 * ITEMS_PER_THREAD * thread_count())
        wide = DW_WIDE and SH == SW == 1 and (OH - 1) * WQ + OW >= DW_WIDE_PIXELS
        kernel, tile = (_depthwise_wide_kernel, DW_WIDE_PB) if wide else (_depthwise_kernel, DW_PB)
        run_parallel(kernel, out.size * K, out, x, w.reshape(OC, K), bias, toff, tpl, SH, SW, PT, PL, WQ,
                     HQ * WQ + tile, nch, below=SERIAL_MACS)
        return
    if KH == KW == 1 and PT == PB_ == PL == PR == 0 and groups == 1 and not (
            SH == SW == 1 and C > OC and OH * OW >= DIRECT_1X1_PIXELS):
        if _gemm(out, x[:, :, ::SH, ::SW], w, b):  # a strided one reads every SH-th row and SW-th column only
            return
    if KH == KW == 3 and SH == SW == DH == DW == 1 and groups == 1 and _winograd_pays(N, C, OC, OH, OW):
        if _winograd(out, x, w, bias, PT, PL):
            return
    _direct(out, x, w, bias, stride, padding, dilation, groups)


def _direct(out, x, w, bias, stride, padding, dilation, groups):
    """The direct convolution: ``_conv_gemm_kernel`` over the input itself (stride 1, no padding) or over packed
    stride-phase planes (``_conv_image_kernel`` where ``_by_image``), or, with weights of IM2COL_WEIGHT_BYTES or
    more, im2col and the GEMM (``_im2col``); arguments as the conv2d launcher's, bias an (OC,) array."""
    N, C, H, W = x.shape
    OC, ICG, KH, KW = w.shape
    OH, OW = out.shape[2], out.shape[3]
    (SH, SW), (PT, PB_, PL, PR), (DH, DW) = stride, padding, dilation
    NPIX = (OH - 1) * W + OW
    macs = out.size * ICG * KH * KW  # below SERIAL_MACS the kernels run on the calling thread
    packed = not (SH == SW == 1 and PT == PB_ == PL == PR == 0 and NPIX >= PB)  # else the input is its own plane
    P, WQ = (SH * SW, -(-(W + PL + PR) // SW)) if packed else (1, W)
    L = -(-(H + PT + PB_) // SH) * WQ + PB if packed else H * W
    taps = _tap_table(ICG, P, L, KH, KW, SH, SW, DH, DW, WQ)
    im2col = _im2col_pays(OC, ICG * KH * KW, x.itemsize, groups)
    nch = _chunks(N, groups, OC // groups, OH, OW, WQ, x.itemsize)
    if packed and _by_image(N, macs) and not im2col:
        run_parallel(_conv_image_kernel, macs, out, x, _panels(w.reshape(OC, -1), groups), bias, taps, groups, SH,
                     SW, PT, PL, WQ, L, OH, OW, nch, KH * KW >= 2, below=SERIAL_MACS)
        return
    if packed:
        xs = _planes((N, C * P, L), x.dtype)
        run_parallel(_pack_kernel, macs, xs, x, SH, SW, PT, PL, WQ, below=SERIAL_MACS)
    else:
        xs = x.reshape(N, C, L)
    if im2col and _im2col(out, xs.reshape(N, -1), w, bias, taps, WQ, macs):
        return
    run_parallel(_conv_gemm_kernel, macs, out, xs.reshape(N, -1), _panels(w.reshape(OC, -1), groups), bias, taps,
                 groups, ICG * P * L, WQ, OH, OW, 0, 1, nch, KH * KW >= 2, below=SERIAL_MACS)


@njit(parallel=True, cache=True)
def _im2col_kernel(cols, xs, n0, NI, TAPS, WQ, NA, NB):
    """cols[k, (i * NA + a) * NB + b] = xs[n0 + i, TAPS[k] + a * WQ + b] for i < NI: the (T, NI * NA * NB) matrix
    whose row k is tap k's value at each output pixel (a, b) of images n0 ... n0 + NI - 1 (planes xs: (N, planes),
    row width WQ); cols' columns past those are zeroed. One prange iteration fills one row, a run of NB values at a
    time."""
    X = xs.shape[1]
    S = cols.shape[1]
    zero = xs.dtype.type(0)
    for k in prange(TAPS.shape[0]):
        for i in range(NI):
            for a in range(NA):
                src = flat_view(xs, (n0 + i) * X + TAPS[k] + a * WQ, NB)
                dst = flat_view(cols, k * S + (i * NA + a) * NB, NB)
                for b in range(NB):
                    dst[b] = src[b]
        pad = flat_view(cols, k * S + NI * NA * NB, S - NI * NA * NB)
        for j in range(pad.shape[0]):
            pad[j] = zero


@njit(parallel=True, cache=True)
def _columns_kernel(out, n0, NI, res, bias):
    """out[n0 + i, c, p] = res[c, i * P + p] + bias[c] (P = OH * OW) for i < NI: a product over the pixels of NI
    images back into (N, OC, OH, OW). One prange iteration per (image, channel)."""
    OC = out.shape[1]
    P = out.shape[2] * out.shape[3]
    S = res.shape[1]
    for it in prange(NI * OC):
        i = it // OC
        c = it - i * OC
        src = flat_view(res, c * S + i * P, P)
        dst = flat_view(out, ((n0 + i) * OC + c) * P, P)
        bv = bias[c]
        for p in range(P):
            dst[p] = src[p] + bv


def _im2col_pays(OC, T, itemsize, groups):
    """Whether a direct convolution runs as im2col and the linear family's GEMM (``_im2col``): weights of at least
    IM2COL_WEIGHT_BYTES, one group."""
    return groups == 1 and OC * T * itemsize >= IM2COL_WEIGHT_BYTES


def _im2col(out, xs, w, bias, taps, WQ, macs):
    """The direct convolution over packed planes xs (N, planes) as GEMMs: for each group of images whose im2col
    matrix (``_im2col_kernel``) fits in IM2COL_BYTES, res = w (OC, T) @ cols, then res's columns back into out with
    the bias (``_columns_kernel``). Each GEMM's columns are whole NR-wide panels (zero columns past the images'),
    so no tile takes the ragged edge path. False when the linear family is not available."""
    matmul = _linear_matmul()
    if matmul is None:
        return False
    N, OC, OH, OW = out.shape
    T = taps.shape[0]
    P = OH * OW
    NR = ROW_BYTES // xs.itemsize
    step = max(1, min(N, IM2COL_BYTES // (T * P * xs.itemsize)))
    wt = w.reshape(1, OC, T)
    for n0 in range(0, N, step):
        images = min(step, N - n0)
        S = -(-images * P // NR) * NR
        cols = _planes((T, S), xs.dtype, "cols")
        run_parallel(_im2col_kernel, macs, cols, xs, n0, images, taps, WQ, OH, OW, below=SERIAL_MACS)
        res = _planes((OC, S), xs.dtype, "res")
        matmul(res[None], wt, cols[None])
        run_parallel(_columns_kernel, macs, out, n0, images, res, bias, below=SERIAL_MACS)
    return True


def _by_image(N, macs):
    """Whether a direct convolution that packs its planes runs ``_conv_image_kernel`` (each image packed and
    computed by one thread) rather than ``_pack_kernel`` and then ``_conv_gemm_kernel``: on one thread, or where the
    images share out evenly among the threads (a multiple of them, or at least 4 each)."""
    threads = 1 if macs < SERIAL_MACS else thread_count()
    return N % threads == 0 or N >= 4 * threads


def _column_pairs(plan):
    """The phases of a ``_phase_plan`` with column stride 2 as (even, odd) pairs of one row phase each, for
    ``_conv_gemm_pair_kernel``: every row phase must have both column phases, output columns 0, 2, ... and 1, 3, ...,
    the odd one no wider than the even one and at most one column narrower. None otherwise."""
    rows = {}
    for entry in plan:
        rows.setdefault(entry[2], {})[entry[3]] = entry
    pairs = []
    for phases in rows.values():
        if sorted(phases) != [0, 1]:
            return None
        even, odd = phases[0], phases[1]
        if even[0] != odd[0] or not 0 <= even[1] - odd[1] <= 1:
            return None
        pairs.append((even, odd))
    return pairs


@functools.lru_cache(maxsize=256)
def _phase_plan(KH, KW, SH, SW, DH, DW, PH, PW, OH, OW, WQ, CH, CW, ICG, L):
    """The output stride phases of ``_transposed`` that have outputs, per geometry: for phase (rh, rw), its output
    rows and columns (na, nb), its first output pixel (oh0, ow0), each in [0, stride), the kernel row and column
    indices of its taps as broadcasting index arrays (khs (T_h, 1), kws (1, T_w)), and its tap table (ICG channels
    of L packed elements, rows of WQ). Kept and shared (the kernels only read the tables): their NumPy operations
    on tiny arrays took most of a 132 us call on a 1 x 8 x 8 x 8 input (torch 8.7)."""
    plan = []
    for rh in range(SH):
        a0 = -(-(PH - rh) // SH)
        na = (OH - 1 + PH - rh) // SH - a0 + 1
        khs, ch = _phase_taps(KH, SH, DH, PH, rh)
        for rw in range(SW):
            b0 = -(-(PW - rw) // SW)
            nb = (OW - 1 + PW - rw) // SW - b0 + 1
            if na <= 0 or nb <= 0:
                continue
            kws, cw = _phase_taps(KW, SW, DW, PW, rw)
            toff = ((a0 - ch + CH)[:, None] * WQ + (b0 - cw + CW)[None, :]).reshape(-1)
            taps = (np.arange(ICG)[:, None] * L + toff[None, :]).reshape(-1)
            plan.append((na, nb, SH * a0 + rh - PH, SW * b0 + rw - PW, khs[:, None], kws[None, :], taps))
    return tuple(plan)


def _phase_taps(K, S, D, P, r):
    """Taps of a transposed conv that reach outputs with (o + P) % S == r: their indices and row shifts c, where
    the input row is a - c for output o = S*a + r - P."""
    ks = np.array([k for k in range(K) if (k * D) % S == r], dtype=np.int64)
    return ks, (ks * D - r) // S


def _phase_offsets(K, S, P):
    """For output index ``o = S*i + r`` of a transposed convolution (kernel K, stride S, padding P, dilation 1),
    the taps that reach it: triples (r, k, d), input index ``i + d``."""
    return [(r, k, (r + P - k) // S) for r in range(S) for k in range(K) if (r + P - k) % S == 0]


@functools.lru_cache(maxsize=256)
def _phases_as_3x3(KH, KW, stride, padding, dilation, groups):
    """The tap offsets of each dimension (``_phase_offsets``) when a transposed convolution is, phase by phase, one
    stride-1 3x3 convolution: stride 2 both ways, dilation 1, one group, and the input offsets of all phases
    spanning exactly three rows and columns, the lowest at most 0 (the top and left padding). None otherwise.

    A 4x4 stride-2 padding-1 layer (a decoder's upsampling) is one: output 2i reads inputs i and i - 1, output
    2i + 1 inputs i + 1 and i, so the four phases are four output channels of a 3x3 convolution whose taps are
    zero where a phase does not reach (4 of 9 used). Winograd F(4x4, 3x3) does it with 36 / 16 = 2.25 multiplies
    per output and input channel, where the phases' direct kernels do 4. Kept per geometry (2.6 us to work out;
    stride, padding and dilation are tuples)."""
    if tuple(stride) != (2, 2) or tuple(dilation) != (1, 1) or groups != 1:
        return None
    offs = tuple(_phase_offsets(KH, 2, padding[0])), tuple(_phase_offsets(KW, 2, padding[1]))
    for o in offs:
        d = [t[2] for t in o]
        if min(d) > 0 or max(d) - min(d) != 2 or {t[0] for t in o} != {0, 1}:
            return None
    return offs


def _phases_winograd(out, x, w, bias, offs):
    """The transposed convolution of x (N, C, H, W) with w (C, OC, KH, KW) as one stride-1 3x3 convolution over
    x to 4 * OC channels, channel ``4*oc + 2*rh + rw`` the output phase (rh, rw) of channel oc (``_phases_as_3x3``
    gives the tap offsets ``offs``), by Winograd, then ``_shuffle2_kernel`` into out. The phases' buffer (N, 4*OC,
    ceil(OH/2), ceil(OW/2)) is the size of out (within a row and a column), the 3x3 weights (4*OC, C, 3, 3) 2.25x
    those of a 4x4 layer (1.2 MB for C128 -> 64), both from the host cache (no page faults after the first call).
    False, with out unset, when Winograd does not pay or an output is not finite (the caller then runs the phase
    kernels)."""
    N, C = x.shape[0], x.shape[1]
    OC, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    I, J = -(-OH // 2), -(-OW // 2)
    if not _winograd_pays(N, C, 4 * OC, I, J):
        return False
    pads = [-min(t[2] for t in o) for o in offs]  # the 3x3 convolution's top and left padding
    taps = np.full((2, 2, 3), -1, np.int64)  # taps[dim, phase, window position]: the kernel index, or -1
    for dim in range(2):
        for r, k, d in offs[dim]:
            taps[dim, r, d + pads[dim]] = k
    w3 = _hostpool.empty((4 * OC, C, 3, 3), x.dtype)
    _phase_weights_kernel(w3, w, taps)
    comb = _hostpool.empty((N, 4 * OC, I, J), x.dtype)
    if not _winograd(comb, x, w3, np.repeat(bias, 4), pads[0], pads[1]):
        return False
    _shuffle2_kernel(out, comb)
    return True


@register("conv_transpose2d", "cpu")
def conv_transpose2d(out, x, w, b, stride, padding, dilation, groups):
    """out (N, OC, OH, OW) = transposed conv of x (N, C, H, W) with w (C, OC/groups, KH, KW); OH, OW include the
    output padding. Stride-2 layers whose phases form one 3x3 convolution (``_phases_as_3x3``) take Winograd where
    it pays (``_phases_winograd``); the rest, and those whose Winograd output is not finite, ``_transposed``."""
    bias = _bias(b, out.shape[1], x.dtype)
    offs = _phases_as_3x3(w.shape[2], w.shape[3], stride, padding, dilation, groups)
    if offs is not None and _phases_winograd(out, x, w, bias, offs):
        return
    _transposed(out, x, w, bias, stride, padding, dilation, groups)


def _transposed(out, x, w, bias, stride, padding, dilation, groups):
    """The transposed convolution by its output stride phases; arguments as the launcher's, bias an (OC,) array.

    Each output stride phase runs the tile kernel once; with SW == 2 and one group, each row phase's two column
    phases run as one pair kernel that writes the output interleaved (``_column_pairs``). Otherwise, with a column
    stride SW > 1, the phases write contiguous row segments into a (SW, N, OC, OH, ceil(OW / SW)) buffer, column
    phase j at column ow // SW of its rows, and ``_interleave_kernel`` merges them into ``out``: a phase written
    straight into ``out`` with a column stride costs one scalar store per pixel, which made a 4x4 stride-2
    C128->64 28x28 layer 3-27 % (median about 12 %) slower than the buffer and the interleave. Row strides need no
    buffer (each phase row is one contiguous segment)."""
    N, C, H, W = x.shape
    _, OCG, KH, KW = w.shape
    OC, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    ICG = C // groups
    CH, CW = (KH - 1) * DH // SH, (KW - 1) * DW // SW
    HP = CH + max(H, (OH - 1 + PH) // SH + 1)
    # a row holds CW zeros, the W input columns and zeros up to WQ; reads right of it (input columns up to
    # (OW - 1 + PW) // SW) fall on the next row's CW leading zeros, the last row's on the CW zeros past the plane
    WQ = max(CW + W, (OW - 1 + PW) // SW + 1)
    L = HP * WQ + PB + CW
    NX = N * C * L
    NQ = -(-OW // SW)
    plan = _phase_plan(KH, KW, SH, SW, DH, DW, PH, PW, OH, OW, WQ, CH, CW, ICG, L)
    pairs = _column_pairs(plan) if SW == 2 and groups == 1 else None
    # packed planes and (SW > 1, unless the column phases run in pairs) the phase buffer, one carve of the
    # per-thread scratch
    buf = _planes((NX + (SW * N * OC * OH * NQ if SW > 1 and pairs is None else 0),), x.dtype)
    xs = buf[:NX].reshape(N, C, L)
    run_parallel(_pack_kernel, NX, xs, x, 1, 1, CH, CW, WQ)
    xs2 = xs.reshape(N, C * L)
    # (G, ICg, OCg, KH, KW) -> (G*OCg, ICg, KH, KW): the weights of each output channel, as conv2d lays them out
    wt = w.reshape(groups, ICG, OCG, KH, KW).transpose(0, 2, 1, 3, 4).reshape(OC, ICG, KH, KW)
    if pairs is not None:
        for (na, nb0, oh0, _, khs0, kws0, taps0), (_, nb1, _, _, khs1, kws1, taps1) in pairs:
            sub0, sub1 = wt[:, :, khs0, kws0].reshape(OC, -1), wt[:, :, khs1, kws1].reshape(OC, -1)
            nch = _chunks(N, 1, 2 * OC, na, nb0, WQ, x.itemsize)
            run_parallel(_conv_gemm_pair_kernel, N * OC * na * (nb0 * sub0.shape[1] + nb1 * sub1.shape[1]), out, xs2,
                         _panels(sub0, 1), taps0, _panels(sub1, 1), taps1, bias, WQ, na, nb0, nb1, oh0, SH, nch,
                         khs0.size * kws0.size >= 2, khs1.size * kws1.size >= 2, below=SERIAL_MACS)
        return
    ph = buf[NX:].reshape(SW, N, OC, OH, NQ) if SW > 1 else None
    for na, nb, oh0, ow0, khs, kws, taps in plan:
        sub = wt[:, :, khs, kws].reshape(OC, -1)  # the phase's taps, a fresh (OC, T) copy
        nch = _chunks(N, groups, OCG, na, nb, WQ, x.itemsize)
        dst = out if ph is None else ph[ow0]
        run_parallel(_conv_gemm_kernel, N * OC * na * nb * sub.shape[1], dst, xs2, _panels(sub, groups), bias, taps,
                     groups, ICG * L, WQ, na, nb, oh0, SH, nch, khs.size * kws.size >= 2, below=SERIAL_MACS)
    if ph is not None:
        run_parallel(_interleave_kernel, out.size, out, ph)
