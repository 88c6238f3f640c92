import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nbops
from nbops._shapes import conv_out_size, pair
from helpers import DTYPES, assert_same, check, make, to_numpy, to_target

# rows: (xshape, wshape, bias, kwargs, also on cuda). cuda rows keep every dim <= 32 (the simulator runs Python per
# thread); the cpu rows add the paths only the CPU kernels have (no-copy 1x1, tile tails, depthwise strides).
CONV2D = [
    ((2, 5, 11, 13), (7, 5, 3, 3), True, dict(padding=1), True),
    ((2, 5, 11, 13), (7, 5, 3, 3), False, dict(), False),
    ((2, 4, 12, 15), (9, 4, 3, 2), True, dict(stride=2, padding=(1, 2), dilation=(2, 1)), True),
    ((1, 3, 9, 17), (5, 3, 2, 4), True, dict(stride=(1, 3), padding="valid"), False),
    ((2, 6, 10, 11), (6, 6, 4, 2), False, dict(padding="same", dilation=(1, 3)), True),
    ((1, 3, 8, 8), (4, 3, 3, 3), True, dict(padding="same", dilation=2), False),
    ((2, 6, 9, 10), (8, 3, 3, 3), True, dict(groups=2, padding=1), True),
    ((2, 6, 9, 10), (6, 1, 3, 3), True, dict(groups=6, padding=1), True),
    ((2, 4, 15, 16), (8, 1, 3, 3), False, dict(groups=4, stride=2, padding=1), False),
    ((1, 5, 14, 14), (5, 1, 4, 4), True, dict(groups=5, padding="same"), False),
    ((2, 40, 9, 10), (80, 1, 3, 3), True, dict(groups=40, stride=(2, 1), padding=(1, 2)), False),
    # depthwise with output rows as wide as the input's: column-shifted copies, 2 outputs per channel, a column
    # shift of a whole row or more (dilation 4 on width 3), several chunks of planes
    ((2, 3, 20, 9), (6, 1, 3, 5), True, dict(groups=3, padding=(1, 4), dilation=(1, 2)), False),
    ((1, 2, 6, 3), (2, 1, 1, 3), True, dict(groups=2, padding=(0, 4), dilation=(1, 4)), False),
    ((3, 24, 16, 16), (24, 1, 3, 3), False, dict(groups=24, padding="same"), False),
    ((2, 16, 9, 9), (13, 16, 1, 1), True, dict(), False),
    ((2, 12, 12, 11), (5, 12, 1, 1), True, dict(), False),  # a channel reduction over 132 pixels: the tiles
    ((2, 8, 3, 3), (10, 8, 1, 1), True, dict(), True),
    # strided 1x1: a small plane (one GEMM over all images' pixels) and a large one (a GEMM per image)
    ((2, 6, 17, 16), (5, 6, 1, 1), True, dict(stride=2), False),
    ((1, 4, 40, 36), (7, 4, 1, 1), True, dict(stride=(2, 1)), False),
    ((1, 3, 30, 31), (11, 3, 7, 7), True, dict(stride=2, padding=3), False),
    ((1, 1, 6, 7), (1, 1, 6, 7), True, dict(), True),
    ((1, 1, 5, 5), (17, 1, 2, 2), False, dict(), False),
    ((1, 2, 20, 20), (3, 2, 3, 3), True, dict(stride=4, dilation=4, padding=2), True),  # taps far apart
    ((1, 1, 18, 18), (2, 1, 17, 17), True, dict(), False),
    ((0, 3, 5, 5), (4, 3, 3, 3), True, dict(padding=1), True),
    ((3, 5, 6), (4, 3, 3, 3), True, dict(padding=1), True),
]

CONV1D = [
    ((2, 5, 17), (7, 5, 3), True, dict(padding=1), True),
    ((2, 4, 40), (6, 2, 4), False, dict(stride=3, padding=2, dilation=2, groups=2), True),
    ((3, 33), (3, 1, 4), True, dict(padding="same", groups=3), False),
    ((1, 8, 50), (16, 8, 1), True, dict(), False),
    ((4, 9), (2, 4, 9), True, dict(), True),
]

CONV_T2D = [
    ((2, 5, 6, 7), (5, 3, 3, 3), True, dict(stride=2, padding=1, output_padding=1), True),
    ((2, 4, 5, 6), (4, 6, 4, 4), False, dict(stride=2, padding=1), True),
    ((1, 6, 5, 7), (6, 2, 3, 2), True, dict(stride=(3, 2), padding=(0, 1), groups=3, dilation=(2, 1)), True),
    ((2, 3, 4, 5), (3, 2, 1, 1), True, dict(stride=3), False),
    ((1, 4, 7, 7), (4, 9, 3, 3), True, dict(), False),
    ((1, 4, 5, 5), (4, 1, 3, 3), True, dict(groups=4, stride=2, output_padding=(1, 0)), False),
    ((2, 3, 6, 6), (3, 4, 5, 5), True, dict(padding=4, dilation=2, output_padding=1), False),
    ((2, 3, 3, 3), (3, 4, 3, 3), True, dict(stride=2, padding=2), False),
    ((1, 2, 3, 3), (2, 3, 17, 16), True, dict(stride=2, padding=1), False),
    ((0, 3, 4, 4), (3, 2, 3, 3), True, dict(stride=2), True),
    ((3, 4, 5), (3, 2, 3, 3), True, dict(stride=2, padding=1), True),
    # cpu: column phases through the interleave, phase grids of several tiles, odd OW (a ragged last column)
    ((2, 16, 13, 11), (16, 10, 3, 3), True, dict(stride=2, padding=1), False),
    # cpu: stride 3 (the general interleave) with padding and output padding making the phases' widths differ
    ((2, 3, 5, 4), (3, 4, 3, 4), True, dict(stride=3, padding=(1, 2), dilation=(1, 2), output_padding=(2, 1)), False),
    ((1, 3, 4, 5), (3, 2, 3, 3), False, dict(stride=(2, 1), padding=(1, 0), output_padding=(1, 0)), False),  # no buffer
    ((2, 2, 1, 1), (2, 3, 1, 1), True, dict(stride=3, output_padding=2), True),  # OW < SW: phases without taps
    ((1, 2, 3, 4), (2, 3, 3, 5), True, dict(dilation=(1, 20), padding=(0, 3)), False),  # reads 80 zeros past a plane
    # cpu: column stride 2 with one group, both column phases of a row phase in one kernel, stored interleaved:
    # row stride 3 and uneven phase widths; dilation 2 (the odd columns' phase has no taps, bias only); one input
    # row of a few pixels (partial tiles only); several chunks, OC over the 12-row panels, odd OW and no bias
    ((2, 3, 6, 5), (3, 4, 3, 3), True, dict(stride=(3, 2), padding=1, output_padding=(2, 1)), False),
    ((1, 4, 5, 6), (4, 3, 3, 3), True, dict(stride=2, dilation=2, padding=1), False),
    ((2, 5, 1, 4), (5, 3, 1, 3), True, dict(stride=(1, 2)), False),
    ((1, 8, 20, 32), (8, 40, 3, 3), False, dict(stride=2, padding=1), False),
]

CONV_T1D = [
    ((2, 6, 9), (6, 4, 3), True, dict(stride=2, padding=1, output_padding=1), True),
    ((1, 4, 12), (4, 3, 4), False, dict(stride=3, groups=2, dilation=2, output_padding=2), False),
    ((5, 7), (5, 2, 2), True, dict(stride=2), True),
]


def _params(rows):
    out = []
    for i, row in enumerate(rows):
        out.append(pytest.param("cpu", row, id=f"cpu-{i}"))
        if row[-1]:
            out.append(pytest.param("cuda", row, id=f"cuda-{i}", marks=pytest.mark.cuda))
    return out


def _run(nb_fn, t_fn, target, row, dtype, seed=0, **extra):
    xshape, wshape, bias, kwargs, _ = row
    x = make(xshape, dtype, seed)
    w = make(wshape, dtype, seed + 1)
    oc = wshape[0] if nb_fn in (nbops.conv1d, nbops.conv2d) else wshape[1] * kwargs.get("groups", 1)
    b = make((oc,), dtype, seed + 2) if bias else None
    check(nb_fn, t_fn, target, x, w, b, **kwargs, **extra)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target,row", _params(CONV2D))
def test_conv2d(target, row, dtype):
    _run(nbops.conv2d, F.conv2d, target, row, dtype)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target,row", _params(CONV1D))
def test_conv1d(target, row, dtype):
    _run(nbops.conv1d, F.conv1d, target, row, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target,row", _params(CONV_T2D))
def test_conv_transpose2d(target, row, dtype):
    _run(nbops.conv_transpose2d, F.conv_transpose2d, target, row, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target,row", _params(CONV_T1D))
def test_conv_transpose1d(target, row, dtype):
    _run(nbops.conv_transpose1d, F.conv_transpose1d, target, row, dtype)


@pytest.mark.parametrize("target", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("layout", ["transposed", "strided"])
def test_conv2d_noncontiguous(target, layout):
    x = make((2, 3, 7, 9), np.float32, 3, layout=layout)
    w = make((4, 3, 3, 3), np.float32, 4, layout=layout)
    check(nbops.conv2d, F.conv2d, target, x, w, make((4,), np.float32, 5), padding=1)
    check(nbops.conv_transpose2d, F.conv_transpose2d, target, x, make((3, 4, 3, 3), np.float32, 6, layout=layout),
          stride=2)


@pytest.mark.parametrize("target", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_conv2d_large_offset(target):
    # inputs of mean 1e4: every product is ~1e4, so float32 sums in a different order than oneDNN's differ by a few
    # ulps of the terms, not of the (much smaller) result; float64 keeps torch's default tolerance
    for dtype, tol in ((np.float32, dict(rtol=1e-4, atol=2e-1)), (np.float64, {})):
        x = make((2, 4, 9, 10), dtype, 7, offset=1e4)
        check(nbops.conv2d, F.conv2d, target, x, make((5, 4, 3, 3), dtype, 8), padding=1, **tol)
        check(nbops.conv_transpose2d, F.conv_transpose2d, target, x, make((4, 5, 3, 3), dtype, 9), stride=2, **tol)


@pytest.mark.parametrize("target", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_conv2d_nan_inf(target):
    x = make((1, 2, 8, 9), np.float32, 10)
    x[0, 0, 2, 3] = np.nan
    x[0, 1, 5, 6] = np.inf
    x[0, 1, 7, 0] = -np.inf
    w = make((3, 2, 3, 3), np.float32, 11)
    check(nbops.conv2d, F.conv2d, target, x, w, padding=1)
    check(nbops.conv_transpose2d, F.conv_transpose2d, target, x, make((2, 3, 2, 2), np.float32, 12), stride=2)


def test_conv2d_torch_tensors():
    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    out = nbops.conv2d(x, w, padding=1)
    assert isinstance(out, torch.Tensor)
    assert_same(out, F.conv2d(x, w, padding=1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_transposed_column_phases_run_in_pairs(dtype, monkeypatch):
    """With column stride 2 and one group, each row phase's two column phases run as one
    ``_conv_gemm_pair_kernel`` launch that stores them interleaved (no phase buffer, no ``_interleave_kernel``);
    grouped layers keep the buffer and the interleave. Values against torch."""
    from nbops.cpu import conv as C

    launched = []
    run = C.run_parallel
    monkeypatch.setattr(C, "run_parallel", lambda k, *a, **kw: launched.append(k) or run(k, *a, **kw))
    x, w, b = make((2, 6, 9, 11), dtype, 30), make((6, 4, 3, 3), dtype, 31), make((4,), dtype, 32)
    check(nbops.conv_transpose2d, F.conv_transpose2d, "cpu", x, w, b, stride=(3, 2), padding=1, output_padding=1)
    assert launched.count(C._conv_gemm_pair_kernel) == 3 and C._interleave_kernel not in launched
    launched.clear()
    check(nbops.conv_transpose2d, F.conv_transpose2d, "cpu", x, make((6, 2, 3, 3), dtype, 33), stride=2, groups=3)
    assert C._conv_gemm_pair_kernel not in launched and C._interleave_kernel in launched


@pytest.mark.parametrize("target", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("size", [(11, 13), (12, 14), (1, 3, 11, 13), (3, 12, 13)])
def test_conv_transpose2d_output_size(target, size):
    # the downsample -> upsample round trip: a stride-2 conv maps 11 and 12 to 6, and output_size picks the
    # output_padding that restores either, as nn.ConvTranspose2d.forward(input, output_size) does
    x = make((1, 2, 6, 7), np.float32, 13)
    if len(size) == 3:
        x = x[0]
    w = make((2, 3, 3, 3), np.float32, 14)
    layer = torch.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, bias=False)
    layer.weight.data = torch.from_numpy(w)
    ref = layer(torch.from_numpy(x), output_size=list(size)).detach()
    assert tuple(ref.shape[-2:]) == tuple(size[-2:])
    got = nbops.conv_transpose2d(to_target(x, target), to_target(w, target), stride=2, padding=1, output_size=size)
    assert_same(to_numpy(got), ref)


def test_conv_transpose1d_output_size():
    x = make((2, 3, 5), np.float64, 15)
    w = make((3, 2, 4), np.float64, 16)
    layer = torch.nn.ConvTranspose1d(3, 2, 4, stride=3, bias=False).double()
    layer.weight.data = torch.from_numpy(w)
    for n in (16, 17, 18):
        assert_same(nbops.conv_transpose1d(x, w, stride=3, output_size=[n]),
                    layer(torch.from_numpy(x), output_size=[n]).detach())


@pytest.mark.parametrize("OC,T,G", [(512, 2304, 1), (10, 7, 2), (13, 9, 1), (36, 5, 3), (1, 1, 1), (6, 0, 2)])
def test_weight_panels(OC, T, G):
    # the weight panels (serial below PARALLEL_PANEL_BYTES, parallel above: the first case) against the layout
    # spelled out in NumPy: MR-channel panels per group, zero-padded channels
    from nbops.cpu.conv import MR, PARALLEL_PANEL_BYTES, _panels

    w = make((OC, T), np.float32, 20)
    ocg = OC // G
    ns = -(-ocg // MR)
    ref = np.zeros((G, ns * MR, T), np.float32)
    ref[:, :ocg] = w.reshape(G, ocg, T)
    assert np.array_equal(_panels(w, G), ref.reshape(G, ns, MR, T).transpose(0, 1, 3, 2).reshape(-1))
    assert (ref.nbytes >= PARALLEL_PANEL_BYTES) == (OC == 512)


@pytest.mark.parametrize("H,W,SH,SW,PT,PL,WQ,extra", [
    (7, 9, 2, 2, 1, 1, 5, 3),  # column pairs (_pack_pairs): odd W, the odd column's phase first
    (6, 10, 2, 2, 0, 0, 5, 0),  # even W, no padding: both phases full, no tail
    (5, 8, 1, 2, 3, 3, 7, 9),  # PL 3: even columns to phase 1, a tail longer than a row
    (9, 11, 3, 2, 2, 2, 8, 2),  # row stride 3, PL 2
    (4, 9, 2, 2, 1, 1, 4, 1),  # WQ too narrow for the last column: the generic loop clips it
    (8, 13, 2, 3, 1, 2, 5, 4),  # column stride 3: the generic strided loop
    (5, 6, 1, 1, 2, 1, 9, 3),  # stride 1
])
def test_pack_plane_phases(H, W, SH, SW, PT, PL, WQ, extra):
    # each phase plane against the layout spelled out in NumPy: the plane zero-padded, its phase (i, j) taken
    # with steps (SH, SW), flattened to rows of WQ, zeros past the rows. dst starts as NaN, so a cell left
    # unwritten fails; with borders False only the pixels are written, over the zeros of an earlier plane. The
    # plane and the rows sit at offsets inside larger flat arrays, whose other elements must stay untouched.
    from nbops.cpu.conv import _pack_plane

    G = 5  # guard elements before and after
    for dtype in DTYPES:
        src = make((H, W), dtype, 21)
        L = (-(-(H + PT) // SH)) * WQ + extra
        rows = L // WQ
        padded = np.zeros((rows * SH, WQ * SW), dtype)
        h, w = min(H, rows * SH - PT), min(W, WQ * SW - PL)
        padded[PT:PT + h, PL:PL + w] = src[:h, :w]
        ref = np.zeros((SH * SW, L), dtype)
        for i in range(SH):
            for j in range(SW):
                ref[i * SW + j, :rows * WQ] = padded[i::SH, j::SW].reshape(-1)
        store = np.full(SH * SW * L + 2 * G, np.nan, dtype)
        flat = np.concatenate([make((G + 2,), dtype, 23), src.reshape(-1), make((G,), dtype, 24)])
        _pack_plane(store, G, L, flat, G + 2, H, W, SH, SW, PT, PL, WQ, True)
        assert np.array_equal(store[G:-G].reshape(SH * SW, L), ref)
        assert np.isnan(store[:G]).all() and np.isnan(store[-G:]).all()
        again = make((H, W), dtype, 22)
        _pack_plane(store, G, L, again, 0, H, W, SH, SW, PT, PL, WQ, False)
        padded[PT:PT + h, PL:PL + w] = again[:h, :w]
        for i in range(SH):
            for j in range(SW):
                ref[i * SW + j, :rows * WQ] = padded[i::SH, j::SW].reshape(-1)
        assert np.array_equal(store[G:-G].reshape(SH * SW, L), ref)
        assert np.isnan(store[:G]).all() and np.isnan(store[-G:]).all()


@pytest.mark.parametrize("case", [
    dict(stride=1, padding=1, groups=1, dilation=1, wshape=(6, 4, 3, 3)),
    dict(stride=(2, 1), padding=(0, 2), groups=2, dilation=(1, 2), wshape=(10, 2, 3, 2)),
    dict(stride=2, padding=1, groups=4, dilation=1, wshape=(8, 1, 3, 3)),
    dict(stride=1, padding=(2, 3), groups=4, dilation=(1, 3), wshape=(8, 1, 3, 3)),
    dict(stride=1, padding=0, groups=1, dilation=1, wshape=(9, 4, 1, 1)),
    dict(stride=1, padding=0, groups=1, dilation=1, wshape=(3, 4, 1, 1)),  # 1x1 reducing channels: the tiles
])
def test_fast_kernels_match_naive(case):
    # the cpu launcher picks the tile kernel (packed or no-copy) or the depthwise kernel; all must agree with the
    # bounds-checked oracle, for both dtypes
    from nbops.cpu.conv import _conv2d_naive
    from nbops.cpu.conv import conv2d as launcher

    for dtype in DTYPES:
        x = make((2, 4, 13, 35), dtype, 17)
        w = make(case["wshape"], dtype, 18)
        b = make((case["wshape"][0],), dtype, 19)
        s = pair("t", "s", case["stride"])
        p = pair("t", "p", case["padding"])
        d = pair("t", "d", case["dilation"])
        oh = conv_out_size(13, w.shape[2], s[0], p[0], d[0])
        ow = conv_out_size(35, w.shape[3], s[1], p[1], d[1])
        fast = np.empty((2, w.shape[0], oh, ow), dtype)
        slow = np.empty_like(fast)
        launcher(fast, x, w, b, s, (p[0], p[0], p[1], p[1]), d, case["groups"])
        _conv2d_naive(slow, x, w, b, s[0], s[1], p[0], p[1], d[0], d[1], case["groups"])
        assert_same(fast, slow, rtol=1e-5 if dtype == np.float32 else None, atol=1e-5 if dtype == np.float32 else None)


@pytest.mark.parametrize("dtype", DTYPES)
def test_depthwise_wide_twin_is_bit_for_bit(dtype):
    """``_depthwise_wide_kernel`` (512-bit vectors, DW_WIDE_PB-pixel tiles; the launcher's pick for stride-1 layers
    on AVX-512 CPUs whose LLVM tuning keeps to ymm) against ``_depthwise_kernel``: each output is the same chain of
    multiply-adds over the taps, so the two agree bit for bit whatever the tile width, here with two outputs per
    channel, a dilated 5x3 kernel, odd plane sizes and planes both shorter and longer than a wide tile; and both
    against the bounds-checked oracle."""
    from nbops.cpu import conv as C

    for shape, (M, KH, KW), (PT, PL), (DH, DW) in [((2, 3, 19, 23), (2, 5, 3), (3, 1), (2, 1)),
                                                     ((1, 4, 5, 7), (1, 3, 3), (1, 1), (1, 1))]:
        N, Cc, H, W = shape
        x = make(shape, dtype, 31)
        w = make((Cc * M, 1, KH, KW), dtype, 32)
        b = make((Cc * M,), dtype, 33)
        OH, OW = H + 2 * PT - DH * (KH - 1), W + 2 * PL - DW * (KW - 1)
        WQ, HQ = W + 2 * PL, H + 2 * PT
        toff, tpl = C._taps(KH, KW, 1, 1, DH, DW, WQ)
        L = HQ * WQ + max(C.DW_PB, C.DW_WIDE_PB)
        outs = []
        for kernel in (C._depthwise_kernel, C._depthwise_wide_kernel):
            out = np.full((N, Cc * M, OH, OW), np.nan, dtype)
            kernel(out, x, w.reshape(Cc * M, -1), b, toff, tpl, 1, 1, PT, PL, WQ, L, 3)
            outs.append(out)
        slow = np.empty_like(outs[0])
        C._conv2d_naive(slow, x, w, b, 1, 1, PT, PL, DH, DW, Cc)
        assert outs[0].tobytes() == outs[1].tobytes()
        assert_same(outs[1], slow, rtol=1e-5 if dtype == np.float32 else None,
                    atol=1e-5 if dtype == np.float32 else None)


# ---- errors: each names the op and the argument


def _x(*s):
    return np.zeros(s, np.float32)


ERRORS = [
    (nbops.conv2d, (_x(1, 3, 5, 5), _x(4, 2, 3, 3)), {}, ValueError,
     r"conv2d\(\).*expected input.*3 channels.*'weight'"),
    (nbops.conv2d, (_x(1, 4, 5, 5), _x(3, 2, 3, 3)), dict(groups=2), ValueError, r"divisible by 2.*'groups'"),
    (nbops.conv2d, (_x(1, 3, 5, 5), _x(4, 1, 3, 3)), dict(groups=2), ValueError, r"conv2d\(\).*'weight'"),
    (nbops.conv2d, (_x(1, 3, 4, 4), _x(4, 3, 7, 7)), dict(padding=1), ValueError,
     r"conv2d\(\).*Kernel size can't be greater than actual input size"),
    (nbops.conv2d, (_x(1, 3, 5, 5), _x(0, 3, 3, 3)), {}, ValueError, r"conv2d\(\).*at least 1 at dimension 0"),
    (nbops.conv2d, (_x(1, 3, 5, 5), _x(4, 3, 3, 3)), dict(stride=0), ValueError,
     r"conv2d\(\).*non-positive stride.*stride"),
    (nbops.conv2d, (_x(1, 3, 5, 5), _x(4, 3, 3, 3)), dict(stride=(1, -1)), ValueError, r"stride"),
    (nbops.conv2d, (_x(1, 3, 5, 5), _x(4, 3, 3, 3)), dict(padding=-1), ValueError,
     r"conv2d\(\).*negative padding.*padding"),
    (nbops.conv2d, (_x(1, 3, 5, 5), _x(4, 3, 3, 3)), dict(dilation=0), ValueError, r"conv2d\(\).*dilation"),
    (nbops.conv2d, (_x(1, 3, 5, 5), _x(3, 1, 3, 3)), dict(groups=0), ValueError, r"conv2d\(\).*groups"),
    (nbops.conv2d, (_x(1, 3, 5, 5), _x(4, 3, 3, 3)), dict(padding="full"), ValueError, r"Invalid padding string"),
    (nbops.conv2d, (_x(1, 3, 5, 5), _x(4, 3, 3, 3)), dict(padding="same", stride=2), ValueError,
     r"conv2d\(\): padding='same' is not supported for strided convolutions"),
    (nbops.conv2d, (_x(1, 3, 5, 5), _x(4, 3, 3, 3), _x(5)), {}, ValueError, r"conv2d\(\).*bias"),
    (nbops.conv2d, (_x(3, 5, 5), _x(4, 3, 3)), {}, ValueError, r"conv2d\(\).*'weight' to be 4-D"),
    (nbops.conv2d, (_x(5, 5), _x(4, 3, 3, 3)), {}, ValueError, r"conv2d\(\).*'input' to be 3-D or 4-D"),
    (nbops.conv2d, (np.zeros((1, 3, 5, 5), np.int32), _x(4, 3, 3, 3)), {}, TypeError, r"conv2d\(\).*'input'.*int32"),
    (nbops.conv2d, (_x(1, 3, 5, 5), np.zeros((4, 3, 3, 3))), {}, TypeError, r"conv2d\(\).*'weight'.*float64"),
    (nbops.conv2d, (_x(1, 3, 5, 5), [[1.0]]), {}, TypeError, r"conv2d\(\).*'weight'"),
    (nbops.conv1d, (_x(1, 3, 5), _x(4, 3, 7)), {}, ValueError, r"conv1d\(\).*Kernel size"),
    (nbops.conv1d, (_x(1, 3, 5), _x(4, 3, 3)), dict(stride=(1, 1)), ValueError, r"conv1d\(\).*'stride'"),
    (nbops.conv_transpose2d, (_x(1, 3, 5, 5), _x(3, 2, 3, 3)), dict(output_padding=1), ValueError,
     r"conv_transpose2d\(\): output padding must be smaller than either stride or dilation, but got "
     r"output_padding_height: 1 output_padding_width: 1 stride_height: 1 stride_width: 1 dilation_height: 1 "
     r"dilation_width: 1"),
    (nbops.conv_transpose2d, (_x(1, 3, 5, 5), _x(4, 2, 3, 3)), {}, ValueError, r"conv_transpose2d\(\).*'weight'"),
    (nbops.conv_transpose2d, (_x(1, 3, 5, 5), _x(3, 2, 3, 3)), dict(groups=2), ValueError, r"'groups'"),
    (nbops.conv_transpose2d, (_x(1, 3, 5, 5), _x(3, 2, 3, 3)), dict(stride=0), ValueError, r"stride"),
    (nbops.conv_transpose2d, (_x(1, 3, 5, 5), _x(3, 2, 3, 3)), dict(padding=-2), ValueError, r"padding"),
    (nbops.conv_transpose2d, (_x(1, 3, 5, 5), _x(3, 2, 3, 3)), dict(padding="same"), TypeError, r"padding"),
    (nbops.conv_transpose2d, (_x(1, 3, 2, 2), _x(3, 2, 3, 3)), dict(padding=3), ValueError,
     r"conv_transpose2d\(\).*Output size is too small"),
    (nbops.conv_transpose2d, (_x(1, 3, 5, 5), _x(3, 2, 3, 3)), dict(stride=2, output_size=(13, 11)), ValueError,
     r"conv_transpose2d\(\): requested an output size of \[13, 11\], but valid sizes range from \[11, 11\] to "
     r"\[12, 12\]"),
    (nbops.conv_transpose2d, (_x(1, 3, 5, 5), _x(3, 2, 3, 3)), dict(output_size=(1, 2, 3)), ValueError,
     r"output_size must have 2 or 4 elements"),
    (nbops.conv_transpose1d, (_x(1, 3, 5), _x(3, 2, 3)), dict(output_padding=2, stride=2), ValueError,
     r"conv_transpose1d\(\): output padding must be smaller"),
]


@pytest.mark.parametrize("fn,args,kwargs,exc,match", ERRORS)
def test_errors(fn, args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)


# ---- the CUDA implicit GEMMs: larger register tiles than the simulator's small problems pick, and their code


@pytest.mark.cuda
@pytest.mark.parametrize("tile", [(8, 8), (8, 4)])
def test_cuda_conv_gemm_tiles(monkeypatch, tile):
    """conv2d and the stride phases of conv_transpose2d on the float32 128-row tiles (ragged in M, N and K)."""
    from nbops.cuda import conv as C

    monkeypatch.setattr(C, "tile_for", lambda *args: tile)
    x = make((2, 3, 7, 10), np.float32, 20)
    check(nbops.conv2d, F.conv2d, "cuda", x, make((5, 3, 3, 2), np.float32, 21), make((5,), np.float32, 22),
          padding=(1, 0), dilation=(1, 2))
    check(nbops.conv_transpose2d, F.conv_transpose2d, "cuda", x, make((3, 4, 4, 4), np.float32, 23), stride=2,
          padding=1)


@pytest.mark.cuda
def test_cuda_depthwise_planes_loop(monkeypatch):
    """The depthwise kernel's blocks loop over the planes past the grid's y limit (capped at 2 here: 3 planes a
    block), with stride, dilation and asymmetric padding."""
    from nbops.cuda import conv as C

    monkeypatch.setattr(C, "MAX_PLANES", 2)
    check(nbops.conv2d, F.conv2d, "cuda", make((2, 3, 6, 7), np.float32, 24), make((3, 1, 3, 2), np.float32, 25),
          make((3,), np.float32, 26), groups=3, stride=(2, 1), padding=(1, 2), dilation=(1, 2))


def _conv_resources():
    """Every implicit-GEMM kernel compiles for sm_90 and keeps its register tile out of local memory; the tap
    table and depthwise kernels compile too."""
    from numba import from_dtype, types

    from nbops.cuda import conv as C
    from helpers import gpu_ptx

    tap = types.int64[:, ::1]
    for kernels, transposed in ((C._conv2d_kernel, False), (C._conv_transpose2d_kernel, True)):
        for (dt, tm, tn), kernel in kernels.items():
            t = from_dtype(dt)
            xt = types.Tuple((t[:, :, :, ::1], tap))
            w = types.Tuple((t[:, :, :, ::1], tap)) if transposed else t[:, ::1]
            ptx = gpu_ptx(kernel, (t[:, :, :, ::1], xt, w, t[::1], t, t, types.UniTuple(types.int64, 21)))
            assert "ld.local" not in ptx and "st.local" not in ptx, f"{dt} {tm}x{tn} conv tile uses local memory"
    i64 = types.int64
    gpu_ptx(C._taps_kernel, (i64[:, ::1],) + (i64,) * 10)
    for t in (types.float32, types.float64):
        a4 = t[:, :, :, ::1]
        gpu_ptx(C._depthwise_kernel, (a4, a4, a4, t[::1]) + (i64,) * 7 + (t,))


def test_conv_kernels_compile_without_local_memory():
    from helpers import outside_simulator

    outside_simulator(_conv_resources)


def test_flat_view_store_in_prange_is_kept():
    # numba's parallel passes must see that a flat_view aliases its array: taken for a fresh array, a store
    # through it whose value the loop never reads was dropped as dead code (one element per row, nothing written)
    from numba import njit, prange

    from nbops.cpu._util import flat_view

    @njit(parallel=True)
    def last_of_rows(a):
        R, W = a.shape
        for r in prange(R):
            row = flat_view(a, r * W, W)
            row[W - 1] = r

    a = np.full((5, 3), np.nan)
    last_of_rows(a)
    assert np.array_equal(a[:, -1], np.arange(5)) and np.isnan(a[:, :-1]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_taps_tile_into(dtype):
    # the micro-kernel reading B in place through a tap table: c[i0 + r, j0 + j] (+)= sum_p A[r, p] * b[b_at +
    # taps[p] + j], for each register-tile height the conv tiles use, rows below the tile's, unaligned offsets
    from numba import literally, njit

    from nbops.cpu.linear import MR, _row_width, _taps_tile_into

    @njit
    def tile(mr, a, b, b_at, taps, c, i0, j0, rows, accumulate):
        _taps_tile_into(literally(mr), a, 0, MR, 1, taps.shape[0], b, b_at, taps, c, i0, j0, rows, accumulate)

    b = make((700,), dtype, 50)
    NR = _row_width(b)
    taps = np.array([0, 1, 37, 5, 300, 301, 122, 9, 600 - NR], np.int64)
    T = taps.shape[0]
    a = make((T, MR), dtype, 51)  # a packed panel: A[r, p] at p * MR + r
    B = np.stack([b[7 + t:7 + t + NR] for t in taps])  # (T, NR)
    for mr in sorted({4, 8, MR} & set(range(1, MR + 1))):
        for rows, accumulate in ((mr, False), (mr - 1, True)):
            c = make((MR + 3, NR + 5), dtype, 52)
            ref = c.copy()
            prod = a.T[:rows] @ B
            ref[2:2 + rows, 3:3 + NR] = prod + (ref[2:2 + rows, 3:3 + NR] if accumulate else 0)
            tile(mr, a.reshape(-1), b, 7, taps, c, 2, 3, rows, accumulate)
            np.testing.assert_allclose(c, ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


@pytest.mark.parametrize("KH,stride", [(3, 1), (3, 2), (1, 1), (7, 2)])
def test_conv_tiles_in_place_and_copied_agree(monkeypatch, KH, stride):
    # the tile kernel reads B in place or copies it into a panel (IN_PLACE, by the launchers' rule); both run the
    # same products in the same order, so their outputs are identical
    from nbops.cpu import conv as cpu_conv

    kernels = {name: getattr(cpu_conv, name) for name in ("_conv_gemm_kernel", "_conv_image_kernel")}
    for dtype in DTYPES:
        x = make((2, 5, 23, 29), dtype, 53)
        w = make((14, 5, KH, KH), dtype, 54)
        outs = []
        for in_place in (True, False):
            for name, kernel in kernels.items():
                monkeypatch.setattr(cpu_conv, name, lambda *args, k=kernel, f=in_place: k(*args[:-1], f))
            out = np.full((2, 14, (23 + 2 - KH) // stride + 1, (29 + 2 - KH) // stride + 1), np.nan, dtype)
            cpu_conv._direct(out, x, w, np.zeros(14, dtype), (stride, stride), (1, 1, 1, 1), (1, 1), 1)
            outs.append(out)
        assert np.array_equal(outs[0], outs[1]) and not np.isnan(outs[0]).any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,threads", [(1, 1), (2, 2), (3, 2), (8, 2), (5, 1)])
def test_conv_packed_by_image_or_in_one_launch_agree(monkeypatch, dtype, N, threads):
    # a direct convolution over packed planes runs either _pack_kernel then _conv_gemm_kernel, or
    # _conv_image_kernel (each image packed and computed by one prange iteration): the same tiles over the same
    # planes, so the same values bit for bit, for every group, stride, padding and chunk split; and the rule picks
    # the image kernel where the images share out evenly
    from nbops.cpu import conv as cpu_conv

    monkeypatch.setattr(cpu_conv, "thread_count", lambda: threads)
    assert cpu_conv._by_image(N, cpu_conv.SERIAL_MACS) == (N % threads == 0 or N >= 4 * threads)
    assert cpu_conv._by_image(N, 0)
    rule = cpu_conv._by_image
    for wshape, stride, padding, groups in [((14, 5, 3, 3), (2, 2), (1, 1, 1, 1), 1),
                                            ((12, 3, 7, 7), (2, 2), (3, 3, 3, 3), 1),
                                            ((6, 2, 3, 2), (1, 2), (0, 2, 1, 0), 3),
                                            ((9, 5, 3, 3), (1, 1), (1, 1, 1, 1), 1)]:
        x = make((N, 6 if groups == 3 else wshape[1], 23, 29), dtype, 55)
        w = make(wshape, dtype, 56)
        b = make((wshape[0],), dtype, 57)
        oh = (23 + padding[0] + padding[1] - wshape[2]) // stride[0] + 1
        ow = (29 + padding[2] + padding[3] - wshape[3]) // stride[1] + 1
        outs = []
        for by_image in (True, False):
            monkeypatch.setattr(cpu_conv, "_by_image", lambda n, macs, f=by_image: f)
            monkeypatch.setattr(cpu_conv, "_chunks", lambda *args: 3)  # several chunks an image, one of them short
            out = np.full((N, wshape[0], oh, ow), np.nan, dtype)
            cpu_conv._direct(out, x, w, b, stride, padding, (1, 1), groups)
            outs.append(out)
        monkeypatch.setattr(cpu_conv, "_by_image", rule)
        assert np.array_equal(outs[0], outs[1]) and not np.isnan(outs[0]).any()
        ref = torch.nn.functional.conv2d(torch.from_numpy(np.pad(x, ((0, 0), (0, 0), padding[:2], padding[2:]))),
                                         torch.from_numpy(w), torch.from_numpy(b), stride, groups=groups).numpy()
        np.testing.assert_allclose(outs[0], ref, rtol=1e-4 if dtype == np.float32 else 1e-10,
                                   atol=1e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("group_bytes", [1, 1 << 30])
def test_conv_im2col_path(monkeypatch, dtype, group_bytes):
    # direct convolutions with large weights run as im2col and the GEMM, the images in groups whose im2col matrix
    # fits IM2COL_BYTES (one image a group, or all of them), the columns padded to whole NR panels; the values are
    # torch's, and NaN / inf propagate as in the tile kernel
    from nbops.cpu import conv as cpu_conv

    monkeypatch.setattr(cpu_conv, "IM2COL_WEIGHT_BYTES", 0)
    monkeypatch.setattr(cpu_conv, "IM2COL_BYTES", group_bytes)
    calls = []
    im2col = cpu_conv._im2col
    monkeypatch.setattr(cpu_conv, "_im2col", lambda *args: calls.append(1) or im2col(*args))
    for N, wshape, stride, padding, dilation in [(3, (13, 6, 3, 3), 2, 1, 1), (2, (7, 4, 5, 5), 1, 2, 1),
                                                 (1, (5, 3, 3, 3), (1, 2), (0, 1), 2), (2, (4, 3, 1, 1), 2, 1, 1),
                                                 (3, (6, 2, 3, 3), 1, 0, 1)]:
        size = (4, 5) if wshape[1] == 2 else (17, 21)  # 2 x 3 output pixels an image: most of a panel is padding
        x = make((N, wshape[1]) + size, dtype, 60)
        w = make(wshape, dtype, 61)
        b = make((wshape[0],), dtype, 62)
        if N == 3:
            x[1, 1, 2, 3] = np.nan
            x[2, 0, 3, 3] = np.inf
        got = nbops.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)
        ref = F.conv2d(*map(torch.from_numpy, (x, w, b)), stride=stride, padding=padding, dilation=dilation).numpy()
        assert_same(got, ref, rtol=1e-4 if dtype == np.float32 else None, atol=1e-4 if dtype == np.float32 else None)
    assert len(calls) == 5
    monkeypatch.setattr(cpu_conv, "IM2COL_WEIGHT_BYTES", 1 << 40)  # and below the threshold, the tiles
    nbops.conv2d(x, w, b, stride=2, padding=1)
    assert len(calls) == 5


def _fast_rows_match(fast_fn, rows, defaults, channels, dtype):
    """Run ``fast_fn`` (an ops/conv.py fast path) on every (public fn, nd, row) of ``rows``: it must take exactly the
    batched, non-empty rows without a padding string, and give there, bit for bit, what the general path gives (a
    torch tensor in takes it) and what the public call gives. ``channels(wshape, kwargs)`` is the bias length.
    Returns how many rows it took."""
    taken = 0
    for fn, nd, (xshape, wshape, bias, kwargs, _) in rows:
        x, w = make(xshape, dtype, 1), make(wshape, dtype, 2)
        b = make((channels(wshape, kwargs),), dtype, 3) if bias else None
        fast = fast_fn(fn.__name__, nd, x, w, b, *dict(defaults, **kwargs).values())
        plain = len(xshape) == nd + 2 and 0 not in xshape and not isinstance(kwargs.get("padding"), str)
        assert (fast is not None) == plain, (xshape, kwargs)
        if fast is None:
            continue
        taken += 1
        general = fn(*(torch.from_numpy(a) if a is not None else None for a in (x, w, b)), **kwargs).numpy()
        assert fast.dtype == general.dtype == dtype and np.array_equal(fast, general)
        assert np.array_equal(fn(x, w, b, **kwargs), fast)
    return taken


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_conv_fast_path_matches_the_general_path(dtype):
    # plain NumPy calls skip the general path (ops/conv.py ``_fast_conv``): same launcher and operands, so the values
    # equal the general path's (torch tensors in take it) bit for bit; any other call keeps the general path's checks
    from nbops.ops import conv as ops

    rows = [(nbops.conv2d, 2, r) for r in CONV2D] + [(nbops.conv1d, 1, r) for r in CONV1D]
    taken = _fast_rows_match(ops._fast_conv, rows, dict(stride=1, padding=0, dilation=1, groups=1),
                             lambda wshape, kwargs: wshape[0], dtype)
    assert taken >= 20
    x, w, b = make((1, 4, 6, 6), dtype, 1), make((6, 2, 3, 3), dtype, 2), make((6,), dtype, 3)
    other = np.float32 if dtype == np.float64 else np.float64
    for args in [(x, w, b, 1, 1, 1, 1), (x[0], w, b, 1, 1, 1, 2), (x, w, b, 1, 1, 1, True), (x, w, b, 1, 1, 1, 3),
                 (x, w, b[:5], 1, 1, 1, 2), (x, w.astype(other), b, 1, 1, 1, 2), (x, w, b, np.int64(1), 1, 1, 2),
                 (x, w, b, (1,), 1, 1, 2), (x, w, b, 0, 1, 1, 2), (x, w, b, 1, -1, 1, 2), (x, w, b, 1, 1, (1, 0), 2),
                 (x, w, b, 1, "same", 1, 2), (x[:, :, ::2], w, b, 1, 1, 1, 2), (x[:, :, :1, :1], w, b, 1, 0, 1, 2),
                 (x, w, b.astype(other), 1, 1, 1, 2), (x[:0], w, b, 1, 1, 1, 2)]:
        assert ops._fast_conv("conv2d", 2, *args) is None, args
    assert ops._fast_conv("conv2d", 2, x, w, b, [2, 1], (1, 0), [1, 2], 2).shape == (1, 6, 3, 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_conv_transpose_fast_path_matches_the_general_path(dtype):
    # as test_cpu_conv_fast_path_matches_the_general_path, for ``_fast_conv_transpose``
    from nbops.ops import conv as ops

    rows = [(nbops.conv_transpose2d, 2, r) for r in CONV_T2D] + [(nbops.conv_transpose1d, 1, r) for r in CONV_T1D]
    taken = _fast_rows_match(ops._fast_conv_transpose, rows,
                             dict(stride=1, padding=0, output_padding=0, groups=1, dilation=1),
                             lambda wshape, kwargs: wshape[1] * kwargs.get("groups", 1), dtype)
    assert taken >= 15
    x, w, b = make((1, 4, 5, 5), dtype, 1), make((4, 3, 3, 3), dtype, 2), make((6,), dtype, 3)
    other = np.float32 if dtype == np.float64 else np.float64
    tiny = make((1, 4, 1, 1), dtype, 4)
    for args in [(tiny, w, b, 2, 3, 0, 2, 1), (x, w, b, 2, 1, 2, 2, 1), (x, w, b, 1, 1, 1, 2, 1),
                 (x, w, b[:5], 2, 1, 0, 2, 1), (x[0], w, b, 2, 1, 0, 2, 1), (x, w, b, 2, 1, 0, 3, 1),
                 (x, w.astype(other), b, 2, 1, 0, 2, 1), (x, w, b, 2, 3, 0, 1, 1), (x, w, b, (2,), 1, 0, 2, 1),
                 (x, w, b, 2, 1, 0, 2, np.int32(1)), (x, w, b, 2, "same", 0, 2, 1), (x, w, b, 2, 1, -1, 2, 1),
                 (x[:, :, ::2], w, b, 2, 1, 0, 2, 1)]:
        assert ops._fast_conv_transpose("conv_transpose2d", 2, *args) is None, args
    assert ops._fast_conv_transpose("conv_transpose2d", 2, x, w, b, 2, (1, 0), (1, 0), 2, 1).shape == (1, 6, 10, 11)
