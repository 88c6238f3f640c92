"""CPU launchers of the shape family: strided copies (with dtype casts) and fills.

Three paths. A copy that *transposes*, where the input's contiguous axis is not the output's, would make NumPy walk
the input with a stride of a whole row for every element, touching a new cache line (and soon a new page) per
element: it ran permute(0, 2, 1) of a (64, 512, 512) float32 array at 2.7 GB/s (torch: the same), a tenth of a
plain copy's speed. ``_transpose_kernel`` copies such arrays in tiles that fit L1 instead. A large same-dtype copy
whose rows are contiguous on both sides (``cat``, ``contiguous`` of a slice or of a permute that keeps the last
axis, as multi-head attention's split and merge of heads, ``out=`` writes) goes through ``_rows_kernel`` on every
thread: NumPy's loop moves it on one core, 64 MiB of float32 in 5.7-6.1 ms where two threads take 3.9 ms, as
torch's copy_ does; (8, 512, 12, 64) float32 permuted (0, 2, 1, 3), rows of 64 values, 0.94-0.97 ms in NumPy's
loop and 0.52-0.54 on the kernel (torch 0.49). Everything else (casts, broadcasts, small copies) is NumPy's.
"""

import numpy as np
from numba import njit, prange

from .._dispatch import register
from ._util import copy_elements, run_parallel

TILE = 64  # a TILE x TILE tile of a transposing copy: 16 KiB of float32 read (64 lines of 64 columns), L1-resident
MIN_TRANSPOSE = 1 << 15  # fewest elements worth the tiled kernel (smaller copies stay in cache for NumPy anyway)
_BITS = {4: np.uint32, 8: np.uint64}  # the tiled kernel moves bit patterns: one compile per item size
MIN_ROWS_BYTES = 1 << 19  # smallest copy worth waking the second thread for (512 KiB: ~20 us on one core)
CHUNK_BYTES = 1 << 18  # one prange iteration of ``_rows_kernel`` moves at most this much: whole rows, or a piece of one
_ROW_BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
ROW_AXES = 4  # ``_rows_kernel``'s row index: up to four axes (a 5-D copy whose last axis is contiguous on both sides)


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
            or not out.flags.c_contiguous or (x.shape[-1] > 1 and x.strides[-1] == x.itemsize)
            or np.may_share_memory(out, x)):
        return None  # (a unit-stride last axis stays the last after merging: a row copy, not a transpose)
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
def _rows_kernel(out, x, outer, ostr, xstr, N, chunk):
    """out[o + n] = x[s + n] for n < N, o = sum_k i[k] * ostr[k] and s = sum_k i[k] * xstr[k] over every index
    i < outer (ROW_AXES axes, row-major): a batch of rows of N contiguous elements, ``out`` and ``x`` given as 1-D
    views from each array's first element (strides in items).

    One prange iteration copies ``chunk`` elements (256 KiB): a run of whole rows where rows are shorter, else a
    piece of one row, so a few long rows split over the threads as well as many short ones do, and each thread
    first-touches the pages it writes. Along a run the row index steps like an odometer (an add a row, a carry per
    wrap), so a row of 64 elements (the heads of a (N, L, H, D) projection turned into (N, H, L, D)) costs its copy
    and a few adds. Napkin math, a 64 MiB float32 copy: 192 MiB of traffic (read, write-allocate, write) at the
    ~52 GB/s two threads reach here, 3.9 ms, as torch's copy_ takes; NumPy's one-core loop takes 5.7-6.1 ms in the
    same run.
    """
    R = 1
    for k in range(ROW_AXES):
        R *= outer[k]
    per = max(1, chunk // N)  # rows a task
    P = 1 if per > 1 else (N + chunk - 1) // chunk  # pieces a row
    for t in prange((R + per - 1) // per * P):
        r0 = t // P * per
        n0 = t % P * chunk
        m = min(n0 + chunk, N) - n0
        idx = np.empty(ROW_AXES, np.int64)
        o = 0
        s = 0
        q = r0
        for k in range(ROW_AXES - 1, -1, -1):
            idx[k] = q % outer[k]
            q //= outer[k]
            o += idx[k] * ostr[k]
            s += idx[k] * xstr[k]
        for _ in range(r0, min(r0 + per, R)):
            copy_elements(out, o + n0, x, s + n0, m)
            k = ROW_AXES - 1
            while k >= 0:  # the next row: add the last axis' strides, carrying into the axes before it
                idx[k] += 1
                o += ostr[k]
                s += xstr[k]
                if idx[k] < outer[k]:
                    break
                o -= outer[k] * ostr[k]
                s -= outer[k] * xstr[k]
                idx[k] = 0
                k -= 1


def _rows_view(out, x):
    """The arguments of ``_rows_kernel`` for ``out[...] = x``, or None when that copy is not one it handles: same
    shape and dtype, at least MIN_ROWS_BYTES, no negative stride and no overlap, and after dropping size-1 axes and
    merging axes that are contiguous with each other in both arrays, at most ROW_AXES + 1 axes of which the last
    has unit stride in both."""
    size = x.dtype.itemsize
    if (x.shape != out.shape or x.dtype != out.dtype or size not in _ROW_BITS or out.nbytes < MIN_ROWS_BYTES
            or np.may_share_memory(out, x)):
        return None
    dims = []  # [count, out step, x step], steps in items, contiguous neighbours merged
    for n, so, sx in zip(out.shape, out.strides, x.strides):
        if n == 1:
            continue
        if so < 0 or sx < 0 or so % size or sx % size:
            return None
        so //= size
        sx //= size
        if dims and dims[-1][1] == n * so and dims[-1][2] == n * sx:
            dims[-1] = [dims[-1][0] * n, so, sx]
        else:
            dims.append([n, so, sx])
    if len(dims) > ROW_AXES + 1 or dims[-1][1] != 1 or dims[-1][2] != 1:
        return None
    N = dims.pop()[0]
    pad = ROW_AXES - len(dims)
    counts, osteps, xsteps = zip(*dims) if dims else ((), (), ())
    outer, ostr, xstr = (1,) * pad + counts, (0,) * pad + osteps, (0,) * pad + xsteps
    bits = _ROW_BITS[size]
    flat = []
    for arr, steps in ((out, ostr), (x, xstr)):
        if arr.flags.c_contiguous:  # a reshape: a third of as_strided's cost
            flat.append(arr.view(bits).reshape(-1))
        else:
            span = sum([(c - 1) * st for c, st in zip(outer, steps)]) + N
            flat.append(np.lib.stride_tricks.as_strided(arr.view(bits), (span,), (size,)))
    return flat[0], flat[1], outer, ostr, xstr, N, max(CHUNK_BYTES // size, 1)


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
