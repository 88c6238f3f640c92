"""CUDA kernels of the activation family.

Elementwise activations: grid-stride maps (``_util.map_kernels``, 4 loads in flight per thread) over flat,
C-contiguous 1-D views, each calling one small device function that holds the activation's formula. Parameters
arrive cast to the input's dtype; the formulas' literal constants are Python floats, so float32 inputs are
evaluated in float64 and rounded once on the store (at least as accurate as torch's float32 kernels; these kernels
are bound by memory bandwidth, not by the arithmetic).

softmax / log_softmax see the input as (O, D, K) with D the reduced dim. Each row is folded into a running max and
a rescaled sum of exp(x - max) in one read pass (online softmax), then written in a second pass. Accumulation is
in float64.
"""

import math

from numba import cuda, float64

from .._dispatch import register
from ._util import TPB, blocks, flat, map_grid, map_kernels, stream
from .shape import copy

ROW_TPB = 128  # threads that share one softmax row along the last dim (a power of two: tree reduction)
COL_TPB = 32  # columns (K) per block of the inner-dim softmax: one warp reads 32 neighbouring elements
DEPTH_TPB = 8  # threads that share one column of the inner-dim softmax, each folding every DEPTH_TPB-th row


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
def _gelu(v):
    return v * 0.5 * (1.0 + math.erf(v * 0.7071067811865476))


@cuda.jit(device=True)
def _gelu_tanh(v):
    return 0.5 * v * (1.0 + math.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))


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
    return _gelu(v)


@cuda.jit(device=True)
def _gelu_tanh_p(v, p):
    return _gelu_tanh(v)


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
def _softmax_value(v, m, s, log):
    """One output element from the row's max ``m`` and sum ``s`` (max taken as 0 for a row with no finite max, so
    that a row of -inf gives 0 / 0 = NaN as torch)."""
    sh = m if m > -math.inf else 0.0
    if log:
        return (v - sh) - math.log(s)
    return math.exp(v - sh) / s


@cuda.jit
def _softmax_rows_kernel(out, x, log):
    """Softmax (``log`` False) or log_softmax (True) along the last dim; x, out: (R, D).

    One block of ROW_TPB threads per row (grid = R blocks): thread t folds elements t, t + ROW_TPB, ... into a
    running (max, sum), the block merges the states with a tree reduction in shared memory, then every thread
    writes its elements.
    """
    r = cuda.blockIdx.x
    t = cuda.threadIdx.x
    R, D = x.shape
    sm = cuda.shared.array(ROW_TPB, float64)
    ss = cuda.shared.array(ROW_TPB, float64)
    m = -math.inf
    s = 0.0
    if r < R:
        for d in range(t, D, ROW_TPB):
            m, s = _online(m, s, x[r, d])
    sm[t] = m
    ss[t] = s
    cuda.syncthreads()  # every thread's state is in shared memory before the reduction reads its neighbours'
    w = ROW_TPB // 2
    while w > 0:
        if t < w:
            sm[t], ss[t] = _combine(sm[t], ss[t], sm[t + w], ss[t + w])
        cuda.syncthreads()  # this level's merged states are visible before the next level reads them
        w //= 2
    m = sm[0]
    s = ss[0]
    if r < R:
        for d in range(t, D, ROW_TPB):
            out[r, d] = _softmax_value(x[r, d], m, s, log)


@cuda.jit
def _softmax_cols_kernel(out, x, log):
    """Softmax (``log`` False) or log_softmax (True) along axis 1; x, out: (O, D, K).

    grid = O * ceil(K / COL_TPB) blocks of (COL_TPB, DEPTH_TPB) threads; block b serves columns
    k0 = (b % ceil(K / COL_TPB)) * COL_TPB ... of o = b // ceil(K / COL_TPB). Thread (tk, td) folds rows td,
    td + DEPTH_TPB, ... of column k0 + tk into a running (max, sum) (neighbouring tk read neighbouring k, so loads
    coalesce); the DEPTH_TPB states of a column merge in shared memory; each thread then writes the rows it read.
    """
    tk = cuda.threadIdx.x
    td = cuda.threadIdx.y
    O, D, K = x.shape
    nkb = (K + COL_TPB - 1) // COL_TPB
    o = cuda.blockIdx.x // nkb
    k = (cuda.blockIdx.x - o * nkb) * COL_TPB + tk
    sm = cuda.shared.array((DEPTH_TPB, COL_TPB), float64)
    ss = cuda.shared.array((DEPTH_TPB, COL_TPB), float64)
    m = -math.inf
    s = 0.0
    if o < O and k < K:
        for d in range(td, D, DEPTH_TPB):
            m, s = _online(m, s, x[o, d, k])
    sm[td, tk] = m
    ss[td, tk] = s
    cuda.syncthreads()  # every slice's state is in shared memory before the merge reads them
    if td == 0:
        for j in range(1, DEPTH_TPB):
            m, s = _combine(m, s, sm[j, tk], ss[j, tk])
        sm[0, tk] = m
        ss[0, tk] = s
    cuda.syncthreads()  # each column's merged state is visible to all of its threads before the write pass
    m = sm[0, tk]
    s = ss[0, tk]
    if o < O and k < K:
        for d in range(td, D, DEPTH_TPB):
            out[o, d, k] = _softmax_value(x[o, d, k], m, s, log)


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
    _map("gelu_tanh" if approximate == "tanh" else "gelu", out, x)


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
    """out: (O, L), x: (O, 2, L)."""
    _glu_kernel[blocks(out.size), TPB, stream()](out, x)


@register("prelu", "cuda")
def prelu(out, x, weight):
    """out, x: (N, C, L), weight: (C,)."""
    _prelu_kernel[blocks(x.size), TPB, stream()](out, x, weight)


@register("softmax", "cuda")
def softmax(out, x, log):
    """out, x: (O, D, K); ``log`` selects log_softmax."""
    O, D, K = x.shape
    if K == 1:
        _softmax_rows_kernel[O, ROW_TPB, stream()](out.reshape(O, D), x.reshape(O, D), log)
    else:
        _softmax_cols_kernel[O * ((K + COL_TPB - 1) // COL_TPB), (COL_TPB, DEPTH_TPB), stream()](out, x, log)


@register("store_strided", "cuda")
def store_strided(out, x):
    """out[...] = x for an ``out`` of any strides (the write-back of an in-place op on a non-contiguous input)."""
    copy(out, x)
