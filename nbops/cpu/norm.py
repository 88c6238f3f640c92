"""CPU kernels of the normalization family.

Statistics (mean and M2, the sum of squared deviations) are computed in one pass over memory by a blocked Welford
scheme. Each row is cut into BLOCK-element blocks (L1-resident, so reading a block twice costs one DRAM read);
per block, two vectorised float32/float64 loops give the block's sum and its centred sum of squares around the
block mean, both taken on values shifted by a pivot (the first element of the row) so that a large common offset
(mean 1e4, std 1) loses nothing to cancellation. Blocks are merged into float64 running (count, mean, M2) with
Chan's combination formula, which is Welford's update generalised from one value to a batch: a scalar Welford
loop does not vectorise, this does, and it stays one pass. Parallel partial statistics (chunks of a row, groups of
rows) are merged the same way, by Chan's formula for k groups.

Normalising uses the mean split into a float value ``m_hi`` (the mean rounded to the input dtype) and the
remainder ``m_lo``, ``(x - m_hi) - m_lo``, so the float32 output keeps float32 precision relative to the
standard deviation even when the mean is 1e4 times larger. Each element is read from memory once for the
statistics and at most once more (usually from cache) to normalise, and written once.

The statistics helpers use ``fastmath={"reassoc", "contract"}`` (reassociation lets the reductions vectorise; no
flag touches NaN or inf). The normalising loops do not reassociate, which would fold ``(x - m_hi) - m_lo`` back
into ``x - (m_hi + m_lo)``.
"""

import numpy as np
from numba import njit, prange

from .._dispatch import register
from ._util import run_parallel, thread_count, wide_vectors
from .activation import _tanh

FASTMATH = {"reassoc", "contract"}
BLOCK = 2048  # elements per statistics block (8 KiB of float32, 16 of float64): small enough to stay in L1 for
# the second loop, large enough that the float64 merge (two divisions, two horizontal sums) is a small part of the
# block. One thread, a 512 KiB float32 row from L2, statistics alone: 256 elements 20.7 us (25 GB/s), 1024 14.8,
# 2048 14.3 (37 GB/s). 2 threads, same process, 256 / 2048: layer_norm (32768, 1024) 13.4 / 12.8 ms, (8192, 1024)
# 3.3 / 1.7 ms, (2, 131072) 55 / 51 us, (4096, 768) and (64, 16384) even; batch_norm training N32 C256 28^2 1.50 /
# 1.41 ms, group_norm G32 1.18 / 1.14 ms
CHUNK = 16384  # elements per prange task where a row is split into tasks
ROWS_MIN = 32  # batch norm: rows (n, c) shorter than this are reduced down columns instead
CHANNEL_TASKS = 4  # batch norm: fused per-channel kernel when there are >= this many channels per thread
ROWS_SERIAL_BELOW = 8192  # elements below which the row-statistics kernels run serial twins: layer_norm over rows
# of 64 float32, us per call, serial twin / both threads, idle 2-core host: 2 Ki 8.8 / 9.4, 4 Ki 11.2 / 10.0, 8 Ki
# 15.3 / 11.2, 16 Ki 24.1 / 13.8; batch_norm training, fused per-channel kernel, (N, 16, 8, 8): 4 Ki 19.9 / 22.1,
# 16 Ki 31.5 / 22.5. Batch norm's column statistics (rows shorter than ROWS_MIN) keep SERIAL_BELOW: (N, 64, 4), 16
# Ki 108 / 146


# ---------------------------------------------------------------------------------------------------------------
# statistics helpers (inlined into the kernels)


@njit(fastmath=FASTMATH, cache=True)
def _merge_block(v, pivot, cnt, mean, m2):
    """Merge the contiguous 1-D block ``v`` into the float64 running statistics (cnt, mean, m2) of values shifted
    by ``pivot``: the block's mean and centred sum of squares in ``v``'s dtype (two vectorised loops over an
    L1-resident block), then Chan's formula. Returns the new (cnt, mean, m2); ``mean`` is relative to ``pivot``."""
    nb = v.shape[0]
    s = v.dtype.type(0)
    for i in range(nb):
        s += v[i] - pivot
    mb = s / v.dtype.type(nb)
    q = v.dtype.type(0)
    for i in range(nb):
        d = (v[i] - pivot) - mb
        q += d * d
    n = cnt + nb
    delta = np.float64(mb) - mean
    mean += delta * (nb / n)
    m2 += np.float64(q) + delta * delta * (cnt * (nb / n))
    return n, mean, m2


@njit(fastmath=FASTMATH, cache=True)
def _accumulate(v, pivot, cnt, mean, m2):
    """Merge the contiguous 1-D ``v`` into (cnt, mean, m2) block by block (see ``_merge_block``)."""
    n = v.shape[0]
    for lo in range(0, n, BLOCK):
        cnt, mean, m2 = _merge_block(v[lo:min(lo + BLOCK, n)], pivot, cnt, mean, m2)
    return cnt, mean, m2


@njit(cache=True)
def _moments_naive(v):
    """Textbook scalar Welford over the 1-D ``v`` in float64: (mean, M2). The oracle the blocked kernels are
    tested against; one value at a time, so it does not vectorise."""
    mean = 0.0
    m2 = 0.0
    for i in range(v.shape[0]):
        x = np.float64(v[i])
        d = x - mean
        mean += d / (i + 1)
        m2 += d * (x - mean)
    return mean, m2


@njit(fastmath=FASTMATH, cache=True)
def _sum_squares(v):
    """Sum of v[i]**2 over the contiguous 1-D ``v``, in ``v``'s dtype (vectorised)."""
    s = v.dtype.type(0)
    for i in range(v.shape[0]):
        s += v[i] * v[i]
    return s


@njit(cache=True)
def _split_mean(x, pivot, mean):
    """The float64 absolute mean ``pivot + mean`` split into (m_hi, m_lo) in ``x``'s dtype, m_hi + m_lo ~ mean."""
    m = np.float64(pivot) + mean
    hi = x.dtype.type(m)
    return hi, x.dtype.type(m - np.float64(hi))


# ---------------------------------------------------------------------------------------------------------------
# row kernels: layer norm, deep norm, RMS norm, group / instance norm


@njit(parallel=True, cache=True)
def _layer_norm_kernel(out, x, weight, bias, eps):
    """out[r] = ((x[r] - mean_r) * rstd_r) * weight + bias over rows; x, out: (M, K); weight, bias: (K,).

    One prange iteration handles one row: blocked Welford statistics (float64 merge), then the normalise loop
    over the same (cache-resident) row.
    """
    M, K = x.shape
    for r in prange(M):
        row = x[r]
        o = out[r]
        cnt, mean, m2 = _accumulate(row, row[0], 0, 0.0, 0.0)
        m_hi, m_lo = _split_mean(x, row[0], mean)
        rstd = x.dtype.type(1.0 / np.sqrt(m2 / K + eps))
        for k in range(K):
            o[k] = ((row[k] - m_hi) - m_lo) * rstd * weight[k] + bias[k]


@njit(parallel=True, cache=True)
def _deep_norm_kernel(out, x, fx, alpha, weight, bias, eps):
    """out[r] = layer_norm(alpha * x[r] + fx[r]) over rows; x, fx, out: (M, K); weight, bias: (K,).

    One prange iteration handles one row: it writes y = alpha * x + fx into out[r], takes blocked Welford
    statistics of that row (now cache-resident) and normalises it in place, so x and fx are read once.
    """
    M, K = x.shape
    for r in prange(M):
        xr = x[r]
        fr = fx[r]
        o = out[r]
        for k in range(K):
            o[k] = alpha * xr[k] + fr[k]
        pivot = o[0]
        cnt, mean, m2 = _accumulate(o, pivot, 0, 0.0, 0.0)
        m_hi, m_lo = _split_mean(x, pivot, mean)
        rstd = x.dtype.type(1.0 / np.sqrt(m2 / K + eps))
        for k in range(K):
            o[k] = ((o[k] - m_hi) - m_lo) * rstd * weight[k] + bias[k]


@njit(parallel=True, cache=True)
def _rms_norm_kernel(out, x, weight, eps):
    """out[r] = (x[r] * rsqrt(mean(x[r]**2) + eps)) * weight over rows; x, out: (M, K); weight: (K,).

    One prange iteration handles one row: block sums of squares in x's dtype, accumulated in float64.
    """
    M, K = x.shape
    for r in prange(M):
        row = x[r]
        o = out[r]
        ss = 0.0
        for lo in range(0, K, BLOCK):
            ss += np.float64(_sum_squares(row[lo:min(lo + BLOCK, K)]))
        rs = x.dtype.type(1.0 / np.sqrt(ss / K + eps))
        for k in range(K):
            o[k] = (row[k] * rs) * weight[k]


@njit(parallel=True, cache=True)
def _group_norm_kernel(out, mean, m2, x, weight, bias, G, L, eps):
    """Group norm of rows r = (n, g): x, out: (N * G, Cg * L) with each row's Cg channels of L values contiguous;
    weight, bias: (G * Cg,); mean, m2: (N * G,) statistics of each row (for running-stat updates), computed in
    float64 and stored in their arrays' dtype.

    One prange iteration handles one row: blocked Welford statistics, then per channel c = g * Cg + j the
    affine map (x - m_hi) * scale_c + shift_c with scale_c = rstd * weight[c], shift_c = bias[c] - m_lo * scale_c.
    Instance norm is the case G = C.
    """
    R, K = x.shape
    Cg = K // L
    for r in prange(R):
        row = x[r]
        o = out[r]
        cnt, mu, q = _accumulate(row, row[0], 0, 0.0, 0.0)
        mean[r] = np.float64(row[0]) + mu
        m2[r] = q
        m_hi, m_lo = _split_mean(x, row[0], mu)
        rstd = 1.0 / np.sqrt(q / K + eps)
        for j in range(Cg):
            c = (r % G) * Cg + j
            scale = x.dtype.type(rstd * weight[c])
            shift = bias[c] - m_lo * scale
            xs = row[j * L:(j + 1) * L]
            os = o[j * L:(j + 1) * L]
            for i in range(L):
                os[i] = (xs[i] - m_hi) * scale + shift


@njit(cache=True)
def _chunk(t, NK, CH, K):
    """(row, lo, hi) of task t when rows of K values are cut into NK chunks of CH: chunk t % NK of row t // NK."""
    lo = (t % NK) * CH
    return t // NK, lo, min(lo + CH, K)


@njit(parallel=True, cache=True)
def _normalize_rows_kernel(out, x, m_hi, m_lo, rstd, weight, bias, CH):
    """out[r, k] = ((x[r, k] - m_hi[r]) - m_lo[r]) * rstd[r] * weight[k] + bias[k]; x, out: (M, K); m_hi, m_lo,
    rstd: (M,); weight, bias: (K,). One prange iteration handles CH values of one row (for few, long rows)."""
    M, K = x.shape
    NK = (K + CH - 1) // CH
    for t in prange(M * NK):
        r, lo, hi = _chunk(t, NK, CH, K)
        xs = x[r, lo:hi]
        os = out[r, lo:hi]
        ws = weight[lo:hi]
        bs = bias[lo:hi]
        a = m_hi[r]
        b = m_lo[r]
        s = rstd[r]
        for i in range(hi - lo):
            os[i] = ((xs[i] - a) - b) * s * ws[i] + bs[i]


@njit(parallel=True, cache=True)
def _scale_rows_kernel(out, x, rs, weight, CH):
    """out[r, k] = (x[r, k] * rs[r]) * weight[k]: RMS norm's map for few, long rows; x, out: (M, K); rs: (M,);
    weight: (K,). One prange iteration handles CH values of one row."""
    M, K = x.shape
    NK = (K + CH - 1) // CH
    for t in prange(M * NK):
        r, lo, hi = _chunk(t, NK, CH, K)
        xs = x[r, lo:hi]
        os = out[r, lo:hi]
        ws = weight[lo:hi]
        s = rs[r]
        for i in range(hi - lo):
            os[i] = (xs[i] * s) * ws[i]


@njit(cache=True, error_model="numpy")
def _finish_rows(pmean, pm2, K, CH, eps, center, low, scale):
    """Each row's terms of layer norm's map from its chunk statistics, rounded once to the output's dtype.

    pmean, pm2: (M, NK) float64 mean and M2 of chunk k of row r, which holds min(CH, K - k * CH) values; center,
    low, scale: (M,) outputs. The row's mean = sum n_k m_k / K and M2 = sum M2_k + n_k (m_k - mean)^2 (Chan's
    formula for many parts); center + low = mean (center the mean rounded, low the rest), scale = 1 / sqrt(M2 / K
    + eps). NaN and inf propagate (numpy's error model: 1 / 0 is inf, not an exception). Serial: O(M NK) work,
    which NumPy's array expressions took 14 us to do for one row of 200,704 values."""
    M, NK = pmean.shape
    for r in range(M):
        total = 0.0
        for k in range(NK):
            total += min(CH, K - k * CH) * pmean[r, k]
        mean = total / K
        m2 = 0.0
        for k in range(NK):
            d = pmean[r, k] - mean
            m2 += pm2[r, k] + min(CH, K - k * CH) * d * d
        hi = center.dtype.type(mean)
        center[r] = hi
        low[r] = low.dtype.type(mean - np.float64(hi))
        scale[r] = scale.dtype.type(1.0 / np.sqrt(m2 / K + eps))


@njit(cache=True, error_model="numpy")
def _finish_rms(pss, K, eps, scale):
    """scale[r] = 1 / sqrt(sum_k pss[r, k] / K + eps), rounded once to scale's dtype: RMS norm's factor of each row
    from its chunks' float64 sums of squares (pss: (M, NK)); an inf sum gives 0, 1 / 0 gives inf."""
    M, NK = pss.shape
    for r in range(M):
        ss = 0.0
        for k in range(NK):
            ss += pss[r, k]
        scale[r] = scale.dtype.type(1.0 / np.sqrt(ss / K + eps))


@njit(parallel=True, cache=True)
def _chunk_squares_kernel(pss, x, CH):
    """pss[r, k] = the sum of squares of x[r, k*CH:(k+1)*CH] in float64, block sums in x's dtype as
    ``_rms_norm_kernel`` takes them; x: (R, L); pss: (R, NK). One prange iteration handles one chunk."""
    R, L = x.shape
    NK = pss.shape[1]
    for t in prange(R * NK):
        r, lo, hi = _chunk(t, NK, CH, L)
        ss = 0.0
        for b in range(lo, hi, BLOCK):
            ss += np.float64(_sum_squares(x[r, b:min(b + BLOCK, hi)]))
        pss[r, t % NK] = ss


# ---------------------------------------------------------------------------------------------------------------
# batch norm: a fused per-channel kernel, and partial statistics + an affine pass for the other shapes


@njit(parallel=True, cache=True)
def _batch_norm_channel_kernel(out, mean, m2, x, weight, bias, eps):
    """Training batch norm, one prange iteration per channel; x, out: (N, C, L); weight, bias: (C,);
    mean, m2: (C,) float64 batch statistics.

    An iteration takes blocked Welford statistics over the channel's N rows of L values, then normalises those
    rows while they are still in L2 (x - m_hi) * scale + shift, so x is read from memory once.
    """
    N, C, L = x.shape
    for c in prange(C):
        pivot = x[0, c, 0]
        cnt = 0
        mu = 0.0
        q = 0.0
        for n in range(N):
            cnt, mu, q = _accumulate(x[n, c], pivot, cnt, mu, q)
        mean[c] = np.float64(pivot) + mu
        m2[c] = q
        m_hi, m_lo = _split_mean(x, pivot, mu)
        scale = x.dtype.type(weight[c] / np.sqrt(q / cnt + eps))
        shift = bias[c] - m_lo * scale
        for n in range(N - 1, -1, -1):  # newest rows first: they are the likeliest still in cache
            xs = x[n, c]
            os = out[n, c]
            for i in range(L):
                os[i] = (xs[i] - m_hi) * scale + shift


@njit(parallel=True, cache=True)
def _chunk_moments_kernel(pmean, pm2, x, CH):
    """Partial statistics of row chunks; x: (R, L); pmean, pm2: (R, NK) float64, NK = ceil(L / CH); chunk k of
    row r covers x[r, k*CH:(k+1)*CH]. One prange iteration handles one chunk (blocked Welford)."""
    R, L = x.shape
    NK = pmean.shape[1]
    for t in prange(R * NK):
        r = t // NK
        k = t % NK
        v = x[r, k * CH:min((k + 1) * CH, L)]
        cnt, mu, q = _accumulate(v, v[0], 0, 0.0, 0.0)
        pmean[r, k] = np.float64(v[0]) + mu
        pm2[r, k] = q


@njit(parallel=True, cache=True)
def _column_moments_kernel(pmean, pm2, x, RB, JB):
    """Partial statistics down columns; x: (N, J); pmean, pm2: (P, J) float64 for row groups p of RB rows.

    One prange iteration handles rows [p*RB, p*RB + RB) and columns [b*JB, b*JB + JB): a Welford update per row
    that is vectorised across the columns (all columns share the count), on values shifted by the group's first
    row, accumulated in x's dtype.
    """
    N, J = x.shape
    P = pmean.shape[0]
    NJ = (J + JB - 1) // JB
    for t in prange(P * NJ):
        p = t // NJ
        j0 = (t % NJ) * JB
        j1 = min(j0 + JB, J)
        r0 = p * RB
        r1 = min(r0 + RB, N)
        piv = x[r0, j0:j1]
        mu = np.zeros(j1 - j0, x.dtype)
        q = np.zeros(j1 - j0, x.dtype)
        for r in range(r0 + 1, r1):
            v = x[r, j0:j1]
            inv = x.dtype.type(1.0 / (r - r0 + 1))
            for j in range(j1 - j0):
                u = v[j] - piv[j]
                d = u - mu[j]
                mu[j] += d * inv
                q[j] += d * (u - mu[j])
        pm = pmean[p, j0:j1]
        pq = pm2[p, j0:j1]
        for j in range(j1 - j0):
            pm[j] = np.float64(piv[j]) + mu[j]
            pq[j] = q[j]


@njit(parallel=True, cache=True)
def _apply_rows_kernel(out, x, center, scale, shift, CH):
    """out[r, l] = (x[r, l] - center[r]) * scale[r] + shift[r]; x, out: (R, L); center, scale, shift: (R,).
    One prange iteration handles one row when rows have at most CH values, else one chunk of CH values of one row.
    Whole rows are indexed in 2-D, without the chunk's slices and division: batch_norm eval over (32, 256, 28, 28)
    float32 (51 MB moved), 2 threads, same process, 4 rounds: 4-6 % faster than through the chunk loop."""
    R, L = x.shape
    NK = (L + CH - 1) // CH
    if NK == 1:
        for r in prange(R):
            m = center[r]
            a = scale[r]
            b = shift[r]
            for i in range(L):
                out[r, i] = (x[r, i] - m) * a + b
        return
    for t in prange(R * NK):
        r = t // NK
        lo = (t % NK) * CH
        hi = min(lo + CH, L)
        xs = x[r, lo:hi]
        os = out[r, lo:hi]
        m = center[r]
        a = scale[r]
        b = shift[r]
        for i in range(hi - lo):
            os[i] = (xs[i] - m) * a + b


@njit(parallel=True, cache=True)
def _apply_columns_kernel(out, x, center, scale, shift, RB):
    """out[n, j] = (x[n, j] - center[j]) * scale[j] + shift[j]; x, out: (N, J); center, scale, shift: (J,).
    One prange iteration handles RB rows."""
    N, J = x.shape
    for p in prange((N + RB - 1) // RB):
        for n in range(p * RB, min(p * RB + RB, N)):
            xs = x[n]
            os = out[n]
            for j in range(J):
                os[j] = (xs[j] - center[j]) * scale[j] + shift[j]


# ---------------------------------------------------------------------------------------------------------------
# DyT


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _dyt32_row(os, xs, a, weight, bias):
    """os[k] = weight[k] * tanh(a * xs[k]) + bias[k] over one row, on 512-bit vectors where the CPU has them
    (``wide_vectors``: inlined into the prange body, it marks the function the row loop compiles into; called
    outside the loop, it left this Xeon's LLVM tuning at 256 bits). 2 threads, (32768, 1024), same process,
    values unchanged: 26.0 -> 19.1 ms; one thread, (256, 1024) in L2: 206 -> 164 us."""
    wide_vectors()
    for k in range(xs.shape[0]):
        os[k] = weight[k] * _tanh(a * xs[k]) + bias[k]


@njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _dyt32_kernel(out, x, alpha, weight, bias):
    """out[r, k] = weight[k] * tanh(alpha * x[r, k]) + bias[k] for float32; x, out: (M, K); alpha: (1,);
    weight, bias: (K,). One prange iteration handles one row (``_dyt32_row``); tanh is the activation family's
    (``_tanh``: a polynomial near 0, 1 - 2 / (exp(2|x|) + 1) beyond, within 2 ulp; the loop vectorises). It
    replaced a tanh of this module's own (expm1 by a Taylor polynomial and a division): one thread, (256, 1024) in
    L2, 0.99 -> 0.80 ns a value; 2 threads, (32768, 1024) 31.6 -> 26.8 ms."""
    a = alpha[0]
    for r in prange(x.shape[0]):
        _dyt32_row(out[r], x[r], a, weight, bias)


@njit(parallel=True, cache=True)
def _dyt_kernel(out, x, alpha, weight, bias):
    """As ``_dyt32_kernel`` with libm's tanh (float64, correctly rounded to within an ulp, not vectorised)."""
    M, K = x.shape
    a = alpha[0]
    for r in prange(M):
        xs = x[r]
        os = out[r]
        for k in range(K):
            os[k] = weight[k] * np.tanh(a * xs[k]) + bias[k]


# ---------------------------------------------------------------------------------------------------------------
# host-side helpers of the launchers (O(C) work on float64 statistics)


def _chan_merge(mean, m2, count, axis):
    """Merge groups of statistics along ``axis`` by Chan's formula for k groups (float64):
    mean = sum(n_i m_i) / n, M2 = sum(M2_i + n_i (m_i - mean)^2). ``count`` broadcasts against ``mean``."""
    count = np.broadcast_to(np.asarray(count, np.float64), mean.shape)
    n = count.sum(axis=axis)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN / inf inputs propagate, as in torch
        mu = (count * mean).sum(axis=axis) / n
        dev = mean - np.expand_dims(mu, axis)
        return mu, (m2 + count * dev * dev).sum(axis=axis)


def _update_running(running, stats, divisor, momentum):
    """running = (1 - momentum) * running + momentum * mean over rows of stats / divisor, in running's dtype and
    in place (``running`` is the caller's memory); stats: (B, C) float64."""
    t = running.dtype.type
    m = t(momentum)
    batch = (stats / divisor).mean(axis=0).astype(running.dtype)
    running[...] = m * batch + (t(1) - m) * running


def _affine(mean, m2, count, weight, bias, eps, dtype):
    """Per-channel (center, scale, shift) in ``dtype`` for y = (x - center) * scale + shift from float64 statistics:
    center = mean rounded to dtype, scale = weight / sqrt(M2 / count + eps), shift = bias - (mean - center) * scale."""
    with np.errstate(invalid="ignore", over="ignore"):
        center = mean.astype(dtype)
        scale = (weight / np.sqrt(m2 / count + eps)).astype(dtype)
        shift = (bias - (mean - center) * scale).astype(dtype)
    return center, scale, shift


def _columns_policy(N, J):
    """Row-group size RB and column block JB for the column kernels: about 4 tasks per thread."""
    tasks = 4 * thread_count()
    JB = max(256, -(-J // tasks))
    groups = max(1, tasks // -(-J // JB))
    return max(1, -(-N // groups)), JB


# ---------------------------------------------------------------------------------------------------------------
# launchers


def _few_long_rows(M, K):
    """Policy: split rows into CHUNK-sized tasks when there are too few rows to share evenly among the threads.
    Layer norm, float32, 2 threads, us, one row a task / chunks / torch: (1, 200704) 128.5 / 53.7 / 99.8, (3,
    100352) 88.7 / 79.8 / 101.4, (2, 100352) 45.5 / 51.1 / 51.3, (2, 65536) 27.7 / 34.9 / 35.1 (two rows keep
    both threads busy at one launch instead of three)."""
    threads = thread_count()
    return M < 2 * threads and M % threads != 0 and K >= 4 * CHUNK


def _row_work(x):
    """The work ``run_parallel`` weighs for a kernel that gives each row of x (M, K) one prange iteration: none for
    a single row, which one thread runs whatever the pool holds (the parallel launch only adds the waking: layer
    norm's kernel over (1, 4096) float32 2.9 -> 1.6 us, (1, 16384) 6.3 -> 5.3 us)."""
    return x.size if x.shape[0] > 1 else 0


def _row_chunk_moments(x):
    """Float64 (mean, M2) of each CHUNK-value chunk of each row of x (M, K): two (M, ceil(K / CHUNK)) arrays, from
    one launch (serial below ROWS_SERIAL_BELOW elements)."""
    M, K = x.shape
    NK = -(-K // CHUNK)
    pmean = np.empty((M, NK))
    pm2 = np.empty((M, NK))
    run_parallel(_chunk_moments_kernel, x.size, pmean, pm2, x, CHUNK, below=ROWS_SERIAL_BELOW)
    return pmean, pm2


@register("layer_norm", "cpu")
def layer_norm(out, x, weight, bias, eps):
    """x, out: (M, K) rows; weight, bias: (K,). One task per row, or per row chunk for few long rows."""
    M, K = x.shape
    if not _few_long_rows(M, K):
        run_parallel(_layer_norm_kernel, _row_work(x), out, x, weight, bias, eps, below=ROWS_SERIAL_BELOW)
        return
    pmean, pm2 = _row_chunk_moments(x)
    m_hi, m_lo, rstd = np.empty(M, x.dtype), np.empty(M, x.dtype), np.empty(M, x.dtype)
    _finish_rows(pmean, pm2, K, CHUNK, eps, m_hi, m_lo, rstd)
    run_parallel(_normalize_rows_kernel, x.size, out, x, m_hi, m_lo, rstd, weight, bias, CHUNK)


@register("deep_norm", "cpu")
def deep_norm(out, x, fx, weight, bias, alpha, eps):
    """x, fx, out: (M, K) rows; weight, bias: (K,)."""
    run_parallel(_deep_norm_kernel, _row_work(x), out, x, fx, x.dtype.type(alpha), weight, bias, eps,
                 below=ROWS_SERIAL_BELOW)


@register("rms_norm", "cpu")
def rms_norm(out, x, weight, eps):
    """x, out: (M, K) rows; weight: (K,). One task per row, or per row chunk for few long rows (the mean square
    then sums the chunks' sums of squares: an inf makes it inf and its row's values 0 or NaN, as torch's)."""
    M, K = x.shape
    if not _few_long_rows(M, K):
        run_parallel(_rms_norm_kernel, _row_work(x), out, x, weight, eps, below=ROWS_SERIAL_BELOW)
        return
    NK = -(-K // CHUNK)
    pss = np.empty((M, NK))
    run_parallel(_chunk_squares_kernel, x.size, pss, x, CHUNK)
    rs = np.empty(M, x.dtype)
    _finish_rms(pss, K, eps, rs)
    run_parallel(_scale_rows_kernel, x.size, out, x, rs, weight, CHUNK)


@register("group_norm", "cpu")
def group_norm(out, mean, m2, x, weight, bias, num_groups, eps):
    """x, out: (N, C, L); weight, bias: (C,); mean, m2: (N * num_groups,) statistics per (n, group), x's dtype,
    which the kernel writes itself (rounding its float64 statistics once)."""
    N, C, L = x.shape
    rows = x.reshape(N * num_groups, -1)
    run_parallel(_group_norm_kernel, _row_work(rows), out.reshape(rows.shape), mean, m2, rows, weight, bias,
                 num_groups, L, eps, below=ROWS_SERIAL_BELOW)


@register("running_update", "cpu")
def running_update(running, stats, divisor, momentum):
    """running (C,) in place: (1 - momentum) * running + momentum * mean_b(stats[b] / divisor); stats: (B, C)."""
    _update_running(running, np.asarray(stats, np.float64), divisor, momentum)


@register("batch_norm", "cpu")
def batch_norm(out, x, weight, bias, running_mean, running_var, training, momentum, eps):
    """x, out: (N, C, L); weight, bias: (C,); running_mean, running_var: (C,) or None, updated in place.

    Policy in training: the fused per-channel kernel when there are enough channels to share among the threads;
    else partial statistics of row chunks (long rows) or of column groups (short rows), merged by Chan's formula, and
    an affine pass parallel over chunks. In evaluation: ``_batch_norm_eval``. Below SERIAL_BELOW elements all of it
    runs on the calling thread (``run_parallel``).
    """
    N, C, L = x.shape
    if not training:
        run_parallel(_batch_norm_eval, x.size, out, x, running_mean, running_var, weight, bias, eps, CHUNK)
        return
    dt = x.dtype
    w = weight.astype(np.float64)
    b = bias.astype(np.float64)
    fused = L >= ROWS_MIN and C >= CHANNEL_TASKS * thread_count()
    if fused:
        mean = np.empty(C)
        m2 = np.empty(C)
        run_parallel(_batch_norm_channel_kernel, x.size, out, mean, m2, x, weight, bias, eps, below=ROWS_SERIAL_BELOW)
    elif L >= ROWS_MIN:
        pmean, pm2 = _row_chunk_moments(x.reshape(N * C, L))
        NK = pmean.shape[1]
        sizes = np.minimum(CHUNK, L - CHUNK * np.arange(NK))
        pmean = pmean.reshape(N, C, NK).transpose(1, 0, 2).reshape(C, -1)
        pm2 = pm2.reshape(N, C, NK).transpose(1, 0, 2).reshape(C, -1)
        mean, m2 = _chan_merge(pmean, pm2, np.tile(sizes, N), axis=1)
    else:
        RB, JB = _columns_policy(N, C * L)
        P = -(-N // RB)
        pmean = np.empty((P, C * L))
        pm2 = np.empty((P, C * L))
        run_parallel(_column_moments_kernel, x.size, pmean, pm2, x.reshape(N, C * L), RB, JB)
        rows = np.minimum(RB, N - RB * np.arange(P))
        pmean = pmean.reshape(P, C, L).transpose(1, 0, 2).reshape(C, -1)
        pm2 = pm2.reshape(P, C, L).transpose(1, 0, 2).reshape(C, -1)
        mean, m2 = _chan_merge(pmean, pm2, np.repeat(rows, L), axis=1)
    count = N * L
    if running_mean is not None:
        _update_running(running_mean, mean.reshape(1, C), 1.0, momentum)
    if running_var is not None:
        _update_running(running_var, m2.reshape(1, C), count - 1.0, momentum)
    if fused:
        return
    center, scale, shift = _affine(mean, m2, count, w, b, eps, dt)
    run_parallel(_apply, x.size, out, x, center, scale, shift, CHUNK)


@njit(cache=True)
def _batch_norm_eval(out, x, mean, var, weight, bias, eps, CH):
    """Evaluation batch norm in one compiled call: out = (x - mean[c]) * scale[c] + bias[c] with scale[c] =
    weight[c] / sqrt(var[c] + eps) in float64, rounded to x's dtype, then ``_apply``; x, out: (N, C, L); mean, var,
    weight, bias: (C,) of x's dtype. No NumPy call on the way: through the astype, sqrt, tile and repeat calls the
    training path's epilogue made, a (32, 512) float32 call took 27.2 us, 18.8 with this (the general path's
    argument checks in both)."""
    C = x.shape[1]
    scale = np.empty(C, x.dtype)
    for c in range(C):
        scale[c] = np.float64(weight[c]) / np.sqrt(np.float64(var[c]) + eps)
    _apply(out, x, mean, scale, bias, CH)


@njit(cache=True)
def _apply(out, x, center, scale, shift, CH):
    """out = (x - center[c]) * scale[c] + shift[c] for x, out: (N, C, L) and per-channel (C,) parameters of x's
    dtype: by rows (parameters laid out per row, ``_apply_rows_kernel``) for rows of at least ROWS_MIN, else down
    columns (parameters repeated along each row of C * L, ``_apply_columns_kernel``)."""
    N, C, L = x.shape
    if L >= ROWS_MIN:
        R = N * C
        ctr = np.empty(R, x.dtype)
        sc = np.empty(R, x.dtype)
        sh = np.empty(R, x.dtype)
        for r in range(R):
            ctr[r] = center[r % C]
            sc[r] = scale[r % C]
            sh[r] = shift[r % C]
        _apply_rows_kernel(out.reshape(R, L), x.reshape(R, L), ctr, sc, sh, CH)
        return
    J = C * L
    ctr = np.empty(J, x.dtype)
    sc = np.empty(J, x.dtype)
    sh = np.empty(J, x.dtype)
    for j in range(J):
        ctr[j] = center[j // L]
        sc[j] = scale[j // L]
        sh[j] = shift[j // L]
    _apply_columns_kernel(out.reshape(N, J), x.reshape(N, J), ctr, sc, sh, max(1, CH // max(1, J)))


@register("switch_norm", "cpu")
def switch_norm(out, x, weight, bias, mean_weight, var_weight, running_mean, running_var, training, using_bn,
                momentum, eps):
    """x, out: (N, C, L); weight, bias: (C,); mean_weight, var_weight: (3,) or (2,) logits; running stats (C,) or
    None, updated in place in training. IN statistics per (n, c) row in one pass; the LN/BN mixing is O(N * C)."""
    N, C, L = x.shape
    R = N * C
    pmean, pm2 = _row_chunk_moments(x.reshape(R, L))
    NK = pmean.shape[1]
    mean_in, m2_in = _chan_merge(pmean, pm2, np.minimum(CHUNK, L - CHUNK * np.arange(NK)), axis=1)
    mean_in = mean_in.reshape(N, C)
    var_in = m2_in.reshape(N, C) / (L - 1)
    temp = var_in + mean_in * mean_in
    mean_ln = mean_in.mean(axis=1, keepdims=True)
    var_ln = temp.mean(axis=1, keepdims=True) - mean_ln * mean_ln
    mw = _softmax(np.asarray(mean_weight, np.float64))
    vw = _softmax(np.asarray(var_weight, np.float64))
    mean = mw[0] * mean_in + mw[1] * mean_ln
    var = vw[0] * var_in + vw[1] * var_ln
    if using_bn:
        if training:
            mean_bn = mean_in.mean(axis=0)
            var_bn = temp.mean(axis=0) - mean_bn * mean_bn
            if running_mean is not None:
                _update_running(running_mean, mean_bn.reshape(1, C), 1.0, momentum)
            if running_var is not None:
                _update_running(running_var, var_bn.reshape(1, C), 1.0, momentum)
        else:
            mean_bn = np.asarray(running_mean, np.float64)
            var_bn = np.asarray(running_var, np.float64)
        mean = mean + mw[2] * mean_bn
        var = var + vw[2] * var_bn
    dt = x.dtype
    center = mean.astype(dt)
    scale = (weight.astype(np.float64) / np.sqrt(var + eps)).astype(dt)
    shift = (bias - (mean - center) * scale).astype(dt)
    run_parallel(_apply_rows_kernel, x.size, out.reshape(R, L), x.reshape(R, L), center.reshape(-1),
                 scale.reshape(-1), shift.reshape(-1), CHUNK)


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


@register("dyt", "cpu")
def dyt(out, x, alpha, weight, bias):
    """x, out: (M, K); alpha: (1,); weight, bias: (K,)."""
    run_parallel(_dyt32_kernel if x.dtype == np.float32 else _dyt_kernel, _row_work(x), out, x, alpha, weight, bias)
