import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nbops
from helpers import DTYPES, TARGETS, check, gpu_ptx, make, make_int, outside_simulator, to_numpy, to_target

INT_DTYPES = [np.int8, np.uint8, np.int16, np.int32, np.int64]


def tol(dtype, K):
    """float32 sums of K products land within a few ulps of K-term sums: torch's BLAS adds them in another order
    (and fuses differently), so float32 rows with K > 16 get a tolerance growing like sqrt(K)."""
    if dtype == np.float32 and K > 16:
        return {"rtol": 1e-5, "atol": 2e-6 * K ** 0.5 * 10}
    return {}


# (shape of input, shape of other, layout of input, layout of other); every dim <= 32 so cuda runs them too
MATMUL_CASES = [
    ((4,), (4,), "contiguous", "contiguous"),  # dot -> 0-d
    ((3,), (3, 5), "contiguous", "contiguous"),  # 1-D @ 2-D
    ((3,), (2, 3, 5), "contiguous", "strided"),  # 1-D @ batched
    ((4, 3), (3,), "transposed", "contiguous"),  # 2-D @ 1-D
    ((2, 4, 3), (3,), "contiguous", "strided"),  # batched @ 1-D
    ((2, 1, 3, 4), (5, 4, 6), "contiguous", "contiguous"),  # batch dims broadcast -> (2, 5, 3, 6)
    ((2, 1, 3, 4), (1, 5, 4, 6), "transposed", "contiguous"),  # batch dims that cannot fold into one
    ((3, 5, 6), (6, 7), "contiguous", "contiguous"),  # rows of a batch against one matrix (folded)
    ((7, 13), (13, 19), "contiguous", "contiguous"),  # odd sizes, less than one tile
    ((9, 11), (11, 13), "transposed", "transposed"),
    ((9, 11), (11, 13), "strided", "strided"),
    ((1, 1), (1, 1), "contiguous", "contiguous"),
    ((0, 3), (3, 4), "contiguous", "contiguous"),  # empty M
    ((3, 0), (0, 4), "contiguous", "contiguous"),  # K == 0: zeros
    ((3, 4), (4, 0), "contiguous", "contiguous"),  # empty N
    ((0, 3, 4), (4, 2), "contiguous", "contiguous"),  # empty batch
    ((2, 20, 30), (2, 30, 17), "contiguous", "transposed"),
]

# larger shapes for the blocked CPU kernel: several micro-tiles, K and N blocks, ragged edges on every side
CPU_CASES = [
    ((150, 300), (300, 1100), "contiguous", "contiguous"),
    ((20, 800), (800, 30), "contiguous", "transposed"),  # K spans several KC blocks
    ((61, 257), (257, 45), "transposed", "strided"),
    ((4, 33, 70), (70, 50), "strided", "transposed"),
    ((5, 1, 40, 9), (3, 9, 38), "contiguous", "transposed"),
    ((45, 400), (400, 70), "contiguous", "transposed"),  # B^T packed by register squares; ragged K block and N
    ((130, 33), (33, 64), "transposed", "transposed"),  # full tiles from registers, a ragged row panel, K = 2 * 16 + 1
    ((40, 1), (1, 70), "contiguous", "contiguous"),  # K == 1: an outer product
    ((2, 25, 40), (2, 40, 96), "contiguous", "contiguous"),  # whole NR panels: B read in place, not packed
    ((16, 700), (700, 40), "contiguous", "contiguous"),  # a 4-row last panel (short tile), added over K blocks
    ((20, 70), (70, 33), "transposed", "contiguous"),  # an 8-row last panel (short tile)
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sa, sb, la, lb", MATMUL_CASES)
def test_matmul(target, dtype, sa, sb, la, lb):
    a = make(sa, dtype, 0, layout=la if len(sa) > 1 else "contiguous")
    b = make(sb, dtype, 1, layout=lb if len(sb) > 1 else "contiguous")
    check(nbops.matmul, torch.matmul, target, a, b, **tol(dtype, sa[-1]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sa, sb, la, lb", CPU_CASES)
def test_matmul_blocked(dtype, sa, sb, la, lb):
    a, b = make(sa, dtype, 2, layout=la), make(sb, dtype, 3, layout=lb)
    check(nbops.matmul, torch.matmul, "cpu", a, b, **tol(dtype, sa[-1]))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_mm_bmm(target, dtype):
    check(nbops.mm, torch.mm, target, make((6, 10), dtype), make((10, 7), dtype, 1, layout="transposed"))
    check(nbops.bmm, torch.bmm, target, make((3, 5, 8), dtype, layout="strided"), make((3, 8, 4), dtype, 1))


# (input shape, weight shape, bias shape or None, input layout)
LINEAR_CASES = [
    ((4, 10), (6, 10), (6,), "contiguous"),
    ((2, 3, 10), (6, 10), (6,), "contiguous"),  # leading dims fold into one product
    ((2, 3, 10), (6, 10), None, "transposed"),
    ((10,), (6, 10), (6,), "contiguous"),  # 1-D input
    ((3, 10), (10,), None, "contiguous"),  # 1-D weight
    ((3, 10), (6, 10), (), "contiguous"),  # 0-d bias
    ((5, 10), (6, 10), (5, 6), "strided"),  # bias of the full result shape
    ((0, 10), (6, 10), (6,), "contiguous"),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sx, sw, sbias, layout", LINEAR_CASES)
def test_linear(target, dtype, sx, sw, sbias, layout):
    x = make(sx, dtype, 0, layout=layout if len(sx) > 1 else "contiguous")
    w = make(sw, dtype, 1)
    bias = None if sbias is None else make(sbias, dtype, 2)
    check(nbops.linear, F.linear, target, x, w, bias)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_large_offset(dtype):
    x, w, b = make((33, 70), dtype, 0, offset=1e4), make((40, 70), dtype, 1), make((40,), dtype, 2, offset=1e4)
    check(nbops.linear, F.linear, "cpu", x, w, b, rtol=1e-5 if dtype == np.float32 else None,
          atol=1e-1 if dtype == np.float32 else None)


# (input shape, mat1 shape, mat2 shape, beta, alpha)
ADDMM_CASES = [
    ((5, 7), (5, 3), (3, 7), 1, 1),
    ((7,), (5, 3), (3, 7), 0.5, 2.0),  # input broadcast along rows
    ((5, 1), (5, 3), (3, 7), -1, 0.25),
    ((), (5, 0), (0, 7), 2, 3),  # K == 0: beta * input
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("si, s1, s2, beta, alpha", ADDMM_CASES)
def test_addmm(target, dtype, si, s1, s2, beta, alpha):
    check(nbops.addmm, torch.addmm, target, make(si, dtype, 0), make(s1, dtype, 1, layout="transposed"),
          make(s2, dtype, 2), beta=beta, alpha=alpha)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("si, beta, alpha", [((3, 4, 6), 1, 1), ((1, 6), 0.5, -2.0), ((3, 1, 1), 2, 0.5)])
def test_baddbmm(target, dtype, si, beta, alpha):
    check(nbops.baddbmm, torch.baddbmm, target, make(si, dtype, 0), make((3, 4, 5), dtype, 1),
          make((3, 5, 6), dtype, 2, layout="strided"), beta=beta, alpha=alpha)


@pytest.mark.parametrize("target", TARGETS)
def test_beta_alpha_zero_ignore_nan(target):
    """beta == 0 ignores input and alpha == 0 ignores the matrices: their NaNs must not leak, as in torch."""
    nan_in = np.full((4, 3), np.nan, np.float32)
    check(nbops.addmm, torch.addmm, target, nan_in, make((4, 5)), make((5, 3), seed=1), beta=0)
    check(nbops.addmm, torch.addmm, target, make((4, 3)), make((4, 5)), np.full((5, 3), np.nan, np.float32),
          alpha=0, beta=2)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the simulator's inf * 0
@pytest.mark.parametrize("target", TARGETS)
def test_nan_inf(target):
    a = make((5, 6))
    a[1, 2], a[3, 0] = np.nan, np.inf
    b = make((6, 7), seed=1)
    b[4, 5] = -np.inf
    check(nbops.matmul, torch.matmul, target, a, b)


@pytest.mark.parametrize("target, dtype", [("cpu", d) for d in INT_DTYPES] + [
    pytest.param("cuda", d, marks=pytest.mark.cuda) for d in (np.int8, np.uint8, np.int64)])
def test_integer(target, dtype):
    """Integer products wrap around in the input dtype (int8 100 * 100 overflows), as torch's do."""
    lo, hi = (0, 200) if dtype == np.uint8 else (-100, 100)
    a, b = make_int((2, 1, 4, 6), lo, hi, dtype), make_int((3, 6, 5), lo, hi, dtype, seed=1)
    check(nbops.matmul, torch.matmul, target, a, b)
    check(nbops.addmm, torch.addmm, target, make_int((5,), lo, hi, dtype, 2), a[0, 0], b[0], beta=2, alpha=3)


def test_integer_scalars_truncate():
    a, b, c = (make_int(s, -9, 9, seed=i) for i, s in enumerate([(3, 4), (3, 2), (2, 4)]))
    check(nbops.addmm, torch.addmm, "cpu", a, b, c, beta=1.5, alpha=2.7)


@pytest.mark.parametrize("target", TARGETS)
def test_out(target):
    a, b = make((4, 6)), make((6, 3), seed=1)
    out = to_target(np.zeros((4, 3), np.float32), target)
    got = nbops.mm(to_target(a, target), to_target(b, target), out=out)
    assert got is out
    np.testing.assert_allclose(to_numpy(out), a @ b, rtol=1e-5, atol=1e-5)


# the real CUDA compiler (NVVM), not the simulator: every kernel for every signature the launchers pass. The
# simulator runs kernels as Python and accepts what the device compiler rejects (a shared array shaped by an
# expression); libnvvm compiles PTX without a GPU. Outside the simulator, so that NUMBA_ENABLE_CUDASIM cannot apply.
def _compile_cuda_kernels():
    from numba import boolean, from_dtype, int64

    from nbops.cuda import linear as L

    failed = []
    for dt in (np.float32, np.float64, np.int64):
        t = from_dtype(np.dtype(dt))
        for la, lb in (("C", "C"), ("A", "A"), ("F", "A")):
            sig = (t[:, :, ::1], t[:, :, :].copy(layout=la), t[:, :, :].copy(layout=lb), t, t)
            try:
                gpu_ptx(L._matmul_naive, sig)
            except Exception as e:
                failed.append(f"_matmul_naive{sig}: {type(e).__name__}: {e}")
    for dt in (np.int8, np.uint8, np.int16, np.int32):
        sig = (from_dtype(np.dtype(dt))[::1], int64[::1], int64, boolean)
        try:
            gpu_ptx(L._narrow_kernel, sig)
        except Exception as e:
            failed.append(f"_narrow_kernel{sig}: {type(e).__name__}: {e}")
    assert not failed, "\n".join(failed)


def test_cuda_kernels_compile_for_the_device():
    outside_simulator(_compile_cuda_kernels)


@pytest.mark.cuda
def test_cuda_grid_limits_loop(monkeypatch):
    """CUDA caps the grid's y and z dims at 65535 (the simulator does not): row tiles and batch items past the cap
    are looped over by the blocks there are. Capped at 1 here, one block walks 3 batch items x 2 row tiles."""
    from nbops.cuda import linear as L

    monkeypatch.setattr(L, "MAX_GRID_Y", 1)
    monkeypatch.setattr(L, "MAX_GRID_Z", 1)
    check(nbops.baddbmm, torch.baddbmm, "cuda", make((3, 70, 4)), make((3, 70, 5), seed=1),
          make((3, 5, 4), seed=2), beta=0.5)


def test_out_strided():
    """An out= that is not C-contiguous gets the result copied in; a contiguous one is written in place."""
    a, b = make((4, 6)), make((6, 3), seed=1)
    wide = np.zeros((4, 6), np.float32)
    assert nbops.mm(a, b, out=wide[:, ::2]).base is wide
    np.testing.assert_allclose(wide[:, ::2], a @ b, rtol=1e-5, atol=1e-5)
    assert not wide[:, 1::2].any()


def test_out_may_alias_input():
    x, a, b = make((4, 3)), make((4, 5), seed=1), make((5, 3), seed=2)
    expected = torch.addmm(torch.from_numpy(x), torch.from_numpy(a), torch.from_numpy(b), beta=0.5)
    assert nbops.addmm(x, a, b, beta=0.5, out=x) is x
    torch.testing.assert_close(torch.from_numpy(x), expected)


def test_torch_tensors_in_torch_out():
    x, w = torch.randn(3, 8), torch.randn(5, 8)
    got = nbops.linear(x, w)
    assert isinstance(got, torch.Tensor)
    torch.testing.assert_close(got, F.linear(x, w))
    torch.testing.assert_close(nbops.matmul(x, w.T), x @ w.T)


@pytest.mark.parametrize("a_rows", [False, True], ids=["a-transposed", "a-rows"])
@pytest.mark.parametrize("biased", [False, True], ids=["", "bias"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, tiles, alpha, beta", [
    ((1, 1, 1, 1), (1, 1), 2, -1), ((1, 7, 300, 33), (2, 3), 2, -1), ((1, 149, 257, 1041), (1, 2), 2, -1),
    ((3, 13, 40, 70), (3, 1), 2, -1), ((2, 23, 1100, 61), (2, 1), 2, -1),  # 3 K blocks (5 in float64)
    ((2, 30, 800, 70), (1, 1), 1, 0), ((2, 30, 800, 70), (2, 1), 1, 1),  # full tiles stored from the registers
    ((1, 40, 50, 96), (1, 2), 1, 1),  # every column panel full: B read in place
    ((2, 13, 40, 64), (1, 1), 2, -1),  # B read in place, blended through the buffer
    ((1, 28, 600, 96), (1, 1), 1, 0), ((1, 20, 70, 64), (1, 1), 1, 0),  # 4-row and 8-row last panels
    ((1, 29, 150, 300), (1, 1), 2, -1),  # float32: a row-major A read in place over 10 panels (rows 600 B apart)
    ((1, 29, 1024, 300), (1, 1), 1, 0),  # ... but packed when its rows are 4 KiB apart
    ((2, 5, 0, 40), (1, 1), 1, 0)])  # K == 0: beta * out (+ bias)
def test_blocked_kernel_matches_naive(dtype, shape, tiles, alpha, beta, biased, a_rows):
    """The packed, blocked kernel against the triple-loop oracle, with ragged edges, forced task splits, and
    both stores: from the registers (alpha 1, beta 0 or 1) and through the blend buffer (any other alpha/beta).
    A transposed A is packed; a row-major one is read in place where a task has few column panels. With a bias
    (linear's), the first K block adds it as it stores (``_tile_into_bias`` or ``_edge_tile``), once."""
    from nbops.cpu import linear as L

    BATCH, M, K, N = shape
    a = make((BATCH, M, K), dtype, 0) if a_rows else make((BATCH, K, M), dtype, 0).swapaxes(1, 2)
    b = make((1, K, N), dtype, 1)
    b = np.broadcast_to(b, (BATCH, K, N))  # batch stride 0
    bias = make((N,), dtype, 4) if biased else np.empty(0, dtype)
    expected = np.empty((BATCH, M, N), dtype)
    L._matmul_naive(expected, np.ascontiguousarray(a), np.ascontiguousarray(b[:1]), dtype(1), dtype(0))
    (af, ast), (bf, bst) = L._flat(a), L._flat(b)
    got = np.full((BATCH, M, N), 7, dtype)
    L._matmul_kernel(got, af, ast, bf, bst, K, dtype(alpha), dtype(beta), *tiles, bias, L.ACT_NONE)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, alpha * expected + 7 * beta + (bias if biased else 0), rtol=rtol,
                               atol=rtol * max(K, 1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_small_products_match_the_tile_kernel_bit_for_bit(dtype):
    """``_matmul_small`` (products of at most SMALL_MACS multiply-adds in one K block) gives the tile kernel's
    bits: the same fused multiply-add chain per output and the same blend, for every alpha/beta/bias store, a
    transposed (linear's) and a batch-broadcast B, a transposed A; the launchers pick it only where it applies."""
    from nbops.cpu import linear as L

    shapes = [(1, 1, 1, 1), (8, 8, 8, 8), (1, 1, 128, 10), (3, 5, 7, 11), (2, 1, 100, 20), (1, 12, 10, 32)]
    for BATCH, M, K, N in shapes:
        for layout in ("rows", "transposed-b", "transposed-a", "broadcast-b"):
            a = make((BATCH, M, K), dtype, 0) if layout != "transposed-a" else \
                make((BATCH, K, M), dtype, 0).swapaxes(1, 2)
            b = make((BATCH, N, K), dtype, 1).swapaxes(1, 2) if layout == "transposed-b" else \
                np.broadcast_to(make((1, K, N), dtype, 1), (BATCH, K, N)) if layout == "broadcast-b" else \
                make((BATCH, K, N), dtype, 1)
            (af, ast), (bf, bst) = L._flat(a), L._flat(b)
            for alpha, beta, biased in [(1, 0, False), (1, 0, True), (1, 1, False), (2, -1, False), (2, -1, True),
                                        (-0.5, 0, True)]:
                bias = make((N,), dtype, 4) if biased else np.empty(0, dtype)
                start = make((BATCH, M, N), dtype, 5)
                small, tiled = start.copy(), start.copy()
                assert L._small_entry(small.dtype, K, N, small.size * K) is not None
                L._small_entry(small.dtype, K, N, small.size * K)(small, af, ast, bf, bst, K, dtype(alpha),
                                                                  dtype(beta), bias)
                L._matmul_kernel(tiled, af, ast, bf, bst, K, dtype(alpha), dtype(beta), 1, 1, bias, L.ACT_NONE)
                assert np.array_equal(small, tiled), (BATCH, M, K, N, layout, alpha, beta, biased)
    too_big = L.SMALL_MACS + 1
    assert L._small_entry(np.dtype(dtype), 1, 1, too_big) is None
    assert L._small_entry(np.dtype(dtype), L.KC_BYTES // np.dtype(dtype).itemsize + 1, 1, 1) is None
    assert L._small_entry(np.dtype(dtype), 0, 1, 0) is None
    assert L._small_entry(np.dtype(dtype), 1, L.MR * L.ROW_BYTES // np.dtype(dtype).itemsize + 1, 1) is None
    x, w, bias = make((1, 128), dtype, 6), make((10, 128), dtype, 7), make((10,), dtype, 8)
    check(nbops.linear, F.linear, "cpu", x, w, bias)
    check(nbops.bmm, torch.bmm, "cpu", make((8, 8, 8), dtype, 9), make((8, 8, 8), dtype, 10))


def _block_in_buffer(rows, cols, order, dtype, seed):
    """A (rows, cols) block of a bigger random matrix as the packing functions read it: (flat buffer, offset of
    its first element, row step, column step, the block). order: "rows" (C order), "columns" (Fortran order) or
    "strided" (rows 2 and columns 3 elements of a C-order matrix apart: neither step 1)."""
    big = make((3 * rows + 5, 3 * cols + 7), dtype, seed)
    R, C = big.shape
    if order == "rows":
        return big.reshape(-1), 2 * C + 3, C, 1, big[2:2 + rows, 3:3 + cols]
    if order == "columns":
        return np.asfortranarray(big).ravel(order="F"), 2 + 3 * R, 1, R, big[2:2 + rows, 3:3 + cols]
    return big.reshape(-1), 2 * C + 3, 2 * C, 3, big[2:2 + 2 * rows:2, 3:3 + 3 * cols:3]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["rows", "columns", "strided"])
@pytest.mark.parametrize("kc, nc", [(13, 70), (8, 64), (1, 5), (21, 100)])
def test_pack_b_panels(dtype, order, kc, nc):
    """``_pack_b`` against its definition, bp[q, p, c] = B[p, q * NR + c] and zero past nc, from an offset into a
    bigger buffer: a row-major B (copied in strips of PACK_STRIP rows; kc not a multiple of it), a column-major one
    (transposed squares) and one with neither stride 1."""
    from nbops.cpu.linear import _pack_b, _row_width

    NR = _row_width(np.empty(0, dtype))
    flat, off, sk, sn, block = _block_in_buffer(kc, nc, order, dtype, 11)
    panels = -(-nc // NR)
    bp = np.full((panels, kc + 3, NR), np.nan, dtype)
    _pack_b(bp, flat, off, sk, sn, kc, nc)
    expected = np.zeros((kc, panels * NR), dtype)
    expected[:, :nc] = block
    np.testing.assert_array_equal(bp[:, :kc], expected.reshape(kc, panels, NR).transpose(1, 0, 2))
    assert np.isnan(bp[:, kc:]).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["rows", "columns", "strided"])
@pytest.mark.parametrize("mc, kc", [(29, 37), (24, 32), (12, 16), (5, 3), (36, 1)])
def test_pack_a_panels(dtype, order, mc, kc):
    """``_pack_a`` against its definition, ap[s, p, r] = A[s * MR + r, p] and zero past mc, from an offset into a
    bigger buffer: a row-major A (full and short panels through ``_transpose_panel``, the steps past the last
    whole vector element by element), a column-major one and one with neither stride 1. The panels fill their
    buffer exactly, which lies between NaN guards that no store may touch."""
    from nbops.cpu.linear import MR, _pack_a

    flat, off, sm, sk, block = _block_in_buffer(mc, kc, order, dtype, 12)
    panels = -(-mc // MR)
    guarded = np.full(panels * kc * MR + 64, np.nan, dtype)
    ap = guarded[32:-32].reshape(panels, kc, MR)
    _pack_a(ap, flat, off, sm, sk, mc, kc)
    expected = np.zeros((panels * MR, kc), dtype)
    expected[:mc] = block
    np.testing.assert_array_equal(ap, expected.reshape(panels, MR, kc).transpose(0, 2, 1))
    assert np.isnan(guarded[:32]).all() and np.isnan(guarded[-32:]).all()


def test_tiles_fill_threads():
    from nbops.cpu.linear import _tiles

    assert _tiles(1, 1024, 1024, 32, 2) == (2, 1)
    assert _tiles(1, 1024, 2048, 32, 2) == (2, 1)
    assert _tiles(1, 128, 4096, 32, 2) == (1, 2)
    assert _tiles(1, 512, 512, 32, 2, (512, 1)) == (1, 2)  # N parts read A's rows (2 KiB apart) in place
    assert _tiles(1, 1024, 1024, 32, 2, (1024, 1)) == (2, 1)  # ... but pack rows 4 KiB apart
    assert _tiles(1, 1024, 256, 32, 2, (1024, 1)) == (1, 2)  # ... except in parts of at most 4 panels
    assert _tiles(3, 64, 64, 32, 2) in {(1, 2), (2, 1)}
    assert _tiles(64, 128, 128, 32, 2) == (1, 1)
    assert _tiles(1, 8192, 64, 32, 2) == (2, 1)
    assert _tiles(1, 1, 1, 32, 2) == (1, 1)


# ---- errors: the right exception type, the op's name, both shapes ----

ERROR_CASES = [
    (nbops.mm, (make((2, 3)), make((4, 5))), {}, ValueError, r"mm\(\): mat1 and mat2 shapes cannot be multiplied "
                                                             r"\(2x3 and 4x5\)"),
    (nbops.mm, (make((3,)), make((3, 4))), {}, ValueError, r"mm\(\).*'input' to be 2-D"),
    (nbops.matmul, (make((2, 3)), make((4, 5))), {}, ValueError, r"matmul\(\).*\(2x3 and 4x5\)"),
    (nbops.matmul, (make(()), make((3,))), {}, ValueError, r"matmul\(\).*at least 1D.*0D and 1D"),
    (nbops.matmul, (make((3,)), make((4,))), {}, ValueError, r"matmul\(\).*\[3\].*\[4\]"),
    (nbops.matmul, (make((2, 3, 4)), make((3, 4, 6))), {}, ValueError, r"matmul\(\).*\(2, 3, 4\)|matmul\(\).*2.*3"),
    (nbops.matmul, (make((2, 3)), make((3, 4), np.float64)), {}, TypeError, r"matmul\(\).*same dtype"),
    (nbops.matmul, (make((2, 3)).astype(np.float16), make((3, 4)).astype(np.float16)), {}, TypeError,
     r"matmul\(\).*float16"),
    (nbops.matmul, (np.ones((2, 3), bool), np.ones((3, 4), bool)), {}, TypeError, r"matmul\(\).*bool"),
    (nbops.matmul, ([[1.0]], make((1, 1))), {}, TypeError, r"matmul\(\).*'input'"),
    (nbops.bmm, (make((2, 3, 4)), make((3, 4, 6))), {}, ValueError, r"bmm\(\).*\(2x3x4 and 3x4x6\)"),
    (nbops.bmm, (make((3, 4)), make((3, 4, 6))), {}, ValueError, r"bmm\(\).*3-D"),
    (nbops.linear, (make((2, 3)), make((4, 5))), {}, ValueError, r"linear\(\).*\(2x3 and 5x4\)"),
    (nbops.linear, (make((2, 3)), make((4, 3)), make((5,))), {}, ValueError, r"linear\(\).*'bias'"),
    (nbops.linear, (make((2, 3)), make((1, 4, 3))), {}, ValueError, r"linear\(\).*'weight'"),
    (nbops.linear, (make(()), make((4, 3))), {}, ValueError, r"linear\(\).*'input'"),
    (nbops.addmm, (make((3, 3)), make((2, 3)), make((3, 4))), {}, ValueError, r"addmm\(\).*'input'.*\(2, 4\)"),
    (nbops.addmm, (make((2, 4)), make((2, 3)), make((3, 4))), {"beta": "1"}, TypeError, r"addmm\(\).*'beta'"),
    (nbops.addmm, (make((2, 4)), make((2, 3)), make((3, 4))), {"alpha": True}, TypeError, r"addmm\(\).*'alpha'"),
    (nbops.baddbmm, (make((3, 1, 4)), make((2, 2, 3)), make((2, 3, 4))), {}, ValueError, r"baddbmm\(\).*'input'"),
    (nbops.mm, (make((2, 3)), make((3, 4))), {"out": np.zeros((2, 5), np.float32)}, ValueError, r"mm\(\).*'out'"),
]


@pytest.mark.parametrize("fn, args, kwargs, exc, match", ERROR_CASES)
def test_errors(fn, args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)


@pytest.mark.parametrize("act", ["relu", "gelu"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_act_is_linear_then_the_activation(act, dtype):
    """``_linear_act`` (the activation in the GEMM's epilogue) against linear and then the activation, bit for bit:
    a product small enough for ``_matmul_small`` (its own pass), a serial one, parallel ones over several K blocks
    (only the last applies it) with ragged and odd column counts (the row halves' tail), N = 1, no bias, NaN and
    inf among the inputs, and operands off the fast path (the two ops)."""
    from nbops.ops.linear import _linear_act

    after = getattr(nbops, act)
    shapes = [((3, 4), 5), ((40, 50), 37), ((2, 150, 1100), 67), ((333, 600), 129), ((64, 260), 1)]
    for i, (xs, n) in enumerate(shapes):
        x, w = make(xs, dtype, seed=20 + i), make((n, xs[-1]), dtype, seed=30 + i)
        b = make((n,), dtype, seed=40 + i) if i != 3 else None
        x.reshape(-1, xs[-1])[1, :3] = [np.nan, np.inf, -np.inf]
        fused = _linear_act(x, w, b, act)
        assert fused.shape == xs[:-1] + (n,)
        np.testing.assert_array_equal(fused, after(nbops.linear(x, w, b)))
        assert (fused > 0).any() and (fused <= 0).any() and np.isnan(fused).any()
    x, w = make((30, 20), dtype, seed=50, layout="strided"), make((9, 20), dtype, seed=51)
    np.testing.assert_array_equal(_linear_act(x, w, None, act), after(nbops.linear(x, w)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_fast_path_matches_the_general_path(dtype):
    # C-contiguous NumPy float operands skip the general path (ops/linear.py ``_fast``): the same kernel entry on the
    # same operands and thread split (serial products and, past SERIAL_MACS, parallel ones), so the results are
    # identical to a general-path call (a torch tensor in takes that path), and every call that is not plain still
    # gets the general path's checks and errors
    from nbops.ops import linear as ops

    x3, x1, x2 = make((2, 5, 7), dtype, seed=1), make((7,), dtype, seed=2), make((70, 7), dtype, seed=6)
    w, b = make((9, 7), dtype, seed=3), make((9,), dtype, seed=4)
    m = make((7, 11), dtype, seed=5)
    calls = [(nbops.linear, (x3, w, b)), (nbops.linear, (x1, w, b)), (nbops.linear, (x3, w)), (nbops.matmul, (x3, m)),
             (nbops.matmul, (x1, m)), (nbops.matmul, (x2, m)), (nbops.mm, (x2, m)),
             (nbops.matmul, (make((300, 70), dtype, seed=7), make((70, 53), dtype, seed=8))),
             (nbops.linear, (make((2, 32, 129), dtype, seed=9), make((130, 129), dtype, seed=10),
                             make((130,), dtype, seed=11)))]
    for fn, args in calls:
        assert ops._fast(fn.__name__, args[0], args[1], fn is nbops.linear, *args[2:]) is not None
        fast = fn(*args)
        general = fn(*(torch.from_numpy(a) for a in args)).numpy()
        assert fast.shape == general.shape and np.array_equal(fast, general), fn.__name__
    other = np.float32 if dtype == np.float64 else np.float64
    assert ops._fast("matmul", x2, m.astype(other)) is None and ops._fast("matmul", x2, m.T) is None
    assert ops._fast("linear", x3, w, True, b[:4]) is None and ops._fast("matmul", x2[:0], m) is None
    with pytest.raises(ValueError, match=r"matmul\(\): mat1 and mat2 shapes cannot be multiplied"):
        nbops.matmul(x2, w)
    with pytest.raises(TypeError, match=r"linear\(\)"):
        nbops.linear(x3, w.astype(other))
    assert nbops.matmul(x2[:0], m).shape == (0, 11) and nbops.linear(x3, w, b).shape == (2, 5, 9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_batched_fast_path_matches_the_general_path(dtype):
    # bmm and matmul of two equal-batch 3-D NumPy arrays skip the general path (ops/linear.py ``_fast_batched``):
    # the matmul launcher on the same operands, so identical to a general-path call; the rest keeps its checks
    from nbops.ops import linear as ops

    shapes = [((8, 8, 8), (8, 8, 8)), ((3, 5, 7), (3, 7, 11)), ((1, 13, 1), (1, 1, 4)), ((64, 40, 50), (64, 50, 30))]
    for sa, sb in shapes:
        a, b = make(sa, dtype, seed=1), make(sb, dtype, seed=2)
        assert ops._fast_batched("bmm", a, b) is not None
        for fn in (nbops.bmm, nbops.matmul):
            fast, general = fn(a, b), fn(torch.from_numpy(a), torch.from_numpy(b)).numpy()
            assert fast.dtype == dtype and fast.shape == general.shape and np.array_equal(fast, general)
    a, b = make((3, 5, 7), dtype, seed=1), make((3, 7, 11), dtype, seed=2)
    other = np.float32 if dtype == np.float64 else np.float64
    for args in [(a, b[:2]), (a, b[:, :6]), (a[:, :, ::2], b[:, :4]), (a, b.astype(other)), (a[0], b), (a, b[0]),
                 (a[:, :0], b), (a[None], b[None]), (a.astype(np.int32), b.astype(np.int32))]:
        assert ops._fast_batched("bmm", *args) is None
    with pytest.raises(ValueError, match=r"bmm\(\)"):
        nbops.bmm(a, b[:2])
    assert nbops.bmm(a[:, :0], b).shape == (3, 0, 11)
