"""CUDA kernels of the embedding family: a row gather, the bounds check that runs before it, and torch's max_norm
renormalisation (each distinct row once, found by marking rows rather than sorting)."""

import math

import numpy as np
from numba import cuda

from .._dispatch import register
from ._util import TPB, blocks, empty, flat, stream
from .shape import fill


@cuda.jit
def _embedding_kernel(out, idx, weight):
    """out[i, d] = weight[idx[i], d] for out viewed flat as (M * D,), idx: (M,) int64, weight: (V, D). One thread
    per output element (consecutive threads copy consecutive d: coalesced); grid = ceil(M * D / TPB) blocks."""
    j = cuda.grid(1)
    if j < out.shape[0]:
        D = weight.shape[1]
        i = j // D
        out[j] = weight[idx[i], j - i * D]


@register("embedding", "cuda")
def embedding(out, idx, weight):
    """Gather rows of weight: (V, D) by idx: (M,) (already bounds-checked) into out: (M, D)."""
    _embedding_kernel[blocks(out.size), TPB, stream()](flat(out), idx, weight)


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
