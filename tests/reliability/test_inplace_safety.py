"""Arguments an op writes in place -- batch_norm/instance_norm/switch_norm running statistics, embedding's weight
under max_norm, dropout and activations with inplace=True, linear algebra's out= -- (1) as read-only NumPy arrays
give a ValueError naming the op and the argument, and (2) are left untouched, bit for bit, when the op raises on any
other bad input."""

import inspect

import numpy as np
import pytest

import nbops
from nbops._dispatch import PUBLIC_OPS
from helpers import make, make_int

INPLACE_OPS = sorted(n for n in PUBLIC_OPS if "inplace" in inspect.signature(getattr(nbops, n)).parameters)
OUT_OPS = sorted(n for n in PUBLIC_OPS if "out" in inspect.signature(getattr(nbops, n)).parameters)


def _ro(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def f32(*shape, seed=0):
    return make(shape, np.float32, seed)


def _out_call(name):
    a, b = f32(2, 3, 4), f32(2, 4, 5, seed=1)
    return {"matmul": (a, b), "bmm": (a, b), "baddbmm": (f32(2, 3, 5, seed=2), a, b), "mm": (a[0], b[0]),
            "addmm": (f32(3, 5, seed=2), a[0], b[0])}[name]


def _rank_for(name):
    return {"dropout1d": (2, 3, 5), "dropout2d": (2, 3, 4, 4), "dropout3d": (2, 3, 2, 2, 2)}.get(name, (3, 5))


def test_registry_lists_the_writers():
    assert {"relu", "dropout", "elu"} <= set(INPLACE_OPS) and {"mm", "matmul"} <= set(OUT_OPS)


@pytest.mark.parametrize("name", INPLACE_OPS)
def test_read_only_inplace_input(name):
    x = _ro(make(_rank_for(name), np.float32))
    kw = {"training": True, "p": 0.5} if "dropout" in name else {}
    with pytest.raises(ValueError, match=rf"{name}\(\).*(read-only|writeable)"):
        getattr(nbops, name)(x, inplace=True, **kw)


@pytest.mark.parametrize("name", OUT_OPS)
def test_read_only_out(name):
    args = _out_call(name)
    ref = getattr(nbops, name)(*args)
    with pytest.raises(ValueError, match=rf"{name}\(\): argument 'out' is written in place"):
        getattr(nbops, name)(*args, out=_ro(np.zeros_like(ref)))


def _bn(rm, rv, **kw):
    return nbops.batch_norm(f32(4, 3, 5), rm, rv, training=True, **kw)


def _in(rm, rv, **kw):
    return nbops.instance_norm(f32(2, 3, 5), rm, rv, **kw)


def _sn(rm, rv, **kw):
    C = 3
    return nbops.switch_norm(f32(2, C, 4, 4), f32(C), f32(C, seed=1), f32(3, seed=2), f32(3, seed=3), rm, rv,
                             training=True, **kw)


@pytest.mark.parametrize("fn", [_bn, _in, _sn], ids=["batch_norm", "instance_norm", "switch_norm"])
def test_read_only_running_stats(fn):
    rm, rv = f32(3), f32(3, seed=1) ** 2 + 1
    with pytest.raises(ValueError, match=r"_norm\(\): argument 'running_mean' is written in place"):
        fn(_ro(rm), rv.copy())
    with pytest.raises(ValueError, match=r"_norm\(\): argument 'running_var' is written in place"):
        fn(rm.copy(), _ro(rv))


def test_read_only_running_stats_fine_in_eval():
    rm, rv = _ro(f32(3)), _ro(f32(3, seed=1) ** 2 + 1)
    nbops.batch_norm(f32(4, 3, 5), rm, rv, training=False)


def test_read_only_embedding_weight():
    w = _ro(f32(10, 4) * 5)
    nbops.embedding(make_int((3,), 0, 10), w)  # no max_norm: nothing is written
    with pytest.raises(ValueError, match=r"embedding\(\): argument 'weight' is written in place"):
        nbops.embedding(make_int((3,), 0, 10), w, max_norm=1.0)


# (2) untouched on error: each case writes in place when valid; the bad argument makes it raise
def _stats_cases():
    bad = {"weight": f32(4), "eps": "x", "momentum": None}
    for fn, name in [(_bn, "batch_norm"), (_in, "instance_norm"), (_sn, "switch_norm")]:
        for k, v in bad.items():
            if fn is _sn and k == "weight":
                continue
            yield pytest.param(fn, {k: v}, id=f"{name}-{k}")


@pytest.mark.parametrize("fn, bad", list(_stats_cases()))
def test_running_stats_untouched_on_error(fn, bad):
    rm, rv = f32(3), f32(3, seed=1) ** 2 + 1
    rm0, rv0 = rm.copy(), rv.copy()
    with pytest.raises((TypeError, ValueError)):
        fn(rm, rv, **bad)
    assert np.array_equal(rm, rm0) and np.array_equal(rv, rv0)
    fn(rm, rv)  # the same call without the bad argument does update them
    assert not np.array_equal(rm, rm0)


@pytest.mark.parametrize("bad", [{"idx": [1, 10]}, {"idx": [1, -1]}, {"norm_type": "2"}, {"max_norm": "1"},
                                 {"padding_idx": 10}])
def test_embedding_weight_untouched_on_error(bad):
    w = f32(10, 4) * 5
    w0 = w.copy()
    idx = np.array(bad.pop("idx", [1, 2]))
    kw = {"max_norm": 1.0, **bad}
    with pytest.raises((TypeError, ValueError, IndexError), match=r"embedding\(\)"):
        nbops.embedding(idx, w, **kw)
    assert np.array_equal(w, w0)
    nbops.embedding(np.array([1, 2]), w, max_norm=1.0)
    assert not np.array_equal(w, w0)


@pytest.mark.parametrize("name", INPLACE_OPS)
@pytest.mark.parametrize("bad", ["p", "dtype", "param"])
def test_inplace_input_untouched_on_error(name, bad):
    x = make(_rank_for(name), np.float32)
    x0 = x.copy()
    kw = {"training": True, "p": 0.5} if "dropout" in name else {}
    if bad == "p":
        kw = {"training": True, "p": 1.5} if "dropout" in name else {"bogus": 1}
    elif bad == "param":
        params = inspect.signature(getattr(nbops, name)).parameters
        number = [p for p in params if p not in ("input", "inplace", "training", "seed")]
        kw.update({number[0]: "x"} if number else {"bogus": 1})
    else:
        x = x.astype(np.float16)
        x0 = x.copy()
    with pytest.raises((TypeError, ValueError)):
        getattr(nbops, name)(x, inplace=True, **kw)
    assert np.array_equal(x, x0)
