"""CPU Winograd convolution F(4x4, 3x3) (Lavin and Gray, 2015) for 3x3, stride-1, dilation-1 layers.

A 4x4 block of outputs of a 3x3 filter is ``A^T [(G g G^T) * (B^T d B)] A`` for the 6x6 input tile ``d`` around it:
36 multiplies per input channel instead of 144. Over C input and OC output channels the 36 element-wise products
become 36 independent GEMMs, ``M[e] (OC, T) = U[e] (OC, C) @ V[e] (C, T)`` over the T tiles of the batch, which run
on a register-tiled micro-kernel; the transforms are linear, cheap, and vectorised over 16 tiles or channels.

Two schedules, chosen by ``conv._winograd_splits``:

1. Per item (many tiles for the channels: early layers, large images). ``_filter_transform_kernel`` stores U
   (36, OC, C) = G g G^T of every filter as the micro-kernel's MR-row panels, per call (a cache keyed on the weight
   array would go stale when the caller updates the weights in place); ``_winograd_kernel``
   numbers tiles ``n*TH*TW + ti*TW + tj`` (TH x TW tiles per image cover the OH x OW outputs) and cuts them into
   items of whole 16-tile blocks; each worker runs its items through three steps that keep the item's
   transform-domain data in L2:
   ``_transform_input`` V (36, C, item tiles) = B^T d B, 16 tiles of a tile row at a time on vectors;
   ``_gemm_tiles`` M (36, OC, item tiles) = U[e] @ V[e], the linear family's MR x NR register tile per (e,
   channel panel, NR tiles); ``_transform_output`` out = A^T M A + bias, each tile's 4x4 outputs stored where they fall
   inside the output. The last step also flags non-finite outputs: Winograd spreads a NaN or inf over a whole
   tile (inf * 0 = NaN in the transforms), so the launcher that sees the flag recomputes the layer with the
   direct kernel, which gives torch's NaN/inf pattern.
2. Split (at least as many output channels as tiles: deep layers, small images, where U outweighs V).
   ``_winograd_split_kernel`` runs the same three steps over the whole layer, the GEMM step split over output
   channel panels, each panel's filters transformed into L2 just before its tiles run (``_filter_panel``): U is
   never stored, and every worker reads only its share of the weights.

Memory: U is 36/9 = 4x the weight (9.4 MB for a 256 -> 256 layer in float32, 37.7 MB for ResNet-50's 512 -> 512);
the split schedule keeps one panel of it per worker (884 KB at C = 512) and the whole layer's V and M instead
(2.4 MB each at C512 7^2 N8: no more than U would be, by the rule that picks it).
In the per-item schedule each worker's V and M hold 36 x (C + OC) values per tile of its item, items sized to about
2.5 MB (WINOGRAD_ITEM_BYTES in cpu/conv.py; at least one 16-tile block: 2.4 MB for 512 -> 512). The launcher carves U
and the workers' V and M from a per-thread buffer kept between calls, so a call allocates only its output and a
few KiB per worker. Staging V and M for the whole layer instead (2.25x the input and the output) ran 2-5x slower
on those layers: the writes that scatter them are bound by the memory system.

Accuracy: the transforms' constants (up to 5 in B, 8 in A, 1/24 in G) round float32 products a few times more
than a direct sum does; the max relative error against a float64 reference on the bench's ResNet layers is given in
bench/cases/conv.py's accuracy report.
"""

import numpy as np
from numba import njit, prange

from ._util import flat_view, stack_empty
from .linear import MR, _row_width, _rows_tile

SPLIT_PANELS = 8  # the split schedule's GEMM step: output channel panels (of MR) that share each V tile from L1,
SPLIT_DEPTH = 64  # and input channels per pass: the group's U blocks (36 x 64 x 8 x MR, 884 KB) stay in L2. Of
# (panels, depth) = (8, 64), (12, 64), (4, 64), (4, 128), (8, 32), (16, 32), (2, 256) in one process, (8, 64) and
# (12, 64) ran fastest on C256 14^2 and C512 7^2 at N8 and N32 (C512 7^2 N32: 18.7 ms, against 21.4 at (2, 256))
LANES = 16  # tiles per vector step of the transforms: 2 ymm of float32 (LLVM's preferred width on Intel)
E = 36  # transform-domain elements per tile (6 x 6)
FM = {"contract"}  # FMA contraction only: NaN/inf propagate as in separate multiply-add


@njit(parallel=True, cache=True)
def _filter_transform_kernel(u, w):
    """u[r*6 + s, oc // MR, (oc % MR) + c * MR] = (G g G^T)[r, s] for the 3x3 filter g = w[oc, c].

    w: (OC, C, 3, 3); u: (36, NS, CS), CS >= C * MR + LANES: per element and MR-channel panel the micro-kernel's A
    panel (C, MR), then slack for ``_filter_panel``'s overhanging runs. One prange iteration is one panel. Per call
    (a cache keyed on the weight array would go stale when the caller updates the weights in place).
    """
    NS, CS = u.shape[1], u.shape[2]
    uf = u.reshape(E * NS * CS)
    for panel in prange(NS):
        _filter_panel(uf[panel * CS:], NS * CS, w, panel, 0, w.shape[1])


@njit(cache=True, inline="always")
def _g6(a, b, c, k):
    """G (6x3) times the column (a, b, c): the 1-D filter transform of F(4, 3). ``k``: (1/4, 1/6, 1/12, 1/24) in
    the data's dtype (float64 constants would turn float32 arithmetic into float64)."""
    h = (a + c) * -k[1]
    g = b * -k[1]
    m = a * k[3] + c * k[1]
    n = b * k[2]
    return a * k[0], h + g, h - g, m + n, m - n, c


@njit(cache=True, inline="always")
def _bt6(d0, d1, d2, d3, d4, d5, one):
    """B^T (6x6) times the column (d0..d5): the 1-D input transform of F(4, 3). ``one`` is 1 in the data's dtype
    (an integer literal would promote float32 arithmetic to float64)."""
    two = one + one
    four = two + two
    p = d4 - four * d2
    q = d3 - four * d1
    r = d4 - d2
    s = (d3 - d1) + (d3 - d1)
    return four * (d0 - d2) + (d4 - d2), p + q, p - q, r + s, r - s, four * (d1 - d3) + (d5 - d3)


@njit(cache=True, inline="always")
def _at4(m0, m1, m2, m3, m4, m5, one):
    """A^T (4x6) times the column (m0..m5): the 1-D output transform of F(4, 3); ``one`` as in ``_bt6``."""
    a = m1 + m2
    b = m1 - m2
    c = m3 + m4
    d = m3 - m4
    two = one + one
    four = two + two
    return m0 + a + c, b + (d + d), a + four * c, b + (four + four) * d + m5


@njit(cache=True, fastmath=FM)
def _transform_input(vi, x, tlo, thi, PT, PL, TH, TW, SL, prows, taps):
    """vi[e, c, t - tlo] = (B^T d B)[e] for the 6x6 padded input tile d of each tile t in [tlo, thi), channel c.

    x: (N, C, H, W); vi: (36, ES), row e holding (C, SL) at flat c * SL + column, SL >= thi - tlo + LANES (the
    rows of e are ES = C * SL + LANES apart, not a multiple of 4 KiB: 36 rows 4 KiB apart share one L1 set);
    prows: (6 * R + 1, RL) zeros, R >= the tile rows the item reaches, RL >= 4 * TW + 8; taps: (6 * SL,) int64
    scratch. Tile t = n*TH*TW + ti*TW + tj reads padded rows 4*ti .. 4*ti + 5 and columns 4*tj .. 4*tj + 5
    (padding PT top, PL left; zeros past the input). Per channel, the 6 input rows of each tile row the item
    reaches are copied into prows at column PL (their zero padding is never written; rows outside the input
    read the all-zero last row). Then LANES consecutive tiles at a time, whatever rows they lie in: each tile's
    6 values of row m are gathered into a stack tile (one row per q, one lane per tile; taps holds each tile's
    offset in prows, the same for every channel), the two 1-D transforms run on vectors, and the 36 results go
    to vi (lanes past thi land on the slack).
    """
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    ES = vi.shape[1]
    RL = prows.shape[1]
    ZR = (prows.shape[0] - 1) * RL
    r0 = tlo // TW
    one = x.dtype.type(1)
    n = r0 // TH
    ti = r0 - n * TH
    tj = tlo - r0 * TW
    for q in range(thi - tlo):  # each tile's row-m offsets in prows, m = 0 .. 5
        k = (n * TH + ti) - r0
        for m in range(6):
            h = 4 * ti - PT + m
            taps[m * SL + q] = (6 * k + m) * RL + 4 * tj if 0 <= h < H else ZR
        tj += 1
        if tj == TW:
            tj = 0
            ti += 1
            if ti == TH:
                ti = 0
                n += 1
    for q in range(thi - tlo, (thi - tlo + LANES - 1) // LANES * LANES):
        for m in range(6):
            taps[m * SL + q] = ZR
    d = stack_empty(96, x)  # (6 columns q, LANES): row m of LANES tiles
    rt = stack_empty(576, x)  # (6 rows m, 6 columns k, LANES): d B
    ct = stack_empty(576, x)  # (36, LANES): B^T d B
    for c in range(C):
        for r in range(r0, (thi - 1) // TW + 1):
            n = r // TH
            h0 = 4 * (r - n * TH) - PT
            for m in range(6):
                if 0 <= h0 + m < H:
                    src = flat_view(x, ((n * C + c) * H + h0 + m) * W, W)
                    dst = flat_view(prows, (6 * (r - r0) + m) * RL + PL, W)
                    for k in range(W):
                        dst[k] = src[k]
        for q0 in range(0, thi - tlo, LANES):
            for m in range(6):
                tm = flat_view(taps, m * SL + q0, LANES)
                for j in range(LANES):
                    g = flat_view(prows, tm[j], 6)
                    d[j] = g[0]
                    d[LANES + j] = g[1]
                    d[2 * LANES + j] = g[2]
                    d[3 * LANES + j] = g[3]
                    d[4 * LANES + j] = g[4]
                    d[5 * LANES + j] = g[5]
                s0 = flat_view(d, 0, LANES)
                s1 = flat_view(d, LANES, LANES)
                s2 = flat_view(d, 2 * LANES, LANES)
                s3 = flat_view(d, 3 * LANES, LANES)
                s4 = flat_view(d, 4 * LANES, LANES)
                s5 = flat_view(d, 5 * LANES, LANES)
                r0_ = flat_view(rt, (m * 6) * LANES, LANES)
                r1 = flat_view(rt, (m * 6 + 1) * LANES, LANES)
                r2 = flat_view(rt, (m * 6 + 2) * LANES, LANES)
                r3 = flat_view(rt, (m * 6 + 3) * LANES, LANES)
                r4 = flat_view(rt, (m * 6 + 4) * LANES, LANES)
                r5 = flat_view(rt, (m * 6 + 5) * LANES, LANES)
                for j in range(LANES):
                    r0_[j], r1[j], r2[j], r3[j], r4[j], r5[j] = _bt6(s0[j], s1[j], s2[j], s3[j], s4[j], s5[j], one)
            for k in range(6):
                a0 = flat_view(rt, k * LANES, LANES)
                a1 = flat_view(rt, (6 + k) * LANES, LANES)
                a2 = flat_view(rt, (12 + k) * LANES, LANES)
                a3 = flat_view(rt, (18 + k) * LANES, LANES)
                a4 = flat_view(rt, (24 + k) * LANES, LANES)
                a5 = flat_view(rt, (30 + k) * LANES, LANES)
                c0 = flat_view(ct, k * LANES, LANES)
                c1 = flat_view(ct, (6 + k) * LANES, LANES)
                c2 = flat_view(ct, (12 + k) * LANES, LANES)
                c3 = flat_view(ct, (18 + k) * LANES, LANES)
                c4 = flat_view(ct, (24 + k) * LANES, LANES)
                c5 = flat_view(ct, (30 + k) * LANES, LANES)
                for j in range(LANES):
                    c0[j], c1[j], c2[j], c3[j], c4[j], c5[j] = _bt6(a0[j], a1[j], a2[j], a3[j], a4[j], a5[j], one)
            for e in range(E):
                src = flat_view(ct, e * LANES, LANES)
                dst = flat_view(vi, e * ES + c * SL + q0, LANES)
                for j in range(LANES):
                    dst[j] = src[j]


@njit(cache=True)
def _gemm_tiles(mt, u, vi, OC, C, cols):
    """M[e] = U[e] @ V[e] for the 36 elements e: (OC, C) @ (C, cols) on the linear family's micro-kernel.

    u: (36, NS, CS), U[e] as MR-row panels (C, MR) (``_filter_transform_kernel``; rows past OC are never stored,
    whatever they hold), OCq = NS * MR; vi:
    (36, ES), (C, SL) per e as in ``_transform_input``; mt: (36 * (OCq + 1), SL), row ``e * (OCq + 1) + oc`` holding
    M[e][oc] (the spare row per e keeps the 36 blocks from lining up 4 KiB apart). For each e and MR-channel
    panel, ``linear._tile_into`` runs an MR x NR register tile (MR x 2 full-width vectors, written as vector IR: zmm
    with AVX-512 whatever LLVM's tuning prefers) over each NR columns of V; the panel's rows of U stay in L1 while it
    sweeps V from L2. Columns up to ``cols`` rounded up to NR are computed (SL holds them; those past ``cols`` are
    never read).
    """
    NS, CS = u.shape[1], u.shape[2]
    OCq = NS * MR
    ES = vi.shape[1]
    SL = mt.shape[1]
    NR = _row_width(vi)
    for e in range(E):
        for s in range(NS):
            rows = min(MR, OC - s * MR)
            for j0 in range(0, cols, NR):
                _rows_tile(u, (e * NS + s) * CS, MR, 1, C, vi, e * ES + j0, SL, mt, e * (OCq + 1) + s * MR, j0,
                           rows, False)


@njit(cache=True, fastmath=FM)
def _transform_output(out, mi, bias, tlo, thi, TH, TW, SL):
    """out[n, oc, 4*ti + a, 4*tj + b] = (A^T M A)[a, b] + bias[oc] for each tile t = n*TH*TW + ti*TW + tj in
    [tlo, thi), M the 36 values mi[:, oc, t - tlo]; outputs past OH or OW are dropped.

    mi: (36, MS), (OCq + 1, SL) per e as ``_gemm_tiles`` writes them. Per output channel, LANES tiles at a time:
    the column then row transforms on vectors, then each tile's outputs stored with the bias. Returns 0 if every
    computed value is finite, else NaN: the check runs on the vectors (a scalar ``bad += v - v`` per stored value
    made one 4-cycle dependency chain of the whole scatter) and so also covers the lanes past thi and the outputs
    past OH or OW, which come from the item's finite inputs and zeros, or from an earlier item of the same worker
    whose NaN has already raised the flag.
    """
    N, OC, OH, OW = out.shape
    MS = mi.shape[1]
    one = out.dtype.type(1)
    st = stack_empty(384, out)  # (4 rows a, 6 columns k, LANES): A^T M
    y = stack_empty(256, out)  # (16, LANES): A^T M A
    chk = stack_empty(LANES, out)  # y - y summed per lane: 0 while every y is finite, else NaN
    for j in range(LANES):
        chk[j] = 0
    TPI = TH * TW
    for oc in range(OC):
        bv = bias[oc]
        for q0 in range(0, thi - tlo, LANES):
            for k in range(6):
                mo = oc * SL + q0
                m0 = flat_view(mi, k * MS + mo, LANES)
                m1 = flat_view(mi, (6 + k) * MS + mo, LANES)
                m2 = flat_view(mi, (12 + k) * MS + mo, LANES)
                m3 = flat_view(mi, (18 + k) * MS + mo, LANES)
                m4 = flat_view(mi, (24 + k) * MS + mo, LANES)
                m5 = flat_view(mi, (30 + k) * MS + mo, LANES)
                s0 = flat_view(st, k * LANES, LANES)
                s1 = flat_view(st, (6 + k) * LANES, LANES)
                s2 = flat_view(st, (12 + k) * LANES, LANES)
                s3 = flat_view(st, (18 + k) * LANES, LANES)
                for j in range(LANES):
                    s0[j], s1[j], s2[j], s3[j] = _at4(m0[j], m1[j], m2[j], m3[j], m4[j], m5[j], one)
            for a in range(4):
                q0_ = flat_view(st, (a * 6) * LANES, LANES)
                q1 = flat_view(st, (a * 6 + 1) * LANES, LANES)
                q2 = flat_view(st, (a * 6 + 2) * LANES, LANES)
                q3 = flat_view(st, (a * 6 + 3) * LANES, LANES)
                q4 = flat_view(st, (a * 6 + 4) * LANES, LANES)
                q5 = flat_view(st, (a * 6 + 5) * LANES, LANES)
                y0 = flat_view(y, (a * 4) * LANES, LANES)
                y1 = flat_view(y, (a * 4 + 1) * LANES, LANES)
                y2 = flat_view(y, (a * 4 + 2) * LANES, LANES)
                y3 = flat_view(y, (a * 4 + 3) * LANES, LANES)
                for j in range(LANES):
                    y0[j], y1[j], y2[j], y3[j] = _at4(q0_[j], q1[j], q2[j], q3[j], q4[j], q5[j], one)
                    chk[j] += (y0[j] - y0[j]) + (y1[j] - y1[j]) + (y2[j] - y2[j]) + (y3[j] - y3[j])
            t = tlo + q0
            n = t // TPI
            ti = (t - n * TPI) // TW
            tj = t - n * TPI - ti * TW
            j = 0
            jn = min(LANES, thi - tlo - q0)
            while j < jn:  # runs of the block's tiles that lie in one tile row
                run = min(jn - j, TW - tj)
                full = min(run, OW // 4 - tj)  # tiles whose 4 columns all lie inside
                for a in range(min(4, OH - 4 * ti)):
                    at = ((n * OC + oc) * OH + 4 * ti + a) * OW + 4 * tj
                    _store_row(flat_view(out, at, 4 * full), y, a, j, full, bv)
                    if full < run:  # the row's last tile, with fewer than 4 columns inside
                        last = flat_view(out, at + 4 * full, OW - 4 * (tj + full))
                        for b in range(OW - 4 * (tj + full)):
                            last[b] = y[(a * 4 + b) * LANES + j + full] + bv
                j += run
                tj += run  # the next run: (n, ti, tj) advance without a division per tile
                if tj == TW:
                    tj = 0
                    ti += 1
                    if ti == TH:
                        ti = 0
                        n += 1
    bad = out.dtype.type(0)
    for j in range(LANES):
        bad += chk[j]
    return bad


@njit(cache=True, inline="always")
def _store_row(dst, y, a, j, full, bv):
    """dst[4*k + b] = y[(a*4 + b) * LANES + j + k] + bv for k < full, b < 4: row a of ``full`` neighbouring tiles
    (lanes j, j + 1, ...), whose outputs lie side by side in one output row. A loop over k with the 4 columns as one
    group of interleaved stores, which LLVM vectorises as shuffles and full-width stores, where one scalar store per
    output took about 15 ns a tile and output channel."""
    y0 = flat_view(y, (a * 4) * LANES + j, full)
    y1 = flat_view(y, (a * 4 + 1) * LANES + j, full)
    y2 = flat_view(y, (a * 4 + 2) * LANES + j, full)
    y3 = flat_view(y, (a * 4 + 3) * LANES + j, full)
    for k in range(full):
        dst[4 * k] = y0[k] + bv
        dst[4 * k + 1] = y1[k] + bv
        dst[4 * k + 2] = y2[k] + bv
        dst[4 * k + 3] = y3[k] + bv


@njit(parallel=True, cache=True)
def _winograd_kernel(out, x, u, bias, PT, PL, NB, work, flags):
    """Winograd F(4x4, 3x3) convolution of x (N, C, H, W) with the transformed filters u (36, NS, CS) into out
    (N, OC, OH, OW), bias (OC,) added; padding PT top, PL left.

    The N * TH * TW tiles (TH = ceil(OH / 4), TW = ceil(OW / 4)) form NTB blocks of LANES; one prange iteration is
    one of NW workers, which takes an equal share of the blocks (to a block) and runs it in items of up to NB
    blocks: transform the item's input tiles
    (``_transform_input``), run the 36 GEMMs (``_gemm_tiles``), transform and store the outputs
    (``_transform_output``). work: (NW, 36 * (C * SL + LANES) + 36 * (OCq + 1) * SL), SL = (NB + 1) * LANES,
    OCq = NS * MR: each worker's V and M (no initial values needed: every value a step reads was
    written by the step before it for the same item), which stay in L2 between the steps. flags[w] is 0 when all
    of worker w's outputs are finite, else NaN.
    """
    N, C = x.shape[0], x.shape[1]
    OC, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    TH = (OH + 3) // 4
    TW = (OW + 3) // 4
    T = N * TH * TW
    TPI = NB * LANES
    NTB = (T + LANES - 1) // LANES
    SL = TPI + LANES
    NW = work.shape[0]
    ES = C * SL + LANES
    OCq = u.shape[1] * MR
    MS = (OCq + 1) * SL
    for w in prange(NW):
        vi = work[w, :E * ES].reshape((E, ES))
        mi = work[w, E * ES:E * (ES + MS)].reshape((E, MS))
        mt = work[w, E * ES:E * (ES + MS)].reshape((E * (OCq + 1), SL))
        prows = np.zeros((6 * ((TPI - 2) // TW + 2) + 1, 4 * TW + 8), x.dtype)
        taps = np.empty(6 * SL, np.int64)
        bad = x.dtype.type(0)
        b_hi = (w + 1) * NTB // NW
        for b in range(w * NTB // NW, b_hi, NB):
            tlo = b * LANES
            thi = min(T, min(b + NB, b_hi) * LANES)
            _transform_input(vi, x, tlo, thi, PT, PL, TH, TW, SL, prows, taps)
            _gemm_tiles(mt, u, vi, OC, C, thi - tlo)
            bad += _transform_output(out, mi, bias, tlo, thi, TH, TW, SL)
        flags[w] = bad


@njit(cache=True, fastmath=FM)
def _filter_panel(lp, ls, w, panel, c0, c1):
    """lp[e * ls + (c - c0) * MR + r] = (G g G^T)[e] for the 3x3 filter g = w[panel * MR + r, c], c0 <= c < c1:
    one MR-channel panel of U (36, c1 - c0, MR), the micro-kernel's A operand, each element's block ``ls`` >=
    (c1 - c0) * MR + LANES apart.

    w: (OC, C, 3, 3); rows past OC repeat channel OC - 1 (finite, never stored). Per input channel c, the 9 taps of
    LANES filters from the panel's first go to a stack tile (one row per tap, one lane per filter), the two 1-D
    transforms run on those rows as vectors, and each of the 36 results is stored as one LANES-wide run at
    (c - c0) * MR: its lanes past MR fall on channel c + 1's run, written next, or for the last channel on the
    slack. Indices are unsigned, so that no wraparound check turns the runs into scatters. In w's dtype.
    """
    OC, C = w.shape[0], w.shape[1]
    dt = w.dtype.type
    kg = (dt(0.25), dt(1.0 / 6.0), dt(1.0 / 12.0), dt(1.0 / 24.0))
    wf = w.reshape(OC * C * 9)
    g = stack_empty(144, w)  # (9, LANES): tap kh*3 + kw, lane = filter
    t = stack_empty(288, w)  # (6, 3, LANES): G g
    for c in range(c0, c1):
        for k in range(9):
            for r in range(LANES):
                g[k * LANES + r] = wf[np.uint64((min(panel * MR + r, OC - 1) * C + c) * 9 + k)]
        for kw in range(3):
            for r in range(LANES):
                t0, t1, t2, t3, t4, t5 = _g6(g[kw * LANES + r], g[(3 + kw) * LANES + r], g[(6 + kw) * LANES + r],
                                             kg)
                t[kw * LANES + r] = t0
                t[(3 + kw) * LANES + r] = t1
                t[(6 + kw) * LANES + r] = t2
                t[(9 + kw) * LANES + r] = t3
                t[(12 + kw) * LANES + r] = t4
                t[(15 + kw) * LANES + r] = t5
        for i in range(6):
            at = 6 * i * ls + (c - c0) * MR
            for r in range(LANES):
                u0, u1, u2, u3, u4, u5 = _g6(t[3 * i * LANES + r], t[(3 * i + 1) * LANES + r],
                                             t[(3 * i + 2) * LANES + r], kg)
                lp[np.uint64(at + r)] = u0
                lp[np.uint64(at + ls + r)] = u1
                lp[np.uint64(at + 2 * ls + r)] = u2
                lp[np.uint64(at + 3 * ls + r)] = u3
                lp[np.uint64(at + 4 * ls + r)] = u4
                lp[np.uint64(at + 5 * ls + r)] = u5


@njit(parallel=True, cache=True)
def _winograd_split_kernel(out, x, w, bias, PT, PL, v, m, lbuf, P, KB, flags):
    """Winograd F(4x4, 3x3) for layers with few tiles for their channels (deep layers, small images): the same
    three steps as ``_winograd_kernel``, but over the whole layer, and the GEMM step split over output channels,
    with the filters transformed inside it. U is never stored.

    x (N, C, H, W), w (OC, C, 3, 3), out (N, OC, OH, OW), bias (OC,); padding PT top, PL left. T = N * TH * TW tiles,
    SL = T rounded up to NR. v: (36 * ES + SL,) with ES = C * SL + LANES, V of every tile; m: (36 * MS + SL,) with
    MS = (OCq + 1) * SL, OCq = NS * MR, M of every tile; lbuf: (NW, P * 36 * LS), one worker's U blocks;
    flags: (NW,), 0 where a worker's outputs are finite, else NaN.

    1. Tiles in whole LANES blocks, one range per worker: ``_transform_input`` of its tiles into v.
    2. The NS output-channel panels, one range per worker, in groups of P panels, and the input channels in passes
       of KB: the group's filters for the pass transformed into the worker's lbuf (``_filter_panel``: P x 36 blocks
       (KB, MR), LS >= KB * MR + LANES apart), then for each element e and NR tiles, the P panels' MR x NR register
       tiles over those KB channels of V[e], added into M after the first pass. Each V tile (KB x NR) is read
       once from L2 or L3 for the P panels, and every filter is transformed once.
    3. Tiles again: ``_transform_output`` of its tiles from m into out, bias added.

    Why: the per-item schedule makes every worker read all of U (36 / 9 = 4x the weights) from memory, and a
    worker's item has at most T / NW tiles, so at C512 7^2 N8 (32 tiles: two items of 16 against NR = 32) each
    read U whole to fill half of its register tiles. Here U is made in L2 block by block and read once; V
    (36 * C * SL values, 2.4 MB at C512 7^2 N8) is read once per panel group.
    """
    N, C = x.shape[0], x.shape[1]
    OC, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    TH = (OH + 3) // 4
    TW = (OW + 3) // 4
    T = N * TH * TW
    NR = _row_width(x)
    SL = (T + NR - 1) // NR * NR
    ES = C * SL + LANES
    NS = (OC + MR - 1) // MR
    OCq = NS * MR
    MS = (OCq + 1) * SL
    NW = lbuf.shape[0]
    LS = lbuf.shape[1] // (P * E)
    NTB = (T + LANES - 1) // LANES
    NWA = min(NW, NTB)
    for wk in prange(NWA):
        tlo = wk * NTB // NWA * LANES
        thi = min(T, (wk + 1) * NTB // NWA * LANES)
        prows = np.zeros((6 * ((thi - tlo - 2) // TW + 2) + 1, 4 * TW + 8), x.dtype)
        taps = np.empty(6 * SL, np.int64)
        _transform_input(v[tlo:tlo + E * ES].reshape((E, ES)), x, tlo, thi, PT, PL, TH, TW, SL, prows, taps)
    mt = m[:E * MS].reshape((E * (OCq + 1), SL))
    for wk in prange(NW):
        lw = lbuf[wk]
        s_hi = (wk + 1) * NS // NW
        for g0 in range(wk * NS // NW, s_hi, P):
            g1 = min(g0 + P, s_hi)
            for c0 in range(0, C, KB):
                kc = min(KB, C - c0)
                for s in range(g0, g1):
                    _filter_panel(lw[(s - g0) * E * LS:], LS, w, s, c0, c0 + kc)
                for e in range(E):
                    for j0 in range(0, T, NR):
                        for s in range(g0, g1):
                            _rows_tile(lw, ((s - g0) * E + e) * LS, MR, 1, kc, v, e * ES + c0 * SL + j0, SL, mt,
                                       e * (OCq + 1) + s * MR, j0, min(MR, OC - s * MR), c0 > 0)
    for wk in prange(NW):
        bad = x.dtype.type(0)
        if wk < NWA:
            tlo = wk * NTB // NWA * LANES
            thi = min(T, (wk + 1) * NTB // NWA * LANES)
            bad = _transform_output(out, m[tlo:tlo + E * MS].reshape((E, MS)), bias, tlo, thi, TH, TW, SL)
        flags[wk] = bad
