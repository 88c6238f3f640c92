"""Shape workloads that move data: cat of four (1024, 4096) float32 arrays along dim 0 and dim 1, and the copy
that makes a permuted (64, 512, 512) array contiguous. Bytes count every element read once and written once."""

import numpy as np
import torch

import nbops

from ..core import Case

CAT = (1024, 4096)
P = (64, 512, 512)


def _four(rng, dtype):
    return tuple(rng.standard_normal(CAT).astype(dtype) for _ in range(4))


def _cube(rng, dtype):
    return (rng.standard_normal(P).astype(dtype),)


def _cat_case(dim):
    return Case(f"cat 4x(1024,4096) dim={dim}", "shape", _four,
                lambda *xs: nbops.cat(list(xs), dim), lambda *xs: torch.cat(list(xs), dim),
                numpy=lambda *xs: np.concatenate(xs, dim), bytes=2.0 * 4 * 4 * CAT[0] * CAT[1])


CASES = [
    _cat_case(0),
    _cat_case(1),
    Case("permute(0,2,1)+contiguous (64,512,512)", "shape", _cube,
         lambda x: nbops.contiguous(nbops.permute(x, (0, 2, 1))),
         lambda x: x.permute(0, 2, 1).contiguous(),
         numpy=lambda x: np.ascontiguousarray(x.transpose(0, 2, 1)), bytes=2.0 * 4 * P[0] * P[1] * P[2]),
]
