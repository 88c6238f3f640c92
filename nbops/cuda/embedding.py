"""CUDA kernels of the embedding family: a row gather, the bounds check that runs before it, and torch's max_norm
renormalisation (each distinct row once, found by marking rows rather than sorting)."""

import math

import numpy as np
from numba import cuda

from .._dispatch import register
from ._util import TPB, blocks, empty, sm_count, stream
from .shape import fill


ROW_PASSES = 4  # passes of the four-load loop each thread of a row gets (_row_block)


@cuda.jit
def _embedding_kernel(out, idx, weight):
    """out[i, :] = weight[idx[i], :]; out: (M, D), idx: (M,) int64, weight: (V, D).

    Block (TX, TY): TY looked-up rows at a time, row i = blockIdx.x * TY + ty, grid-stride over the M rows; TX
    threads copy along the row (coalesced) with four loads in flight each. Grid from the SM count.

    Napkin math, 50000 x 768 float32 looked up by 32 x 512 ids: 50 MB of rows read + 50 MB written, 25 us at
    4 TB/s.
    """
    M, D = out.shape
    step = cuda.blockDim.x
    i = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    while i < M:
        src = weight[idx[i]]
        dst = out[i]
        d = cuda.threadIdx.x
        while d + 3 * step < D:  # four unconditional loads in flight (one basic block), then a one-by-one tail
            v0 = src[d]
            v1 = src[d + step]
            v2 = src[d + 2 * step]
            v3 = src[d + 3 * step]
            dst[d] = v0
            dst[d + step] = v1
            dst[d + 2 * step] = v2
            dst[d + 3 * step] = v3
            d += 4 * step
        while d < D:
            dst[d] = src[d]
            d += step
        i += cuda.gridDim.x * cuda.blockDim.y


def _row_block(D):
    """(TX, TY) of ``_embedding_kernel``: TX the largest power of two from 32 to TPB that gives each thread four
    passes of the four-load loop over a row of D (at least 32), TY = TPB // TX rows at a time. D = 768: 32 threads
    with six four-load passes each, not 128 with one pass and two single-load tail passes."""
    tx = 32
    while tx * 2 <= TPB and tx * 2 * 4 * ROW_PASSES <= D:
        tx *= 2
    return tx, TPB // tx


def _blocks_for(rows, per_block):
    """Grid of ``_embedding_kernel``: enough blocks for the rows, at most 8 per SM (TPB = 256: 2048 threads)."""
    return max(1, min((rows + per_block - 1) // per_block, 8 * sm_count()))


@register("embedding", "cuda")
def embedding(out, idx, weight):
    """Gather rows of weight: (V, D) by idx: (M,) (already bounds-checked) into out: (M, D)."""
    block = _row_block(weight.shape[1])
    _embedding_kernel[_blocks_for(idx.shape[0], block[1]), block, stream()](out, idx, weight)


@cuda.jit
def _embedding_bounds_kernel(flag, idx, V):
    """flag = (1, idx[i]) for some i with idx[i] outside [0, V); flag: (2,) int64 starts at 0. One thread per
    index; racing writers all store 1 and an offending index, so any winner is a correct report."""
    i = cuda.grid(1)
    if i < idx.shape[0]:
        v = idx[i]
        if v < 0 or v >= V:
            flag[1] = v
            flag[0] = 1


@register("embedding_bounds", "cuda")
def embedding_bounds(flag, idx, num_embeddings):
    _embedding_bounds_kernel[blocks(idx.size), TPB, stream()](flag, idx, num_embeddings)


@cuda.jit
def _mark_rows_kernel(marks, idx):
    """marks[idx[i]] = 1 for every index (all writers store the same value). One thread per index."""
    i = cuda.grid(1)
    if i < idx.shape[0]:
        marks[idx[i]] = 1


@cuda.jit
def _embedding_renorm_kernel(weight, marks, max_norm, norm_type):
    """For each marked row r: norm = ||weight[r]||_p (float64 accumulator); when norm > max_norm,
    weight[r] *= max_norm / (norm + 1e-7) rounded to weight's dtype. p = inf: largest magnitude, -inf: smallest,
    0: count of nonzeros. One thread per row of weight: (V, D); grid = ceil(V / TPB) blocks."""
    r = cuda.grid(1)
    if r >= weight.shape[0] or marks[r] == 0:
        return
    D = weight.shape[1]
    if norm_type == math.inf:
        norm = 0.0
        for d in range(D):
            a = abs(np.float64(weight[r, d]))
            norm = a if a > norm else norm
    elif norm_type == -math.inf:
        norm = math.inf
        for d in range(D):
            a = abs(np.float64(weight[r, d]))
            norm = a if a < norm else norm
    elif norm_type == 0.0:
        norm = 0.0
        for d in range(D):
            if weight[r, d] != 0:
                norm += 1.0
    elif norm_type == 2.0:
        acc = 0.0
        for d in range(D):
            v = np.float64(weight[r, d])
            acc += v * v
        norm = math.sqrt(acc)
    else:
        acc = 0.0
        for d in range(D):
            acc += abs(np.float64(weight[r, d])) ** norm_type
        norm = acc ** (1.0 / norm_type)
    if norm > max_norm:
        scale = weight.dtype.type(max_norm / (norm + 1e-7))
        for d in range(D):
            weight[r, d] = weight[r, d] * scale


@register("embedding_renorm", "cuda")
def embedding_renorm(weight, idx, max_norm, norm_type):
    """Renormalise IN PLACE the rows of weight: (V, D) named in idx (each distinct row once)."""
    V = weight.shape[0]
    marks = empty(V, np.uint8)
    fill(marks, 0)
    _mark_rows_kernel[blocks(idx.size), TPB, stream()](marks, idx)
    _embedding_renorm_kernel[blocks(V), TPB, stream()](weight, marks, max_norm, norm_type)
