"""Convolution workloads: ResNet-50 layers at batch 8, a depthwise layer, the 7x7 first layer and two decoder
upsampling layers; on cuda also ResNet layers at batch 32 (the implicit-GEMM targets). FLOPs count 2 per
multiply-add of the direct convolution; bytes count input, weight and output once.

``python -m bench.cases.conv`` prints the accuracy report of the CPU paths of the 3x3 stride-1 layers: the max
relative error (max |y - ref| / max |ref|) of the direct kernel and of Winograd F(4x4, 3x3) in float32 against a
float64 reference, on the bench's inputs (standard-normal input, weights scaled by 1 / sqrt(fan-in)).
"""

import numpy as np
import torch
import torch.nn.functional as F

import nbops

from ..core import Case

N = 8


def _conv_case(name, C, OC, H, K, stride=1, padding=0, groups=1, quick=True, n=N, targets=("cpu", "cuda")):
    OH = (H + 2 * padding - K) // stride + 1

    def setup(rng, dtype):
        x = rng.standard_normal((n, C, H, H)).astype(dtype)
        w = (rng.standard_normal((OC, C // groups, K, K)) / (C // groups * K * K) ** 0.5).astype(dtype)
        return x, w

    kw = dict(stride=stride, padding=padding, groups=groups)
    return Case(
        name=name, family="conv", setup=setup,
        nbops=lambda x, w: nbops.conv2d(x, w, **kw),
        torch=lambda x, w: F.conv2d(x, w, **kw),
        flops=2.0 * n * OC * (C // groups) * K * K * OH * OH,
        bytes=4.0 * (n * C * H * H + OC * C // groups * K * K + n * OC * OH * OH),
        quick=quick, targets=targets,
        rtol=1e-4, atol=1e-4,  # float32 sums of up to 2304 terms in a different order than oneDNN's
    )


def _conv_t_case(name, C, OC, H, K, stride, padding, output_padding=0, quick=True, n=N, targets=("cpu", "cuda")):
    OH = (H - 1) * stride - 2 * padding + K + output_padding

    def setup(rng, dtype):
        x = rng.standard_normal((n, C, H, H)).astype(dtype)
        w = (rng.standard_normal((C, OC, K, K)) / (C * K * K) ** 0.5).astype(dtype)
        return x, w

    kw = dict(stride=stride, padding=padding, output_padding=output_padding)
    return Case(
        name=name, family="conv", setup=setup,
        nbops=lambda x, w: nbops.conv_transpose2d(x, w, **kw),
        torch=lambda x, w: F.conv_transpose2d(x, w, **kw),
        flops=2.0 * n * C * OC * K * K * H * H,
        bytes=4.0 * (n * C * H * H + C * OC * K * K + n * OC * OH * OH),
        quick=quick, targets=targets,
        rtol=1e-4, atol=1e-4,
    )


CASES = [
    _conv_case("conv2d 3x3 C64 56x56 pad1 N8", 64, 64, 56, 3, padding=1),
    _conv_case("conv2d 3x3 C128 28x28 pad1 N8", 128, 128, 28, 3, padding=1, quick=False),
    _conv_case("conv2d 3x3 C256 14x14 pad1 N8", 256, 256, 14, 3, padding=1, quick=False),
    _conv_case("conv2d 1x1 C256->64 56x56 N8", 256, 64, 56, 1),
    _conv_case("conv2d 3x3 s2 C64->128 56x56 pad1 N8", 64, 128, 56, 3, stride=2, padding=1, quick=False),
    _conv_case("conv2d depthwise 3x3 C256 28x28 pad1 N8", 256, 256, 28, 3, padding=1, groups=256),
    _conv_case("conv2d 7x7 s2 C3->64 224x224 pad3 N8", 3, 64, 224, 7, stride=2, padding=3),
    _conv_t_case("conv_transpose2d 4x4 s2 C128->64 28x28 pad1 N8", 128, 64, 28, 4, 2, 1),
    _conv_t_case("conv_transpose2d 3x3 s2 op1 C128->64 28x28 pad1 N8", 128, 64, 28, 3, 2, 1, 1, quick=False),
    # the GPU targets of the implicit-GEMM convolutions: ResNet layers at batch 32
    _conv_case("conv2d 3x3 C64 56x56 pad1 N32", 64, 64, 56, 3, padding=1, n=32, targets=("cuda",)),
    _conv_case("conv2d 3x3 C128 28x28 pad1 N32", 128, 128, 28, 3, padding=1, n=32, targets=("cuda",)),
    _conv_case("conv2d 3x3 C256 14x14 pad1 N32", 256, 256, 14, 3, padding=1, n=32, targets=("cuda",)),
    _conv_case("conv2d 1x1 C256->64 56x56 N32", 256, 64, 56, 1, n=32, targets=("cuda",)),
    _conv_case("conv2d 3x3 s2 C64->128 56x56 pad1 N32", 64, 128, 56, 3, stride=2, padding=1, n=32,
               targets=("cuda",)),
    _conv_case("conv2d 7x7 s2 C3->64 224x224 pad3 N32", 3, 64, 224, 7, stride=2, padding=3, n=32, targets=("cuda",)),
    _conv_case("conv2d depthwise 3x3 C256 28x28 pad1 N32", 256, 256, 28, 3, padding=1, groups=256, n=32,
               targets=("cuda",)),
    _conv_t_case("conv_transpose2d 4x4 s2 C128->64 28x28 pad1 N32", 128, 64, 28, 4, 2, 1, n=32, targets=("cuda",)),
]


def accuracy_report(seed=0):
    """Rows (case name, direct error, Winograd error), float32 against float64: the 3x3 stride-1 conv2d cases
    (direct kernel / F(4x4, 3x3)) and the 4x4 stride-2 padding-1 transposed one (its phase kernels / the phases as
    one 3x3 Winograd layer)."""
    from nbops.cpu import conv as cpu_conv

    rows = []
    for case in CASES:
        transposed = case.name.startswith("conv_transpose2d 4x4 s2") and "cpu" in case.targets
        if not (case.name.startswith("conv2d 3x3 C") or transposed):
            continue
        x, w = case.setup(np.random.default_rng(seed), np.float32)
        x64, w64 = (torch.from_numpy(a.astype(np.float64)) for a in (x, w))
        ref = (F.conv_transpose2d(x64, w64, stride=2, padding=1) if transposed else F.conv2d(x64, w64, padding=1))
        ref = ref.numpy()
        bias = np.zeros(ref.shape[1], np.float32)
        errors = []
        for path in ("direct", "winograd"):
            out = np.empty(ref.shape, np.float32)
            if transposed and path == "direct":
                cpu_conv._transposed(out, x, w, bias, (2, 2), (1, 1), (1, 1), 1)
            elif transposed:
                offs = cpu_conv._phases_as_3x3(4, 4, (2, 2), (1, 1), (1, 1), 1)
                assert cpu_conv._phases_winograd(out, x, w, bias, offs)
            elif path == "direct":
                cpu_conv._direct(out, x, w, bias, (1, 1), (1, 1, 1, 1), (1, 1), 1)
            else:
                assert cpu_conv._winograd(out, x, w, bias, 1, 1)
            errors.append(float(np.abs(out - ref).max() / np.abs(ref).max()))
        rows.append((case.name, *errors))
    return rows


if __name__ == "__main__":
    print("| case | direct | Winograd F(4x4, 3x3) |\n|---|---|---|")
    for name, direct, winograd in accuracy_report():
        print(f"| {name} | {direct:.1e} | {winograd:.1e} |")
