"""Normalization workloads: batch norm (training and evaluation), instance norm and group norm (G = 32) on a
ResNet-stage activation N32 x C256 x 28 x 28 (25.7 MB float32); layer norm, RMS norm and DyT on transformer rows
(32768, 1024) (134 MB float32, beyond L3); layer norm without weight or bias over all of one sample's C x H x W (one
row of 200,704 values, 0.8 MB: what ``F.layer_norm(x, x.shape[1:])`` does to a batch of one). On cuda only, batch norm also on N64 x C256 x 56 x 56 (205 MB, past the
H200's 60 MB L2, where training's second read of the batch comes from DRAM).

Bytes count the input read once and the output written once (the per-channel parameters are negligible), so GB/s
compares directly with a copy's bandwidth. Torch runs its own kernels (DyT, not in torch, as torch ops:
weight * tanh(alpha * x) + bias).
"""

import math

import torch
import torch.nn.functional as F

import nbops

from ..core import Case

N, C, H = 32, 256, 28
BIG = (64, 256, 56, 56)
ROWS, COLS = 32768, 1024
IMG = N * C * H * H
TOK = ROWS * COLS


def _image(rng, dtype, shape=(N, C, H, H)):
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(C).astype(dtype)
    b = rng.standard_normal(C).astype(dtype)
    rm = rng.standard_normal(C).astype(dtype)
    rv = rng.uniform(0.5, 2.0, C).astype(dtype)
    return x, rm, rv, w, b


def _big_image(rng, dtype):
    return _image(rng, dtype, BIG)


def _tokens(rng, dtype):
    x = rng.standard_normal((ROWS, COLS)).astype(dtype)
    return x, rng.standard_normal(COLS).astype(dtype), rng.standard_normal(COLS).astype(dtype)


def _sample(rng, dtype):
    return (rng.standard_normal((1, C, H, H)).astype(dtype),)


def _torch_dyt(x, w, b):
    return w * torch.tanh(0.5 * x) + b


CASES = [
    Case("batch_norm train N32 C256 28x28", "norm", _image,
         lambda x, rm, rv, w, b: nbops.batch_norm(x, rm, rv, w, b, training=True),
         lambda x, rm, rv, w, b: F.batch_norm(x, rm, rv, w, b, training=True), bytes=8.0 * IMG),
    Case("batch_norm eval N32 C256 28x28", "norm", _image,
         lambda x, rm, rv, w, b: nbops.batch_norm(x, rm, rv, w, b),
         lambda x, rm, rv, w, b: F.batch_norm(x, rm, rv, w, b), bytes=8.0 * IMG),
    Case("batch_norm train N64 C256 56x56", "norm", _big_image,
         lambda x, rm, rv, w, b: nbops.batch_norm(x, rm, rv, w, b, training=True),
         lambda x, rm, rv, w, b: F.batch_norm(x, rm, rv, w, b, training=True), bytes=8.0 * math.prod(BIG),
         targets=("cuda",)),
    Case("batch_norm eval N64 C256 56x56", "norm", _big_image,
         lambda x, rm, rv, w, b: nbops.batch_norm(x, rm, rv, w, b),
         lambda x, rm, rv, w, b: F.batch_norm(x, rm, rv, w, b), bytes=8.0 * math.prod(BIG), targets=("cuda",)),
    Case("instance_norm N32 C256 28x28", "norm", _image,
         lambda x, rm, rv, w, b: nbops.instance_norm(x, weight=w, bias=b),
         lambda x, rm, rv, w, b: F.instance_norm(x, weight=w, bias=b), bytes=8.0 * IMG),
    Case("group_norm G32 N32 C256 28x28", "norm", _image,
         lambda x, rm, rv, w, b: nbops.group_norm(x, 32, w, b),
         lambda x, rm, rv, w, b: F.group_norm(x, 32, w, b), bytes=8.0 * IMG),
    Case("layer_norm (32768,1024)", "norm", _tokens,
         lambda x, w, b: nbops.layer_norm(x, (COLS,), w, b),
         lambda x, w, b: F.layer_norm(x, (COLS,), w, b), bytes=8.0 * TOK),
    Case("layer_norm one row C256 28x28 no affine", "norm", _sample,
         lambda x: nbops.layer_norm(x, x.shape[1:]),
         lambda x: F.layer_norm(x, x.shape[1:]), bytes=8.0 * C * H * H),
    Case("rms_norm (32768,1024)", "norm", _tokens,
         lambda x, w, b: nbops.rms_norm(x, (COLS,), w),
         lambda x, w, b: F.rms_norm(x, (COLS,), w), bytes=8.0 * TOK),
    Case("dyt (32768,1024)", "norm", _tokens,
         lambda x, w, b: nbops.dyt(x, 0.5, w, b), _torch_dyt, bytes=8.0 * TOK),
]
