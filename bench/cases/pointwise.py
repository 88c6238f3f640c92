"""Pointwise workloads: float32 add/mul/exp on 4096x4096 (64 MiB per array, far beyond L3: DRAM-bound), a row
broadcast add, where and clamp. On cuda the adds run on 8192x8192 instead (256 MiB per array, well past the H200's
60 MB L2). Bytes count every input read once and the output written once; no FLOP counts, so the report gives
GB/s, the measure that matters for these memory-bound ops."""

import numpy as np
import torch

import nbops

from ..core import Case

M = N = 4096
E = M * N
BIG = 8192  # the cuda adds: BIG x BIG


def _two(rng, dtype):
    return rng.standard_normal((M, N)).astype(dtype), rng.standard_normal((M, N)).astype(dtype)


def _row(rng, dtype):
    return rng.standard_normal((M, N)).astype(dtype), rng.standard_normal((N,)).astype(dtype)


def _one(rng, dtype):
    return (rng.standard_normal((M, N)).astype(dtype),)


def _two_big(rng, dtype):
    return (rng.standard_normal((BIG, BIG), dtype=np.float32).astype(dtype),
            rng.standard_normal((BIG, BIG), dtype=np.float32).astype(dtype))


def _row_big(rng, dtype):
    return (rng.standard_normal((BIG, BIG), dtype=np.float32).astype(dtype),
            rng.standard_normal((BIG,), dtype=np.float32).astype(dtype))


def _where(rng, dtype):
    x, y = _two(rng, dtype)
    return rng.standard_normal((M, N)) > 0, x, y


CASES = [
    Case("add 4096x4096", "pointwise", _two, nbops.add, torch.add, numpy=np.add, bytes=12.0 * E, targets=("cpu",)),
    Case("add 8192x8192", "pointwise", _two_big, nbops.add, torch.add, bytes=12.0 * BIG * BIG, targets=("cuda",)),
    Case("mul 4096x4096", "pointwise", _two, nbops.mul, torch.mul, numpy=np.multiply, bytes=12.0 * E),
    Case("exp 4096x4096", "pointwise", _one, nbops.exp, torch.exp, numpy=np.exp, bytes=8.0 * E),
    Case("add broadcast (4096,4096)+(4096,)", "pointwise", _row, nbops.add, torch.add, numpy=np.add,
         bytes=8.0 * E + 4.0 * N, targets=("cpu",)),
    Case("add broadcast (8192,8192)+(8192,)", "pointwise", _row_big, nbops.add, torch.add,
         bytes=8.0 * BIG * BIG + 4.0 * BIG, targets=("cuda",)),
    Case("where 4096x4096", "pointwise", _where, nbops.where, torch.where, numpy=np.where, bytes=9.0 * E),
    Case("clamp 4096x4096 [-0.5, 0.5]", "pointwise", _one, lambda x: nbops.clamp(x, -0.5, 0.5),
         lambda x: torch.clamp(x, -0.5, 0.5), numpy=lambda x: np.clip(x, -0.5, 0.5), bytes=8.0 * E),
]
