"""CUDA kernels of the activation family.

Elementwise activations: grid-stride maps (``_util.map_kernels``, 4 loads in flight per thread) over flat,
C-contiguous 1-D views, each calling one small device function that holds the activation's formula. Parameters
arrive cast to the input's dtype. Where a formula's literal constants are Python floats, float32 inputs are
evaluated in float64 and rounded once on the store (at least as accurate as torch's float32 kernels); math
functions of a float32 argument (exp, tanh, log1p, expm1) run in float32, as torch's. gelu takes its constants in
the input's dtype, so its erf / tanh run in float32 for float32 (as torch's): in float64 they cost ~70 fp64
operations per element, about twice an H200's memory time (fp64 ~17 T FMA/s against 8 bytes per element at
4 TB/s).

softmax / log_softmax see the input as (O, D, K) with D the reduced dim. Each row is folded into a running max and
a rescaled sum of exp(x - max) in one read pass (online softmax), then written in a second pass. Accumulation is
in float64.
"""

import math

import numpy as np
from numba import config, cuda, float64, from_dtype

from .._dispatch import register
from ._block import SCRATCH, block_max, block_sum, warp_max, warp_sum
from ._util import TPB, blocks, flat, launch_map, map_grid, map_kernels, sm_count, stream
from .shape import copy

WARP_ROWS = 8  # rows per block of the warp-per-row softmax (one per warp of a 256-thread block)
WARP_ROW_MAX = 1024  # longest row given to one warp (32 elements per lane); longer rows get a block each
ROW_TPB = 64 if config.ENABLE_CUDASIM else 256  # threads of the block-per-row softmax
COL_TPB = 32  # columns (K) per block of the inner-dim softmax: one warp reads 32 neighbouring elements
# most threads sharing one column of the inner-dim softmax: (32, 32) blocks hold 1024 threads at 48 registers for
# float32 (ptxas sm_90); float64's 62 registers leave no margin under the 64K per block, so it gets half as many
MAX_DEPTH = 8 if config.ENABLE_CUDASIM else 32
SOFTMAX_BLOCKS_PER_SM = 8  # the row softmaxes' grids: at most this many blocks per SM, rows grid-strided
GELU = (0.7071067811865476, 0.5, 1.0)  # gelu's constants: 1/sqrt(2), 1/2, 1
GELU_TANH = (0.7978845608028654, 0.044715, 0.5, 1.0)  # sqrt(2/pi), the cubic's coefficient, 1/2, 1


# ----------------------------------------------------------------------------------------------------------------
# one device function per activation; NaN propagates through each as in torch


@cuda.jit(device=True)
def _hardtanh(v, lo, hi):
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v


@cuda.jit(device=True)
def _leaky_relu(v, slope):
    return v if v > 0 else v * slope


@cuda.jit(device=True)
def _elu(v, negcoef, poscoef, negiptcoef):
    return math.expm1(v * negiptcoef) * negcoef if v <= 0 else v * poscoef


@cuda.jit(device=True)
def _gelu(v, c):
    """v/2 (1 + erf(v / sqrt(2))) with c = GELU in v's dtype."""
    return v * c[1] * (c[2] + math.erf(v * c[0]))


@cuda.jit(device=True)
def _gelu_tanh(v, c):
    """v/2 (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3))) with c = GELU_TANH in v's dtype."""
    return c[2] * v * (c[3] + math.tanh(c[0] * (v + c[1] * v * v * v)))


@cuda.jit(device=True)
def _sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


@cuda.jit(device=True)
def _silu(v):
    return v / (1.0 + math.exp(-v))


@cuda.jit(device=True)
def _mish(v):
    """v * tanh(softplus(v)); beyond softplus' threshold of 20, log1p(exp(v)) rounds to v and tanh to 1 in both
    float types, so the exp (which would overflow for large v) is skipped."""
    return v * math.tanh(v if v > 20.0 else math.log1p(math.exp(v)))


@cuda.jit(device=True)
def _hardsigmoid(v):
    return _hardtanh(v + 3.0, 0.0, 6.0) / 6.0


@cuda.jit(device=True)
def _hardswish(v):
    return v * _hardtanh(v + 3.0, 0.0, 6.0) / 6.0


@cuda.jit(device=True)
def _softplus(v, beta, threshold):
    z = v * beta
    return v if z > threshold else math.log1p(math.exp(z)) / beta


@cuda.jit(device=True)
def _softsign(v):
    return v / (1.0 + abs(v))


# ----------------------------------------------------------------------------------------------------------------
# elementwise maps: f(v, p) with p the tuple of the activation's parameters, run by ``_util.map_kernels``' flat
# kernel over x, out: (M,) C-contiguous (grid-stride, 4 loads in flight per thread; grid = ``map_grid(M)``)


@cuda.jit(device=True)
def _relu_p(v, p):
    return 0 if v < 0 else v


@cuda.jit(device=True)
def _hardtanh_p(v, p):
    return _hardtanh(v, p[0], p[1])


@cuda.jit(device=True)
def _leaky_relu_p(v, p):
    return _leaky_relu(v, p[0])


@cuda.jit(device=True)
def _elu_p(v, p):
    return _elu(v, p[0], p[1], p[2])


@cuda.jit(device=True)
def _gelu_p(v, p):
    return _gelu(v, p)


@cuda.jit(device=True)
def _gelu_tanh_p(v, p):
    return _gelu_tanh(v, p)


@cuda.jit(device=True)
def _sigmoid_p(v, p):
    return _sigmoid(v)


@cuda.jit(device=True)
def _silu_p(v, p):
    return _silu(v)


@cuda.jit(device=True)
def _mish_p(v, p):
    return _mish(v)


@cuda.jit(device=True)
def _tanh_p(v, p):
    return math.tanh(v)


@cuda.jit(device=True)
def _hardsigmoid_p(v, p):
    return _hardsigmoid(v)


@cuda.jit(device=True)
def _hardswish_p(v, p):
    return _hardswish(v)


@cuda.jit(device=True)
def _softplus_p(v, p):
    return _softplus(v, p[0], p[1])


@cuda.jit(device=True)
def _softsign_p(v, p):
    return _softsign(v)


_MAPS = {name: map_kernels(f, 1)[0] for name, f in (
    ("relu", _relu_p), ("hardtanh", _hardtanh_p), ("leaky_relu", _leaky_relu_p), ("elu", _elu_p),
    ("gelu", _gelu_p), ("gelu_tanh", _gelu_tanh_p), ("sigmoid", _sigmoid_p), ("silu", _silu_p), ("mish", _mish_p),
    ("tanh", _tanh_p), ("hardsigmoid", _hardsigmoid_p), ("hardswish", _hardswish_p), ("softplus", _softplus_p),
    ("softsign", _softsign_p))}


@cuda.jit(device=True)
def _glu_p(a, b, p):
    return a * _sigmoid(b)


@cuda.jit(device=True)
def _prelu_p(v, w, p):
    return v if v > 0 else w * v


_GLU_MAP = map_kernels(_glu_p, 2)  # out (O, L) from the halves x[:, 0, :] and x[:, 1, :] (box kernel: strided rows)
_PRELU_MAP = map_kernels(_prelu_p, 2)  # out (N, C, L) from x and weight as a (C, 1) per-channel operand


@cuda.jit
def _relu_naive(out, x):
    """The maps' oracle: out[i] = relu(x[i]), one thread per element, grid = ceil(M / TPB) blocks of TPB."""
    i = cuda.grid(1)
    if i < x.shape[0]:
        out[i] = _relu_p(x[i], ())


@cuda.jit
def _glu_kernel(out, x):
    """out[o, j] = x[o, 0, j] * sigmoid(x[o, 1, j]); x: (O, 2, L), out: (O, L); one thread per output element,
    grid = ceil(O * L / TPB) blocks of TPB threads."""
    i = cuda.grid(1)
    O, L = out.shape
    if i < O * L:
        o = i // L
        j = i - o * L
        out[o, j] = x[o, 0, j] * _sigmoid(x[o, 1, j])


@cuda.jit
def _prelu_kernel(out, x, weight):
    """out[n, c, l] = x if x > 0 else weight[c] * x; x, out: (N, C, L), weight: (C,); one thread per element,
    grid = ceil(N * C * L / TPB) blocks of TPB threads."""
    i = cuda.grid(1)
    N, C, L = x.shape
    if i < N * C * L:
        row = i // L
        n = row // C
        c = row - n * C
        l = i - row * L  # noqa: E741
        v = x[n, c, l]
        out[n, c, l] = v if v > 0 else weight[c] * v


# ----------------------------------------------------------------------------------------------------------------
# softmax / log_softmax


@cuda.jit(device=True)
def _rescale(s, m_old, m_new):
    """A sum of exp(v - m_old) as a sum of exp(v - m_new), m_new >= m_old (unchanged when equal, which keeps an
    all -inf prefix at 0 rather than NaN)."""
    return s if m_new == m_old else s * math.exp(m_old - m_new)


@cuda.jit(device=True)
def _online(m, s, v):
    """Fold element ``v`` into the running max ``m`` and sum ``s``: -inf adds nothing, NaN makes the sum NaN,
    +inf too (v - v), as torch's rows holding NaN or +inf come out NaN."""
    if v > m:
        s = _rescale(s, m, v) + (1.0 + (v - v))
        m = v
    elif v > -math.inf:
        s += math.exp(v - m)
    elif v != v:
        s += v
    return m, s


@cuda.jit(device=True)
def _combine(m1, s1, m2, s2):
    """Merge two running (max, sum) states."""
    m = m1 if m1 > m2 else m2
    return m, _rescale(s1, m1, m) + _rescale(s2, m2, m)


@cuda.jit(device=True)
def _softmax_value(v, m, c, log):
    """One output element from the row's max ``m`` and ``c``: log(sum) for log_softmax, 1 / sum for softmax. A
    row with no finite max (all -inf, or NaN) has m = -inf or a NaN sum, and gives NaN (v - m is NaN), as torch."""
    if log:
        return (v - m) - c
    return math.exp(v - m) * c


@cuda.jit(device=True)
def _fold(x, r, start, step, D, m, s):
    """Fold x[r, start], x[r, start + step], ... (below D) into the running (max, sum) state (m, s); loads 4
    elements before folding them, so 4 loads are in flight."""
    d = start
    while d + 3 * step < D:
        v0, v1, v2, v3 = x[r, d], x[r, d + step], x[r, d + 2 * step], x[r, d + 3 * step]
        m, s = _online(m, s, v0)
        m, s = _online(m, s, v1)
        m, s = _online(m, s, v2)
        m, s = _online(m, s, v3)
        d += 4 * step
    while d < D:
        m, s = _online(m, s, x[r, d])
        d += step
    return m, s


@cuda.jit(device=True)
def _emit(out, x, r, start, step, D, m, s, log):
    """Write out[r, d] for d = start, start + step, ... (below D) from the row's max ``m`` and sum ``s``; 4 loads in
    flight."""
    c = math.log(s) if log else 1.0 / s
    d = start
    while d + 3 * step < D:
        v0, v1, v2, v3 = x[r, d], x[r, d + step], x[r, d + 2 * step], x[r, d + 3 * step]
        out[r, d] = _softmax_value(v0, m, c, log)
        out[r, d + step] = _softmax_value(v1, m, c, log)
        out[r, d + 2 * step] = _softmax_value(v2, m, c, log)
        out[r, d + 3 * step] = _softmax_value(v3, m, c, log)
        d += 4 * step
    while d < D:
        out[r, d] = _softmax_value(x[r, d], m, c, log)
        d += step


_ROWS = {}  # input dtype -> (warp-per-row kernel, block-per-row kernel, inner-dim kernel)


def _softmax_kernels(dtype):
    """The softmax kernels for inputs of numpy ``dtype``, compiled once: their running max lives in the input's
    dtype (exp evaluated in it, as torch does; the max is an input value, so nothing is rounded), the sum in float64.

    warp_rows[grid, (32 * WARP_ROWS)](out, x, lo, log): x, out (R, D) with D <= WARP_ROW_MAX. Warp w of block b
        owns row r = b * WARP_ROWS + w (then r + gridDim * WARP_ROWS, ...): lane l folds x[r, l], x[r, l + 32], ...
        (4 loads in flight) into a running (max, sum); the warp merges the lanes' states with ``warp_max`` and
        ``warp_sum`` (sums rescaled to the warp's max) and writes the row in a second pass, which reads it from L1/L2.
        Grid: min(ceil(R / WARP_ROWS), SMs x 8) blocks.
    block_rows[grid, ROW_TPB](out, x, lo, log): the same with one block per row (rows longer than a warp can hold
        in flight), merged with ``block_max`` and ``block_sum``; grid: min(R, SMs x 8) blocks.
    (8192, 4096) fp32: 128 MiB read, 128 MiB written (the second read mostly from L2): ~70 us at 4 TB/s.
    cols[grid, (COL_TPB, depth)](out, x, lo, log): x, out (O, D, K) reduced along D. Block b serves column
        k = (b % nkb) * COL_TPB + tk of o = b // nkb (nkb = ceil(K / COL_TPB)); thread (tk, td) folds rows td,
        td + depth, ... (4 loads in flight; a warp reads 32 neighbouring k: coalesced); the depth states of a column
        merge in a shared-memory tree; each thread then writes the rows it read. Grid: O * nkb blocks. A large
        tensor's second read comes from HBM again (a block's columns span all D rows), so this moves 3 bytes per
        2 counted: at best 2/3 of copy bandwidth. (32, 4096, 256) fp32: 256 MiB counted, ~100 us at 4 TB/s.
    ``lo`` is -inf in the input's dtype (the empty state's max).
    """
    kerns = _ROWS.get(dtype)
    if kerns is not None:
        return kerns
    ft = from_dtype(dtype)

    @cuda.jit
    def warp_rows(out, x, lo, log):
        R, D = x.shape
        tid = cuda.threadIdx.x
        lane = tid & 31
        sm = cuda.shared.array(SCRATCH, ft)
        ss = cuda.shared.array(SCRATCH, float64)
        for base in range(cuda.blockIdx.x * WARP_ROWS, R, cuda.gridDim.x * WARP_ROWS):  # the same trips per block
            r = base + (tid >> 5)
            m, s = lo, 0.0
            if r < R:
                m, s = _fold(x, r, lane, 32, D, m, s)
            mx = warp_max(m, sm)
            total = warp_sum(_rescale(s, m, mx), ss)
            if r < R:
                _emit(out, x, r, lane, 32, D, mx, total, log)

    @cuda.jit
    def block_rows(out, x, lo, log):
        R, D = x.shape
        tid = cuda.threadIdx.x
        sm = cuda.shared.array(SCRATCH, ft)
        ss = cuda.shared.array(SCRATCH, float64)
        for r in range(cuda.blockIdx.x, R, cuda.gridDim.x):
            m, s = _fold(x, r, tid, ROW_TPB, D, lo, 0.0)
            mx = block_max(m, sm)
            total = block_sum(_rescale(s, m, mx), ss)
            _emit(out, x, r, tid, ROW_TPB, D, mx, total, log)

    @cuda.jit
    def cols(out, x, lo, log):
        tk = cuda.threadIdx.x
        td = cuda.threadIdx.y
        depth = cuda.blockDim.y
        O, D, K = x.shape
        nkb = (K + COL_TPB - 1) // COL_TPB
        o = cuda.blockIdx.x // nkb
        k = (cuda.blockIdx.x - o * nkb) * COL_TPB + tk
        sm = cuda.shared.array((MAX_DEPTH, COL_TPB), ft)
        ss = cuda.shared.array((MAX_DEPTH, COL_TPB), float64)
        m, s = lo, 0.0
        if k < K:
            d = td
            while d + 3 * depth < D:
                v0, v1, v2, v3 = x[o, d, k], x[o, d + depth, k], x[o, d + 2 * depth, k], x[o, d + 3 * depth, k]
                m, s = _online(m, s, v0)
                m, s = _online(m, s, v1)
                m, s = _online(m, s, v2)
                m, s = _online(m, s, v3)
                d += 4 * depth
            while d < D:
                m, s = _online(m, s, x[o, d, k])
                d += depth
        sm[td, tk] = m
        ss[td, tk] = s
        cuda.syncthreads()  # every slice's state is in shared memory before the merge reads them
        w = depth // 2
        while w > 0:
            if td < w:
                sm[td, tk], ss[td, tk] = _combine(sm[td, tk], ss[td, tk], sm[td + w, tk], ss[td + w, tk])
            cuda.syncthreads()  # this level's merged states are visible before the next level reads them
            w //= 2
        m = sm[0, tk]
        s = ss[0, tk]
        if k < K:
            c = math.log(s) if log else 1.0 / s
            d = td
            while d + 3 * depth < D:
                v0, v1, v2, v3 = x[o, d, k], x[o, d + depth, k], x[o, d + 2 * depth, k], x[o, d + 3 * depth, k]
                out[o, d, k] = _softmax_value(v0, m, c, log)
                out[o, d + depth, k] = _softmax_value(v1, m, c, log)
                out[o, d + 2 * depth, k] = _softmax_value(v2, m, c, log)
                out[o, d + 3 * depth, k] = _softmax_value(v3, m, c, log)
                d += 4 * depth
            while d < D:
                out[o, d, k] = _softmax_value(x[o, d, k], m, c, log)
                d += depth

    kerns = _ROWS[dtype] = (warp_rows, block_rows, cols)
    return kerns


@cuda.jit
def _softmax_naive(out, x, log):
    """The oracle of the softmax kernels: x, out (R, D); one thread per row (grid = ceil(R / TPB) blocks), folding
    the row into a float64 (max, sum), then writing it."""
    r = cuda.grid(1)
    if r < x.shape[0]:
        m = -math.inf
        s = 0.0
        for d in range(x.shape[1]):
            m, s = _online(m, s, x[r, d])
        sh = m if m > -math.inf else 0.0
        for d in range(x.shape[1]):
            out[r, d] = (x[r, d] - sh) - math.log(s) if log else math.exp(x[r, d] - sh) / s


# ----------------------------------------------------------------------------------------------------------------
# launchers


def _scalar(x, value):
    """A parameter as a scalar of x's dtype, as torch casts scalar arguments to the op's dtype."""
    return x.dtype.type(value)


def _map(name, out, x, *params):
    """out = f(x, params) over x, out: C-contiguous of one shape."""
    _MAPS[name][map_grid(x.size), TPB, stream()](flat(out), flat(x), 1, params)


@register("relu", "cuda")
def relu(out, x):
    _map("relu", out, x)


@register("hardtanh", "cuda")
def hardtanh(out, x, min_val, max_val):
    _map("hardtanh", out, x, _scalar(x, min_val), _scalar(x, max_val))


@register("leaky_relu", "cuda")
def leaky_relu(out, x, negative_slope):
    _map("leaky_relu", out, x, _scalar(x, negative_slope))


@register("elu", "cuda")
def elu(out, x, alpha, scale, input_scale):
    _map("elu", out, x, _scalar(x, alpha * scale), _scalar(x, scale), _scalar(x, input_scale))


@register("gelu", "cuda")
def gelu(out, x, approximate):
    if approximate == "tanh":
        _map("gelu_tanh", out, x, *(_scalar(x, c) for c in GELU_TANH))
    else:
        _map("gelu", out, x, *(_scalar(x, c) for c in GELU))


@register("sigmoid", "cuda")
def sigmoid(out, x):
    _map("sigmoid", out, x)


@register("silu", "cuda")
def silu(out, x):
    _map("silu", out, x)


@register("mish", "cuda")
def mish(out, x):
    _map("mish", out, x)


@register("tanh", "cuda")
def tanh(out, x):
    _map("tanh", out, x)


@register("hardsigmoid", "cuda")
def hardsigmoid(out, x):
    _map("hardsigmoid", out, x)


@register("hardswish", "cuda")
def hardswish(out, x):
    _map("hardswish", out, x)


@register("softplus", "cuda")
def softplus(out, x, beta, threshold):
    _map("softplus", out, x, _scalar(x, beta), _scalar(x, threshold))


@register("softsign", "cuda")
def softsign(out, x):
    _map("softsign", out, x)


@register("glu", "cuda")
def glu(out, x):
    """out: (O, L), x: (O, 2, L): the box map over the two halves; ``_glu_kernel`` (one thread per element) is its
    oracle and the fallback."""
    if not launch_map(_GLU_MAP, out, (x[:, 0, :], x[:, 1, :])):
        _glu_kernel[blocks(out.size), TPB, stream()](out, x)


@register("prelu", "cuda")
def prelu(out, x, weight):
    """out, x: (N, C, L), weight: (C,): the flat map for one weight, else the box map with the weight as a
    per-channel operand; ``_prelu_kernel`` (one thread per element) is its oracle and the fallback."""
    if not launch_map(_PRELU_MAP, out, (x, weight.reshape(weight.size, 1))):
        _prelu_kernel[blocks(x.size), TPB, stream()](out, x, weight)


@register("softmax", "cuda")
def softmax(out, x, log):
    """out, x: (O, D, K); ``log`` selects log_softmax. K == 1: a warp per row up to WARP_ROW_MAX elements, a block
    per row beyond; else the column kernel with up to MAX_DEPTH threads per column (half that for float64), as many
    as leave each about 4 rows or more."""
    O, D, K = x.shape
    warp_rows, block_rows, cols = _softmax_kernels(np.dtype(x.dtype))
    lo = x.dtype.type(-np.inf)
    cap = sm_count() * SOFTMAX_BLOCKS_PER_SM
    if K == 1:
        o2, x2 = out.reshape(O, D), x.reshape(O, D)
        if D <= WARP_ROW_MAX:
            warp_rows[min(blocks(O, WARP_ROWS), cap), 32 * WARP_ROWS, stream()](o2, x2, lo, log)
        else:
            block_rows[min(O, cap), ROW_TPB, stream()](o2, x2, lo, log)
    else:
        depth, deepest = 1, MAX_DEPTH if x.dtype.itemsize <= 4 else MAX_DEPTH // 2
        while depth < deepest and 4 * depth < D:
            depth *= 2
        cols[O * ((K + COL_TPB - 1) // COL_TPB), (COL_TPB, depth), stream()](out, x, lo, log)


@register("store_strided", "cuda")
def store_strided(out, x):
    """out[...] = x for an ``out`` of any strides (the write-back of an in-place op on a non-contiguous input)."""
    copy(out, x)
