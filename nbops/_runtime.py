"""Process-wide settings: the number of CPU threads the parallel kernels use, and the guard every CPU kernel launch
passes through so that nbops stays safe under each of numba's threading layers.

numba runs ``parallel=True`` kernels on one of three threading layers (``NUMBA_THREADING_LAYER``): ``tbb`` and
``omp`` accept parallel launches from several Python threads at once; ``workqueue`` aborts the whole process when two
threads launch at the same time. nbops therefore serialises CPU launches while the layer in use is (or may still
become) ``workqueue``; once numba reports a thread-safe layer the guard costs nothing. A process forked after the GNU
OpenMP layer ran a kernel cannot use that layer again (numba kills such a child with SIGTERM); there the guard raises
a RuntimeError that says what to do instead.
"""

import contextlib
import os
import threading

import numba

_LOCK = threading.RLock()
_NO_GUARD = contextlib.nullcontext()
_state = {"layer": None, "forked_omp": False}


def set_num_threads(n):
    """Use ``n`` threads in the CPU kernels (1 <= n <= the number numba started with). Mirrors
    :func:`torch.set_num_threads`."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads(): argument 'n' must be an int, got {n!r}")
    if not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(
            f"set_num_threads(): argument 'n' must be in [1, {numba.config.NUMBA_NUM_THREADS}], got {n}"
        )
    numba.set_num_threads(n)


def get_num_threads():
    """The number of threads the CPU kernels use. Mirrors :func:`torch.get_num_threads`."""
    return numba.get_num_threads()


def threading_layer():
    """The numba threading layer the CPU kernels run on, or None before the first parallel kernel has run."""
    if _state["layer"] is None:
        try:
            _state["layer"] = numba.threading_layer()
        except ValueError:
            return None
    return _state["layer"]


def _gnu_openmp():
    from numba.np.ufunc import omppool

    return getattr(omppool, "openmp_vendor", "GNU") == "GNU"


def _after_fork_in_child():
    if threading_layer() == "omp" and _gnu_openmp():
        _state["forked_omp"] = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def cpu_guard(op):
    """The context a CPU launch of ``op`` runs in: a process-wide lock unless the layer is known to be thread-safe."""
    if _state["forked_omp"]:
        raise RuntimeError(
            f"{op}(): this process was forked after numba's GNU OpenMP threading layer ran in its parent, and that "
            "layer cannot run in a forked child; start workers with multiprocessing's 'spawn' or 'forkserver' "
            "method, or set NUMBA_THREADING_LAYER=workqueue (or tbb) before importing nbops"
        )
    layer = threading_layer()
    if layer is not None and layer != "workqueue":
        return _NO_GUARD
    return _LOCK
