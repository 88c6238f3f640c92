"""Warp- and block-level reductions for CUDA kernels: sum, max and min (and prod) of one value per thread.

    scratch = cuda.shared.array(SCRATCH, dtype=x.dtype)   # once per kernel and dtype, reusable by every call
    total = block_sum(v, scratch)                          # every thread of the block gets the block's sum
    peak = warp_max(v, scratch)                            # every lane gets its warp's max

Contract (both paths):
- The block has a multiple of 32 threads (1-, 2- or 3-D; threads are numbered x fastest, so a (32, k) block has
  one warp per y). Warp w is threads 32w .. 32w + 31 in that numbering.
- Every thread of the block calls the function, at the same point of the kernel (no thread has returned early and
  no call sits under a condition that differs between threads): the shared-memory path synchronises the whole
  block even in the warp functions, and the shuffle path's block functions do.
- The result is broadcast: every thread (warp functions: every lane of the warp) returns the same bits.
- ``scratch`` is a shared array of the values' dtype with at least ``SCRATCH`` elements. Calls may follow one
  another on the same scratch with no synchronisation between them: each call ends with a ``syncthreads`` after its
  last read of ``scratch``. A thread's own shared data written before the call is visible to the block afterwards.
- Values: float32, float64, int32 or int64 (what ``shfl_*_sync`` moves). max and min propagate NaN (torch's
  ``amax``/``amin``): the result is NaN when any value is.
- Deterministic: the values are combined in one fixed tree order (lane i with lane i + 16, then + 8, + 4, + 2,
  + 1; then the warps' partials the same way), the same on both paths, so a simulator run gives the GPU's bits.

Two paths, chosen at import time by ``numba.config.ENABLE_CUDASIM`` (the simulator has no warp shuffles):
- shuffle (``*_shfl``, on a GPU): a warp combines with 5 ``shfl_down_sync`` steps and broadcasts lane 0's result
  with ``shfl_sync``; a block writes one partial per warp to scratch (``syncthreads``), every warp combines the
  partials again with shuffles, and a final ``syncthreads`` frees scratch. Warp functions: no ``syncthreads``;
  block functions: 2. Scratch use: 32 elements (``SCRATCH_SHFL``).
- shared-memory tree (``*_tree``, under the simulator; also compiles and runs on a GPU, where the tests check it):
  every thread writes its value to ``scratch[tid]`` and the same tree runs in shared memory with a ``syncthreads``
  after each level. Warp functions: 7 ``syncthreads``; block functions: 12. Scratch use: one element per thread of
  the block, up to 1024 (``SCRATCH_TREE``).

Cost on an H200 (shuffle path): a warp reduction is ~6 shuffles (~150 cycles of latency); a block reduction adds
two block barriers and a shared-memory round trip (~0.3 us at 1.9 GHz), so a kernel that reduces one row per block
keeps a few blocks resident per SM to hide it.
"""

from numba import config, cuda

FULL_MASK = 0xFFFFFFFF
SCRATCH_SHFL = 32  # one partial per warp of a block of at most 1024 threads
SCRATCH_TREE = 1024  # one slot per thread of the largest block
SCRATCH = SCRATCH_TREE if config.ENABLE_CUDASIM else SCRATCH_SHFL


@cuda.jit(device=True)
def _add(a, b):
    return a + b


@cuda.jit(device=True)
def _mul(a, b):
    return a * b


@cuda.jit(device=True)
def _max(a, b):
    """The larger of ``a`` and ``b``; NaN when either is (``a`` when both are)."""
    return a if a > b or a != a else b


@cuda.jit(device=True)
def _min(a, b):
    """The smaller of ``a`` and ``b``; NaN when either is (``a`` when both are)."""
    return a if a < b or a != a else b


@cuda.jit(device=True)
def thread_rank():
    """(tid, nthreads): this thread's number in the block (x fastest, then y, then z) and the block's size."""
    tid = cuda.threadIdx.x + cuda.blockDim.x * (cuda.threadIdx.y + cuda.blockDim.y * cuda.threadIdx.z)
    return tid, cuda.blockDim.x * cuda.blockDim.y * cuda.blockDim.z


def _shfl_reducers(op):
    """(warp, block) reductions with combining function ``op`` on the shuffle path."""

    @cuda.jit(device=True)
    def to_lane0(v, n):
        """Lane 0 gets op over lanes 0 .. n-1 of this warp (lanes at or past n are never read); other lanes hold
        partial results."""
        lane = thread_rank()[0] & 31
        off = 16
        while off > 0:
            other = cuda.shfl_down_sync(FULL_MASK, v, off)
            if lane + off < n:
                v = op(v, other)
            off //= 2
        return v

    @cuda.jit(device=True)
    def warp(v, scratch):
        return cuda.shfl_sync(FULL_MASK, to_lane0(v, 32), 0)

    @cuda.jit(device=True)
    def block(v, scratch):
        tid, nthreads = thread_rank()
        lane = tid & 31
        r = to_lane0(v, 32)
        if lane == 0:
            scratch[tid >> 5] = r
        cuda.syncthreads()  # every warp's partial is in scratch before any warp reads them
        nw = nthreads >> 5
        p = scratch[lane] if lane < nw else scratch[0]
        p = cuda.shfl_sync(FULL_MASK, to_lane0(p, nw), 0)
        cuda.syncthreads()  # every warp has read the partials before a next call may overwrite scratch
        return p

    return warp, block


def _tree_reducers(op):
    """(warp, block) reductions with combining function ``op`` on the shared-memory path: the shuffle path's tree,
    level by level in ``scratch[tid]``."""

    @cuda.jit(device=True)
    def warps_to_slot0(v, scratch, tid):
        """Leave op over warp w's values in scratch[32 w], for every warp w of the block."""
        lane = tid & 31
        scratch[tid] = v
        cuda.syncthreads()  # every value is in scratch before the first level reads it
        off = 16
        while off > 0:
            if lane < off:
                scratch[tid] = op(scratch[tid], scratch[tid + off])
            cuda.syncthreads()  # this level's results are written before the next level reads them
            off //= 2

    @cuda.jit(device=True)
    def warp(v, scratch):
        tid = thread_rank()[0]
        warps_to_slot0(v, scratch, tid)
        r = scratch[tid - (tid & 31)]
        cuda.syncthreads()  # every thread has read its warp's result before a next call may overwrite scratch
        return r

    @cuda.jit(device=True)
    def block(v, scratch):
        tid, nthreads = thread_rank()
        warps_to_slot0(v, scratch, tid)
        nw = nthreads >> 5
        off = 16
        while off > 0:
            if tid < off and tid + off < nw:
                scratch[32 * tid] = op(scratch[32 * tid], scratch[32 * (tid + off)])
            cuda.syncthreads()  # this level's results are written before the next level reads them
            off //= 2
        r = scratch[0]
        cuda.syncthreads()  # every thread has read the result before a next call may overwrite scratch
        return r

    return warp, block


warp_sum_shfl, block_sum_shfl = _shfl_reducers(_add)
warp_prod_shfl, block_prod_shfl = _shfl_reducers(_mul)
warp_max_shfl, block_max_shfl = _shfl_reducers(_max)
warp_min_shfl, block_min_shfl = _shfl_reducers(_min)
warp_sum_tree, block_sum_tree = _tree_reducers(_add)
warp_prod_tree, block_prod_tree = _tree_reducers(_mul)
warp_max_tree, block_max_tree = _tree_reducers(_max)
warp_min_tree, block_min_tree = _tree_reducers(_min)

if config.ENABLE_CUDASIM:
    warp_sum, warp_max, warp_min = warp_sum_tree, warp_max_tree, warp_min_tree
    block_sum, block_max, block_min = block_sum_tree, block_max_tree, block_min_tree
    warp_prod, block_prod = warp_prod_tree, block_prod_tree
else:
    warp_sum, warp_max, warp_min = warp_sum_shfl, warp_max_shfl, warp_min_shfl
    block_sum, block_max, block_min = block_sum_shfl, block_max_shfl, block_min_shfl
    warp_prod, block_prod = warp_prod_shfl, block_prod_shfl
