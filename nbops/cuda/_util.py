"""Launch helpers shared by the CUDA families.

Every launch goes on ``stream()`` (``kernel[grid, block, stream()](...)``) and every temporary comes from
``empty()``: both read the public call being launched (``_dispatch.Call`` decides its stream once, from the caller's
framework or ``nbops.cuda_stream``), so launch policy about streams and allocators lives here and in
``_arrays.call_stream``, not in the launchers.
"""

import numpy as np

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
