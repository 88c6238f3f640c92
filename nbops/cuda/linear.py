"""CUDA kernels of the linear family: the register-tiled GEMM core that matmul and every convolution share.

The core (``make_gemm``) computes C = alpha * A @ B (+ beta * C, + bias, then an optional relu) for a batch of
problems, reading A and B through loader device functions and writing C through a store device function, so the
same kernel body serves the batched matmul here (strided 3-D operands) and the implicit-GEMM convolutions of
``conv.py`` (patches gathered from NCHW by the loader, no im2col buffer).

Block tile: BM x BN outputs (float32: 128 x 128, 128 x 64 or 64 x 64 by ``tile_for``'s rule; float64 / int64:
64 x 64), 256 threads as a 16 x 16 grid of threads, each owning a TM x TN register tile (8 x 8, 8 x 4 or 4 x 4)
made of four quarter tiles::

    rows  ty*TM/2 + [0, TM/2)   and  BM/2 + ty*TM/2 + [0, TM/2)
    cols  tx*TN/2 + [0, TN/2)   and  BN/2 + tx*TN/2 + [0, TN/2)

A warp is 8 tx x 4 ty, so the A words it reads from shared memory at one k fall in 4 x TM/2 distinct banks
(broadcast among equal ty) and the B words in 8 x TN/2 distinct banks: conflict-free. K walks in steps of BK = 8;
each step's A tile is staged transposed (``As[k, m]``) and B as is (``Bs[k, n]``), both padded by 4 words a row so
the staging stores are conflict-free whether the loader walks k or m fastest; a thread's quarter-tile fragments
are aligned runs of shared words, read as wide loads. The tiles are double-buffered: the
global loads of step t+1 go to registers before the math of step t and into the other buffer after it, one
syncthreads a step. Shared memory: 2 buffers x (8 x 132 + 8 x 132) words = 16.5 KiB (float32 128 x 128),
2 x (8 x 68 + 8 x 68) x 8 B = 17 KiB (float64 / int64 64 x 64). Loads past an edge of M, N or K read 0.

Dispatch by shape (``tile_for``, ``splits_for``): the largest tile that puts two blocks on every SM and fills at
least half of its columns, else 64 x 64 (4096^3 takes 128 x 128; 2048^3, bmm 256 x 128^3 and 64-channel convs
128 x 64); a single problem that still leaves SMs idle splits K in 2, 4 or 8 (a 128 x 1024 x 4096 linear: 64 x 64
tiles, K split in 4), the partial products summed in order by ``_split_k_sum``.

Napkin math: a 128 x 128 x 8 step is 131072 FMAs from 2 x 1024 staged words (64 FMAs per shared word each thread
reads); 4096^3 is 137 GFLOP, 2.7 ms at 50 TFLOP/s.

Compiled resources (ptxas -arch=sm_90 -v; every tile: 0 bytes stack, 0 spills), numba 0.68.1's built-in target /
numba-cuda 0.30.4 (what the GPU machine runs):
    float32 128 x 128: 130 / 130 registers, 16896 B shared (one block of 256 threads an SM)
    float32 128 x 64: 127 / 128 registers, 12800 B (two blocks an SM); float32 64 x 64: 95 / 95, 8704 B
    float64 64 x 64: 121 / 126 registers, 17408 B; int64 64 x 64: 134 / 140, 17408 B
The float32 128 x 128 kernel reads its 16 fragment words a k with 6 shared loads (3 v4, 1 v2, 2 scalar) under the
built-in target and 9 (7 v2, 2 scalar) under numba-cuda, against 16 scalar loads from element-aligned buffers.
"""

import numpy as np
from numba import complex128, cuda, float32, float64, int64, uint64

from .._arrays import cuda_as_strided
from .._dispatch import kernel, register
from ._util import TPB, blocks, empty, flat, sm_count, stream

THREADS = 256  # threads of a GEMM block: a 16 x 16 grid of register tiles
BK = 8  # K step staged in shared memory
PAD = 4  # words added to every staged row: conflict-free staging stores, rows stay 16-byte aligned
MAX_GRID_Y = 65535  # the grid's y limit; more row tiles loop
MAX_GRID_Z = 65535  # the grid's z limit; larger batches loop
SPLITS = (2, 4, 8)  # split-K factors, tried smallest first
MIN_SPLIT_K = 128  # K columns each split keeps at least
RELU = 1  # epilogue activation codes: 0 none, RELU max(v, 0)

# p, the integer parameters every GEMM launch passes: (BATCH, M, N, K, has_bias, act, a_kfast, b_nfast, *loader's)
P_BATCH, P_M, P_N, P_K, P_BIAS, P_ACT, P_AKFAST, P_BNFAST = range(8)


def make_gemm(dt, TM, TN, row_a, load_a, load_b, row_c, store, a_kfast=-1, b_nfast=-1):
    """The GEMM core for dtype ``dt`` and a TM x TN register tile, over the given device functions:

    ``row_a(a, z, r, p)`` -> (u, v, w): three int64 a loader derives from row r of problem z alone, computed once
    a row tile (a conv's pixel coordinates: no division in the K loop); ``load_a(a, z, u, v, w, k, p, zero)`` ->
    A[z][r, k], ``zero`` (0 in ``dt``) outside 0 <= r < M, 0 <= k < K; ``load_b(b, z, k, c, p, zero)`` ->
    B[z][k, c], ``zero`` outside 0 <= k < K, 0 <= c < N; ``row_c(c, z, r, p)`` -> (u, v, w), the state of output
    row r < M, computed once for its TN outputs; ``store(c, bias, z, u, v, w, col, x, beta, p)`` writes C[z][r, col]
    from ``x = alpha * (A @ B)[r, col]``, adding beta * C and the bias and applying the activation as p says.
    ``a_kfast`` / ``b_nfast``: the staging walk orders, fixed when the kernel is built (0 or 1), or -1 to read them
    from p at run time (a fixed a_kfast = 0 gives each thread a single A row).
    """
    BM, BN = 16 * TM, 16 * TN
    NP_DT = np.dtype(str(dt))
    NP_TYPE = NP_DT.type
    HM, HN = TM // 2, TN // 2  # rows / columns of a quarter tile
    BMP, BNP = BM + PAD, BN + PAD  # staged row lengths
    TMN = TM * TN
    SA, SB = BK * BMP, BK * BNP  # words of one staged buffer
    # the two buffers of each operand, in 16-byte words: shared arrays are declared as complex128 and viewed as dt,
    # so that LLVM may merge a thread's neighbouring reads into wide loads (a shared array is aligned to its
    # element: numba's built-in target gives complex128 16 bytes, ld.shared.v4 for float32; numba-cuda 0.30 its
    # ABI alignment, 8 bytes, ld.shared.v2)
    WORD = np.dtype(np.complex128).itemsize
    SA2, SB2 = 2 * SA * NP_DT.itemsize // WORD, 2 * SB * NP_DT.itemsize // WORD
    LA, LB = BM * BK // THREADS, BN * BK // THREADS  # staged elements each thread loads a step

    @cuda.jit
    def gemm(c, a, b, bias, alpha, beta, p):
        """C[z] = alpha * A[z] @ B[z] (+ beta * C[z] + bias, activation), z < BATCH; A: (M, K), B: (K, N).

        grid = (ceil(N / BN), min(ceil(M / BM), MAX_GRID_Y), min(BATCH, MAX_GRID_Z)), block = THREADS; one thread
        computes TM x TN outputs of each (problem, row tile) its block visits, accumulating in ``dt``. The loops'
        trip counts depend on the block only, so every thread of a block reaches every syncthreads.
        """
        As = cuda.shared.array(SA2, complex128).view(NP_TYPE)  # As[buf * SA + k * BMP + m] = A[row0 + m, k0 + k]
        Bs = cuda.shared.array(SB2, complex128).view(NP_TYPE)  # Bs[buf * SB + k * BNP + n] = B[k0 + k, col0 + n]
        acc = cuda.local.array(TMN, dt)
        av = cuda.local.array(TM, dt)
        bv = cuda.local.array(TN, dt)
        ra = cuda.local.array(LA, dt)  # the next step's A elements, held while this step computes
        ru = cuda.local.array(LA, int64)  # row_a's state of each staged A row
        rv = cuda.local.array(LA, int64)
        rw = cuda.local.array(LA, int64)
        rb = cuda.local.array(LB, dt)
        BATCH, M, N, K = p[P_BATCH], p[P_M], p[P_N], p[P_K]
        zero = dt(0)
        tid = cuda.threadIdx.x
        # staged element e of this thread: A[ar + e * dar, ak + e * dak] of the tile, walking k fastest (dar = 32,
        # dak = 0) or m fastest (dar = 0); B[bk + e * dbk, bn + e * dbn] likewise. THREADS is a multiple of BK,
        # BM and BN, so each is linear in e.
        if (p[P_AKFAST] if a_kfast < 0 else a_kfast):
            ar, ak, dar, dak = tid // BK, tid % BK, THREADS // BK, 0
        else:
            ar, ak, dar, dak = tid % BM, tid // BM, 0, THREADS // BM
        if (p[P_BNFAST] if b_nfast < 0 else b_nfast):
            bk, bn, dbk, dbn = tid // BN, tid % BN, THREADS // BN, 0
        else:
            bk, bn, dbk, dbn = tid % BK, tid // BK, 0, THREADS // BK
        warp, lane = tid // 32, tid % 32
        tm0 = (lane // 8 + 4 * (warp // 2)) * HM  # first row of this thread's register tile
        tn0 = (lane % 8 + 8 * (warp % 2)) * HN  # first column
        col0 = cuda.blockIdx.x * BN
        steps = (K + BK - 1) // BK
        for z in range(cuda.blockIdx.z, BATCH, cuda.gridDim.z):
            for row0 in range(cuda.blockIdx.y * BM, M, cuda.gridDim.y * BM):
                for ij in range(TMN):
                    acc[ij] = 0
                for e in range(LA):
                    if e == 0 or dar != 0:  # with dar == 0 (m fastest) every staged element is in the same row
                        u, v, w = row_a(a, z, row0 + ar + e * dar, p)
                    ru[e], rv[e], rw[e] = u, v, w
                # step s stages K columns [8s, 8s + 8) in buffer s % 2; iteration s loads step s before the math
                # of step s - 1 (past K the loaders give zeros)
                for s in range(steps + 1):
                    for e in range(LA):
                        ra[e] = load_a(a, z, ru[e], rv[e], rw[e], s * BK + ak + e * dak, p, zero)
                    for e in range(LB):
                        rb[e] = load_b(b, z, s * BK + bk + e * dbk, col0 + bn + e * dbn, p, zero)
                    if s > 0:
                        sa, sb = (s + 1) % 2 * SA + tm0, (s + 1) % 2 * SB + tn0  # buffer (s - 1) % 2
                        for kk in range(BK):
                            for i in range(TM):  # unsigned indices: no wrap-around code between neighbours
                                av[i] = As[uint64(sa + kk * BMP + i % HM + (i // HM) * (BM // 2))]
                            for j in range(TN):
                                bv[j] = Bs[uint64(sb + kk * BNP + j % HN + (j // HN) * (BN // 2))]
                            for ij in range(TMN):
                                acc[ij] += av[ij // TN] * bv[ij % TN]
                    sa, sb = s % 2 * SA, s % 2 * SB
                    for e in range(LA):
                        As[sa + (ak + e * dak) * BMP + ar + e * dar] = ra[e]
                    for e in range(LB):
                        Bs[sb + (bk + e * dbk) * BNP + bn + e * dbn] = rb[e]
                    # step s is staged and every thread is done reading step s - 1's buffer, which step s + 1
                    # overwrites: one barrier covers both
                    cuda.syncthreads()
                # row i of the register tile is stored from acc[:TN], then the rows shift up by one: every
                # index of acc stays a constant, so the tile stays in registers through the loop over rows
                for i in range(TM):
                    r = row0 + tm0 + i % HM + (i // HM) * (BM // 2)
                    if r < M:
                        u, v, w = row_c(c, z, r, p)
                        for j in range(TN):
                            col = col0 + tn0 + j % HN + (j // HN) * (BN // 2)
                            if col < N:
                                store(c, bias, z, u, v, w, col, alpha * acc[j], beta, p)
                    for ij in range(TMN - TN):
                        acc[ij] = acc[ij + TN]

    return gemm


@cuda.jit(device=True)
def _row(a, z, r, p):
    """A plain matrix's row state (of A or C): the row itself."""
    return r, 0, 0


@cuda.jit(device=True)
def _load_a(a, z, r, _v, _w, k, p, zero):
    """A[z][r, k] of a strided (BATCH, M, K) array (unsigned indices: no negative-index wrap-around code)."""
    if r < p[P_M] and k < p[P_K]:
        return a[uint64(z), uint64(r), uint64(k)]
    return zero


@cuda.jit(device=True)
def _load_b(b, z, k, c, p, zero):
    """B[z][k, c] of a strided (BATCH, K, N) array."""
    if k < p[P_K] and c < p[P_N]:
        return b[uint64(z), uint64(k), uint64(c)]
    return zero


@cuda.jit(device=True)
def _store(c, bias, z, r, _v, _w, col, v, beta, p):
    """C[z][r, col] = v (+ beta * C, read only when beta != 0) (+ bias[col]), then the activation."""
    if beta != 0:
        v += beta * c[z, r, col]
    if p[P_BIAS]:
        v += bias[col]
    if p[P_ACT] == RELU and v < 0:
        c[z, r, col] = 0
    else:
        c[z, r, col] = v


# register tiles (TM, TN) by dtype, largest first: float64 and int64 take 4 x 4 (an 8 x 8 float64 tile is 128
# registers of accumulators alone)
TILES = {np.dtype(np.float32): ((8, 8), (8, 4), (4, 4)), np.dtype(np.float64): ((4, 4),),
         np.dtype(np.int64): ((4, 4),)}
_matmul_kernel = {(np.dtype(d), tm, tn): make_gemm(t, tm, tn, _row, _load_a, _load_b, _row, _store)
                  for d, t in ((np.float32, float32), (np.float64, float64), (np.int64, int64))
                  for tm, tn in TILES[np.dtype(d)]}


def tile_for(dt, BATCH, M, N):
    """The register tile (TM, TN) for a problem: the dtype's largest that puts at least two blocks on every SM
    and fills at least half its columns (a 128-column tile for N <= 64 is mostly idle), else its smallest."""
    tiles = TILES[np.dtype(dt)]
    for tm, tn in tiles[:-1]:
        if N > 8 * tn and BATCH * blocks(M, 16 * tm) * blocks(N, 16 * tn) >= 2 * sm_count():
            return tm, tn
    return tiles[-1]


def splits_for(BATCH, M, N, K, tile):
    """Split-K factor for a single problem whose tiles leave SMs idle: the smallest of SPLITS that puts two blocks
    on every SM (else the largest that applies) among those dividing K into parts of at least MIN_SPLIT_K; 1 for
    batches, problems that fill the device, and short K."""
    tm, tn = tile
    tiles = blocks(M, 16 * tm) * blocks(N, 16 * tn)
    if BATCH != 1 or tiles >= 2 * sm_count():
        return 1
    found = 1
    for s in SPLITS:
        if K % s == 0 and K // s >= MIN_SPLIT_K:
            found = s
            if tiles * s >= 2 * sm_count():
                break
    return found


def gemm_grid(BATCH, M, N, tile):
    """The grid of a GEMM launch: column tiles on x, row tiles on y, problems on z (y and z capped)."""
    tm, tn = tile
    return blocks(N, 16 * tn), min(blocks(M, 16 * tm), MAX_GRID_Y), min(BATCH, MAX_GRID_Z)


def gemm_launch(out, a, b, alpha, beta, bias=None, act=0, tile=None, splits=None):
    """out = alpha * a @ b (+ beta * out) (+ bias) (then relu when act == RELU) on the GEMM core; out: (BATCH, M, N),
    a: (BATCH, M, K), b: (BATCH, K, N), all strided, bias: (N,) or None; ``tile``: the register tile, ``splits``:
    the split-K factor (``tile_for``'s and ``splits_for``'s choices by default). Each operand's staging walks the
    dim along which it is contiguous. Split K: the core writes the S partial products of K / S columns each into a
    temporary (S, M, N) and ``_split_k_sum`` adds them in order (deterministic) in the epilogue's place."""
    BATCH, M, N = out.shape
    K = a.shape[2]
    dt = np.dtype(out.dtype)
    tile = tile_for(dt, BATCH, M, N) if tile is None else tile
    splits = splits_for(BATCH, M, N, K, tile) if splits is None else splits
    if splits > 1:
        KS = K // splits
        part = empty((splits, M, N), dt)
        (_, sam, sak), (_, sbk, sbn) = a.strides, b.strides
        _core(part, cuda_as_strided(a, (splits, M, KS), (KS * sak, sam, sak)),
              cuda_as_strided(b, (splits, KS, N), (KS * sbk, sbk, sbn)), 1, 0, None, 0, tile)
        has_bias = int(bias is not None)
        bias = cuda_as_strided(part, (1,), (dt.itemsize,)) if bias is None else bias  # typed stand-in, never read
        _split_k_sum[max(1, min(blocks(M * N), 8 * sm_count())), TPB, stream()](
            out, part, bias, dt.type(alpha), dt.type(beta), has_bias, act)
        return
    _core(out, a, b, alpha, beta, bias, act, tile)


def _core(out, a, b, alpha, beta, bias, act, tile):
    BATCH, M, N = out.shape
    dt = np.dtype(out.dtype)
    item = dt.itemsize
    a_kfast = int(a.strides[2] == item or a.strides[1] != item)
    b_nfast = int(b.strides[2] == item or b.strides[1] != item)
    p = (BATCH, M, N, a.shape[2], int(bias is not None), act, a_kfast, b_nfast)
    bias = cuda_as_strided(out, (1,), (item,)) if bias is None else bias  # typed stand-in, never read
    _matmul_kernel[(dt,) + tuple(tile)][gemm_grid(BATCH, M, N, tile), THREADS, stream()](
        out, a, b, bias, dt.type(alpha), dt.type(beta), p)


@cuda.jit
def _split_k_sum(out, part, bias, alpha, beta, has_bias, act):
    """out[0] = alpha * (part[0] + ... + part[S - 1]) (+ beta * out[0]) (+ bias), then relu when act == RELU.

    out: (1, M, N); part: (S, M, N) C-contiguous; grid-stride over the M * N outputs, one thread an output at a
    time, adding the S partial products in order (deterministic), in the output dtype. Napkin math: (S + 1) * M * N
    words, e.g. S = 4 at 128 x 4096: 10 MB, ~3 us at 4 TB/s.
    """
    S, M, N = part.shape
    for i in range(cuda.grid(1), M * N, cuda.gridsize(1)):
        r = i // N
        c = i - r * N
        v = part[0, r, c]
        for s in range(1, S):
            v += part[s, r, c]
        v = alpha * v
        if beta != 0:
            v += beta * out[0, r, c]
        if has_bias:
            v += bias[c]
        if act == RELU and v < 0:
            out[0, r, c] = 0
        else:
            out[0, r, c] = v


@cuda.jit
def _matmul_naive(out, a, b, alpha, beta):
    """out[n] = alpha * a[n] @ b[n] + beta * out[n] (out not read when beta == 0): the oracle of the GEMM core.

    out: (BATCH, M, N); a: (BATCH, M, K), b: (BATCH, K, N), any strides; grid = ceil(out.size / TPB) blocks of TPB
    threads, one thread per output, global memory only (floats accumulate in float64, integers in int64).
    """
    i = cuda.grid(1)
    BATCH, M, N = out.shape
    if i >= BATCH * M * N:
        return
    n, r, c = i // (M * N), (i // N) % M, i % N
    s = 0
    for k in range(a.shape[2]):
        s += a[n, r, k] * b[n, k, c]
    v = alpha * s
    if beta != 0:
        v += beta * out[n, r, c]
    out[n, r, c] = v


@cuda.jit
def _narrow_kernel(out, wide, bits, signed):
    """out[i] = wide[i] reduced modulo 2**bits into out's integer range (two's complement wrap-around, stated
    explicitly rather than left to the cast); out, wide: (M,); one thread per element."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        v = wide[i] & ((1 << bits) - 1)
        if signed and v >= (1 << (bits - 1)):
            v -= 1 << bits
        out[i] = v


@register("matmul", "cuda")
def matmul(out, a, b, alpha=1, beta=0, bias=None):
    """out = alpha * a @ b + beta * out (+ bias), batched (out not read when beta == 0).

    out: (BATCH, M, N) C-contiguous; a: (BATCH, M, K), b: (BATCH, K, N), any strides (stride 0 broadcasts); bias:
    (N,) added in the GEMM's epilogue (float dtypes only), or None. Integers run in int64 (wrapping products and
    sums reduce to out's dtype exactly as torch's do).
    """
    dt = np.dtype(out.dtype)
    if dt.kind == "f":
        gemm_launch(out, a, b, alpha, beta, bias)
        return
    copy = kernel("copy", "cuda")
    a64, b64 = (empty(x.shape, np.int64) for x in (a, b))
    copy(a64, a)
    copy(b64, b)
    if dt == np.int64:
        gemm_launch(out, a64, b64, alpha, beta)
        return
    wide = empty(out.shape, np.int64)
    if beta:
        copy(wide, out)
    gemm_launch(wide, a64, b64, alpha, beta)
    _narrow_kernel[blocks(out.size), TPB, stream()](flat(out), flat(wide), 8 * dt.itemsize, dt.kind == "i")
