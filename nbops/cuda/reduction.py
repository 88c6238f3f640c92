"""CUDA kernels of the reduction family: streaming reductions at the HBM roofline, with warp shuffles.

Every reduction arrives as a C-contiguous (O, R, I) array reduced over R into (O, I) (see nbops/ops/reduction.py);
the kernels read it as a flat 1-D array. Two layouts:

- rows (I == 1): O rows of R contiguous elements. A *group* of G threads reduces one task, a chunk of L elements
  of one row: G = 32 (a warp per row, TPB / 32 tasks per block) for rows up to WARP_ROW_MAX, G = TPB (a block per
  row) for longer ones. Lane l of the group reads elements l, l + G, l + 2G, ... (coalesced), 8 independent loads
  per pass, and the group combines its lanes with ``_block``'s warp or block reduction.
- columns (I > 1): a block of (TX, TY) threads reduces a strip of TX adjacent columns over a chunk of L rows:
  thread (tx, ty) reads rows ty, ty + TY, ... of column tx, 8 rows per pass (a warp reads TX adjacent columns of
  32 / TX rows: coalesced), then row 0 of the block merges the TY partials of its column from shared memory.

A row (column) is cut into C > 1 chunks when O (O * strips) alone gives fewer than TASKS_PER_SLOT tasks per
resident group (SM count x BLOCKS_PER_SM blocks), C chosen so that the tasks fill the last round; the (O, C, I)
partials are merged by a second, small pass in a fixed order. No float atomics anywhere, so the same input gives
the same bits run to run. The grid is at most SM count x BLOCKS_PER_SM blocks, each looping over tasks
(grid-stride): all resident at <= 64 registers a thread, which ptxas -v for sm_90 reports for every float32 kernel
(32-64); float64 ones reach 70-112, and ``_fit`` then caps the grid at the blocks that stay resident.

Napkin math (H200, fp32 8192 x 8192 = 256 MiB): at ~4 TB/s one read takes ~67 us; the partials of a chunked
reduction add < 1% (a few thousand values per output row or a few rows of partials per column strip).
"""

import math

import numpy as np
from numba import config, cuda, float64, int64, uint64

from .._dispatch import register
from ._block import (SCRATCH, block_max, block_min, block_prod, block_sum, thread_rank, warp_max, warp_min,
                     warp_prod, warp_sum)
from ._util import blocks, empty, flat, stream

WARP = 32
TPB = 64 if config.ENABLE_CUDASIM else 256  # threads per block (a multiple of 32; small under the simulator)
WARP_ROW_MAX = 1024  # rows up to this length get a warp each, longer ones a block
BLOCKS_PER_SM = 4  # resident blocks per SM the grid is sized for (4 x 256 threads fit at <= 64 registers)
USE_MIN = 0.9  # rows / column strips that keep this share of the resident groups busy are not cut into chunks
TASKS_PER_SLOT = 4  # ... otherwise they are cut until every resident group has about this many tasks
MIN_CHUNK_LOADS = 16  # ... but a chunk gives every thread at least this many elements (tests lower it)
QUANTUM_LOADS = 8  # chunk lengths are whole passes: this many loads of every thread (tests lower it)
LSE_MAX_CHUNKS = 32  # logsumexp merges column chunks one thread per output: keep them few
SIM_SMS = 2  # the SM count the simulator stands in with
BIG = np.iinfo(np.int64).max  # "no index yet" of the argmax kernels
_SMS = []
_PLANS = {}
_RESIDENT = {}


def _sms():
    """The device's multiprocessor count, read once (SIM_SMS under the simulator)."""
    if not _SMS:
        _SMS.append(SIM_SMS if config.ENABLE_CUDASIM else cuda.get_current_device().MULTIPROCESSOR_COUNT)
    return _SMS[0]


def _cdiv(a, b):
    return -(-a // b)


def _use(tasks, slots):
    """The share of ``slots`` busy over the rounds ``tasks`` take."""
    return tasks / (_cdiv(tasks, slots) * slots)


def _fit(kernel, grid):
    """``grid`` capped at the blocks of ``kernel`` the SMs hold at once, by its registers once it is compiled:
    a kernel that needs more than 64 registers (float64 ones may) holds fewer than BLOCKS_PER_SM blocks an SM, and
    a grid sized for BLOCKS_PER_SM would leave its last blocks a second, mostly idle round. Plans (and so results)
    do not depend on it: only which block takes which task does."""
    if config.ENABLE_CUDASIM:
        return grid
    key = (kernel, len(kernel.overloads))
    held = _RESIDENT.get(key)
    if held is None:
        if not key[1]:
            return grid
        regs = max(kernel.get_regs_per_thread().values())
        held = _RESIDENT[key] = max(1, min(BLOCKS_PER_SM, 65536 // (TPB * _cdiv(regs, 8) * 8)))
    return min(grid, _sms() * held)


def _chunks(units, R, lanes, slots, max_chunks):
    """``_plan_chunks``, remembered (its search costs ~15 us of Python; the key holds the tunables tests change)."""
    key = (units, R, lanes, slots, max_chunks, USE_MIN, TASKS_PER_SLOT, MIN_CHUNK_LOADS, QUANTUM_LOADS)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) >= 4096:
            _PLANS.clear()
        plan = _PLANS[key] = _plan_chunks(units, R, lanes, slots, max_chunks)
    return plan


def _plan_chunks(units, R, lanes, slots, max_chunks):
    """(L, C): each of ``units`` rows (column strips) of R elements cut into C chunks of L, read by ``lanes``
    threads each (a group; a block's TY row slices). L is a multiple of lanes x QUANTUM_LOADS (one pass of loads of
    every thread), so that only a row's last chunk ends in a partial pass, and at least lanes x MIN_CHUNK_LOADS.
    C = 1 when the units alone fill the slots' rounds to USE_MIN; otherwise, of up to 32 counts from the one that
    gives TASKS_PER_SLOT tasks a slot, the one that leaves the fewest slots idle in the last round."""
    quantum = lanes * QUANTUM_LOADS

    def length(c):
        return _cdiv(_cdiv(R, c), quantum) * quantum

    C = 1
    if units < slots or _use(units, slots) < USE_MIN:
        top = max(1, R // (lanes * MIN_CHUNK_LOADS))
        if max_chunks:
            top = min(top, max_chunks)
        first = min(_cdiv(TASKS_PER_SLOT * slots, units), top)
        best = _use(units, slots)
        for c in range(first, min(top, first + 32) + 1):
            use = _use(units * _cdiv(R, length(c)), slots)
            if use > best + 1e-9:
                best, C = use, c
    L = length(C)
    return L, _cdiv(R, L)


def _rows_plan(O, R, max_chunks=0):
    """(G, L, C, grid) of a rows reduction of O rows of R: groups of G threads, chunks of L elements (C a row),
    grid blocks of TPB threads (at most the resident ones: SM count x BLOCKS_PER_SM). A warp per row when the rows
    are short or fill the resident warps; a block per row otherwise (few long rows, cut into chunks)."""
    blocks_max = _sms() * BLOCKS_PER_SM
    G = WARP if R <= WARP_ROW_MAX or O >= blocks_max * (TPB // WARP) else TPB
    gpb = TPB // G
    L, C = _chunks(O, R, G, blocks_max * gpb, max_chunks)
    return G, L, C, max(1, min(-(-O * C // gpb), blocks_max))


def _cols_plan(O, R, I, max_chunks=0):
    """((TX, TY), L, C, grid) of a columns reduction: blocks of TX columns x TY row slices, chunks of L rows."""
    TX = 1
    while TX < I and TX < WARP:
        TX *= 2
    TY = TPB // TX
    NB = -(-I // TX)
    L, C = _chunks(O * NB, R, TY, _sms() * BLOCKS_PER_SM, max_chunks)
    return (TX, TY), L, C, max(1, min(O * NB * C, _sms() * BLOCKS_PER_SM))


@cuda.jit(device=True)
def _end(r0, L, R):
    """min(r0 + L, R), written out: numba 0.68's builtin min failed to compile through cuda.compile_ptx."""
    r1 = r0 + L
    return R if r1 > R else r1


@cuda.jit(device=True)
def _task(t, C, L, R):
    """(o, c, r0, r1) of rows task t: row o, chunk c, its elements [r0, r1) of R."""
    o = t // C
    c = t - o * C
    r0 = c * L
    return o, c, r0, _end(r0, L, R)


@cuda.jit(device=True)
def _strip_task(t, C, L, R, NB, TX):
    """(o, c, i, r0, r1) of columns task t for this thread: outer index o, chunk c, column i (past I in a ragged
    strip: guard it), rows [r0, r1) of R."""
    o = t // (NB * C)
    b = (t - o * NB * C) // C
    c = t - (o * NB + b) * C
    r0 = c * L
    return o, c, b * TX + cuda.threadIdx.x, r0, _end(r0, L, R)


@cuda.jit(device=True)
def _at(i):
    """Index i (>= 0) as uint64: numba indexes with an unsigned index without its negative-index wrap-around (three
    64-bit instructions a load). Mixing uint64 with int64 gives float64 in numba: keep a fold's indices uint64."""
    return uint64(i)


@cuda.jit(device=True)
def _load8(x, p, step):
    """x[p], x[p + step], ..., x[p + 7 step]: 8 independent loads (p, step uint64)."""
    v0 = x[p]
    p += step
    v1 = x[p]
    p += step
    v2 = x[p]
    p += step
    v3 = x[p]
    p += step
    v4 = x[p]
    p += step
    v5 = x[p]
    p += step
    v6 = x[p]
    p += step
    return v0, v1, v2, v3, v4, v5, v6, x[p]


@cuda.jit(device=True)
def _load8_tail(x, p, step, stop, fill):
    """As ``_load8`` for the last, partial pass: ``fill`` (a value that changes nothing) at and past stop."""
    v0 = x[p] if p < stop else fill
    p += step
    v1 = x[p] if p < stop else fill
    p += step
    v2 = x[p] if p < stop else fill
    p += step
    v3 = x[p] if p < stop else fill
    p += step
    v4 = x[p] if p < stop else fill
    p += step
    v5 = x[p] if p < stop else fill
    p += step
    v6 = x[p] if p < stop else fill
    p += step
    return v0, v1, v2, v3, v4, v5, v6, x[p] if p < stop else fill


@cuda.jit(device=True)
def _maxnan(a, b):
    return a if a > b or a != a else b


@cuda.jit(device=True)
def _minnan(a, b):
    return a if a < b or a != a else b


@cuda.jit(device=True)
def _add(a, b):
    return a + b


@cuda.jit(device=True)
def _mul(a, b):
    return a * b


# ------------------------------------------------------------------------------------- sum, prod, amax, amin


def _reducer(combine, warp_red, block_red):
    """(rows kernel, columns kernel, fold) of a reduction by ``combine`` (associative; max/min propagate NaN)."""

    @cuda.jit(device=True)
    def combine8(acc, v0, v1, v2, v3, v4, v5, v6, v7):
        return combine(acc, combine(combine(combine(v0, v1), combine(v2, v3)),
                                    combine(combine(v4, v5), combine(v6, v7))))

    @cuda.jit(device=True)
    def fold(x, p, stop, step, acc, fill):
        """acc combined with x[p], x[p + step], ... below stop: 8 independent loads a pass, combined pairwise; the
        last pass masked with ``fill`` (the identity). p, stop, step: uint64 (see ``_at``)."""
        seven = step * uint64(7)
        while p + seven < stop:
            v0, v1, v2, v3, v4, v5, v6, v7 = _load8(x, p, step)
            acc = combine8(acc, v0, v1, v2, v3, v4, v5, v6, v7)
            p += seven + step
        if p < stop:
            v0, v1, v2, v3, v4, v5, v6, v7 = _load8_tail(x, p, step, stop, fill)
            acc = combine8(acc, v0, v1, v2, v3, v4, v5, v6, v7)
        return acc

    @cuda.jit
    def rows(out, x, R, L, G, ident, div):
        """out[o, c] = combine over x[o * R + c * L : ...min((c + 1) * L, R)], divided by ``div`` when it is not 1
        (mean); x: flat (O * R,), out: (O, C); ident: combine's identity in x's dtype.

        Block TPB threads = TPB / G groups; group k of block b takes tasks b * TPB / G + k, then a grid further.
        Thread: <= ceil(L / G) elements at stride G (coalesced), 8 loads in flight. 8192 x 8192 fp32, dim 1:
        8192 block-rows of 32 KiB, ~67 us at 4 TB/s.
        """
        scratch = cuda.shared.array(SCRATCH, dtype=x.dtype)
        O, C = out.shape
        tid, nthreads = thread_rank()
        group = tid // G
        lane = tid - group * G
        gpb = nthreads // G
        ntasks = O * C
        for base in range(cuda.blockIdx.x * gpb, ntasks, cuda.gridDim.x * gpb):
            t = base + group
            o, c, r0, r1 = _task(t, C, L, R)
            acc = ident
            if t < ntasks:
                acc = fold(x, _at(o * R + r0 + lane), _at(o * R + r1), _at(G), acc, ident)
            acc = warp_red(acc, scratch) if G == WARP else block_red(acc, scratch)
            if t < ntasks and lane == 0:
                if div != 1:
                    out[o, c] = acc / div
                else:
                    out[o, c] = acc

    @cuda.jit
    def cols(out, x, R, I, L, ident, div):
        """out[o, c, i] = combine over rows [c * L, min((c + 1) * L, R)) of column i of x[o] (divided by ``div``
        when it is not 1); x: flat (O * R * I,), out: (O, C, I).

        Block (TX, TY), one task at a time (strip of TX columns x chunk): thread (tx, ty) folds rows ty, ty + TY, ...
        8 at a time; row ty = 0 then folds the TY partials of its column in order. 8192 x 8192 fp32, dim 0: 256
        strips x C chunks, ~67 us at 4 TB/s.
        """
        sm = cuda.shared.array(TPB, dtype=x.dtype)
        O, C, _ = out.shape
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        TX, TY = cuda.blockDim.x, cuda.blockDim.y
        NB = (I + TX - 1) // TX
        for t in range(cuda.blockIdx.x, O * NB * C, cuda.gridDim.x):
            o, c, i, r0, r1 = _strip_task(t, C, L, R, NB, TX)
            acc = ident
            if i < I:
                acc = fold(x, _at((o * R + r0 + ty) * I + i), _at((o * R + r1) * I + i), _at(TY * I), acc,
                           ident)
            sm[ty * TX + tx] = acc
            cuda.syncthreads()  # every row slice's partial is in shared memory before row 0 merges them
            if ty == 0 and i < I:
                for k in range(1, TY):
                    acc = combine(acc, sm[k * TX + tx])
                if div != 1:
                    out[o, c, i] = acc / div
                else:
                    out[o, c, i] = acc
            cuda.syncthreads()  # row 0 has read shared memory before the next task overwrites it

    return rows, cols, fold


_sum_rows, _sum_cols, _sum_fold = _reducer(_add, warp_sum, block_sum)
_prod_rows, _prod_cols, _prod_fold = _reducer(_mul, warp_prod, block_prod)
_max_rows, _max_cols, _max_fold = _reducer(_maxnan, warp_max, block_max)
_min_rows, _min_cols, _min_fold = _reducer(_minnan, warp_min, block_min)


@cuda.jit
def _sum_naive(out, x, is_prod, div):
    """Oracle: out[o, i] = sum (product) of x[o, :, i] (divided by ``div`` when it is not 1), one thread per output
    walking R in order; x: (O, R, I), out: (O, I)."""
    t = cuda.grid(1)
    O, R, I = x.shape
    if t < O * I:
        o = t // I
        i = t - o * I
        acc = x[o, 0, i]
        for r in range(1, R):
            acc = acc * x[o, r, i] if is_prod else acc + x[o, r, i]
        out[o, i] = acc / div if div != 1 else acc


def _identity(dtype, name):
    dtype = np.dtype(dtype)
    if name in ("sum", "prod"):
        return dtype.type(name == "prod")
    if dtype.kind == "f":
        return dtype.type(-np.inf if name == "max" else np.inf)
    info = np.iinfo(dtype)
    return dtype.type(info.min if name == "max" else info.max)


_KERNELS = {"sum": (_sum_rows, _sum_cols), "prod": (_prod_rows, _prod_cols),
            "max": (_max_rows, _max_cols), "min": (_min_rows, _min_cols)}


def _reduce(name, out, x, div=1):
    """out (O, I) = the ``name`` reduction of x (O, R, I) over R (R > 0), then divided by ``div`` when it is not 1;
    a chunked pass reduces its (O, C, I) partials by the same launcher."""
    rows, cols = _KERNELS[name]
    O, R, I = x.shape
    ident = _identity(x.dtype, name)
    if I == 1:
        G, L, C, grid = _rows_plan(O, R)
        part = out.reshape(O, 1) if C == 1 else empty((O, C), x.dtype)
        rows[_fit(rows, grid), TPB, stream()](part, flat(x), R, L, G, ident, x.dtype.type(div if C == 1 else 1))
    else:
        block, L, C, grid = _cols_plan(O, R, I)
        part = out.reshape(O, 1, I) if C == 1 else empty((O, C, I), x.dtype)
        cols[_fit(cols, grid), block, stream()](part, flat(x), R, I, L, ident, x.dtype.type(div if C == 1 else 1))
    if C > 1:
        _reduce(name, out, part.reshape(O, C, I), div)


@register("sum", "cuda")
def reduce_sum(out, x, div=1):
    """out (O, I) = sum of x (O, R, I) over R, divided by ``div`` when it is not 1 (mean)."""
    _reduce("sum", out, x, div)


@register("prod", "cuda")
def reduce_prod(out, x):
    """out (O, I) = product of x (O, R, I) over R."""
    _reduce("prod", out, x)


@register("amax", "cuda")
def reduce_amax(out, x, is_min=False):
    """out (O, I) = max (min when ``is_min``) of x (O, R, I) over R, NaN if any (R > 0)."""
    _reduce("min" if is_min else "max", out, x)


# ------------------------------------------------------------------------------------------------ var / std


@cuda.jit(device=True)
def _shifted4(v0, v1, v2, v3, K, s1, s2):
    """(s1, s2) plus the sums of d and d * d over d = v - K of four values, pairwise, in float64."""
    d0 = float64(v0) - K
    d1 = float64(v1) - K
    d2 = float64(v2) - K
    d3 = float64(v3) - K
    return s1 + ((d0 + d1) + (d2 + d3)), s2 + ((d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3))


@cuda.jit(device=True)
def _shifted_fold(x, p, stop, step, K, s1, s2, fill):
    """(s1 + sum(d), s2 + sum(d * d)) over d = x[p] - K, x[p + step] - K, ... below stop, in float64; 8 loads a
    pass. With K one of the values, s2 - s1^2 / n loses at most ~n float64 ulps of the true M2 (M2 >= (K - mean)^2),
    so plain sums replace Welford's per-element division and merge like sums. ``fill``: K in x's dtype (d = 0)."""
    seven = step * uint64(7)
    while p + seven < stop:
        v0, v1, v2, v3, v4, v5, v6, v7 = _load8(x, p, step)
        s1, s2 = _shifted4(v0, v1, v2, v3, K, s1, s2)
        s1, s2 = _shifted4(v4, v5, v6, v7, K, s1, s2)
        p += seven + step
    if p < stop:
        v0, v1, v2, v3, v4, v5, v6, v7 = _load8_tail(x, p, step, stop, fill)
        s1, s2 = _shifted4(v0, v1, v2, v3, K, s1, s2)
        s1, s2 = _shifted4(v4, v5, v6, v7, K, s1, s2)
    return s1, s2


@cuda.jit(device=True)
def _var_of(s1, s2, K, n, denom, take_sqrt):
    """(var or std, mean) from the sums of d = x - K over n values."""
    mean = K + s1 / n
    m2 = s2 - s1 * (s1 / n)
    if m2 < 0:
        m2 = 0.0
    v = m2 / denom
    return (math.sqrt(v) if take_sqrt else v), mean


@cuda.jit
def _var_rows(a, b, x, R, L, G, denom, take_sqrt, final):
    """Rows of x (flat (O * R,)) in chunks of L, shifted by each row's first element K. ``final`` (one chunk a
    row): a[o, 0] = var (std when ``take_sqrt``) = M2 / denom, b[o, 0] = mean. Otherwise a[o, c], b[o, c] = the
    chunk's float64 sums of d and d^2 (d = x - K), merged by ``_reduce`` and finished by ``_var_finish``.

    Groups and grid as the sum rows kernel; each element costs a float64 convert, subtract and two adds, well
    under the H200's float64 rate at 4 TB/s. 8192 x 8192 fp32, dim 1: ~67 us.
    """
    scratch = cuda.shared.array(SCRATCH, dtype=float64)
    O, C = a.shape
    tid, nthreads = thread_rank()
    group = tid // G
    lane = tid - group * G
    gpb = nthreads // G
    ntasks = O * C
    for base in range(cuda.blockIdx.x * gpb, ntasks, cuda.gridDim.x * gpb):
        t = base + group
        o, c, r0, r1 = _task(t, C, L, R)
        s1 = 0.0
        s2 = 0.0
        K = 0.0
        if t < ntasks:
            k = x[o * R]
            K = float64(k)
            s1, s2 = _shifted_fold(x, _at(o * R + r0 + lane), _at(o * R + r1), _at(G), K, s1, s2, k)
        if G == WARP:
            s1 = warp_sum(s1, scratch)
            s2 = warp_sum(s2, scratch)
        else:
            s1 = block_sum(s1, scratch)
            s2 = block_sum(s2, scratch)
        if t < ntasks and lane == 0:
            if final:
                a[o, c], b[o, c] = _var_of(s1, s2, K, float64(R), denom, take_sqrt)
            else:
                a[o, c] = s1
                b[o, c] = s2


@cuda.jit
def _var_cols(a, b, x, R, I, L, denom, take_sqrt, final):
    """Columns of x (flat (O * R * I,)) in chunks of L rows, shifted by each column's first element; a, b: (O, C, I)
    as in ``_var_rows`` (final: var and mean; otherwise the float64 sums). Block and tasks as the sum columns
    kernel."""
    s1m = cuda.shared.array(TPB, dtype=float64)
    s2m = cuda.shared.array(TPB, dtype=float64)
    O, C, _ = a.shape
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    TX, TY = cuda.blockDim.x, cuda.blockDim.y
    NB = (I + TX - 1) // TX
    for t in range(cuda.blockIdx.x, O * NB * C, cuda.gridDim.x):
        o, c, i, r0, r1 = _strip_task(t, C, L, R, NB, TX)
        s1 = 0.0
        s2 = 0.0
        K = 0.0
        if i < I:
            k = x[o * R * I + i]
            K = float64(k)
            s1, s2 = _shifted_fold(x, _at((o * R + r0 + ty) * I + i), _at((o * R + r1) * I + i), _at(TY * I), K,
                                   s1, s2, k)
        s1m[ty * TX + tx] = s1
        s2m[ty * TX + tx] = s2
        cuda.syncthreads()  # every row slice's sums are in shared memory before row 0 merges them
        if ty == 0 and i < I:
            for k in range(1, TY):
                s1 += s1m[k * TX + tx]
                s2 += s2m[k * TX + tx]
            if final:
                a[o, c, i], b[o, c, i] = _var_of(s1, s2, K, float64(R), denom, take_sqrt)
            else:
                a[o, c, i] = s1
                b[o, c, i] = s2
        cuda.syncthreads()  # row 0 has read shared memory before the next task overwrites it


@cuda.jit
def _var_finish(var, mean, s1, s2, x, R, denom, take_sqrt):
    """var[o, i], mean[o, i] from the merged float64 sums s1, s2 (O, I) of d = x - x[o, 0, i]; x: (O, R, I). One
    thread per output."""
    t = cuda.grid(1)
    O, I = var.shape
    if t < O * I:
        o = t // I
        i = t - o * I
        var[o, i], mean[o, i] = _var_of(s1[o, i], s2[o, i], float64(x[o, 0, i]), float64(R), denom, take_sqrt)


@cuda.jit
def _var_naive(var, mean, x, denom, take_sqrt):
    """Oracle: two passes in float64 (mean, then squared deviations), one thread per output; x: (O, R, I)."""
    t = cuda.grid(1)
    O, R, I = x.shape
    if t < O * I:
        o = t // I
        i = t - o * I
        s = 0.0
        for r in range(R):
            s += float64(x[o, r, i])
        mu = s / R
        m2 = 0.0
        for r in range(R):
            d = float64(x[o, r, i]) - mu
            m2 += d * d
        v = m2 / denom
        var[o, i] = math.sqrt(v) if take_sqrt else v
        mean[o, i] = mu


@register("var_mean", "cuda")
def reduce_var_mean(var, mean, x, correction=1, take_sqrt=False):
    """var, mean (O, I) of x (O, R, I) over R (R > 0); var = M2 / max(0, R - correction), sqrt when ``take_sqrt``."""
    O, R, I = x.shape
    denom = float(max(0, R - correction))
    if I == 1:
        G, L, C, grid = _rows_plan(O, R)
        a, b = (var.reshape(O, 1), mean.reshape(O, 1)) if C == 1 else (empty((O, C), np.float64),
                                                                      empty((O, C), np.float64))
        _var_rows[_fit(_var_rows, grid), TPB, stream()](a, b, flat(x), R, L, G, denom, take_sqrt, C == 1)
    else:
        block, L, C, grid = _cols_plan(O, R, I)
        a, b = (var.reshape(O, 1, I), mean.reshape(O, 1, I)) if C == 1 else (empty((O, C, I), np.float64),
                                                                            empty((O, C, I), np.float64))
        _var_cols[_fit(_var_cols, grid), block, stream()](a, b, flat(x), R, I, L, denom, take_sqrt, C == 1)
    if C > 1:
        s1, s2 = empty((O, I), np.float64), empty((O, I), np.float64)
        _reduce("sum", s1, a.reshape(O, C, I))
        _reduce("sum", s2, b.reshape(O, C, I))
        _var_finish[blocks(O * I, TPB), TPB, stream()](var.reshape(O, I), mean.reshape(O, I), s1, s2, x, R, denom,
                                                       take_sqrt)


# ------------------------------------------------------------------------------------------ argmax / argmin


@cuda.jit(device=True)
def _better(v, b, is_min):
    """Whether v, met after the best value b so far, replaces it: strictly larger (smaller when ``is_min``), or the
    first NaN (NaN is the extreme, torch's rule)."""
    if v != v:
        return b == b
    return v < b if is_min else v > b


@cuda.jit(device=True)
def _same(a, b):
    return a == b or (a != a and b != b)


@cuda.jit(device=True)
def _arg8(v0, v1, v2, v3, v4, v5, v6, v7, j, jstep, is_min, bv, bi):
    """(bv, bi) after meeting v0 .. v7 at indices j, j + jstep, ... in that order."""
    if _better(v0, bv, is_min):
        bv, bi = v0, j
    if _better(v1, bv, is_min):
        bv, bi = v1, j + jstep
    if _better(v2, bv, is_min):
        bv, bi = v2, j + 2 * jstep
    if _better(v3, bv, is_min):
        bv, bi = v3, j + 3 * jstep
    if _better(v4, bv, is_min):
        bv, bi = v4, j + 4 * jstep
    if _better(v5, bv, is_min):
        bv, bi = v5, j + 5 * jstep
    if _better(v6, bv, is_min):
        bv, bi = v6, j + 6 * jstep
    if _better(v7, bv, is_min):
        bv, bi = v7, j + 7 * jstep
    return bv, bi


@cuda.jit(device=True)
def _arg_fold(x, p, stop, step, j, jstep, is_min, bv, bi, lo):
    """(bv, bi) updated with the first best of x[p], x[p + step], ... below stop, whose indices along R are j,
    j + jstep, ...; 8 loads a pass, then checked in index order so the first best wins. The last pass is masked
    with ``lo``, which never replaces a best."""
    seven = step * uint64(7)
    while p + seven < stop:
        v0, v1, v2, v3, v4, v5, v6, v7 = _load8(x, p, step)
        bv, bi = _arg8(v0, v1, v2, v3, v4, v5, v6, v7, j, jstep, is_min, bv, bi)
        p += seven + step
        j += 8 * jstep
    if p < stop:
        v0, v1, v2, v3, v4, v5, v6, v7 = _load8_tail(x, p, step, stop, lo)
        bv, bi = _arg8(v0, v1, v2, v3, v4, v5, v6, v7, j, jstep, is_min, bv, bi)
    return bv, bi


@cuda.jit(device=True)
def _arg_group(bv, bi, is_min, G, vscratch, iscratch):
    """The group's (value, first index) from each lane's (bv, bi): the extreme value (NaN first), then the
    smallest index of a lane holding it. Lanes that saw only the identity ``lo`` hold index BIG."""
    if G == WARP:
        m = warp_min(bv, vscratch) if is_min else warp_max(bv, vscratch)
        return m, warp_min(bi if _same(bv, m) else BIG, iscratch)
    m = block_min(bv, vscratch) if is_min else block_max(bv, vscratch)
    return m, block_min(bi if _same(bv, m) else BIG, iscratch)


@cuda.jit
def _argmax_rows(vals, idx, x, R, L, G, is_min, lo):
    """vals[o, c], idx[o, c] = the max (min when ``is_min``) of chunk c of row o of x (flat (O * R,)) and the first
    index along R where it is; NaN is the max (min) and the first NaN wins. Lanes start from (lo, BIG), lo the
    identity (-inf / the smallest integer; +inf / the largest for min): when no element beats lo, every element
    equals it and the chunk's first index is the answer.

    Groups and grid as the sum rows kernel; 8 loads in flight, ~10 integer/compare instructions an element.
    8192 x 8192 fp32, dim 1: ~67 us at 4 TB/s.
    """
    vscratch = cuda.shared.array(SCRATCH, dtype=x.dtype)
    iscratch = cuda.shared.array(SCRATCH, dtype=int64)
    O, C = vals.shape
    tid, nthreads = thread_rank()
    group = tid // G
    lane = tid - group * G
    gpb = nthreads // G
    ntasks = O * C
    for base in range(cuda.blockIdx.x * gpb, ntasks, cuda.gridDim.x * gpb):
        t = base + group
        o, c, r0, r1 = _task(t, C, L, R)
        bv = lo
        bi = BIG
        if t < ntasks:
            bv, bi = _arg_fold(x, _at(o * R + r0 + lane), _at(o * R + r1), _at(G), r0 + lane, G, is_min, bv, bi,
                               lo)
        m, k = _arg_group(bv, bi, is_min, G, vscratch, iscratch)
        if t < ntasks and lane == 0:
            vals[o, c] = m
            idx[o, c] = r0 if k == BIG else k


@cuda.jit
def _argmax_merge_rows(vals, idx, pvals, pidx, G, is_min, lo):
    """vals[o, 0], idx[o, 0] = the first best of the chunk winners pvals[o, :], pidx[o, :] (chunks in row order, so
    the smallest index of the best value is the first); groups and grid as the rows kernel."""
    vscratch = cuda.shared.array(SCRATCH, dtype=pvals.dtype)
    iscratch = cuda.shared.array(SCRATCH, dtype=int64)
    O, C = pvals.shape
    tid, nthreads = thread_rank()
    group = tid // G
    lane = tid - group * G
    gpb = nthreads // G
    for base in range(cuda.blockIdx.x * gpb, O, cuda.gridDim.x * gpb):
        o = base + group
        bv = lo
        bi = BIG
        if o < O:
            for c in range(lane, C, G):
                if _better(pvals[o, c], bv, is_min):
                    bv, bi = pvals[o, c], pidx[o, c]
        m, k = _arg_group(bv, bi, is_min, G, vscratch, iscratch)
        if o < O and lane == 0:
            vals[o, 0] = m
            idx[o, 0] = pidx[o, 0] if k == BIG else k


@cuda.jit
def _argmax_cols(vals, idx, x, R, I, L, is_min, lo):
    """vals[o, c, i], idx[o, c, i] = the max (min) of rows [c * L, ...) of column i of x[o] and its first index
    along R; x: flat (O * R * I,). Block and tasks as the sum columns kernel; row 0 merges the TY slices' winners,
    the smaller index winning ties."""
    sv = cuda.shared.array(TPB, dtype=x.dtype)
    si = cuda.shared.array(TPB, dtype=int64)
    O, C, _ = vals.shape
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    TX, TY = cuda.blockDim.x, cuda.blockDim.y
    NB = (I + TX - 1) // TX
    for t in range(cuda.blockIdx.x, O * NB * C, cuda.gridDim.x):
        o, c, i, r0, r1 = _strip_task(t, C, L, R, NB, TX)
        bv = lo
        bi = BIG
        if i < I:
            bv, bi = _arg_fold(x, _at((o * R + r0 + ty) * I + i), _at((o * R + r1) * I + i), _at(TY * I), r0 + ty,
                               TY, is_min, bv, bi, lo)
        sv[ty * TX + tx] = bv
        si[ty * TX + tx] = bi
        cuda.syncthreads()  # every row slice's winner is in shared memory before row 0 merges them
        if ty == 0 and i < I:
            for k in range(1, TY):
                v = sv[k * TX + tx]
                j = si[k * TX + tx]
                if _better(v, bv, is_min) or (_same(v, bv) and j < bi):
                    bv, bi = v, j
            vals[o, c, i] = bv
            idx[o, c, i] = r0 if bi == BIG else bi
        cuda.syncthreads()  # row 0 has read shared memory before the next task overwrites it


@cuda.jit
def _argmax_merge_cols(vals, idx, pvals, pidx, is_min):
    """vals[o, i], idx[o, i] = the first best of the chunk winners pvals[o, :, i], pidx[o, :, i] (chunks in order);
    one thread per output, adjacent threads on adjacent columns."""
    t = cuda.grid(1)
    O, C, I = pvals.shape
    if t < O * I:
        o = t // I
        i = t - o * I
        bv = pvals[o, 0, i]
        bi = pidx[o, 0, i]
        for c in range(1, C):
            if _better(pvals[o, c, i], bv, is_min):
                bv, bi = pvals[o, c, i], pidx[o, c, i]
        vals[o, i] = bv
        idx[o, i] = bi


@cuda.jit
def _argmax_naive(vals, idx, x, is_min):
    """Oracle: one thread per output walking R in order, keeping the first best; x: (O, R, I)."""
    t = cuda.grid(1)
    O, R, I = x.shape
    if t < O * I:
        o = t // I
        i = t - o * I
        bv = x[o, 0, i]
        bi = 0
        for r in range(1, R):
            if _better(x[o, r, i], bv, is_min):
                bv, bi = x[o, r, i], r
        vals[o, i] = bv
        idx[o, i] = bi


@register("argmax", "cuda")
def reduce_argmax(vals, idx, x, is_min=False):
    """idx (O, I) int64 = first index along R of the max (min when ``is_min``) of x (O, R, I), NaN first; vals
    (O, I) = the values there. R > 0; dtypes float32, float64, int64."""
    O, R, I = x.shape
    lo = _identity(x.dtype, "min" if is_min else "max")
    if I == 1:
        G, L, C, grid = _rows_plan(O, R)
        pv, pi = (vals.reshape(O, 1), idx.reshape(O, 1)) if C == 1 else (empty((O, C), x.dtype),
                                                                        empty((O, C), np.int64))
        _argmax_rows[_fit(_argmax_rows, grid), TPB, stream()](pv, pi, flat(x), R, L, G, is_min, lo)
        if C > 1:
            G2, _, _, grid2 = _rows_plan(O, C, 1)
            _argmax_merge_rows[_fit(_argmax_merge_rows, grid2), TPB, stream()](vals.reshape(O, 1), idx.reshape(O, 1),
                                                                               pv, pi, G2, is_min, lo)
    else:
        block, L, C, grid = _cols_plan(O, R, I)
        pv, pi = (vals.reshape(O, 1, I), idx.reshape(O, 1, I)) if C == 1 else (empty((O, C, I), x.dtype),
                                                                               empty((O, C, I), np.int64))
        _argmax_cols[_fit(_argmax_cols, grid), block, stream()](pv, pi, flat(x), R, I, L, is_min, lo)
        if C > 1:
            _argmax_merge_cols[blocks(O * I, TPB), TPB, stream()](vals.reshape(O, I), idx.reshape(O, I), pv, pi,
                                                                  is_min)


# ------------------------------------------------------------------------------------------------ logsumexp


@cuda.jit(device=True)
def _eff(m, zero):
    """The shift logsumexp subtracts: the max itself, or 0 when it is infinite or NaN (as torch does)."""
    return m if abs(m) < math.inf else zero


@cuda.jit(device=True)
def _rescale(m, s, mnew, zero):
    """s = sum(exp(v - _eff(m))) re-expressed against _eff(mnew) (mnew >= m); an empty sum stays 0."""
    if s != 0:
        e0 = _eff(m, zero)
        e1 = _eff(mnew, zero)
        if e0 != e1:
            s = s * math.exp(float64(e0) - float64(e1))
    return s


@cuda.jit(device=True)
def _lse8(v0, v1, v2, v3, v4, v5, v6, v7, m, s, zero):
    """(m, s) after v0 .. v7: the new max, s rescaled to it once, plus the 8 exps."""
    mb = _maxnan(_maxnan(_maxnan(v0, v1), _maxnan(v2, v3)), _maxnan(_maxnan(v4, v5), _maxnan(v6, v7)))
    mb = _maxnan(m, mb)
    s = _rescale(m, s, mb, zero)
    m = mb
    e = _eff(m, zero)
    s += ((float64(math.exp(v0 - e)) + float64(math.exp(v1 - e))) +
          (float64(math.exp(v2 - e)) + float64(math.exp(v3 - e)))) + \
         ((float64(math.exp(v4 - e)) + float64(math.exp(v5 - e))) +
          (float64(math.exp(v6 - e)) + float64(math.exp(v7 - e))))
    return m, s


@cuda.jit(device=True)
def _lse_fold(x, p, stop, step, m, s, zero, lo):
    """(m, s) updated with x[p], x[p + step], ... below stop: m the running max (NaN first), s = sum(exp(v -
    _eff(m))) in float64; 8 loads a pass, one rescale a pass, exps in x's precision. The last pass is masked
    with ``lo`` = -inf (exp gives 0)."""
    seven = step * uint64(7)
    while p + seven < stop:
        v0, v1, v2, v3, v4, v5, v6, v7 = _load8(x, p, step)
        m, s = _lse8(v0, v1, v2, v3, v4, v5, v6, v7, m, s, zero)
        p += seven + step
    if p < stop:
        v0, v1, v2, v3, v4, v5, v6, v7 = _load8_tail(x, p, step, stop, lo)
        m, s = _lse8(v0, v1, v2, v3, v4, v5, v6, v7, m, s, zero)
    return m, s


@cuda.jit(device=True)
def _lse_of(m, s, zero):
    """log(s) + _eff(m), with torch's results for an empty (0: -inf) or NaN sum."""
    if s > 0:
        return math.log(s) + float64(_eff(m, zero))
    return -math.inf if s == 0 else s


@cuda.jit
def _lse_rows(a, b, x, R, L, G, lo, zero, final):
    """Rows of x (flat (O * R,)) in chunks of L. ``final`` (one chunk a row): a[o, 0] = logsumexp of row o (b
    unused). Otherwise a[o, c] = the chunk's max and b[o, c] = its sum(exp(x - shift)) (float64), merged by
    ``_lse_merge``. The group takes the max of its lanes' maxima, each lane rescales its sum to it, and the group
    sums them.

    Groups and grid as the sum rows kernel; one exp an element in x's precision (fp32: ~a dozen instructions,
    within the SM's rate at 4 TB/s). 8192 x 8192 fp32: ~67 us.
    """
    vscratch = cuda.shared.array(SCRATCH, dtype=x.dtype)
    sscratch = cuda.shared.array(SCRATCH, dtype=float64)
    O, C = a.shape
    tid, nthreads = thread_rank()
    group = tid // G
    lane = tid - group * G
    gpb = nthreads // G
    ntasks = O * C
    for base in range(cuda.blockIdx.x * gpb, ntasks, cuda.gridDim.x * gpb):
        t = base + group
        o, c, r0, r1 = _task(t, C, L, R)
        m = lo
        s = 0.0
        if t < ntasks:
            m, s = _lse_fold(x, _at(o * R + r0 + lane), _at(o * R + r1), _at(G), m, s, zero, lo)
        if G == WARP:
            mg = warp_max(m, vscratch)
            s = warp_sum(_rescale(m, s, mg, zero), sscratch)
        else:
            mg = block_max(m, vscratch)
            s = block_sum(_rescale(m, s, mg, zero), sscratch)
        if t < ntasks and lane == 0:
            if final:
                a[o, c] = _lse_of(mg, s, zero)
            else:
                a[o, c] = mg
                b[o, c] = s


@cuda.jit
def _lse_cols(a, b, x, R, I, L, lo, zero, final):
    """Columns of x (flat (O * R * I,)) in chunks of L rows; a, b: (O, C, I) as in ``_lse_rows``. Block and tasks
    as the sum columns kernel; row 0 merges the TY slices: their max first, then their rescaled sums in order."""
    sv = cuda.shared.array(TPB, dtype=x.dtype)
    ss = cuda.shared.array(TPB, dtype=float64)
    O, C, _ = a.shape
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    TX, TY = cuda.blockDim.x, cuda.blockDim.y
    NB = (I + TX - 1) // TX
    for t in range(cuda.blockIdx.x, O * NB * C, cuda.gridDim.x):
        o, c, i, r0, r1 = _strip_task(t, C, L, R, NB, TX)
        m = lo
        s = 0.0
        if i < I:
            m, s = _lse_fold(x, _at((o * R + r0 + ty) * I + i), _at((o * R + r1) * I + i), _at(TY * I), m, s, zero,
                             lo)
        sv[ty * TX + tx] = m
        ss[ty * TX + tx] = s
        cuda.syncthreads()  # every row slice's (max, sum) is in shared memory before row 0 merges them
        if ty == 0 and i < I:
            mg = m
            for k in range(1, TY):
                mg = _maxnan(mg, sv[k * TX + tx])
            s = _rescale(m, s, mg, zero)
            for k in range(1, TY):
                s += _rescale(sv[k * TX + tx], ss[k * TX + tx], mg, zero)
            if final:
                a[o, c, i] = _lse_of(mg, s, zero)
            else:
                a[o, c, i] = mg
                b[o, c, i] = s
        cuda.syncthreads()  # row 0 has read shared memory before the next task overwrites it


@cuda.jit
def _lse_merge_rows(out, pm, ps, G, lo, zero):
    """out[o, 0] = logsumexp of row o from its chunk pairs pm (maxima), ps (sums against their own shift): (O, C)
    float64. A group of G threads a row (as the rows kernels): lane maxima, the group's max, each lane's sums
    rescaled to it, the group's sum."""
    mscratch = cuda.shared.array(SCRATCH, dtype=float64)
    sscratch = cuda.shared.array(SCRATCH, dtype=float64)
    O, C = pm.shape
    tid, nthreads = thread_rank()
    group = tid // G
    lane = tid - group * G
    gpb = nthreads // G
    for base in range(cuda.blockIdx.x * gpb, O, cuda.gridDim.x * gpb):
        o = base + group
        m = float64(lo)
        if o < O:
            for c in range(lane, C, G):
                m = _maxnan(m, pm[o, c])
        mg = warp_max(m, mscratch) if G == WARP else block_max(m, mscratch)
        s = 0.0
        if o < O:
            for c in range(lane, C, G):
                s += _rescale(pm[o, c], ps[o, c], mg, zero)
        s = warp_sum(s, sscratch) if G == WARP else block_sum(s, sscratch)
        if o < O and lane == 0:
            out[o, 0] = _lse_of(mg, s, zero)


@cuda.jit
def _lse_merge(out, pm, ps, zero):
    """out[o, i] = logsumexp from the chunk pairs pm (maxima), ps (sums against their own shift): (O, C, I)
    float64; one thread per output, adjacent threads on adjacent columns (C <= LSE_MAX_CHUNKS)."""
    t = cuda.grid(1)
    O, C, I = pm.shape
    if t < O * I:
        o = t // I
        i = t - o * I
        mg = pm[o, 0, i]
        for c in range(1, C):
            mg = _maxnan(mg, pm[o, c, i])
        s = 0.0
        for c in range(C):
            s += _rescale(pm[o, c, i], ps[o, c, i], mg, zero)
        out[o, i] = _lse_of(mg, s, zero)


@cuda.jit
def _lse_naive(out, x):
    """Oracle: the max, then the sum of exp(x - shift) in float64, one thread per output; x: (O, R, I)."""
    t = cuda.grid(1)
    O, R, I = x.shape
    if t < O * I:
        o = t // I
        i = t - o * I
        m = float64(x[o, 0, i])
        for r in range(1, R):
            m = _maxnan(m, float64(x[o, r, i]))
        e = _eff(m, 0.0)
        s = 0.0
        for r in range(R):
            s += math.exp(float64(x[o, r, i]) - e)
        out[o, i] = _lse_of(m, s, 0.0)


@register("logsumexp", "cuda")
def reduce_logsumexp(out, x):
    """out (O, I) = log(sum(exp(x))) of x (O, R, I) over R (R > 0), shifted by the max as torch does."""
    O, R, I = x.shape
    lo, zero = x.dtype.type(-np.inf), x.dtype.type(0)
    if I == 1:
        G, L, C, grid = _rows_plan(O, R)
        a, b = (out.reshape(O, 1),) * 2 if C == 1 else (empty((O, C), np.float64), empty((O, C), np.float64))
        _lse_rows[_fit(_lse_rows, grid), TPB, stream()](a, b, flat(x), R, L, G, lo, zero, C == 1)
        if C > 1:
            G2, _, _, grid2 = _rows_plan(O, C, 1)
            _lse_merge_rows[_fit(_lse_merge_rows, grid2), TPB, stream()](out.reshape(O, 1), a, b, G2, lo, zero)
    else:
        block, L, C, grid = _cols_plan(O, R, I, LSE_MAX_CHUNKS)
        a, b = (out.reshape(O, 1, I),) * 2 if C == 1 else (empty((O, C, I), np.float64),
                                                           empty((O, C, I), np.float64))
        _lse_cols[_fit(_lse_cols, grid), block, stream()](a, b, flat(x), R, I, L, lo, zero, C == 1)
        if C > 1:
            _lse_merge[blocks(O * I, TPB), TPB, stream()](out.reshape(O, I), a.reshape(O, C, I), b.reshape(O, C, I),
                                                          zero)
