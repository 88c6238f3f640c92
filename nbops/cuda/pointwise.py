"""CUDA kernels of the pointwise family.

Each op's math is one device function (``_binary_float``, ``_unary``, ...). Launches go through the grid-stride maps
of ``_util.map_kernels``: the flat kernel when every operand is C-contiguous with the output's shape or is a scalar
(0-d or one element), the box kernel when the output and operands fold to at most 3 dims (a row, column or
per-channel operand, a strided view); each thread keeps 4 loads per operand in flight. Layouts that fold to more
than 3 dims fall back to one thread per element over 8-D views (``_util.pad_rank``; thread ``i`` unravels ``i``
over the 8-D shape), which is also the maps' oracle in the tests.

The device math avoids the calls whose domain errors differ between the GPU and the simulator (which runs Python's
``math``): NaN/inf cases of sqrt, log, exp, fmod and floor are decided before the call.
"""

import math

import numpy as np
from numba import cuda

from .._dispatch import register
from ._util import TPB, blocks, flat, launch_map, map_kernels, pad_rank, stream
from .shape import _unravel

ADD, MUL, DIV, DIV_TRUNC, DIV_FLOOR, POW, MAXIMUM, MINIMUM = range(8)
SQRT, EXP, LOG, ABS, NEG = range(5)
EXACT = 4503599627370496.0  # 2**52: every float of this magnitude or more is an integer
EXP_MAX = 709.782712893384  # exp overflows float64 above this


@cuda.jit(device=True)
def _floor(q):
    if abs(q) < EXACT:
        f = float(math.floor(q))
        return f
    return q


@cuda.jit(device=True)
def _trunc(q):
    if abs(q) < EXACT:
        return float(int(q))
    return q


@cuda.jit(device=True)
def _fmod(a, b):
    """C's fmod, including its NaN/inf cases."""
    if a != a or b != b or abs(a) == math.inf or b == 0:
        return math.nan
    if abs(b) == math.inf:
        return a
    return math.fmod(a, b)


@cuda.jit(device=True)
def _div_floor(a, b):
    """torch's floor division of floats: fmod-corrected quotient, rounded to the nearest integer below."""
    if b == 0:
        return a / b
    mod = _fmod(a, b)
    div = (a - mod) / b
    if mod != 0 and (b < 0) != (mod < 0):
        div -= 1
    if div != 0:
        fl = _floor(div)
        if div - fl > 0.5:
            fl += 1
        return fl
    return math.copysign(0.0, a / b)


@cuda.jit(device=True)
def _ipow(a, b):
    """Integer a ** b with wrap-around; negative exponents give 1 / a truncated, as torch does."""
    if b < 0:
        if a == 1:
            return a
        if a == -1:
            return a if (-b) % 2 == 1 else -a
        return a - a
    r = a - a + 1
    base = a
    e = b
    while e > 0:
        if e % 2 == 1:
            r = r * base
        base = base * base
        e = e // 2
    return r


@cuda.jit(device=True)
def _binary_float(a, b, p):
    """Float a <op> b for p = (op, alpha)."""
    op, alpha = p
    if op == ADD:
        return a + alpha * b
    if op == MUL:
        return a * b
    if op == DIV:
        return a / b
    if op == DIV_TRUNC:
        return _trunc(a / b)
    if op == DIV_FLOOR:
        return _div_floor(a, b)
    if op == POW:
        return a ** b
    if op == MAXIMUM:
        return a if (a > b or a != a) else b
    return a if (a < b or a != a) else b


@cuda.jit(device=True)
def _binary_int(a, b, p):
    """Integer a <op> b for p = (op, alpha), wrapping around. Division by zero gives 0 (torch leaves the result
    unspecified on CUDA)."""
    op, alpha = p
    if op == ADD:
        return a + alpha * b
    if op == MUL:
        return a * b
    if op == DIV_TRUNC:
        if b == 0:
            return a - a
        q = a // b
        if q < 0 and q * b != a:
            q += 1
        return q
    if op == DIV_FLOOR:
        return a - a if b == 0 else a // b
    if op == POW:
        return _ipow(a, b)
    if op == MAXIMUM:
        return a if a > b else b
    return a if a < b else b


@cuda.jit(device=True)
def _unary(a, p):
    """f(a) for p = (op,), f in sqrt, exp, log, abs, neg."""
    op = p[0]
    if op == SQRT:
        return math.nan if a < 0 else math.sqrt(a)
    if op == EXP:
        return math.inf if a > EXP_MAX else math.exp(a)
    if op == LOG:
        if a < 0:
            return math.nan
        if a == 0:
            return -math.inf
        return math.log(a)
    if op == ABS:
        return abs(a)
    return -a


@cuda.jit(device=True)
def _where(c, a, b, p):
    return a if c else b


@cuda.jit(device=True)
def _clamp(v, lo, hi, p):
    """min(max(v, lo), hi), NaN anywhere giving NaN and lo > hi giving hi (torch's rule)."""
    v = lo if (v < lo or lo != lo) else v
    return hi if (v > hi or hi != hi) else v


# grid-stride maps (``_util.map_kernels``): the flat kernel for contiguous same-shape operands and scalars, the
# box kernel for layouts that fold to 3 dims (row or column broadcast, per-channel operands, strided views)
_BINARY_FLOAT_MAP = map_kernels(_binary_float, 2)
_BINARY_INT_MAP = map_kernels(_binary_int, 2)
_UNARY_MAP = map_kernels(_unary, 1)
_WHERE_MAP = map_kernels(_where, 3)
_CLAMP_MAP = map_kernels(_clamp, 3)


# the general fallback and the oracle of the maps: one thread per element of out: (M,), each operand an 8-D
# broadcast view (``pad_rank``) indexed by unravelling i; grid = ceil(M / TPB) blocks of TPB threads


@cuda.jit
def _binary_kernel(out, x, y, op, alpha):
    """Float out[i] = x[idx] <op> y[idx]."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        idx = _unravel(x.shape, i)
        out[i] = _binary_float(x[idx], y[idx], (op, alpha))


@cuda.jit
def _binary_int_kernel(out, x, y, op, alpha):
    """Integer out[i] = x[idx] <op> y[idx] (wrap-around)."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        idx = _unravel(x.shape, i)
        out[i] = _binary_int(x[idx], y[idx], (op, alpha))


@cuda.jit
def _unary_kernel(out, x, op):
    """out[i] = f(x[idx]) for f in sqrt, exp, log, abs, neg."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = _unary(x[_unravel(x.shape, i)], (op,))


@cuda.jit
def _where_kernel(out, cond, x, y):
    """out[i] = x[idx] if cond[idx] else y[idx]."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        idx = _unravel(x.shape, i)
        out[i] = x[idx] if cond[idx] else y[idx]


@cuda.jit
def _clamp_kernel(out, x, lo, hi):
    """out[i] = clamp(x[idx], lo[idx], hi[idx])."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        idx = _unravel(x.shape, i)
        out[i] = _clamp(x[idx], lo[idx], hi[idx], ())


_BINARY = {"add": ADD, "mul": MUL, "div": DIV, "div_trunc": DIV_TRUNC, "div_floor": DIV_FLOOR, "pow": POW,
           "maximum": MAXIMUM, "minimum": MINIMUM}
_UNARY = {"sqrt": SQRT, "exp": EXP, "log": LOG, "abs": ABS, "neg": NEG}


def _scalar(value, dtype):
    return np.array(value).astype(dtype)[()]


def _operands(out, *xs):
    """(out as a flat 1-D array, xs as 8-D views broadcast to it) for the fallback kernels."""
    return (flat(out),) + tuple(pad_rank(x, out.shape) for x in xs)


def _launch(maps, kernel, out, xs, p, *consts):
    """The grid-stride map where the layout allows (``_util.launch_map``), else the 8-D ``kernel``."""
    if not launch_map(maps, out, xs, p):
        kernel[blocks(out.size), TPB, stream()](*_operands(out, *xs), *consts)


@register("pointwise_binary", "cuda")
def pointwise_binary(out, x, y, op, alpha=1):
    """out = x <op> y (see the cpu launcher); x, y of out's dtype, any strides, broadcast to out.shape."""
    code, a = _BINARY[op], _scalar(alpha, out.dtype)
    if out.dtype.kind == "f":
        _launch(_BINARY_FLOAT_MAP, _binary_kernel, out, (x, y), (code, a), code, a)
    else:
        _launch(_BINARY_INT_MAP, _binary_int_kernel, out, (x, y), (code, a), code, a)


@register("pointwise_unary", "cuda")
def pointwise_unary(out, x, op):
    _launch(_UNARY_MAP, _unary_kernel, out, (x,), (_UNARY[op],), _UNARY[op])


@register("where", "cuda")
def where(out, condition, x, y):
    _launch(_WHERE_MAP, _where_kernel, out, (condition, x, y), ())


@register("clamp", "cuda")
def clamp(out, x, min, max):
    _launch(_CLAMP_MAP, _clamp_kernel, out, (x, min, max), ())
