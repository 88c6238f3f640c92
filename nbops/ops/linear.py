"""Matrix products: matmul, mm, bmm, linear, addmm, baddbmm. Mirrors :func:`torch.matmul` and its relatives.

Every op reduces to one launcher, ``matmul(out, a, b, alpha=, beta=)``: ``out`` is a fresh C-contiguous
``(BATCH, M, N)`` array and ``a`` / ``b`` are 3-D *views* ``(BATCH, M, K)`` / ``(BATCH, K, N)`` of the caller's
memory, with any strides (stride 0 where a batch broadcasts), so transposed and sliced operands are read in place.
Batch dims that cannot be folded into one strided dim (e.g. ``(2, 1)`` against ``(1, 5)``) are expanded into a
contiguous copy first, exactly where torch's own ``reshape`` copies too.
"""

import math
import numbers

import numpy as np

from .. import _hostpool
from .._arrays import cuda_as_strided
from .._dispatch import FLOAT_DTYPES, INT_DTYPES, Call, declare, launch_cpu, plain_float_array, public
from .._shapes import broadcast_shapes

DTYPES = FLOAT_DTYPES + INT_DTYPES


def _sh(x):
    """``x.shape`` as a tuple of ints (the CUDA simulator's shapes do not take negative indices)."""
    return x.shape if isinstance(x, np.ndarray) else tuple(int(d) for d in x.shape)


def _st(x):
    return x.strides if isinstance(x, np.ndarray) else tuple(int(s) for s in x.strides)


def _dims(shape):
    return "x".join(str(int(d)) for d in shape)


def _view(call, x, shape, strides):
    """A view of ``x`` (kernel-side) with the given shape and byte strides over the same memory."""
    shape, strides = tuple(int(d) for d in shape), tuple(int(s) for s in strides)
    if call.target == "cpu":
        return np.lib.stride_tricks.as_strided(x, shape, strides, writeable=False)
    return cuda_as_strided(x, shape, strides)


def _batch3(call, x, batch):
    """``x`` of shape ``batch_x + (R, C)`` (``batch_x`` broadcastable to ``batch``) as a 3-D ``(prod(batch), R, C)``
    view, folding the batch dims into one strided dim; a contiguous expanded copy when they do not fold."""
    shape, xstrides = _sh(x), _st(x)
    R, C = shape[-2:]
    lead = len(batch) - (len(shape) - 2)
    strides = [0] * lead + [0 if d == 1 else s for d, s in zip(shape[:-2], xstrides[:-2])]
    size, stride = 1, 0
    for d, s in zip(reversed(batch), reversed(strides)):
        if d == 1:
            continue
        if size == 1:
            size, stride = d, s
        elif s == stride * size:
            size *= d
        else:
            full = _view(call, x, tuple(batch) + (R, C), strides + list(xstrides[-2:]))
            dense = call.contiguous(full)
            item = np.dtype(dense.dtype).itemsize  # numba's device arrays have no .itemsize
            return _view(call, dense, (math.prod(batch), R, C), (R * C * item,) + _st(dense)[-2:])
    if len(shape) == 3 and (size, stride) == (shape[0], xstrides[0]):
        return x
    if len(shape) == 2 and size == 1 and call.target == "cpu":
        return x[None]
    return _view(call, x, (size, R, C), (stride,) + xstrides[-2:])


def _check_dtypes(call, op, first, second):
    da = call.check_dtype(first, DTYPES)
    db = call.check_dtype(second, DTYPES)
    if da != db:
        raise TypeError(f"{op}(): expected '{first}' and '{second}' to have the same dtype, but got: {da} != {db}")
    return da


def _scalar(op, name, value, dtype):
    """alpha/beta as a Python number of the right kind: integral dtypes truncate it to an int, as torch does."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        raise TypeError(f"{op}(): argument '{name}' must be a real number, got {value!r}")
    return int(value) if dtype.kind in "iu" else float(value)


def _check_expand(op, name, shape, target):
    """Raise ValueError unless an array of ``shape`` broadcasts to exactly ``target``, as torch's expand() does."""
    shape, target = tuple(shape), tuple(target)
    if len(shape) > len(target) or any(d not in (1, t) for d, t in zip(reversed(shape), reversed(target))):
        raise ValueError(
            f"{op}(): argument '{name}' of shape {shape} cannot be broadcast to the result's shape {target}"
        )


def _product(call, op, a, b, batch, shape, dtype, alpha=1, beta=0, init=None, out=None, bias=None):
    """The shared tail of every op: alpha * a @ b (+ beta * init broadcast to the result), reshaped to ``shape``.

    a: ``batch_a + (M, K)``, b: ``batch_b + (K, N)`` kernel-side arrays whose batch dims broadcast to ``batch``;
    ``shape`` is the public result's shape (``batch + (M, N)`` with 1-D dims dropped), ``init`` broadcasts to it.
    ``bias``: a (N,) array the kernel adds as it stores its first tiles (float dtypes), or None.
    ``out``: the caller's ``out=`` array, or None; the kernel writes straight into it when it is C-contiguous and
    apart from the inputs (cpu), else the result is computed apart and copied in, so ``out`` may alias an input.
    An empty result is allocated in its public shape: numba's device arrays refuse to reshape an empty array.
    """
    M, K = _sh(a)[-2:]
    N = _sh(b)[-1]
    BATCH = math.prod(batch)
    direct = out is not None and _check_out(call, op, shape, dtype) and _writable_apart(call, a, b, init)
    if BATCH * M * N == 0:
        return call.wrap(call.empty(shape, dtype)) if out is None else out
    res = call["out"].reshape((BATCH, M, N)) if direct else call.empty((BATCH, M, N), dtype)
    if init is None or beta == 0:
        beta = 0
    else:
        call.launch("copy", res.reshape(shape), init)
    a3, b3 = _batch3(call, a, batch), _batch3(call, b, batch)
    if alpha == 0:
        a3 = _view(call, a3, (_sh(a3)[0], M, 0), _st(a3))
        b3 = _view(call, b3, (_sh(b3)[0], 0, N), _st(b3))
    elif BATCH > 1 and _st(b3)[0] == 0 and _st(a3)[0] == M * _st(a3)[1]:
        # a batch of rows against one shared matrix is one taller product, as torch folds it
        a3 = _view(call, a3, (1, BATCH * M, _sh(a3)[2]), (0,) + tuple(_st(a3)[1:]))
        b3 = _view(call, b3, (1, K, N), _st(b3))
        res = res.reshape((1, BATCH * M, N))
    if bias is None:
        call.launch("matmul", res, a3, b3, alpha=alpha, beta=beta)
    else:
        call.launch("matmul", res, a3, b3, alpha=alpha, beta=beta, bias=bias)
    if out is None:
        return call.wrap(res.reshape(shape))
    if not direct:
        call.launch("copy", call["out"], res.reshape(shape))
    return out


declare("linear", "matmul_plain")  # the CPU fast paths' launcher (no CUDA counterpart: NumPy arrays only)


def _fast(op, a, b, transposed=False, bias=None, act=None):
    """The common CPU call without the general path: C-contiguous float32/float64 NumPy arrays of one dtype, ``a``
    ``(..., K)`` times ``b`` ``(K, N)`` (``(N, K)`` read transposed when ``transposed``: linear's weight), ``bias``
    None or ``(N,)``, no size zero. Such a call cannot fail a check and is one taller product, ``a``'s leading
    dims folded into M, as the general path folds it too: the ``matmul_plain`` launcher runs the general path's
    kernel entry on the same operands, strides and thread split (the tests compare the two bit for bit); the
    general path's argument objects, views and shape logic cost 8-10 us of a 19 us 8 x 8 matmul. ``act`` (None,
    "relu", "gelu"): an activation the kernel applies to the result (``_linear_act``). Returns the result, or
    None for any other call, which then takes the general path."""
    if not (plain_float_array(a) and plain_float_array(b) and a.dtype is b.dtype and a.ndim and b.ndim == 2):
        return None
    if bias is not None and not (plain_float_array(bias) and bias.dtype is a.dtype and bias.ndim == 1):
        return None
    N, K = b.shape if transposed else b.shape[::-1]
    if a.shape[-1] != K or (bias is not None and bias.shape[0] != N) or not (a.size and N):
        return None
    out = _hostpool.empty((1, a.size // K, N), a.dtype)
    launch_cpu(op, "matmul_plain", out, a, b, transposed, bias, act)
    return out.reshape(a.shape[:-1] + (N,))


def _fast_batched(op, a, b):
    """``_fast`` for a batch of products: C-contiguous float32/float64 NumPy arrays of one dtype, ``a`` (B, M, K)
    times ``b`` (B, K, N), no size zero. The ``matmul`` launcher runs on them as the general path's ``_product``
    runs it for such a call (same operands, alpha 1, beta 0): a (8, 8, 8) bmm 23.4 -> 14.4 us a call (torch 4.4-4.6).
    Returns the result, or None for any other call."""
    if not (plain_float_array(a) and plain_float_array(b) and a.dtype is b.dtype and a.ndim == 3 and b.ndim == 3
            and a.shape[0] == b.shape[0] and a.shape[2] == b.shape[1] and a.size and b.size):
        return None
    out = _hostpool.empty((a.shape[0], a.shape[1], b.shape[2]), a.dtype)
    launch_cpu(op, "matmul", out, a, b, alpha=1, beta=0)
    return out


def _check_out(call, op, shape, dtype):
    """Raise ValueError unless the ``out=`` array has the result's shape and dtype; True otherwise."""
    o = call["out"]
    call.require_writeable("out", "out=")
    if tuple(_sh(o)) != tuple(shape) or np.dtype(o.dtype) != dtype:
        raise ValueError(
            f"{op}(): argument 'out' must have shape {tuple(shape)} and dtype {dtype}, got shape {tuple(_sh(o))} "
            f"and dtype {np.dtype(o.dtype)}"
        )
    return True


def _writable_apart(call, *inputs):
    """Whether the kernel can write the result straight into ``out=`` (cpu): C-contiguous and sharing no memory
    with any input. Otherwise the result is computed apart and copied in."""
    o = call["out"]
    return call.target == "cpu" and o.flags.c_contiguous and not any(
        x is not None and np.may_share_memory(o, x) for x in inputs)


def _not_multipliable(op, a_shape, b_shape, names=("mat1", "mat2")):
    return ValueError(
        f"{op}(): {names[0]} and {names[1]} shapes cannot be multiplied ({_dims(a_shape)} and {_dims(b_shape)})"
    )


@public("linear", kernels=("matmul",))
def matmul(input, other, *, out=None):
    """Matrix product of two arrays with torch's rules for every rank.

    Mirrors :func:`torch.matmul`. 1-D @ 1-D is a dot product (0-d result); a 1-D ``input`` gets a 1 prepended to
    its shape and a 1-D ``other`` a 1 appended, removed again from the result; the batch dims (all but the last
    two) broadcast: ``(2, 1, 3, 4) @ (5, 4, 6)`` -> ``(2, 5, 3, 6)``.

    Args:
        input: array ``(*, M, K)`` or ``(K,)``.
        other: array ``(*, K, N)`` or ``(K,)``, same dtype as ``input``.
        out: optional C-contiguous or strided array of the result's shape and dtype to write into (keyword only).

    Returns:
        the product, shape ``broadcast(*) + (M, N)`` with the 1-D dims dropped, dtype of ``input``; same kind of
        array and device as input (``out`` itself when given).

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8.

    >>> import numpy as np, nbops
    >>> nbops.matmul(np.ones((2, 3), np.float32), np.arange(3, dtype=np.float32))
    array([3., 3.], dtype=float32)
    """
    if out is None:
        res = _fast("matmul", input, other)
        if res is None:
            res = _fast_batched("matmul", input, other)
        if res is not None:
            return res
    call = Call("matmul", input=input, other=other, out=out)
    dtype = _check_dtypes(call, "matmul", "input", "other")
    a, b = call["input"], call["other"]
    sa, sb = _sh(a), _sh(b)
    if len(sa) == 0 or len(sb) == 0:
        raise ValueError(
            f"matmul(): both arguments to matmul need to be at least 1D, but they are {len(sa)}D and {len(sb)}D"
        )
    if len(sa) == 1 and len(sb) == 1 and sa[0] != sb[0]:
        raise ValueError(
            f"matmul(): inconsistent tensor size, expected tensor [{sa[0]}] and src [{sb[0]}] to have the same "
            f"number of elements, but got {sa[0]} and {sb[0]} elements respectively"
        )
    a2 = a if len(sa) > 1 else _view(call, a, (1, sa[0]), (0, _st(a)[0]))
    b2 = b if len(sb) > 1 else _view(call, b, (sb[0], 1), (_st(b)[0], 0))
    sa2, sb2 = _sh(a2), _sh(b2)
    if sa2[-1] != sb2[-2]:
        raise _not_multipliable("matmul", sa2, sb2)
    batch = broadcast_shapes("matmul", tuple(sa2[:-2]), tuple(sb2[:-2]))
    shape = batch + ((sa2[-2],) if len(sa) > 1 else ()) + ((sb2[-1],) if len(sb) > 1 else ())
    return _product(call, "matmul", a2, b2, batch, shape, dtype, out=out)


@public("linear", kernels=("matmul",))
def mm(input, mat2, *, out=None):
    """Matrix product of two matrices, no broadcasting.

    Mirrors :func:`torch.mm`.

    Args:
        input: array ``(M, K)``.
        mat2: array ``(K, N)``, same dtype as ``input``.
        out: optional array ``(M, N)`` of the same dtype to write into (keyword only).

    Returns:
        array ``(M, N)`` of ``input``'s dtype; same kind of array and device as input (``out`` when given).

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8.

    >>> import numpy as np, nbops
    >>> nbops.mm(np.eye(2), np.array([[1.0, 2.0], [3.0, 4.0]]))
    array([[1., 2.],
           [3., 4.]])
    """
    if out is None and getattr(input, "ndim", 0) == 2:
        res = _fast("mm", input, mat2)
        if res is not None:
            return res
    call = Call("mm", input=input, mat2=mat2, out=out)
    dtype = _check_dtypes(call, "mm", "input", "mat2")
    call.check_ndim("input", (2,))
    call.check_ndim("mat2", (2,))
    a, b = call["input"], call["mat2"]
    if _sh(a)[1] != _sh(b)[0]:
        raise _not_multipliable("mm", _sh(a), _sh(b))
    return _product(call, "mm", a, b, (), (_sh(a)[0], _sh(b)[1]), dtype, out=out)


@public("linear", kernels=("matmul",))
def bmm(input, mat2, *, out=None):
    """Batched matrix product of two 3-D arrays with the same batch size, no broadcasting.

    Mirrors :func:`torch.bmm`.

    Args:
        input: array ``(B, M, K)``.
        mat2: array ``(B, K, N)``, same dtype as ``input``.
        out: optional array ``(B, M, N)`` of the same dtype to write into (keyword only).

    Returns:
        array ``(B, M, N)`` of ``input``'s dtype; same kind of array and device as input (``out`` when given).

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8.

    >>> import numpy as np, nbops
    >>> nbops.bmm(np.ones((2, 1, 3)), np.ones((2, 3, 1))).ravel()
    array([3., 3.])
    """
    if out is None:
        res = _fast_batched("bmm", input, mat2)
        if res is not None:
            return res
    call = Call("bmm", input=input, mat2=mat2, out=out)
    dtype = _check_dtypes(call, "bmm", "input", "mat2")
    call.check_ndim("input", (3,))
    call.check_ndim("mat2", (3,))
    a, b = call["input"], call["mat2"]
    if _sh(a)[0] != _sh(b)[0] or _sh(a)[2] != _sh(b)[1]:
        raise _not_multipliable("bmm", _sh(a), _sh(b), ("batch1", "batch2"))
    return _product(call, "bmm", a, b, (_sh(a)[0],), (_sh(a)[0], _sh(a)[1], _sh(b)[2]), dtype, out=out)


@public("linear", kernels=("matmul",))
def linear(input, weight, bias=None):
    """Applies an affine map to the last dim: ``input @ weight.T + bias``.

    Mirrors :func:`torch.nn.functional.linear`. ``weight.T`` is read in place (never transposed in memory) and
    the leading dims of a contiguous ``input`` fold into one tall product.

    Args:
        input: array ``(*, in_features)``.
        weight: array ``(out_features, in_features)``, or ``(in_features,)`` for a result without that dim.
        bias: optional array broadcastable to the result, usually ``(out_features,)``. Default: None.

    Returns:
        array ``(*, out_features)`` of ``input``'s dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8.

    >>> import numpy as np, nbops
    >>> nbops.linear(np.ones((1, 3), np.float32), np.ones((2, 3), np.float32), np.array([0.5, -1], np.float32))
    array([[3.5, 2. ]], dtype=float32)
    """
    res = _fast("linear", input, weight, transposed=True, bias=bias)
    if res is not None:
        return res
    call = Call("linear", input=input, weight=weight, bias=bias)
    dtype = _check_dtypes(call, "linear", "input", "weight")
    if bias is not None:
        _check_dtypes(call, "linear", "input", "bias")
    if len(_sh(call["input"])) == 0:
        raise ValueError("linear(): argument 'input' must be at least 1-D, got a 0-d array")
    call.check_ndim("weight", (1, 2))
    x, w = call["input"], call["weight"]
    (xs, ws), (xst, wst) = (_sh(x), _sh(w)), (_st(x), _st(w))
    a = x if len(xs) > 1 else _view(call, x, (1, xs[0]), (0, xst[0]))
    if call.target == "cpu":
        b = w.T if len(ws) == 2 else w[:, None]
    elif len(ws) == 2:
        b = _view(call, w, (ws[1], ws[0]), (wst[1], wst[0]))
    else:
        b = _view(call, w, (ws[0], 1), (wst[0], 0))
    if xs[-1] != ws[-1]:
        raise _not_multipliable("linear", (math.prod(xs[:-1]), xs[-1]), _sh(b))
    batch = tuple(_sh(a)[:-2])
    shape = tuple(xs[:-1]) + ((ws[0],) if len(ws) == 2 else ())
    if bias is None:
        return _product(call, "linear", a, b, batch, shape, dtype)
    _check_expand("linear", "bias", _sh(call["bias"]), shape)
    if dtype.kind == "f" and len(ws) == 2 and _sh(call["bias"]) == (ws[0],):
        return _product(call, "linear", a, b, batch, shape, dtype, bias=call["bias"])  # added in the epilogue
    return _product(call, "linear", a, b, batch, shape, dtype, beta=1, init=call["bias"])


def _linear_act(input, weight, bias, act):
    """``act(linear(input, weight, bias))`` for ``act`` "relu" or "gelu" (erf): internal, the first layer and
    activation of a transformer's feed-forward block. For the fast path's operands (C-contiguous NumPy floats) the
    CPU GEMM applies the activation in its epilogue, to each strip of the output while it is still in L1
    (``nbops/cpu/linear.py``, ``_activate_rows``), instead of a pass over the (tokens, dim_feedforward) result;
    the values are linear's then the activation's, bit for bit. Anything else runs the two ops."""
    res = _fast("linear", input, weight, transposed=True, bias=bias, act=act)
    if res is not None:
        return res
    from .activation import gelu, relu
    return (relu if act == "relu" else gelu)(linear(input, weight, bias))


def _addmm_like(op, input, first, second, beta, alpha, out, ndim, names):
    call = Call(op, input=input, **{names[0]: first, names[1]: second}, out=out)
    dtype = _check_dtypes(call, op, names[0], names[1])
    _check_dtypes(call, op, names[0], "input")
    call.check_ndim(names[0], (ndim,))
    call.check_ndim(names[1], (ndim,))
    a, b = call[names[0]], call[names[1]]
    sa, sb = _sh(a), _sh(b)
    if sa[-1] != sb[-2] or sa[:-2] != sb[:-2]:
        raise _not_multipliable(op, sa, sb, names)
    shape = tuple(sa[:-1]) + (sb[-1],)
    _check_expand(op, "input", _sh(call["input"]), shape)
    beta, alpha = _scalar(op, "beta", beta, dtype), _scalar(op, "alpha", alpha, dtype)
    return _product(call, op, a, b, tuple(sa[:-2]), shape, dtype, alpha=alpha, beta=beta, init=call["input"],
                    out=out)


@public("linear", kernels=("matmul",))
def addmm(input, mat1, mat2, *, beta=1, alpha=1, out=None):
    """``beta * input + alpha * (mat1 @ mat2)``; ``input`` is not read when ``beta`` is 0 (its NaNs do not leak).

    Mirrors :func:`torch.addmm`. With ``alpha`` 0 the product is not computed (NaNs in the matrices do not leak),
    as in BLAS and torch.

    Args:
        input: array broadcastable to ``(M, N)``.
        mat1: array ``(M, K)``.
        mat2: array ``(K, N)``; all three of one dtype.
        beta, alpha: scalar multipliers (keyword only). Default: 1. Integer inputs truncate them to ints, as
            torch does.
        out: optional array ``(M, N)`` of the same dtype to write into (keyword only).

    Returns:
        array ``(M, N)`` of the inputs' dtype; same kind of array and device as input (``out`` when given).

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8.

    >>> import numpy as np, nbops
    >>> nbops.addmm(np.ones(2), np.eye(2), np.diag([2.0, 3.0]), beta=0.5)
    array([[2.5, 0.5],
           [0.5, 3.5]])
    """
    return _addmm_like("addmm", input, mat1, mat2, beta, alpha, out, 2, ("mat1", "mat2"))


@public("linear", kernels=("matmul",))
def baddbmm(input, batch1, batch2, *, beta=1, alpha=1, out=None):
    """``beta * input + alpha * bmm(batch1, batch2)``; ``input`` is not read when ``beta`` is 0.

    Mirrors :func:`torch.baddbmm`.

    Args:
        input: array broadcastable to ``(B, M, N)``.
        batch1: array ``(B, M, K)``.
        batch2: array ``(B, K, N)``; all three of one dtype.
        beta, alpha: scalar multipliers (keyword only). Default: 1. Integer inputs truncate them to ints, as
            torch does.
        out: optional array ``(B, M, N)`` of the same dtype to write into (keyword only).

    Returns:
        array ``(B, M, N)`` of the inputs' dtype; same kind of array and device as input (``out`` when given).

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8.

    >>> import numpy as np, nbops
    >>> nbops.baddbmm(np.zeros(1), np.ones((2, 1, 2)), np.ones((2, 2, 1)), alpha=2).ravel()
    array([4., 4.])
    """
    return _addmm_like("baddbmm", input, batch1, batch2, beta, alpha, out, 3, ("batch1", "batch2"))


declare("attention", "attention")


def _attention(query, key, value, scale, merged=False):
    """``softmax(query @ key^T * scale) @ value``: query ``(*, L, D)``, key ``(*, S, D)``, value ``(*, S, E)`` with
    the same leading dims and float dtype -> ``(*, L, E)``; with ``merged``, for 4-D inputs ``(N, H, ...)`` (the
    heads of a multi-head attention), the heads' outputs side by side instead: ``(N, L, H * E)``.

    Internal: the path of :class:`nbops.models.MultiheadAttention` when it returns no weights and has no masks or
    dropout. On the CPU one fused kernel (``nbops/cpu/attention.py``) keeps the (L, S) scores in cache, and writes
    the merged layout itself; on other targets, and for an empty key, it is matmul, softmax and matmul (and a
    transposing copy for the merged layout).
    """
    call = Call("attention", query=query, key=key, value=value)
    q, k, v = call["query"], call["key"], call["value"]
    batch = tuple(_sh(q)[:-2])
    L, S, E = _sh(q)[-2], _sh(k)[-2], _sh(v)[-1]
    if merged and len(batch) != 2:
        raise ValueError(f"attention(): merged heads need 4-D inputs (N, H, L, D), got {len(_sh(q))}-D")
    if call.target != "cpu" or S == 0 or L == 0 or E == 0:
        from .activation import softmax
        from .pointwise import mul
        from .shape import reshape, transpose
        out = matmul(softmax(mul(matmul(query, transpose(key, -2, -1)), scale), -1), value)
        return reshape(transpose(out, 1, 2), (batch[0], L, batch[1] * E)) if merged else out
    if len(batch) == 2:  # (N, H): read in place whatever the strides (the heads of a projection)
        q4, k4, v4 = q, k, v
    else:
        q4, k4, v4 = (_batch3(call, x, batch)[None] for x in (q, k, v))
    if merged:
        out = call.empty((batch[0], L, batch[1] * E), q.dtype)
        call.launch("attention", out, q4, k4, v4, scale=scale, merged=True)
        return call.wrap(out)
    out = call.empty(q4.shape[:2] + (L, E), q.dtype)
    call.launch("attention", out, q4, k4, v4, scale=scale)
    return call.wrap(out.reshape(batch + (L, E)))
