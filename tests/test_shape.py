"""Parity of the shape family with torch: shapes, values and dtypes, view-ness (a result shares the input's memory
exactly when torch's does), torch-tensor round trips, and errors. Every case runs on cpu and on the CUDA
simulator (shapes stay tiny)."""

import numpy as np
import pytest
import torch

import nbops
from helpers import TARGETS, check, gpu_ptx, make, make_int, outside_simulator, to_numpy, to_target

ALL_DTYPES = [np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_]


def _data(shape, dtype, seed=0):
    x = make(shape, np.float64, seed) * 5
    return np.asarray(x > 0 if dtype == np.bool_ else x.astype(dtype))


def _torch_like(x):
    """A CPU torch tensor with ``x``'s values, shape and strides (over a copy of ``x``'s base array)."""
    root = x
    while isinstance(root.base, np.ndarray):
        root = root.base
    assert root.flags.c_contiguous
    flat = torch.from_numpy(root.copy()).reshape(-1)
    offset = (x.__array_interface__["data"][0] - root.__array_interface__["data"][0]) // x.itemsize
    return torch.as_strided(flat, x.shape, tuple(st // x.itemsize for st in x.strides), offset)


def _extent(a):
    """(first byte address, one past the last) of a host or device array."""
    if isinstance(a, np.ndarray):
        ptr = a.__array_interface__["data"][0]
    elif hasattr(a, "_ary"):  # simulator device array
        return _extent(a._ary)
    else:
        ptr = a.__cuda_array_interface__["data"][0]
    if any(s == 0 for s in a.shape):
        return ptr, ptr
    lo = ptr + sum(st * (n - 1) for st, n in zip(a.strides, a.shape) if st < 0)
    hi = ptr + sum(st * (n - 1) for st, n in zip(a.strides, a.shape) if st > 0) + a.dtype.itemsize
    return lo, hi


def _shares(a, b):
    (a0, a1), (b0, b1) = _extent(a), _extent(b)
    return a0 < b1 and b0 < a1


def check_view(nb_fn, torch_fn, target, x, *args, **kwargs):
    """check() values against torch, then that nbops' result aliases ``x`` exactly when torch's aliases its
    input (tuples: piece by piece)."""
    check(nb_fn, torch_fn, target, x, *args, **kwargs)
    xt = _torch_like(x)
    expected = torch_fn(xt, *args, **kwargs)
    xd = to_target(x, target)
    actual = nb_fn(xd, *args, **kwargs)
    pairs = zip(actual, expected) if isinstance(expected, tuple) else [(actual, expected)]
    for a, e in pairs:
        if e.numel() and xt.numel():
            torch_view = e.untyped_storage().data_ptr() == xt.untyped_storage().data_ptr()
            assert _shares(a, xd) == torch_view, f"view-ness differs from torch (torch view: {torch_view})"


VIEW_CASES = [  # (nbops fn, torch fn, input shape, layout, args)
    (nbops.reshape, torch.reshape, (2, 3, 4), "contiguous", ((4, -1),)),
    (nbops.reshape, torch.reshape, (2, 3, 4), "contiguous", ((24,),)),
    (nbops.reshape, torch.reshape, (3, 4), "transposed", ((12,),)),
    (nbops.reshape, torch.reshape, (3, 4), "transposed", ((4, 1, 3),)),
    (nbops.reshape, torch.reshape, (3, 8), "strided", ((4, 6),)),
    (nbops.reshape, torch.reshape, (0, 3), "contiguous", ((3, 0),)),
    (nbops.reshape, torch.reshape, (), "contiguous", ((1, 1),)),
    (nbops.reshape, torch.reshape, (1,), "contiguous", ((),)),
    (lambda x, *s: nbops.view(x, *s), lambda x, *s: x.view(*s), (2, 3, 4), "contiguous", (6, -1)),
    (lambda x, *s: nbops.view(x, *s), lambda x, *s: x.view(*s), (2, 3, 4), "contiguous", ((3, 2, 2, 2),)),
    (lambda x, *s: nbops.view(x, *s), lambda x, *s: x.view(*s), (3, 4), "transposed", (3, 1, 4)),
    (lambda x, *s: nbops.view(x, *s), lambda x, *s: x.view(*s), (4, 6), "strided", (24,)),
    (lambda x, *s: nbops.view(x, *s), lambda x, *s: x.view(*s), (4, 6), "strided", (2, 2, 6)),
    (nbops.permute, torch.permute, (2, 3, 4), "contiguous", ((2, 0, 1),)),
    (nbops.permute, torch.permute, (2, 3, 4), "contiguous", ((-1, 1, 0),)),
    (nbops.permute, torch.permute, (3, 5), "transposed", ((1, 0),)),
    (nbops.permute, torch.permute, (), "contiguous", ((),)),
    (nbops.transpose, torch.transpose, (2, 3, 4), "contiguous", (0, 2)),
    (nbops.transpose, torch.transpose, (3, 4), "strided", (-1, -2)),
    (nbops.transpose, torch.transpose, (), "contiguous", (0, -1)),
    (nbops.squeeze, torch.squeeze, (1, 3, 1, 2), "contiguous", ()),
    (nbops.squeeze, torch.squeeze, (1, 3, 1, 2), "contiguous", (2,)),
    (nbops.squeeze, torch.squeeze, (1, 3, 1, 2), "contiguous", ((0, 1, -2),)),
    (nbops.squeeze, torch.squeeze, (3, 1), "transposed", (1,)),
    (nbops.squeeze, torch.squeeze, (), "contiguous", (0,)),
    (nbops.unsqueeze, torch.unsqueeze, (3, 4), "contiguous", (0,)),
    (nbops.unsqueeze, torch.unsqueeze, (3, 4), "transposed", (2,)),
    (nbops.unsqueeze, torch.unsqueeze, (3, 4), "strided", (-2,)),
    (nbops.unsqueeze, torch.unsqueeze, (), "contiguous", (0,)),
    (lambda x, *s: nbops.expand(x, *s), lambda x, *s: x.expand(*s), (3, 1), "contiguous", (3, 5)),
    (lambda x, *s: nbops.expand(x, *s), lambda x, *s: x.expand(*s), (3, 1), "contiguous", ((2, -1, 4),)),
    (lambda x, *s: nbops.expand(x, *s), lambda x, *s: x.expand(*s), (1, 4), "strided", (2, 3, 4)),
    (lambda x, *s: nbops.expand(x, *s), lambda x, *s: x.expand(*s), (), "contiguous", (4,)),
    (lambda x, *s: nbops.expand(x, *s), lambda x, *s: x.expand(*s), (3, 1), "contiguous", (3, 0)),
    (nbops.flatten, torch.flatten, (2, 3, 4), "contiguous", ()),
    (nbops.flatten, torch.flatten, (2, 3, 4), "contiguous", (1,)),
    (nbops.flatten, torch.flatten, (2, 3, 4), "contiguous", (0, 1)),
    (nbops.flatten, torch.flatten, (2, 3, 4), "transposed", (1,)),
    (nbops.flatten, torch.flatten, (2, 3, 4), "transposed", (0, 1)),
    (nbops.flatten, torch.flatten, (2, 3), "contiguous", (1, 1)),
    (nbops.flatten, torch.flatten, (), "contiguous", ()),
    (nbops.split, torch.split, (5, 3), "contiguous", (2,)),
    (nbops.split, torch.split, (5, 3), "contiguous", ([1, 0, 2], 1)),
    (nbops.split, torch.split, (4, 6), "transposed", (4, -1)),
    (nbops.split, torch.split, (0, 3), "contiguous", (2,)),
    (nbops.split, torch.split, (3, 0), "contiguous", (2,)),
    (nbops.chunk, torch.chunk, (5, 3), "contiguous", (3,)),
    (nbops.chunk, torch.chunk, (6, 3), "contiguous", (4,)),
    (nbops.chunk, torch.chunk, (2, 7), "strided", (3, 1)),
    (nbops.chunk, torch.chunk, (0, 3), "contiguous", (3,)),
    (nbops.narrow, torch.narrow, (5, 4), "contiguous", (0, 1, 3)),
    (nbops.narrow, torch.narrow, (5, 4), "transposed", (1, -2, 2)),
    (nbops.narrow, torch.narrow, (5, 4), "contiguous", (-1, 4, 0)),
    (nbops.narrow, torch.narrow, (0, 3), "contiguous", (1, 1, 2)),
    (nbops.contiguous, lambda x: x.contiguous(), (3, 4), "contiguous", ()),
    (nbops.contiguous, lambda x: x.contiguous(), (3, 4), "transposed", ()),
    (nbops.contiguous, lambda x: x.contiguous(), (3, 4), "strided", ()),
]


def _case_id(c):
    return f"{getattr(c[1], '__name__', 'method')}-{c[2]}-{c[3]}-{c[4]}"


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", VIEW_CASES, ids=[_case_id(c) for c in VIEW_CASES])
def test_view_ops(case, target):
    nb_fn, t_fn, shape, layout, args = case
    check_view(nb_fn, t_fn, target, make(shape, np.float32, 1, layout=layout), *args)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
def test_dtypes(dtype, target):
    x = _data((3, 4), dtype, 1)
    check_view(nbops.reshape, torch.reshape, target, x, (4, 3))
    check_view(nbops.permute, torch.permute, target, x, (1, 0))
    check_view(lambda a, *s: nbops.expand(a, *s), lambda a, *s: a.expand(*s), target, x[:, :1], 3, 5)
    check_view(nbops.contiguous, lambda a: a.contiguous(), target, _data((4, 3), dtype, 2).T)
    check_view(nbops.reshape, torch.reshape, target, _data((4, 3), dtype, 3).T, (-1,))
    check(nbops.cat, torch.cat, target, [x, _data((2, 4), dtype, 4)])
    check(nbops.stack, torch.stack, target, [x, _data((3, 4), dtype, 5)], 1)


CAT_CASES = [  # (shapes, dim)
    ([(2, 3), (4, 3)], 0),
    ([(2, 3), (2, 1), (2, 5)], 1),
    ([(2, 3), (2, 3)], -1),
    ([(1, 2, 3), (1, 4, 3), (1, 1, 3)], 1),
    ([(2, 3), (0, 3), (1, 3)], 0),
    ([(2, 3), (0,)], 0),
    ([(0,), (0,)], 0),
    ([(7,)], 0),
    ([(2, 0), (2, 0)], 1),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", CAT_CASES, ids=str)
def test_cat(case, target):
    shapes, dim = case
    check(nbops.cat, torch.cat, target, [make(s, np.float32, i) for i, s in enumerate(shapes)], dim)


@pytest.mark.parametrize("target", TARGETS)
def test_cat_noncontiguous_and_promotion(target):
    a = make((4, 3), np.float32, 1, layout="transposed")
    b = make((4, 2), np.float64, 2, layout="strided")
    check(nbops.cat, torch.cat, target, [a, b], 1)
    check(nbops.cat, torch.cat, target, [make_int((2, 3), 0, 5, np.int32, 3), a[:2]], 0)
    check(nbops.cat, torch.cat, target, [np.array([True, False]), np.array([3, 4], np.uint8)])
    check(nbops.cat, torch.cat, target, (make((3,), np.float32, 4), make((2,), np.float32, 5)))


def test_cpu_shape_fast_paths_match_the_general_path():
    # plain NumPy calls of cat, transpose and contiguous skip the general path (ops/shape.py): the same copies and
    # views as a general-path call (a torch tensor in takes it); the rest keeps the general path's checks
    from nbops.ops import shape as ops

    for dtype in (np.float32, np.float64, np.int8, np.int64, np.uint8, np.bool_):
        for shapes, dim in CAT_CASES + [([(3, 4, 5), (3, 2, 5)], -2), ([(2, 3, 4)] * 3, 2)]:
            xs = [make(s, np.float32, i).astype(dtype) for i, s in enumerate(shapes)]
            fast = ops._fast_cat(xs, dim)
            assert (fast is not None) == (len({x.ndim for x in xs}) == 1), shapes
            general = nbops.cat([torch.from_numpy(x) for x in xs], dim).numpy()
            got = nbops.cat(xs, dim)
            assert got.dtype == general.dtype and got.shape == general.shape and np.array_equal(got, general)
        x = make((3, 4, 5), np.float32, 7).astype(dtype)
        for d0, d1 in [(0, 1), (-1, 0), (2, 2), (1, -3)]:
            fast, general = nbops.transpose(x, d0, d1), nbops.transpose(torch.from_numpy(x), d0, d1).numpy()
            assert fast.shape == general.shape and fast.strides == general.strides and np.array_equal(fast, general)
            assert np.shares_memory(fast, x)
            fast, general = nbops.contiguous(fast), nbops.contiguous(torch.from_numpy(x).transpose(d0, d1)).numpy()
            assert fast.flags.c_contiguous and np.array_equal(fast, general)
    x = make((2, 3), np.float32, 1)
    for args in [([x, x.astype(np.float64)], 0), ([x, x[:, :2]], 0), ([x, x], 2), ([x, x], -3), ([x, x], np.int64(0)),
                 ([x, x], True), ([], 0), ((x for _ in range(2)), 0), ([x, torch.from_numpy(x)], 0), ([x[0, 0]], 0),
                 ([x.astype(np.float16)], 0), ([x, x.ravel()], 0)]:
        assert ops._fast_cat(*args) is None
    with pytest.raises(ValueError, match=r"cat\(\): sizes of arrays must match"):
        nbops.cat([x, x[:, :2]], 0)
    with pytest.raises(IndexError, match=r"transpose\(\)"):
        nbops.transpose(x, 0, 2)
    assert nbops.cat([x, x.astype(np.float64)]).dtype == np.float64 and nbops.cat((x, x), 1).shape == (2, 6)


STACK_CASES = [((3,), 0), ((3,), 1), ((3,), -1), ((2, 3), 1), ((2, 3), -3), ((), 0), ((0, 2), 1)]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", STACK_CASES, ids=str)
def test_stack(case, target):
    shape, dim = case
    xs = [make(shape, np.float32, i) for i in range(3)]
    check(nbops.stack, torch.stack, target, xs, dim)
    check(nbops.stack, torch.stack, target, xs[:1], dim)


@pytest.mark.parametrize("target", TARGETS)
def test_stack_noncontiguous_and_promotion(target):
    a = make((3, 4), np.float32, 1, layout="transposed")
    b = make((3, 4), np.float64, 2, layout="strided")
    check(nbops.stack, torch.stack, target, [a, b], 2)


@pytest.mark.parametrize("target", TARGETS)
def test_permute_then_contiguous_copy(target):
    x = make((4, 5, 6), np.float32, 1)
    xd = to_target(x, target)
    out = nbops.contiguous(nbops.permute(xd, (0, 2, 1)))
    np.testing.assert_array_equal(to_numpy(out), np.ascontiguousarray(x.transpose(0, 2, 1)))
    assert not _shares(out, xd)
    out = nbops.contiguous(nbops.expand(nbops.unsqueeze(xd[0, 0], 0), 3, 6))
    np.testing.assert_array_equal(to_numpy(out), np.broadcast_to(x[0, 0], (3, 6)))


# (shape, dims, dtype, slice of the input before permuting, whether the cpu tiled kernel copies it): transposing
# copies big enough for the tiled kernel (odd sizes leave ragged tiles), and copies that stay NumPy's.
TRANSPOSES = [
    ((5, 67, 131), (0, 2, 1), np.float32, None, True),
    ((67, 131, 5), (2, 1, 0), np.float64, None, True),
    ((4, 9, 35, 37), (0, 2, 3, 1), np.float32, None, True),
    ((4, 35, 37, 9), (0, 3, 1, 2), np.int64, None, True),
    ((6, 70, 90), (2, 0, 1), np.int32, None, True),
    ((3, 140, 2, 130), (0, 3, 2, 1), np.float32, (slice(None), slice(None, None, -1)), True),
    ((6, 70, 90), (1, 0, 2), np.int32, None, False),
    ((5, 67, 131), (0, 2, 1), np.uint8, None, False),
    ((2, 67, 131), (0, 2, 1), np.float32, (slice(None), slice(None, None, 2)), False),
]


@pytest.mark.parametrize("shape,dims,dtype,cut,tiled", TRANSPOSES)
def test_transposing_copy_cpu(shape, dims, dtype, cut, tiled, monkeypatch):
    from nbops.cpu import shape as cpu_shape

    kernel, launches = cpu_shape._transpose_kernel, []
    monkeypatch.setattr(cpu_shape, "_transpose_kernel", lambda *a: launches.append(kernel(*a)))
    x = _data(shape, dtype, seed=3)
    if dtype == np.float32:
        x = x + np.float32(1e4)
    if cut is not None:
        x = x[cut]
    out = check(lambda a: nbops.contiguous(nbops.permute(a, dims)), lambda t: t.permute(dims).contiguous(), "cpu", x)
    assert out.flags.c_contiguous
    assert (cpu_shape._transpose_view(np.empty_like(out), x.transpose(dims)) is not None) == tiled
    assert len(launches) == tiled  # the public contiguous() copies through the tiled kernel, not NumPy's loop


# (what is copied, dtype, whether _rows_kernel copies it): cat along dims 0 and 1 (every piece >= 512 KiB), a
# ragged 1-D copy over several chunks, a large-offset 2-D slice, 1-byte items, a 3-row-axis layout, a stride-0
# row, four axes that do not merge, the heads of a projection swapped with its tokens (rows of 64 and of 7 items,
# many to a task; a 5-D one), and the layouts it leaves to NumPy (a reversed axis, six axes that do not merge, a
# small copy)
ROW_COPIES = [
    ("cat0", (3, 331, 517), np.float32, True),
    ("cat1", (2, 257, 613), np.float64, True),
    ("cat0", (2, 200003), np.float32, True),
    ("slice", (900, 700), np.float64, True),
    ("slice", (1100, 1000), np.bool_, True),
    ("slice", (6, 130, 170), np.int32, True),
    ("expand", (700, 400), np.float32, True),
    ("apart", (3, 4, 5, 8000), np.float32, True),
    ("heads", (4, 101, 12, 64), np.float32, True),
    ("heads", (3, 1001, 13, 7), np.float64, True),
    ("heads", (2, 33, 9, 5, 130), np.int16, True),
    ("flip", (700, 300), np.float32, False),
    ("apart", (2, 3, 4, 5, 6, 900), np.float32, False),
    ("cat0", (2, 31, 67), np.float32, False),
]


@pytest.mark.parametrize("what,shape,dtype,rows", ROW_COPIES)
def test_row_contiguous_copy_cpu(what, shape, dtype, rows, monkeypatch):
    from nbops.cpu import shape as cpu_shape

    kernel, launches = cpu_shape._rows_kernel, []
    monkeypatch.setattr(cpu_shape, "_rows_kernel", lambda *a: launches.append(kernel(*a)))
    if what.startswith("cat"):
        d = int(what[3])
        parts = [_data(shape[1:], dtype, seed=5 + i) for i in range(shape[0])]
        check(lambda *a: nbops.cat(list(a), dim=d), lambda *a: torch.cat(a, dim=d), "cpu", *parts)
        assert len(launches) == (shape[0] if rows else 0)
        return
    big = _data(shape[:-2] + (shape[-2] + 9, shape[-1] + 9), dtype, seed=6)
    if what == "slice":  # a large offset into ``big`` and rows 9 items apart
        x = big[..., 5:5 + shape[-2], 7:7 + shape[-1]]
    elif what == "flip":
        x = big[:shape[0], :shape[1]][::-1]
    elif what == "expand":  # every row read from one source row (stride 0)
        x = np.broadcast_to(big[3:4, 2:2 + shape[1]], shape)
    elif what == "heads":  # axes 1 and 2 swapped: (N, L, H, D) read from (N, H, L, D)
        x = _data((shape[0], shape[2], shape[1]) + shape[3:], dtype, seed=6).swapaxes(1, 2)
    else:  # no two axes merge: each is cut short in its parent
        big = _data((shape[0],) + tuple(n + 1 for n in shape[1:-1]) + (shape[-1] + 2,), dtype, seed=6)
        x = big[(slice(None),) + tuple(slice(0, n) for n in shape[1:-1]) + (slice(2, 2 + shape[-1]),)]
    out = check(lambda a: nbops.contiguous(a), lambda t: t.contiguous(), "cpu", x)
    assert out.flags.c_contiguous and out.shape == shape
    assert len(launches) == rows


# (shape, dims, dtype, the CUDA kernel that copies it): the tiled transpose (ragged tiles), the grid-stride copy map,
# the 8-D fallback (a layout folding to 4 dims), a one-element and an empty copy
CUDA_COPIES = [
    ((3, 37, 40), (0, 2, 1), np.float32, "tile"),
    ((37, 40), (1, 0), np.float64, "tile"),
    ((5, 3, 33), (2, 1, 0), np.int16, "tile"),
    ((4, 6, 5), (1, 0, 2), np.float64, "map"),
    ((2, 3, 4, 5), (0, 2, 1, 3), np.int32, "fallback"),
    ((1, 1, 1), (0, 2, 1), np.float32, "map"),
    ((0, 3, 4), (0, 2, 1), np.float32, None),
]


@pytest.mark.cuda
@pytest.mark.parametrize("shape,dims,dtype,path", CUDA_COPIES)
def test_cuda_copy_paths(shape, dims, dtype, path):
    from numba import cuda

    from nbops._arrays import cuda_as_strided
    from nbops.cuda import shape as cuda_shape
    from nbops.cuda._util import collapse, elem_strides

    x = _data(shape, dtype, seed=4)
    if dtype == np.float32:
        x = x + np.float32(1e4)
    check(lambda a: nbops.contiguous(nbops.permute(a, dims)), lambda t: t.permute(dims).contiguous(), "cuda", x)
    if path is None:
        return
    dx = cuda.to_device(x)
    view = cuda_as_strided(dx, tuple(shape[d] for d in dims), tuple(dx.strides[d] for d in dims))
    out = cuda.device_array(view.shape, dtype)
    assert (cuda_shape._transposing(out, view) is not None) == (path == "tile")
    if path != "tile":
        folded, _ = collapse(view.shape, [elem_strides(out, view.shape), elem_strides(view, view.shape)])
        assert (len(folded) <= 3) == (path == "map")


@pytest.mark.cuda
def test_cuda_transpose_kernel_walks_q_and_casts():
    """The tile kernel with fewer z-blocks than Q (the grid-stride loop over q) and a cast on the store."""
    from numba import cuda

    from nbops.cuda import shape as cuda_shape

    x = _data((5, 40, 33), np.float32, seed=5)  # (Q, C, P): unit stride along P
    out = cuda.device_array((5, 33, 40), np.float64)
    kern = cuda_shape._transpose_kernel(np.dtype(np.float64))
    block = (cuda_shape.TILE, cuda_shape.TILE_ROWS)
    kern[(2, 2, 2), block](out.reshape(-1), (1320, 40, 1), cuda.to_device(x).reshape(-1), (1320, 1, 33), (5, 33, 40))
    np.testing.assert_array_equal(out.copy_to_host(), x.transpose(0, 2, 1).astype(np.float64))


def test_cpu_results_are_numpy_views():
    x = make((4, 6), np.float32, 1)
    assert nbops.view(x, 24).base is not None and np.shares_memory(nbops.view(x, 24), x)
    assert nbops.contiguous(x) is x
    assert not np.shares_memory(nbops.cat([x, x]), x)
    assert all(np.shares_memory(p, x) for p in nbops.split(x, 2, 1))


def test_torch_views_share_memory():
    t = torch.arange(12.0).reshape(3, 4)
    for r in [nbops.view(t, 4, 3), nbops.permute(t, (1, 0)), nbops.expand(t[:, :1], 3, 5), nbops.narrow(t, 1, 1, 2),
              nbops.squeeze(nbops.unsqueeze(t, 0)), nbops.reshape(t, (12,))] + list(nbops.chunk(t, 2, 1)):
        assert isinstance(r, torch.Tensor) and np.shares_memory(r.numpy(), t.numpy())
    v = nbops.transpose(t, 0, 1)
    t[0, 1] = 100.0
    assert v[1, 0] == 100.0
    c = nbops.cat([t, t], 1)
    assert isinstance(c, torch.Tensor) and c.shape == (3, 8)
    torch.testing.assert_close(nbops.reshape(t.t(), (12,)), t.t().reshape(12))


def _compile_cuda_kernels():
    """Every shape CUDA kernel compiled to PTX by NVVM for every signature its launchers can pass: copies from and
    to each supported dtype (out flat C-contiguous or 8-D strided, source 8-D strided), float16 sources into the
    float results cat and stack promote them to, and fills with a value of out's dtype, a Python int or a Python
    float; the tiled transpose and the copy map (a few pairs, a cast among them) with no local memory."""
    from numba import types

    from nbops.cuda import shape as cuda_shape

    dtypes = (types.float32, types.float64, types.int8, types.int16, types.int32, types.int64, types.uint8,
              types.boolean)
    flat, nd = (lambda dt: types.Array(dt, 1, "C")), (lambda dt: types.Array(dt, 8, "A"))
    for dst in dtypes:
        for value in (dst, types.int64, types.float64):
            gpu_ptx(cuda_shape._fill_kernel, (flat(dst), value))
        for src in dtypes:
            gpu_ptx(cuda_shape._copy_kernel, (flat(dst), nd(src)))
            gpu_ptx(cuda_shape._copy_strided_kernel, (nd(dst), nd(src), types.int64))
    for dst in (types.float32, types.float64):
        gpu_ptx(cuda_shape._copy_kernel, (flat(dst), nd(types.float16)))
        gpu_ptx(cuda_shape._copy_strided_kernel, (nd(dst), nd(types.float16), types.int64))
    s3 = types.UniTuple(types.int64, 3)
    for dst, src in ((types.float32, types.float32), (types.float64, types.float32), (types.int16, types.int16)):
        ptx = [gpu_ptx(cuda_shape._transpose_kernel(np.dtype(str(dst))), (flat(dst), s3, flat(src), s3, s3)),
               gpu_ptx(cuda_shape._COPY_MAP[0], (flat(dst), flat(src), types.int64, types.Tuple(()))),
               gpu_ptx(cuda_shape._COPY_MAP[1], (flat(dst), s3, flat(src), s3, s3, types.int64, types.Tuple(())))]
        for text in ptx:
            assert "ld.local" not in text and "st.local" not in text


def test_cuda_kernels_compile_for_gpu():
    outside_simulator(_compile_cuda_kernels)


ERRORS = [
    (lambda: nbops.reshape(make((2, 3)), (4, -1)), ValueError, "reshape"),
    (lambda: nbops.reshape(make((2, 3)), (-1, -1)), ValueError, "only one dimension"),
    (lambda: nbops.reshape(make((2, 3)), (-2, 3)), ValueError, "invalid shape"),
    (lambda: nbops.reshape(make((0, 3)), (0, -1)), ValueError, "ambiguous"),
    (lambda: nbops.reshape(make((2, 3)), (2, 3.0)), TypeError, "reshape"),
    (lambda: nbops.reshape([1, 2], (2,)), TypeError, "reshape"),
    (lambda: nbops.view(make((2, 3), layout="transposed"), 6), ValueError, "view size is not compatible"),
    (lambda: nbops.view(make((2, 3)), 3, 3), ValueError, "view"),
    (lambda: nbops.view(make((2, 3)), np.int32), NotImplementedError, "view"),
    (lambda: nbops.permute(make((2, 3)), (1, 0, 2)), ValueError, "permute"),
    (lambda: nbops.permute(make((2, 3)), (1, 1)), ValueError, "duplicate"),
    (lambda: nbops.permute(make((2, 3)), (1, 2)), IndexError, "permute"),
    (lambda: nbops.permute(make((2, 3)), (True, False)), TypeError, "dims"),
    (lambda: nbops.permute(make((2, 3)), [1.0, 0]), TypeError, "dims"),
    (lambda: nbops.permute(make((2, 3), np.float16), (1, 0)), TypeError, "float16"),
    (lambda: nbops.transpose(make((2, 3)), 0, 2), IndexError, "transpose"),
    (lambda: nbops.squeeze(make((1, 2)), 2), IndexError, "squeeze"),
    (lambda: nbops.squeeze(make((1, 2)), (0, 0)), ValueError, "squeeze"),
    (lambda: nbops.unsqueeze(make((2,)), 2), IndexError, "unsqueeze"),
    (lambda: nbops.unsqueeze(make((2,)), -3), IndexError, "unsqueeze"),
    (lambda: nbops.cat([]), ValueError, "cat"),
    (lambda: nbops.cat(make((2, 3))), TypeError, "cat"),
    (lambda: nbops.cat([make((2, 3)), make((2, 4))]), ValueError, "Expected size 3 but got size 4"),
    (lambda: nbops.cat([make((2, 3)), make((2, 3, 1))]), ValueError, "same number of dimensions"),
    (lambda: nbops.cat([make(()), make(())]), ValueError, "zero-dimensional"),
    (lambda: nbops.cat([make((2, 3))], 2), IndexError, "cat"),
    (lambda: nbops.cat([make((2,), np.float16), make((2,)).astype(np.int8)]), TypeError, "result dtype float16"),
    (lambda: nbops.cat([make((2,)), make((2,)).astype(np.complex64)]), TypeError, "complex64"),
    (lambda: nbops.cat([make((2,)), [1.0]]), TypeError, "cat"),
    (lambda: nbops.stack([make((2, 3)), make((2, 4))]), ValueError, "equal size"),
    (lambda: nbops.stack([make((2,))], 2), IndexError, "stack"),
    (lambda: nbops.stack([]), ValueError, "stack"),
    (lambda: nbops.expand(make((2, 3)), 4), ValueError, "number of sizes"),
    (lambda: nbops.expand(make((2, 3)), 2, 4), ValueError, "must match the existing size"),
    (lambda: nbops.expand(make((2, 3)), -1, 2, 3), ValueError, "leading, non-existing"),
    (lambda: nbops.flatten(make((2, 3, 4)), 2, 1), ValueError, "start_dim cannot come after end_dim"),
    (lambda: nbops.flatten(make((2, 3, 4)), 3), IndexError, "flatten"),
    (lambda: nbops.split(make((4,)), 0), ValueError, "split_size can only be 0"),
    (lambda: nbops.split(make((4,)), -1), ValueError, "non-negative"),
    (lambda: nbops.split(make((4,)), [1, 2]), ValueError, "sum exactly to 4"),
    (lambda: nbops.split(make((4,)), [1, -1, 4]), ValueError, "non-negative"),
    (lambda: nbops.split(make(()), 1), ValueError, "split"),
    (lambda: nbops.chunk(make((4,)), 0), ValueError, "greater than 0"),
    (lambda: nbops.chunk(make((4,)), 2, 1), IndexError, "chunk"),
    (lambda: nbops.narrow(make((4,)), 0, 5, 0), IndexError, "start out of range"),
    (lambda: nbops.narrow(make((4,)), 0, 2, 3), ValueError, "exceeds dimension size"),
    (lambda: nbops.narrow(make((4,)), 0, 0, -1), ValueError, "non-negative"),
    (lambda: nbops.narrow(make(()), 0, 0, 1), ValueError, "0-dim"),
    (lambda: nbops.narrow(make((4,)), 1, 0, 1), IndexError, "narrow"),
    (lambda: nbops.contiguous(make((2,)).astype(np.complex64)), TypeError, "contiguous"),
]


@pytest.mark.parametrize("case", range(len(ERRORS)))
def test_errors(case):
    fn, exc, match = ERRORS[case]
    with pytest.raises(exc, match=match):
        fn()


@pytest.mark.cuda
def test_cuda_views_are_device_views():
    x = to_target(make((4, 6), np.float32, 1), "cuda")
    for r in [nbops.view(x, 24), nbops.permute(x, (1, 0)), nbops.narrow(x, 1, 2, 3), nbops.expand(x[:1], 3, 6)]:
        assert hasattr(r, "copy_to_host") and _shares(r, x)
    assert not _shares(nbops.cat([x, x]), x)


@pytest.mark.cuda
def test_cat_mixed_targets_raise():
    with pytest.raises(ValueError, match="cat"):
        nbops.cat([make((2,)), to_target(make((2,)), "cuda")])
