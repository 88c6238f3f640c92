"""CPU launchers of the shape family: strided copies (with dtype casts) and fills.

Most copies are NumPy's: its strided copy loops move rows that are contiguous on both sides at memory speed, and a
numba kernel would only add compiles. The exception is a copy that *transposes*, where the input's contiguous
axis is not the output's: NumPy then walks the input with a stride of a whole row for every element, touching a
new cache line (and soon a new page) per element, and ran permute(0, 2, 1) of a (64, 512, 512) float32 array at
2.7 GB/s (torch: the same), a tenth of a plain copy's 27 GB/s. ``_transpose_kernel`` copies such arrays in tiles
that fit L1 instead.
"""

import numpy as np
from numba import njit, prange

from .._dispatch import register

TILE = 64  # a TILE x TILE tile of a transposing copy: 16 KiB of float32 read (64 lines of 64 columns), L1-resident
MIN_TRANSPOSE = 1 << 15  # fewest elements worth the tiled kernel (smaller copies stay in cache for NumPy anyway)
_BITS = {4: np.uint32, 8: np.uint64}  # the tiled kernel moves bit patterns: one compile per item size


@njit(parallel=True, cache=True)
def _transpose_kernel(out, x):
    """out[a, m, b, n] = x[a, m, b, n] for out: (A, M, B, N) C-contiguous and x: (A, M, B, N) of the same item
    size whose *M* axis is the contiguous one (any other strides): a batch of (M, N) transposes.

    One prange iteration copies one TILE x TILE tile (rows m0:m0+TILE, columns n0:n0+TILE) of one (a, b) plane:
    its TILE source lines of TILE contiguous elements each stay in L1 while the output is written row by row, so
    every cache line is read and written once. Napkin math, (64, 512, 512) float32: 128 MiB moved at the 27 GB/s a
    two-thread copy reaches here is 5 ms, where reading one element per cache line costs 16x the traffic.
    """
    A, M, B, N = out.shape
    TM = (M + TILE - 1) // TILE
    TN = (N + TILE - 1) // TILE
    for t in prange(A * B * TM * TN):
        p = t // (TM * TN)
        r = t - p * (TM * TN)
        a = p // B
        b = p - a * B
        m0 = (r // TN) * TILE
        n0 = (r - (r // TN) * TN) * TILE
        dst = out[a, m0:m0 + TILE, b, n0:n0 + TILE]
        src = x[a, m0:m0 + TILE, b, n0:n0 + TILE]
        for m in range(dst.shape[0]):
            for n in range(dst.shape[1]):
                dst[m, n] = src[m, n]


def _transpose_view(out, x):
    """(out4, x4): ``out`` and ``x`` as 4-D (A, M, B, N) views of unsigned integers for ``_transpose_kernel``, or
    None when the copy is not a transpose it handles: same shape and item size (4 or 8 bytes), ``out``
    C-contiguous and not overlapping ``x``, and, after dropping size-1 axes and merging axes that are contiguous
    with each other in ``x``, the axis ``x`` walks with unit stride is neither the last one nor preceded or
    followed by more than one axis."""
    if (x.shape != out.shape or x.dtype != out.dtype or x.dtype.itemsize not in _BITS or out.size < MIN_TRANSPOSE
            or not out.flags.c_contiguous or np.may_share_memory(out, x)):
        return None
    dims = [(n, s) for n, s in zip(x.shape, x.strides) if n != 1]
    merged = [dims[0]]
    for n, s in dims[1:]:
        pn, ps = merged[-1]
        if ps == n * s:
            merged[-1] = (pn * n, s)
        else:
            merged.append((n, s))
    unit = [k for k, (_, s) in enumerate(merged) if s == x.itemsize]
    if not unit or unit[0] == len(merged) - 1 or unit[0] > 1 or len(merged) - unit[0] > 3:
        return None
    k = unit[0]
    shape = [merged[0][0] if k else 1, merged[k][0], merged[k + 1][0] if len(merged) - k == 3 else 1, merged[-1][0]]
    strides = [merged[0][1] if k else 0, x.itemsize, merged[k + 1][1] if len(merged) - k == 3 else 0, merged[-1][1]]
    bits = _BITS[x.itemsize]
    x4 = np.lib.stride_tricks.as_strided(x.view(bits), shape, strides, writeable=False)
    return out.view(bits).reshape(shape), x4


@register("copy", "cpu")
def copy(out, x):
    """out[...] = x, any strides and any dtype pair (C-style cast); ``x`` broadcasts to ``out.shape``. Transposing
    copies go through ``_transpose_kernel``, all others through NumPy."""
    views = _transpose_view(out, x)
    if views is None:
        np.copyto(out, x, casting="unsafe")
    else:
        _transpose_kernel(*views)


@register("fill", "cpu")
def fill(out, value):
    out.fill(value)
