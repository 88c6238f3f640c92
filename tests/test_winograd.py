"""The CPU Winograd F(4x4, 3x3) path of conv2d (nbops/cpu/winograd.py) against torch and the naive oracle.

The rows call the Winograd launcher directly, so that small shapes (which the dispatch rule leaves to the direct
kernel) still cover every padding, odd sizes, a single image, channel counts that are not a multiple of the 16
lanes or the 8-channel register tile, tiles that run across images, and both dtypes. Weights are scaled as a
network initialises them (std 1 / sqrt(9 C)), so outputs are of order one.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nbops
from nbops.cpu import conv as cpu_conv
from helpers import DTYPES, assert_same, check, make

# float32: Winograd's transforms (constants up to 8 in A, 5 in B, 1/24 in G) round each output's products a few
# more times than a direct sum: differences from torch reach ~3e-5 on outputs of order one, so these rows use the
# bench's conv tolerance (bench/cases/conv.py, which also reports the max relative error against float64 per
# layer) instead of torch's default (1.3e-6, 1e-5). float64 keeps torch's defaults.
TOL32 = dict(rtol=1e-4, atol=1e-4)

# (N, C, OC, H, W, padding (top, bottom, left, right), bias)
ROWS = [
    (1, 16, 16, 8, 8, (1, 1, 1, 1), True),
    (2, 19, 21, 13, 11, (1, 1, 1, 1), True),  # odd sizes; C not a multiple of 16, OC not of 8
    (1, 17, 9, 9, 23, (0, 0, 0, 0), False),
    (2, 16, 24, 10, 7, (2, 2, 2, 2), True),
    (1, 20, 16, 15, 18, (0, 1, 2, 0), True),  # asymmetric, as padding='same' makes for even kernels
    (3, 33, 40, 6, 5, (1, 1, 1, 1), False),  # 2x2 tiles per image: LANES-tile steps run across images
    (1, 16, 3, 3, 3, (1, 1, 1, 1), True),
    (2, 70, 20, 30, 66, (1, 1, 1, 1), True),  # rows of 17 tiles (two vector steps), several worker items
    (2, 24, 37, 13, 11, (1, 1, 1, 1), True),  # more output channels than tiles; a ragged last channel panel
]


def _inputs(row, dtype, seed, offset=0.0):
    N, C, OC, H, W, pad, bias = row
    x = make((N, C, H, W), dtype, seed, offset=offset)
    w = make((OC, C, 3, 3), dtype, seed + 1, scale=1 / (9 * C) ** 0.5)
    b = make((OC,), dtype, seed + 2) if bias else None
    return x, w, b


def _winograd(x, w, b, pad, split=None):
    PT, PB, PL, PR = pad
    N, C, H, W = x.shape
    out = np.empty((N, w.shape[0], H + PT + PB - 2, W + PL + PR - 2), x.dtype)
    bias = np.zeros(w.shape[0], x.dtype) if b is None else b
    assert cpu_conv._winograd(out, x, w, bias, PT, PL, split)
    return out


def _torch(x, w, b, pad):
    PT, PB, PL, PR = pad
    xt = F.pad(torch.from_numpy(x), (PL, PR, PT, PB))
    return F.conv2d(xt, torch.from_numpy(w), None if b is None else torch.from_numpy(b))


@pytest.mark.parametrize("split", [False, True], ids=["per-item", "split"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("row", ROWS)
def test_winograd_matches_torch(row, dtype, split):
    # both schedules on every row: the per-item one (stored U) and the split one (U made per channel panel)
    x, w, b = _inputs(row, dtype, 20)
    tol = TOL32 if dtype == np.float32 else {}
    assert_same(_winograd(x, w, b, row[5], split), _torch(x, w, b, row[5]), **tol)


def test_winograd_matches_naive_oracle():
    row = ROWS[1]
    x, w, b = _inputs(row, np.float64, 21)
    PT, PB, PL, PR = row[5]
    ref = np.empty((x.shape[0], w.shape[0], x.shape[2] + PT + PB - 2, x.shape[3] + PL + PR - 2))
    cpu_conv._conv2d_naive(ref, x, w, b, 1, 1, PT, PL, 1, 1, 1)
    assert_same(_winograd(x, w, b, row[5]), ref)


@pytest.mark.parametrize("split", [False, True], ids=["per-item", "split"])
def test_winograd_large_offset(split):
    # inputs of mean 1e4: the transforms combine terms of ~1e4 (B's rows sum to 10 in absolute value), so float32
    # errors are a few ulps of 1e4 x 10, not of the result, as for the direct kernel (test_conv's large-offset case)
    for dtype, tol in ((np.float32, dict(rtol=1e-4, atol=2e-1)), (np.float64, {})):
        row = ROWS[3]
        x, w, b = _inputs(row, dtype, 22, offset=1e4)
        assert_same(_winograd(x, w, b, row[5], split), _torch(x, w, b, row[5]), **tol)


def test_winograd_dispatch_rule():
    assert cpu_conv._winograd_pays(8, 64, 64, 56, 56)
    assert cpu_conv._winograd_pays(8, 256, 256, 14, 14)
    assert not cpu_conv._winograd_pays(8, 16, 64, 56, 56)  # too few input channels to pay for the transforms
    assert not cpu_conv._winograd_pays(1, 64, 64, 8, 8)  # too few tiles
    assert cpu_conv._winograd_splits(8, 512, 7, 7)  # 32 tiles for 512 output channels: U made panel by panel
    assert cpu_conv._winograd_splits(32, 512, 7, 7)
    assert not cpu_conv._winograd_splits(8, 256, 14, 14)  # 128 tiles: U stored once, read per item


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_takes_winograd(dtype):
    # a layer the rule sends to Winograd, through the public function: non-contiguous input, bias, padding 1
    x = make((2, 32, 20, 18), dtype, 23, layout="transposed")
    w = make((40, 32, 3, 3), dtype, 24, scale=1 / 17)
    assert cpu_conv._winograd_pays(2, 32, 40, 20, 18)
    tol = TOL32 if dtype == np.float32 else {}
    check(nbops.conv2d, F.conv2d, "cpu", x, w, make((40,), dtype, 25), padding=1, **tol)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_conv2d_winograd_nan_inf_falls_back_to_direct():
    # Winograd spreads a NaN or inf over its whole 4x4 tile (inf * 0 = NaN in the transforms); the launcher sees
    # the non-finite output and recomputes with the direct kernel, so the NaN/inf pattern is torch's
    x = make((2, 32, 20, 20), np.float32, 26)
    x[0, 3, 5, 6] = np.nan
    x[1, 7, 0, 0] = np.inf
    x[1, 2, 19, 4] = -np.inf
    w = make((32, 32, 3, 3), np.float32, 27, scale=1 / 17)
    assert cpu_conv._winograd_pays(2, 32, 32, 20, 20)
    check(nbops.conv2d, F.conv2d, "cpu", x, w, padding=1, **TOL32)


@pytest.mark.parametrize("split", [False, True], ids=["per-item", "split"])
def test_winograd_flags_non_finite_outputs(split):
    # the launcher reports a NaN or inf anywhere in the layer (False), which sends conv2d to the direct kernel
    row = ROWS[-1]
    x, w, b = _inputs(row, np.float32, 28)
    x[1, 5, 12, 3] = np.inf
    PT, PB, PL, PR = row[5]
    out = np.empty((x.shape[0], w.shape[0], x.shape[2] + PT + PB - 2, x.shape[3] + PL + PR - 2), x.dtype)
    assert not cpu_conv._winograd(out, x, w, b, PT, PL, split)


def test_conv2d_takes_split_winograd():
    # a deep layer on a small image (ResNet's last stage) through the public function: the split schedule
    x = make((8, 32, 8, 8), np.float32, 29, layout="transposed")
    w = make((130, 32, 3, 3), np.float32, 30, scale=1 / 17)
    assert cpu_conv._winograd_pays(8, 32, 130, 8, 8) and cpu_conv._winograd_splits(8, 130, 8, 8)
    check(nbops.conv2d, F.conv2d, "cpu", x, w, make((130,), np.float32, 31), padding=1, **TOL32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_winograd_split_blocks(monkeypatch, dtype):
    # the split schedule's GEMM step in small blocks (2 channel panels a group, 16 input channels a pass), so that
    # a small layer runs several panel groups per worker, a ragged last group and pass, and M added across passes
    monkeypatch.setattr(cpu_conv, "SPLIT_PANELS", 2)
    monkeypatch.setattr(cpu_conv, "SPLIT_DEPTH", 16)
    for row in (ROWS[1], ROWS[-1], (1, 40, 75, 6, 9, (1, 1, 1, 1), True)):
        x, w, b = _inputs(row, dtype, 32)
        tol = TOL32 if dtype == np.float32 else {}
        assert_same(_winograd(x, w, b, row[5], True), _torch(x, w, b, row[5]), **tol)


# transposed convolutions whose four stride-2 phases are one 3x3 convolution (cpu_conv._phases_as_3x3), run as
# Winograd over 4 * OC channels and shuffled into place: (xshape, wshape (C, OC, K, K), padding, output_padding)
PHASE_ROWS = [
    ((2, 32, 19, 21), (32, 33, 4, 4), 1, 0),  # a decoder's 4x4 upsampling; odd sizes, OC not a multiple of MR
    ((2, 40, 19, 21), (40, 32, 4, 4), 1, 1),  # output padding: odd outputs, the last row and column cropped
    ((1, 32, 30, 17), (32, 8, 4, 4), (1, 1), (1, 0)),  # one image, output padding on one side only
    ((2, 32, 19, 21), (32, 16, 4, 4), 3, 0),  # padding 3: the window starts at the input row itself
    ((2, 48, 20, 20), (48, 16, 5, 5), 2, 1),  # 5x5: even output rows take 3 taps, odd ones 2
    ((2, 32, 18, 17), (32, 16, 6, 6), 2, 0),  # 6x6: every phase a full 3x3
]


def _phase_out(xs, ws, padding, op):
    p, o = (padding, padding) if isinstance(padding, int) else padding, (op, op) if isinstance(op, int) else op
    return [(xs[2 + d] - 1) * 2 - 2 * p[d] + ws[2] + o[d] for d in range(2)]


@pytest.mark.parametrize("row", PHASE_ROWS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_transpose2d_phases_as_winograd(row, dtype):
    xs, ws, padding, op = row
    pads = (padding, padding) if isinstance(padding, int) else padding
    assert cpu_conv._phases_as_3x3(ws[2], ws[3], (2, 2), pads, (1, 1), 1) is not None
    OH, OW = _phase_out(xs, ws, padding, op)
    assert cpu_conv._winograd_pays(xs[0], xs[1], 4 * ws[1], -(-OH // 2), -(-OW // 2))
    x = make(xs, dtype, 40, layout="transposed")
    w = make(ws, dtype, 41, scale=1 / (3 * xs[1] ** 0.5))
    tol = TOL32 if dtype == np.float32 else {}
    check(nbops.conv_transpose2d, F.conv_transpose2d, "cpu", x, w, make((ws[1],), dtype, 42), stride=2,
          padding=padding, output_padding=op, **tol)


@pytest.mark.parametrize("K,stride,padding,dilation,groups", [
    (4, (1, 1), (1, 1), (1, 1), 1),  # stride 1
    (6, (3, 3), (2, 2), (1, 1), 1),  # stride 3
    (4, (2, 1), (1, 1), (1, 1), 1),  # stride 2 one way only
    (4, (2, 2), (1, 1), (2, 2), 1),  # dilation
    (4, (2, 2), (1, 1), (1, 1), 2),  # groups
    (3, (2, 2), (1, 1), (1, 1), 1),  # a 2x2 window: as 3x3, Winograd would multiply as often as the phases do
    (4, (2, 2), (0, 0), (1, 1), 1),  # a 2x2 window
    (2, (2, 2), (0, 0), (1, 1), 1),  # one tap a phase
    (4, (2, 2), (4, 4), (1, 1), 1),  # the window starts below the input row: it would need negative padding
])
def test_phases_as_3x3_rejects(K, stride, padding, dilation, groups):
    assert cpu_conv._phases_as_3x3(K, K, stride, padding, dilation, groups) is None


@pytest.mark.parametrize("K,padding", [(4, 1), (5, 2), (6, 2), (4, 3)])
def test_phase_weights(K, padding):
    # the 3x3 weights of the four phases against the definition: output 2i + r reads input i + d through tap k
    # where d = (r + padding - k) / 2 is whole; w3[4*oc + 2*rh + rw, c, dh + th, dw + tw] = w[c, oc, kh, kw]
    w = make((5, 3, K, K), np.float64, 43)
    offs = cpu_conv._phases_as_3x3(K, K, (2, 2), (padding, padding), (1, 1), 1)
    t = -min(d for r, k, d in offs[0])
    ref = np.zeros((12, 5, 3, 3))
    for rh in range(2):
        for kh in range(K):
            for rw in range(2):
                for kw in range(K):
                    if (rh + padding - kh) % 2 == 0 and (rw + padding - kw) % 2 == 0:
                        dh, dw = (rh + padding - kh) // 2, (rw + padding - kw) // 2
                        for oc in range(3):
                            ref[4 * oc + 2 * rh + rw, :, dh + t, dw + t] = w[:, oc, kh, kw]
    taps = np.full((2, 2, 3), -1, np.int64)
    for dim in range(2):
        for r, k, d in offs[dim]:
            taps[dim, r, d + t] = k
    got = np.full((12, 5, 3, 3), np.nan)
    cpu_conv._phase_weights_kernel(got, w, taps)
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("OH,OW", [(39, 43), (40, 44), (1, 1), (2, 3), (5, 2)])
def test_shuffle2(OH, OW):
    # out[n, c, 2i + rh, 2j + rw] = comb[n, 4c + 2rh + rw, i, j], cropped to out; every output element written
    for dtype in DTYPES:
        I, J = -(-OH // 2), -(-OW // 2)
        comb = make((2, 12, I, J), dtype, 44)
        out = np.full((2, 3, OH, OW), np.nan, dtype)
        cpu_conv._shuffle2_kernel(out, comb)
        ref = comb.reshape(2, 3, 2, 2, I, J).transpose(0, 1, 4, 2, 5, 3).reshape(2, 3, 2 * I, 2 * J)
        assert np.array_equal(out, ref[:, :, :OH, :OW])


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_conv_transpose2d_phases_nan_inf_fall_back():
    # a non-finite input spreads over Winograd tiles; the launcher recomputes with the phase kernels, whose NaN/inf
    # pattern is torch's
    x = make((2, 32, 19, 21), np.float32, 45)
    x[0, 3, 5, 6] = np.nan
    x[1, 7, 0, 0] = np.inf
    w = make((32, 33, 4, 4), np.float32, 46, scale=1 / 17)
    check(nbops.conv_transpose2d, F.conv_transpose2d, "cpu", x, w, stride=2, padding=1, **TOL32)
