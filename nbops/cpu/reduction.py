"""CPU kernels of the reduction family.

Every reduction arrives canonical: a C-contiguous ``x`` of shape (O, R, I) reduced over its middle axis into an
(O, I) output. Two layouts, two kernels per op:

* rows (I == 1, the reduced axis is the contiguous last one): one prange task reduces one row, or one chunk of
  ``L`` elements of a row when there are too few rows to keep every thread busy (a full reduction is one row).
  The row is walked in leaves (SUM_BLOCK elements for sums, cache-resident BLOCKs for the two-pass reductions);
  each leaf is one vectorised loop, and leaves are combined pairwise (sums) or by Chan's merge (variances).
* columns (I > 1, reducing over an outer axis): one task accumulates the rows of one chunk of ``RC`` rows of
  ``x[o, :, i0:i0 + IB]`` into 1-D accumulators of IB elements (cache-resident), so the loads and the arithmetic
  run along the contiguous inner axis and whole rows stream sequentially (narrower blocks of wide rows touch a new
  page every few KiB and measured 2-3x slower). Tasks split the inner blocks *and* the rows, so every thread works
  even when O == 1.

Whenever a row or a column was split into C > 1 chunks, the launcher merges the (O, C, I) partial results with a
second, small pass. Nothing copies the input.

Values-only extremes (max and min without dim, amax, amin) keep running extremes and the last NaN seen in
LANES-wide register lanes (``_run_extreme``), merged at the end with LLVM's NaN-propagating ``maximum`` /
``minimum``; the column kernels reduce with those directly. Reductions that return indices (max and min with
dim, argmax, argmin) run on integer *keys*: the launcher reinterprets float32 (float64) data as int32 (int64)
without copying, and ``_key`` maps each bit pattern to an integer whose signed order
is the float order (-0.0 and 0.0 share a key, NaN gets the largest key so that it wins and the first NaN stays),
optionally flipped for min. Integer max reductions vectorise; float ones with NaN semantics do not. A row's
argmax is one pass of LANES register lanes, each holding its best key and the block it came from
(``_run_argmax``); the values come out with the indices.
"""

import math

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .._dispatch import register
from ._util import run_parallel, stack_empty, wide_vectors

BLOCK = 2048  # elements of one leaf of a row: the unit of one vectorised loop (8 KiB of float32, L1-resident)
SUM_BLOCK = 16384  # elements of one leaf of a row sum: each leaf restart (loop prologue, horizontal add, cascade)
# cost ~15% of a DRAM-bound 4096 x 4096 row sum at 2048; each of the 64 vector lanes adds 256 elements in sequence
IB = 4096  # inner elements one column task accumulates: whole rows of up to 16 KiB (float32) stream sequentially
GROUP = 64  # rows summed into a group accumulator before it joins the running total (blocked summation)
LSE_GROUP = 16  # rows of a column logsumexp whose max is found before their exps are summed (they stay in L2)
TASKS_PER_THREAD = 4  # prange tasks per thread when a row or a column is split into chunks
MIN_CHUNK = 32768  # fewest elements worth a task of their own when rows are split
MAX_RC = 65536  # most rows one column task sums (bounds the blocked sum's error)
LANES = 64  # register lanes of ``_run_extreme`` and ``_run_argmax``: 8 vectors of float32 on AVX2, 4 on AVX-512
ROWS_SERIAL_BELOW = 8192  # elements below which a rows kernel runs its serial twin (``run_parallel``), and
COLS_SERIAL_BELOW = 32768  # a columns kernel. Rows of 64 float32, us per call, serial twin / both threads, idle
# 2-core host (2026-12-07): sum 4 Ki 5.7 / 6.0, 8 Ki 7.9 / 6.7, 16 Ki 12.0 / 8.1; argmax 4 Ki 26.6 / 25.5, 8 Ki
# 34.2 / 29.3; logsumexp 8 Ki 30.5 / 28.8; var 16 Ki 30.0 / 28.5; the columns sum of the same 8 Ki 5.9 / 7.4,
# 32 Ki 8.7 / 9.3

_OPTS = dict(cache=True, error_model="numpy")


# ---------------------------------------------------------------------------------------------------------------
# typed helpers


def _cast(v, a):
    """``v`` converted to the element type of array ``a``, or to the type of scalar ``a`` (in jitted code)."""


@overload(_cast)
def _cast_impl(v, a):
    dt = a.dtype if isinstance(a, types.Array) else a

    def impl(v, a):
        return dt(v)

    return impl


@intrinsic
def _int_bits_as_float(typingctx, k):
    """The float whose bit pattern is the int32 (int64) ``k``: a register bitcast, no memory traffic."""
    if k == types.int32:
        sig, llty = types.float32(k), ir.FloatType()
    elif k == types.int64:
        sig, llty = types.float64(k), ir.DoubleType()
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llty)

    return sig, codegen


_F32 = np.float32
_LOG2E = _F32(1.44269504088896341)
_LN2_HI = _F32(0.693359375)
_LN2_LO = _F32(-2.12194440e-4)
_EXP_HI = _F32(88.7)
_EXP_LO = _F32(-87.3)
_HALF = _F32(0.5)
_ONE = _F32(1.0)
_ZERO32 = _F32(0.0)
_INF32 = _F32(np.inf)
_P0, _P1, _P2 = _F32(1.9875691500e-4), _F32(1.3981999507e-3), _F32(8.3334519073e-3)
_P3, _P4, _P5 = _F32(4.1665795894e-2), _F32(1.6666665459e-1), _F32(5.0000001201e-1)
_BIAS = np.int32(127)
_MANT = np.int32(23)


def _exp(v):
    """exp(v) in v's precision (in jitted code): a vectorisable polynomial for float32, libm for float64."""


@overload(_exp)
def _exp_impl(v):
    if v == types.float32:

        def impl(v):
            # exp(v) = 2**n * exp(r), n = round(v / ln2), |r| <= ln2 / 2; degree-6 minimax polynomial for exp(r)
            # (Cephes' expf coefficients, ~1 ulp); 2**n is applied as two normal powers of two built from their
            # bits. Clamping keeps both normal; the selects after it restore
            # overflow (inf), underflow (0, flushing results below 1e-38) and NaN. All branch-free, so it vectorises.
            c = v if v < _EXP_HI else _EXP_HI
            c = c if c > _EXP_LO else _EXP_LO
            n = np.floor(c * _LOG2E + _HALF)
            r = c - n * _LN2_HI - n * _LN2_LO
            p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
            e = p * r * r + r + _ONE
            ni = np.int32(n)
            h = np.int32(ni >> np.int32(1))
            y = e * _int_bits_as_float(np.int32((h + _BIAS) << _MANT))
            y = y * _int_bits_as_float(np.int32((ni - h + _BIAS) << _MANT))
            y = _INF32 if v > _EXP_HI else y
            y = _ZERO32 if v < _EXP_LO else y
            return v if v != v else y

        return impl
    if v == types.float64:
        return lambda v: math.exp(v)
    return None


def _scaled(s, div):
    """``s / div`` in s's precision when ``div`` is not 1 (the sums of a mean); integer sums are never divided."""


@overload(_scaled)
def _scaled_impl(s, div):
    if isinstance(s, types.Integer):
        return lambda s, div: s

    def impl(s, div):
        return s / _cast(div, s) if div != 1 else s

    return impl


@njit(inline="always")
def _key(v, mask, fix, flip, thresh, nankey):
    """Order-preserving integer key of one element (see the module docstring).

    Floats (v is the bit pattern): negative patterns get their magnitude bits flipped (``mask``) so that signed
    integer order is float order, then shift up by one (``fix``) so -0.0 meets 0.0; ``flip`` = -1 reverses the order
    (min); a NaN (magnitude bits above ``thresh``) gets ``nankey``, the largest key. Integers: mask = fix = 0, so the
    key is the value (flipped for min) and nothing is NaN. Every step stays in v's width (numba would widen int32
    arithmetic to int64 and halve the vector lanes), and the sign comes from a compare, not ``v >> 31``: numba
    shifts int32 by a variable amount in int64, which cost the argmax rows kernel half its speed.
    """
    neg = _cast(-(v < 0), v)  # all ones where v's sign bit is set
    k = _cast((v ^ (neg & mask)) + (neg & fix), v)
    k = _cast(k ^ flip, v)
    return nankey if _cast(v & mask, v) > thresh else k


@njit(inline="always")
def _eff(m):
    """The shift logsumexp subtracts: the max itself, or 0 when it is infinite or NaN (as torch does)."""
    return m if abs(m) < np.inf else 0.0


def _threads():
    """The threads numba started (NUMBA_NUM_THREADS), which bounds set_num_threads: the chunk counts depend on it
    alone, so results do not change with set_num_threads, and no call asks numba for the current count (its Python
    function takes two locks; its compiled one cannot be cached)."""
    return numba.config.NUMBA_NUM_THREADS


def _row_chunks(M, R):
    """(L, C): rows of R elements split into C chunks of L elements so that M * C tasks keep the threads busy."""
    want = TASKS_PER_THREAD * _threads()
    if M >= want or R < 2 * MIN_CHUNK:
        return max(R, 1), 1
    C = min(-(-want // M), R // MIN_CHUNK)
    L = -(-(-(-R // C)) // BLOCK) * BLOCK
    return L, -(-R // L)


def _col_chunks(O, R, I):
    """(RC, C): the R rows of a column reduction split into C chunks of RC rows (see the module docstring)."""
    tasks = O * (-(-I // IB))
    C = max(1, min(-(-TASKS_PER_THREAD * _threads() // tasks), R // GROUP), -(-R // MAX_RC))
    RC = max(-(-R // C), 1)
    return RC, -(-R // RC)


# ---------------------------------------------------------------------------------------------------------------
# sum and prod


@njit(fastmath={"reassoc"}, **_OPTS)
def _leaf_sum2(a, b, zero):
    """sum(a) + sum(b) for equally long a and b in a's dtype, in one loop: two memory streams per core (one core on
    a 16 MiB L3-resident row: 115 -> 129 GB/s); reassociation lets LLVM keep several vector accumulators for each."""
    s = zero
    t = zero
    for i in range(a.shape[0]):
        s += a[i]
        t += b[i]
    return s + t


@njit(fastmath={"reassoc"}, **_OPTS)
def _leaf_sum(seg, zero):
    """sum(seg) in seg's dtype, one loop (the L1-resident leaves of the variance, whose mean it estimates)."""
    s = zero
    for i in range(seg.shape[0]):
        s += seg[i]
    return s


@njit(**_OPTS)
def _pairwise_sum(row, lo, hi, stack):
    """Sum of row[lo:hi] from leaves of SUM_BLOCK elements combined pairwise: a binary-counter cascade (``stack``
    holds one partial per level) only ever adds two sums over equally many leaves, so the error grows with
    log2(leaves). Leaf k pairs the k-th SUM_BLOCK/2 elements of each half of the range, so that each half is one
    long sequential stream for the prefetchers (contiguous leaves, each split in two, cost 8-10% in restarted
    streams on a DRAM-bound full sum); an odd length's last element joins at the end. A range of at most one leaf
    is one plain loop: the two half-streams of short rows (4096^2 float32 summed along dim 1, AMD EPYC host, two
    same-process runs) took 1.22 / 1.86-1.92 ms against 0.62-0.66 / 1.33-1.46 for the plain loop (torch 0.70-0.73 /
    1.32-1.40)."""
    zero = _cast(0, stack)
    m = hi - lo
    if m <= SUM_BLOCK:
        return _leaf_sum(row[lo:hi], zero)
    h = m // 2
    b = SUM_BLOCK // 2
    n = 0
    for a in range(lo, lo + h, b):
        e = min(a + b, lo + h)
        s = _leaf_sum2(row[a:e], row[a + h:e + h], zero)
        k = n
        lvl = 0
        while k & 1:
            s = stack[lvl] + s
            k >>= 1
            lvl += 1
        stack[lvl] = s
        n += 1
    total = zero
    lvl = 0
    while n:
        if n & 1:
            total = stack[lvl] + total
        n >>= 1
        lvl += 1
    return total + row[hi - 1] if m & 1 else total


@njit(parallel=True, **_OPTS)
def _sum_rows_kernel(part, x, L, div):
    """part[m, c] = sum(x[m, c*L:(c+1)*L]) / div; x: (M, R), part: (M, C), accumulator dtype = part's (float32,
    float64, int64); ``div`` is 1 except for a mean whose rows are not split (C == 1).

    One prange iteration: one (row, chunk) pair, summed pairwise over SUM_BLOCK-element vectorised leaves (two
    memory streams each). The cascade's stack lives on the thread's stack: a heap array per iteration (np.empty)
    cost 0.3 ms of a 1.8 ms 4096 x 4096 row sum in allocator traffic.
    """
    M, R = x.shape
    C = part.shape[1]
    for t in prange(M * C):
        m = t // C
        c = t - m * C
        lo = c * L
        stack = stack_empty(64, part)
        part[m, c] = _scaled(_pairwise_sum(x[m], lo, min(lo + L, R), stack), div)


@njit(inline="always")
def _col_task(t, C, NB, I, R, RC):
    """Column task t of the O * C * NB tasks every ``*_cols`` kernel splits (O, R, I) into: (o, row chunk c, inner
    block start i0, its width w, rows r0:r1), for row chunks of RC rows and inner blocks of IB elements."""
    o = t // (C * NB)
    rem = t - o * C * NB
    c = rem // NB
    i0 = (rem - c * NB) * IB
    r0 = c * RC
    return o, c, i0, min(IB, I - i0), r0, min(r0 + RC, R)


@njit(parallel=True, **_OPTS)
def _sum_cols_kernel(part, x, RC, div):
    """part[o, c, i] = sum(x[o, c*RC:(c+1)*RC, i]) / div; x: (O, R, I), part: (O, C, I), accumulator dtype =
    part's; ``div`` is 1 except for a mean whose rows are not split (C == 1).

    One prange iteration: one (o, row chunk, inner block of IB) triple; rows are added along the inner axis into a
    group accumulator that joins the running total every GROUP rows (blocked summation: error ~ GROUP + RC/GROUP).
    """
    O, R, I = x.shape
    C = part.shape[1]
    NB = (I + IB - 1) // IB
    for t in prange(O * C * NB):
        o, c, i0, w, r0, r1 = _col_task(t, C, NB, I, R, RC)
        tot = np.zeros(w, part.dtype)
        grp = np.zeros(w, part.dtype)
        for r in range(r0, r1):
            seg = x[o, r, i0:i0 + w]
            for j in range(w):
                grp[j] += seg[j]
            if (r - r0) % GROUP == GROUP - 1:
                for j in range(w):
                    tot[j] += grp[j]
                    grp[j] = 0
        dst = part[o, c, i0:i0 + w]
        for j in range(w):
            dst[j] = _scaled(tot[j] + grp[j], div)


@njit(fastmath={"reassoc"}, **_OPTS)
def _leaf_prod(seg, one):
    p = one
    for i in range(seg.shape[0]):
        p *= seg[i]
    return p


@njit(parallel=True, **_OPTS)
def _prod_rows_kernel(part, x, L, div):
    """part[m, c] = prod(x[m, c*L:(c+1)*L]); x: (M, R), part: (M, C); ``div`` (always 1) keeps the sum kernels'
    signature. One prange iteration: one (row, chunk) pair, one vectorised loop; accumulator dtype = part's."""
    M, R = x.shape
    C = part.shape[1]
    for t in prange(M * C):
        m = t // C
        c = t - m * C
        lo = c * L
        part[m, c] = _leaf_prod(x[m, lo:min(lo + L, R)], _cast(1, part))


@njit(parallel=True, **_OPTS)
def _prod_cols_kernel(part, x, RC, div):
    """part[o, c, i] = prod(x[o, c*RC:(c+1)*RC, i]); x: (O, R, I), part: (O, C, I); ``div`` as in
    ``_prod_rows_kernel``. One prange iteration: one (o, row chunk, inner block) triple, multiplying rows into a 1-D
    accumulator along the inner axis."""
    O, R, I = x.shape
    C = part.shape[1]
    NB = (I + IB - 1) // IB
    for t in prange(O * C * NB):
        o, c, i0, w, r0, r1 = _col_task(t, C, NB, I, R, RC)
        acc = np.ones(w, part.dtype)
        for r in range(r0, r1):
            seg = x[o, r, i0:i0 + w]
            for j in range(w):
                acc[j] *= seg[j]
        part[o, c, i0:i0 + w] = acc


@njit(**_OPTS)
def _merge_kernel(out, part, div, is_prod):
    """out[o, i] = sum (product when ``is_prod``) of the chunk partials part[o, :, i], divided by ``div`` when it
    is not 1; part: (O, C, I), out: (O, I). The partials are combined pairwise in place (a tree over c: chunks c and
    c + step join for step = 1, 2, 4, ...), each level a loop along the contiguous inner axis. Serial: it touches
    only the small partials, and a second parallel region would cost more to start than it saves."""
    O, C, I = part.shape
    step = 1
    while step < C:
        for o in range(O):
            for c in range(0, C - step, 2 * step):
                a = part[o, c]
                b = part[o, c + step]
                for i in range(I):
                    a[i] = a[i] * b[i] if is_prod else a[i] + b[i]
        step *= 2
    for o in range(O):
        for i in range(I):
            out[o, i] = _scaled(part[o, 0, i], div)


@njit(**_OPTS)
def _sum_rows_split(out, x, L, C, div):
    """out[m, 0] = sum of row m of x (M, R) split into C > 1 chunks of L elements, / div: ``_sum_rows_kernel`` into
    fresh (M, C) partials, then ``_merge_kernel``. One compiled call where the launcher would allocate and dispatch
    twice (~8 us of a 20 us fixed cost)."""
    M = x.shape[0]
    part = np.empty((M, C), out.dtype)
    _sum_rows_kernel(part, x, L, 1)
    _merge_kernel(out, part.reshape((M, C, 1)), div, False)


@njit(**_OPTS)
def _prod_rows_split(out, x, L, C, div):
    """As ``_sum_rows_split`` for products."""
    M = x.shape[0]
    part = np.empty((M, C), out.dtype)
    _prod_rows_kernel(part, x, L, 1)
    _merge_kernel(out, part.reshape((M, C, 1)), div, True)


def _reduce(kernels, out, x, param, split_param, merge_args):
    """Run a reduction of x (O, R, I) into out (O, I) with ``kernels`` = (rows, rows_split, cols, merge): one chunked
    parallel pass (the kernel's serial twin below ROWS_SERIAL_BELOW / COLS_SERIAL_BELOW elements), writing ``out``
    itself when nothing was split (C == 1), else partials (the columns kernel then gets ``split_param`` instead of
    ``param``) that ``merge(out, partials, *merge_args)`` combines. No NumPy call on the way: each one costs tens
    of microseconds when its code is not in cache."""
    rows_kernel, rows_split, cols_kernel, merge = kernels
    O, R, I = x.shape
    if I == 1:
        L, C = _row_chunks(O, R)
        if C == 1:
            run_parallel(rows_kernel, x.size, out.reshape(O, 1), x.reshape(O, R), L, param, below=ROWS_SERIAL_BELOW)
        else:
            rows_split(out.reshape(O, 1), x.reshape(O, R), L, C, param)
        return
    RC, C = _col_chunks(O, R, I)
    part = out.reshape(O, 1, I) if C == 1 else np.empty((O, C, I), out.dtype)
    run_parallel(cols_kernel, x.size, part, x, RC, param if C == 1 else split_param, below=COLS_SERIAL_BELOW)
    if C > 1:
        merge(out.reshape(O, I), part.reshape(O, C, I), *merge_args)


@register("sum", "cpu")
def reduce_sum(out, x, div=1):
    """out (O, I) = sum of x (O, R, I) over R, divided by ``div`` when it is not 1 (mean); dtypes float32, float64,
    int64 (out has x's dtype)."""
    _reduce((_sum_rows_kernel, _sum_rows_split, _sum_cols_kernel, _merge_kernel), out, x, div, 1, (div, False))


@register("prod", "cpu")
def reduce_prod(out, x):
    """out (O, I) = product of x (O, R, I) over R; dtypes float32, float64, int64 (out has x's dtype)."""
    _reduce((_prod_rows_kernel, _prod_rows_split, _prod_cols_kernel, _merge_kernel), out, x, 1, 1, (1, True))


# ---------------------------------------------------------------------------------------------------------------
# var / std / var_mean / std_mean


@njit(fastmath={"reassoc"}, **_OPTS)
def _leaf_shifted(seg, mu, zero):
    """(sum(seg - mu), sum((seg - mu)**2)) in seg's dtype, one vectorised pass."""
    s = zero
    q = zero
    for i in range(seg.shape[0]):
        d = seg[i] - mu
        s += d
        q += d * d
    return s, q


@njit(parallel=True, **_OPTS)
def _var_rows_kernel(pmean, pm2, x, L):
    """pmean[m, c], pm2[m, c] = mean and sum of squared deviations of x[m, c*L:(c+1)*L]; x: (M, R); pmean, pm2:
    (M, C) float64.

    One prange iteration: one (row, chunk) pair. Each BLOCK-element leaf is summed around the float32 (float64)
    value ``mu`` of its own mean estimate (shifted data, so no cancellation even at mean 1e4, std 1), giving its
    exact mean and M2; leaves join the chunk's running (count, mean, M2) by Chan's merge in float64.
    """
    M, R = x.shape
    C = pmean.shape[1]
    for t in prange(M * C):
        m = t // C
        c = t - m * C
        row = x[m]
        lo = c * L
        hi = min(lo + L, R)
        n = 0.0
        mean = 0.0
        m2 = 0.0
        for a in range(lo, hi, BLOCK):
            seg = row[a:min(a + BLOCK, hi)]
            nb = seg.shape[0]
            mu = _cast(_leaf_sum(seg, _cast(0, seg)) / nb, seg)
            s, q = _leaf_shifted(seg, mu, _cast(0, seg))
            bmean = mu + s / nb
            bm2 = q - s * (s / nb)
            tot = n + nb
            d = bmean - mean
            mean += d * (nb / tot)
            m2 += bm2 + d * d * (n * nb / tot)
            n = tot
        pmean[m, c] = mean
        pm2[m, c] = m2


@njit(parallel=True, **_OPTS)
def _var_cols_kernel(pmean, pm2, x, RC):
    """pmean[o, c, i], pm2[o, c, i] = mean and sum of squared deviations of x[o, c*RC:(c+1)*RC, i]; x: (O, R, I);
    pmean, pm2: (O, C, I) float64. One prange iteration: one (o, row chunk, inner block) triple; Welford's update
    row by row into float64 accumulators along the inner axis."""
    O, R, I = x.shape
    C = pmean.shape[1]
    NB = (I + IB - 1) // IB
    for t in prange(O * C * NB):
        o, c, i0, w, r0, r1 = _col_task(t, C, NB, I, R, RC)
        mean = np.zeros(w, np.float64)
        m2 = np.zeros(w, np.float64)
        for r in range(r0, r1):
            seg = x[o, r, i0:i0 + w]
            inv = 1.0 / (r - r0 + 1)
            for j in range(w):
                v = np.float64(seg[j])
                d = v - mean[j]
                mu = mean[j] + d * inv
                mean[j] = mu
                m2[j] += d * (v - mu)
        pmean[o, c, i0:i0 + w] = mean
        pm2[o, c, i0:i0 + w] = m2


@njit(**_OPTS)
def _var_merge_kernel(var, mean, pmean, pm2, counts, denom, take_sqrt):
    """var[o, i] = M2 / denom (its square root when ``take_sqrt``) and mean[o, i] from the chunk statistics
    pmean, pm2: (O, C, I) float64 with counts (C,), merged in order by Chan's formula; var, mean: (O, I). Serial (one
    iteration per output element): it touches only the small partials."""
    O, C, I = pmean.shape
    for t in range(O * I):
        o = t // I
        i = t - o * I
        n = counts[0]
        mu = pmean[o, 0, i]
        m2 = pm2[o, 0, i]
        for c in range(1, C):
            nb = counts[c]
            tot = n + nb
            d = pmean[o, c, i] - mu
            mu += d * (nb / tot)
            m2 += pm2[o, c, i] + d * d * (n * nb / tot)
            n = tot
        v = m2 / denom
        var[o, i] = math.sqrt(v) if take_sqrt else v
        mean[o, i] = mu


@register("var_mean", "cpu")
def reduce_var_mean(var, mean, x, correction=1, take_sqrt=False):
    """var, mean (O, I) of x (O, R, I) over R (R > 0); var = M2 / max(0, R - correction), its square root when
    ``take_sqrt``; dtypes float32, float64."""
    O, R, I = x.shape
    if I == 1:
        L, C = _row_chunks(O, R)
        pmean = np.empty((O, C))
        pm2 = np.empty((O, C))
        run_parallel(_var_rows_kernel, x.size, pmean, pm2, x.reshape(O, R), L, below=ROWS_SERIAL_BELOW)
        size = L
    else:
        size, C = _col_chunks(O, R, I)
        pmean = np.empty((O, C, I))
        pm2 = np.empty((O, C, I))
        run_parallel(_var_cols_kernel, x.size, pmean, pm2, x, size, below=COLS_SERIAL_BELOW)
    counts = np.minimum(size, R - size * np.arange(C)).astype(np.float64)
    _var_merge_kernel(var.reshape(O, I), mean.reshape(O, I), pmean.reshape(O, C, I), pm2.reshape(O, C, I), counts,
                      float(max(0, R - correction)), take_sqrt)


# ---------------------------------------------------------------------------------------------------------------
# max / min / amax / amin / argmax / argmin on integer keys


@njit(**_OPTS)
def _leaf_keymax(seg, mask, fix, flip, thresh, nankey):
    """max over seg of _key(seg[i]): an integer max reduction, which vectorises."""
    b = _key(seg[0], mask, fix, flip, thresh, nankey)
    for i in range(seg.shape[0]):
        k = _key(seg[i], mask, fix, flip, thresh, nankey)
        b = k if k > b else b
    return b


@njit(**_OPTS)
def _run_argmax(seg, mask, fix, flip, thresh, nankey):
    """The first index of the largest key in seg (n > 0 elements); the key parameters as ``_key``'s.

    One pass, LANES lanes: element s * LANES + j meets lane j of two stack arrays that stay in registers, ``bk``
    (the lane's best key) and ``bs`` (the block s it came from, in the key type so both share a vector width),
    replaced on a strictly larger key, so each lane keeps its first best. Lanes start at the smallest key of block
    0, which stands for element j itself. The lanes merge into the best key and the smallest index holding it, and
    the tail after the last full block is scanned in order. Per vector: the key, a max, a compare and a masked
    broadcast. One leaf max and a scan for the position of each new best (the earlier form) ran the 4096 x 4096
    rows at 2.6-2.8 ms on two threads, this at 2.0 (a row sum: 1.8).
    """
    n = seg.shape[0]
    full = n - n % LANES
    best = _key(seg[0], mask, fix, flip, thresh, nankey)
    bi = 0
    if full:
        bk = stack_empty(LANES, seg)
        bs = stack_empty(LANES, seg)
        low = _cast(-nankey - 1, best)
        for j in range(LANES):
            bk[j] = low
            bs[j] = 0
        for a in range(0, full, LANES):
            blk = seg[a:a + LANES]
            s = _cast(a // LANES, best)
            for j in range(LANES):
                k = _key(blk[j], mask, fix, flip, thresh, nankey)
                up = k > bk[j]
                bk[j] = k if up else bk[j]
                bs[j] = s if up else bs[j]
        for j in range(LANES):
            best = bk[j] if bk[j] > best else best
        bi = n
        for j in range(LANES):
            i = bs[j] * LANES + j
            bi = i if bk[j] == best and i < bi else bi
    for i in range(full, n):
        k = _key(seg[i], mask, fix, flip, thresh, nankey)
        if k > best:
            best = k
            bi = i
    return bi


@njit(parallel=True, **_OPTS)
def _argmax_rows_kernel(pidx, pval, x, L, p):
    """pidx[m, c] = index along R of the first largest key in x[m, c*L:(c+1)*L], pval[m, c] = x there; x: (M, R)
    integer keys' source (int32/int64 bit patterns or int64 values), pidx: (M, C) int64, pval: (M, C) of x's
    dtype, p: the key parameters (see ``_key``). One prange iteration: one (row, chunk) pair, by ``_run_argmax``.
    """
    mask, fix, flip, thresh, nankey = p[0], p[1], p[2], p[3], p[4]
    M, R = x.shape
    C = pidx.shape[1]
    for t in prange(M * C):
        m = t // C
        c = t - m * C
        lo = c * L
        i = lo + _run_argmax(x[m, lo:min(lo + L, R)], mask, fix, flip, thresh, nankey)
        pidx[m, c] = i
        pval[m, c] = x[m, i]


@njit(**_OPTS)
def _argmax_cols_task(dst, dval, x, o, r0, r1, i0, p):
    """dst[j] = index along R of the first largest key in x[o, r0:r1, i0 + j], dval[j] = x there; x: (O, R, I);
    dst: (w,) int64, dval: (w,) of x's dtype.

    Best keys and their rows live in 1-D accumulators along the contiguous axis, replaced only on a strictly larger
    key (so the first index wins ties); rows are counted in the keys' integer type (RC <= MAX_RC) so keys and rows
    share a vector width."""
    mask, fix, flip, thresh, nankey = p[0], p[1], p[2], p[3], p[4]
    w = dst.shape[0]
    bk = np.empty(w, x.dtype)
    bi = np.zeros(w, x.dtype)
    seg = x[o, r0, i0:i0 + w]
    for j in range(w):
        bk[j] = _key(seg[j], mask, fix, flip, thresh, nankey)
    for r in range(1, r1 - r0):
        seg = x[o, r0 + r, i0:i0 + w]
        rr = _cast(r, bi)
        for j in range(w):
            k = _key(seg[j], mask, fix, flip, thresh, nankey)
            b = bk[j]
            up = _cast(-(k > b), b)
            bk[j] = (k & up) | (b & ~up)
            bi[j] = (rr & up) | (bi[j] & ~up)
    for j in range(w):
        dst[j] = r0 + bi[j]
        dval[j] = x[o, r0 + bi[j], i0 + j]


@njit(parallel=True, **_OPTS)
def _argmax_cols_kernel(pidx, pval, x, RC, p):
    """pidx[o, c, i] = index along R of the first largest key in x[o, c*RC:(c+1)*RC, i], pval[o, c, i] = x there;
    x: (O, R, I), pidx: (O, C, I) int64, pval: (O, C, I) of x's dtype. One prange iteration: one (o, row chunk,
    inner block of IB) triple, by ``_argmax_cols_task``."""
    O, R, I = x.shape
    C = pidx.shape[1]
    NB = (I + IB - 1) // IB
    for t in prange(O * C * NB):
        o, c, i0, w, r0, r1 = _col_task(t, C, NB, I, R, RC)
        _argmax_cols_task(pidx[o, c, i0:i0 + w], pval[o, c, i0:i0 + w], x, o, r0, r1, i0, p)


@njit(**_OPTS)
def _argmax_merge_kernel(vals, idx, pidx, pval, p):
    """idx[o, i] = the first best of the chunk winners pidx[o, :, i] (C chunks in order), vals[o, i] = its value;
    pidx: (O, C, I) int64, pval: (O, C, I) the winners' values (x's dtype, or its key type), vals: (O, I) of
    pval's dtype, idx: (O, I) int64. Serial (one iteration per output element); the values come with the
    winners, because reading them back from x cost a cache miss each (0.17 ms for 4096 rows of 16 KiB)."""
    mask, fix, flip, thresh, nankey = p[0], p[1], p[2], p[3], p[4]
    O, C, I = pidx.shape
    for t in range(O * I):
        o = t // I
        i = t - o * I
        bc = 0
        bk = _key(pval[o, 0, i], mask, fix, flip, thresh, nankey)
        for c in range(1, C):
            k = _key(pval[o, c, i], mask, fix, flip, thresh, nankey)
            if k > bk:
                bk = k
                bc = c
        idx[o, i] = pidx[o, bc, i]
        vals[o, i] = pval[o, bc, i]


def _key_params(dtype, is_min):
    """The ``_key`` parameters for data of ``dtype`` (float32, float64 or int64), as an array of the key type."""
    dtype = np.dtype(dtype)
    flip = -1 if is_min else 0
    if dtype == np.float32:
        return np.array([0x7FFFFFFF, 1, flip, 0x7F800000, 0x7FFFFFFF], np.int32)
    big = np.iinfo(np.int64).max
    if dtype == np.float64:
        return np.array([big, 1, flip, 0x7FF0000000000000, big], np.int64)
    return np.array([0, 0, flip, 0, big], np.int64)


def _as_keys(a):
    """Floats reinterpreted as same-width integers (a view: of the same device memory for a CUDA array); integers
    unchanged. The CUDA launcher uses it too."""
    if a.dtype == np.float32:
        return a.view(np.int32)
    if a.dtype == np.float64:
        return a.view(np.int64)
    return a


@register("argmax", "cpu")
def reduce_argmax(vals, idx, x, is_min=False):
    """idx (O, I) int64 = first index along R of the max (min when ``is_min``) of x (O, R, I), NaN first;
    vals (O, I) = the values there. R > 0; dtypes float32, float64, int64."""
    O, R, I = x.shape
    p = _key_params(x.dtype, is_min)
    xk = _as_keys(x)
    if I == 1:
        L, C = _row_chunks(O, R)
        pidx = np.empty((O, C), np.int64)
        pval = np.empty((O, C), xk.dtype)
        run_parallel(_argmax_rows_kernel, x.size, pidx, pval, xk.reshape(O, R), L, p, below=ROWS_SERIAL_BELOW)
    else:
        RC, C = _col_chunks(O, R, I)
        pidx = np.empty((O, C, I), np.int64)
        pval = np.empty((O, C, I), xk.dtype)
        run_parallel(_argmax_cols_kernel, x.size, pidx, pval, xk, RC, p, below=COLS_SERIAL_BELOW)
    _argmax_merge_kernel(_as_keys(vals).reshape(O, I), idx.reshape(O, I), pidx.reshape(O, C, I),
                         pval.reshape(O, C, I), p)


# ---------------------------------------------------------------------------------------------------------------
# amax / amin (values only)


def _fp_extreme_codegen(op):
    def codegen(context, builder, sig, args):
        lty = context.get_value_type(sig.return_type)
        suffix = "f32" if sig.return_type == types.float32 else "f64"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(lty, [lty, lty]), f"llvm.{op}.{suffix}")
        return builder.call(fn, args)

    return codegen


@intrinsic
def _fp_maximum(typingctx, a, b):
    """LLVM's ``maximum``: the larger float, NaN if either is NaN (torch's max). A loop reducing with it vectorises
    without fast-math flags (LLVM knows it is associative), its accumulators in vector registers."""
    if a != b or a not in (types.float32, types.float64):
        return None
    return a(a, b), _fp_extreme_codegen("maximum")


@intrinsic
def _fp_minimum(typingctx, a, b):
    """LLVM's ``minimum``: the smaller float, NaN if either is NaN (torch's min); vectorises as ``_fp_maximum``."""
    if a != b or a not in (types.float32, types.float64):
        return None
    return a(a, b), _fp_extreme_codegen("minimum")


def _extreme(a, b, is_min):
    """min(a, b) when ``is_min`` else max(a, b), NaN if either is NaN (in jitted code)."""


@overload(_extreme)
def _extreme_impl(a, b, is_min):
    if isinstance(a, types.Float):
        return lambda a, b, is_min: _fp_minimum(a, b) if is_min else _fp_maximum(a, b)
    return lambda a, b, is_min: (a if a < b else b) if is_min else (a if a > b else b)




@njit(**_OPTS)
def _run_extreme(seg, is_min):
    """The max (min when ``is_min``) of seg (n > 0 elements), NaN if any.

    Element i + j of each LANES-element block meets lane j of two stack arrays that stay in registers: ``acc``
    keeps the larger of the two (a compare and a select, which x86 does as one vmaxps), ``chk`` keeps the last
    NaN seen (a select on v != v); lanes and the tail merge with the NaN-propagating ``_extreme``. The lanes are an
    elementwise update, not a loop-carried reduction, so LLVM vectorises them without fast-math flags: vmaxps,
    vcmpunordps and a masked move per vector, where a reduction with LLVM's ``maximum`` took six instructions.
    One core, L2-resident 512 KiB: float32 40 -> 85 GB/s, float64 41 -> 64 GB/s (numpy's max: 81; the DRAM stream
    one core pulls: ~18). Which zero a max of zeros returns depends on the order, as in torch."""
    n = seg.shape[0]
    acc = stack_empty(LANES, seg)
    chk = stack_empty(LANES, seg)
    first = seg[0]
    for j in range(LANES):
        acc[j] = first
        chk[j] = first
    full = n - n % LANES
    if is_min:
        for a in range(0, full, LANES):
            blk = seg[a:a + LANES]
            for j in range(LANES):
                v = blk[j]
                w = acc[j]
                acc[j] = v if v < w else w
                chk[j] = v if v != v else chk[j]
    else:
        for a in range(0, full, LANES):
            blk = seg[a:a + LANES]
            for j in range(LANES):
                v = blk[j]
                w = acc[j]
                acc[j] = v if v > w else w
                chk[j] = v if v != v else chk[j]
    m = first
    for j in range(LANES):
        m = _extreme(_extreme(m, acc[j], is_min), chk[j], is_min)
    for i in range(full, n):
        m = _extreme(m, seg[i], is_min)
    return m


@njit(parallel=True, **_OPTS)
def _amax_rows_kernel(part, x, L, is_min):
    """part[m, c] = max (min when ``is_min``) of x[m, c*L:(c+1)*L], NaN if any; x: (M, R), part: (M, C) of x's
    dtype (float32, float64, int64). One prange iteration: one (row, chunk) pair, by ``_run_extreme``."""
    M, R = x.shape
    C = part.shape[1]
    for t in prange(M * C):
        m = t // C
        c = t - m * C
        lo = c * L
        part[m, c] = _run_extreme(x[m, lo:min(lo + L, R)], is_min)


@njit(parallel=True, **_OPTS)
def _amax_cols_kernel(part, x, RC, is_min):
    """part[o, c, i] = max (min when ``is_min``) of x[o, c*RC:(c+1)*RC, i], NaN if any; x: (O, R, I), part:
    (O, C, I). One prange iteration: one (o, row chunk, inner block of IB) triple; its slice of ``part`` is the
    accumulator, updated row by row along the contiguous inner axis."""
    O, R, I = x.shape
    C = part.shape[1]
    NB = (I + IB - 1) // IB
    for t in prange(O * C * NB):
        o, c, i0, w, r0, r1 = _col_task(t, C, NB, I, R, RC)
        acc = part[o, c, i0:i0 + w]
        acc[:] = x[o, r0, i0:i0 + w]
        for r in range(r0 + 1, r1):
            seg = x[o, r, i0:i0 + w]
            for j in range(w):
                acc[j] = _extreme(acc[j], seg[j], is_min)


@njit(**_OPTS)
def _amax_merge_kernel(out, part, is_min):
    """out[o, i] = max (min when ``is_min``) of the chunk extremes part[o, :, i]; part: (O, C, I), out: (O, I).
    Serial: it touches only the small partials."""
    O, C, I = part.shape
    for o in range(O):
        dst = out[o]
        dst[:] = part[o, 0]
        for c in range(1, C):
            src = part[o, c]
            for i in range(I):
                dst[i] = _extreme(dst[i], src[i], is_min)


@njit(**_OPTS)
def _amax_rows_split(out, x, L, C, is_min):
    """out[m, 0] = max (min) of row m of x (M, R) split into C > 1 chunks of L elements: ``_amax_rows_kernel`` into
    fresh (M, C) partials, then ``_amax_merge_kernel``; one compiled call, as ``_sum_rows_split``."""
    M = x.shape[0]
    part = np.empty((M, C), out.dtype)
    _amax_rows_kernel(part, x, L, is_min)
    _amax_merge_kernel(out, part.reshape((M, C, 1)), is_min)


@register("amax", "cpu")
def reduce_amax(out, x, is_min=False):
    """out (O, I) = max (min when ``is_min``) of x (O, R, I) over R, NaN if any (R > 0); dtypes float32, float64,
    int64 (out has x's dtype). Values only: max/min without dim, amax and amin need no index search."""
    _reduce((_amax_rows_kernel, _amax_rows_split, _amax_cols_kernel, _amax_merge_kernel), out, x, is_min, is_min,
            (is_min,))


# ---------------------------------------------------------------------------------------------------------------
# logsumexp


@njit(fastmath={"reassoc"}, **_OPTS)
def _leaf_expsum(seg, shift, zero):
    """sum(exp(seg - shift)) in seg's dtype, one vectorised pass (float32's exp is a polynomial)."""
    wide_vectors()
    s = zero
    for i in range(seg.shape[0]):
        s += _exp(seg[i] - shift)
    return s


@njit(inline="always")
def _lse_merge(m, s, mb, sb):
    """Merge two (max, sum of exp(x - _eff(max))) pairs into one; float64."""
    mn = mb if mb > m else m
    e = _eff(mn)
    a = s * math.exp(_eff(m) - e) if s != 0 else s
    b = sb * math.exp(_eff(mb) - e) if sb != 0 else sb
    return mn, a + b


@njit(parallel=True, **_OPTS)
def _lse_rows_kernel(pm, ps, x, xk, L, p):
    """pm[m, c] = max and ps[m, c] = sum(exp(x - _eff(max))) of chunk c of row m; x: (M, R) float, xk: the same
    memory as integer keys, pm, ps: (M, C) float64.

    One prange iteration: one (row, chunk) pair. Per BLOCK-element leaf: the max from a vectorised integer max over
    keys (turned back into the float), then one vectorised pass summing exp(x - max) in x's dtype; leaves merge in
    float64 (online rescaling). NaN flows through the sums.
    """
    mask, fix, flip, thresh, nankey = p[0], p[1], p[2], p[3], p[4]
    M, R = x.shape
    C = pm.shape[1]
    for t in prange(M * C):
        m = t // C
        c = t - m * C
        lo = c * L
        hi = min(lo + L, R)
        mx = -np.inf
        s = 0.0
        for a in range(lo, hi, BLOCK):
            b = min(a + BLOCK, hi)
            k = _leaf_keymax(xk[m, a:b], mask, fix, flip, thresh, nankey)
            neg = -(k < 0)
            k = (k - (neg & fix)) ^ (neg & mask)
            lm = np.float64(_int_bits_as_float(_cast(k, xk)))
            shift = _cast(_eff(lm), x)
            ls = np.float64(_leaf_expsum(x[m, a:b], shift, _cast(0, x)))
            mx, s = _lse_merge(mx, s, lm, ls)
        pm[m, c] = mx
        ps[m, c] = s


@njit(parallel=True, **_OPTS)
def _lse_cols_kernel(pm, ps, x, RC):
    """pm[o, c, i] = max and ps[o, c, i] = sum(exp(x - _eff(max))) of x[o, c*RC:(c+1)*RC, i]; x: (O, R, I) float,
    pm, ps: (O, C, I) float64.

    One prange iteration: one (o, row chunk, inner block) triple. Rows go in groups of LSE_GROUP (L2-resident):
    their max along the inner axis first, the running sums rescaled to the new max, then their exps summed in x's
    dtype into a group accumulator; all loops run along the contiguous inner axis.
    """
    O, R, I = x.shape
    C = pm.shape[1]
    NB = (I + IB - 1) // IB
    for t in prange(O * C * NB):
        wide_vectors()
        o, c, i0, w, r0, r1 = _col_task(t, C, NB, I, R, RC)
        mx = np.full(w, -np.inf)
        s = np.zeros(w)
        gmax = np.empty(w, x.dtype)
        shift = np.empty(w, x.dtype)
        gsum = np.empty(w, x.dtype)
        for g0 in range(r0, r1, LSE_GROUP):
            g1 = min(g0 + LSE_GROUP, r1)
            gmax[:] = x[o, g0, i0:i0 + w]
            for r in range(g0 + 1, g1):
                seg = x[o, r, i0:i0 + w]
                for j in range(w):
                    v = seg[j]
                    gmax[j] = v if v > gmax[j] else gmax[j]
            for j in range(w):
                mx[j], s[j] = _lse_merge(mx[j], s[j], np.float64(gmax[j]), 0.0)
                shift[j] = _cast(_eff(mx[j]), x)
                gsum[j] = 0
            for r in range(g0, g1):
                seg = x[o, r, i0:i0 + w]
                for j in range(w):
                    gsum[j] += _exp(seg[j] - shift[j])
            for j in range(w):
                s[j] += gsum[j]
        pm[o, c, i0:i0 + w] = mx
        ps[o, c, i0:i0 + w] = s


@njit(**_OPTS)
def _lse_merge_kernel(out, pm, ps):
    """out[o, i] = log(sum) + shift of the merged chunk pairs pm, ps: (O, C, I) float64; out: (O, I). Serial (one
    iteration per output element)."""
    O, C, I = pm.shape
    for t in range(O * I):
        o = t // I
        i = t - o * I
        mx = pm[o, 0, i]
        s = ps[o, 0, i]
        for c in range(1, C):
            mx, s = _lse_merge(mx, s, pm[o, c, i], ps[o, c, i])
        out[o, i] = math.log(s) + _eff(mx)


@register("logsumexp", "cpu")
def reduce_logsumexp(out, x):
    """out (O, I) = log(sum(exp(x))) of x (O, R, I) over R (R > 0), shifted by the max as torch does; dtypes
    float32, float64."""
    O, R, I = x.shape
    if I == 1:
        L, C = _row_chunks(O, R)
        pm = np.empty((O, C))
        ps = np.empty((O, C))
        run_parallel(_lse_rows_kernel, x.size, pm, ps, x.reshape(O, R), _as_keys(x).reshape(O, R), L,
                     _key_params(x.dtype, False), below=ROWS_SERIAL_BELOW)
    else:
        RC, C = _col_chunks(O, R, I)
        pm = np.empty((O, C, I))
        ps = np.empty((O, C, I))
        run_parallel(_lse_cols_kernel, x.size, pm, ps, x, RC, below=COLS_SERIAL_BELOW)
    _lse_merge_kernel(out.reshape(O, I), pm.reshape(O, C, I), ps.reshape(O, C, I))
