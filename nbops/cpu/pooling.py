"""CPU kernels of the pooling family. Inputs are C-contiguous stacks of planes ``x: (P, H, W)``; outputs
``(P, OH, OW)``. The window pools split the ``P * OH`` output rows into prange blocks of ROWS rows, so every thread
stays busy whatever the batch; the adaptive pools split the planes. Along an output row, the columns whose window
lies wholly inside the input (the interior) run as contiguous loops over ``ow`` that LLVM vectorises: a strided
window is first split into its stride phases; only the few border columns take the clipped scalar path.

avg_pool sums each window in torch's order (rows outer, columns inner, from 0), so it matches torch bit for bit;
max_pool reduces the window's rows first (a max is exact; with indices, ``_wins`` restores torch's row-major choice
among equal maxima and NaNs, so indices match too); the adaptive average lets LLVM reorder its sums.
"""

import numpy as np
from numba import njit, prange

from .._dispatch import register
from ._util import flat_view, run_parallel


@njit(cache=True, inline="always")
def _first_valid(start, D):
    """The first window step k with start + k * D >= 0."""
    return 0 if start >= 0 else (-start + D - 1) // D


@njit(cache=True, inline="always")
def _end_valid(start, K, D, size):
    """One past the last window step k < K with start + k * D < size (start < size assumed)."""
    return min(K, (size - 1 - start) // D + 1)


@njit(cache=True, inline="always")
def _interior(OW, KW, SW, PW, DW, W):
    """The output columns [lo, hi) whose whole window (with dilation) lies inside [0, W)."""
    lo = min((PW + SW - 1) // SW, OW)
    last = W - 1 - (KW - 1) * DW + PW
    hi = min(OW, last // SW + 1) if last >= 0 else 0
    return lo, max(lo, hi)


ROWS = 32  # output rows per prange iteration: the iteration's scratch buffers are allocated once for them


@njit(cache=True, inline="always")
def _row(a, r, width):
    """Row r of a C-contiguous array seen as rows of ``width`` elements, as a borrowed view (``_util.flat_view``):
    a slice costs two atomic reference-count updates, and the window pools take several a row."""
    return flat_view(a, r * width, width)


@njit(cache=True, inline="always")
def _deinterleave(ph, xr, SW):
    """ph[r * WP + q] = xr[q * SW + r] (WP = ph's size / SW): split one input row into its SW stride phases, so
    that the taps of a strided window become contiguous runs (a strided sweep does not vectorise, a contiguous one
    does). SW == 2 is one loop over the row's pairs, which LLVM turns into two vector loads and an even/odd
    shuffle a vector; a strided loop per phase stays scalar (max_pool2d 3x3 s2 N8 C64 112^2, 2 threads, ms,
    slices and strided loops / views / views and pairs: 1.87 / 1.68 / 1.39)."""
    W = xr.shape[0]
    WP = ph.shape[0] // SW
    if SW == 2:
        ev = flat_view(ph, 0, WP)
        od = flat_view(ph, WP, WP)
        for q in range(W // 2):
            ev[q] = xr[2 * q]
            od[q] = xr[2 * q + 1]
        if W % 2:
            ev[W // 2] = xr[W - 1]
        return
    SWU = np.uint64(SW)  # unsigned index: no negative-index wrap check in the copy loop
    for r in range(SW):
        pr = flat_view(ph, r * WP, WP)
        for q in range((W - r + SW - 1) // SW):
            pr[q] = xr[np.uint64(q) * SWU + np.uint64(r)]


@njit(cache=True, inline="always")
def _border(i, lo, hi):
    """The i-th output column outside the interior [lo, hi) (0 .. lo-1, then hi .. OW-1); there are
    lo + OW - hi of them."""
    return i if i < lo else hi + i - lo


@njit(cache=True, inline="always")
def _tap(xr, ph, SW, start, n):
    """The contiguous run of the n row elements start, start + SW, start + 2 SW, ... (from ``ph`` when SW > 1)."""
    if SW == 1:
        return flat_view(xr, start, n)
    return flat_view(ph, start % SW * (ph.shape[0] // SW) + start // SW, n)


@njit(cache=True, inline="always")
def _fill(a, v):
    """a[:] = v for a 1-D array, as a loop (a slice assignment makes a view)."""
    for i in range(a.shape[0]):
        a[i] = v


@njit(cache=True, inline="always")
def _copy(dst, src):
    """dst[:] = src[:dst.size] for 1-D arrays, as a loop (a slice assignment makes a view)."""
    for i in range(dst.shape[0]):
        dst[i] = src[i]


@njit(parallel=True, cache=True)
def _max_pool_kernel(out, x, KH, KW, SH, SW, PH, PW, DH, DW):
    """out[p, oh, ow] = max of the (dilated, -inf padded) window of x[p]; NaN wins. x: (P, H, W), out: (P, OH, OW).

    One prange iteration computes ROWS output rows (p, oh). A row's window is separable: first the valid input
    rows are reduced elementwise into one scratch row (contiguous, vectorised), then that row is split into its
    stride phases and each kw tap updates the interior columns in one contiguous, vectorised sweep; the border
    columns clip their window. Accumulates in the input dtype (a max is exact).
    """
    P, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    lo, hi = _interior(OW, KW, SW, PW, DW, W)
    n = hi - lo
    R = P * OH
    ninf = x.dtype.type(-np.inf)
    for b in prange((R + ROWS - 1) // ROWS):
        ph = np.empty(SW * ((W + SW - 1) // SW), x.dtype)
        vr = np.empty(W, x.dtype)
        for r in range(b * ROWS, min(R, b * ROWS + ROWS)):
            p = r // OH
            oh = r - p * OH
            h0 = oh * SH - PH
            orow = _row(out, r, OW)
            _fill(orow, ninf)
            kh0 = _first_valid(h0, DH)
            kh1 = _end_valid(h0, KH, DH, H)
            if kh0 >= kh1:
                continue
            _copy(vr, _row(x, p * H + h0 + kh0 * DH, W))
            for kh in range(kh0 + 1, kh1):
                xr = _row(x, p * H + h0 + kh * DH, W)
                for w in range(W):
                    v = xr[w]
                    m = vr[w]
                    vr[w] = v if (v > m) | (v != v) else m
            if SW > 1 and n > 0:
                _deinterleave(ph, vr, SW)
            mid = flat_view(out, r * OW + lo, n)
            for kw in range(KW):
                xs = _tap(vr, ph, SW, lo * SW - PW + kw * DW, n)
                for j in range(n):
                    v = xs[j]
                    m = mid[j]
                    mid[j] = v if (v > m) | (v != v) else m
            for i in range(lo + OW - hi):
                ow = _border(i, lo, hi)
                w0 = ow * SW - PW
                m = orow[ow]
                for kw in range(_first_valid(w0, DW), _end_valid(w0, KW, DW, W)):
                    v = vr[w0 + kw * DW]
                    if v > m or v != v:
                        m = v
                orow[ow] = m


@njit(cache=True, inline="always")
def _wins(v, k, m, mk):
    """Does value v from window row k beat the current maximum m from row mk? torch's row-major rule on a
    separable scan: the first maximum (equal values go to the smaller row), or the last NaN (the larger row, or
    the same row further right)."""
    vn = v != v
    mn = m != m
    return (vn & (~mn | (k >= mk))) | (~mn & ((v > m) | ((v == m) & (k < mk))))


@njit(parallel=True, cache=True)
def _max_pool_idx_kernel(out, idx, x, KH, KW, SH, SW, PH, PW, DH, DW):
    """Like ``_max_pool_kernel``, also writing idx[p, oh, ow] = h * W + w of the maximum (int64): the first
    maximum in row-major window order, or the last NaN; a window with no valid element keeps torch's start index.

    One prange iteration computes ROWS output rows (p, oh), separably: the window's valid input rows are reduced
    into one scratch row of values and one of the winning row numbers (first maximum, last NaN per column), then
    the kw sweeps over their stride phases pick each output's column by ``_wins``, which restores torch's
    row-major choice among equal maxima. Row and column numbers live in rows of the input dtype, the same vector
    width as the values, so the paired selects vectorise.
    """
    P, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    lo, hi = _interior(OW, KW, SW, PW, DW, W)
    n = hi - lo
    R = P * OH
    t = x.dtype.type
    for b in prange((R + ROWS - 1) // ROWS):
        ph = np.empty(SW * ((W + SW - 1) // SW), x.dtype)
        pk = np.empty(SW * ((W + SW - 1) // SW), x.dtype)
        vr = np.empty(W, x.dtype)
        vk = np.empty(W, x.dtype)
        mk = np.empty(max(n, 1), x.dtype)
        mw = np.empty(max(n, 1), x.dtype)
        for r in range(b * ROWS, min(R, b * ROWS + ROWS)):
            p = r // OH
            oh = r - p * OH
            h0 = oh * SH - PH
            kh0 = _first_valid(h0, DH)
            kh1 = _end_valid(h0, KH, DH, H)
            orow = _row(out, r, OW)
            irow = _row(idx, r, OW)
            hs = h0 + kh0 * DH
            _fill(orow, t(-np.inf))
            for ow in range(OW):
                w0 = ow * SW - PW
                irow[ow] = hs * W + w0 + _first_valid(w0, DW) * DW
            if kh0 >= kh1:
                continue
            _copy(vr, _row(x, p * H + hs, W))
            _fill(vk, t(kh0))
            for kh in range(kh0 + 1, kh1):
                xr = _row(x, p * H + h0 + kh * DH, W)
                tk = t(kh)
                for w in range(W):
                    v = xr[w]
                    m = vr[w]
                    take = (v > m) | (v != v)
                    vr[w] = v if take else m
                    vk[w] = tk if take else vk[w]
            if SW > 1 and n > 0:
                _deinterleave(ph, vr, SW)
                _deinterleave(pk, vk, SW)
            mid = flat_view(out, r * OW + lo, n)
            _fill(mk, t(np.inf))
            _fill(mw, t(0))
            for kw in range(KW):
                start = lo * SW - PW + kw * DW
                xs = _tap(vr, ph, SW, start, n)
                ks = _tap(vk, pk, SW, start, n)
                tw = t(kw)
                for j in range(n):
                    v = xs[j]
                    k = ks[j]
                    m = mid[j]
                    c = mk[j]
                    take = _wins(v, k, m, c)
                    mid[j] = v if take else m
                    mk[j] = k if take else c
                    mw[j] = tw if take else mw[j]
            for j in range(n):
                irow[lo + j] = (h0 + np.int64(mk[j]) * DH) * W + (lo + j) * SW - PW + np.int64(mw[j]) * DW
            for i in range(lo + OW - hi):
                ow = _border(i, lo, hi)
                w0 = ow * SW - PW
                m = orow[ow]
                c = t(np.inf)
                mi = irow[ow]
                for kw in range(_first_valid(w0, DW), _end_valid(w0, KW, DW, W)):
                    w = w0 + kw * DW
                    if _wins(vr[w], vk[w], m, c):
                        m = vr[w]
                        c = vk[w]
                        mi = (h0 + np.int64(c) * DH) * W + w
                orow[ow] = m
                irow[ow] = mi


@register("max_pool", "cpu")
def max_pool(out, idx, x, KH, KW, SH, SW, PH, PW, DH, DW):
    """Max pooling of planes x: (P, H, W) into out (and idx when not None): (P, OH, OW)."""
    if idx is None:
        run_parallel(_max_pool_kernel, x.size, out, x, KH, KW, SH, SW, PH, PW, DH, DW)
    else:
        run_parallel(_max_pool_idx_kernel, x.size, out, idx, x, KH, KW, SH, SW, PH, PW, DH, DW)


@njit(parallel=True, cache=True)
def _avg_pool_kernel(out, x, KH, KW, SH, SW, PH, PW, count_include_pad, divisor):
    """out[p, oh, ow] = sum of the zero-padded window of x[p] / its divisor, with torch's divisor: ``divisor``
    when nonzero, else the window clipped to the padded input (count_include_pad) or to the input.
    x: (P, H, W), out: (P, OH, OW).

    One prange iteration computes ROWS output rows (p, oh): sums start at 0 and add input rows outer, columns
    inner (torch's order, so the sums are torch's bit for bit); interior columns are summed in contiguous
    vectorised sweeps over the row's stride phases. Accumulates in the input dtype, as torch does.
    """
    P, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    lo, hi = _interior(OW, KW, SW, PW, 1, W)
    n = hi - lo
    R = P * OH
    t = x.dtype.type  # divide in the input dtype, as torch does
    zero = t(0)
    for b in prange((R + ROWS - 1) // ROWS):
        ph = np.empty(SW * ((W + SW - 1) // SW), x.dtype)
        for r in range(b * ROWS, min(R, b * ROWS + ROWS)):
            p = r // OH
            oh = r - p * OH
            h0 = oh * SH - PH
            h1 = min(h0 + KH, H + PH)
            hpool = h1 - h0
            hs = max(h0, 0)
            he = min(h1, H)
            orow = _row(out, r, OW)
            _fill(orow, zero)
            if hs >= he:
                continue
            mid = flat_view(out, r * OW + lo, n)
            for ih in range(hs, he):
                xr = _row(x, p * H + ih, W)
                if SW > 1 and n > 0:
                    _deinterleave(ph, xr, SW)
                for kw in range(KW):
                    xs = _tap(xr, ph, SW, lo * SW - PW + kw, n)
                    for j in range(n):
                        mid[j] += xs[j]
                for i in range(lo + OW - hi):
                    ow = _border(i, lo, hi)
                    w0 = ow * SW - PW
                    s = orow[ow]
                    for iw in range(max(w0, 0), min(w0 + KW, W)):
                        s += xr[iw]
                    orow[ow] = s
            for ow in range(OW):
                w0 = ow * SW - PW
                w1 = min(w0 + KW, W + PW)
                ws = max(w0, 0)
                we = min(w1, W)
                if ws >= we:
                    orow[ow] = zero
                elif divisor != 0:
                    orow[ow] = orow[ow] / t(divisor)
                elif count_include_pad:
                    orow[ow] = orow[ow] / t(hpool * (w1 - w0))
                else:
                    orow[ow] = orow[ow] / t((he - hs) * (we - ws))


@register("avg_pool", "cpu")
def avg_pool(out, x, KH, KW, SH, SW, PH, PW, count_include_pad, divisor):
    """Average pooling of planes x: (P, H, W) into out: (P, OH, OW)."""
    run_parallel(_avg_pool_kernel, x.size, out, x, KH, KW, SH, SW, PH, PW, count_include_pad, divisor)


@njit(cache=True)
def _bins(In, Out):
    """torch's adaptive bins along one axis as an (Out, 2) int64 array: [floor(i * In / Out),
    ceil((i + 1) * In / Out)), computed without overflow as torch does; once per call, before the parallel
    loop, so that loop does no integer division."""
    bins = np.empty((Out, 2), np.int64)
    for i in range(Out):
        bins[i, 0] = (i // Out) * In + ((i % Out) * In) // Out
        bins[i, 1] = 1 + ((i + 1) * In - 1) // Out
    return bins


PLANES = 4  # planes summed together by the whole-row adaptive average: four independent vector accumulators


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _adaptive_avg_rows_kernel(out, x):
    """Adaptive average pooling when every bin spans whole input rows (OW == 1, global pooling among them):
    out[p, oh, 0] = sum of the contiguous run x[p, hb[oh, 0]:hb[oh, 1], :] / bin height / W. x: (P, H, W),
    out: (P, OH, 1).

    One prange iteration computes PLANES planes at once, so that four vectorised sums overlap (a 7x7 plane is
    one short run: alone, its sum is latency-bound). Accumulates in the input dtype; ``reassoc`` lets LLVM
    split each sum into vector lanes (rounding only; NaN and inf propagate as before).
    """
    P, H, W = x.shape
    OH = out.shape[1]
    hb = _bins(H, OH)
    xf = x.reshape((P, H * W))
    t = x.dtype.type  # divide in the input dtype, as torch does
    for b in prange((P + PLANES - 1) // PLANES):
        p0 = b * PLANES
        for oh in range(OH):
            lo, hi = hb[oh, 0] * W, hb[oh, 1] * W
            d = t(hb[oh, 1] - hb[oh, 0])
            if p0 + PLANES <= P:
                r0 = xf[p0, lo:hi]
                r1 = xf[p0 + 1, lo:hi]
                r2 = xf[p0 + 2, lo:hi]
                r3 = xf[p0 + 3, lo:hi]
                s0 = s1 = s2 = s3 = t(0)
                for i in range(hi - lo):
                    s0 += r0[i]
                    s1 += r1[i]
                    s2 += r2[i]
                    s3 += r3[i]
                out[p0, oh, 0] = s0 / d / t(W)
                out[p0 + 1, oh, 0] = s1 / d / t(W)
                out[p0 + 2, oh, 0] = s2 / d / t(W)
                out[p0 + 3, oh, 0] = s3 / d / t(W)
            else:
                for p in range(p0, P):
                    r = xf[p, lo:hi]
                    s = t(0)
                    for i in range(hi - lo):
                        s += r[i]
                    out[p, oh, 0] = s / d / t(W)


@njit(parallel=True, cache=True)
def _adaptive_avg_pool_kernel(out, x):
    """out[p, oh, ow] = mean of x[p] over torch's adaptive bin (rows outer, columns inner, float sum from 0,
    divided by the bin height then width, as torch does). x: (P, H, W), out: (P, OH, OW). One prange iteration
    computes one plane p; accumulates in the input dtype.
    """
    P, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    hb = _bins(H, OH)
    wb = _bins(W, OW)
    t = x.dtype.type  # divide in the input dtype, as torch does
    for p in prange(P):
        xp = x[p]
        for oh in range(OH):
            hs, he = hb[oh, 0], hb[oh, 1]
            for ow in range(OW):
                ws, we = wb[ow, 0], wb[ow, 1]
                s = t(0)
                for ih in range(hs, he):
                    seg = xp[ih, ws:we]
                    for i in range(seg.shape[0]):
                        s += seg[i]
                out[p, oh, ow] = s / t(he - hs) / t(we - ws)


@register("adaptive_avg_pool", "cpu")
def adaptive_avg_pool(out, x):
    """Adaptive average pooling of planes x: (P, H, W) into out: (P, OH, OW)."""
    if out.shape[2] == 1:
        run_parallel(_adaptive_avg_rows_kernel, x.size, out, x)
    else:
        run_parallel(_adaptive_avg_pool_kernel, x.size, out, x)


@njit(parallel=True, cache=True)
def _adaptive_max_pool_kernel(out, idx, x):
    """out[p, oh, ow] = max of x[p] over torch's adaptive bin (NaN wins, last NaN's index), idx = h * W + w of it
    (int64). x: (P, H, W), out and idx: (P, OH, OW). One prange iteration computes one plane p.
    """
    P, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    hb = _bins(H, OH)
    wb = _bins(W, OW)
    for p in prange(P):
        xp = x[p]
        for oh in range(OH):
            hs, he = hb[oh, 0], hb[oh, 1]
            for ow in range(OW):
                ws, we = wb[ow, 0], wb[ow, 1]
                m = xp[hs, ws]
                mi = hs * W + ws
                for ih in range(hs, he):
                    xr = xp[ih]
                    for iw in range(ws, we):
                        v = xr[iw]
                        if v > m or v != v:
                            m = v
                            mi = ih * W + iw
                out[p, oh, ow] = m
                idx[p, oh, ow] = mi


@register("adaptive_max_pool", "cpu")
def adaptive_max_pool(out, idx, x):
    """Adaptive max pooling of planes x: (P, H, W) into out and idx: (P, OH, OW)."""
    run_parallel(_adaptive_max_pool_kernel, x.size, out, idx, x)
