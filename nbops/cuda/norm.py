"""CUDA kernels of the normalization family.

Statistics are exact two-moment sums in float64 around a pivot: a row's (or channel's) first element ``p``, with
s = sum(x - p) and q = sum((x - p)^2) accumulated per thread in float64, summed across the warp or block by
``_block`` (shuffles on a GPU, a shared-memory tree under the simulator), then mean = p + s / n and
M2 = q - s^2 / n. Because ``p`` is one of the values, (p - mean)^2 <= M2, so the cancellation in ``q - s^2 / n``
costs at most log10(n) of float64's 16 digits: float32 results are exact to rounding and float64 results keep
~1e-10 relative accuracy for n up to 1e6, at any common offset. Partial sums around one shared pivot add, so
chunks of a channel merge by plain addition in a fixed order (deterministic, no Chan merge needed).

Outputs are written as ``((x - m_hi) - m_lo) * a + b`` with the mean split into ``m_hi`` (rounded to the input
dtype) and ``m_lo``, so that a large offset keeps float32 precision.

Layouts (one read pass for the statistics, one read + write pass for the output; the second read of a row comes
from L1/L2 because the same warp or block has just read it):
- rows (layer, RMS, group, instance, deep norm; SwitchNorm's instance statistics): a warp per row up to
  ``WARP_ROW_MAX`` values, a block of ``TPB_ROWS`` threads per row above it; one row per warp or block, the grid
  covering the rows.
- planes (batch norm, SwitchNorm's apply, DyT's rows): (N, C, L) as N * C planes of L values; a block of (TX, TY)
  threads, TY planes at a time, TX threads along a plane (``_plane_tx``), grid-stride over the planes with
  ``BLOCKS_PER_SM`` blocks per SM.
Every streaming loop is a main loop of ``UNROLL`` = 4 unconditional loads (one basic block, so they are in flight
together) and a one-by-one tail.
"""

import math

import numpy as np
from numba import config, cuda, float64

from .._dispatch import register
from ._block import SCRATCH, block_sum, warp_sum
from ._util import TPB, blocks, empty, flat, sm_count, stream

WARP = 32
TPB_ROWS = 64 if config.ENABLE_CUDASIM else 256  # threads per block of the row and plane kernels (a warp multiple)
WARP_ROW_MAX = 1024  # rows up to this length get one warp each, longer rows a whole block (tests may lower it)
BLOCKS_PER_SM = 8  # resident blocks per SM at TPB_ROWS = 256 (2048 threads per SM)
UNROLL = 4  # independent loads in flight per thread in the streaming loops
PLANE_ROUNDS = 4  # plane kernels: at least this many passes of the four-load main loop per thread (_plane_tx)
BN_CHUNK_WAVES = 1  # batch-norm statistics: aim for this many waves of resident blocks over (channel, chunk)
BN_MAX_CHUNKS = 64  # ... but at most this many chunks per channel (<= TPB_ROWS: pass 2 sums one per thread)
ROW_CHUNK_MIN = TPB_ROWS * UNROLL * PLANE_ROUNDS  # group norm rows split over blocks: values per chunk, at least


def _grid(items, per_block):
    """Blocks for a grid-stride loop over ``items`` taking ``per_block`` per block: enough to fill the device
    (BLOCKS_PER_SM per SM), no more than the items need."""
    return max(1, min((items + per_block - 1) // per_block, sm_count() * BLOCKS_PER_SM))


def _plane_tx(L):
    """Threads along a plane of L values: the largest power of two from WARP to TPB_ROWS that still gives every
    thread PLANE_ROUNDS full passes of the four-load main loop. Fewer threads with more passes beat more threads
    with a short main loop and a serial tail: L = 784 (28 x 28) with 128 threads is one four-load pass and two
    one-load passes each, with 32 threads six four-load passes and one tail load."""
    tx = WARP
    while tx * 2 <= TPB_ROWS and tx * 2 * UNROLL * PLANE_ROUNDS <= L:
        tx *= 2
    return tx


@cuda.jit(device=True, inline=True)
def _moments_add(x, r, k, step, K, pivot, s, q):
    """Add (x[r, j] - pivot) and its square for j = k, k + step, ... < K to the float64 sums s, q. The main loop
    loads four values unconditionally, so they sit in one basic block and are in flight together (a predicated
    load per value splits the block and the compiler waits for each before the next); the tail goes one by one."""
    while k + 3 * step < K:
        a = float64(x[r, k]) - pivot
        b = float64(x[r, k + step]) - pivot
        c = float64(x[r, k + 2 * step]) - pivot
        d = float64(x[r, k + 3 * step]) - pivot
        s += (a + b) + (c + d)
        q += (a * a + b * b) + (c * c + d * d)
        k += 4 * step
    while k < K:
        a = float64(x[r, k]) - pivot
        s += a
        q += a * a
        k += step
    return s, q


@cuda.jit(device=True, inline=True)
def _affine_rows(out, x, r, k, step, K, m_hi, m_lo, rstd, weight, bias):
    """out[r, j] = ((x[r, j] - m_hi) - m_lo) * (rstd * weight[j]) + bias[j] for j = k, k + step, ... < K; four
    unconditional loads in flight in the main loop (all before its stores, so out may be x), a one-by-one tail."""
    while k + 3 * step < K:
        k1 = k + step
        k2 = k1 + step
        k3 = k2 + step
        v0 = x[r, k]
        v1 = x[r, k1]
        v2 = x[r, k2]
        v3 = x[r, k3]
        out[r, k] = ((v0 - m_hi) - m_lo) * (rstd * weight[k]) + bias[k]
        out[r, k1] = ((v1 - m_hi) - m_lo) * (rstd * weight[k1]) + bias[k1]
        out[r, k2] = ((v2 - m_hi) - m_lo) * (rstd * weight[k2]) + bias[k2]
        out[r, k3] = ((v3 - m_hi) - m_lo) * (rstd * weight[k3]) + bias[k3]
        k += 4 * step
    while k < K:
        out[r, k] = ((x[r, k] - m_hi) - m_lo) * (rstd * weight[k]) + bias[k]
        k += step


@cuda.jit(device=True, inline=True)
def _norm_span(out, x, r, base, k, step, n, m_hi, m_lo, a, b):
    """out[r, base + j] = ((x[r, base + j] - m_hi) - m_lo) * a + b for j = k, k + step, ... < n; four
    unconditional loads in flight in the main loop (all before its stores, so out may be x), a one-by-one tail."""
    while k + 3 * step < n:
        j = base + k
        v0 = x[r, j]
        v1 = x[r, j + step]
        v2 = x[r, j + 2 * step]
        v3 = x[r, j + 3 * step]
        out[r, j] = ((v0 - m_hi) - m_lo) * a + b
        out[r, j + step] = ((v1 - m_hi) - m_lo) * a + b
        out[r, j + 2 * step] = ((v2 - m_hi) - m_lo) * a + b
        out[r, j + 3 * step] = ((v3 - m_hi) - m_lo) * a + b
        k += 4 * step
    while k < n:
        out[r, base + k] = ((x[r, base + k] - m_hi) - m_lo) * a + b
        k += step


@cuda.jit(device=True, inline=True)
def _rms_rows(out, x, r, k, step, K, rs, weight):
    """out[r, j] = (x[r, j] * rs) * weight[j] for j = k, k + step, ... < K; four unconditional loads in flight in
    the main loop, a one-by-one tail."""
    while k + 3 * step < K:
        k1 = k + step
        k2 = k1 + step
        k3 = k2 + step
        v0 = x[r, k]
        v1 = x[r, k1]
        v2 = x[r, k2]
        v3 = x[r, k3]
        out[r, k] = (v0 * rs) * weight[k]
        out[r, k1] = (v1 * rs) * weight[k1]
        out[r, k2] = (v2 * rs) * weight[k2]
        out[r, k3] = (v3 * rs) * weight[k3]
        k += 4 * step
    while k < K:
        out[r, k] = (x[r, k] * rs) * weight[k]
        k += step


@cuda.jit(device=True, inline=True)
def _row_sums(x, r, lane, rt, pivot, scratch, per_warp):
    """(s, q) = (sum(x[r] - pivot), sum((x[r] - pivot)^2)) in float64, summed by the row's ``rt`` threads (a
    warp when ``per_warp``, else the block); rows past the end contribute 0. Every thread of the block calls it."""
    s = 0.0
    q = 0.0
    if r < x.shape[0]:
        s, q = _moments_add(x, r, lane, rt, x.shape[1], pivot, s, q)
    if per_warp:
        s = warp_sum(s, scratch)
        q = warp_sum(q, scratch)
    else:
        s = block_sum(s, scratch)
        q = block_sum(q, scratch)
    return s, q


@cuda.jit(device=True, inline=True)
def _row_slot(per_warp):
    """(row, lane, threads per row) of this thread: a warp per row when ``per_warp`` (TPB_ROWS / 32 rows per
    block), else the whole block on row blockIdx.x."""
    rt = WARP if per_warp else TPB_ROWS
    slot = cuda.threadIdx.x // rt
    return cuda.blockIdx.x * (TPB_ROWS // rt) + slot, cuda.threadIdx.x - slot * rt, rt


@cuda.jit(device=True, inline=True)
def _pivot(x, r):
    """x[r, 0] in float64 (0 for rows past the end)."""
    return float64(x[r, 0]) if r < x.shape[0] else 0.0


@cuda.jit
def _layer_rows_kernel(out, x, weight, bias, eps, per_warp):
    """Layer norm of rows; x, out: (R, K); weight, bias: (K,). Block: TPB_ROWS threads; ``per_warp``: a warp per
    row (TPB_ROWS / 32 rows per block), else a block per row; grid = the rows / rows per block (no grid-stride
    loop: it kept ~25 more registers live across rows and cut the resident warps).

    One pass sums (x - x[r, 0]) and its square in float64; after the warp or block sum every thread of the row
    holds mean and M2; a second pass (its reads mostly hit L1/L2) stores
    out = ((x - m_hi) - m_lo) * rstd * weight[k] + bias[k]. Works in place (out is x).

    Napkin math, (32768, 1024) float32: 134 MB read + 134 MB written = 268 MB, 67 us at 4 TB/s.
    """
    scratch = cuda.shared.array(SCRATCH, float64)
    r, lane, rt = _row_slot(per_warp)
    pivot = _pivot(x, r)
    s, q = _row_sums(x, r, lane, rt, pivot, scratch, per_warp)
    if r < x.shape[0]:
        K = x.shape[1]
        mean = pivot + s / K
        m2 = q - s * (s / K)
        m2 = m2 if m2 > 0.0 else 0.0
        m_hi = x.dtype.type(mean)
        m_lo = x.dtype.type(mean - float64(m_hi))
        rstd = x.dtype.type(1.0 / math.sqrt(m2 / K + eps))
        _affine_rows(out, x, r, lane, rt, K, m_hi, m_lo, rstd, weight, bias)


@cuda.jit
def _rms_rows_kernel(out, x, weight, eps, per_warp):
    """RMS norm of rows: out = (x * rsqrt(mean(x^2) + eps)) * weight[k]; x, out: (R, K); weight: (K,). The layout
    of ``_layer_rows_kernel``; the sum of squares in float64 (pivot 0)."""
    scratch = cuda.shared.array(SCRATCH, float64)
    r, lane, rt = _row_slot(per_warp)
    q = _row_sums(x, r, lane, rt, 0.0, scratch, per_warp)[1]
    if r < x.shape[0]:
        K = x.shape[1]
        _rms_rows(out, x, r, lane, rt, K, x.dtype.type(1.0 / math.sqrt(q / K + eps)), weight)


@cuda.jit(device=True, inline=True)
def _residual_sums(x, fx, alpha, r, k, step, K, pivot, s, q):
    """``_moments_add`` over v = alpha * x[r] + fx[r], formed in registers (never written to memory)."""
    while k + 3 * step < K:
        a = float64(alpha * x[r, k] + fx[r, k]) - pivot
        b = float64(alpha * x[r, k + step] + fx[r, k + step]) - pivot
        c = float64(alpha * x[r, k + 2 * step] + fx[r, k + 2 * step]) - pivot
        d = float64(alpha * x[r, k + 3 * step] + fx[r, k + 3 * step]) - pivot
        s += (a + b) + (c + d)
        q += (a * a + b * b) + (c * c + d * d)
        k += 4 * step
    while k < K:
        a = float64(alpha * x[r, k] + fx[r, k]) - pivot
        s += a
        q += a * a
        k += step
    return s, q


@cuda.jit(device=True, inline=True)
def _residual_affine(out, x, fx, alpha, r, k, step, K, m_hi, m_lo, rstd, weight, bias):
    """``_affine_rows`` of v = alpha * x[r] + fx[r], formed again from the inputs (their second read comes from
    L1/L2)."""
    while k + 3 * step < K:
        k1 = k + step
        k2 = k1 + step
        k3 = k2 + step
        v0 = alpha * x[r, k] + fx[r, k]
        v1 = alpha * x[r, k1] + fx[r, k1]
        v2 = alpha * x[r, k2] + fx[r, k2]
        v3 = alpha * x[r, k3] + fx[r, k3]
        out[r, k] = ((v0 - m_hi) - m_lo) * (rstd * weight[k]) + bias[k]
        out[r, k1] = ((v1 - m_hi) - m_lo) * (rstd * weight[k1]) + bias[k1]
        out[r, k2] = ((v2 - m_hi) - m_lo) * (rstd * weight[k2]) + bias[k2]
        out[r, k3] = ((v3 - m_hi) - m_lo) * (rstd * weight[k3]) + bias[k3]
        k += 4 * step
    while k < K:
        out[r, k] = (((alpha * x[r, k] + fx[r, k]) - m_hi) - m_lo) * (rstd * weight[k]) + bias[k]
        k += step


@cuda.jit
def _deep_rows_kernel(out, x, fx, alpha, weight, bias, eps, per_warp):
    """DeepNorm of rows: layer_norm(alpha * x + fx) with the residual sum formed in registers in both passes, so it
    never goes to memory (the CPU kernel fuses it too); x, fx, out: (R, K); weight, bias: (K,). The layout of
    ``_layer_rows_kernel``. Napkin math, (32768, 1024) float32: 2 x 134 MB read + 134 MB written, 100 us at
    4 TB/s (a separate alpha * x + fx pass would add 268 MB)."""
    scratch = cuda.shared.array(SCRATCH, float64)
    r, lane, rt = _row_slot(per_warp)
    R, K = x.shape
    pivot = float64(alpha * x[r, 0] + fx[r, 0]) if r < R else 0.0
    s = 0.0
    q = 0.0
    if r < R:
        s, q = _residual_sums(x, fx, alpha, r, lane, rt, K, pivot, s, q)
    if per_warp:
        s = warp_sum(s, scratch)
        q = warp_sum(q, scratch)
    else:
        s = block_sum(s, scratch)
        q = block_sum(q, scratch)
    if r < R:
        mean = pivot + s / K
        m2 = q - s * (s / K)
        m2 = m2 if m2 > 0.0 else 0.0
        m_hi = x.dtype.type(mean)
        m_lo = x.dtype.type(mean - float64(m_hi))
        rstd = x.dtype.type(1.0 / math.sqrt(m2 / K + eps))
        _residual_affine(out, x, fx, alpha, r, lane, rt, K, m_hi, m_lo, rstd, weight, bias)


@cuda.jit
def _group_rows_kernel(out, mean_out, m2_out, x, weight, bias, G, L, eps, write, m2_div, per_warp):
    """Group / instance norm of rows, and SwitchNorm's instance statistics; x, out: (R, K) with K = Cg * L: a row
    is one (sample, group) of Cg channels of L values (instance norm: G = C, Cg = 1). The layout of
    ``_layer_rows_kernel``. When ``mean_out`` has room the row's lead thread stores mean_out[r] and
    m2_out[r] = M2 / m2_div; with ``write``, out = ((x - m_hi) - m_lo) * (rstd * weight[c]) + bias[c] channel by
    channel, c = (r % G) * Cg + k // L.

    Napkin math, (32, 256, 28, 28) float32, G = 32: 25.7 MB read + 25.7 MB written, 13 us at 4 TB/s.
    """
    scratch = cuda.shared.array(SCRATCH, float64)
    r, lane, rt = _row_slot(per_warp)
    pivot = _pivot(x, r)
    s, q = _row_sums(x, r, lane, rt, pivot, scratch, per_warp)
    if r < x.shape[0]:
        K = x.shape[1]
        mean = pivot + s / K
        m2 = q - s * (s / K)
        m2 = m2 if m2 > 0.0 else 0.0
        if lane == 0 and r < mean_out.shape[0]:
            mean_out[r] = mean
            m2_out[r] = m2 / m2_div
        if write:
            m_hi = x.dtype.type(mean)
            m_lo = x.dtype.type(mean - float64(m_hi))
            rstd = x.dtype.type(1.0 / math.sqrt(m2 / K + eps))
            Cg = K // L
            g = (r % G) * Cg
            for cc in range(Cg):
                _norm_span(out, x, r, cc * L, lane, rt, L, m_hi, m_lo, rstd * weight[g + cc], bias[g + cc])


@cuda.jit
def _row_partial_kernel(part, x, S, E):
    """Statistics of long rows split over S blocks each (group norm with few, large groups): part[r, s] =
    (sum(x - p_r), sum((x - p_r)^2)) in float64 over values [s * E, (s + 1) * E) of row r, p_r = x[r, 0].
    x: (R, K); part: (R, S, 2). Grid = R * S blocks of TPB_ROWS threads, block r * S + s on chunk s of row r."""
    scratch = cuda.shared.array(SCRATCH, float64)
    K = x.shape[1]
    r = cuda.blockIdx.x // S
    chunk = cuda.blockIdx.x - r * S
    start = chunk * E
    end = start + E
    end = end if end < K else K
    s, q = _moments_add(x, r, start + cuda.threadIdx.x, cuda.blockDim.x, end, float64(x[r, 0]), 0.0, 0.0)
    s = block_sum(s, scratch)
    q = block_sum(q, scratch)
    if cuda.threadIdx.x == 0:
        part[r, chunk, 0] = s
        part[r, chunk, 1] = q


@cuda.jit
def _group_apply_kernel(out, mean_out, m2_out, x, part, weight, bias, G, L, S, E, eps):
    """Group norm of long rows split over S blocks each, pass 2: block r * S + s sums row r's S partial sums
    (one per thread, ``_block``'s fixed tree order: the same bits in every block of the row), and normalises the
    values [s * E, (s + 1) * E) of row r channel span by channel span, as ``_group_rows_kernel`` does; the
    block of chunk 0 stores mean_out[r] and m2_out[r] = M2 when they have room. Grid as ``_row_partial_kernel``.

    Napkin math, (1, 320, 64, 64) float32, G = 32: 5.2 MB read + 5.2 MB written; 32 rows alone would be 32 blocks
    on 132 SMs, split 8 ways they are 256.
    """
    scratch = cuda.shared.array(SCRATCH, float64)
    K = x.shape[1]
    r = cuda.blockIdx.x // S
    chunk = cuda.blockIdx.x - r * S
    tid = cuda.threadIdx.x
    s = part[r, tid, 0] if tid < S else 0.0
    q = part[r, tid, 1] if tid < S else 0.0
    s = block_sum(s, scratch)
    q = block_sum(q, scratch)
    mean = float64(x[r, 0]) + s / K
    m2 = q - s * (s / K)
    m2 = m2 if m2 > 0.0 else 0.0
    if chunk == 0 and tid == 0 and r < mean_out.shape[0]:
        mean_out[r] = mean
        m2_out[r] = m2
    m_hi = x.dtype.type(mean)
    m_lo = x.dtype.type(mean - float64(m_hi))
    rstd = x.dtype.type(1.0 / math.sqrt(m2 / K + eps))
    g = (r % G) * (K // L)
    start = chunk * E
    end = start + E
    end = end if end < K else K
    cc = start // L
    while cc * L < end:
        lo = cc * L if cc * L > start else start
        hi = (cc + 1) * L if (cc + 1) * L < end else end
        _norm_span(out, x, r, lo, tid, cuda.blockDim.x, hi - lo, m_hi, m_lo, rstd * weight[g + cc], bias[g + cc])
        cc += 1


@cuda.jit
def _bn_partial_kernel(part, x, C, S):
    """Batch-norm statistics, pass 1: part[c, s] = (sum(x - p_c), sum((x - p_c)^2)) in float64 over chunk s of
    channel c, p_c = x[0, c, 0]. x: (N * C, L) planes (plane n * C + c); part: (C, S, 2).

    Block (TX, TY): TY planes at a time, TX threads along a plane with four loads in flight; grid = C * S blocks,
    block c * S + s takes planes n = s * TY + ty, stepping S * TY, of channel c. Many blocks per channel (S is
    chosen so that C * S fills the device) rather than one block per channel walking the whole batch.
    """
    scratch = cuda.shared.array(SCRATCH, float64)
    P, L = x.shape
    N = P // C
    c = cuda.blockIdx.x // S
    chunk = cuda.blockIdx.x - c * S
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    pivot = float64(x[c, 0])
    s = 0.0
    q = 0.0
    n = chunk * cuda.blockDim.y + ty
    while n < N:
        s, q = _moments_add(x, n * C + c, tx, cuda.blockDim.x, L, pivot, s, q)
        n += S * cuda.blockDim.y
    s = block_sum(s, scratch)
    q = block_sum(q, scratch)
    if tx == 0 and ty == 0:
        part[c, chunk, 0] = s
        part[c, chunk, 1] = q


@cuda.jit
def _bn_apply_kernel(out, x, part, weight, bias, running_mean, running_var, C, S, momentum, eps):
    """Batch-norm training, pass 2: every block sums its channel's S <= TPB_ROWS partial sums, one per thread, in
    ``_block``'s fixed tree order (the same bits in every block), forms mean and biased variance, and normalises
    the planes of its chunk: out = ((x - m_hi) - m_lo) * (weight[c] / sqrt(var + eps)) + bias[c]. The block of
    chunk 0 also updates the running statistics of its channel (when they have a slot): running =
    (1 - momentum) * running + momentum * stat, with the unbiased variance. Same grid and planes as
    ``_bn_partial_kernel``.

    Napkin math, (32, 256, 28, 28) float32 (25.7 MB): pass 1 reads 25.7 MB, pass 2 reads it again (from L2: it
    fits the 60 MB) and writes 25.7 MB; ~77 MB of traffic, ~20 us at 4 TB/s. A batch past L2 (say 200 MB)
    reads DRAM twice: 3 x 200 MB moved for the 2 x 200 MB that GB/s counts, so 2/3 of copy bandwidth at best.
    """
    P, L = x.shape
    N = P // C
    c = cuda.blockIdx.x // S
    chunk = cuda.blockIdx.x - c * S
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    scratch = cuda.shared.array(SCRATCH, float64)
    tid = ty * cuda.blockDim.x + tx
    pivot = float64(x[c, 0])
    s = part[c, tid, 0] if tid < S else 0.0
    q = part[c, tid, 1] if tid < S else 0.0
    s = block_sum(s, scratch)
    q = block_sum(q, scratch)
    cnt = N * L
    mean = pivot + s / cnt
    m2 = q - s * (s / cnt)
    m2 = m2 if m2 > 0.0 else 0.0
    if chunk == 0 and tx == 0 and ty == 0:
        if running_mean.shape[0] > 0:
            k = running_mean.dtype.type(momentum)
            running_mean[c] = k * running_mean.dtype.type(mean) + (running_mean.dtype.type(1) - k) * running_mean[c]
        if running_var.shape[0] > 0:
            k = running_var.dtype.type(momentum)
            running_var[c] = k * running_var.dtype.type(m2 / (cnt - 1)) + (running_var.dtype.type(1) - k) * \
                running_var[c]
    m_hi = x.dtype.type(mean)
    m_lo = x.dtype.type(mean - float64(m_hi))
    a = x.dtype.type(weight[c] / math.sqrt(m2 / cnt + eps))
    b = bias[c]
    n = chunk * cuda.blockDim.y + ty
    while n < N:
        _norm_span(out, x, n * C + c, 0, tx, cuda.blockDim.x, L, m_hi, m_lo, a, b)
        n += S * cuda.blockDim.y


@cuda.jit
def _bn_eval_kernel(out, x, running_mean, running_var, weight, bias, C, eps):
    """Batch norm with running statistics: out = (x - rm[c]) * (weight[c] / sqrt(rv[c] + eps)) + bias[c] in x's
    dtype (eps arrives in it). x, out: (N * C, L) planes, c = plane % C (one division per plane, none per
    element). Block (TX, TY): plane p = blockIdx.x * TY + ty, grid-stride over the planes; TX threads along a
    plane, four loads in flight; the channel's scale is formed once per plane.

    Napkin math, (32, 256, 28, 28) float32: 25.7 MB read + 25.7 MB written, 13 us at 4 TB/s.
    """
    P, L = x.shape
    zero = x.dtype.type(0)
    p = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    while p < P:
        c = p % C
        a = weight[c] / math.sqrt(running_var[c] + eps)
        _norm_span(out, x, p, 0, cuda.threadIdx.x, cuda.blockDim.x, L, running_mean[c], zero, a, bias[c])
        p += cuda.gridDim.x * cuda.blockDim.y


@cuda.jit
def _planes_affine_kernel(out, x, center, scale, shift):
    """out[r, l] = (x[r, l] - center[r]) * scale[r] + shift[r]; x, out: (R, L). Block (TX, TY): row
    blockIdx.x * TY + ty, grid-stride over the rows, TX threads along a row with four loads in flight."""
    R, L = x.shape
    zero = x.dtype.type(0)
    r = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    while r < R:
        _norm_span(out, x, r, 0, cuda.threadIdx.x, cuda.blockDim.x, L, center[r], zero, scale[r], shift[r])
        r += cuda.gridDim.x * cuda.blockDim.y


@cuda.jit
def _running_update_kernel(running, stats, divisor, momentum):
    """running[c] = (1 - momentum) * running[c] + momentum * mean_b(stats[b, c] / divisor); stats: (B, C);
    one thread per channel, grid = ceil(C / TPB) blocks of TPB. ``running`` may be strided (caller's memory)."""
    c = cuda.grid(1)
    B, C = stats.shape
    if c < C:
        s = 0.0
        for b in range(B):
            s += stats[b, c] / divisor
        m = running.dtype.type(momentum)
        running[c] = m * running.dtype.type(s / B) + (running.dtype.type(1) - m) * running[c]


@cuda.jit
def _dyt_kernel(out, x, alpha, weight, bias):
    """out[r, k] = weight[k] * tanh(alpha[0] * x[r, k]) + bias[k]; x, out: (M, K). Block (TX, TY): row
    blockIdx.x * TY + ty, grid-stride over the rows, TX threads along a row with four loads in flight."""
    M, K = x.shape
    al = alpha[0]
    step = cuda.blockDim.x
    r = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    while r < M:
        k = cuda.threadIdx.x
        while k + 3 * step < K:  # four unconditional loads in flight, then a one-by-one tail
            v0 = x[r, k]
            v1 = x[r, k + step]
            v2 = x[r, k + 2 * step]
            v3 = x[r, k + 3 * step]
            out[r, k] = weight[k] * math.tanh(al * v0) + bias[k]
            out[r, k + step] = weight[k + step] * math.tanh(al * v1) + bias[k + step]
            out[r, k + 2 * step] = weight[k + 2 * step] * math.tanh(al * v2) + bias[k + 2 * step]
            out[r, k + 3 * step] = weight[k + 3 * step] * math.tanh(al * v3) + bias[k + 3 * step]
            k += 4 * step
        while k < K:
            out[r, k] = weight[k] * math.tanh(al * x[r, k]) + bias[k]
            k += step
        r += cuda.gridDim.x * cuda.blockDim.y


@cuda.jit
def _switch_stats_kernel(mean_ln, var_ln, mean_bn, var_bn, mean_in, var_in, running_mean, running_var, training,
                         using_bn, update, momentum):
    """SwitchNorm's LN and BN statistics from the IN statistics mean_in, var_in: (N, C) (float64, unbiased var):
    thread i < N computes sample i's LN pair (loop over C); thread i < C computes channel i's BN pair (loop over
    N, training) or reads the running statistics (evaluation), and updates the running statistics when
    ``update``. One thread per index of max(N, C), grid = ceil(max(N, C) / TPB) blocks of TPB."""
    i = cuda.grid(1)
    N, C = mean_in.shape
    if i < N:
        m = 0.0
        t = 0.0
        for c in range(C):
            mu = mean_in[i, c]
            m += mu
            t += var_in[i, c] + mu * mu
        m /= C
        mean_ln[i] = m
        var_ln[i] = t / C - m * m
    if using_bn and i < C:
        if training:
            m = 0.0
            t = 0.0
            for n in range(N):
                mu = mean_in[n, i]
                m += mu
                t += var_in[n, i] + mu * mu
            m /= N
            v = t / N - m * m
            mean_bn[i] = m
            var_bn[i] = v
            if update:
                k = running_mean.dtype.type(momentum)
                one = running_mean.dtype.type(1)
                running_mean[i] = k * running_mean.dtype.type(m) + (one - k) * running_mean[i]
                running_var[i] = k * running_var.dtype.type(v) + (one - k) * running_var[i]
        else:
            mean_bn[i] = running_mean[i]
            var_bn[i] = running_var[i]


@cuda.jit
def _switch_mix_kernel(center, scale, shift, mean_in, var_in, mean_ln, var_ln, mean_bn, var_bn, mean_weight,
                       var_weight, weight, bias, using_bn, eps):
    """SwitchNorm's per-(n, c) affine map from the softmax-weighted mix of IN, LN (and BN) statistics:
    y = (x - center) * scale + shift; mean_in, var_in: (N, C); center, scale, shift: (N * C,) in x's dtype.
    One thread per (n, c), grid = ceil(N * C / TPB) blocks of TPB."""
    j = cuda.grid(1)
    N, C = mean_in.shape
    if j < N * C:
        n = j // C
        c = j - n * C
        k = 3 if using_bn else 2
        mmax = mean_weight[0]
        vmax = var_weight[0]
        for a in range(1, k):
            if mean_weight[a] > mmax:
                mmax = mean_weight[a]
            if var_weight[a] > vmax:
                vmax = var_weight[a]
        em0 = math.exp(float64(mean_weight[0] - mmax))
        em1 = math.exp(float64(mean_weight[1] - mmax))
        ev0 = math.exp(float64(var_weight[0] - vmax))
        ev1 = math.exp(float64(var_weight[1] - vmax))
        mean = em0 * mean_in[n, c] + em1 * mean_ln[n]
        var = ev0 * var_in[n, c] + ev1 * var_ln[n]
        msum = em0 + em1
        vsum = ev0 + ev1
        if using_bn:
            em2 = math.exp(float64(mean_weight[2] - mmax))
            ev2 = math.exp(float64(var_weight[2] - vmax))
            mean += em2 * mean_bn[c]
            var += ev2 * var_bn[c]
            msum += em2
            vsum += ev2
        mean /= msum
        var /= vsum
        hi = center.dtype.type(mean)
        a = center.dtype.type(weight[c] / math.sqrt(var + eps))
        center[j] = hi
        scale[j] = a
        shift[j] = bias[c] - center.dtype.type(mean - float64(hi)) * a


# ---------------------------------------------------------------------------------------------------------------
# launchers


def _no_stats(out):
    """A zero-length view of ``out``: the kernels then store no statistics (or update no running statistic)."""
    return flat(out)[:0]


def _row_launch(R, K):
    """(grid, per_warp) of the row kernels over R rows of K: a warp per row up to WARP_ROW_MAX, else a block."""
    per_warp = K <= WARP_ROW_MAX
    rpb = TPB_ROWS // WARP if per_warp else 1
    return (R + rpb - 1) // rpb, per_warp


def _row_chunks(R, K):
    """Blocks per row for group norm's long rows: 1 while the R rows fill the device, else enough for
    BLOCKS_PER_SM blocks an SM, each chunk at least ROW_CHUNK_MIN values, at most BN_MAX_CHUNKS chunks."""
    if K <= WARP_ROW_MAX:
        return 1
    return max(1, min(-(-sm_count() * BLOCKS_PER_SM // R), BN_MAX_CHUNKS, K // ROW_CHUNK_MIN))


def _group_rows(out, mean, m2, x, weight, bias, G, L, eps, write=True, m2_div=1.0):
    grid, per_warp = _row_launch(*x.shape)
    _group_rows_kernel[grid, TPB_ROWS, stream()](out, mean, m2, x, weight, bias, G, L, eps, write, float(m2_div),
                                                 per_warp)


def _layer_rows(out, x, weight, bias, eps):
    grid, per_warp = _row_launch(*x.shape)
    _layer_rows_kernel[grid, TPB_ROWS, stream()](out, x, weight, bias, eps, per_warp)


def _plane_block(L):
    """(TX, TY) threads of a plane kernel over planes of L values."""
    tx = _plane_tx(L)
    return tx, TPB_ROWS // tx


@register("layer_norm", "cuda")
def layer_norm(out, x, weight, bias, eps):
    """x, out: (M, K) rows; weight, bias: (K,)."""
    _layer_rows(out, x, weight, bias, eps)


@register("deep_norm", "cuda")
def deep_norm(out, x, fx, weight, bias, alpha, eps):
    """x, fx, out: (M, K) rows; weight, bias: (K,): layer_norm(alpha * x + fx), fused."""
    grid, per_warp = _row_launch(*x.shape)
    _deep_rows_kernel[grid, TPB_ROWS, stream()](out, x, fx, x.dtype.type(alpha), weight, bias, eps, per_warp)


@register("rms_norm", "cuda")
def rms_norm(out, x, weight, eps):
    """x, out: (M, K) rows; weight: (K,)."""
    grid, per_warp = _row_launch(*x.shape)
    _rms_rows_kernel[grid, TPB_ROWS, stream()](out, x, weight, eps, per_warp)


@register("group_norm", "cuda")
def group_norm(out, mean, m2, x, weight, bias, num_groups, eps):
    """x, out: (N, C, L); weight, bias: (C,); mean, m2: (N * num_groups,) statistics per (n, group)."""
    N, C, L = x.shape
    R = N * num_groups
    K = C // num_groups * L
    rows, outr = x.reshape(R, K), out.reshape(R, K)
    S = _row_chunks(R, K)
    if S == 1:
        _group_rows(outr, mean, m2, rows, weight, bias, num_groups, L, eps)
        return
    E = -(-K // S)
    part = empty((R, S, 2), np.float64)
    _row_partial_kernel[R * S, TPB_ROWS, stream()](part, rows, S, E)
    _group_apply_kernel[R * S, TPB_ROWS, stream()](outr, mean, m2, rows, part, weight, bias, num_groups, L, S, E,
                                                   float(eps))


@register("running_update", "cuda")
def running_update(running, stats, divisor, momentum):
    """running (C,) in place: (1 - momentum) * running + momentum * mean_b(stats[b] / divisor); stats: (B, C)."""
    C = stats.shape[1]
    _running_update_kernel[blocks(C), TPB, stream()](running, stats, float(divisor), float(momentum))


def _bn_chunks(N, C, ty):
    """Chunks per channel for the training statistics: enough (channel, chunk) blocks for BN_CHUNK_WAVES waves,
    at most BN_MAX_CHUNKS and no more than the channel's groups of ty planes."""
    want = -(-BN_CHUNK_WAVES * sm_count() * BLOCKS_PER_SM // C)
    return max(1, min(want, BN_MAX_CHUNKS, -(-N // ty)))


@register("batch_norm", "cuda")
def batch_norm(out, x, weight, bias, running_mean, running_var, training, momentum, eps):
    """x, out: (N, C, L); weight, bias: (C,); running_mean, running_var: (C,) or None, updated in place."""
    N, C, L = x.shape
    planes, outp = x.reshape(N * C, L), out.reshape(N * C, L)
    block = _plane_block(L)
    if not training:
        _bn_eval_kernel[_grid(N * C, block[1]), block, stream()](outp, planes, running_mean, running_var, weight,
                                                                bias, C, x.dtype.type(eps))
        return
    S = _bn_chunks(N, C, block[1])
    part = empty((C, S, 2), np.float64)
    _bn_partial_kernel[C * S, block, stream()](part, planes, C, S)
    rm = running_mean if running_mean is not None else _no_stats(out)
    rv = running_var if running_var is not None else _no_stats(out)
    _bn_apply_kernel[C * S, block, stream()](outp, planes, part, weight, bias, rm, rv, C, S, float(momentum),
                                             float(eps))


@register("switch_norm", "cuda")
def switch_norm(out, x, weight, bias, mean_weight, var_weight, running_mean, running_var, training, using_bn,
                momentum, eps):
    """x, out: (N, C, L); weight, bias: (C,); mean_weight, var_weight: (3,) or (2,) logits; running stats (C,) or
    None, updated in place in training. Kernels: IN statistics per row, LN/BN statistics, the mix, the apply."""
    N, C, L = x.shape
    R = N * C
    mean_in = empty((N, C), np.float64)
    var_in = empty((N, C), np.float64)
    rows = x.reshape(R, L)
    _group_rows(rows, mean_in.reshape(R), var_in.reshape(R), rows, weight, bias, C, L, eps, write=False,
                m2_div=L - 1.0)
    mean_ln = empty(N, np.float64)
    var_ln = empty(N, np.float64)
    mean_bn = empty(C, np.float64)
    var_bn = empty(C, np.float64)
    update = running_mean is not None and running_var is not None
    rm = running_mean if running_mean is not None else mean_bn
    rv = running_var if running_var is not None else var_bn
    _switch_stats_kernel[blocks(max(N, C)), TPB, stream()](mean_ln, var_ln, mean_bn, var_bn, mean_in, var_in, rm, rv,
                                                           training, using_bn, update, float(momentum))
    center = empty(R, x.dtype)
    scale = empty(R, x.dtype)
    shift = empty(R, x.dtype)
    _switch_mix_kernel[blocks(R), TPB, stream()](center, scale, shift, mean_in, var_in, mean_ln, var_ln, mean_bn,
                                                 var_bn, mean_weight, var_weight, weight, bias, using_bn, eps)
    block = _plane_block(L)
    _planes_affine_kernel[_grid(R, block[1]), block, stream()](out.reshape(R, L), rows, center, scale, shift)


@register("dyt", "cuda")
def dyt(out, x, alpha, weight, bias):
    """x, out: (M, K); alpha: (1,); weight, bias: (K,)."""
    M, K = x.shape
    block = _plane_block(K)
    _dyt_kernel[_grid(M, block[1]), block, stream()](out, x, alpha, weight, bias)
