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
smallest free buffer that holds it and wastes at most half of it, else a new one; among equally large ones, the
one handed out last, whose lines are the likeliest still in cache. (Taking the least recently used one made two
same-size outputs once alive together alternate from then on, each call writing the colder buffer: relu over 8 MiB
took 0.24-0.27 ms against 0.16-0.17, over 16 MiB 0.65-0.80 against 0.46-0.63.) Then free buffers beyond
``set_host_cache_limit`` bytes (default CACHE_BYTES) are dropped, least recently used first (the limit holds at
each large allocation; buffers freed since wait for the next), and at most
MAX_TRACKED buffers are tracked (the oldest in use beyond that become ordinary arrays, freed as usual), so a
lookup scans a few dozen entries (~2 us) against the milliseconds of faults it saves. ``empty_cache`` drops every
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
_FREE_REFS = 2  # sys.getrefcount of a buffer held only by the cache (its entry's and the argument's)

_lock = threading.Lock()
_buffers = []  # (buffer, offset of its first ALIGN-aligned byte), least recently handed out first
_limit = [CACHE_BYTES]


def _reset_lock_in_child():
    global _lock
    _lock = threading.Lock()  # a fork while another thread held it would leave the child's copy locked forever


os.register_at_fork(after_in_child=_reset_lock_in_child)


def _free():
    """Indices of the tracked buffers no array refers to, least recently handed out first (lock held)."""
    return [i for i, e in enumerate(_buffers) if sys.getrefcount(e[0]) == _FREE_REFS]  # e[0]: a new reference


def _trim(limit, free, taken=None):
    """Drop free buffers (``free``: their indices, from ``_free``), least recently used first, until at most
    ``limit`` free bytes remain; move ``taken`` (an index, or a new entry) to the end, the most recently handed out;
    then untrack the oldest buffers beyond MAX_TRACKED. Called with the lock held; the list is rebuilt only when
    something moves (a rebuild and a second scan cost 1.8 us of a 5.2 us call)."""
    excess = sum(_buffers[i][0].size for i in free) - limit
    drop = set()
    for i in free:
        if excess <= 0:
            break
        drop.add(i)
        excess -= _buffers[i][0].size
    if isinstance(taken, int):
        entry = _buffers[taken]
        if taken == len(_buffers) - 1 and not drop:
            return
        drop.add(taken)
    else:
        entry = taken
    if drop:
        _buffers[:] = [e for i, e in enumerate(_buffers) if i not in drop]
    if entry is not None:
        _buffers.append(entry)
    if len(_buffers) > MAX_TRACKED:
        del _buffers[:len(_buffers) - MAX_TRACKED]


def empty(shape, dtype):
    """An uninitialised C-contiguous array of ``shape`` and ``dtype``: from the cache when it is MIN_BYTES or
    larger and the cache is on (``set_host_cache_limit``), else from ``np.empty``."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize  # not np.prod: 3 us on a small shape, 10x the np.empty
    if nbytes < MIN_BYTES or _limit[0] == 0:
        return np.empty(shape, dtype)
    with _lock:
        free = _free()
        best, room = None, 0
        for i in free:  # the smallest free buffer that holds it, wasting at most half; equals: the last handed out
            size = _buffers[i][0].size - ALIGN
            if nbytes <= size <= 2 * nbytes and (best is None or size <= room):
                best, room = i, size
        if best is None:
            buf = np.empty(nbytes + ALIGN, np.uint8)
            entry = (buf, -buf.ctypes.data % ALIGN)
            _trim(_limit[0], free, entry)
        else:
            entry = _buffers[best]
            free.remove(best)
            _trim(_limit[0], free, best)
        buf, offset = entry  # a reference of our own before the lock goes: no other call can take the buffer now
    return np.ndarray(shape, dtype, buffer=buf, offset=offset)


def empty_cache():
    """Return the memory of every cached host buffer that no array uses any more to the system. Mirrors
    :func:`torch.cuda.empty_cache` for nbops' CPU outputs (see ``set_host_cache_limit``)."""
    with _lock:
        _trim(0, _free())


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
        _trim(_limit[0], _free())
        if not nbytes:
            _buffers.clear()  # off: buffers still in use become ordinary arrays, freed with their last view
    return previous


def cached():
    """(buffers tracked, of which free, free bytes): the cache's state, for tests and diagnostics."""
    with _lock:
        free = _free()
        return len(_buffers), len(free), sum(_buffers[i][0].size for i in free)
