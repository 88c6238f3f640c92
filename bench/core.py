"""The benchmark case record and the timing loop.

A case names one workload of one op family. ``setup(rng, dtype)`` returns the inputs as NumPy arrays (and plain
Python values); the runner moves them to the target, once for nbops (numba device arrays on cuda) and once for
torch (tensors on the same device), so both providers see identical data. ``flops`` and ``bytes`` are napkin
counts for one call (bytes: every input read once plus every output written once).
"""

from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass
class Case:
    name: str
    family: str
    setup: Callable  # (numpy.random.Generator, numpy dtype) -> tuple of inputs
    nbops: Callable  # (*inputs) -> result, inputs as nbops takes them
    torch: Callable  # (*inputs) -> result, inputs as torch tensors
    numpy: Optional[Callable] = None  # (*inputs) -> result, NumPy arrays, where a NumPy equivalent exists
    flops: float = 0.0
    bytes: float = 0.0
    dtype: str = "float32"
    quick: bool = True  # part of --quick
    targets: tuple = ("cpu", "cuda")
    rtol: Optional[float] = None  # parity tolerances (torch.testing defaults when None)
    atol: Optional[float] = None
    tags: dict = field(default_factory=dict)
