"""Dropout workload: elementwise dropout p=0.5 on float32 4096x4096 (64 MiB in, 64 MiB out: DRAM-bound); on cuda
8192x8192 (256 MiB in, 256 MiB out: well past the H200's 60 MB L2).

The masks of nbops and torch come from different generators, so values cannot match: the case's tolerance
switches the value comparison off (shape and dtype are still checked); tests/test_dropout.py checks the
properties instead.
"""

import math

import numpy as np
import torch.nn.functional as F

import nbops

from ..core import Case

M = N = 4096
BIG = 8192  # cuda: BIG x BIG


def _setup(rng, dtype):
    return (rng.standard_normal((M, N)).astype(dtype),)


def _setup_big(rng, dtype):
    return (rng.standard_normal((BIG, BIG), dtype=np.float32).astype(dtype),)


CASES = [
    Case("dropout p=0.5 4096x4096", "dropout", _setup, lambda x: nbops.dropout(x, 0.5), lambda x: F.dropout(x, 0.5),
         bytes=8.0 * M * N, rtol=0.0, atol=math.inf, targets=("cpu",)),
    Case("dropout p=0.5 8192x8192", "dropout", _setup_big, lambda x: nbops.dropout(x, 0.5),
         lambda x: F.dropout(x, 0.5), bytes=8.0 * BIG * BIG, rtol=0.0, atol=math.inf, targets=("cuda",)),
]
