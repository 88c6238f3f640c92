"""Array adapters: recognise the caller's array kind, hand kernels a native view, and hand back the caller's kind.

Kernels see two kinds of array only: ``numpy.ndarray`` on the cpu target and a numba device array on the cuda
target. Everything here is zero-copy: a CPU torch tensor becomes a NumPy view of its memory, a CuPy array becomes a
numba device array over the same device memory (through ``__cuda_array_interface__``), a torch CUDA tensor too (built
from its data pointer, shape and strides, which is cheaper; ``_torch_cuda_view``), and results travel back the same
way. Nothing is copied between host and device, and nothing waits for the device:
CUDA arrays are imported without the synchronization the CUDA Array Interface does by default, because every kernel
of the call goes on the caller's own stream (``call_stream``), which orders it after the work that made its inputs.

``numba.cuda`` is imported only when a CUDA array has actually been seen, so ``import nbops`` stays CPU-only.
"""

import contextlib
import ctypes
import sys
import threading

import numpy as np

from . import _hostpool

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
        return "cuda" if x.is_cuda else x.device.type
    return "cuda"


def is_array(x):
    return kind_of(x) is not None


def native(x, kind):
    """The kernel-side view of ``x``: an ndarray (cpu) or a numba device array (cuda), sharing memory."""
    if kind == NUMPY or kind == NUMBA:
        return x
    if kind == TORCH:
        if x.is_cuda:
            return _torch_cuda_view(x)
        x = x.detach()
        if x.is_conj() or x.is_neg():
            x = x.resolve_conj().resolve_neg()
        return x.numpy()
    return _cuda().as_cuda_array(x, sync=False)


def _cuda():
    from numba import cuda

    return cuda


_FAST_VIEWS = [None]  # None: the next view is checked against numba's import; True: it agreed; False: it did not


def _torch_cuda_view(x):
    """A numba device array over torch CUDA tensor ``x``'s memory, built from its data pointer, shape and strides:
    what ``cuda.as_cuda_array(x, sync=False)`` makes, without the interface dict, the external stream object it
    makes on every call, or the driver query of the allocation's extent (~11 us per tensor on an H200 host). The
    first view is checked against numba's import (``_same_view``); a mismatch or an error there, a tensor NumPy has
    no dtype for, or an empty, conjugate or negative view takes numba's import instead."""
    dtype = None if _FAST_VIEWS[0] is False else _numpy_dtype(x.dtype)
    if dtype is None or x.is_conj() or x.is_neg() or x.numel() == 0:
        return _cuda().as_cuda_array(x.detach(), sync=False)
    if _FAST_VIEWS[0]:
        return _view(x, dtype)
    reference = _cuda().as_cuda_array(x.detach(), sync=False)
    try:
        view = _view(x, dtype)
        _FAST_VIEWS[0] = _same_view(view, reference)
    except Exception:
        _FAST_VIEWS[0] = False
    return view if _FAST_VIEWS[0] else reference


_NUMBA = []  # numba.cuda.cudadrv's devicearray, devices and driver modules, imported on the first CUDA tensor


def _numba_parts():
    if not _NUMBA:
        from numba.cuda.cudadrv import devicearray, devices, driver

        _NUMBA.extend((devicearray, devices, driver))
    return _NUMBA


_LAYOUTS = {}  # (shape, element strides, dtype) -> (extent in bytes, the attributes numba's constructor gives it)
_LAYOUTS_MAX = 1024  # layouts kept; the table starts over past this


def _view(x, dtype):
    """The device array over ``x``. numba's DeviceNDArray constructor spends most of its ~9 us deriving the layout
    (a dummy array, extents, flags) from shape and strides; what it derives is kept per (shape, strides, dtype), and
    an array of a known layout is a new DeviceNDArray given those attributes and its own allocation."""
    devicearray, devices, driver = _numba_parts()
    key = (tuple(x.shape), x.stride(), dtype)
    entry = _LAYOUTS.get(key)
    size = _extent(*key) if entry is None else entry[0]
    owner = x.detach() if x.requires_grad else x  # results that view it come back without autograd history
    memory = driver.MemoryPointer(devices.get_context(), device_pointer(x.data_ptr()), size=size, owner=owner)
    memory._cuda_memsize_ = size  # the extent numba would otherwise ask the driver for
    if entry is None:
        shape, steps, _ = key
        made = devicearray.DeviceNDArray(shape, _byte_strides(shape, steps, dtype.itemsize, x.is_contiguous()), dtype,
                                         gpu_data=memory)
        if len(_LAYOUTS) >= _LAYOUTS_MAX:
            _LAYOUTS.clear()
        entry = _LAYOUTS[key] = (size, {k: v for k, v in vars(made).items() if k != "gpu_data"})
    array = devicearray.DeviceNDArray.__new__(devicearray.DeviceNDArray)
    vars(array).update(entry[1])
    array.gpu_data = memory
    return array


def _extent(shape, steps, dtype):
    """Bytes spanned by a tensor of this shape and element strides (torch's strides are never negative)."""
    return dtype.itemsize * (1 + sum((n - 1) * s for n, s in zip(shape, steps)))


def _byte_strides(shape, steps, item, contiguous):
    """The byte strides numba gives the tensor's import: C strides for a contiguous tensor (its interface says
    strides=None, so size-1 dims get C strides too), else torch's strides in bytes."""
    if not contiguous:
        return tuple(s * item for s in steps)
    strides, step = [], item
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def device_pointer(value):
    """``value`` as the device-pointer object numba's driver layer uses (NVIDIA bindings' CUdeviceptr, or a ctypes
    integer), made without the driver query ``get_devptr_for_active_ctx`` makes (with unified addressing a device
    pointer is valid as it is in every context)."""
    driver = _numba_parts()[2]
    if getattr(driver, "USE_NV_BINDING", True):
        return driver.binding.CUdeviceptr(value)
    return ctypes.c_size_t(value)


def _same_view(a, b):
    """Whether device arrays ``a`` and ``b`` are the same array to numba: pointer, shape, strides, size, extent and
    numba type (dtype, rank, layout)."""
    from numba import typeof

    return (a.gpu_data.device_pointer_value == b.gpu_data.device_pointer_value and a.shape == b.shape
            and a.strides == b.strides and a.size == b.size and a.alloc_size <= b.alloc_size and typeof(a) == typeof(b))


_NUMPY_DTYPES = {}  # torch dtype -> numpy dtype (None where NumPy has none, e.g. bfloat16)


def _numpy_dtype(tdtype):
    if tdtype not in _NUMPY_DTYPES:
        torch = sys.modules["torch"]
        try:
            _NUMPY_DTYPES[tdtype] = torch.empty(0, dtype=tdtype).numpy().dtype
        except (TypeError, RuntimeError):
            _NUMPY_DTYPES[tdtype] = None
    return _NUMPY_DTYPES[tdtype]


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
        view = _torch_owner_view(out, torch)
        return torch.as_tensor(out, device=like.device) if view is None else view
    if kind == CUPY:
        cupy = sys.modules["cupy"]
        view = _cupy_owner_view(out, cupy)
        return cupy.asarray(out) if view is None else view
    return out


def _torch_owner_view(out, torch):
    """``out`` as a view of the torch tensor that owns its memory (every output nbops allocates for torch callers
    is one, and so are views of the caller's inputs), or None when no torch tensor owns it. This hands results back
    without importing them through the CUDA Array Interface, which costs a pointer query and would import the
    stream numba records on the array."""
    owner = getattr(getattr(out, "gpu_data", None), "owner", None)
    item = out.dtype.itemsize
    if not isinstance(owner, torch.Tensor) or owner.dtype != _torch_dtype(out.dtype) or out.size == 0:
        return None
    offset = out.gpu_data.device_pointer_value - owner.data_ptr()
    if offset % item or any(s % item for s in out.strides):
        return None
    strides = tuple(s // item for s in out.strides)
    if offset == 0 and tuple(out.shape) == tuple(owner.shape) and strides == owner.stride():
        return owner
    return owner.as_strided(tuple(out.shape), strides, owner.storage_offset() + offset // item)


def _cupy_owner_view(out, cupy):
    """``out`` as the CuPy array that owns its memory, or a CuPy view of it at ``out``'s offset and strides; None
    when no CuPy array of that dtype owns it. CuPy, as a CUDA Array Interface consumer, would synchronise the
    stream numba records on ``out`` (the call's stream) on import: this path does not."""
    owner = getattr(getattr(out, "gpu_data", None), "owner", None)
    if not isinstance(owner, cupy.ndarray) or owner.dtype != out.dtype or out.size == 0:
        return None
    offset = out.gpu_data.device_pointer_value - owner.data.ptr
    if offset == 0 and tuple(out.shape) == owner.shape and tuple(out.strides) == owner.strides:
        return owner
    return cupy.ndarray(tuple(out.shape), dtype=out.dtype, memptr=owner.data + offset, strides=tuple(out.strides))


_TORCH_DTYPES = {}  # numpy dtype -> torch dtype


def _torch_dtype(dtype):
    tdtype = _TORCH_DTYPES.get(dtype)
    if tdtype is None:
        tdtype = _TORCH_DTYPES[dtype] = sys.modules["torch"].from_numpy(np.empty(0, dtype=dtype)).dtype
    return tdtype


def empty(shape, dtype, target, kind, like, stream=0):
    """A new uninitialised kernel-side array on ``target``: on the CPU from nbops' cache of large host buffers
    (``_hostpool``), on CUDA from the caller's own allocator
    (torch's caching allocator for torch tensors, CuPy's pool for CuPy arrays) so that memory is managed as the
    caller expects. On CUDA the array is bound to ``stream`` (the call's stream), so that numba's own transfers of
    it (``copy_to_host()`` without a stream) are ordered after the call's kernels."""
    dtype = np.dtype(dtype)
    if target == "cpu":
        return _hostpool.empty(shape, dtype)
    if kind == TORCH:
        out = native(sys.modules["torch"].empty(shape, dtype=_torch_dtype(dtype), device=like.get_device()), TORCH)
    elif kind == CUPY:
        out = native(sys.modules["cupy"].empty(shape, dtype=dtype), CUPY)
    else:
        outer, LAUNCH.alloc = LAUNCH.alloc, stream  # the stream a stream-ordered numba allocator (cuda/_pool.py) uses
        try:
            return _cuda().device_array(shape, dtype=dtype, stream=stream)
        finally:
            LAUNCH.alloc = outer
    out.stream = stream
    return out


# --- streams ---------------------------------------------------------------------------------------------------

class _LaunchState(threading.local):
    """Per thread: the streams pushed by ``cuda_stream`` (innermost last), and the ``Call`` whose launcher is
    running, from which the CUDA launchers take their stream and their temporaries."""

    user = ()
    call = None
    alloc = 0  # the stream of the numba allocation being made (``empty``), for nbops.cuda._pool


LAUNCH = _LaunchState()
_EXTERNAL = {}  # stream handle -> numba stream object over it (numba.cuda.external_stream), made once per handle
_EXTERNAL_MAX = 64  # handles kept; the table starts over past this (a handle costs one small object to rewrap)


def _external(handle):
    """numba's stream object for the raw CUDA stream ``handle``: 0 for the legacy default stream (0, or 1, which
    the CUDA Array Interface uses for it), which is what numba launches on when given stream 0."""
    if not handle or handle == 1:
        return 0
    s = _EXTERNAL.get(handle)
    if s is None:
        if len(_EXTERNAL) >= _EXTERNAL_MAX:
            _EXTERNAL.clear()
        s = _EXTERNAL[handle] = _cuda().external_stream(handle)
    return s


def call_stream(kind, like):
    """The stream every kernel of a CUDA call goes on, decided once per public call (by ``Call``): the innermost
    ``cuda_stream`` in force on this thread, else the caller's framework's current stream: torch's for torch
    tensors, CuPy's for CuPy arrays, the stream a CUDA Array Interface exporter names, and numba's default stream
    (0) for numba device arrays."""
    if LAUNCH.user:
        return LAUNCH.user[-1]
    if kind == TORCH:
        return _external(_torch_stream_handle(like))
    if kind == CUPY:
        return _external(sys.modules["cupy"].cuda.get_current_stream().ptr)
    if kind == CAI:
        return _external(like.__cuda_array_interface__.get("stream"))
    return 0


_RAW_STREAM = [None]  # torch's raw current-stream query once checked, or False where it is missing or disagreed


def _torch_stream_handle(x):
    """The raw handle of torch's current stream on ``x``'s device. ``torch._C._cuda_getCurrentRawStream`` (what
    torch's own compiled kernels and Triton launch with) returns it without making a ``torch.cuda.Stream`` object
    (~4 us); its first answer is checked against ``torch.cuda.current_stream``, which serves where it is missing."""
    torch = sys.modules["torch"]
    raw = _RAW_STREAM[0]
    if raw is None:
        raw = getattr(torch._C, "_cuda_getCurrentRawStream", False)
        if raw and raw(x.get_device()) != torch.cuda.current_stream(x.device).cuda_stream:
            raw = False
        _RAW_STREAM[0] = raw
    return raw(x.get_device()) if raw else torch.cuda.current_stream(x.device).cuda_stream


def stream_handle(stream):
    """The raw CUDA handle of a numba stream object (0 for numba's default stream), for driver calls."""
    if not stream:
        return 0
    h = stream.handle
    return (h.value or 0) if hasattr(h, "value") else int(h)


def launch_stream():
    """The stream of the call whose launcher is running on this thread (numba's default stream, 0, outside one)."""
    call = LAUNCH.call
    return 0 if call is None else call.stream


def launch_empty(shape, dtype):
    """A temporary for the launcher that is running: from the caller's allocator on the call's stream (numba's
    allocator on the default stream outside a call)."""
    shape = (shape,) if np.ndim(shape) == 0 else shape
    call = LAUNCH.call
    if call is None:
        return _cuda().device_array(shape, dtype=dtype)
    return call.empty(shape, dtype)


def _as_stream(stream):
    """numba's stream object for a numba, torch or CuPy CUDA stream."""
    if _module_root(stream) == "numba" and type(stream).__name__.lower() == "stream":
        return stream  # numba's driver Stream (external ones too), or the simulator's stream
    if _module_root(stream) == "torch" and hasattr(stream, "cuda_stream"):
        return _external(stream.cuda_stream)
    if _module_root(stream) == "cupy" and hasattr(stream, "ptr"):
        return _external(stream.ptr)
    raise TypeError(f"cuda_stream(): expected a numba, torch or CuPy CUDA stream, got {type(stream).__qualname__}")


@contextlib.contextmanager
def cuda_stream(stream):
    """Run every nbops CUDA op called inside the ``with`` block (on this thread) on ``stream``.

    ``stream`` is a numba stream (``numba.cuda.stream()``, ``numba.cuda.external_stream(ptr)``), a
    ``torch.cuda.Stream`` or a CuPy stream. Without it, ops follow the caller's framework: torch's current stream
    for torch tensors, CuPy's for CuPy arrays, numba's default stream for numba device arrays. For torch tensors and
    CuPy arrays prefer the framework's own ``with torch.cuda.stream(s):`` / ``with s:``, which also tells the
    framework's allocator which stream uses the memory it hands out. Blocks nest; the innermost wins. Example
    (docs/index.md, "Streams")::

        s = numba.cuda.stream()
        with nbops.cuda_stream(s):
            y = nbops.relu(numba.cuda.to_device(x, stream=s))  # queued on s; the host does not wait
    """
    s = _as_stream(stream)
    LAUNCH.user = LAUNCH.user + (s,)
    try:
        yield s
    finally:
        LAUNCH.user = LAUNCH.user[:-1]


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
