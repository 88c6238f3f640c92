"""Activation workloads: elementwise activations on float32 4096x4096 (64 MiB per array, beyond L3: DRAM-bound),
softmax and log_softmax over the last dim of (8192, 4096) and over dim 1 of (64, 1000, 64). On cuda relu and gelu
run on 8192x8192 instead (256 MiB per array, well past the H200's 60 MB L2), and the inner-dim softmax on
(32, 4096, 256) (128 MiB).

Bytes count the input read once and the output written once. Every case is memory-bound (a few to ~40 flops per
element against 8 bytes moved), so the cases give bytes only and the report shows GB/s.
"""

import numpy as np
import torch
import torch.nn.functional as F

import nbops

from ..core import Case

M = N = 4096
E = M * N
ROWS, COLS = 8192, 4096
INNER = (64, 1000, 64)
BIG = 8192  # the cuda elementwise cases: BIG x BIG
INNER_BIG = (32, 4096, 256)  # the cuda inner-dim softmax


def _one(rng, dtype):
    return (rng.standard_normal((M, N)).astype(dtype),)


def _rows(rng, dtype):
    return (rng.standard_normal((ROWS, COLS)).astype(dtype),)


def _inner(rng, dtype):
    return (rng.standard_normal(INNER).astype(dtype),)


def _one_big(rng, dtype):
    return (rng.standard_normal((BIG, BIG), dtype=np.float32).astype(dtype),)


def _inner_big(rng, dtype):
    return (rng.standard_normal(INNER_BIG, dtype=np.float32).astype(dtype),)


def _elementwise(name, nb, th, quick=True, targets=("cpu", "cuda")):
    return Case(f"{name} 4096x4096", "activation", _one, nb, th, bytes=8.0 * E, quick=quick, targets=targets)


def _elementwise_big(name, nb, th):
    return Case(f"{name} 8192x8192", "activation", _one_big, nb, th, bytes=8.0 * BIG * BIG, targets=("cuda",))


CASES = [
    _elementwise("relu", nbops.relu, F.relu, targets=("cpu",)),
    _elementwise_big("relu", nbops.relu, F.relu),
    _elementwise("leaky_relu", nbops.leaky_relu, F.leaky_relu),
    _elementwise("gelu", nbops.gelu, F.gelu, targets=("cpu",)),
    _elementwise_big("gelu", nbops.gelu, F.gelu),
    _elementwise("gelu tanh", lambda x: nbops.gelu(x, approximate="tanh"),
                 lambda x: F.gelu(x, approximate="tanh")),
    _elementwise("silu", nbops.silu, F.silu),
    _elementwise("sigmoid", nbops.sigmoid, torch.sigmoid),
    _elementwise("tanh", nbops.tanh, torch.tanh),
    _elementwise("softplus", nbops.softplus, F.softplus),
    _elementwise("elu", nbops.elu, F.elu, quick=False),
    _elementwise("mish", nbops.mish, F.mish, quick=False),
    _elementwise("hardswish", nbops.hardswish, F.hardswish, quick=False),
    Case("softmax (8192,4096) dim=-1", "activation", _rows, lambda x: nbops.softmax(x, dim=-1),
         lambda x: F.softmax(x, dim=-1), bytes=8.0 * ROWS * COLS),
    Case("log_softmax (8192,4096) dim=-1", "activation", _rows, lambda x: nbops.log_softmax(x, dim=-1),
         lambda x: F.log_softmax(x, dim=-1), bytes=8.0 * ROWS * COLS),
    Case("softmax (64,1000,64) dim=1", "activation", _inner, lambda x: nbops.softmax(x, dim=1),
         lambda x: F.softmax(x, dim=1), bytes=8.0 * np.prod(INNER)),
    Case("log_softmax (64,1000,64) dim=1", "activation", _inner, lambda x: nbops.log_softmax(x, dim=1),
         lambda x: F.log_softmax(x, dim=1), bytes=8.0 * np.prod(INNER)),
    Case("softmax (32,4096,256) dim=1", "activation", _inner_big, lambda x: nbops.softmax(x, dim=1),
         lambda x: F.softmax(x, dim=1), bytes=8.0 * np.prod(INNER_BIG), targets=("cuda",)),
]
