"""Cheap kernel launches: ``launch(kernel, grid, block, *args)``, a drop-in for ``kernel[grid, block, stream()](*args)``

numba's dispatcher types every argument on every launch (``numba.typeof`` of a device array made for this call:
~17 us on an H200 host) and marshals each through ``_Kernel._prepare_args`` (wrap_arg, device_pointer, ctypes
objects): a launch with two fresh arrays costs 57-87 us before the kernel is queued. ``launch`` keeps, per kernel and
*argument class* (for a device array: its dtype, rank and numba layout; for a scalar: its Python or NumPy type), the
compiled kernel numba chose for that class the first time, and from then on packs the parameters itself (the array
data model numba passes by value: meminfo, parent, nitems, itemsize, data, shape..., strides...) and queues the
kernel with ``driver.launch_kernel`` on the call's stream.

The first launch of each class goes through the dispatcher (it compiles, loads the module, and is the reference).
Anything the fast path does not know (records, tuples, other array types, cooperative or debug kernels, extensions,
an integer outside int64) goes through the dispatcher every time. The fast path runs only on the numba-cuda
versions it was checked on (``VERIFIED``), never under the simulator; elsewhere ``launch`` is exactly the dispatcher
launch. tests/test_cuda_gpu.py compares the two on a real GPU.
"""

import ctypes
import threading

import numpy as np
from numba import config

from .._arrays import stream_handle
from ._util import stream

# numba-cuda versions on which tests/test_cuda_gpu.py's fast-launch tests passed on a real GPU. None yet: the
# packing mirrors numba-cuda's _Kernel._prepare_args / driver.launch_kernel as read for 0.30 and matches the installed
# numba's marshalling on the CPU (tests/test_cuda_launch.py), but no GPU run has checked it; add "0.30.4" after one.
VERIFIED = ()


def _numba_cuda_version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("numba-cuda")
    except PackageNotFoundError:
        return None


FAST = not config.ENABLE_CUDASIM and _numba_cuda_version() in VERIFIED  # tests switch it to compare both paths

_NULL = ctypes.c_void_p(0)  # meminfo and parent of every array parameter (kernels never use them)
_SCALARS = {"int8": ctypes.c_int8, "int16": ctypes.c_int16, "int32": ctypes.c_int32, "int64": ctypes.c_int64,
            "uint8": ctypes.c_uint8, "uint16": ctypes.c_uint16, "uint32": ctypes.c_uint32,
            "uint64": ctypes.c_uint64, "float32": ctypes.c_float, "float64": ctypes.c_double,
            "bool": ctypes.c_uint8}
_INT64 = (-(1 << 63), 1 << 63)
_PLANS = {}  # (dispatcher, argument classes) -> _Plan, or None where the dispatcher must launch
_MISSING = object()
_LOCK = threading.Lock()


def launch(kernel, grid, block, *args):
    """Launch ``kernel`` (a ``@cuda.jit`` dispatcher) with ``grid`` x ``block`` threads on the stream of the call
    being launched; the same effect as ``kernel[grid, block, stream()](*args)``."""
    key = _key(kernel, args) if FAST else None
    plan = _MISSING if key is None else _PLANS.get(key, _MISSING)
    if plan is _MISSING or plan is None:
        kernel[grid, block, stream()](*args)  # the first launch of a class compiles and loads the kernel
        if plan is _MISSING and key is not None:
            with _LOCK:
                _PLANS[key] = _Plan.build(kernel, args)
        return
    plan.launch(grid, block, stream(), args)


def _key(kernel, args):
    """The argument classes of a launch (what numba's typing of the arguments depends on), or None for an argument
    the fast path does not pack."""
    key = [kernel]
    for a in args:
        t = type(a)
        if t is _DeviceNDArray:
            key.append((a.dtype, a.ndim, _layout(a)))
        elif t is float or t is bool:
            key.append(t)
        elif t is int:
            if not _INT64[0] <= a < _INT64[1]:
                return None
            key.append(t)
        elif isinstance(a, (np.integer, np.floating, np.bool_)):
            key.append(t)
        else:
            return None
    return tuple(key)


def _layout(a):
    """numba's layout letter for device array ``a`` (``DeviceNDArrayBase._numba_type_``: C, then F, else A, and A
    for any broadcast array)."""
    if 0 in a.strides:
        return "A"
    flags = a.flags
    return "C" if flags["C_CONTIGUOUS"] else "F" if flags["F_CONTIGUOUS"] else "A"


def _dim3(d):
    d = (d,) if isinstance(d, (int, np.integer)) else tuple(d)
    return tuple(int(x) for x in d) + (1,) * (3 - len(d))


class _Plan:
    """How to launch one compiled kernel for one argument class: its cufunc's library, and a packer per argument."""

    def __init__(self, kernel, packers):
        self.library = kernel._codelibrary
        self.packers = packers

    @classmethod
    def build(cls, dispatcher, args):
        """The plan for ``args``' class, from the overload the dispatcher just compiled or used for them; None when
        the fast path cannot reproduce that launch."""
        try:
            types = tuple(dispatcher.typeof_pyval(a) for a in args)
        except Exception:
            return None
        kernel = dispatcher.overloads.get(types)
        if kernel is None or kernel.cooperative or getattr(kernel, "debug", False) or kernel.extensions:
            return None
        packers = []
        for ty, a in zip(types, args):
            if type(a) is _DeviceNDArray:
                packers.append(_array_packer(a.dtype.itemsize))
            else:
                ctype = _SCALARS.get(str(ty))
                if ctype is None:
                    return None
                packers.append(_scalar_packer(ctype))
        return cls(kernel, packers)

    def launch(self, grid, block, stream, args):
        params = []
        for pack, a in zip(self.packers, args):
            pack(a, params)
        cufunc = self.library.get_cufunc()
        _driver.launch_kernel(cufunc.handle, *_dim3(grid), *_dim3(block), 0, stream_handle(stream), params,
                              cooperative=False)


def _array_packer(itemsize):
    c_intp, c_void_p = ctypes.c_ssize_t, ctypes.c_void_p
    item = c_intp(itemsize)

    def pack(a, params):
        data = a.gpu_data
        params += (_NULL, _NULL, c_intp(a.size), item, c_void_p(0 if data is None else data.device_pointer_value or 0))
        params += [c_intp(n) for n in a.shape]
        params += [c_intp(s) for s in a.strides]

    return pack


def _scalar_packer(ctype):
    def pack(v, params):
        params.append(ctype(int(v) if ctype is ctypes.c_uint8 else v))  # booleans as numba passes them: 0 or 1

    return pack


if config.ENABLE_CUDASIM:
    _driver = _DeviceNDArray = None
else:
    from numba.cuda.cudadrv import driver as _driver
    from numba.cuda.cudadrv.devicearray import DeviceNDArray as _DeviceNDArray
