"""Process-wide settings: the number of CPU threads the parallel kernels use."""

import numba


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
