"""The bad-input matrix, generated from the registry: every public op's valid sample call (tests/test_errors.py's
SAMPLES) is broken in each generic way -- main array of the wrong rank (two more dims, flattened, 0-d), empty, an
integer array, the second array of a mismatched shape, every int/tuple parameter set to -1, 0 and an oversized 100,
every float parameter set to -1 and NaN -- and each cell is judged against torch:

* torch rejects the call  -> nbops must raise TypeError/ValueError/IndexError/NotImplementedError naming the op;
* torch accepts it        -> nbops returns torch's result (values, shape, dtype), or raises one of those errors
                             naming the op (a documented restriction), never anything else.

Any other exception (a numba typing error, AttributeError, ZeroDivisionError, an unnamed IndexError ...), a
wrong result, or a crash fails the cell. The per-class tally is printed (-s) and recorded in docs/reliability.md."""

import collections
import inspect
import math
import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nbops
from nbops._dispatch import PUBLIC_OPS
from helpers import assert_same, to_torch
from test_errors import NO_ARRAY, SAMPLES

NB_ERRORS = (TypeError, ValueError, IndexError, NotImplementedError)
TORCH_ERRORS = (RuntimeError, ValueError, IndexError, TypeError, NotImplementedError, ZeroDivisionError, OverflowError)
METHODS = {"view": lambda t, *s: t.view(*s), "expand": lambda t, *s: t.expand(*s),
           "contiguous": lambda t: t.contiguous()}
RANDOM = {"dropout", "alpha_dropout", "dropout1d", "dropout2d", "dropout3d"}  # compared by shape and dtype only
TALLY = collections.defaultdict(collections.Counter)


def _torch_fn(name):
    if name in METHODS:
        return METHODS[name]
    return getattr(F, name, None) or getattr(torch, name, None)


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _mutations(name):
    """(class, args, kwargs) for every generic way of breaking the op's sample call."""
    args, kwargs = SAMPLES[name]()
    fn = getattr(nbops, name)
    out = []

    def with_first(value):
        a = list(args)
        if isinstance(a[0], list):
            a[0] = [value] + a[0][1:]
        else:
            a[0] = value
        return tuple(a)

    x = args[0][0] if isinstance(args[0], list) else args[0]
    out.append(("rank +2", with_first(x[None, None]), kwargs))
    out.append(("rank 1", with_first(x.reshape(-1)), kwargs))
    out.append(("rank 0", with_first(x.reshape(-1)[:1].reshape(())), kwargs))
    out.append(("empty", with_first(x[:0]), kwargs))
    if x.dtype.kind == "f":
        out.append(("int array", with_first((x * 3).astype(np.int64)), kwargs))
    arrays_at = [i for i, a in enumerate(args) if isinstance(a, np.ndarray)][1:]
    for i in arrays_at[:2]:
        a = list(args)
        a[i] = a[i][..., :-1] if a[i].ndim and a[i].shape[-1] > 1 else np.concatenate([a[i], a[i]], -1) \
            if a[i].ndim else a[i][None].repeat(3)
        out.append(("shape mismatch", tuple(a), kwargs))
    sig = inspect.signature(fn)
    bound = sig.bind(*args, **kwargs)
    full = sig.bind(*args, **kwargs)
    full.apply_defaults()
    for pname, value in full.arguments.items():
        param = sig.parameters[pname]
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or pname.startswith("_"):
            continue
        if _is_int(value) or (isinstance(value, tuple) and value and all(_is_int(v) for v in value)):
            n = len(value) if isinstance(value, tuple) else None
            for bad in (-1, 0, 100):
                out.append((f"int param {bad}", pname, bad if n is None else (bad,) * n, bound))
        elif isinstance(value, float) and pname not in ("alpha", "beta"):
            for bad in (-1.0, math.nan):
                out.append((f"float param {bad}", pname, bad, bound))
    cells = []
    for m in out:
        if len(m) == 3:
            cells.append(m)
        else:
            cls, pname, bad, b = m
            nb = sig.bind(*b.args, **b.kwargs)
            nb.arguments[pname] = bad
            cells.append((cls, nb.args, nb.kwargs))
    return cells


CELLS = [(name, i) for name in sorted(PUBLIC_OPS) if name not in NO_ARRAY for i in range(len(_mutations(name)))]


def _copy(v):
    if isinstance(v, np.ndarray):
        return v.copy()
    if isinstance(v, list):
        return [_copy(a) for a in v]
    return v


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name, i", CELLS)
def test_cell(name, i):
    cls, args, kwargs = _mutations(name)[i]
    tfn = _torch_fn(name)
    want, torch_error = None, None
    if tfn is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want = tfn(*[to_torch(_copy(a)) for a in args], **{k: to_torch(_copy(v)) for k, v in kwargs.items()})
        except TORCH_ERRORS as e:
            torch_error = e
    try:
        got = getattr(nbops, name)(*[_copy(a) for a in args], **{k: _copy(v) for k, v in kwargs.items()})
    except NB_ERRORS as e:
        assert re.search(rf"(^|\W){re.escape(name)}\(\)", str(e)), f"{type(e).__name__} does not name {name}(): {e}"
        TALLY[cls][type(e).__name__] += 1
        return
    assert torch_error is None, f"torch rejects ({torch_error}) but nbops returned a result"
    if want is not None:
        if name in RANDOM:
            assert tuple(np.shape(got)) == tuple(want.shape)
        else:
            assert_same(got, want)
        TALLY[cls]["torch's result"] += 1
    else:
        TALLY[cls]["returned (no torch equivalent)"] += 1


def test_tally_summary():
    """Prints the per-class answers of the cells above (run after them, in file order)."""
    lines = [f"{cls:22s} " + ", ".join(f"{k}: {v}" for k, v in sorted(c.items())) for cls, c in sorted(TALLY.items())]
    print("\nbad-input matrix: %d cells\n" % sum(sum(c.values()) for c in TALLY.values()) + "\n".join(lines))
