"""Test configuration: the cuda marker runs only where numba.cuda is available (a GPU, or the simulator with
NUMBA_ENABLE_CUDASIM=1 set before numba is imported); the slow marker's deep checks are collected only with
--slow (deselected otherwise, like a -m filter, so a normal run lists no skips)."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))


def _simulator_thread_safety():
    """Two races in numba's CUDA simulator that the switch interval below makes common; both patched here.

    Shared arrays: ``cuda.shared.array`` finds a block's array by the calling source line in a dict it checks and
    fills without a lock, so two threads of a block that interleave between the check and the fill each get an
    array of their own and the kernel computes garbage (with the short interval and no lock, 4 of 1614 simulator
    tests failed: linear, conv_transpose2d, a fuzzed conv2d, a few elements off by ~1). The same lookup, made
    under a lock.

    Device function calls: ``swapped_cuda_module`` walks the function's module globals in a generator while other
    threads run Python code that can add a global (the warnings module, for one, adds ``__warningregistry__`` on a
    module's first warning): "dictionary changed size during iteration" (a fuzzed linear, once in a CI run). The same swap from
    a copy of the globals, which ``dict.copy`` makes without a thread switch."""
    import contextlib
    import threading
    import traceback

    from numba.core import types
    from numba.cuda.simulator import kernel as simkernel
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    lock = threading.Lock()
    dynamic = kernelapi.FakeCUDAShared.array

    def array(self, shape, dtype):
        if shape == 0:
            return dynamic(self, shape, dtype)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = tuple(traceback.extract_stack(sys._getframe(1), limit=1)[-1])[0:2]
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = self._allocations[caller] = np.empty(shape, dtype)
        return res

    kernelapi.FakeCUDAShared.array = array

    @contextlib.contextmanager
    def swapped_cuda_module(fn, fake_cuda_module):
        from numba import cuda

        globs = fn.__globals__
        orig = {k: v for k, v in globs.copy().items() if v is cuda}
        globs.update(dict.fromkeys(orig, fake_cuda_module))
        try:
            yield
        finally:
            globs.update(orig)

    kernelapi.swapped_cuda_module = swapped_cuda_module
    simkernel.swapped_cuda_module = swapped_cuda_module


# The CUDA simulator runs every GPU thread as a Python thread while its launching thread polls them in a loop that
# holds the GIL; a thread waiting at syncthreads or for the GIL gets it back only at the interpreter's switch
# interval (5 ms by default). A shorter interval cuts that idle time (one call each, 2 cores, at 5 / 1 / 0.5 /
# 0.2 ms: batch_norm training (2, 3, 4) 4.7 / 1.4 / 0.96 / 0.86 s, conv2d 3x3 (2, 3, 7, 7) 1.7 / 1.1 / 1.2 /
# 1.1 s, matmul 9 x 13 @ 13 x 7 0.53 / 0.38 / 0.30 / 0.29 s). Real GPUs and CPU kernels are unaffected.
if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    _simulator_thread_safety()
    sys.setswitchinterval(5e-4)


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False, help="run the slow (deep) checks too")


def _cuda_available():
    from numba import cuda

    return cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--slow"):
        slow = [item for item in items if item.get_closest_marker("slow")]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [item for item in items if not item.get_closest_marker("slow")]
    want_cuda = any(item.get_closest_marker("cuda") for item in items)
    skip_cuda = pytest.mark.skip(reason="no CUDA device and NUMBA_ENABLE_CUDASIM is not set")
    cuda_ok = want_cuda and _cuda_available()
    for item in items:
        if item.get_closest_marker("cuda") and not cuda_ok:
            item.add_marker(skip_cuda)
