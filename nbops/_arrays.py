"""Array adapters: recognise the caller's array kind, hand kernels a native view, and hand back the caller's kind.

Kernels see two kinds of array only: ``numpy.ndarray`` on the cpu target and a numba device array on the cuda
target. Everything here is zero-copy: a CPU torch tensor becomes a NumPy view of its memory, a CuPy array or a torch
CUDA tensor becomes a numba device array over the same device memory (through ``__cuda_array_interface__``), and
results travel back the same way. Nothing is copied between host and device.

``numba.cuda`` is imported only when a CUDA array has actually been seen, so ``import nbops`` stays CPU-only.
"""

import sys

import numpy as np

NUMPY, TORCH, NUMBA, CUPY, CAI = "numpy", "torch", "numba", "cupy", "cuda_array_interface"


def _module_root(x):
    return type(x).__module__.split(".", 1)[0]


def kind_of(x):
    """The array kind of ``x`` ('numpy', 'torch', 'numba', 'cupy', 'cuda_array_interface') or None."""
    if isinstance(x, np.ndarray):
        return NUMPY
    root = _module_root(x)
    if root == "torch" and "torch" in sys.modules and isinstance(x, sys.modules["torch"].Tensor):
        return TORCH
    # numba device arrays, real or simulated, carry __cuda_ndarray__ (the simulator's lack the interface below)
    if getattr(x, "__cuda_ndarray__", False):
        return NUMBA
    if hasattr(x, "__cuda_array_interface__"):
        return CUPY if root == "cupy" else CAI
    return None


def target_of_kind(x, kind):
    """'cpu' or 'cuda' for an array of a known kind."""
    if kind == NUMPY:
        return "cpu"
    if kind == TORCH:
        return "cuda" if x.device.type == "cuda" else ("cpu" if x.device.type == "cpu" else x.device.type)
    return "cuda"


def is_array(x):
    return kind_of(x) is not None


def native(x, kind):
    """The kernel-side view of ``x``: an ndarray (cpu) or a numba device array (cuda), sharing memory."""
    if kind == NUMPY or kind == NUMBA:
        return x
    if kind == TORCH:
        x = x.detach()
        if x.device.type == "cpu":
            if x.is_conj() or x.is_neg():
                x = x.resolve_conj().resolve_neg()
            return x.numpy()
        return _cuda().as_cuda_array(x)
    return _cuda().as_cuda_array(x)


def _cuda():
    from numba import cuda

    return cuda


def wrap(out, kind, like):
    """Hand the kernel-side result ``out`` back as the caller's kind (same device), without a copy."""
    if kind == NUMPY or kind == NUMBA:
        return out
    if kind == TORCH:
        torch = sys.modules["torch"]
        if isinstance(out, np.ndarray):
            if out.dtype == np.bool_ or out.flags.writeable:
                return torch.from_numpy(out)
            return torch.from_numpy(out.copy())
        return torch.as_tensor(out, device=like.device)
    if kind == CUPY:
        return sys.modules["cupy"].asarray(out)
    return out


def empty(shape, dtype, target, kind, like):
    """A new uninitialised kernel-side array on ``target``, taken from the caller's own allocator on CUDA
    (torch's caching allocator for torch tensors, CuPy's pool for CuPy arrays) so that memory is managed as the
    caller expects."""
    dtype = np.dtype(dtype)
    if target == "cpu":
        return np.empty(shape, dtype=dtype)
    if kind == TORCH:
        torch = sys.modules["torch"]
        tdtype = torch.from_numpy(np.empty(0, dtype=dtype)).dtype
        return native(torch.empty(shape, dtype=tdtype, device=like.device), TORCH)
    if kind == CUPY:
        return native(sys.modules["cupy"].empty(shape, dtype=dtype), CUPY)
    return _cuda().device_array(shape, dtype=dtype)


def is_c_contiguous(x):
    if isinstance(x, np.ndarray):
        return x.flags.c_contiguous
    return x.is_c_contiguous()


def cuda_as_strided(x, shape, strides):
    """A view of device array ``x`` with the given shape and byte strides over the same memory.

    The caller guarantees the view stays inside ``x``'s extent (it is used for broadcasting, with stride 0, and for
    permuted or padded-rank views of an existing array).
    """
    if type(x).__name__ == "FakeCUDAArray":
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        return FakeCUDAArray(np.lib.stride_tricks.as_strided(x._ary, shape, strides))
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    return DeviceNDArray(tuple(shape), tuple(strides), x.dtype, gpu_data=x.gpu_data)
