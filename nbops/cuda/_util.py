"""Launch helpers shared by the CUDA families.

Every launch goes on ``stream()`` (``kernel[grid, block, stream()](...)``) and every temporary comes from
``empty()``: both read the public call being launched (``_dispatch.Call`` decides its stream once, from the caller's
framework or ``nbops.cuda_stream``), so launch policy about streams and allocators lives here and in
``_arrays.call_stream``, not in the launchers.
"""

import numpy as np
from numba import config, cuda

from .._arrays import cuda_as_strided, launch_empty, launch_stream

TPB = 256  # threads per block of the 1-D elementwise kernels
MAX_RANK = 8  # rank that strided kernels pad their operands to


def stream():
    """The stream of the call being launched: the caller's framework's current stream (torch's, CuPy's), the one
    given with ``nbops.cuda_stream``, or numba's default stream (0)."""
    return launch_stream()


def empty(shape, dtype):
    """An uninitialised temporary for the call being launched, from the caller's allocator (torch's caching
    allocator, CuPy's pool, numba's for numba arrays), bound to the call's stream."""
    return launch_empty(shape, dtype)


def blocks(n, tpb=TPB):
    """Blocks needed to give each of ``n`` items one thread."""
    return (n + tpb - 1) // tpb


def pad_rank(x, shape=None):
    """A view of device array ``x`` with MAX_RANK dims: leading size-1 dims, and stride 0 along every dim where
    ``x`` is broadcast to ``shape`` (its own shape by default). Lets one compiled kernel serve every rank."""
    shape = tuple(x.shape) if shape is None else tuple(shape)
    if len(shape) > MAX_RANK:
        raise NotImplementedError(f"nbops CUDA kernels support up to {MAX_RANK} dims, got {len(shape)}")
    lead = len(shape) - len(x.shape)
    strides = [0] * lead + [0 if xs == 1 and s != 1 else st for xs, s, st in zip(x.shape, shape[lead:], x.strides)]
    pad = MAX_RANK - len(shape)
    return cuda_as_strided(x, (1,) * pad + shape, (0,) * pad + tuple(strides))


def flat(x):
    """A 1-D view of a C-contiguous device array."""
    return x.reshape(int(np.prod(x.shape, dtype=np.int64)))


# ----------------------------------------------------------------------------------------------------------------
# grid-stride elementwise maps

UNROLL = 4  # elements a thread loads before it stores any (independent loads in flight), at stride gridsize
BLOCKS_PER_SM = 8  # 8 x TPB = 2048 threads: a full H100/H200 SM when a kernel uses <= 32 registers
SIM_SMS = 2  # the SM count the simulator stands in with (it runs every thread as a Python thread)
_SMS = []


def sm_count():
    """The current device's multiprocessor count (read once), or SIM_SMS under the simulator."""
    if not _SMS:
        _SMS.append(SIM_SMS if config.ENABLE_CUDASIM else cuda.get_current_device().MULTIPROCESSOR_COUNT)
    return _SMS[0]


def map_grid(n, tpb=TPB):
    """Blocks of a grid-stride kernel over ``n`` items that handles UNROLL items per thread per pass: enough to
    cover ``n`` in one pass, at most BLOCKS_PER_SM per SM (the rest of the work is the grid-stride loop)."""
    return max(1, min((n + tpb * UNROLL - 1) // (tpb * UNROLL), sm_count() * BLOCKS_PER_SM))


def elem_strides(x, shape):
    """Element strides of device array ``x`` broadcast to ``shape`` (0 along broadcast dims), or None when a
    stride is negative or not a whole number of elements."""
    lead = len(shape) - len(x.shape)
    item = x.dtype.itemsize
    out = [0] * lead
    for n, s, st in zip(x.shape, shape[lead:], x.strides):
        if n == 1:
            out.append(0)
        elif st < 0 or st % item:
            return None
        else:
            out.append(st // item)
    return out


def collapse(shape, strides):
    """(shape, [strides of each operand]) with size-1 dims dropped and neighbouring dims merged wherever every
    operand steps through them as one dim (its outer stride = inner stride x inner size). At least one dim."""
    keep = [d for d, n in enumerate(shape) if n != 1]
    dims = [shape[d] for d in keep]
    sts = [[s[d] for d in keep] for s in strides]
    d = len(dims) - 1
    while d > 0:
        if all(s[d - 1] == s[d] * dims[d] for s in sts):
            dims[d - 1] *= dims[d]
            del dims[d]
            for s in sts:
                del s[d - 1]
        d -= 1
    if not dims:
        return [1], [[0] for _ in strides]
    return dims, sts


def base1d(x, strides, shape):
    """A 1-D device array starting at ``x``'s first element and spanning every element ``x`` reaches with
    ``strides`` (element strides) over ``shape``: ``x`` itself flattened when C-contiguous, else a strided view."""
    if x.is_c_contiguous():
        return x.reshape(x.size) if x.ndim != 1 else x
    span = 1 + sum((n - 1) * s for n, s in zip(shape, strides))
    return cuda_as_strided(x, (span,), (x.dtype.itemsize,))


def box_lanes(C, tpb=TPB):
    """Threads that share one row of C elements in the box kernels: enough for about UNROLL elements each, a power
    of two dividing ``tpb`` (so a block holds tpb // lanes whole rows)."""
    lanes = 1
    while lanes < tpb and lanes * UNROLL < C:
        lanes *= 2
    return lanes


def box_grid(dims, lanes, tpb=TPB):
    """Blocks of a box kernel over ``dims`` (A, B, C): one per tpb // lanes rows, at most BLOCKS_PER_SM per SM."""
    rows = dims[0] * dims[1]
    per_block = tpb // lanes
    return max(1, min((rows + per_block - 1) // per_block, sm_count() * BLOCKS_PER_SM))


def map_kernels(f, arity):
    """(flat, box) kernels computing ``out = f(*operands, p)`` elementwise for ``arity`` (1-3) operands and a
    tuple ``p`` of scalar parameters; the store casts to out's dtype.

    flat[grid, TPB](out, x..., sx..., p): out (n,) C-contiguous; operand ``x`` 1-D, element i at x[i * sx]
    (sx = 1 same-shape contiguous, 0 a broadcast scalar). Thread t of T = grid * TPB handles elements t, t + T,
    ...; it loads UNROLL (4) of them, at stride T (each warp access coalesced), before storing any, so 4 loads per
    operand are in flight per thread. Grid: ``map_grid(n)`` (<= BLOCKS_PER_SM per SM).

    box[grid, TPB](out, so, x..., sx..., dims, lanes, p): every array 1-D with a 3-tuple of element strides over
    the C-order box ``dims`` = (A, B, C), seen as A * B rows of C. ``lanes`` (``box_lanes(C)``) threads share a
    row: thread t of a block serves rows r = block * (TPB // lanes) + t // lanes, then r + grid * (TPB // lanes),
    ...; in a row it handles columns t % lanes, + lanes, ... 4 at a time (4 loads in flight per operand), with
    the row's base offsets computed once per row (one division). Covers any broadcast or layout that ``collapse``
    folds to 3 dims (row + matrix, per-channel, strided views, a strided slice of cat's output). Grid:
    ``box_grid(dims, lanes)``.

    An fp32 unary map over 2**26 elements moves 512 MiB: ~130 us at 4 TB/s.
    """
    if arity == 1:
        @cuda.jit
        def flat(out, x, sx, p):
            T = cuda.gridsize(1)
            n = out.shape[0]
            i = cuda.grid(1)
            while i + 3 * T < n:
                x0, x1, x2, x3 = x[i * sx], x[(i + T) * sx], x[(i + 2 * T) * sx], x[(i + 3 * T) * sx]
                out[i] = f(x0, p)
                out[i + T] = f(x1, p)
                out[i + 2 * T] = f(x2, p)
                out[i + 3 * T] = f(x3, p)
                i += 4 * T
            while i < n:
                out[i] = f(x[i * sx], p)
                i += T

        @cuda.jit
        def box(out, so, x, sx, dims, lanes, p):
            B, C = dims[1], dims[2]
            per_block = cuda.blockDim.x // lanes
            lane = cuda.threadIdx.x % lanes
            r = cuda.blockIdx.x * per_block + cuda.threadIdx.x // lanes
            while r < dims[0] * B:
                a = r // B
                b = r - a * B
                ob, xb = a * so[0] + b * so[1], a * sx[0] + b * sx[1]
                c = lane
                while c + 3 * lanes < C:
                    c1, c2, c3 = c + lanes, c + 2 * lanes, c + 3 * lanes
                    x0, x1, x2, x3 = x[xb + c * sx[2]], x[xb + c1 * sx[2]], x[xb + c2 * sx[2]], x[xb + c3 * sx[2]]
                    out[ob + c * so[2]] = f(x0, p)
                    out[ob + c1 * so[2]] = f(x1, p)
                    out[ob + c2 * so[2]] = f(x2, p)
                    out[ob + c3 * so[2]] = f(x3, p)
                    c += 4 * lanes
                while c < C:
                    out[ob + c * so[2]] = f(x[xb + c * sx[2]], p)
                    c += lanes
                r += cuda.gridDim.x * per_block

    elif arity == 2:
        @cuda.jit
        def flat(out, x, y, sx, sy, p):
            T = cuda.gridsize(1)
            n = out.shape[0]
            i = cuda.grid(1)
            while i + 3 * T < n:
                x0, x1, x2, x3 = x[i * sx], x[(i + T) * sx], x[(i + 2 * T) * sx], x[(i + 3 * T) * sx]
                y0, y1, y2, y3 = y[i * sy], y[(i + T) * sy], y[(i + 2 * T) * sy], y[(i + 3 * T) * sy]
                out[i] = f(x0, y0, p)
                out[i + T] = f(x1, y1, p)
                out[i + 2 * T] = f(x2, y2, p)
                out[i + 3 * T] = f(x3, y3, p)
                i += 4 * T
            while i < n:
                out[i] = f(x[i * sx], y[i * sy], p)
                i += T

        @cuda.jit
        def box(out, so, x, y, sx, sy, dims, lanes, p):
            B, C = dims[1], dims[2]
            per_block = cuda.blockDim.x // lanes
            lane = cuda.threadIdx.x % lanes
            r = cuda.blockIdx.x * per_block + cuda.threadIdx.x // lanes
            while r < dims[0] * B:
                a = r // B
                b = r - a * B
                ob, xb, yb = a * so[0] + b * so[1], a * sx[0] + b * sx[1], a * sy[0] + b * sy[1]
                c = lane
                while c + 3 * lanes < C:
                    c1, c2, c3 = c + lanes, c + 2 * lanes, c + 3 * lanes
                    x0, x1, x2, x3 = x[xb + c * sx[2]], x[xb + c1 * sx[2]], x[xb + c2 * sx[2]], x[xb + c3 * sx[2]]
                    y0, y1, y2, y3 = y[yb + c * sy[2]], y[yb + c1 * sy[2]], y[yb + c2 * sy[2]], y[yb + c3 * sy[2]]
                    out[ob + c * so[2]] = f(x0, y0, p)
                    out[ob + c1 * so[2]] = f(x1, y1, p)
                    out[ob + c2 * so[2]] = f(x2, y2, p)
                    out[ob + c3 * so[2]] = f(x3, y3, p)
                    c += 4 * lanes
                while c < C:
                    out[ob + c * so[2]] = f(x[xb + c * sx[2]], y[yb + c * sy[2]], p)
                    c += lanes
                r += cuda.gridDim.x * per_block

    else:
        @cuda.jit
        def flat(out, x, y, z, sx, sy, sz, p):
            T = cuda.gridsize(1)
            n = out.shape[0]
            i = cuda.grid(1)
            while i + 3 * T < n:
                x0, x1, x2, x3 = x[i * sx], x[(i + T) * sx], x[(i + 2 * T) * sx], x[(i + 3 * T) * sx]
                y0, y1, y2, y3 = y[i * sy], y[(i + T) * sy], y[(i + 2 * T) * sy], y[(i + 3 * T) * sy]
                z0, z1, z2, z3 = z[i * sz], z[(i + T) * sz], z[(i + 2 * T) * sz], z[(i + 3 * T) * sz]
                out[i] = f(x0, y0, z0, p)
                out[i + T] = f(x1, y1, z1, p)
                out[i + 2 * T] = f(x2, y2, z2, p)
                out[i + 3 * T] = f(x3, y3, z3, p)
                i += 4 * T
            while i < n:
                out[i] = f(x[i * sx], y[i * sy], z[i * sz], p)
                i += T

        @cuda.jit
        def box(out, so, x, y, z, sx, sy, sz, dims, lanes, p):
            B, C = dims[1], dims[2]
            per_block = cuda.blockDim.x // lanes
            lane = cuda.threadIdx.x % lanes
            r = cuda.blockIdx.x * per_block + cuda.threadIdx.x // lanes
            while r < dims[0] * B:
                a = r // B
                b = r - a * B
                ob, xb = a * so[0] + b * so[1], a * sx[0] + b * sx[1]
                yb, zb = a * sy[0] + b * sy[1], a * sz[0] + b * sz[1]
                c = lane
                while c + 3 * lanes < C:
                    c1, c2, c3 = c + lanes, c + 2 * lanes, c + 3 * lanes
                    x0, x1, x2, x3 = x[xb + c * sx[2]], x[xb + c1 * sx[2]], x[xb + c2 * sx[2]], x[xb + c3 * sx[2]]
                    y0, y1, y2, y3 = y[yb + c * sy[2]], y[yb + c1 * sy[2]], y[yb + c2 * sy[2]], y[yb + c3 * sy[2]]
                    z0, z1, z2, z3 = z[zb + c * sz[2]], z[zb + c1 * sz[2]], z[zb + c2 * sz[2]], z[zb + c3 * sz[2]]
                    out[ob + c * so[2]] = f(x0, y0, z0, p)
                    out[ob + c1 * so[2]] = f(x1, y1, z1, p)
                    out[ob + c2 * so[2]] = f(x2, y2, z2, p)
                    out[ob + c3 * so[2]] = f(x3, y3, z3, p)
                    c += 4 * lanes
                while c < C:
                    out[ob + c * so[2]] = f(x[xb + c * sx[2]], y[yb + c * sy[2]], z[zb + c * sz[2]], p)
                    c += lanes
                r += cuda.gridDim.x * per_block
    return flat, box


def launch_map(kernels, out, xs, p=()):
    """out = f(*xs, p) with ``kernels = map_kernels(f, len(xs))``: the flat kernel when every operand is
    C-contiguous with out's shape or holds one element (no views made beyond 1-D reshapes), else the box kernel
    when out and the operands fold to 3 dims (``collapse``). Returns False (nothing launched) when they do not:
    the caller's 8-D kernel takes over. ``out`` may be strided (a slice of cat's result) on the box path only."""
    n = out.size
    if not n:
        return True
    flat_k, box_k = kernels
    shape = tuple(out.shape)
    if out.is_c_contiguous() and all(x.size == 1 or (x.is_c_contiguous() and tuple(x.shape) == shape) for x in xs):
        steps = tuple(0 if x.size == 1 and n != 1 else 1 for x in xs)
        bases = tuple(x.reshape(x.size) if x.ndim != 1 else x for x in xs)
        o = out.reshape(n) if out.ndim != 1 else out
        flat_k[map_grid(n), TPB, stream()](o, *bases, *steps, p)
        return True
    strides = [elem_strides(a, shape) for a in (out,) + tuple(xs)]
    if any(s is None for s in strides):
        return False
    dims, sts = collapse(shape, strides)
    if len(dims) > 3:
        return False
    bases = tuple(base1d(a, s, shape) for a, s in zip((out,) + tuple(xs), strides))
    sts = tuple(tuple([0] * (3 - len(dims)) + s) for s in sts)
    box = tuple([1] * (3 - len(dims)) + dims)
    lanes = box_lanes(box[2])
    box_k[box_grid(box, lanes), TPB, stream()](bases[0], sts[0], *bases[1:], *sts[1:], box, lanes, p)
    return True
