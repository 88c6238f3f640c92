"""CUDA kernels of the activation family: one thread per element of flat, C-contiguous 1-D views."""

from numba import cuda

from .._dispatch import register
from ._util import TPB, blocks, flat


@cuda.jit
def _relu_kernel(out, x):
    """out[i] = max(x[i], 0) with NaN kept; x, out: (M,); grid = ceil(M / TPB) blocks of TPB threads."""
    i = cuda.grid(1)
    if i < x.shape[0]:
        v = x[i]
        out[i] = 0 if v < 0 else v


@register("relu", "cuda")
def relu(out, x):
    _relu_kernel[blocks(x.size), TPB](flat(out), flat(x))
