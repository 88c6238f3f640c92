"""Array plumbing for modules: parameters and buffers are plain arrays, a NumPy array on the cpu and a numba device
array on cuda. These helpers tell where one lives, copy values into it in place, and move it between host and device.

Values arriving from outside (a torch state_dict, a CuPy array, a list) are read through duck typing; torch is never
imported here.
"""

import numpy as np

from .. import _arrays


def device_of(x):
    """'cpu' or 'cuda' for a parameter or buffer array."""
    return "cpu" if isinstance(x, np.ndarray) else "cuda"


def _cuda():
    from numba import cuda

    return cuda


def to_host(x):
    """A NumPy array holding the values of any array kind (a torch tensor, CuPy, numba device array) or number."""
    if isinstance(x, np.ndarray):
        return x
    kind = _arrays.kind_of(x)
    if kind == _arrays.TORCH:
        return x.detach().cpu().resolve_conj().resolve_neg().numpy()
    if kind == _arrays.NUMBA:
        return x.copy_to_host()
    if kind is not None:
        return _cuda().as_cuda_array(x).copy_to_host()
    return np.asarray(x)


def as_param(x):
    """The native array kept as a parameter or buffer: NumPy on the cpu, a numba device array on cuda.

    A CPU torch tensor becomes a NumPy copy (the module must own its memory), a CUDA array (torch, CuPy) a numba
    device array over the same memory, array-likes a NumPy array.
    """
    if x is None or isinstance(x, np.ndarray):
        return x
    kind = _arrays.kind_of(x)
    if kind == _arrays.NUMBA:
        return x
    if kind is None:
        return np.asarray(x)
    if _arrays.target_of_kind(x, kind) == "cpu":
        return np.array(to_host(x))
    return _arrays.native(x, kind)


def is_array(x):
    return isinstance(x, np.ndarray) or _arrays.kind_of(x) is not None


def shape_of(x):
    return tuple(int(s) for s in x.shape)


def move(x, device, dtype=None):
    """``x`` on ``device`` ('cpu' or 'cuda') with ``dtype`` (unchanged when None): ``x`` itself when nothing changes."""
    if x is None:
        return None
    dtype = np.dtype(x.dtype) if dtype is None else np.dtype(dtype)
    if device_of(x) == device and np.dtype(x.dtype) == dtype:
        return x
    host = to_host(x).astype(dtype, copy=False)
    if device == "cpu":
        return np.array(host, order="C")
    return _cuda().to_device(np.ascontiguousarray(host))


def copy_into(dst, value):
    """Copy ``value`` (any array kind, same shape) into the parameter or buffer ``dst`` in place, casting to its
    dtype as ``Tensor.copy_`` does."""
    if isinstance(dst, np.ndarray):
        np.copyto(dst, to_host(value), casting="unsafe")
        return
    kind = _arrays.kind_of(value)
    if kind is not None and kind != _arrays.NUMPY and _arrays.target_of_kind(value, kind) == "cuda":
        src = _arrays.native(value, kind)
        if np.dtype(src.dtype) == np.dtype(dst.dtype) and _arrays.is_c_contiguous(src):
            dst.copy_to_device(src)
            return
    host = np.ascontiguousarray(to_host(value), dtype=dst.dtype)
    dst.copy_to_device(host.reshape(dst.shape))


def resolve_device(device):
    """'cpu' or 'cuda' from a string ('cuda:0' too) or a torch.device-like object; None stays None."""
    if device is None:
        return None
    name = getattr(device, "type", device)
    if not isinstance(name, str):
        raise TypeError(f"expected a device string such as 'cpu' or 'cuda', got {device!r}")
    base = name.split(":", 1)[0]
    if base not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; nbops modules live on 'cpu' or 'cuda'")
    return base


def resolve_dtype(dtype):
    """A NumPy dtype from a NumPy dtype, a type, a string or a torch dtype (``torch.float64``); None stays None."""
    if dtype is None:
        return None
    if type(dtype).__module__.split(".", 1)[0] == "torch":
        dtype = str(dtype).rsplit(".", 1)[-1]
    return np.dtype(dtype)


def is_floating(x):
    return np.dtype(x.dtype).kind == "f"


def new(shape, dtype=None):
    """An uninitialised host array for a new parameter or buffer (float32 unless ``dtype`` says otherwise)."""
    dtype = resolve_dtype(dtype) or np.dtype(np.float32)
    if dtype.kind != "f":
        raise TypeError(f"parameters must have a floating dtype, got {dtype}")
    return np.empty(tuple(int(s) for s in shape), dtype=dtype)


def place(module, device):
    """Move a freshly built module to ``device`` (the ``device=`` factory argument of torch's constructors)."""
    device = resolve_device(device)
    if device is not None and device != "cpu":
        module.to(device)
    return module


def ntuple(value, n):
    """``value`` as a tuple: a sequence unchanged (as a tuple), a scalar repeated ``n`` times (torch's _ntuple)."""
    if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, str)):
        return tuple(value)
    return (value,) * n
