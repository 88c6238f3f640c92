"""CUDA launchers of the shape family: strided copies (with dtype casts) and fills."""

from numba import cuda

from .._dispatch import register
from ._util import TPB, blocks, flat, pad_rank


@cuda.jit
def _copy_kernel(out, x):
    """out[i] = x[unravel(i)] for a contiguous 1-D ``out`` and an 8-D strided (possibly broadcast) ``x``.

    One thread per output element; grid = ceil(out.size / TPB) blocks of TPB threads. The cast to out's dtype
    happens on the store.
    """
    i = cuda.grid(1)
    if i < out.shape[0]:
        r = i
        i7 = r % x.shape[7]
        r //= x.shape[7]
        i6 = r % x.shape[6]
        r //= x.shape[6]
        i5 = r % x.shape[5]
        r //= x.shape[5]
        i4 = r % x.shape[4]
        r //= x.shape[4]
        i3 = r % x.shape[3]
        r //= x.shape[3]
        i2 = r % x.shape[2]
        r //= x.shape[2]
        i1 = r % x.shape[1]
        i0 = r // x.shape[1]
        out[i] = x[i0, i1, i2, i3, i4, i5, i6, i7]


@register("copy", "cuda")
def copy(out, x):
    """out[...] = x for a C-contiguous ``out``; ``x`` has any strides and broadcasts to ``out.shape``."""
    n = out.size
    if n:
        _copy_kernel[blocks(n), TPB](flat(out), pad_rank(x, out.shape))


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
        _fill_kernel[blocks(n), TPB](flat(out), value)
