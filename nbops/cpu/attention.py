"""CPU fused attention: ``softmax(q @ k^T * scale) @ v`` without the (L, S) score matrix ever leaving the cache.

The unfused chain (matmul, softmax, matmul) writes the scores and the weights to memory and reads them back: for
a BERT-base layer at (8, 512, 768) with 12 heads that is two fresh 100 MB arrays per call, page faults included
(scores 23 ms, softmax 29 ms, weights @ v 21 ms on this machine, 2 threads). Here each block of MR queries has
its scores computed into an (MR, S) row buffer on the linear family's register-tiled micro-kernel, normalised in
place, and multiplied by v straight away, so the scores stay in L1/L2.
"""

import numpy as np
from numba import njit, prange

from .._dispatch import register
from .activation import _block_max, _exp_shifted, _shift
from ._util import run_parallel, thread_count, wide_vectors
from .linear import MR, SERIAL_MACS, _edge_tile, _flat, _pack_a, _pack_b, _row_width, _tile_into


@njit(fastmath={"contract", "reassoc"}, error_model="numpy", cache=True)
def _exp_row(row):
    """row[:] = exp(row - max(row)), in place, in row's dtype; returns 1 / the sum, which turns the row into its
    softmax (the caller scales the row's outputs by it instead: E values, not S). The max ignores NaN
    (``_block_max``) and the exps are taken from it (``_shift``: 0 while only -inf was seen), so a row holding NaN
    or +inf gives NaN and a row of -inf gives NaN, as torch's softmax; ``reassoc`` lets the sum vectorise. The exps
    are ``_exp_shifted``'s (float32: 0 where exp(x) would be subnormal). Rows of 512 float32 in L1, one thread, ns
    an element: 0.55 with ``_block_max`` on 16 lanes and ``_exp``, 0.38 on 64 lanes, 0.30 with ``_exp_shifted``;
    8 x 12 heads of 512 x 64, 2 threads, same process: 30.4 -> 26.2 ms."""
    wide_vectors()
    sh = _shift(_block_max(row, row.dtype.type(-np.inf)))
    s = row.dtype.type(0)
    for j in range(row.shape[0]):
        e = _exp_shifted(row[j] - sh)
        row[j] = e
        s += e
    return row.dtype.type(1) / s


@njit(parallel=True, cache=True)
def _attention_kernel(out, q, qs, k, ks, v, vs, scale, D, S, QC, H, L, E, merged):
    """out[a, h] = softmax(Q[a, h] @ K[a, h]^T * scale) @ V[a, h] for each batch item (a, h).

    out: the (A, H, L, E) result as a C-contiguous 2-D array, (A * H * L, E), or where ``merged`` in the layout of
    the heads merged back side by side, (A, L, H, E) as (A * L, H * E): row i of item (a, h) is out row
    ``(a * H + h) * L + i`` at column 0, or out row ``a * L + i`` at column ``h * E`` (what the output projection
    of a multi-head attention reads: the transposing copy into that layout, 1.5 ms of a BERT-base layer, is
    not needed). q, k, v: flat buffers holding Q (A, H, L, D), K (A, H, S, D), V (A, H, S, E)
    at element strides qs, ks, vs (two batch dims, row, column; any strides, so that the heads of a multi-head
    projection, (N, L, H, D) transposed, are read in place; stride 0 broadcasts); S >= 1. One prange iteration
    takes one batch item and one of its QC runs of query blocks. It packs K^T as the micro-kernel's B panels
    (D x NR each, zero past S) and V likewise (S x NR each) whatever its strides: a panel of V read in place takes 128
    bytes from each of S rows (256 bytes to 9 KiB apart), the packed one reads on in order: 4-12 % faster (2
    threads, same process, ms: 8 x 12 heads of 512 x 64 contiguous 33.8 -> 32.3, as a packed projection's heads
    35.9 -> 33.6; heads of 1024 x 64 139 -> 124). Then for each block of MR queries (packed with the scale folded
    in, zero rows past L): the scores (MR, S) = Q_blk @ K^T into a row buffer (one MR x NR tile per NR keys,
    ``_tile_into``), each row's exp(s - max) in place (``_exp_row``), and
    the block's outputs (MR, E) = P @ V, its NR-column tiles stored straight into out (ragged last columns through
    ``_edge_tile``), then each output row divided by its row's sum.

    Napkin math, 8 x 12 heads of L = S = 512, D = E = 64, float32: 2 x 96 x 512 x 512 x 64 x 2 = 6.4 GFLOP
    (20-25 ms at the GEMM's 270-320 GFLOP/s), and 25 M exps; the inputs and output, 12.6 MB each, are read or
    written once, where the unfused chain also writes and reads two 100 MB arrays.
    """
    A = out.shape[0] // (L if merged else H * L)
    NR = _row_width(out)
    Sp = (S + NR - 1) // NR * NR
    Ep = (E + NR - 1) // NR * NR
    nblk = (L + MR - 1) // MR
    one, zero = out.dtype.type(1), out.dtype.type(0)
    nobias = np.empty(0, out.dtype)  # ``_edge_tile`` adds no bias
    for t in prange(A * H * QC):
        a = t // (H * QC)
        h = t // QC - a * H
        c = t % QC
        blo = c * nblk // QC
        bhi = (c + 1) * nblk // QC
        if blo == bhi:
            continue
        kp = np.empty((Sp // NR, D, NR), out.dtype)
        _pack_b(kp, k, a * ks[0] + h * ks[1], ks[3], ks[2], D, S)
        vp = np.empty((Ep // NR, S, NR), out.dtype)
        _pack_b(vp, v, a * vs[0] + h * vs[1], vs[2], vs[3], S, E)
        vpf = vp.reshape(-1)
        ap = np.empty((1, D, MR), out.dtype)
        sc = np.zeros((MR, Sp), out.dtype)  # rows past a ragged last block take part in the tiles: keep them finite
        inv = np.empty(MR, out.dtype)  # 1 / each row's sum of exps
        edge = np.empty((MR, NR), out.dtype)  # a ragged last column tile, stored from here
        row0 = a * L if merged else (a * H + h) * L
        col0 = h * E if merged else 0
        for blk in range(blo, bhi):
            i0 = blk * MR
            rows = min(MR, L - i0)
            _pack_a(ap, q, a * qs[0] + h * qs[1] + i0 * qs[2], qs[2], qs[3], rows, D)
            apf = ap.reshape(-1)
            for j in range(apf.shape[0]):
                apf[j] *= scale
            for j0 in range(0, Sp, NR):
                _tile_into(ap, 0, MR, 1, D, kp, j0 * D, NR, sc, 0, j0, MR, False)
            for r in range(rows):
                inv[r] = _exp_row(sc[r, :S])
            for j0 in range(0, Ep, NR):
                if j0 + NR <= E:
                    _tile_into(sc, 0, 1, Sp, S, vpf, j0 * S, NR, out, row0 + i0, col0 + j0, rows, False)
                else:
                    _edge_tile(sc, 0, 1, Sp, S, vpf, j0 * S, NR, edge, 0, 0, one, zero, True, nobias)
                    for r in range(rows):
                        for j in range(E - j0):
                            out[row0 + i0 + r, col0 + j0 + j] = edge[r, j]
            for r in range(rows):
                orow = out[row0 + i0 + r]
                f = inv[r]
                for j in range(col0, col0 + E):
                    orow[j] *= f


@njit(parallel=True, cache=True)
def _attention_naive(out, q, k, v, scale):
    """The oracle: out[b, i] = sum_j softmax_j(q[b, i] . k[b, j] * scale) v[b, j] in float64, one (b, i) row per
    prange iteration. q: (B, L, D), k: (B, S, D), v: (B, S, E), out: (B, L, E) (B: the batch dims flattened)."""
    B, L, E = out.shape
    S = k.shape[1]
    for t in prange(B * L):
        b = t // L
        i = t % L
        s = np.empty(S)
        for j in range(S):
            acc = 0.0
            for d in range(q.shape[2]):
                acc += np.float64(q[b, i, d]) * np.float64(k[b, j, d])
            s[j] = acc * scale
        m = s.max()
        w = np.exp(s - m)
        w /= w.sum()
        for e in range(E):
            acc = 0.0
            for j in range(S):
                acc += w[j] * np.float64(v[b, j, e])
            out[b, i, e] = acc


@register("attention", "cpu")
def attention(out, q, k, v, scale, merged=False):
    """softmax(q @ k^T * scale) @ v for q (A, H, L, D), k (A, H, S, D), v (A, H, S, E), S >= 1, float32 or float64,
    any strides, into out (A, H, L, E), or (A, L, H * E) where ``merged`` (the heads side by side); C-contiguous.
    Batch items are split into runs of query blocks until there are 4 prange items a thread (each run packs its
    item's K and V again: S x (D + E) values against its blocks' 2 x MR x S x (D + E) flops)."""
    A, H, L, E = q.shape[0], q.shape[1], q.shape[2], v.shape[3]
    B = A * H
    blocks = -(-L // MR)
    macs = B * L * k.shape[2] * (q.shape[3] + E)  # below SERIAL_MACS: one run an item, calling thread
    QC = 1 if macs < SERIAL_MACS else max(1, min(blocks, -(-4 * thread_count() // max(B, 1))))
    (qf, q_st), (kf, k_st), (vf, v_st) = _flat(q), _flat(k), _flat(v)
    out2 = out.reshape(A * L, H * E) if merged else out.reshape(B * L, E)
    run_parallel(_attention_kernel, macs, out2, qf, q_st, kf, k_st, vf, v_st, out.dtype.type(scale), q.shape[3],
                 k.shape[2], QC, H, L, E, merged, below=SERIAL_MACS)
