"""CUDA kernels of the reduction family: block-level shared-memory tree reductions (no warp shuffles).

Every reduction arrives as a C-contiguous (O, R, I) array reduced over R into (O, I) (see nbops/ops/reduction.py).
One block of TX x TY threads (TX * TY = TPB) reduces TX adjacent columns i over one chunk of RC rows: threads along
x read adjacent addresses (coalesced when I > 1; when I == 1, TX = 1 and the TY threads read adjacent elements of
the row). Each thread accumulates rows ty, ty + TY, ... of its chunk in registers, then the TY partial results of
each column are combined by a log2(TY)-level tree in shared memory. Grid: (O * ceil(I / TX), C).

A reduction is split into C > 1 chunks when O * ceil(I / TX) alone gives too few blocks (a full reduction is one
row); the (O, C, I) partials are then merged by a second pass (a second tree pass for sums, one thread per output
for the others), never by atomics, so results do not depend on scheduling.
"""

import math

import numpy as np
from numba import cuda, float64, int64

from .._dispatch import register
from ..cpu.reduction import _as_keys, _key_params
from ._util import TPB as TPB_1D
from ._util import blocks, empty, stream

TPB = 64  # threads per block of the tree kernels (a power of two)
MAX_TX = 32  # most columns one block reduces side by side
TARGET_BLOCKS = 512  # blocks worth having before rows are split into chunks
MIN_PER_THREAD = 16  # fewest rows one thread should accumulate in one chunk


def _geometry(O, R, I):
    """(block, grid, RC, C) for an (O, R, I) reduction: block (TX, TY), grid (O * NB, C), chunks of RC rows."""
    TX = 1
    while TX < I and TX < MAX_TX:
        TX *= 2
    TY = TPB // TX
    NB = -(-I // TX)
    C = max(1, min(-(-TARGET_BLOCKS // (O * NB)), math.ceil(R / (TY * MIN_PER_THREAD))))
    RC = max(-(-R // C), 2)  # at least 2 rows a chunk, so that every merge pass shrinks R
    C = -(-R // RC)
    return (TX, TY), (O * NB, C), RC, C


@cuda.jit(device=True)
def _column_task(I, R, RC):
    """This thread's share of a column kernel (block (TX, TY), grid (O * ceil(I / TX), C)): ``(o, i, c, r0, r1,
    slot)``, the outer index o, the column i (past I in a ragged last block: guard it), the chunk c of rows
    [r0, r1) of R, and the thread's shared-memory slot ty * TX + tx."""
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    TX = cuda.blockDim.x
    NB = (I + TX - 1) // TX
    o = cuda.blockIdx.x // NB
    i = (cuda.blockIdx.x - o * NB) * TX + tx
    c = cuda.blockIdx.y
    r0 = c * RC
    return o, i, c, r0, min(r0 + RC, R), ty * TX + tx


@cuda.jit
def _sum_kernel(part, x, RC, is_prod, div):
    """part[o, c, i] = sum (product when ``is_prod``) of x[o, c*RC:(c+1)*RC, i], divided by ``div`` when it is not
    1; x: (O, R, I), part: (O, C, I), accumulator dtype = x's (float32, float64, int64).

    Block (TX, TY), grid (O * ceil(I / TX), C): thread (tx, ty) accumulates rows ty, ty + TY, ... of its chunk for
    column i = block's first column + tx; a shared-memory tree over ty combines them.
    """
    sm = cuda.shared.array(TPB, dtype=x.dtype)
    O, R, I = x.shape
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    TX, TY = cuda.blockDim.x, cuda.blockDim.y
    o, i, c, r0, r1, slot = _column_task(I, R, RC)
    sm[slot] = 1 if is_prod else 0
    acc = sm[slot]
    if i < I:
        for r in range(r0 + ty, r1, TY):
            if is_prod:
                acc = acc * x[o, r, i]
            else:
                acc = acc + x[o, r, i]
    sm[slot] = acc
    cuda.syncthreads()  # every thread's partial is in shared memory before the tree reads it
    s = TY // 2
    while s > 0:
        if ty < s:
            if is_prod:
                sm[slot] = sm[slot] * sm[slot + s * TX]
            else:
                sm[slot] = sm[slot] + sm[slot + s * TX]
        cuda.syncthreads()  # this level is complete before the next one reads it
        s //= 2
    if ty == 0 and i < I:
        if div != 1:
            part[o, c, i] = sm[tx] / div
        else:
            part[o, c, i] = sm[tx]


def _tree(kernel, out, x, *args, div=1):
    """Run a sum-like tree kernel over x (O, R, I) into out (O, I), merging chunk partials by further passes."""
    O, R, I = x.shape
    while True:
        block, grid, RC, C = _geometry(O, R, I)
        part = out.reshape(O, 1, I) if C == 1 else empty((O, C, I), x.dtype)
        kernel[grid, block, stream()](part, x, RC, *args, div if C == 1 else 1)
        if C == 1:
            return
        x, R = part, C


@register("sum", "cuda")
def reduce_sum(out, x, div=1):
    """out (O, I) = sum of x (O, R, I) over R, divided by ``div`` when it is not 1 (mean)."""
    _tree(_sum_kernel, out, x, False, div=div)


@register("prod", "cuda")
def reduce_prod(out, x):
    """out (O, I) = product of x (O, R, I) over R."""
    _tree(_sum_kernel, out, x, True)


@cuda.jit
def _var_kernel(pmean, pm2, x, RC):
    """pmean[o, c, i], pm2[o, c, i] = mean and sum of squared deviations of x[o, c*RC:(c+1)*RC, i]; x: (O, R, I),
    pmean, pm2: (O, C, I) float64.

    Block (TX, TY), grid (O * ceil(I / TX), C): each thread runs Welford's update over rows ty, ty + TY, ... in
    float64; the tree over ty merges (count, mean, M2) triples by Chan's formula.
    """
    sn = cuda.shared.array(TPB, dtype=float64)
    smu = cuda.shared.array(TPB, dtype=float64)
    sm2 = cuda.shared.array(TPB, dtype=float64)
    O, R, I = x.shape
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    TX, TY = cuda.blockDim.x, cuda.blockDim.y
    o, i, c, r0, r1, slot = _column_task(I, R, RC)
    n = 0.0
    mu = 0.0
    m2 = 0.0
    if i < I:
        for r in range(r0 + ty, r1, TY):
            v = float64(x[o, r, i])
            n += 1.0
            d = v - mu
            mu += d / n
            m2 += d * (v - mu)
    sn[slot] = n
    smu[slot] = mu
    sm2[slot] = m2
    cuda.syncthreads()  # every thread's (count, mean, M2) is in shared memory before the tree reads it
    s = TY // 2
    while s > 0:
        if ty < s:
            j = slot + s * TX
            nb = sn[j]
            if nb > 0:
                na = sn[slot]
                tot = na + nb
                d = smu[j] - smu[slot]
                smu[slot] += d * (nb / tot)
                sm2[slot] += sm2[j] + d * d * (na * nb / tot)
                sn[slot] = tot
        cuda.syncthreads()  # this level is complete before the next one reads it
        s //= 2
    if ty == 0 and i < I:
        pmean[o, c, i] = smu[tx]
        pm2[o, c, i] = sm2[tx]


@cuda.jit
def _var_merge_kernel(var, mean, pmean, pm2, RC, R, denom, take_sqrt):
    """var[o, i] = M2 / denom (its square root when ``take_sqrt``), mean[o, i] = mean, from the chunk statistics
    pmean, pm2: (O, C, I) float64 of chunks of RC rows (the last one shorter), merged in order by Chan's formula;
    var, mean: (O, I). One thread per output element; grid = ceil(O * I / TPB) blocks."""
    t = cuda.grid(1)
    O, C, I = pmean.shape
    if t < O * I:
        o = t // I
        i = t - o * I
        n = float64(min(RC, R))
        mu = pmean[o, 0, i]
        m2 = pm2[o, 0, i]
        for c in range(1, C):
            nb = float64(min(RC, R - c * RC))
            tot = n + nb
            d = pmean[o, c, i] - mu
            mu += d * (nb / tot)
            m2 += pm2[o, c, i] + d * d * (n * nb / tot)
            n = tot
        v = m2 / denom
        var[o, i] = math.sqrt(v) if take_sqrt else v
        mean[o, i] = mu


@register("var_mean", "cuda")
def reduce_var_mean(var, mean, x, correction=1, take_sqrt=False):
    """var, mean (O, I) of x (O, R, I) over R (R > 0); var = M2 / max(0, R - correction), sqrt when ``take_sqrt``."""
    O, R, I = x.shape
    block, grid, RC, C = _geometry(O, R, I)
    pmean = empty((O, C, I), np.float64)
    pm2 = empty((O, C, I), np.float64)
    _var_kernel[grid, block, stream()](pmean, pm2, x, RC)
    _var_merge_kernel[blocks(O * I, TPB_1D), TPB_1D, stream()](var.reshape(O, I), mean.reshape(O, I), pmean, pm2, RC, R,
                                                               float(max(0, R - correction)), take_sqrt)


@cuda.jit(device=True)
def _key(v, mask, fix, flip, thresh, sh, nankey):
    """Order-preserving integer key of one element (see nbops/cpu/reduction.py, ``_key``)."""
    k = v ^ ((v >> sh) & mask)
    k = k + ((k >> sh) & fix)
    k = k ^ flip
    return nankey if (v & mask) > thresh else k


@cuda.jit
def _argmax_kernel(pidx, x, RC, mask, fix, flip, thresh, sh, nankey):
    """pidx[o, c, i] = index along R of the first largest key in x[o, c*RC:(c+1)*RC, i]; x: (O, R, I) integer keys'
    source (float bits viewed as int32/int64, or int64 values), pidx: (O, C, I) int64.

    Block (TX, TY), grid (O * ceil(I / TX), C): each thread keeps the first best (key, row) of rows ty, ty + TY, ...;
    the tree over ty keeps the larger key, and of equal keys the smaller row, so the first index wins.
    """
    sk = cuda.shared.array(TPB, dtype=x.dtype)
    si = cuda.shared.array(TPB, dtype=int64)
    O, R, I = x.shape
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    TX, TY = cuda.blockDim.x, cuda.blockDim.y
    o, i, c, r0, r1, slot = _column_task(I, R, RC)
    sk[slot] = 0
    bk = sk[slot]
    bi = -1
    if i < I:
        for r in range(r0 + ty, r1, TY):
            k = _key(x[o, r, i], mask, fix, flip, thresh, sh, nankey)
            if bi < 0 or k > bk:
                bk = k
                bi = r
    sk[slot] = bk
    si[slot] = bi
    cuda.syncthreads()  # every thread's best (key, row) is in shared memory before the tree reads it
    s = TY // 2
    while s > 0:
        if ty < s:
            j = slot + s * TX
            bj = si[j]
            if bj >= 0:
                ba = si[slot]
                kj = sk[j]
                ka = sk[slot]
                if ba < 0 or kj > ka or (kj == ka and bj < ba):
                    sk[slot] = kj
                    si[slot] = bj
        cuda.syncthreads()  # this level is complete before the next one reads it
        s //= 2
    if ty == 0 and i < I:
        pidx[o, c, i] = si[tx]


@cuda.jit
def _argmax_merge_kernel(vals, idx, pidx, x, mask, fix, flip, thresh, sh, nankey):
    """idx[o, i] = the first best of the chunk winners pidx[o, :, i] (chunks in order), vals[o, i] = x[o, idx, i];
    x: (O, R, I), pidx: (O, C, I), vals: (O, I) of x's dtype, idx: (O, I) int64. One thread per output element;
    grid = ceil(O * I / TPB) blocks."""
    t = cuda.grid(1)
    O, C, I = pidx.shape
    if t < O * I:
        o = t // I
        i = t - o * I
        bi = pidx[o, 0, i]
        bk = _key(x[o, bi, i], mask, fix, flip, thresh, sh, nankey)
        for c in range(1, C):
            r = pidx[o, c, i]
            k = _key(x[o, r, i], mask, fix, flip, thresh, sh, nankey)
            if k > bk:
                bk = k
                bi = r
        idx[o, i] = bi
        vals[o, i] = x[o, bi, i]


@register("argmax", "cuda")
def reduce_argmax(vals, idx, x, is_min=False):
    """idx (O, I) int64 = first index along R of the max (min when ``is_min``) of x (O, R, I), NaN first; vals
    (O, I) = the values there. R > 0."""
    O, R, I = x.shape
    p = tuple(int(v) for v in _key_params(x.dtype, is_min))
    xk = _as_keys(x)
    block, grid, RC, C = _geometry(O, R, I)
    pidx = empty((O, C, I), np.int64)
    _argmax_kernel[grid, block, stream()](pidx, xk, RC, *p)
    _argmax_merge_kernel[blocks(O * I, TPB_1D), TPB_1D, stream()](_as_keys(vals).reshape(O, I), idx.reshape(O, I),
                                                                  pidx, xk, *p)


@register("amax", "cuda")
def reduce_amax(out, x, is_min=False):
    """out (O, I) = max (min when ``is_min``) of x (O, R, I) over R, NaN if any (R > 0): the argmax kernels' values,
    their indices left in a scratch array."""
    reduce_argmax(out, empty(tuple(out.shape), np.int64), x, is_min)


@cuda.jit(device=True)
def _eff(m):
    """The shift logsumexp subtracts: the max itself, or 0 when it is infinite or NaN (as torch does)."""
    return m if abs(m) < math.inf else 0.0


@cuda.jit
def _lse_kernel(pm, ps, x, RC):
    """pm[o, c, i] = max and ps[o, c, i] = sum(exp(x - _eff(max))) of x[o, c*RC:(c+1)*RC, i]; x: (O, R, I) float,
    pm, ps: (O, C, I) float64.

    Block (TX, TY), grid (O * ceil(I / TX), C): a max tree over ty, then every thread sums the exps of its rows
    against the block's max (float64) and a sum tree combines them. NaN flows through the sums.
    """
    sv = cuda.shared.array(TPB, dtype=float64)
    O, R, I = x.shape
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    TX, TY = cuda.blockDim.x, cuda.blockDim.y
    o, i, c, r0, r1, slot = _column_task(I, R, RC)
    m = -math.inf
    if i < I:
        for r in range(r0 + ty, r1, TY):
            v = float64(x[o, r, i])
            if v > m:
                m = v
    sv[slot] = m
    cuda.syncthreads()  # every thread's max is in shared memory before the max tree reads it
    s = TY // 2
    while s > 0:
        if ty < s and sv[slot + s * TX] > sv[slot]:
            sv[slot] = sv[slot + s * TX]
        cuda.syncthreads()  # this level is complete before the next one reads it
        s //= 2
    mx = sv[tx]
    cuda.syncthreads()  # every thread has read the column max before the slots are reused for sums
    shift = _eff(mx)
    acc = 0.0
    if i < I:
        for r in range(r0 + ty, r1, TY):
            acc += math.exp(float64(x[o, r, i]) - shift)
    sv[slot] = acc
    cuda.syncthreads()  # every thread's sum is in shared memory before the sum tree reads it
    s = TY // 2
    while s > 0:
        if ty < s:
            sv[slot] = sv[slot] + sv[slot + s * TX]
        cuda.syncthreads()  # this level is complete before the next one reads it
        s //= 2
    if ty == 0 and i < I:
        pm[o, c, i] = mx
        ps[o, c, i] = sv[tx]


@cuda.jit
def _lse_merge_kernel(out, pm, ps):
    """out[o, i] = log(sum) + shift of the merged chunk pairs pm, ps: (O, C, I) float64, each sum taken against its
    own chunk's shift and rescaled to the common one; out: (O, I). One thread per output element."""
    t = cuda.grid(1)
    O, C, I = pm.shape
    if t < O * I:
        o = t // I
        i = t - o * I
        mx = pm[o, 0, i]
        for c in range(1, C):
            if pm[o, c, i] > mx:
                mx = pm[o, c, i]
        e = _eff(mx)
        s = 0.0
        for c in range(C):
            sc = ps[o, c, i]
            if sc != 0:
                s += sc * math.exp(_eff(pm[o, c, i]) - e)
        out[o, i] = math.log(s) + e if s > 0 else (-math.inf if s == 0 else s)


@register("logsumexp", "cuda")
def reduce_logsumexp(out, x):
    """out (O, I) = log(sum(exp(x))) of x (O, R, I) over R (R > 0), shifted by the max as torch does."""
    O, R, I = x.shape
    block, grid, RC, C = _geometry(O, R, I)
    pm = empty((O, C, I), np.float64)
    ps = empty((O, C, I), np.float64)
    _lse_kernel[grid, block, stream()](pm, ps, x, RC)
    _lse_merge_kernel[blocks(O * I, TPB_1D), TPB_1D, stream()](out.reshape(O, I), pm, ps)
