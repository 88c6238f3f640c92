"""The seedable generator behind nbops' random ops (the dropout family): ``nbops.manual_seed(seed)``.

The generator is a 64-bit seed plus a count of the calls that drew from it. A random op on the cpu target takes one
64-bit *key* per call, ``splitmix64(seed, count)``, and its kernel derives element ``i``'s random bits from
``(key, i)`` alone (a counter-based generator), so the mask does not depend on the number of threads or on how the
work is split. A keyword-only ``seed=`` on a random op (an nbops extension; torch passes generators instead) gives
that call the key of ``seed`` and leaves the global generator untouched, so the same seed gives the same mask.

On the cuda target the kernels draw from numba's xoroshiro128p states (``numba.cuda.random``), created from the
global seed on first use and advanced by every draw; ``manual_seed`` starts a new *epoch* that makes the CUDA module
recreate them. Same seed and same sequence of calls give the same masks on the same target; the cpu and cuda
streams differ.
"""

import numbers

import numpy as np

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
DEFAULT_SEED = 67280421310721  # torch's default seed


class _Generator:
    def __init__(self):
        self.seed = DEFAULT_SEED
        self.count = 0
        self.epoch = 0


_GEN = _Generator()


def _check_seed(op, seed, name="seed"):
    if not isinstance(seed, (numbers.Integral, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"{op}(): argument '{name}' must be an int, got {seed!r}")
    return int(seed) & _MASK64  # negative seeds wrap to uint64, as torch.manual_seed does


def manual_seed(seed):
    """Sets the seed of nbops' global generator (cpu and cuda targets) and restarts its stream.

    Mirrors :func:`torch.manual_seed` (which returns a ``torch.Generator``; this returns None).

    Args:
        seed: an int; negative values wrap to unsigned 64 bits as in torch.

    >>> import numpy as np, nbops
    >>> x = np.ones(8, dtype=np.float32)
    >>> nbops.manual_seed(0); a = nbops.dropout(x)
    >>> nbops.manual_seed(0); b = nbops.dropout(x)
    >>> bool((a == b).all())
    True
    """
    _GEN.seed = _check_seed("manual_seed", seed)
    _GEN.count = 0
    _GEN.epoch += 1


def initial_seed():
    """The seed of the global generator. Mirrors :func:`torch.initial_seed`."""
    return _GEN.seed


def splitmix64(z):
    """The splitmix64 output function of a 64-bit Python int (a bijective mixer)."""
    z = (z + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def next_key(op, seed=None):
    """A fresh 64-bit key for one call on the cpu target: from ``seed`` when given (the global generator does not
    advance), else the global generator's next one."""
    if seed is not None:
        return splitmix64(splitmix64(_check_seed(op, seed)))
    key = splitmix64(splitmix64(_GEN.seed) ^ _GEN.count)
    _GEN.count += 1
    return key


def cuda_seed():
    """(seed, epoch) of the global generator, for the CUDA module's persistent xoroshiro128p states."""
    return _GEN.seed, _GEN.epoch
