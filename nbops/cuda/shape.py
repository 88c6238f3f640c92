"""CUDA launchers of the shape family: strided copies (with dtype casts) and fills.

Copies (``contiguous``, ``astype``, ``reshape`` of a non-viewable layout, and ``cat``/``stack`` writing each input
into a slice of the result) pick by layout: a tiled shared-memory transpose when x's unit-stride dim is not out's
last; the grid-stride copy map (``_util.map_kernels``) when the layouts fold to 3 dims, flat when both are
contiguous; else one thread per element over 8-D views (the general fallback and the oracle): into a C-contiguous
output indexed flat, into a strided one indexed 8-D on both sides.
"""

import numpy as np
from numba import cuda, from_dtype

from .._dispatch import register
from ._util import (TPB, base1d, blocks, collapse, elem_strides, flat, launch_map, map_grid, map_kernels, pad_rank,
                    stream)


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


@cuda.jit(device=True)
def _identity(v, p):
    return v


_COPY_MAP = map_kernels(_identity, 1)
TILE = 32  # the transposing copy moves TILE x TILE tiles
TILE_PAD = TILE + 1  # shared tile row length: the write phase's column reads hit 32 different banks
TILE_ROWS = 8  # ... with blocks of (TILE, TILE_ROWS) threads, each thread moving TILE // TILE_ROWS elements
MAX_GRID_YZ = 65535  # CUDA's limit on gridDim.y and gridDim.z
_TRANSPOSE = {}  # out dtype -> its transposing copy kernel


def _transpose_kernel(dtype):
    """The transposing copy for outputs of numpy ``dtype`` (its shared tile holds out's dtype), compiled once.

    out[q, p, c] = x[q, p, c] over a (Q, P, C) box, both given as 1-D arrays with 3-tuples of element strides,
    where x is unit-stride along p and out along c (permute(0, 2, 1) + contiguous, a transposed matrix made
    contiguous). A direct copy would read x one element per 32-byte sector; here block (bx, by, bz) moves the
    TILE x TILE tile (p0 = by * TILE, c0 = bx * TILE) of q = bz, bz + gridDim.z, ...: thread (tx, ty) reads
    x[q, p0 + tx, c0 + ty + k * TILE_ROWS] for k < TILE // TILE_ROWS (a warp reads 32 neighbouring p: coalesced)
    into the shared tile, then writes out[q, p0 + ty + k * TILE_ROWS, c0 + tx] (a warp writes 32 neighbouring c:
    coalesced). Grid: (ceil(C / TILE), ceil(P / TILE), min(Q, 65535)). (64, 512, 512) fp32 moves 128 MiB: ~34 us
    at 4 TB/s.
    """
    kern = _TRANSPOSE.get(dtype)
    if kern is not None:
        return kern
    nbtype = from_dtype(dtype)

    @cuda.jit
    def transpose(out, so, x, sx, dims):
        Q, P, C = dims
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        p0 = cuda.blockIdx.y * TILE
        c0 = cuda.blockIdx.x * TILE
        tile = cuda.shared.array((TILE, TILE_PAD), nbtype)
        for q in range(cuda.blockIdx.z, Q, cuda.gridDim.z):
            p = p0 + tx
            for k in range(TILE // TILE_ROWS):
                c = c0 + ty + k * TILE_ROWS
                if p < P and c < C:
                    tile[ty + k * TILE_ROWS, tx] = x[q * sx[0] + p * sx[1] + c * sx[2]]
            cuda.syncthreads()  # the whole tile is loaded before threads read the elements others loaded
            c = c0 + tx
            for k in range(TILE // TILE_ROWS):
                p = p0 + ty + k * TILE_ROWS
                if p < P and c < C:
                    out[q * so[0] + p * so[1] + c * so[2]] = tile[tx, p - p0]
            cuda.syncthreads()  # every thread has read the tile before the next q overwrites it

    _TRANSPOSE[dtype] = transpose
    return transpose


def _transposing(out, x):
    """(out base, out strides, x base, x strides, (Q, P, C)) when the copy out[...] = x folds to a box whose last
    dim is unit-stride in out but not in x while another dim is unit-stride in x; else None."""
    shape = tuple(out.shape)
    strides = [elem_strides(out, shape), elem_strides(x, shape)]
    if strides[1] is None or strides[0] is None:
        return None
    dims, (so, sx) = collapse(shape, strides)
    if not 2 <= len(dims) <= 3 or so[-1] != 1 or sx[-1] == 1 or 1 not in sx[:-1]:
        return None
    dims, so, sx = [1] * (3 - len(dims)) + dims, [0] * (3 - len(so)) + so, [0] * (3 - len(sx)) + sx
    p = sx.index(1, 0, 2)
    order = (1 - p, p, 2)
    dims = tuple(dims[d] for d in order)
    if (dims[1] + TILE - 1) // TILE > MAX_GRID_YZ:
        return None
    return (base1d(out, strides[0], shape), tuple(so[d] for d in order), base1d(x, strides[1], shape),
            tuple(sx[d] for d in order), dims)


@register("copy", "cuda")
def copy(out, x):
    """out[...] = x; ``x`` has any strides and broadcasts to ``out.shape``; ``out`` may be strided too.

    A transposing layout goes through shared-memory tiles (``_transpose_kernel``); any other layout that folds to 3
    dims through the grid-stride copy map (contiguous copies and casts: the flat kernel); the rest through the
    one-thread-per-element 8-D kernels."""
    n = out.size
    if not n:
        return
    tr = _transposing(out, x) if x.size > 1 else None
    if tr is not None:
        ob, so, xb, sx, dims = tr
        grid = ((dims[2] + TILE - 1) // TILE, (dims[1] + TILE - 1) // TILE, min(dims[0], MAX_GRID_YZ))
        _transpose_kernel(np.dtype(out.dtype))[grid, (TILE, TILE_ROWS), stream()](ob, so, xb, sx, dims)
    elif launch_map(_COPY_MAP, out, (x,)):
        pass
    elif out.is_c_contiguous():
        _copy_kernel[blocks(n), TPB, stream()](flat(out), pad_rank(x, out.shape))
    else:
        _copy_strided_kernel[blocks(n), TPB, stream()](pad_rank(out), pad_rank(x, out.shape), n)


@cuda.jit
def _fill_kernel(out, value):
    """out[i] = value for the contiguous 1-D ``out``: thread t of T stores t, t + T, ... (stores need no loads in
    flight); grid = ``map_grid(n)`` blocks of TPB threads."""
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = value


@register("fill", "cuda")
def fill(out, value):
    n = out.size
    if n:
        _fill_kernel[map_grid(n), TPB, stream()](flat(out), value)
