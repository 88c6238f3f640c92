"""CUDA kernels of the linear family: a shared-memory tiled, register-blocked batched GEMM.

A block of THREADS_X x THREADS_Y threads computes a BM x BN tile of one output matrix. It walks K in steps of BK:
the block stages the BM x BK tile of A and the BK x BN tile of B in shared memory (each global element read once
per tile, zero-filled past the matrix edges, so any M, N, K work), then every thread accumulates its TM x TN
sub-tile from shared memory in registers. Thread (tx, ty) owns rows ``ty + i * THREADS_Y`` and columns
``tx + j * THREADS_X`` of the tile, so neighbouring threads read neighbouring words of ``Bs`` (no bank conflicts),
share words of ``As`` (broadcasts; its rows are padded so the few distinct rows a warp reads sit in different
banks) and store neighbouring output words. Both tiles are staged by consecutive
threads writing consecutive shared words, the A tile along K and the B tile along N. Column tiles run on the grid's
x dimension, row tiles on y and batch items on z; y and z are capped at MAX_GRID_Y / MAX_GRID_Z (CUDA's limits,
which the simulator does not enforce) and their blocks loop over the rest.

Shared buffers have a static dtype, so the kernel is built once per dtype (float32, float64, and int64, which
every integer product runs in) by a module-level factory, when this module is imported.
"""

import numpy as np
from numba import cuda, float32, float64, int64

from .._dispatch import kernel, register
from ._util import TPB, blocks, empty, flat, stream

BM, BN, BK = 64, 64, 16  # output tile of a block (rows, columns) and the K step staged in shared memory
TM, TN = 8, 8  # output sub-tile of a thread: 64 accumulators, 16 shared loads for 64 FMAs a k step
THREADS_X, THREADS_Y = BN // TN, BM // TM  # 8 x 8 = 64 threads a block
PAD = 1  # extra column of the shared A tile, so that the rows a warp reads fall in different banks
BKP = BK + PAD  # columns of the shared A tile: a shared array's shape must be module constants, not expressions
MAX_GRID_Y = 65535  # the grid's y limit; more row tiles loop
MAX_GRID_Z = 65535  # the grid's z limit; larger batches loop


def _make_matmul(dt):
    @cuda.jit
    def kernel(out, a, b, alpha, beta):
        """out[n] = alpha * a[n] @ b[n] + beta * out[n] (out not read when beta == 0).

        out: (BATCH, M, N) C-contiguous; a: (BATCH, M, K), b: (BATCH, K, N), any strides (batch stride 0
        broadcasts). grid = (ceil(N / BN), min(ceil(M / BM), MAX_GRID_Y), min(BATCH, MAX_GRID_Z)), block =
        (THREADS_X, THREADS_Y); one thread computes TM x TN outputs of each (batch item, row tile) its block visits,
        accumulating in the kernel's dtype. The loops' trip counts depend on the block only, so every thread of a
        block reaches every syncthreads.
        """
        As = cuda.shared.array((BM, BKP), dt)  # As[r, k] = A[row0 + r, k0 + k]
        Bs = cuda.shared.array((BK, BN), dt)  # Bs[k, c] = B[k0 + k, col0 + c]
        acc = cuda.local.array((TM, TN), dt)
        BATCH, M, N = out.shape
        K = a.shape[2]
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * THREADS_X + tx
        col0 = cuda.blockIdx.x * BN
        for n in range(cuda.blockIdx.z, BATCH, cuda.gridDim.z):
            for row0 in range(cuda.blockIdx.y * BM, M, cuda.gridDim.y * BM):
                for i in range(TM):
                    for j in range(TN):
                        acc[i, j] = 0
                for k0 in range(0, K, BK):
                    for e in range(tid, BM * BK, THREADS_X * THREADS_Y):
                        r = e // BK
                        k = e % BK
                        if row0 + r < M and k0 + k < K:
                            As[r, k] = a[n, row0 + r, k0 + k]
                        else:
                            As[r, k] = 0
                    for e in range(tid, BK * BN, THREADS_X * THREADS_Y):
                        k = e // BN
                        c = e % BN
                        if k0 + k < K and col0 + c < N:
                            Bs[k, c] = b[n, k0 + k, col0 + c]
                        else:
                            Bs[k, c] = 0
                    cuda.syncthreads()  # both tiles are fully staged before any thread reads them
                    for k in range(BK):
                        for i in range(TM):
                            av = As[ty + i * THREADS_Y, k]
                            for j in range(TN):
                                acc[i, j] += av * Bs[k, tx + j * THREADS_X]
                    cuda.syncthreads()  # every thread is done reading before the next step overwrites the tiles
                for i in range(TM):
                    r = row0 + ty + i * THREADS_Y
                    if r < M:
                        for j in range(TN):
                            c = col0 + tx + j * THREADS_X
                            if c < N:
                                if beta == 0:
                                    out[n, r, c] = alpha * acc[i, j]
                                else:
                                    out[n, r, c] = beta * out[n, r, c] + alpha * acc[i, j]

    return kernel


_matmul_kernel = {np.dtype(np.float32): _make_matmul(float32), np.dtype(np.float64): _make_matmul(float64),
                  np.dtype(np.int64): _make_matmul(int64)}


def _launch(out, a, b, alpha, beta):
    BATCH, M, N = out.shape
    grid = ((N + BN - 1) // BN, min((M + BM - 1) // BM, MAX_GRID_Y), min(BATCH, MAX_GRID_Z))
    dt = np.dtype(out.dtype)
    _matmul_kernel[dt][grid, (THREADS_X, THREADS_Y), stream()](out, a, b, dt.type(alpha), dt.type(beta))


@cuda.jit
def _narrow_kernel(out, wide, bits, signed):
    """out[i] = wide[i] reduced modulo 2**bits into out's integer range (two's complement wrap-around, stated
    explicitly rather than left to the cast); out, wide: (M,); one thread per element."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        v = wide[i] & ((1 << bits) - 1)
        if signed and v >= (1 << (bits - 1)):
            v -= 1 << bits
        out[i] = v


@register("matmul", "cuda")
def matmul(out, a, b, alpha=1, beta=0):
    """out = alpha * a @ b + beta * out, batched (out not read when beta == 0).

    out: (BATCH, M, N) C-contiguous; a: (BATCH, M, K), b: (BATCH, K, N), any strides (stride 0 broadcasts).
    Integers run in int64 (wrapping products and sums reduce to out's dtype exactly as torch's do).
    """
    dt = np.dtype(out.dtype)
    if dt.kind == "f":
        _launch(out, a, b, alpha, beta)
        return
    copy = kernel("copy", "cuda")
    a64, b64 = (empty(x.shape, np.int64) for x in (a, b))
    copy(a64, a)
    copy(b64, b)
    if dt == np.int64:
        _launch(out, a64, b64, alpha, beta)
        return
    wide = empty(out.shape, np.int64)
    if beta:
        copy(wide, out)
    _launch(wide, a64, b64, alpha, beta)
    _narrow_kernel[blocks(out.size), TPB, stream()](flat(out), flat(wide), 8 * dt.itemsize, dt.kind == "i")
