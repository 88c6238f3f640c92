"""Shape workloads that move data: cat of four (1024, 4096) float32 arrays along dim 0 and dim 1, the copy that
makes a permuted (64, 512, 512) array contiguous, and the one that turns the (8, 512, 12, 64) heads of a BERT-base
projection into (8, 12, 512, 64) (rows of 64 values on both sides, as every multi-head split and merge). On cuda
the cat along dim 1 and the permuted copy run at 4x the size (256 MiB moved: well past the H200's 60 MB L2). Bytes
count every element read once and written once."""

import numpy as np
import torch

import nbops

from ..core import Case

CAT = (1024, 4096)
P = (64, 512, 512)
CAT_BIG = (4096, 4096)  # cuda
P_BIG = (256, 512, 512)  # cuda
HEADS = (8, 512, 12, 64)


def _four(rng, dtype):
    return tuple(rng.standard_normal(CAT).astype(dtype) for _ in range(4))


def _cube(rng, dtype):
    return (rng.standard_normal(P).astype(dtype),)


def _four_big(rng, dtype):
    return tuple(rng.standard_normal(CAT_BIG, dtype=np.float32).astype(dtype) for _ in range(4))


def _cube_big(rng, dtype):
    return (rng.standard_normal(P_BIG, dtype=np.float32).astype(dtype),)


def _cat_case(dim, shape=CAT, setup=_four, targets=("cpu", "cuda")):
    return Case(f"cat 4x({shape[0]},{shape[1]}) dim={dim}", "shape", setup,
                lambda *xs: nbops.cat(list(xs), dim), lambda *xs: torch.cat(list(xs), dim),
                numpy=lambda *xs: np.concatenate(xs, dim), bytes=2.0 * 4 * 4 * shape[0] * shape[1], targets=targets)


def _heads(rng, dtype):
    return (rng.standard_normal(HEADS, dtype=np.float32).astype(dtype),)


def _heads_case():
    n, length, h, d = HEADS
    return Case(f"permute(0,2,1,3)+contiguous ({n},{length},{h},{d})", "shape", _heads,
                lambda x: nbops.contiguous(nbops.permute(x, (0, 2, 1, 3))),
                lambda x: x.permute(0, 2, 1, 3).contiguous(),
                numpy=lambda x: np.ascontiguousarray(x.transpose(0, 2, 1, 3)),
                bytes=2.0 * 4 * n * length * h * d, targets=("cpu",))


def _permute_case(shape, setup, targets):
    return Case(f"permute(0,2,1)+contiguous ({shape[0]},{shape[1]},{shape[2]})", "shape", setup,
                lambda x: nbops.contiguous(nbops.permute(x, (0, 2, 1))),
                lambda x: x.permute(0, 2, 1).contiguous(),
                numpy=lambda x: np.ascontiguousarray(x.transpose(0, 2, 1)),
                bytes=2.0 * 4 * shape[0] * shape[1] * shape[2], targets=targets)


CASES = [
    _cat_case(0),
    _cat_case(1, targets=("cpu",)),
    _cat_case(1, CAT_BIG, _four_big, targets=("cuda",)),
    _permute_case(P, _cube, ("cpu",)),
    _permute_case(P_BIG, _cube_big, ("cuda",)),
    _heads_case(),
]
