"""Small CPU inputs run each parallel kernel's serial twin (``cpu/_util.serial``: the same function compiled
without ``parallel``); large ones the parallel kernel. The rest of the suite checks values on mostly small inputs,
so here every launcher that ``run_parallel`` picks for is called on small odd shapes twice: as shipped (the twins)
and with the twins swapped for the parallel kernels on every thread. The results must agree bit for bit: both
compile the same source, a prange iteration computes the same values on any thread, and nothing here reduces
across prange iterations. This is what guards the parfor lowering (hoisting, aliasing) on small inputs."""

import numpy as np
import pytest

import nbops
from nbops.cpu import _util
from nbops.ops.linear import _attention
from helpers import make, make_int

F = np.float32


def _cases(dt):
    x = make((3, 5, 7, 9), dt, seed=1)
    y = make((3, 5, 7, 9), dt, seed=2)
    row = make((9,), dt, seed=3)
    m = make((37, 45), dt, seed=4)
    w = make((45, 29), dt, seed=5)
    c = make((5,), dt, seed=6)
    pos = np.abs(make((5,), dt, seed=7)) + dt(0.5)
    img = make((2, 4, 11, 13), dt, seed=8)
    ker = make((6, 4, 3, 3), dt, seed=9)
    dw = make((4, 1, 3, 3), dt, seed=10)
    q, k, v = make((2, 3, 19, 8), dt, seed=11), make((2, 3, 23, 8), dt, seed=12), make((2, 3, 23, 5), dt, seed=13)
    table = make((50, 7), dt, seed=14)
    ids = make_int((6, 5), 0, 50, seed=15)
    return {
        "add": lambda: nbops.add(x, y, alpha=0.5),
        "mul broadcast": lambda: nbops.mul(x, row),
        "exp": lambda: nbops.exp(x),
        "sqrt strided": lambda: nbops.sqrt(nbops.abs(x)[..., ::2]),
        "relu": lambda: nbops.relu(x),
        "gelu": lambda: nbops.gelu(x),
        "gelu tanh": lambda: nbops.gelu(x, approximate="tanh"),
        "silu": lambda: nbops.silu(x),
        "elu": lambda: nbops.elu(x),
        "softplus": lambda: nbops.softplus(x),
        "mish": lambda: nbops.mish(x),
        "hardswish": lambda: nbops.hardswish(x),
        "glu": lambda: nbops.glu(img, 1),
        "prelu": lambda: nbops.prelu(x, c),
        "softmax last": lambda: nbops.softmax(x, -1),
        "softmax inner": lambda: nbops.softmax(x, 1),
        "log_softmax": lambda: nbops.log_softmax(x, 2),
        "layer_norm": lambda: nbops.layer_norm(x, (7, 9)),
        "rms_norm": lambda: nbops.rms_norm(x, (9,), row),
        "group_norm": lambda: nbops.group_norm(img, 2),
        "instance_norm": lambda: nbops.instance_norm(img),
        "batch_norm train": lambda: nbops.batch_norm(x, None, None, training=True),
        "batch_norm train short rows": lambda: nbops.batch_norm(x[:, :, 0, :2], None, None, training=True),
        "batch_norm eval": lambda: nbops.batch_norm(x, c, pos, c, c, training=False),
        "dyt": lambda: nbops.dyt(x, np.array([0.7], dt), row, row),
        "deep_norm": lambda: nbops.deep_norm(x, y, 1.7, (9,)),
        "switch_norm": lambda: nbops.switch_norm(x, c, c, np.ones(3, dt), np.zeros(3, dt), c.copy(), pos.copy(),
                                                 training=True),
        "matmul": lambda: nbops.matmul(m, w),
        "linear": lambda: nbops.linear(m, w.T, w[0]),
        "bmm": lambda: nbops.matmul(x, y.swapaxes(-1, -2)),
        "conv2d": lambda: nbops.conv2d(img, ker, c[:1].repeat(6), padding=1),
        "conv2d s2": lambda: nbops.conv2d(img, ker, stride=2),
        "conv2d depthwise": lambda: nbops.conv2d(img, dw, padding=1, groups=4),
        "conv_transpose2d s2": lambda: nbops.conv_transpose2d(img, ker.swapaxes(0, 1).copy(), stride=2, padding=1),
        "attention": lambda: _attention(q, k, v, 0.3),
        "sum rows": lambda: nbops.sum(x, -1),
        "sum cols": lambda: nbops.sum(x, 1),
        "mean all": lambda: nbops.mean(x),
        "prod": lambda: nbops.prod(x, 2),
        "var rows": lambda: nbops.var(x, -1),
        "var cols": lambda: nbops.var(x, 0),
        "argmax rows": lambda: nbops.argmax(x, -1),
        "argmin cols": lambda: nbops.argmin(x, 1),
        "max all": lambda: nbops.max(x),
        "amin cols": lambda: nbops.amin(x, 2),
        "logsumexp rows": lambda: nbops.logsumexp(x, -1),
        "logsumexp cols": lambda: nbops.logsumexp(x, 1),
        "max_pool2d": lambda: nbops.max_pool2d(img, 3, 2, 1),
        "max_pool2d indices": lambda: nbops.max_pool2d(img, 2, return_indices=True),
        "avg_pool2d": lambda: nbops.avg_pool2d(img, 3, 2, 1),
        "adaptive_avg_pool2d 1": lambda: nbops.adaptive_avg_pool2d(img, 1),
        "adaptive_avg_pool2d 3x4": lambda: nbops.adaptive_avg_pool2d(img, (3, 4)),
        "adaptive_max_pool2d": lambda: nbops.adaptive_max_pool2d(img, (3, 4), return_indices=True),
        "embedding": lambda: nbops.embedding(ids, table),
        "dropout": lambda: nbops.dropout(x, 0.3, seed=5),
        "dropout2d": lambda: nbops.dropout2d(img, 0.5, seed=6),
        "permute copy": lambda: nbops.contiguous(nbops.permute(x, (0, 3, 1, 2))),
    }


def _results(value):
    return [np.asarray(v) for v in value] if isinstance(value, tuple) else [np.asarray(value)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_serial_twins_match_the_parallel_kernels(dtype, monkeypatch):
    cases = _cases(dtype)
    twins = {name: _results(fn()) for name, fn in cases.items()}
    before = set(_util._SERIAL)
    monkeypatch.setattr(_util, "serial", lambda kernel: kernel)
    monkeypatch.setattr(_util.Compiled, "serial", _util.Compiled.parallel)
    for name, fn in cases.items():
        got = _results(fn())
        assert len(got) == len(twins[name])
        for a, b in zip(got, twins[name]):
            assert a.dtype == b.dtype and a.shape == b.shape, name
            assert np.array_equal(a, b, equal_nan=True), name
    assert len(before) >= 30  # the small calls above did run serial twins
