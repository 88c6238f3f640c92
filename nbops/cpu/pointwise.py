"""CPU kernels of the pointwise family.

The launcher broadcasts the operands to the output's shape, merges dimensions that are contiguous for every operand,
pads the result to 8 dims with leading 1s and makes sure each operand's innermost stride is 0 (broadcast) or 1
(contiguous), copying an operand that has any other inner stride. Each kernel then takes every array as a flat,
C-contiguous 1-D buffer starting at its first element, plus ``shape`` (8,) and ``strides`` (operands, 8) in elements
(row 0: the C-contiguous output). One compiled signature per kernel and dtype serves every rank, broadcast and
layout. A row of a contiguous operand is a C-contiguous slice of its buffer and a row of a broadcast operand a small
per-block buffer filled with its one value, so every inner loop runs over C-contiguous slices and vectorises.

A prange iteration handles one block: ``CHUNK`` consecutive elements of one row when rows are long, or
``CHUNK // N`` whole rows when rows are short (N = the merged innermost size).

Kernels use ``error_model="numpy"``: float division by zero gives inf/NaN as in torch, never an exception.
Integer division by zero is refused by the public function before launch (torch raises too).
"""

import numpy as np
from numba import njit, prange, types
from numba.np.numpy_support import from_dtype

from .._dispatch import register
from ._util import Compiled, run_parallel, wide_vectors
from .activation import _exp32

CHUNK = 16384  # elements per prange iteration: amortises scheduling, small enough to balance two to many threads
RANK = 8  # every operand is viewed with this many dims

# op codes (the launchers map the public op names to them)
ADD, MUL, DIV, DIV_TRUNC, DIV_FLOOR, POW, MAXIMUM, MINIMUM = range(8)
SQRT, EXP, LOG, ABS, NEG, EXP_F32 = range(6)

# float32 exp without libm (numba has no vector expf unless Intel SVML is installed): the activation family's
# ``_exp32``, whose 2**n comes from exponent bits (a table of powers of two, the gather this family used before,
# ran exp 4096^2 at 0.69-0.77x torch: 3.6 ns an element a core against sigmoid's 2.7 with a division more).


@njit(cache=True)
def _plan(shape):
    """(rows, N, rows per block, chunks per row, blocks) for an 8-D output ``shape``."""
    rows = 1
    for d in range(RANK - 1):
        rows *= shape[d]
    N = shape[RANK - 1]
    if N >= CHUNK:
        per = 1
        nch = (N + CHUNK - 1) // CHUNK
        return rows, N, per, nch, rows * nch
    per = max(1, CHUNK // max(N, 1))
    return rows, N, per, 1, (rows + per - 1) // per


@njit(cache=True)
def _block(t, rows, N, per, nch):
    """Rows [r0, r1) and columns [lo, hi) of block ``t``."""
    c = t % nch
    r0 = (t // nch) * per
    r1 = min(r0 + per, rows)
    lo = c * CHUNK
    hi = min(lo + CHUNK, N)
    return r0, r1, lo, hi


@njit(cache=True)
def _offset(r, shape, st):
    """Element offset, under strides ``st`` (8,), of the start of row ``r`` of an 8-D ``shape`` (C order)."""
    off = 0
    for d in range(RANK - 2, -1, -1):
        if shape[d] != 1:  # merged shapes are mostly leading 1s: skip their divisions
            off += (r % shape[d]) * st[d]
            r //= shape[d]
    return off


@njit(cache=True)
def _row(buf, r, shape, st, lo, hi, scratch):
    """Columns [lo, hi) of row ``r`` of an operand as a C-contiguous 1-D array: a slice of its flat ``buf`` when
    its inner stride is 1, else ``scratch`` filled with its single value (inner stride 0)."""
    off = _offset(r, shape, st)
    if st[RANK - 1] == 1:
        return buf[off + lo:off + hi]
    scratch[:] = buf[off]
    return scratch[:hi - lo]


@njit(cache=True)
def _scratch(st, n, like):
    """A per-block buffer for a broadcast operand (empty when the operand is contiguous along rows)."""
    return np.empty(n if st[RANK - 1] == 0 else 0, like.dtype)


@njit(cache=True, error_model="numpy")
def _ipow(a, b):
    """Integer ``a ** b`` with wrap-around; negative exponents give 1 / a truncated, as torch does."""
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


@njit(cache=True, error_model="numpy")
def _binary_row(o, a, b, op, alpha):
    """o[j] = a[j] <op> b[j] over one row; a, b, o: (n,) C-contiguous."""
    n = o.shape[0]
    if op == ADD:
        for j in range(n):
            o[j] = a[j] + alpha * b[j]
    elif op == MUL:
        for j in range(n):
            o[j] = a[j] * b[j]
    elif op == DIV:
        for j in range(n):
            o[j] = a[j] / b[j]
    elif op == DIV_TRUNC:
        for j in range(n):
            o[j] = np.trunc(a[j] / b[j])
    elif op == DIV_FLOOR:
        for j in range(n):
            x = a[j]
            y = b[j]
            if y == 0:
                o[j] = x / y
                continue
            mod = np.fmod(x, y)
            div = (x - mod) / y
            if mod != 0 and (y < 0) != (mod < 0):
                div -= 1
            if div != 0:
                fl = np.floor(div)
                if div - fl > 0.5:
                    fl += 1
                o[j] = fl
            else:
                o[j] = np.copysign(0.0, x / y)
    elif op == POW:
        for j in range(n):
            o[j] = a[j] ** b[j]
    elif op == MAXIMUM:
        for j in range(n):
            x = a[j]
            y = b[j]
            o[j] = x if (x > y or x != x) else y
    elif op == MINIMUM:
        for j in range(n):
            x = a[j]
            y = b[j]
            o[j] = x if (x < y or x != x) else y


@njit(cache=True, error_model="numpy")
def _binary_int_row(o, a, b, op, alpha):
    """Integer o[j] = a[j] <op> b[j] over one row (wrap-around arithmetic); divisors are non-zero."""
    n = o.shape[0]
    if op == ADD:
        for j in range(n):
            o[j] = a[j] + alpha * b[j]
    elif op == MUL:
        for j in range(n):
            o[j] = a[j] * b[j]
    elif op == DIV_TRUNC:
        for j in range(n):
            x = a[j]
            y = b[j]
            q = x // y
            if q < 0 and q * y != x:
                q += 1
            o[j] = q
    elif op == DIV_FLOOR:
        for j in range(n):
            o[j] = a[j] // b[j]
    elif op == POW:
        for j in range(n):
            o[j] = _ipow(a[j], b[j])
    elif op == MAXIMUM:
        for j in range(n):
            x = a[j]
            y = b[j]
            o[j] = x if x > y else y
    elif op == MINIMUM:
        for j in range(n):
            x = a[j]
            y = b[j]
            o[j] = x if x < y else y


@njit(parallel=True, cache=True, error_model="numpy")
def _binary_kernel(out, x, y, shape, st, op, alpha):
    """out = x <op> y (alpha scales y for ADD); out, x, y: flat buffers; shape (8,), st (3, 8): see the module.

    Floating point: NaN propagates through maximum/minimum; floor division follows torch's (and Python's)
    correction of fmod so that results round towards -inf exactly. One prange iteration computes one block.
    """
    rows, N, per, nch, nblocks = _plan(shape)
    for t in prange(nblocks):
        r0, r1, lo, hi = _block(t, rows, N, per, nch)
        sx, sy = _scratch(st[1], hi - lo, x), _scratch(st[2], hi - lo, y)
        for r in range(r0, r1):
            o = out[_offset(r, shape, st[0]) + lo:_offset(r, shape, st[0]) + hi]
            _binary_row(o, _row(x, r, shape, st[1], lo, hi, sx), _row(y, r, shape, st[2], lo, hi, sy), op, alpha)


@njit(parallel=True, cache=True, error_model="numpy")
def _binary_flat_kernel(out, x, y, op, alpha):
    """out = x <op> y for the common float call: out, x: (n,) C-contiguous; y: (n,) C-contiguous or (1,), a number
    read at stride 0. The same rows as ``_binary_kernel`` (``_binary_row``, CHUNK values a prange iteration), so the
    same values, without the 8-D layout: its launcher skips ``_operands`` and passes two arrays fewer, 7.4 -> ~2.5
    us of a small call."""
    n = out.shape[0]
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo = t * CHUNK
        hi = min(lo + CHUNK, n)
        if y.shape[0] == n:
            b = y[lo:hi]
        else:
            b = np.empty(hi - lo, y.dtype)
            b[:] = y[0]
        _binary_row(out[lo:hi], x[lo:hi], b, op, alpha)


@njit(parallel=True, cache=True, error_model="numpy")
def _binary_int_kernel(out, x, y, shape, st, op, alpha):
    """Integer out = x <op> y; layout and blocks as ``_binary_kernel``; arithmetic wraps like torch's."""
    rows, N, per, nch, nblocks = _plan(shape)
    for t in prange(nblocks):
        r0, r1, lo, hi = _block(t, rows, N, per, nch)
        sx, sy = _scratch(st[1], hi - lo, x), _scratch(st[2], hi - lo, y)
        for r in range(r0, r1):
            o = out[_offset(r, shape, st[0]) + lo:_offset(r, shape, st[0]) + hi]
            _binary_int_row(o, _row(x, r, shape, st[1], lo, hi, sx), _row(y, r, shape, st[2], lo, hi, sy), op,
                            alpha)


@njit(cache=True, error_model="numpy")
def _unary_row(o, a, op):
    wide_vectors()
    n = o.shape[0]
    if op == EXP_F32:  # two interleaved halves: two exp chains an iteration (4096^2, 2 threads: 15.2 -> 5.4 ms)
        h = n // 2
        oa, ob, xa, xb = o[:h], o[h:2 * h], a[:h], a[h:2 * h]
        for j in range(h):
            oa[j] = _exp32(xa[j])
            ob[j] = _exp32(xb[j])
        for j in range(2 * h, n):
            o[j] = _exp32(a[j])
    elif op == SQRT:
        for j in range(n):
            o[j] = np.sqrt(a[j])
    elif op == EXP:
        for j in range(n):
            o[j] = np.exp(a[j])
    elif op == LOG:
        for j in range(n):
            o[j] = np.log(a[j])
    elif op == ABS:
        for j in range(n):
            o[j] = abs(a[j])
    elif op == NEG:
        for j in range(n):
            o[j] = -a[j]


@njit(parallel=True, cache=True, error_model="numpy")
def _unary_kernel(out, x, shape, st, op):
    """out = f(x) for f in sqrt, exp, log, abs, neg; out, x: flat buffers, shape (8,), st (2, 8); computed in
    x's dtype (float32 exp by ``_exp32``, the rest by libm). One prange iteration computes one block."""
    rows, N, per, nch, nblocks = _plan(shape)
    for t in prange(nblocks):
        r0, r1, lo, hi = _block(t, rows, N, per, nch)
        sx = _scratch(st[1], hi - lo, x)
        for r in range(r0, r1):
            o = out[_offset(r, shape, st[0]) + lo:_offset(r, shape, st[0]) + hi]
            _unary_row(o, _row(x, r, shape, st[1], lo, hi, sx), op)


@njit(parallel=True, cache=True, error_model="numpy")
def _unary_flat_kernel(out, x, op):
    """out = f(x) for C-contiguous out, x: (n,): the same rows as ``_unary_kernel`` (CHUNK values a prange
    iteration), without the 8-D layout (see ``_binary_flat_kernel``)."""
    n = out.shape[0]
    for t in prange((n + CHUNK - 1) // CHUNK):
        lo = t * CHUNK
        hi = min(lo + CHUNK, n)
        _unary_row(out[lo:hi], x[lo:hi], op)


@njit(parallel=True, cache=True)
def _where_kernel(out, cond, x, y, shape, st):
    """out = x where cond else y; out, cond (bool), x, y: flat buffers, shape (8,), st (4, 8). One prange
    iteration computes one block."""
    rows, N, per, nch, nblocks = _plan(shape)
    for t in prange(nblocks):
        r0, r1, lo, hi = _block(t, rows, N, per, nch)
        sc, sx, sy = _scratch(st[1], hi - lo, cond), _scratch(st[2], hi - lo, x), _scratch(st[3], hi - lo, y)
        for r in range(r0, r1):
            o = out[_offset(r, shape, st[0]) + lo:_offset(r, shape, st[0]) + hi]
            m = _row(cond, r, shape, st[1], lo, hi, sc)
            a = _row(x, r, shape, st[2], lo, hi, sx)
            b = _row(y, r, shape, st[3], lo, hi, sy)
            for j in range(hi - lo):
                o[j] = a[j] if m[j] else b[j]


@njit(parallel=True, cache=True)
def _clamp_kernel(out, x, lo_, hi_, shape, st):
    """out = min(max(x, lo), hi), NaN in x, lo or hi giving NaN (torch's rule); lo > hi gives hi. out, x, lo_,
    hi_: flat buffers, shape (8,), st (4, 8) (a missing bound arrives as -inf/+inf or the dtype's extreme). One
    prange iteration computes one block."""
    rows, N, per, nch, nblocks = _plan(shape)
    for t in prange(nblocks):
        r0, r1, lo, hi = _block(t, rows, N, per, nch)
        sx, sl, sh = _scratch(st[1], hi - lo, x), _scratch(st[2], hi - lo, lo_), _scratch(st[3], hi - lo, hi_)
        for r in range(r0, r1):
            o = out[_offset(r, shape, st[0]) + lo:_offset(r, shape, st[0]) + hi]
            a = _row(x, r, shape, st[1], lo, hi, sx)
            if lo_.shape[0] == 1 and hi_.shape[0] == 1:  # number bounds: hoisted, no scratch rows to fill
                m0 = lo_[0]
                m1 = hi_[0]
                for j in range(hi - lo):
                    v = a[j]
                    v = m0 if (v < m0 or m0 != m0) else v
                    o[j] = m1 if (v > m1 or m1 != m1) else v
                continue
            mn = _row(lo_, r, shape, st[2], lo, hi, sl)
            mx = _row(hi_, r, shape, st[3], lo, hi, sh)
            for j in range(hi - lo):
                v = a[j]
                m = mn[j]
                v = m if (v < m or m != m) else v
                m = mx[j]
                o[j] = m if (v > m or m != m) else v


_ENTRIES = {}  # (kernel, dtypes, scalar types) -> its ``Compiled`` entries


def _entry(kern, dtypes, scalars=()):
    """The compiled entries (``Compiled``: parallel and serial) of ``kern`` for flat C-contiguous buffers of
    ``dtypes``, ``shape`` and ``strides`` and then ``scalars`` numba types: one signature per dtype, set here rather
    than inferred from the arguments (which would add one per read-only flag)."""
    key = (kern, dtypes, scalars)
    fn = _ENTRIES.get(key)
    if fn is None:
        sig = tuple(types.Array(from_dtype(d), 1, "C") for d in dtypes)
        sig += (types.Array(types.int64, 1, "C"), types.Array(types.int64, 2, "C")) + scalars
        fn = _ENTRIES[key] = Compiled(kern, sig)
    return fn


def _elem_strides(x, shape):
    """Element strides of ``x`` broadcast (right-aligned) to ``shape``; 0 along broadcast dims."""
    lead = len(shape) - x.ndim
    item = x.dtype.itemsize
    st = [0] * lead
    for xs, b in zip(x.shape, x.strides):
        st.append(0 if xs == 1 else b // item)
    return st


def _merge(shape, strides):
    """Drop size-1 dims and merge neighbours contiguous for every array: (sizes, per-array strides)."""
    sizes, merged = [], [[] for _ in strides]
    for d, n in enumerate(shape):
        if n == 1:
            continue
        if sizes and all(m[-1] == s[d] * n for m, s in zip(merged, strides)):
            sizes[-1] *= n
            for m, s in zip(merged, strides):
                m[-1] = s[d]
        else:
            sizes.append(n)
            for m, s in zip(merged, strides):
                m.append(s[d])
    return sizes, merged


def _flat(x, strides):
    """A C-contiguous 1-D view of the memory ``x`` spans under non-negative element ``strides``."""
    extent = 1 + sum((n - 1) * s for n, s in zip(x.shape, strides)) if x.ndim else 1
    return np.lib.stride_tricks.as_strided(x, (extent,), (x.dtype.itemsize,))


_LAYOUTS = {}  # (n, which operands are scalars) -> (shape, strides) of a flat iteration space
MAX_LAYOUTS = 256  # the cache is emptied when it holds more


def _flat_layout(n, scalars):
    """(shape (8,), strides (1 + len(scalars), 8)) of n elements walked flat, the operands flagged in ``scalars``
    read at stride 0: built once per (n, scalars) and shared, since the kernels only read them (two fresh NumPy
    arrays cost 1.5 us of a 20 us call on a small input)."""
    key = (n, scalars)
    layout = _LAYOUTS.get(key)
    if layout is None:
        if len(_LAYOUTS) >= MAX_LAYOUTS:
            _LAYOUTS.clear()
        shape = np.ones(RANK, np.int64)
        shape[-1] = n
        st = np.zeros((1 + len(scalars), RANK), np.int64)
        st[0, -1] = 1
        for k, scalar in enumerate(scalars):
            st[k + 1, -1] = 0 if scalar else 1
        layout = _LAYOUTS[key] = shape, st
    return layout


def _operands(out, xs):
    """([out, *xs] as flat buffers, shape (8,), strides (1 + len(xs), 8)) over one merged iteration space.

    Operands with an inner stride other than 0 or 1 (or any negative stride) are first copied C-contiguous; when
    more than 8 dims stay unmerged the operands are materialised at the output's shape (rare)."""
    n = out.size
    if all(x.size == 1 or (x.shape == out.shape and x.flags.c_contiguous) for x in xs):  # the common case, cheaply
        return [out.reshape(-1)] + [x.reshape(-1) for x in xs], *_flat_layout(n, tuple(x.size == 1 and n != 1
                                                                                          for x in xs))
    xs = [np.ascontiguousarray(x) if any(s < 0 for s in x.strides) else x for x in xs]
    while True:
        strides = [_elem_strides(out, out.shape)] + [_elem_strides(x, out.shape) for x in xs]
        sizes, merged = _merge(out.shape, strides)
        if not sizes:
            sizes, merged = [1], [[0] for _ in strides]
        if len(sizes) > RANK:
            xs = [np.ascontiguousarray(np.broadcast_to(x, out.shape)) for x in xs]
            continue
        bad = [k for k, m in enumerate(merged[1:]) if m[-1] not in (0, 1)]
        if not bad:
            break
        for k in bad:
            xs[k] = np.ascontiguousarray(xs[k])
    pad = RANK - len(sizes)
    shape = np.array((1,) * pad + tuple(sizes), np.int64)
    st = np.array([(0,) * pad + tuple(m) for m in merged], np.int64)
    st[0, -1] = 1
    flats = [out.reshape(-1)] + [_flat(x, _elem_strides(x, x.shape)) for x in xs]
    return flats, shape, st


def _run(kern, out, xs, *scalars):
    """Run ``kern`` (scalars: (numba type, value) pairs) over out and operands ``xs``, on one thread when the
    output is small."""
    flats, shape, st = _operands(out, xs)
    entry = _entry(kern, tuple(f.dtype for f in flats), tuple(t for t, _ in scalars))
    run_parallel(entry, out.size, *flats, shape, st, *(v for _, v in scalars))


_BINARY = {"add": ADD, "mul": MUL, "div": DIV, "div_trunc": DIV_TRUNC, "div_floor": DIV_FLOOR, "pow": POW,
           "maximum": MAXIMUM, "minimum": MINIMUM}
_UNARY = {"sqrt": SQRT, "exp": EXP, "log": LOG, "abs": ABS, "neg": NEG}


_FLAT_ENTRIES = {}  # (kernel, dtype) -> the ``Compiled`` entries of a flat kernel


def _flat_entry(kern, dt):
    """The compiled entries (``Compiled``) of ``_binary_flat_kernel`` (arrays, op code, alpha) or
    ``_unary_flat_kernel`` (arrays, op code) for dtype ``dt``: one signature, read-only inputs too, called without
    the dispatcher's typing."""
    fn = _FLAT_ENTRIES.get((kern, dt))
    if fn is None:
        arr = types.Array(from_dtype(dt), 1, "C")
        if kern is _binary_flat_kernel:
            sig = (arr, arr, arr, types.int64, from_dtype(dt))
        else:
            sig = (arr, arr, types.int64)
        fn = _FLAT_ENTRIES[kern, dt] = Compiled(kern, sig)
    return fn


def _flat_like(out, x):
    """Whether ``x`` is laid out like the C-contiguous ``out``: the same shape, C-contiguous."""
    return x.shape == out.shape and x.flags.c_contiguous


@register("pointwise_binary", "cpu")
def pointwise_binary(out, x, y, op, alpha=1):
    """out = x <op> y, op in add (x + alpha * y), mul, div, div_trunc, div_floor, pow, maximum, minimum; x, y and
    out share one dtype; x and y broadcast to out.shape with any strides. Float operands laid out like a C-contiguous
    out (y may be a single value) take ``_binary_flat_kernel``; the rest the 8-D ``_binary_kernel``."""
    dt = out.dtype
    a = np.array(alpha).astype(dt)[()]
    if dt.kind == "f" and out.flags.c_contiguous and _flat_like(out, x) and (y.size == 1 or _flat_like(out, y)):
        run_parallel(_flat_entry(_binary_flat_kernel, dt), out.size, out.reshape(-1), x.reshape(-1), y.reshape(-1),
                     _BINARY[op], a)
        return
    kern = _binary_kernel if dt.kind == "f" else _binary_int_kernel
    _run(kern, out, [x, y], (types.int64, _BINARY[op]), (from_dtype(dt), a))


@register("pointwise_unary", "cpu")
def pointwise_unary(out, x, op):
    """out = f(x), f in sqrt, exp, log, abs, neg; x has out's dtype and shape, any strides (C-contiguous x and out
    take ``_unary_flat_kernel``)."""
    code = EXP_F32 if op == "exp" and out.dtype == np.float32 else _UNARY[op]
    if out.flags.c_contiguous and _flat_like(out, x):
        run_parallel(_flat_entry(_unary_flat_kernel, out.dtype), out.size, out.reshape(-1), x.reshape(-1), code)
        return
    _run(_unary_kernel, out, [x], (types.int64, code))


@register("where", "cpu")
def where(out, condition, x, y):
    """out = x if condition else y; condition bool, x and y of out's dtype; all broadcast to out.shape."""
    _run(_where_kernel, out, [condition, x, y])


@register("clamp", "cpu")
def clamp(out, x, min, max):
    """out = clamp(x, min, max); all of out's dtype, broadcast to out.shape."""
    _run(_clamp_kernel, out, [x, min, max])
