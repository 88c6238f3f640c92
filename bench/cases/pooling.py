"""Pooling workloads (ResNet-50 shapes): the stem's max_pool2d 3x3 s2 p1 and a 2x2 s2 avg_pool2d on N32 C64 112x112
(103 MB in, 26 MB out: DRAM-bound), and global average pooling (adaptive_avg_pool2d -> 1) on N32 C2048 7x7.

Bytes count the input read once and the output (and indices) written once; flops are negligible, so the report
shows GB/s.
"""

import torch.nn.functional as F

import nbops

from ..core import Case

STEM = (32, 64, 112, 112)
HEAD = (32, 2048, 7, 7)


def _stem(rng, dtype):
    return (rng.standard_normal(STEM).astype(dtype),)


def _head(rng, dtype):
    return (rng.standard_normal(HEAD).astype(dtype),)


def _bytes(shape, out_hw, per_out=4):
    N, C, H, W = shape
    return 4.0 * N * C * H * W + per_out * N * C * out_hw[0] * out_hw[1]


CASES = [
    Case("max_pool2d 3x3 s2 p1 N32 C64 112^2", "pooling", _stem,
         lambda x: nbops.max_pool2d(x, 3, 2, 1), lambda x: F.max_pool2d(x, 3, 2, 1), bytes=_bytes(STEM, (56, 56))),
    Case("max_pool2d 3x3 s2 p1 +indices N32 C64 112^2", "pooling", _stem,
         lambda x: nbops.max_pool2d(x, 3, 2, 1, return_indices=True),
         lambda x: F.max_pool2d(x, 3, 2, 1, return_indices=True), bytes=_bytes(STEM, (56, 56), 12), quick=False),
    Case("avg_pool2d 2x2 s2 N32 C64 112^2", "pooling", _stem,
         lambda x: nbops.avg_pool2d(x, 2, 2), lambda x: F.avg_pool2d(x, 2, 2), bytes=_bytes(STEM, (56, 56))),
    Case("adaptive_avg_pool2d ->1 N32 C2048 7^2", "pooling", _head,
         lambda x: nbops.adaptive_avg_pool2d(x, 1), lambda x: F.adaptive_avg_pool2d(x, 1), bytes=_bytes(HEAD, (1, 1))),
]
