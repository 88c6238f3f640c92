"""numba device memory from CUDA's stream-ordered allocator, as a numba External Memory Management (EMM) plugin.

numba's own allocator calls ``cuMemAlloc`` for every device array (~32 us on an H200 host) and ``cuMemFree``, which
waits for the whole device, when it frees a batch. With this plugin every numba device array (nbops' outputs and
temporaries for numba-array callers, and the user's own ``cuda.device_array`` / ``to_device``) comes from
``cuMemAllocAsync`` on the allocating call's stream and goes back with ``cuMemFreeAsync`` on the same stream, from
the device's default memory pool, which keeps freed memory for reuse (its release threshold is raised to "never")
instead of returning it to the driver at each synchronisation. Nothing waits for the device.

It is opt-in, because it replaces numba's allocator for the whole process and must be chosen before numba creates
its first CUDA context: either set ``NUMBA_CUDA_MEMORY_MANAGER=nbops.cuda._pool`` in the environment, or call
``nbops.cuda._pool.install()`` first thing. torch tensors and CuPy arrays do not use it (their own allocators serve
them). RMM's plugin is the alternative where RMM is in use (``NUMBA_CUDA_MEMORY_MANAGER=rmm.allocators.numba``);
docs/index.md, "Memory", says how to choose and what each costs.

A stream-ordered free is ordered after the work queued on the array's stream before it: an array used on another
stream must not be dropped before that stream's work is done (torch's ``record_stream`` rule). Frees requested by
the garbage collector are queued and issued at the next allocation (in the context, on the allocating thread).
"""

import ctypes
import weakref

from numba import cuda
from numba.cuda.cudadrv import driver as _driver

from .._arrays import LAUNCH, device_pointer, stream_handle

CU_MEMPOOL_ATTR_RELEASE_THRESHOLD = 4  # CUmemPool_attribute: bytes the pool keeps when the stream synchronises
STATS = {"allocs": 0, "frees": 0}  # calls of cuMemAllocAsync and cuMemFreeAsync made by the plugin
_LIB = []


def _cuda_lib():
    if not _LIB:
        lib = ctypes.CDLL("libcuda.so.1")
        lib.cuMemAllocAsync.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.c_size_t, ctypes.c_void_p]
        lib.cuMemFreeAsync.argtypes = [ctypes.c_uint64, ctypes.c_void_p]
        lib.cuDeviceGet.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        lib.cuDeviceGetDefaultMemPool.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
        lib.cuMemPoolSetAttribute.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        lib.cuMemGetInfo_v2.argtypes = [ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)]
        _LIB.append(lib)
    return _LIB[0]


def _check(name, code):
    if code:
        raise RuntimeError(f"nbops stream-ordered pool: {name} failed with CUDA error {code}")


class StreamOrderedMemoryManager(cuda.HostOnlyCUDAMemoryManager):
    """The EMM plugin: device memory from ``cuMemAllocAsync`` / ``cuMemFreeAsync`` on the stream of the nbops call
    that allocates (``_arrays.LAUNCH.alloc``), numba's default stream outside one; host memory as numba does it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._frees = []  # (pointer, stream object) that the garbage collector released

    def initialize(self):
        """Keep freed memory in the device's default pool across synchronisations (release threshold: all)."""
        lib = _cuda_lib()
        device, pool = ctypes.c_int(), ctypes.c_void_p()
        _check("cuDeviceGet", lib.cuDeviceGet(ctypes.byref(device), self.context.device.id))
        _check("cuDeviceGetDefaultMemPool", lib.cuDeviceGetDefaultMemPool(ctypes.byref(pool), device))
        keep = ctypes.c_uint64(2 ** 64 - 1)
        _check("cuMemPoolSetAttribute", lib.cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                                                                  ctypes.byref(keep)))

    def memalloc(self, size):
        self._flush()
        stream = LAUNCH.alloc
        pointer = ctypes.c_uint64()
        _check("cuMemAllocAsync", _cuda_lib().cuMemAllocAsync(ctypes.byref(pointer), size, stream_handle(stream)))
        STATS["allocs"] += 1
        frees, value = self._frees, pointer.value

        def release():
            frees.append((value, stream))  # issued by the next memalloc, inside the context

        return _driver.MemoryPointer(weakref.proxy(self.context), device_pointer(value), size, finalizer=release)

    def _flush(self):
        lib = _cuda_lib() if self._frees else None
        while self._frees:
            value, stream = self._frees.pop()
            _check("cuMemFreeAsync", lib.cuMemFreeAsync(value, stream_handle(stream)))
            STATS["frees"] += 1

    def get_ipc_handle(self, memory):
        raise NotImplementedError("nbops stream-ordered pool: IPC handles of pool allocations are not supported")

    def get_memory_info(self):
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        _check("cuMemGetInfo", _cuda_lib().cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)))
        return _driver.MemoryInfo(free=free.value, total=total.value)

    def reset(self):
        super().reset()
        self._flush()

    @property
    def interface_version(self):
        return 1


_numba_memory_manager = StreamOrderedMemoryManager  # what NUMBA_CUDA_MEMORY_MANAGER=nbops.cuda._pool looks up


def install():
    """Make numba allocate device memory through this plugin; call it before numba creates a CUDA context (before
    the first device array, kernel launch or ``cuda.current_context()``)."""
    cuda.set_memory_manager(StreamOrderedMemoryManager)
