"""CUDA launchers of the shape family: strided copies (with dtype casts) and fills.

A copy into a C-contiguous output (``contiguous``, ``astype``, ``reshape`` of a non-viewable layout) indexes the
output flat; a copy into a strided output (a slice of ``cat``'s or ``stack``'s result) indexes both sides 8-D.
"""

from numba import cuda

from .._dispatch import register
from ._util import TPB, blocks, flat, pad_rank, stream


@cuda.jit(device=True)
def _unravel(shape, i):
    """The 8-D index of flat C-order position ``i`` in ``shape``. Once the remainder fits a dim, every dim above
    it is 0: a contiguous operand viewed as (1, ..., 1, n) costs no integer division, a 2-D one one division."""
    r = i
    if r < shape[7]:
        i7, r = r, 0
    else:
        i7 = r % shape[7]
        r //= shape[7]
    if r < shape[6]:
        i6, r = r, 0
    else:
        i6 = r % shape[6]
        r //= shape[6]
    if r < shape[5]:
        i5, r = r, 0
    else:
        i5 = r % shape[5]
        r //= shape[5]
    if r < shape[4]:
        i4, r = r, 0
    else:
        i4 = r % shape[4]
        r //= shape[4]
    if r < shape[3]:
        i3, r = r, 0
    else:
        i3 = r % shape[3]
        r //= shape[3]
    if r < shape[2]:
        i2, r = r, 0
    else:
        i2 = r % shape[2]
        r //= shape[2]
    if r < shape[1]:
        i1, r = r, 0
    else:
        i1 = r % shape[1]
        r //= shape[1]
    return (r, i1, i2, i3, i4, i5, i6, i7)


@cuda.jit
def _copy_kernel(out, x):
    """out[i] = x[unravel(i)] for a contiguous 1-D ``out`` and an 8-D strided (possibly broadcast) ``x``.

    One thread per output element; grid = ceil(out.size / TPB) blocks of TPB threads. The cast to out's dtype
    happens on the store.
    """
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = x[_unravel(x.shape, i)]


@cuda.jit
def _copy_strided_kernel(out, x, n):
    """out[idx] = x[idx] for 8-D strided ``out`` and ``x`` of one shape (``x`` possibly broadcast), n elements.

    One thread per element, idx = unravel(i); grid = ceil(n / TPB) blocks of TPB threads; cast on the store.
    """
    i = cuda.grid(1)
    if i < n:
        idx = _unravel(out.shape, i)
        out[idx] = x[idx]


@register("copy", "cuda")
def copy(out, x):
    """out[...] = x; ``x`` has any strides and broadcasts to ``out.shape``; ``out`` may be strided too."""
    n = out.size
    if not n:
        return
    if out.is_c_contiguous():
        if x.is_c_contiguous() and tuple(x.shape) == tuple(out.shape):  # a cast: both flat, no index arithmetic
            _copy_kernel[blocks(n), TPB, stream()](flat(out), pad_rank(flat(x)))
        else:
            _copy_kernel[blocks(n), TPB, stream()](flat(out), pad_rank(x, out.shape))
    else:
        _copy_strided_kernel[blocks(n), TPB, stream()](pad_rank(out), pad_rank(x, out.shape), n)


@cuda.jit
def _fill_kernel(out, value):
    """out[i] = value; one thread per element of the contiguous 1-D ``out``."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = value


@register("fill", "cuda")
def fill(out, value):
    n = out.size
    if n:
        _fill_kernel[blocks(n), TPB, stream()](flat(out), value)
