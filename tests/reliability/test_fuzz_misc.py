"""Property-based checks for the embedding, dropout and shape families: embedding (padding_idx, max_norm and its
in-place renormalisation of ``weight``, norm_type) against torch; dropout's structure (each element or channel is 0
or x / (1 - p), the same mask for the same seed, identity when not training or p == 0); shape ops against torch on
random views."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import strategies as st

import nbops
from helpers import TARGETS, assert_same, check, to_numpy, to_target, to_torch
from strategies import DTYPES, arrays, run, shapes, sizes


@st.composite
def embedding_case(draw, target):
    dtype = draw(st.sampled_from(DTYPES))
    V, D = draw(st.integers(1, 8)), draw(sizes(target, 0, 6))
    weight = draw(arrays((V, D), dtype, special=False))
    idx = np.asarray(np.random.default_rng(draw(st.integers(0, 99))).integers(0, V, draw(shapes(target, 0, 3))),
                     dtype=draw(st.sampled_from([np.int64, np.int32])))
    kw = {}
    if draw(st.booleans()):
        kw["padding_idx"] = draw(st.integers(-V, V - 1))
    if draw(st.booleans()):
        kw["max_norm"] = draw(st.sampled_from([0.5, 1.0, 3.0]))
        # torch cannot take the inf-norm of an empty row (no identity) and raises; nbops returns the empty lookup
        kw["norm_type"] = draw(st.sampled_from([1.0, 2.0, 3.5] + ([float("inf")] if D else [])))
    return idx, weight, kw


@pytest.mark.parametrize("target", TARGETS)
def test_embedding(target, pytestconfig):
    def prop(case):
        idx, weight, kw = case
        w_nb, w_t = to_target(weight.copy(), target), to_torch(weight)
        got = to_numpy(nbops.embedding(to_target(idx, target), w_nb, **kw))
        want = F.embedding(torch.from_numpy(idx.astype(np.int64)), w_t, **kw)
        assert_same(got, want)
        assert_same(to_numpy(w_nb), w_t)  # max_norm renormalises the same rows in place

    run("embedding", target, 40, embedding_case(target), prop, pytestconfig)


@st.composite
def dropout_case(draw, target):
    dtype = draw(st.sampled_from(DTYPES))
    op = draw(st.sampled_from(["dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout"]))
    rank = {"dropout": None, "alpha_dropout": None, "dropout1d": (2, 3), "dropout2d": (3, 4), "dropout3d": (4, 5)}[op]
    shape = draw(shapes(target, 0, 4) if rank is None else shapes(target, rank[0], rank[1], 1))
    x = draw(arrays(shape, dtype, special=False))
    p = draw(st.sampled_from([0.0, 0.2, 0.5, 0.9, 1.0]))
    return op, x, p, draw(st.booleans()), draw(st.integers(0, 2 ** 31))


@pytest.mark.filterwarnings("ignore:.*Received a 3D input")
@pytest.mark.parametrize("target", TARGETS)
def test_dropout(target, pytestconfig):
    def prop(case):
        op, x, p, training, seed = case
        fn = getattr(nbops, op)
        got = to_numpy(fn(to_target(x, target), p, training=training, seed=seed))
        again = to_numpy(fn(to_target(x, target), p, training=training, seed=seed))
        assert np.array_equal(got, again, equal_nan=True), "same seed, different mask"
        if not training or p == 0 or x.size == 0:
            assert_same(got, getattr(F, op)(to_torch(x), p, training=training))
            return
        if op == "alpha_dropout":
            # torch: a = 1 / sqrt((alpha^2 p + 1)(1 - p)); kept -> a x + alpha a p, dropped -> alpha a (p - 1)
            alpha = 1.7580993408473766
            if p == 1:
                assert_same(got, np.zeros_like(x))
                return
            a = 1.0 / np.sqrt((alpha * alpha * p + 1) * (1 - p))
            tol = {"rtol": 1e-5, "atol": 1e-5}
            kept = np.isclose(got, a * x.astype(np.float64) + alpha * a * p, **tol)
            assert (kept | np.isclose(got, alpha * a * (p - 1), **tol)).all()
            return
        kept = got != 0
        if p == 1:
            assert not kept.any()
            return
        np.testing.assert_allclose(got[kept], (x / (1 - p)).astype(x.dtype)[kept], rtol=2e-7 if x.dtype == np.float32
                                   else 1e-15)
        if op != "dropout":
            # one decision per channel: (N, C) for batched input (dropout2d takes 3-D input as (N, C, L)), else (C,)
            batched = op == "dropout2d" or x.ndim == {"dropout1d": 3, "dropout3d": 5}.get(op)
            channels = int(np.prod(x.shape[:2 if batched else 1]))
            kept_c = kept.reshape(channels, -1)
            assert ((kept_c | (x == 0).reshape(channels, -1)).all(1) | ~kept_c.any(1)).all()

    run("dropout", target, 40, dropout_case(target), prop, pytestconfig)


@st.composite
def shape_case(draw, target):
    dtype = draw(st.sampled_from(DTYPES))
    op = draw(st.sampled_from(["cat", "stack", "flatten", "narrow", "permute", "transpose", "contiguous", "squeeze",
                               "unsqueeze", "split", "chunk", "expand", "reshape"]))
    shape = draw(shapes(target, 1, 4))
    nd = len(shape)
    x = draw(arrays(shape, dtype))
    dim = draw(st.integers(-nd, nd - 1))
    if op == "cat":
        other = list(shape)
        other[dim] = draw(sizes(target))
        return op, ([x, draw(arrays(other, dtype))],), {"dim": dim}
    if op == "stack":
        return op, ([x, draw(arrays(shape, dtype))],), {"dim": draw(st.integers(-nd - 1, nd))}
    if op == "flatten":
        a = draw(st.integers(0, nd - 1))
        return op, (x,), {"start_dim": a, "end_dim": draw(st.integers(a, nd - 1))}
    if op == "narrow":
        n = shape[dim]
        start = draw(st.integers(-n, n)) if n else 0
        return op, (x, dim, start, draw(st.integers(0, n - (start % n if n and start < 0 else start)))), {}
    if op == "permute":
        return op, (x, tuple(draw(st.permutations(range(nd))))), {}
    if op == "transpose":
        return op, (x, dim, draw(st.integers(-nd, nd - 1))), {}
    if op == "squeeze":
        return op, (x,), ({"dim": dim} if draw(st.booleans()) else {})
    if op == "unsqueeze":
        return op, (x, draw(st.integers(-nd - 1, nd))), {}
    if op in ("split", "chunk"):
        return op, (x, draw(st.integers(1, 4))), {"dim": dim}
    if op == "expand":
        return op, (x, *[draw(st.sampled_from([-1, s])) if s != 1 else draw(st.integers(0, 3)) for s in shape]), {}
    if op == "reshape":
        return op, (x, (-1,) + tuple(shape[1:]) if shape[0] and 0 not in shape[1:] else tuple(shape)), {}
    return op, (x,), {}


@pytest.mark.parametrize("target", TARGETS)
def test_shape(target, pytestconfig):
    def prop(case):
        op, args, kw = case
        ref = (lambda t: t.contiguous()) if op == "contiguous" else getattr(torch, op, None)
        if op == "expand":
            ref = lambda t, *s: t.expand(*s)  # noqa: E731
        check(getattr(nbops, op), ref, target, *args, **kw)

    run("shape", target, 40, shape_case(target), prop, pytestconfig)
