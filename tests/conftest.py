"""Test configuration: the cuda marker runs only where numba.cuda is available (a GPU, or the simulator with
NUMBA_ENABLE_CUDASIM=1 set before numba is imported); the slow marker's deep checks are collected only with
--slow (deselected otherwise, like a -m filter, so a normal run lists no skips)."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))


def _simulator_thread_safety():
    """Three races in numba's CUDA simulator that the switch interval below makes common; all patched here.

    Shared arrays: ``cuda.shared.array`` finds a block's array by the calling source line in a dict it checks and
    fills without a lock, so two threads of a block that interleave between the check and the fill each get an
    array of their own and the kernel computes garbage (with the short interval and no lock, 4 of 1614 simulator
    tests failed: linear, conv_transpose2d, a fuzzed conv2d, a few elements off by ~1). The same lookup, made
    under a lock.

    Device function calls: ``swapped_cuda_module`` walks the function's module globals in a generator while other
    threads run Python code that can add a global (the warnings module, for one, adds ``__warningregistry__`` on a
    module's first warning): "dictionary changed size during iteration" (a fuzzed linear, once in a CI run). The
    same swap from a copy of the globals, which ``dict.copy`` makes without a thread switch. And each simulated
    thread swapped the module's ``cuda`` for the fake one on entering a device function and back on leaving it, so a
    thread that left put the real module back under threads still inside, whose next ``cuda.syncthreads`` failed
    ("module 'numba.cuda' has no attribute 'syncthreads'": a block-wide sum of _block.py, once in a CI run). The
    swap is counted per module under the lock: the first thread in swaps, the last one out restores."""
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

    swaps = {}  # id(module globals) -> [threads inside, the names the first one swapped and their values]

    @contextlib.contextmanager
    def swapped_cuda_module(fn, fake_cuda_module):
        from numba import cuda

        globs = fn.__globals__
        with lock:
            entry = swaps.get(id(globs))
            if entry is None:
                orig = {k: v for k, v in globs.copy().items() if v is cuda}
                globs.update(dict.fromkeys(orig, fake_cuda_module))
                entry = swaps[id(globs)] = [0, orig]
            entry[0] += 1
        try:
            yield
        finally:
            with lock:
                entry[0] -= 1
                if not entry[0]:
                    globs.update(entry[1])
                    del swaps[id(globs)]

    kernelapi.swapped_cuda_module = swapped_cuda_module
    simkernel.swapped_cuda_module = swapped_cuda_module


def _simulator_barrier():
    """numba's CUDA simulator runs every GPU thread of a block as a Python thread, and the launching thread polls
    them in a loop (each thread's "blocked at syncthreads" flag and ``is_alive``) until all are blocked, then wakes
    them one event each: the poll holds the GIL the simulated threads need (9 million ``is_alive`` calls in one
    batch_norm training call on a (2, 12, 3, 11) input). Here syncthreads is a barrier on one condition variable
    per block instead: the last live thread to arrive (or to exit, for threads that returned early) releases the
    others, and the launching thread sleeps until every thread has exited or one has raised. As before, the first
    exception is re-raised and the threads still waiting are aborted. One call each, 2 cores, polled / barrier:
    that batch_norm 3.9-4.0 / 1.8-2.1 s, conv2d 3x3 (2, 4, 9, 10) 2.4-2.9 / 1.7-1.9 s, matmul 33 x 47 @ 47 x 29
    1.1-1.3 / 0.6-0.7 s."""
    import threading

    from numba.cuda.simulator import kernel as simkernel

    thread_run = simkernel.BlockThread.run

    def syncthreads(self):
        m = self._manager
        with m.barrier:
            if m.aborted:
                raise RuntimeError("abort flag set on syncthreads call")
            gen = m.generation
            m.waiting += 1
            if m.waiting == m.alive:
                m.waiting, m.generation = 0, gen + 1
                m.barrier.notify_all()
            else:
                m.barrier.wait_for(lambda: m.generation != gen or m.aborted)
            if m.aborted:
                raise RuntimeError("abort flag set on syncthreads clear")

    def run_thread(self):
        try:
            thread_run(self)  # numba's: runs the kernel, keeps an exception in self.exception
        finally:
            m = self._manager
            with m.barrier:
                m.alive -= 1
                if self.exception:
                    m.aborted = True
                    m.failed.append(self)
                elif m.alive and m.waiting == m.alive:
                    m.waiting, m.generation = 0, m.generation + 1
                m.barrier.notify_all()

    def run_block(self, grid_point, *args):
        self.barrier = threading.Condition()
        self.alive, self.waiting, self.generation, self.aborted, self.failed = \
            int(np.prod(self._block_dim)), 0, 0, False, []
        threads = [simkernel.BlockThread(lambda: self._f(*args), self, grid_point, block_point, self._debug)
                   for block_point in np.ndindex(*self._block_dim)]
        for t in threads:
            t.start()
        with self.barrier:
            self.barrier.wait_for(lambda: self.alive == 0 or self.failed)
            failed = self.failed[0] if self.failed else None
        if failed is not None:
            raise failed.exception[0].with_traceback(failed.exception[1])

    simkernel.BlockThread.syncthreads = syncthreads
    simkernel.BlockThread.run = run_thread
    simkernel.BlockManager.run = run_block


# With the barrier the interpreter's switch interval hardly matters (5 / 0.5 ms: the same times within noise); the
# short one stays because it makes the races ``_simulator_thread_safety`` closes common, so a missed one shows.
# Real GPUs and CPU kernels are unaffected.
if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    _simulator_thread_safety()
    _simulator_barrier()
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
