"""CUDA kernels of the normalization family.

Statistics: one block per row (layer, deep, RMS, group, instance and switch norm) or per channel (batch norm).
Each thread runs Welford's update over its strided share of the row, on values shifted by the row's first element
(so a large common offset costs no precision), in the input's dtype; the NT per-thread (count, mean, M2) triples
then meet in shared memory (float64) and are merged pairwise by Chan's formula in a log2(NT)-level tree, without
warp shuffles (the simulator has none). The block then normalises its row with the merged statistics, the mean
split into ``m_hi`` (rounded to the input dtype) and ``m_lo`` so that ``(x - m_hi) - m_lo`` keeps float32 precision.
"""

import math

import numpy as np
from numba import config, cuda, float64

from .._dispatch import register
from ._util import TPB, blocks, empty, flat, stream

# threads per block of the per-row / per-channel kernels; a power of two (the merge tree halves it). The simulator
# runs one Python thread per CUDA thread, so it gets a 32-thread block: same code path, a 5-level tree.
NT = 32 if config.ENABLE_CUDASIM else 128


@cuda.jit(device=True)
def _merge_tree(sc, sm, sq, tid):
    """Merge the NT (count, mean, M2) triples in shared memory into slot 0 by Chan's formula; every thread of the
    block calls it, after the slots are written and synchronised."""
    s = NT // 2
    while s > 0:
        if tid < s:
            nb = sc[tid + s]
            if nb > 0:
                na = sc[tid]
                n = na + nb
                d = sm[tid + s] - sm[tid]
                sm[tid] += d * (nb / n)
                sq[tid] += sq[tid + s] + d * d * (na * nb / n)
                sc[tid] = n
        cuda.syncthreads()  # this level's merges are complete before the next level reads their slots
        s //= 2


@cuda.jit(device=True)
def _row_moments(x, r, sc, sm, sq):
    """(mean, M2) in float64 of row r of x (R, K), computed by the whole block; every thread gets the result."""
    tid = cuda.threadIdx.x
    K = x.shape[1]
    pivot = x[r, 0]
    one = x.dtype.type(1)
    cnt = x.dtype.type(0)
    mean = x.dtype.type(0)
    m2 = x.dtype.type(0)
    k = tid
    while k < K:
        u = x[r, k] - pivot
        cnt += one
        d = u - mean
        mean += d / cnt
        m2 += d * (u - mean)
        k += NT
    sc[tid] = cnt
    sm[tid] = mean
    sq[tid] = m2
    cuda.syncthreads()  # every thread's partial statistics are in shared memory before the tree reads them
    _merge_tree(sc, sm, sq, tid)
    res_mean = float64(pivot) + sm[0]
    res_m2 = sq[0]
    cuda.syncthreads()  # every thread has read slot 0 before the caller may reuse the shared arrays
    return res_mean, res_m2


@cuda.jit
def _row_norm_kernel(out, mean_out, m2_out, x, weight, bias, G, Cg, L, eps):
    """Layer / group / instance norm of rows; x, out: (R, K); one block of NT threads per row (grid = R).

    A thread accumulates Welford statistics over k = tid, tid + NT, ...; after the merge tree it normalises the
    same elements: out[r, k] = ((x - m_hi) - m_lo) * rstd * weight[c] + bias[c] with c = (r % G) * Cg + k // L
    (layer norm: G = 1, Cg = K, L = 1; group norm: Cg channels of L values per row). Thread 0 stores the row's
    mean and M2 in mean_out[r], m2_out[r] when those arrays have a slot for it. Works in place (out is x).
    """
    sc = cuda.shared.array(NT, float64)
    sm = cuda.shared.array(NT, float64)
    sq = cuda.shared.array(NT, float64)
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    K = x.shape[1]
    mean, m2 = _row_moments(x, r, sc, sm, sq)
    if tid == 0 and r < mean_out.shape[0]:
        mean_out[r] = mean
        m2_out[r] = m2
    m_hi = x.dtype.type(mean)
    m_lo = x.dtype.type(mean - float64(m_hi))
    rstd = x.dtype.type(1.0 / math.sqrt(m2 / K + eps))
    g = (r % G) * Cg
    k = tid
    while k < K:
        c = g + k // L
        out[r, k] = ((x[r, k] - m_hi) - m_lo) * rstd * weight[c] + bias[c]
        k += NT


@cuda.jit
def _rms_norm_kernel(out, x, weight, eps):
    """out[r, k] = (x[r, k] * rsqrt(mean(x[r]**2) + eps)) * weight[k]; x, out: (M, K); one block of NT threads
    per row: per-thread sums of squares in x's dtype, a float64 shared-memory tree sum, then the scaling."""
    ss = cuda.shared.array(NT, float64)
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    K = x.shape[1]
    acc = x.dtype.type(0)
    k = tid
    while k < K:
        v = x[r, k]
        acc += v * v
        k += NT
    ss[tid] = acc
    cuda.syncthreads()  # every partial sum is in shared memory before the tree reads them
    s = NT // 2
    while s > 0:
        if tid < s:
            ss[tid] += ss[tid + s]
        cuda.syncthreads()  # this level's sums are complete before the next level reads them
        s //= 2
    rs = x.dtype.type(1.0 / math.sqrt(ss[0] / K + eps))
    k = tid
    while k < K:
        out[r, k] = (x[r, k] * rs) * weight[k]
        k += NT


@cuda.jit
def _batch_norm_kernel(out, mean_out, m2_out, x, weight, bias, eps):
    """Training batch norm; x, out: (N, C, L); one block of NT threads per channel c (grid = C).

    A thread accumulates Welford statistics over the channel's flat indices i = tid, tid + NT, ... of N * L
    values; after the merge tree it normalises the same values, (x - m_hi) * scale + shift, and thread 0 stores
    the channel's mean and M2 (for the running statistics).
    """
    sc = cuda.shared.array(NT, float64)
    sm = cuda.shared.array(NT, float64)
    sq = cuda.shared.array(NT, float64)
    c = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    N, C, L = x.shape
    total = N * L
    pivot = x[0, c, 0]
    one = x.dtype.type(1)
    cnt = x.dtype.type(0)
    mean = x.dtype.type(0)
    m2 = x.dtype.type(0)
    i = tid
    while i < total:
        n = i // L
        u = x[n, c, i - n * L] - pivot
        cnt += one
        d = u - mean
        mean += d / cnt
        m2 += d * (u - mean)
        i += NT
    sc[tid] = cnt
    sm[tid] = mean
    sq[tid] = m2
    cuda.syncthreads()  # every thread's partial statistics are in shared memory before the tree reads them
    _merge_tree(sc, sm, sq, tid)
    mu = float64(pivot) + sm[0]
    q = sq[0]
    if tid == 0:
        mean_out[c] = mu
        m2_out[c] = q
    m_hi = x.dtype.type(mu)
    scale = x.dtype.type(weight[c] / math.sqrt(q / total + eps))
    shift = bias[c] - x.dtype.type(mu - float64(m_hi)) * scale
    i = tid
    while i < total:
        n = i // L
        out[n, c, i - n * L] = (x[n, c, i - n * L] - m_hi) * scale + shift
        i += NT


@cuda.jit
def _batch_norm_eval_kernel(out, x, running_mean, running_var, weight, bias, eps):
    """out = (x - rm[c]) * weight[c] / sqrt(rv[c] + eps) + bias[c]; x, out: (N, C, L); one thread per element,
    grid = ceil(N * C * L / TPB) blocks of TPB; arithmetic in x's dtype (eps arrives in it)."""
    i = cuda.grid(1)
    N, C, L = x.shape
    if i < N * C * L:
        l = i % L
        c = (i // L) % C
        n = i // (L * C)
        scale = weight[c] / math.sqrt(running_var[c] + eps)
        out[n, c, l] = (x[n, c, l] - running_mean[c]) * scale + bias[c]


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
def _axpy_kernel(out, x, fx, alpha):
    """out[i] = alpha * x[i] + fx[i] over flat arrays; one thread per element, grid = ceil(M / TPB)."""
    i = cuda.grid(1)
    if i < x.shape[0]:
        out[i] = alpha * x[i] + fx[i]


@cuda.jit
def _dyt_kernel(out, x, alpha, weight, bias):
    """out[r, k] = weight[k] * tanh(alpha[0] * x[r, k]) + bias[k]; x, out: (M, K); one thread per element,
    grid = ceil(M * K / TPB) blocks of TPB."""
    i = cuda.grid(1)
    M, K = x.shape
    if i < M * K:
        r = i // K
        k = i - r * K
        out[r, k] = weight[k] * math.tanh(alpha[0] * x[r, k]) + bias[k]


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


@cuda.jit
def _row_moments_kernel(mean_out, var_out, x):
    """Per-row mean and unbiased variance (float64) of x (R, L); one block of NT threads per row."""
    sc = cuda.shared.array(NT, float64)
    sm = cuda.shared.array(NT, float64)
    sq = cuda.shared.array(NT, float64)
    r = cuda.blockIdx.x
    mean, m2 = _row_moments(x, r, sc, sm, sq)
    if cuda.threadIdx.x == 0:
        mean_out[r] = mean
        var_out[r] = m2 / (x.shape[1] - 1)


@cuda.jit
def _apply_rows_kernel(out, x, center, scale, shift):
    """out[r, l] = (x[r, l] - center[r]) * scale[r] + shift[r]; x, out: (R, L); one thread per element."""
    i = cuda.grid(1)
    R, L = x.shape
    if i < R * L:
        r = i // L
        l = i - r * L
        out[r, l] = (x[r, l] - center[r]) * scale[r] + shift[r]


# ---------------------------------------------------------------------------------------------------------------
# launchers


def _no_stats(out):
    """A zero-length view of ``out``: the row kernels then store no statistics."""
    return flat(out)[:0]


@register("layer_norm", "cuda")
def layer_norm(out, x, weight, bias, eps):
    """x, out: (M, K) rows; weight, bias: (K,)."""
    M, K = x.shape
    _row_norm_kernel[M, NT, stream()](out, _no_stats(out), _no_stats(out), x, weight, bias, 1, K, 1, eps)


@register("deep_norm", "cuda")
def deep_norm(out, x, fx, weight, bias, alpha, eps):
    """x, fx, out: (M, K) rows; weight, bias: (K,). alpha * x + fx goes to out, which is normalised in place."""
    M, K = x.shape
    _axpy_kernel[blocks(M * K), TPB, stream()](flat(out), flat(x), flat(fx), x.dtype.type(alpha))
    _row_norm_kernel[M, NT, stream()](out, _no_stats(out), _no_stats(out), out, weight, bias, 1, K, 1, eps)


@register("rms_norm", "cuda")
def rms_norm(out, x, weight, eps):
    """x, out: (M, K) rows; weight: (K,)."""
    _rms_norm_kernel[x.shape[0], NT, stream()](out, x, weight, eps)


@register("group_norm", "cuda")
def group_norm(out, mean, m2, x, weight, bias, num_groups, eps):
    """x, out: (N, C, L); weight, bias: (C,); mean, m2: (N * num_groups,) statistics per (n, group)."""
    N, C, L = x.shape
    R = N * num_groups
    Cg = C // num_groups
    _row_norm_kernel[R, NT, stream()](out.reshape(R, Cg * L), mean, m2, x.reshape(R, Cg * L), weight, bias, num_groups,
                                      Cg, L, eps)


@register("running_update", "cuda")
def running_update(running, stats, divisor, momentum):
    """running (C,) in place: (1 - momentum) * running + momentum * mean_b(stats[b] / divisor); stats: (B, C)."""
    C = stats.shape[1]
    _running_update_kernel[blocks(C), TPB, stream()](running, stats, float(divisor), float(momentum))


@register("batch_norm", "cuda")
def batch_norm(out, x, weight, bias, running_mean, running_var, training, momentum, eps):
    """x, out: (N, C, L); weight, bias: (C,); running_mean, running_var: (C,) or None, updated in place."""
    N, C, L = x.shape
    if not training:
        _batch_norm_eval_kernel[blocks(N * C * L), TPB, stream()](out, x, running_mean, running_var, weight, bias,
                                                                  x.dtype.type(eps))
        return
    mean = empty((1, C), np.float64)
    m2 = empty((1, C), np.float64)
    _batch_norm_kernel[C, NT, stream()](out, mean.reshape(C), m2.reshape(C), x, weight, bias, eps)
    if running_mean is not None:
        running_update(running_mean, mean, 1.0, momentum)
    if running_var is not None:
        running_update(running_var, m2, N * L - 1.0, momentum)


@register("switch_norm", "cuda")
def switch_norm(out, x, weight, bias, mean_weight, var_weight, running_mean, running_var, training, using_bn,
                momentum, eps):
    """x, out: (N, C, L); weight, bias: (C,); mean_weight, var_weight: (3,) or (2,) logits; running stats (C,) or
    None, updated in place in training. Kernels: IN statistics per row, LN/BN statistics, the mix, the apply."""
    N, C, L = x.shape
    R = N * C
    mean_in = empty((N, C), np.float64)
    var_in = empty((N, C), np.float64)
    _row_moments_kernel[R, NT, stream()](mean_in.reshape(R), var_in.reshape(R), x.reshape(R, L))
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
    _apply_rows_kernel[blocks(R * L), TPB, stream()](out.reshape(R, L), x.reshape(R, L), center, scale, shift)


@register("dyt", "cuda")
def dyt(out, x, alpha, weight, bias):
    """x, out: (M, K); alpha: (1,); weight, bias: (K,)."""
    M, K = x.shape
    _dyt_kernel[blocks(M * K), TPB, stream()](out, x, alpha, weight, bias)
