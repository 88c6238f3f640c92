"""A cache of large host buffers for the CPU outputs: an output of MIN_BYTES or more is carved from a buffer that an
earlier output no longer uses, so that writing it costs no page faults.

Why: glibc serves a large request with a fresh ``mmap`` (always from 32 MiB on, its largest threshold) and unmaps it
when it is freed, so every call that returns a large array takes a page fault per 4 KiB page it writes, and two
threads faulting into one mapping contend in the kernel. On this project's 2-core VM (float32, 2 threads, medians):
gelu over a (4096, 3072) array took 4.3 ms into a warm output and 7-53 ms into a fresh one; a BERT-base encoder
layer (8, 512, 768) spent 42 ms of its 357 in that gelu, 4.3 ms with this cache (the layer 335-338 ms).

How: the cache keeps a reference to each buffer it hands out (a 1-D uint8 array, 64 more bytes than asked so
that the output starts 64-byte aligned), and the output is a view of it. Every view, and anything made from one
(views, ``torch.from_numpy``, memoryviews), holds a reference to the buffer, so a buffer whose only reference is
the cache's is free: ``sys.getrefcount`` tells, under a lock, at each large allocation. A request takes the
smallest free buffer that holds it and wastes at most half of it, else a new one. Then free buffers beyond
``set_host_cache_limit`` bytes (default CACHE_BYTES) are dropped, least recently used first (the limit holds at
each large allocation; buffers freed since wait for the next), and at most
MAX_TRACKED buffers are tracked (the oldest in use beyond that become ordinary arrays, freed as usual), so a
lookup scans a few dozen entries (~3 us) against the milliseconds of faults it saves. ``empty_cache`` drops every
free buffer.

What a user sees: outputs of MIN_BYTES or more are views (``out.base`` is the buffer, ``out.flags.owndata`` is
False; ``ndarray.resize`` in place refuses them, as it refuses any view), and up to the limit of memory stays
with the process after its arrays are gone, as with torch's CUDA caching allocator.
"""

import math
import os
import sys
import threading

import numpy as np

MIN_BYTES = 1 << 20  # smaller outputs come from np.empty (glibc's heap serves them; 256 faults at most)
CACHE_BYTES = 512 << 20  # free bytes kept for reuse, by default
MAX_TRACKED = 64  # buffers the cache follows at once
ALIGN = 64  # bytes: an output starts on a cache line (a zmm vector)
_FREE_REFS = 2  # sys.getrefcount of a buffer held only by the cache's list (the list's and the argument's)

_lock = threading.Lock()
_buffers = []  # least recently handed out first
_limit = [CACHE_BYTES]


def _reset_lock_in_child():
    global _lock
    _lock = threading.Lock()  # a fork while another thread held it would leave the child's copy locked forever


os.register_at_fork(after_in_child=_reset_lock_in_child)


def _free():
    """Indices of the tracked buffers no array refers to, least recently handed out first (lock held)."""
    return [i for i in range(len(_buffers)) if sys.getrefcount(_buffers[i]) == _FREE_REFS]


def _trim(limit):
    """Drop free buffers, least recently used first, until at most ``limit`` free bytes remain; then untrack the
    oldest buffers beyond MAX_TRACKED. Called with the lock held."""
    free = _free()
    excess = sum(_buffers[i].size for i in free) - limit
    drop = set()
    for i in free:
        if excess <= 0:
            break
        drop.add(i)
        excess -= _buffers[i].size
    kept = [b for i, b in enumerate(_buffers) if i not in drop]
    _buffers[:] = kept[max(0, len(kept) - MAX_TRACKED):]


def empty(shape, dtype):
    """An uninitialised C-contiguous array of ``shape`` and ``dtype``: from the cache when it is MIN_BYTES or
    larger and the cache is on (``set_host_cache_limit``), else from ``np.empty``."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize  # not np.prod: 3 us on a small shape, 10x the np.empty
    if nbytes < MIN_BYTES or _limit[0] == 0:
        return np.empty(shape, dtype)
    with _lock:
        fits = [i for i in _free() if nbytes <= _buffers[i].size - ALIGN <= 2 * nbytes]
        best = min(fits, key=lambda i: _buffers[i].size, default=None)
        buf = _buffers.pop(best) if best is not None else np.empty(nbytes + ALIGN, np.uint8)
        _buffers.append(buf)
        _trim(_limit[0])
    start = -buf.ctypes.data % ALIGN
    return buf[start:start + nbytes].view(dtype).reshape(shape)


def empty_cache():
    """Return the memory of every cached host buffer that no array uses any more to the system. Mirrors
    :func:`torch.cuda.empty_cache` for nbops' CPU outputs (see ``set_host_cache_limit``)."""
    with _lock:
        _trim(0)


def set_host_cache_limit(nbytes):
    """Keep at most ``nbytes`` of freed CPU output buffers for reuse (default 512 MiB); 0 turns the cache off
    (every output from ``np.empty``) and frees what it held. Outputs of 1 MiB or more come from the cache: reusing
    memory spares the page faults a fresh large array takes on every call. Returns the previous limit."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)):
        raise TypeError(f"set_host_cache_limit(): argument 'nbytes' must be an int, got {nbytes!r}")
    if nbytes < 0:
        raise ValueError(f"set_host_cache_limit(): argument 'nbytes' must be >= 0, got {nbytes}")
    with _lock:
        previous, _limit[0] = _limit[0], int(nbytes)
        _trim(_limit[0])
        if not nbytes:
            _buffers.clear()  # off: buffers still in use become ordinary arrays, freed with their last view
    return previous


def cached():
    """(buffers tracked, of which free, free bytes): the cache's state, for tests and diagnostics."""
    with _lock:
        free = _free()
        return len(_buffers), len(free), sum(_buffers[i].size for i in free)
