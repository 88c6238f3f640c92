import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nbops
from helpers import DTYPES, TARGETS, check, gpu_ptx, make, make_int, outside_simulator, to_numpy, to_target

# (index shape, weight shape)
LOOKUPS = [
    ((7,), (50, 7)),
    ((3, 4, 5), (50, 7)),
    ((), (9, 3)),  # a 0-d index gives one row
    ((4, 2), (1, 1)),
    ((0,), (50, 7)),
    ((2, 0, 3), (50, 7)),
    ((5,), (10, 0)),
    ((6, 9), (13, 32)),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("ishape,wshape", LOOKUPS)
def test_embedding(target, dtype, index_dtype, ishape, wshape):
    idx = make_int(ishape, 0, max(wshape[0], 1), dtype=index_dtype)
    check(nbops.embedding, F.embedding, target, idx, make(wshape, dtype))


@pytest.mark.parametrize("target", TARGETS)
def test_embedding_noncontiguous_and_offset(target):
    idx = make_int((6, 10), 0, 20)[:, ::2]
    w = make((20, 12), np.float32, offset=1e4, layout="transposed")
    check(nbops.embedding, F.embedding, target, idx, w)
    check(nbops.embedding, F.embedding, target, idx, make((20, 12), np.float64, layout="strided"))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("padding_idx", [0, 3, -1, -20])
def test_embedding_padding_idx(target, padding_idx):
    """padding_idx only affects gradients in torch; the forward result is the plain lookup."""
    check(nbops.embedding, F.embedding, target, make_int((4, 5), 0, 20), make((20, 6)), padding_idx=padding_idx)


def _renorm_case(target, dtype, layout, norm_type, max_norm=1.5):
    w = make((30, 8), dtype, seed=3, scale=2.0, layout=layout)
    idx = make_int((5, 6), 0, 30, seed=4)  # 30 draws from 30 rows: repeated rows
    tw = torch.from_numpy(np.array(w))
    exp = F.embedding(torch.from_numpy(idx), tw, max_norm=max_norm, norm_type=norm_type)
    w_nb = to_target(w, target)
    out = nbops.embedding(to_target(idx, target), w_nb, max_norm=max_norm, norm_type=norm_type)
    torch.testing.assert_close(torch.from_numpy(to_numpy(out)), exp)
    torch.testing.assert_close(torch.from_numpy(np.array(to_numpy(w_nb))), tw)  # weight renormalised in place
    return tw


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf"), 3.0, 0.5])
def test_embedding_max_norm(target, dtype, norm_type):
    tw = _renorm_case(target, dtype, "contiguous", norm_type)
    rows = torch.unique(torch.from_numpy(make_int((5, 6), 0, 30, seed=4)))
    assert (tw[rows].norm(norm_type, dim=1) <= 1.5 + 1e-5).all()


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("layout", ["transposed", "strided"])
def test_embedding_max_norm_noncontiguous_weight(target, layout):
    _renorm_case(target, np.float32, layout, 2.0)


def test_embedding_torch_tensors_in_place():
    w = torch.from_numpy(make((10, 4), scale=3.0))
    w_ref = w.clone()
    idx = torch.tensor([[1, 1, 7]])
    out = nbops.embedding(idx, w, max_norm=1.0)
    exp = F.embedding(idx, w_ref, max_norm=1.0)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, exp)
    torch.testing.assert_close(w, w_ref)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("bad", [[0, 50], [-1, 3], [2**40]])
def test_embedding_out_of_range(target, bad):
    w = make((50, 7))
    w_nb = to_target(w.copy(), target)
    with pytest.raises(IndexError, match="embedding.*index out of range"):
        nbops.embedding(to_target(np.array(bad), target), w_nb, max_norm=0.1)
    np.testing.assert_array_equal(to_numpy(w_nb), w)  # nothing renormalised when the check fails



@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_fast_path_matches_the_general_path(dtype):
    # plain NumPy lookups skip the general path (ops/embedding.py ``_fast_embedding``): same launcher and operands, so
    # the values equal the general path's (torch tensors in take it) bit for bit; any other call keeps its checks
    from nbops.ops import embedding as ops

    for index_dtype in (np.int32, np.int64):
        for ishape, wshape in LOOKUPS:
            idx, w = make_int(ishape, 0, max(wshape[0], 1), dtype=index_dtype), make(wshape, dtype)
            fast = ops._fast_embedding(idx, w, None, None)
            assert (fast is not None) == (idx.size > 0), ishape
            if fast is not None:
                general = nbops.embedding(torch.from_numpy(idx), torch.from_numpy(w)).numpy()
                assert fast.dtype == dtype and fast.shape == general.shape and np.array_equal(fast, general)
    idx, w = make_int((3, 4), 0, 50), make((50, 7), dtype)
    for args in [(idx, w, None, 1.0), (idx, w, 50, None), (idx, w, np.int64(1), None), (idx, w, True, None),
                 (idx[:, ::2], w, None, None), (idx.astype(np.int16), w, None, None), (idx, w[:, ::2], None, None),
                 (idx, w.astype(np.float16), None, None), (idx.tolist(), w, None, None), (idx, w[None], None, None),
                 (np.array([[0, 50]]), w, None, None), (np.array([-1]), w, None, None)]:
        assert ops._fast_embedding(*args) is None
    assert ops._fast_embedding(idx, w, -50, None).shape == (3, 4, 7)
    with pytest.raises(IndexError, match=r"embedding\(\): index out of range in self: got index 50"):
        nbops.embedding(np.array([3, 50], np.int32), w)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_embedding_long_rows(dtype):
    """Rows of 300 values: the row-copy kernel's four-load main loop and its tail (32 threads along a row)."""
    idx = make_int((2, 3), 0, 7)
    check(nbops.embedding, F.embedding, "cuda", idx, make((7, 300), dtype))


def _compile_embedding_kernel():
    from numba import types

    from nbops.cuda import embedding as K

    for dt in (types.float32, types.float64):
        a2 = types.Array(dt, 2, "C")
        ptx = gpu_ptx(K._embedding_kernel, (a2, types.Array(types.int64, 1, "C"), a2))
        assert "ld.local" not in ptx and "st.local" not in ptx


@pytest.mark.cuda
def test_cuda_embedding_kernel_compiles_without_local_memory():
    outside_simulator(_compile_embedding_kernel)


ERRORS = [
    (make((3,)), make((10, 4)), {}, TypeError, "embedding.*int32 or int64"),
    (make_int((3,), 0, 5, dtype=np.int16), make((10, 4)), {}, TypeError, "embedding.*int32 or int64"),
    (make_int((3,), 0, 5), make((10,)), {}, ValueError, "embedding.*'weight' must be 2-D"),
    (make_int((3,), 0, 5), make((2, 3, 4)), {}, ValueError, "embedding.*'weight' must be 2-D"),
    (make_int((3,), 0, 5), make_int((10, 4), 0, 3), {}, TypeError, "embedding.*weight.*dtype"),
    (make_int((3,), 0, 5), make((10, 4)), dict(padding_idx=10), ValueError, "embedding.*Padding_idx"),
    (make_int((3,), 0, 5), make((10, 4)), dict(padding_idx=-11), ValueError, "embedding.*Padding_idx"),
    (make_int((3,), 0, 5), make((10, 4)), dict(max_norm="1"), TypeError, "embedding.*max_norm"),
    ([1, 2], make((10, 4)), {}, TypeError, "embedding.*input"),
    (make_int((3,), 0, 5), None, {}, TypeError, "embedding.*weight"),
]


@pytest.mark.parametrize("idx,w,kw,exc,match", ERRORS)
def test_embedding_errors(idx, w, kw, exc, match):
    with pytest.raises(exc, match=match):
        nbops.embedding(idx, w, **kw)
