"""CPU launchers of the shape family: strided copies (with dtype casts) and fills.

Three paths. A copy that *transposes*, where the input's contiguous axis is not the output's, would make NumPy walk
the input with a stride of a whole row for every element, touching a new cache line (and soon a new page) per
element: it ran permute(0, 2, 1) of a (64, 512, 512) float32 array at 2.7 GB/s (torch: the same), a tenth of a
plain copy's speed. ``_transpose_kernel`` copies such arrays in tiles that fit L1 instead. A large same-dtype copy
whose rows are contiguous on both sides (``cat``, ``contiguous`` of a slice, ``out=`` writes) goes through
``_rows_kernel`` on every thread: NumPy's loop moves it on one core, 64 MiB of float32 in 5.7-6.1 ms where two
threads take 3.9 ms, as torch's copy_ does. Everything else (casts, broadcasts, small copies) is NumPy's.
"""

import numpy as np
from numba import njit, prange

from .._dispatch import register
from ._util import run_parallel

TILE = 64  # a TILE x TILE tile of a transposing copy: 16 KiB of float32 read (64 lines of 64 columns), L1-resident
MIN_TRANSPOSE = 1 << 15  # fewest elements worth the tiled kernel (smaller copies stay in cache for NumPy anyway)
_BITS = {4: np.uint32, 8: np.uint64}  # the tiled kernel moves bit patterns: one compile per item size
MIN_ROWS_BYTES = 1 << 19  # smallest copy worth waking the second thread for (512 KiB: ~20 us on one core)
CHUNK_BYTES = 1 << 18  # one prange iteration of ``_rows_kernel`` moves at most this much of one row
_ROW_BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


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


@njit(parallel=True, cache=True)
def _rows_kernel(out, x, A, B, N, chunk, oa, ob, xa, xb):
    """out[a * oa + b * ob + n] = x[a * xa + b * xb + n] for a < A, b < B, n < N: an (A, B) batch of rows of N
    contiguous elements, ``out`` and ``x`` given as 1-D views from each array's first element (strides in items).

    One prange iteration copies ``chunk`` elements (256 KiB) of one row, so a few long rows split over the threads as
    well as many short ones do, and each thread first-touches the pages it writes. Napkin math, a 64 MiB float32
    copy: 192 MiB of traffic (read, write-allocate, write) at the ~52 GB/s two threads reach here, 3.9 ms, as
    torch's copy_ takes; NumPy's one-core loop takes 5.7-6.1 ms in the same run.
    """
    C = (N + chunk - 1) // chunk
    for t in prange(A * B * C):
        r = t // C
        n0 = (t - r * C) * chunk
        n1 = min(n0 + chunk, N)
        a = r // B
        b = r - a * B
        o = a * oa + b * ob
        s = a * xa + b * xb
        out[o + n0:o + n1] = x[s + n0:s + n1]  # a slice copy: an indexed loop pays a wraparound check per item


def _rows_view(out, x):
    """The arguments of ``_rows_kernel`` for ``out[...] = x``, or None when that copy is not one it handles: same
    shape and dtype, at least MIN_ROWS_BYTES, no negative stride and no overlap, and after dropping size-1 axes and
    merging axes that are contiguous with each other in both arrays, at most three axes of which the last has unit
    stride in both."""
    size = x.dtype.itemsize
    if (x.shape != out.shape or x.dtype != out.dtype or size not in _ROW_BITS or out.nbytes < MIN_ROWS_BYTES
            or np.may_share_memory(out, x)):
        return None
    dims = []
    for n, so, sx in zip(out.shape, out.strides, x.strides):
        if n == 1:
            continue
        if so < 0 or sx < 0 or so % size or sx % size:
            return None
        if dims and dims[-1][1] == n * so and dims[-1][2] == n * sx:
            dims[-1] = (dims[-1][0] * n, so, sx)
        else:
            dims.append((n, so, sx))
    if len(dims) > 3 or dims[-1][1] != size or dims[-1][2] != size:
        return None
    dims = [(1, 0, 0)] * (3 - len(dims)) + dims
    (A, oa, xa), (B, ob, xb), (N, _, _) = dims
    bits = _ROW_BITS[size]
    flat = []
    for arr, sa, sb in ((out, oa, ob), (x, xa, xb)):
        span = (A - 1) * sa // size + (B - 1) * sb // size + N
        flat.append(np.lib.stride_tricks.as_strided(arr.view(bits), (span,), (size,)))
    chunk = max(CHUNK_BYTES // size, 1)
    return flat[0], flat[1], A, B, N, chunk, oa // size, ob // size, xa // size, xb // size


@register("copy", "cpu")
def copy(out, x):
    """out[...] = x, any strides and any dtype pair (C-style cast); ``x`` broadcasts to ``out.shape``. Transposing
    copies go through ``_transpose_kernel``, large row-contiguous ones through ``_rows_kernel``, all others through
    NumPy."""
    views = _transpose_view(out, x)
    if views is not None:
        run_parallel(_transpose_kernel, out.size, *views)
        return
    rows = _rows_view(out, x)
    if rows is None:
        np.copyto(out, x, casting="unsafe")
    else:
        _rows_kernel(*rows)


@register("fill", "cpu")
def fill(out, value):
    out.fill(value)
