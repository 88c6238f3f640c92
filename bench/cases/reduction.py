"""Reduction workloads. CPU: sum, mean, var, max and argmax over dim 0, dim 1 and all of a 4096x4096 matrix, and
logsumexp over the last dim of (8192, 4096). CUDA: an 8192x8192 fp32 matrix (256 MiB, past the H200's 60 MB L2):
sum over dim 1, dim 0 and all, var and argmax over dim 1, amax of all, logsumexp over the last dim.
Reductions read their input once and write little: bytes count the input read plus the output written; flops
count one operation per element read (var: 3, logsumexp: ~12 for exp)."""

import numpy as np
import torch

import nbops

from ..core import Case

N = 4096
BIG = 8192


def _setup(shape):
    def setup(rng, dtype):
        return (rng.standard_normal(shape).astype(dtype),)

    return setup


def _out_elems(dim):
    return 1 if dim is None else N


def _case(op, dim, nb, th, np_fn=None, flops_per=1.0, rtol=None, atol=None):
    label = "all" if dim is None else f"dim {dim}"
    return Case(
        name=f"{op} {label} {N}x{N}", family="reduction", setup=_setup((N, N)),
        nbops=nb, torch=th, numpy=np_fn,
        flops=flops_per * N * N,
        bytes=4.0 * (N * N + _out_elems(dim) * {"max": 3, "argmax": 2}.get(op, 1)),
        rtol=rtol, atol=atol, targets=("cpu",),
    )


def _by_dim(dim, fn_all, fn_dim):
    return fn_all if dim is None else (lambda x: fn_dim(x, dim))


CASES = []
for _d in (0, 1, None):
    CASES += [
        _case("sum", _d, _by_dim(_d, nbops.sum, nbops.sum), _by_dim(_d, torch.sum, torch.sum),
              _by_dim(_d, np.sum, lambda x, d: np.sum(x, d)), rtol=1e-4, atol=1e-3),
        _case("mean", _d, _by_dim(_d, nbops.mean, nbops.mean), _by_dim(_d, torch.mean, torch.mean),
              _by_dim(_d, np.mean, lambda x, d: np.mean(x, d)), rtol=1e-4, atol=1e-5),
        _case("var", _d, _by_dim(_d, nbops.var, nbops.var), _by_dim(_d, torch.var, torch.var),
              _by_dim(_d, lambda x: np.var(x, ddof=1), lambda x, d: np.var(x, d, ddof=1)), flops_per=3.0,
              rtol=1e-4, atol=1e-5),
        _case("max", _d, _by_dim(_d, nbops.max, nbops.max), _by_dim(_d, torch.max, torch.max),
              _by_dim(_d, np.max, lambda x, d: np.max(x, d)) if _d is None else None),
        _case("argmax", _d, _by_dim(_d, nbops.argmax, nbops.argmax), _by_dim(_d, torch.argmax, torch.argmax),
              _by_dim(_d, np.argmax, lambda x, d: np.argmax(x, d))),
    ]

CASES.append(Case(
    name="logsumexp dim -1 8192x4096", family="reduction", setup=_setup((8192, N)),
    nbops=lambda x: nbops.logsumexp(x, -1), torch=lambda x: torch.logsumexp(x, -1),
    flops=12.0 * 8192 * N, bytes=4.0 * (8192 * N + 8192), rtol=1e-5, atol=1e-5, targets=("cpu",),
))


def _big(name, nb, th, out_elems, out_bytes=4, flops_per=1.0, rtol=None, atol=None):
    """A CUDA case over the 8192x8192 fp32 matrix: bytes = the matrix read + the output written."""
    return Case(name=f"{name} {BIG}x{BIG}", family="reduction", setup=_setup((BIG, BIG)), nbops=nb, torch=th,
                flops=flops_per * BIG * BIG, bytes=4.0 * BIG * BIG + out_bytes * out_elems, rtol=rtol, atol=atol,
                targets=("cuda",))


CASES += [
    _big("sum dim 1", lambda x: nbops.sum(x, 1), lambda x: torch.sum(x, 1), BIG, rtol=1e-4, atol=1e-3),
    _big("sum dim 0", lambda x: nbops.sum(x, 0), lambda x: torch.sum(x, 0), BIG, rtol=1e-4, atol=1e-3),
    _big("sum all", nbops.sum, torch.sum, 1, rtol=1e-4, atol=0.5),
    _big("var dim 1", lambda x: nbops.var(x, 1), lambda x: torch.var(x, 1), BIG, flops_per=3.0, rtol=1e-4,
         atol=1e-5),
    _big("argmax dim 1", lambda x: nbops.argmax(x, 1), lambda x: torch.argmax(x, 1), BIG, out_bytes=8),
    _big("amax all", nbops.amax, torch.amax, 1),
    _big("logsumexp dim -1", lambda x: nbops.logsumexp(x, -1), lambda x: torch.logsumexp(x, -1), BIG,
         flops_per=12.0, rtol=1e-5, atol=1e-5),
]
