"""CPU kernels of the activation family. Each works on flat, C-contiguous 1-D views; the launcher flattens."""

from numba import njit, prange

from .._dispatch import register

CHUNK = 16384  # elements per prange iteration: large enough to amortise scheduling, small enough to balance


@njit(parallel=True, cache=True)
def _relu_kernel(out, x):
    """out[i] = max(x[i], 0) with NaN kept; x, out: (M,). One prange iteration handles one CHUNK of elements."""
    M = x.shape[0]
    for c in prange((M + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        hi = min(lo + CHUNK, M)
        xs = x[lo:hi]
        os = out[lo:hi]
        for i in range(hi - lo):
            v = xs[i]
            if v < 0:
                os[i] = 0
            else:
                os[i] = v


@register("relu", "cpu")
def relu(out, x):
    _relu_kernel(out.reshape(-1), x.reshape(-1))
