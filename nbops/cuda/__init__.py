"""CUDA launchers: ``@cuda.jit`` kernels, one module per op family, imported only when a CUDA array arrives."""
