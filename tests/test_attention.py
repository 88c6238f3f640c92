"""The fused CPU attention kernel (nbops/cpu/attention.py) behind MultiheadAttention, against torch's
scaled_dot_product_attention and the float64 oracle; and the composed path other targets take."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nbops.cpu import attention as cpu_attention
from nbops.models import MultiheadAttention
from nbops.ops.linear import _attention
from helpers import DTYPES, TARGETS, assert_same, make, to_numpy, to_target

# (A, H, L, S, D, E): odd sizes; L not a multiple of the 12-row blocks, S of the 32-key tiles, E ragged (33, 80:
# edge tiles) or whole 32-column tiles read in place (64); size-1 everything; one item (split into query runs)
ROWS = [
    (2, 3, 13, 33, 64, 64),
    (1, 2, 25, 7, 3, 4),
    (2, 1, 40, 70, 20, 33),
    (1, 1, 1, 1, 1, 1),
    (1, 1, 97, 50, 32, 80),
    (3, 4, 12, 32, 16, 32),
]


def _torch(q, k, v, scale):
    return F.scaled_dot_product_attention(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v), scale=scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("row", ROWS)
def test_attention_matches_torch(row, dtype):
    A, H, L, S, D, E = row
    q, k, v = (make((A, H, n, d), dtype, seed) for n, d, seed in ((L, D, 1), (S, D, 2), (S, E, 3)))
    scale = 1 / np.sqrt(D)
    assert_same(_attention(q, k, v, scale), _torch(q, k, v, scale))


def test_attention_matches_the_oracle():
    A, H, L, S, D, E = ROWS[2]
    q, k, v = (make((A * H, n, d), np.float64, seed) for n, d, seed in ((L, D, 4), (S, D, 5), (S, E, 6)))
    ref = np.empty((A * H, L, E))
    cpu_attention._attention_naive(ref, q, k, v, 0.3)
    assert_same(_attention(q, k, v, 0.3), ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_strided_heads(dtype):
    # the heads of a projection: (N, L, H, D) transposed to (N, H, L, D), read in place; and a transposed key
    N, L, H, D = 2, 19, 3, 32
    q = make((N, L, H, D), dtype, 7).transpose(0, 2, 1, 3)
    k = make((N, H, D, L), dtype, 8).transpose(0, 1, 3, 2)
    v = make((N, L, H, D), dtype, 9, layout="strided").transpose(0, 2, 1, 3)
    assert not (q.flags.c_contiguous or k.flags.c_contiguous or v.flags.c_contiguous)
    assert_same(_attention(q, k, v, 0.2), _torch(q, k, v, 0.2))


def test_attention_batch_dims_and_large_offset():
    # one and three batch dims (folded into one); values of mean 1e4, whose outputs are averages of ~1e4
    q, k = make((5, 9, 16), np.float32, 10), make((5, 11, 16), np.float32, 11)
    v = make((5, 11, 24), np.float32, 12, offset=1e4)
    assert_same(_attention(q, k, v, 0.25), _torch(q, k, v, 0.25), rtol=1e-5, atol=2e-2)
    q4, k4, v4 = (x.reshape((1, 5, 1) + x.shape[-2:]) for x in (q, k, v))
    assert _attention(q4, k4, v4, 0.25).shape == (1, 5, 1, 9, 24)
    assert_same(_attention(q4, k4, v4, 0.25), _torch(q4, k4, v4, 0.25), rtol=1e-5, atol=2e-2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("row", ROWS)
def test_attention_merged_heads_are_the_heads_side_by_side(row, dtype):
    """``merged``: the (N, L, H * E) layout written by the kernel itself (ragged E through the edge buffer, ragged
    L through the row count), bit for bit the (N, H, L, E) result transposed; strided (projection) heads too."""
    A, H, L, S, D, E = row
    q, k, v = (make((A, H, n, d), dtype, seed) for n, d, seed in ((L, D, 31), (S, D, 32), (S, E, 33)))
    out = _attention(q, k, v, 0.3, merged=True)
    plain = _attention(q, k, v, 0.3)
    assert out.shape == (A, L, H * E) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, plain.transpose(0, 2, 1, 3).reshape(A, L, H * E))
    assert_same(out, _torch(q, k, v, 0.3).transpose(1, 2).reshape(A, L, H * E))
    qs = make((A, L, H, D), dtype, 34).transpose(0, 2, 1, 3)
    np.testing.assert_array_equal(_attention(qs, k, v, 0.3, merged=True),
                                  _attention(qs, k, v, 0.3).transpose(0, 2, 1, 3).reshape(A, L, H * E))


def test_attention_merged_needs_heads():
    q = make((2, 3, 4), np.float32, 35)
    with pytest.raises(ValueError, match=r"attention\(\): merged heads need 4-D inputs"):
        _attention(q, q, q, 0.5, merged=True)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_attention_nan_and_inf_rows():
    # a NaN score poisons its row, as in torch's softmax (and in the unfused chain); +inf too (inf - inf). torch's
    # scaled_dot_product_attention itself returns zeros for a NaN query row, so the reference is the chain
    q, k, v = make((1, 2, 4, 8), np.float32, 13), make((1, 2, 6, 8), np.float32, 14), make((1, 2, 6, 8),
                                                                                          np.float32, 15)
    q[0, 0, 1, 3] = np.nan
    k[0, 1, 2, 0] = np.inf
    qt, kt, vt = (torch.from_numpy(x) for x in (q, k, v))
    assert_same(_attention(q, k, v, 0.5), torch.softmax(qt @ kt.transpose(-2, -1) * 0.5, -1) @ vt)


@pytest.mark.parametrize("target", TARGETS)
def test_attention_empty_and_targets(target):
    # an empty query gives an empty result; other targets compose matmul, softmax and matmul
    q, k, v = make((2, 0, 4), np.float32, 16), make((2, 3, 4), np.float32, 17), make((2, 3, 5), np.float32, 18)
    assert to_numpy(_attention(to_target(q, target), to_target(k, target), to_target(v, target), 0.5)).shape == \
        (2, 0, 5)
    q = make((2, 3, 4), np.float32, 19)
    out = _attention(to_target(q, target), to_target(k, target), to_target(v, target), 0.5)
    assert_same(to_numpy(out), _torch(q, k, v, 0.5))
    q4, k4, v4 = (x.reshape((1,) + x.shape) for x in (q, k, v))
    out = _attention(to_target(q4, target), to_target(k4, target), to_target(v4, target), 0.5, merged=True)
    assert_same(to_numpy(out), _torch(q4, k4, v4, 0.5).transpose(1, 2).reshape(1, 3, 10))


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention_without_weights_takes_the_fused_path(batch_first, monkeypatch):
    t = torch.nn.MultiheadAttention(32, 4, batch_first=batch_first).eval()
    n = MultiheadAttention(32, 4, batch_first=batch_first)
    n.load_state_dict(t.state_dict())
    n.eval()
    calls = []
    fused = cpu_attention.attention
    monkeypatch.setattr(cpu_attention, "attention", lambda *a, **kw: calls.append(1) or fused(*a, **kw))
    import nbops._dispatch as dispatch
    monkeypatch.setitem(dispatch._LAUNCHERS, ("attention", "cpu"), cpu_attention.attention)
    x = make((3, 10, 32) if batch_first else (10, 3, 32), np.float32, 20)
    with torch.no_grad():
        expected, _ = t(torch.from_numpy(x), torch.from_numpy(x), torch.from_numpy(x), need_weights=False)
    out, weights = n(x, x, x, need_weights=False)
    assert weights is None and calls
    assert_same(out, expected, rtol=1e-5, atol=1e-5)
