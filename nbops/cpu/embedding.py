"""CPU kernels of the embedding family: a row gather and torch's max_norm renormalisation. Indices arrive as a
flat int64 array already checked to lie in [0, V)."""

import numpy as np
from numba import njit, prange

from .._dispatch import register
from ._util import run_parallel

ROWS = 64  # output rows per prange iteration of the gather


@njit(parallel=True, cache=True)
def _embedding_kernel(out, idx, weight):
    """out[i, :] = weight[idx[i], :]; out: (M, D), idx: (M,) int64, weight: (V, D). One prange iteration copies
    ROWS rows (contiguous, vectorised copies)."""
    M, D = out.shape
    for b in prange((M + ROWS - 1) // ROWS):
        for i in range(b * ROWS, min(M, b * ROWS + ROWS)):
            src = weight[idx[i]]
            dst = out[i]
            for d in range(D):
                dst[d] = src[d]


@register("embedding", "cpu")
def embedding(out, idx, weight):
    """Gather rows of weight: (V, D) by idx: (M,) into out: (M, D)."""
    run_parallel(_embedding_kernel, out.size, out, idx, weight)


@register("embedding_bounds", "cpu")
def embedding_bounds(flag, idx, num_embeddings):
    """flag = (1, an offending index) when some idx: (M,) lies outside [0, num_embeddings), else left at (0, 0)."""
    lo, hi = idx.min(), idx.max()
    if lo < 0 or hi >= num_embeddings:
        flag[0] = 1
        flag[1] = lo if lo < 0 else hi


@njit(parallel=True, cache=True)
def _embedding_renorm_kernel(weight, rows, max_norm, norm_type):
    """For each distinct row r in rows: norm = ||weight[r]||_p (float64 accumulator); when norm > max_norm,
    weight[r] *= max_norm / (norm + 1e-7) (the scale rounded to weight's dtype, as torch's ``row *= scale``).
    p = inf: largest magnitude, -inf: smallest, 0: count of nonzeros. One prange iteration renormalises one row."""
    D = weight.shape[1]
    t = weight.dtype.type
    for k in prange(rows.shape[0]):
        row = weight[rows[k]]
        if norm_type == np.inf:
            norm = 0.0
            for d in range(D):
                norm = max(norm, abs(np.float64(row[d])))
        elif norm_type == -np.inf:
            norm = np.inf
            for d in range(D):
                norm = min(norm, abs(np.float64(row[d])))
        elif norm_type == 0.0:
            norm = 0.0
            for d in range(D):
                if row[d] != 0:
                    norm += 1.0
        elif norm_type == 2.0:
            acc = 0.0
            for d in range(D):
                acc += np.float64(row[d]) * np.float64(row[d])
            norm = np.sqrt(acc)
        else:
            acc = 0.0
            for d in range(D):
                acc += abs(np.float64(row[d])) ** norm_type
            norm = acc ** (1.0 / norm_type)
        if norm > max_norm:
            scale = t(max_norm / (norm + 1e-7))
            for d in range(D):
                row[d] = row[d] * scale


@register("embedding_renorm", "cpu")
def embedding_renorm(weight, idx, max_norm, norm_type):
    """Renormalise IN PLACE the rows of weight: (V, D) named in idx (each distinct row once)."""
    _embedding_renorm_kernel(weight, np.unique(idx), max_norm, norm_type)
