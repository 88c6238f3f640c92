"""Dropout workload: elementwise dropout p=0.5 on float32 4096x4096 (64 MiB in, 64 MiB out: DRAM-bound).

The masks of nbops and torch come from different generators, so values cannot match: the case's tolerance
switches the value comparison off (shape and dtype are still checked); tests/test_dropout.py checks the
properties instead.
"""

import math

import torch.nn.functional as F

import nbops

from ..core import Case

M = N = 4096


def _setup(rng, dtype):
    return (rng.standard_normal((M, N)).astype(dtype),)


CASES = [
    Case("dropout p=0.5 4096x4096", "dropout", _setup, lambda x: nbops.dropout(x, 0.5), lambda x: F.dropout(x, 0.5),
         bytes=8.0 * M * N, rtol=0.0, atol=math.inf),
]
