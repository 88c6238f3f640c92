"""The CUDA GEMM core (nbops/cuda/linear.py) on its own: every register tile against the one-thread-per-output
oracle ``_matmul_naive`` and torch, at the edges the tiles make (ragged M, N, K across tiles, K == 0, batch, batch
stride 0, transposed operands, alpha/beta, bias and relu in the epilogue), and the compiled code's resources.

Simulator shapes stay within two tiles a side: it runs the 256 threads of a block as Python threads."""

import numpy as np
import pytest
import torch

from helpers import gpu_ptx, make, make_int, outside_simulator, to_numpy, to_target

# (register tile, BATCH, M, N, K, layout of a, layout of b, b broadcast over the batch, alpha, beta, bias, act)
CASES = [
    ((4, 4), 1, 1, 1, 1, "contiguous", "contiguous", False, 1, 0, False, 0),
    ((4, 4), 2, 70, 9, 21, "transposed", "contiguous", False, 2, -1, True, 0),  # ragged rows past a 64-row tile
    ((4, 4), 3, 5, 67, 8, "contiguous", "transposed", True, 1, 0.5, False, 1),  # ragged columns, b broadcast
    ((4, 4), 1, 6, 7, 0, "contiguous", "contiguous", False, 1, 2, True, 1),  # K == 0: beta * out + bias
    ((8, 8), 1, 130, 9, 17, "contiguous", "transposed", False, 1, 0, True, 1),  # two 128-row tiles, 3 K steps
    ((8, 8), 2, 3, 129, 9, "transposed", "contiguous", True, -1, 1, False, 0),  # two 128-column tiles
    ((8, 4), 1, 129, 65, 9, "transposed", "transposed", False, 1, 0, False, 0),  # 128 x 64: both ragged
]


def _case(dtype, tm, BATCH, M, N, K, la, lb, bcast, alpha, beta, bias, act):
    if dtype == np.int64:
        a = make_int((BATCH, M, K), -9, 9, seed=0)
        b = make_int((1 if bcast else BATCH, K, N), -9, 9, seed=1)
        c = make_int((BATCH, M, N), -9, 9, seed=2)
        bv = make_int((N,), -9, 9, seed=3)
        alpha, beta = int(alpha), int(beta)
    else:
        a = make((BATCH, M, K), dtype, 0, layout=la)
        b = make((1 if bcast else BATCH, K, N), dtype, 1, layout=lb)
        c = make((BATCH, M, N), dtype, 2)
        bv = make((N,), dtype, 3)
    if bcast:
        b = np.broadcast_to(b, (BATCH, K, N))
    return a, b, c, (bv if bias else None), alpha, beta, act


def _expected(a, b, c, bias, alpha, beta, act):
    ta, tb, tc = (torch.from_numpy(np.array(x)) for x in (a, b, c))
    y = alpha * (ta @ tb) + (beta * tc if beta else 0)
    if bias is not None:
        y = y + torch.from_numpy(bias)
    return torch.relu(y) if act else y


def _device_b(b):
    """A batch-broadcast b (stride 0) on the device as a stride-0 view of one matrix."""
    from nbops._arrays import cuda_as_strided

    if b.strides[0]:
        return to_target(b, "cuda")
    one = to_target(np.ascontiguousarray(b[:1]), "cuda")
    return cuda_as_strided(one, b.shape, (0,) + one.strides[1:])


@pytest.mark.cuda
@pytest.mark.parametrize("dtype, case", [(d, c) for d in (np.float32, np.float64, np.int64) for c in CASES
                                         if c[0] == (4, 4) or d == np.float32])  # larger tiles: float32's only
def test_gemm_core_matches_oracle_and_torch(dtype, case):
    from nbops.cuda import linear as L

    tile = case[0]
    a, b, c, bias, alpha, beta, act = _case(dtype, *case)
    out = to_target(c, "cuda")
    L.gemm_launch(out, to_target(a, "cuda"), _device_b(b), alpha, beta,
                  None if bias is None else to_target(bias, "cuda"), act, tile)
    expected = _expected(a, b, c, bias, alpha, beta, act)
    rtol = {np.float32: 1e-5, np.float64: 1e-12, np.int64: 0}[dtype]
    torch.testing.assert_close(torch.from_numpy(to_numpy(out)), expected, rtol=rtol, atol=rtol * 10)
    if bias is None and not act:
        naive = to_target(c, "cuda")
        L._matmul_naive[L.blocks(c.size), L.TPB](naive, to_target(a, "cuda"), _device_b(b), dtype(alpha),
                                                  dtype(beta))
        torch.testing.assert_close(torch.from_numpy(to_numpy(naive)), expected, rtol=rtol, atol=rtol * 10)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype, splits, K", [(np.float32, 2, 34), (np.float64, 3, 9), (np.int64, 2, 10)])
def test_split_k_matches_torch(dtype, splits, K):
    """K split in parts summed by _split_k_sum, with alpha, beta, bias and relu in its epilogue."""
    from nbops.cuda import linear as L

    a, b, c, bias, alpha, beta, act = _case(dtype, (4, 4), 1, 66, 5, K, "transposed", "contiguous", False, 2, -1,
                                            True, 1)
    out = to_target(c, "cuda")
    L.gemm_launch(out, to_target(a, "cuda"), to_target(b, "cuda"), alpha, beta, to_target(bias, "cuda"), act,
                  (4, 4), splits)
    rtol = {np.float32: 1e-5, np.float64: 1e-12, np.int64: 0}[dtype]
    torch.testing.assert_close(torch.from_numpy(to_numpy(out)), _expected(a, b, c, bias, alpha, beta, act),
                               rtol=rtol, atol=rtol * 10)


@pytest.mark.cuda
def test_split_k_choice():
    """Split K only for a single problem that leaves SMs idle, into parts of at least MIN_SPLIT_K columns."""
    from nbops.cuda import linear as L

    sms = L.sm_count()
    assert L.splits_for(1, 64, 64, 8 * L.MIN_SPLIT_K, (4, 4)) == next((s for s in L.SPLITS if s >= 2 * sms), 8)
    assert L.splits_for(1, 64, 64, L.MIN_SPLIT_K, (4, 4)) == 1
    assert L.splits_for(2 * sms, 64, 64, 8 * L.MIN_SPLIT_K, (4, 4)) == 1


@pytest.mark.cuda
def test_tile_choice_fills_the_device():
    """The 128 x 128 float32 tile where its blocks fill two per SM, 128 x 64 for 64 columns or fewer, 64 x 64 below
    that and for float64."""
    from nbops.cuda import linear as L

    sms = L.sm_count()
    assert L.tile_for(np.float32, 2 * sms, 128, 128) == (8, 8)
    assert L.tile_for(np.float32, 2 * sms, 128, 64) == (8, 4)
    assert L.tile_for(np.float32, 1, 128, 128) == (4, 4)
    assert L.tile_for(np.float64, 2 * sms, 128, 128) == (4, 4)


def _gemm_resources():
    """Every GEMM kernel compiles for sm_90 for every layout the launchers pass, no register tile touches local
    memory (no ld.local / st.local in the PTX: the accumulators live in registers), and the float32 128-row tiles
    read their shared fragments with wide loads."""
    from numba import from_dtype, types

    from nbops.cuda import linear as L

    p = types.UniTuple(types.int64, 8)
    for (dt, tm, tn), kernel in L._matmul_kernel.items():
        t = from_dtype(dt)
        for la, lb in (("C", "C"), ("A", "A")):
            ptx = gpu_ptx(kernel, (t[:, :, ::1], t[:, :, :].copy(layout=la), t[:, :, :].copy(layout=lb), t[::1],
                                   t, t, p))
            assert "ld.local" not in ptx and "st.local" not in ptx, f"{dt} {tm}x{tn} tile uses local memory"
            if dt == np.float32 and tm == 8:  # aligned fragments: wide shared loads (v4 or v2, see linear.py)
                assert "ld.shared.v4.f32" in ptx or "ld.shared.v2.f32" in ptx, \
                    f"{tm}x{tn} float32 tile reads shared memory word by word"
        gpu_ptx(L._split_k_sum, (t[:, :, ::1], t[:, :, ::1], t[::1], t, t, types.int64, types.int64))


def test_gemm_compiles_without_local_memory():
    outside_simulator(_gemm_resources)
