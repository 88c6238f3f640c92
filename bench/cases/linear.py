"""Matrix-product workloads: square matmuls from 256 to 2048 (4096 on cuda, against cuBLAS with TF32 off, torch's
default), a tall-skinny outer-product-like matmul, a batch of small matrices, and a transformer-sized linear layer;
on cuda also the GEMM core's targets (tall-skinny 16384x64 @ 64x16384, bmm 256 x 128^3, linear 8192x1024 -> 4096).
FLOPs count 2 per multiply-add; bytes count every operand once and the output once (float32)."""

import numpy as np
import torch
import torch.nn.functional as F

import nbops

from ..core import Case


def _matmul_case(name, M, K, N, quick=True, targets=("cpu", "cuda")):
    def setup(rng, dtype):
        return rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)

    return Case(
        name=name, family="linear", setup=setup,
        nbops=nbops.matmul, torch=torch.matmul, numpy=lambda a, b: a @ b,
        flops=2.0 * M * K * N, bytes=4.0 * (M * K + K * N + M * N),
        quick=quick, targets=targets,
        rtol=1e-4, atol=1e-3 * K ** 0.5,  # float32 sums of K terms in another order than the BLAS's
    )


def _tall_out_setup(rng, dtype):
    a, b = rng.standard_normal((8192, 64)).astype(dtype), rng.standard_normal((64, 8192)).astype(dtype)
    return a, b, np.empty((8192, 8192), dtype)


def _linear_setup(rng, dtype, M=128):
    x = rng.standard_normal((M, 1024)).astype(dtype)
    w = (rng.standard_normal((4096, 1024)) / 32).astype(dtype)
    return x, w, rng.standard_normal(4096).astype(dtype)


def _bmm_case(name, B, S, quick=True, targets=("cpu", "cuda")):
    def setup(rng, dtype):
        return rng.standard_normal((B, S, S)).astype(dtype), rng.standard_normal((B, S, S)).astype(dtype)

    return Case(
        name=name, family="linear", setup=setup,
        nbops=nbops.bmm, torch=torch.bmm, numpy=lambda a, b: a @ b,
        flops=2.0 * B * S ** 3, bytes=4.0 * 3 * B * S * S,
        quick=quick, targets=targets,
        rtol=1e-4, atol=1e-3 * S ** 0.5,
    )


CASES = [
    _matmul_case("matmul 256^3", 256, 256, 256),
    _matmul_case("matmul 512^3", 512, 512, 512),
    _matmul_case("matmul 1024^3", 1024, 1024, 1024),
    _matmul_case("matmul 2048^3", 2048, 2048, 2048, quick=False),
    _matmul_case("matmul 4096^3", 4096, 4096, 4096, quick=False, targets=("cuda",)),
    _matmul_case("matmul tall-skinny 8192x64 @ 64x8192", 8192, 64, 8192, quick=False),
    Case(  # the same with the 256 MiB output preallocated: no first-touch page faults in the timed call
        name="matmul tall-skinny 8192x64 @ 64x8192 out=", family="linear", setup=_tall_out_setup,
        nbops=lambda a, b, o: nbops.matmul(a, b, out=o), torch=lambda a, b, o: torch.matmul(a, b, out=o),
        numpy=lambda a, b, o: np.matmul(a, b, out=o),
        flops=2.0 * 8192 * 64 * 8192, bytes=4.0 * (2 * 8192 * 64 + 8192 * 8192),
        quick=False, rtol=1e-4, atol=1e-2,
    ),
    _bmm_case("bmm 64 x (128^3)", 64, 128),
    Case(
        name="linear 128x1024 -> 4096 (+bias)", family="linear", setup=_linear_setup,
        nbops=nbops.linear, torch=F.linear, numpy=lambda x, w, b: x @ w.T + b,
        flops=2.0 * 128 * 1024 * 4096, bytes=4.0 * (128 * 1024 + 4096 * 1024 + 4096 + 128 * 4096),
        rtol=1e-4, atol=1e-3 * 1024 ** 0.5,
    ),
    # the GPU GEMM core's targets
    _matmul_case("matmul tall-skinny 16384x64 @ 64x16384", 16384, 64, 16384, quick=False, targets=("cuda",)),
    _bmm_case("bmm 256 x (128^3)", 256, 128, quick=False, targets=("cuda",)),
    Case(
        name="linear 8192x1024 -> 4096 (+bias)", family="linear",
        setup=lambda rng, dtype: _linear_setup(rng, dtype, M=8192),
        nbops=nbops.linear, torch=F.linear,
        flops=2.0 * 8192 * 1024 * 4096, bytes=4.0 * (8192 * 1024 + 4096 * 1024 + 4096 + 8192 * 4096),
        quick=False, targets=("cuda",),
        rtol=1e-4, atol=1e-3 * 1024 ** 0.5,
    ),
]
