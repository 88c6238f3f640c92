"""CPU kernels of the dropout family, driven by a counter-based generator: the random bits of element (or channel)
``i`` are ``splitmix64(key + (i + 1) * golden)``, a pure function of the call's key and ``i``. The mask is therefore
the same whatever the number of threads or the split of the work, and each element is independent of the others.

Inputs are viewed as ``x: (R, L)``: one row of all elements for elementwise dropout, or one row per channel for
channel-wise dropout. An element is kept when the high 32 bits of its draw are below ``threshold`` (keep
probability ``threshold / 2**32``); kept ``x * keep_mul (+ keep_add)``, dropped ``x * 0 (+ drop_add)``, the adds only
for alpha dropout (``affine``).
"""

import numpy as np
from numba import njit, prange

from .. import _random
from .._dispatch import register
from ._util import run_parallel

CHUNK = 16384  # elements per prange iteration of the elementwise kernel

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)


@njit(cache=True, inline="always")
def _draw(key, i):
    """The high 32 bits of splitmix64's output for counter i under key (uint64 arithmetic, wrapping)."""
    z = key + (np.uint64(i) + np.uint64(1)) * _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    z = z ^ (z >> _S31)
    return z >> _S32


@njit(parallel=True, cache=True)
def _dropout_kernel(out, x, key, threshold, keep_mul, keep_add, drop_add, affine):
    """Elementwise dropout of flat x, out: (M,); element i kept when _draw(key, i) < threshold. One prange
    iteration handles one CHUNK of elements; the arithmetic is in the input dtype (torch's x * noise [+ b])."""
    M = x.shape[0]
    zero = keep_mul - keep_mul  # a zero of the input dtype (keep_mul is finite)
    for c in prange((M + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        hi = min(lo + CHUNK, M)
        xs = x[lo:hi]
        os = out[lo:hi]
        for j in range(hi - lo):
            keep = _draw(key, lo + j) < threshold
            v = xs[j] * (keep_mul if keep else zero)
            if affine:
                v += keep_add if keep else drop_add
            os[j] = v


@njit(parallel=True, cache=True)
def _feature_dropout_kernel(out, x, key, threshold, keep_mul, keep_add, drop_add, affine):
    """Channel-wise dropout of x, out: (R, L); row r kept when _draw(key, r) < threshold. One prange iteration
    handles one row; the arithmetic is in the input dtype."""
    R, L = x.shape
    zero = keep_mul - keep_mul  # a zero of the input dtype (keep_mul is finite)
    for r in prange(R):
        keep = _draw(key, r) < threshold
        m = keep_mul if keep else zero
        a = keep_add if keep else drop_add
        xr = x[r]
        orow = out[r]
        for j in range(L):
            v = xr[j] * m
            if affine:
                v += a
            orow[j] = v


@register("dropout", "cpu")
def dropout(out, x, threshold, keep_mul, keep_add, drop_add, affine, per_row, seed):
    """Dropout of x: (R, L) into out: (R, L), per element or (``per_row``) per row, with the global generator's
    next key or the key of ``seed``."""
    key = np.uint64(_random.next_key("dropout", seed))
    thr = np.uint64(threshold)
    if per_row:
        run_parallel(_feature_dropout_kernel, x.size, out, x, key, thr, keep_mul, keep_add, drop_add, affine)
    else:
        run_parallel(_dropout_kernel, x.size, out.reshape(-1), x.reshape(-1), key, thr, keep_mul, keep_add, drop_add,
                     affine)
