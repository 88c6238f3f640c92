"""CUDA kernels of the dropout family, drawing from numba's xoroshiro128p generators (``numba.cuda.random``).

Each thread owns one generator state and walks a grid-stride loop, drawing one float32 uniform per element (or per
channel); states for the global generator persist per device and advance with every draw, so a sequence of calls
after ``nbops.manual_seed(s)`` repeats exactly; a call with ``seed=`` works on a copy of pristine states made from
that seed (made on the host and kept for the last few seeds). An element is kept when its uniform is below
``keep = threshold / 2**32`` (float32): kept ``x * keep_mul (+ keep_add)``, dropped ``x * 0 (+ drop_add)``, the adds
only for alpha dropout (``affine``). A dropped inf becomes the NaN of ``inf * 0``, whose sign bit is the hardware's:
clear on GPUs (as torch's CUDA dropout gives), set on x86 CPUs.
"""

import numpy as np
from numba import config, cuda, uint32
from numba.cuda.random import (init_xoroshiro128p_states_cpu, rotl, uint64_to_unit_float32, xoroshiro128p_dtype,
                               xoroshiro128p_uniform_float32)

from .. import _random
from .._dispatch import register
from ._util import TPB, blocks, empty, flat, launch_map, map_kernels, stream

# Grid of the drawing kernels: at most MAX_BLOCKS blocks of DTPB threads, one generator state (16 B) per thread
# (512 x 256 states: 2 MiB, enough threads per SM to stream at memory speed, made once per seed on the host in
# ~50 ms). The simulator initialises states in pure Python (several ms each), so it gets one small block.
MAX_BLOCKS = 1 if config.ENABLE_CUDASIM else 512
DTPB = 32 if config.ENABLE_CUDASIM else TPB
SEEDED_CACHE = 4  # pristine host states kept for this many (seed, size) pairs of seed= calls

_STATES = {}  # device uuid -> (epoch, states) of the global generator
_SEEDED = {}  # (key, number of states) -> pristine host states, oldest first


def _host_states(seed, n):
    """n xoroshiro128p states on the host for the 64-bit ``seed``, as ``create_xoroshiro128p_states`` makes them.

    The seed goes in as ``np.uint64``: numba types a Python int as int64 (uint64 only from 2**63 up), and once an
    int64 overload of ``init_xoroshiro128p_states_cpu`` exists (any call with a small Python int seed, such as
    ``create_xoroshiro128p_states(n, 1)``, makes one) the dispatcher picks it for every int and fails to convert a
    seed >= 2**63 ("int too big to convert"); the simulator runs it as Python and never shows this."""
    states = np.empty(n, dtype=xoroshiro128p_dtype)
    init_xoroshiro128p_states_cpu(states, np.uint64(seed), np.uint64(0))
    return states


def _global_states():
    seed, epoch = _random.cuda_seed()
    dev = cuda.current_context().device.uuid
    held = _STATES.get(dev)
    if held is None or held[0] != epoch:
        held = (epoch, cuda.to_device(_host_states(seed, MAX_BLOCKS * DTPB), stream=stream()))
        _STATES[dev] = held
    return held[1]


def _seeded_states(key, n):
    """Device states at the pristine positions of ``key`` (n of them), so that every call with the same seed starts
    from the same generator positions. The pristine states are made on the host (as numba does) and kept there
    for the last SEEDED_CACHE keys; each call uploads a fresh copy (16 B per state)."""
    k = (key, n)
    pristine = _SEEDED.pop(k, None)
    if pristine is None:
        pristine = _host_states(key, n)
        if len(_SEEDED) >= SEEDED_CACHE:
            _SEEDED.pop(next(iter(_SEEDED)))
    _SEEDED[k] = pristine
    return cuda.to_device(pristine, stream=stream())


@cuda.jit(device=True)
def _draw(s0, s1, keep):
    """(kept, s0, s1): one step of numba.cuda.random's xoroshiro128+ generator on a state held in registers (the
    step of ``xoroshiro128p_next``, so the stream is numba's), its float32 uniform compared with ``keep``."""
    r = s0 + s1
    s1 ^= s0
    return uint64_to_unit_float32(r) < keep, rotl(s0, uint32(55)) ^ s1 ^ (s1 << uint32(14)), rotl(s1, uint32(36))


@cuda.jit(device=True)
def _apply(v, k, p):
    """Element ``v`` kept (``k``) or dropped, for p = (keep_mul, keep_add, drop_add, affine)."""
    keep_mul, keep_add, drop_add, affine = p
    v = v * (keep_mul if k else keep_mul - keep_mul)
    if affine:
        v += keep_add if k else drop_add
    return v


@cuda.jit
def _dropout_kernel(out, x, states, keep, p):
    """Elementwise dropout of flat x, out: (M,), p = (keep_mul, keep_add, drop_add, affine).

    Thread t (of T = the grid's threads) handles elements t, t + T, ..., drawing from its generator states[t] in
    that order, held in registers for the whole loop and stored back at the end; it loads 8 elements (at stride T:
    coalesced) before it draws for them and stores them, so 8 loads are in flight (the grid holds ~1000 threads per
    SM on an H200: 8 x 4 B x 1000 = 32 KB in flight per SM, what 4 TB/s at ~1 us latency needs). Grid:
    min(ceil(M / DTPB), MAX_BLOCKS) blocks of DTPB threads. fp32 2**26 elements: 512 MiB moved, ~130 us at 4 TB/s.
    """
    t = cuda.grid(1)
    T = cuda.gridsize(1)
    n = x.shape[0]
    s0 = states[t]["s0"]
    s1 = states[t]["s1"]
    i = t
    while i + 7 * T < n:
        x0, x1, x2, x3 = x[i], x[i + T], x[i + 2 * T], x[i + 3 * T]
        x4, x5, x6, x7 = x[i + 4 * T], x[i + 5 * T], x[i + 6 * T], x[i + 7 * T]
        k, s0, s1 = _draw(s0, s1, keep)
        out[i] = _apply(x0, k, p)
        k, s0, s1 = _draw(s0, s1, keep)
        out[i + T] = _apply(x1, k, p)
        k, s0, s1 = _draw(s0, s1, keep)
        out[i + 2 * T] = _apply(x2, k, p)
        k, s0, s1 = _draw(s0, s1, keep)
        out[i + 3 * T] = _apply(x3, k, p)
        k, s0, s1 = _draw(s0, s1, keep)
        out[i + 4 * T] = _apply(x4, k, p)
        k, s0, s1 = _draw(s0, s1, keep)
        out[i + 5 * T] = _apply(x5, k, p)
        k, s0, s1 = _draw(s0, s1, keep)
        out[i + 6 * T] = _apply(x6, k, p)
        k, s0, s1 = _draw(s0, s1, keep)
        out[i + 7 * T] = _apply(x7, k, p)
        i += 8 * T
    while i < n:
        k, s0, s1 = _draw(s0, s1, keep)
        out[i] = _apply(x[i], k, p)
        i += T
    states[t]["s0"] = s0
    states[t]["s1"] = s1


@cuda.jit
def _dropout_naive(out, x, states, keep, p):
    """The oracle of ``_dropout_kernel`` (same grid, same draws): one element per loop step, each drawn through
    ``xoroshiro128p_uniform_float32`` on the state in global memory."""
    t = cuda.grid(1)
    T = cuda.gridsize(1)
    for i in range(t, x.shape[0], T):
        out[i] = _apply(x[i], xoroshiro128p_uniform_float32(states, t) < keep, p)


@cuda.jit
def _feature_mask_kernel(noise, states, keep):
    """noise[r] = 1 when channel r is kept, else 0, for noise: (R,). Thread t handles channels t, t + T, ... with
    its own state states[t]; grid = min(ceil(R / DTPB), MAX_BLOCKS) blocks of DTPB threads."""
    t = cuda.grid(1)
    T = cuda.gridsize(1)
    for r in range(t, noise.shape[0], T):
        noise[r] = 1 if xoroshiro128p_uniform_float32(states, t) < keep else 0


@cuda.jit(device=True)
def _apply_mask(v, k, p):
    return _apply(v, k != 0, p)


_FEATURE_MAP = map_kernels(_apply_mask, 2)  # out[r, j] = x[r, j] kept or dropped by noise[r] (a column operand)


@register("dropout", "cuda")
def dropout(out, x, threshold, keep_mul, keep_add, drop_add, affine, per_row, seed):
    """Dropout of x: (R, L) into out: (R, L), per element or (``per_row``) per row, from the global generator's
    states or from the pristine states of ``seed``."""
    R = x.shape[0]
    n = x.size
    draws = R if per_row else n
    nblk = min(blocks(draws, DTPB), MAX_BLOCKS)
    if seed is None:
        states = _global_states()
    else:
        states = _seeded_states(_random.next_key("dropout", seed), nblk * DTPB)
    keep = np.float32(threshold / 2.0 ** 32)
    p = (keep_mul, keep_add, drop_add, affine)
    if per_row:
        noise = empty(R, np.uint8)
        _feature_mask_kernel[nblk, DTPB, stream()](noise, states, keep)
        launch_map(_FEATURE_MAP, out, (x, noise.reshape(R, 1)), p)
    else:
        _dropout_kernel[nblk, DTPB, stream()](flat(out), flat(x), states, keep, p)
