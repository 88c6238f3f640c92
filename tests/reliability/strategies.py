"""Hypothesis strategies shared by the fuzz tests: arrays of a given shape as random views (permuted axes, sliced
last axis) of a random base, float32/float64, values optionally salted with NaN, +-inf, -0.0 and denormals, or shifted
by a large offset; and the per-run example budget (``--slow`` multiplies it).

Reproducible: every property runs with ``derandomize=True``, so CI draws the same examples each run."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import assert_same

SLOW_FACTOR = 20
DTYPES = [np.float32, np.float64]
DENORMAL = {np.float32: 1e-40, np.float64: 5e-320}


def run(family, target, n, strategy, prop, config):
    """Check ``prop`` on ``n`` derandomized examples of ``strategy`` (x SLOW_FACTOR with --slow, read from pytest's
    ``config`` so that xdist workers see it too; the cuda simulator gets a quarter, at least 3)."""
    if target == "cuda":
        n = max(3, n // 4)
    n = n * SLOW_FACTOR if config.getoption("--slow") else n
    count = [0]

    def body(example):
        count[0] += 1
        prop(example)

    settings(max_examples=n, derandomize=True, deadline=None, database=None, print_blob=True,
             suppress_health_check=list(HealthCheck))(given(strategy)(body))()
    print(f"fuzz {family}/{target}: {count[0]} examples")


def sizes(target, low=0, high=6):
    """One dimension's size: tiny on the simulator (it runs Python per thread)."""
    return st.integers(low, min(high, 4) if target == "cuda" else high)


def shapes(target, min_rank=0, max_rank=4, low=0, high=6):
    return st.lists(sizes(target, low, high), min_size=min_rank, max_size=max_rank).map(tuple)


@st.composite
def arrays(draw, shape, dtype, special=True, offset=True, positive=False, scale=1.0):
    """A float array of ``shape``: a random view of a larger random base (axes permuted, last base axis sliced with
    step 2 half the time), standard-normal times ``scale`` (absolute values with ``positive``), then maybe shifted by
    a large offset and maybe salted with NaN/+-inf/-0.0/denormals."""
    shape = tuple(shape)
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    nd = len(shape)
    perm = draw(st.permutations(range(nd))) if nd > 1 else list(range(nd))
    step = draw(st.sampled_from([1, 2])) if nd else 1
    base_shape = [shape[p] for p in perm]
    if nd:
        base_shape[-1] *= step
    vals = np.asarray(rng.standard_normal(base_shape) * scale)
    if positive:
        vals = np.abs(vals) + 0.1
    if offset:
        vals = np.asarray(vals + draw(st.sampled_from([0.0, 0.0, 0.0, 1e4, -300.0])))
    if special and vals.size and draw(st.integers(0, 2)) == 0:
        salt = draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf, -0.0, DENORMAL[dtype]]), min_size=1,
                             max_size=3))
        flat = vals.reshape(-1)
        for v in salt:
            flat[rng.integers(flat.size)] = v
    base = np.asarray(vals, dtype=dtype)
    if nd:
        base = base[..., ::step]
    x = np.asarray(np.transpose(base, np.argsort(perm)))
    assert x.shape == shape
    return x


def accum_tol(dtype, term_mag, terms):
    """Tolerance for results that add ``terms`` terms of magnitude up to ``term_mag``: two correct kernels that add in
    different orders differ by up to ~terms * eps * term_mag (each partial sum is rounded once), which torch's default
    float32 atol (1e-5) only covers for small sums."""
    eps = float(np.finfo(dtype).eps)
    default = 1e-5 if dtype == np.float32 else 1e-7
    return {"rtol": 1.3e-6 if dtype == np.float32 else 1e-7,
            "atol": max(default, 2 * max(terms, 1) * eps * max(term_mag, 1.0))}


def magnitude(x):
    """The largest finite |value| in ``x`` (1 when there is none)."""
    finite = np.abs(x[np.isfinite(x)])
    return float(finite.max()) if finite.size else 1.0


NB_ERRORS = (TypeError, ValueError, IndexError, NotImplementedError)


def torch_or_raises(op, torch_fn, nb_fn, *args, **kwargs):
    """torch's result, or None when torch rejects the input: then ``nb_fn()`` must raise one of NB_ERRORS naming
    ``op`` (the same input is invalid for both)."""
    try:
        return torch_fn(*args, **kwargs)
    except (RuntimeError, ValueError, IndexError, TypeError):
        pass
    with pytest.raises(NB_ERRORS, match=rf"(^|\W){op}\(\)"):
        nb_fn()
    return None


def as_float64(v):
    """``v`` with float32 arrays (also in lists/tuples) widened to float64; the exact reference's input."""
    if isinstance(v, np.ndarray) and v.dtype == np.float32:
        return v.astype(np.float64)
    if isinstance(v, (list, tuple)) and any(isinstance(a, np.ndarray) for a in v):
        return type(v)(as_float64(a) for a in v)
    return v


def assert_parity(got, want, exact, rtol=None, atol=None):
    """nbops' ``got`` matches torch's ``want`` (helpers.assert_same), or, where it does not, is at least as close to
    ``exact`` (torch on float64 copies of the float32 inputs) as torch is, within the tolerance: the float32 input
    itself is the spec, so an nbops result nearer the exact value than torch's rounding is not a mismatch (e.g. a
    normalisation of values ~1e4 whose float32 mean torch rounds)."""
    try:
        assert_same(got, want, rtol=rtol, atol=atol)
        return
    except AssertionError:
        if exact is None:
            raise
    if isinstance(want, (tuple, list)):
        for g, w, e in zip(got, want, exact):
            assert_parity(g, w, e, rtol, atol)
        return
    g = np.asarray(got, dtype=np.float64)
    w = want.double().numpy() if hasattr(want, "double") else np.asarray(want, dtype=np.float64)
    e = exact.double().numpy() if hasattr(exact, "double") else np.asarray(exact, dtype=np.float64)
    rtol = 1.3e-6 if rtol is None else rtol
    atol = 1e-5 if atol is None else atol
    with np.errstate(invalid="ignore"):
        err_nb, err_t = np.abs(g - e), np.abs(w - e)
        ok = (err_nb <= 2 * err_t + atol + rtol * np.abs(e)) | (np.isnan(g) & np.isnan(e)) | (g == e)
    assert ok.all(), f"nbops {g[~ok][:4]} vs torch {w[~ok][:4]}, exact (float64) {e[~ok][:4]}"
