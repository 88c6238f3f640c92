"""CPU launchers: ``@njit(parallel=True)`` kernels, one module per op family, registered with the dispatcher."""
