"""CUDA kernels of the pointwise family: one thread per output element.

The output is a flat C-contiguous 1-D view; every operand is an 8-D view broadcast to the output's shape
(``_util.pad_rank``: stride 0 along broadcast dims, any strides elsewhere), so one compiled kernel per dtype serves
every rank, broadcast and layout. Thread ``i`` unravels ``i`` over the 8-D shape and reads each operand there.
Grid: ceil(size / TPB) blocks of TPB threads.

The device math avoids the calls whose domain errors differ between the GPU and the simulator (which runs Python's
``math``): NaN/inf cases of sqrt, log, exp, fmod and floor are decided before the call.
"""

import math

import numpy as np
from numba import cuda

from .._arrays import cuda_as_strided
from .._dispatch import register
from ._util import TPB, blocks, flat, pad_rank, stream
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


@cuda.jit
def _binary_kernel(out, x, y, op, alpha):
    """Float out[i] = x[idx] <op> y[idx]; out: (M,), x, y: 8-D broadcast views; one thread per element."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        idx = _unravel(x.shape, i)
        a = x[idx]
        b = y[idx]
        if op == ADD:
            out[i] = a + alpha * b
        elif op == MUL:
            out[i] = a * b
        elif op == DIV:
            out[i] = a / b
        elif op == DIV_TRUNC:
            out[i] = _trunc(a / b)
        elif op == DIV_FLOOR:
            out[i] = _div_floor(a, b)
        elif op == POW:
            out[i] = a ** b
        elif op == MAXIMUM:
            out[i] = a if (a > b or a != a) else b
        elif op == MINIMUM:
            out[i] = a if (a < b or a != a) else b


@cuda.jit
def _binary_int_kernel(out, x, y, op, alpha):
    """Integer out[i] = x[idx] <op> y[idx] (wrap-around); shapes and grid as ``_binary_kernel``. Division by zero
    is not checked on the device (the result is unspecified, as in torch on CUDA)."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        idx = _unravel(x.shape, i)
        a = x[idx]
        b = y[idx]
        if op == ADD:
            out[i] = a + alpha * b
        elif op == MUL:
            out[i] = a * b
        elif op == DIV_TRUNC:
            if b == 0:
                out[i] = 0
            else:
                q = a // b
                if q < 0 and q * b != a:
                    q += 1
                out[i] = q
        elif op == DIV_FLOOR:
            out[i] = 0 if b == 0 else a // b
        elif op == POW:
            out[i] = _ipow(a, b)
        elif op == MAXIMUM:
            out[i] = a if a > b else b
        elif op == MINIMUM:
            out[i] = a if a < b else b


@cuda.jit
def _unary_kernel(out, x, op):
    """out[i] = f(x[idx]) for f in sqrt, exp, log, abs, neg; out: (M,), x: 8-D; one thread per element."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        a = x[_unravel(x.shape, i)]
        if op == SQRT:
            out[i] = math.nan if a < 0 else math.sqrt(a)
        elif op == EXP:
            out[i] = math.inf if a > EXP_MAX else math.exp(a)
        elif op == LOG:
            if a < 0:
                out[i] = math.nan
            elif a == 0:
                out[i] = -math.inf
            else:
                out[i] = math.log(a)
        elif op == ABS:
            out[i] = abs(a)
        elif op == NEG:
            out[i] = -a


@cuda.jit
def _where_kernel(out, cond, x, y):
    """out[i] = x[idx] if cond[idx] else y[idx]; out: (M,), the rest 8-D; one thread per element."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        idx = _unravel(x.shape, i)
        out[i] = x[idx] if cond[idx] else y[idx]


@cuda.jit
def _clamp_kernel(out, x, lo, hi):
    """out[i] = min(max(x, lo), hi) at idx, NaN anywhere giving NaN and lo > hi giving hi (torch's rule);
    out: (M,), the rest 8-D; one thread per element."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        idx = _unravel(x.shape, i)
        v = x[idx]
        m = lo[idx]
        v = m if (v < m or m != m) else v
        m = hi[idx]
        out[i] = m if (v > m or m != m) else v


_BINARY = {"add": ADD, "mul": MUL, "div": DIV, "div_trunc": DIV_TRUNC, "div_floor": DIV_FLOOR, "pow": POW,
           "maximum": MAXIMUM, "minimum": MINIMUM}
_UNARY = {"sqrt": SQRT, "exp": EXP, "log": LOG, "abs": ABS, "neg": NEG}


def _scalar(value, dtype):
    return np.array(value).astype(dtype)[()]


def _operands(out, *xs):
    """(out as a flat 1-D array, xs as 8-D views broadcast to it). When every operand is C-contiguous with out's
    shape or holds one element, all are viewed as (1, ..., 1, n) (one-element operands with stride 0), so the
    kernels' index arithmetic costs nothing; otherwise the operands keep out's shape with broadcast strides."""
    n = out.size
    if all(x.size == 1 or (x.is_c_contiguous() and tuple(x.shape) == tuple(out.shape)) for x in xs):
        views = [cuda_as_strided(x, (n,), (0,)) if x.size == 1 and n != 1 else flat(x) for x in xs]
        return (flat(out),) + tuple(pad_rank(v, (n,)) for v in views)
    return (flat(out),) + tuple(pad_rank(x, out.shape) for x in xs)


@register("pointwise_binary", "cuda")
def pointwise_binary(out, x, y, op, alpha=1):
    """out = x <op> y (see the cpu launcher); x, y of out's dtype, any strides, broadcast to out.shape."""
    kern = _binary_kernel if out.dtype.kind == "f" else _binary_int_kernel
    kern[blocks(out.size), TPB, stream()](*_operands(out, x, y), _BINARY[op], _scalar(alpha, out.dtype))


@register("pointwise_unary", "cuda")
def pointwise_unary(out, x, op):
    _unary_kernel[blocks(out.size), TPB, stream()](*_operands(out, x), _UNARY[op])


@register("where", "cuda")
def where(out, condition, x, y):
    _where_kernel[blocks(out.size), TPB, stream()](*_operands(out, condition, x, y))


@register("clamp", "cuda")
def clamp(out, x, min, max):
    _clamp_kernel[blocks(out.size), TPB, stream()](*_operands(out, x, min, max))
