"""Embedding lookup. Mirrors :func:`torch.nn.functional.embedding`, including ``max_norm``'s in-place renormalisation
of the looked-up rows of ``weight``."""

import numbers

import numpy as np

from .. import _hostpool
from .._dispatch import FLOAT_DTYPES, Call, launch_cpu, plain_float_array, public

_INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


def _check_bounds(call, idx, V):
    """Raise IndexError when any index lies outside [0, V), before the lookup kernel can read out of bounds."""
    if idx.size == 0:
        return
    flag = call.zeros((2,), np.int64)
    call.launch("embedding_bounds", flag, idx, num_embeddings=V)
    found, bad = (int(v) for v in (flag if call.target == "cpu" else flag.copy_to_host()))
    if found:
        raise IndexError(
            f"embedding(): index out of range in self: got index {bad} for a weight with {V} rows "
            f"(valid indices are 0..{V - 1})"
        )


def _fast_embedding(input, weight, padding_idx, max_norm):
    """The common CPU lookup without the general path: non-empty C-contiguous int32/int64 NumPy indices, all in
    range, a C-contiguous 2-D float32/float64 NumPy weight, padding_idx None or a Python int in [-V, V), no
    max_norm. The same launcher and operands as the general path, without its argument objects: (2, 8) indices into
    a (100, 16) table, 13.7 -> 4.7 us a call (torch 3.5-3.7). Returns the result, or None for any other call (an index
    out of range among them), which then takes the general path and its errors."""
    if (max_norm is not None or type(input) is not np.ndarray or not input.size or not input.flags.c_contiguous
            or (input.dtype is not _INDEX_DTYPES[1] and input.dtype is not _INDEX_DTYPES[0])
            or not plain_float_array(weight) or weight.ndim != 2):
        return None
    V, D = weight.shape
    if padding_idx is not None and not (type(padding_idx) is int and -V <= padding_idx < V):
        return None
    idx = input.reshape(-1) if input.dtype is _INDEX_DTYPES[1] else input.reshape(-1).astype(np.int64)
    if idx.min() < 0 or idx.max() >= V:
        return None
    out = _hostpool.empty(input.shape + (D,), weight.dtype)
    if D:
        launch_cpu("embedding", "embedding", out.reshape(-1, D), idx, weight)
    return out


@public("embedding", kernels=("embedding", "embedding_bounds", "embedding_renorm"))
def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Looks up rows of ``weight``: ``out[..., :] = weight[input[...], :]``.

    Mirrors :func:`torch.nn.functional.embedding`. With ``max_norm``, every distinct looked-up row whose
    ``norm_type``-norm exceeds ``max_norm`` is first scaled IN PLACE in ``weight`` by
    ``max_norm / (norm + 1e-7)``, as torch does. Every index is checked before any kernel runs.

    Args:
        input: int32 or int64 indices of any shape, each in ``[0, V)``.
        weight: ``(V, D)`` embedding table.
        padding_idx: the row whose gradient torch keeps at zero; checked (``-V <= padding_idx < V``) and
            otherwise without effect on the forward result, as in torch. Default: None.
        max_norm: renormalise looked-up rows with a larger norm to this norm (modifies ``weight``). Default: None.
        norm_type: the p of the p-norm for ``max_norm`` (``inf`` for the largest magnitude). Default: 2.0.
        scale_grad_by_freq: gradient-only option of torch; accepted, no effect (nbops has no autograd).
        sparse: gradient-only option of torch; accepted, no effect.

    Returns:
        ``input.shape + (D,)`` of weight's dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64 (weight); int32, int64 (input).

    >>> import numpy as np, nbops
    >>> w = np.arange(6, dtype=np.float32).reshape(3, 2)
    >>> nbops.embedding(np.array([[2, 0]]), w)
    array([[[4., 5.],
            [0., 1.]]], dtype=float32)
    """
    out = _fast_embedding(input, weight, padding_idx, max_norm)
    if out is not None:
        return out
    call = Call("embedding", input=input, weight=weight)
    if "input" not in call or "weight" not in call:
        missing = "input" if "input" not in call else "weight"
        raise TypeError(f"embedding(): argument '{missing}' must be an array, got None")
    idt = np.dtype(call["input"].dtype)
    if idt not in _INDEX_DTYPES:
        raise TypeError(
            f"embedding(): expected argument 'input' (the indices) to have dtype int32 or int64, got {idt}"
        )
    call.check_dtype("weight", FLOAT_DTYPES)
    w = call["weight"]
    if len(w.shape) != 2:
        raise ValueError(f"embedding(): 'weight' must be 2-D, got shape {tuple(w.shape)}")
    V, D = int(w.shape[0]), int(w.shape[1])
    if padding_idx is not None:
        if not isinstance(padding_idx, (numbers.Integral, np.integer)) or isinstance(padding_idx, bool):
            raise TypeError(f"embedding(): argument 'padding_idx' must be an int or None, got {padding_idx!r}")
        if not -V <= padding_idx < V:
            raise ValueError(f"embedding(): Padding_idx must be within num_embeddings, got {padding_idx} for {V} rows")
    if max_norm is not None:
        for name, v in (("max_norm", max_norm), ("norm_type", norm_type)):
            if isinstance(v, bool) or not isinstance(v, (numbers.Real, np.floating, np.integer)):
                raise TypeError(f"embedding(): argument '{name}' must be a float, got {v!r}")
    shape = tuple(int(s) for s in call["input"].shape)
    idx = call.astype(call["input"], np.int64).reshape(-1)
    _check_bounds(call, idx, V)
    M = idx.shape[0]
    if max_norm is not None and M:
        call.require_writeable("weight", "max_norm renormalises looked-up rows")
        wc = call.contiguous(w)
        call.launch("embedding_renorm", wc, idx, max_norm=float(max_norm), norm_type=float(norm_type))
        if wc is not w:
            call.launch("copy", w, wc)
        w = wc
    else:
        w = call.contiguous(w)
    out = call.empty((M, D), w.dtype)
    if M and D:
        call.launch("embedding", out, idx, w)
    return call.wrap(out.reshape(shape + (D,)))
