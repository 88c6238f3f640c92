"""Whole-network workloads: ResNet-18 forward at batch 8, 224x224 (as is, and with every BatchNorm folded into its
convolution by each framework's ``fuse_conv_bn_eval``) and a Transformer encoder layer (BERT-base sizes:
d_model 768, 12 heads, FFN 3072, GELU) on (8, 512, 768), nbops vs torch with the same weights (the nbops model is
converted from the torch one with ``nbops.nn.from_torch``), eval mode, float32.

FLOPs count 2 per multiply-add of the convolutions, linear layers and attention products. Run this module for a
per-layer-type breakdown of one forward (forward hooks on the leaf modules, both frameworks; torch's eval-mode fast
path for TransformerEncoderLayer runs as one fused call, so its time lands in the "between modules" row):

    python -m bench.cases.models [resnet18|resnet18_fused|encoder] [--repeat 3]
"""

import argparse
import copy
import time
from collections import defaultdict

import numpy as np
import torch

import nbops.nn as nn

from ..core import Case

RESNET_N, RESNET_HW = 8, 224
ENC_N, ENC_L, ENC_E, ENC_H, ENC_FF = 8, 512, 768, 12, 3072

_cache = {}


def _torch_resnet18():
    """torchvision's resnet18 when installed, else the same architecture (and state_dict keys) built here."""
    try:
        from torchvision.models import resnet18

        return resnet18()
    except ImportError:
        pass
    tnn = torch.nn

    class BasicBlock(tnn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.relu = tnn.ReLU(inplace=True)
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    class ResNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = tnn.BatchNorm2d(64)
            self.relu = tnn.ReLU(inplace=True)
            self.maxpool = tnn.MaxPool2d(3, 2, 1)
            widths = [64, 128, 256, 512]
            for i, w in enumerate(widths):
                cin = widths[max(i - 1, 0)]
                setattr(self, f"layer{i + 1}", tnn.Sequential(BasicBlock(cin, w, 1 if i == 0 else 2),
                                                              BasicBlock(w, w, 1)))
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.fc = tnn.Linear(512, 1000)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    BasicBlock.__module__ = ResNet.__module__ = "torchvision.models.resnet"  # so from_torch recognises them
    return ResNet()


def _fuse_resnet(model, fuse, identity):
    """Fold every BatchNorm of a ResNet (torch's or nbops') into the convolution before it, in place."""
    pairs = [(model, "conv1", "bn1")]
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in layer:
            pairs += [(block, "conv1", "bn1"), (block, "conv2", "bn2")]
            if block.downsample is not None:
                pairs.append((block.downsample, "0", "1"))
    for parent, conv, bn in pairs:
        setattr(parent, conv, fuse(getattr(parent, conv), getattr(parent, bn)))
        setattr(parent, bn, identity())
    return model


def _build(name):
    """(torch model, nbops model) with identical weights, eval mode; built once per process."""
    if name not in _cache:
        torch.manual_seed(0)
        if name == "resnet18_fused":
            from torch.nn.utils.fusion import fuse_conv_bn_eval as torch_fuse

            from nbops.nn.utils import fuse_conv_bn_eval

            t = copy.deepcopy(_build("resnet18")[0])
            n = nn.from_torch(t).eval()
            _cache[name] = (_fuse_resnet(t, torch_fuse, torch.nn.Identity).eval(),
                            _fuse_resnet(n, fuse_conv_bn_eval, nn.Identity))
            return _cache[name]
        if name == "resnet18":
            t = _torch_resnet18()
        else:
            t = torch.nn.TransformerEncoderLayer(ENC_E, ENC_H, ENC_FF, dropout=0.0, activation="gelu",
                                                 batch_first=True)
        t.eval()
        _cache[name] = (t, nn.from_torch(t).eval())
    return _cache[name]


def _on_device(name, x):
    """The models of ``name``, each moved to where ``x`` lives (a torch tensor or an nbops-side array)."""
    t, n = _build(name)
    if isinstance(x, torch.Tensor):
        return t.to(x.device)
    return n.to("cpu" if isinstance(x, np.ndarray) else "cuda")


def _run_torch(name):
    def run(x):
        with torch.no_grad():
            return _on_device(name, x)(x)

    return run


def _run_nbops(name):
    def run(x):  # nbops' model, on the cpu for host arrays, on cuda for torch CUDA tensors and numba arrays
        host = isinstance(x, np.ndarray) or (isinstance(x, torch.Tensor) and x.device.type == "cpu")
        return _build(name)[1].to("cpu" if host else "cuda")(x)

    return run


def _resnet_setup(rng, dtype):
    _build("resnet18")
    return (rng.standard_normal((RESNET_N, 3, RESNET_HW, RESNET_HW)).astype(dtype),)


def _resnet_setup_n(n):
    def setup(rng, dtype):
        _build("resnet18")
        return (rng.standard_normal((n, 3, RESNET_HW, RESNET_HW)).astype(dtype),)

    return setup


def _resnet_fused_setup(rng, dtype):
    _build("resnet18_fused")
    return (rng.standard_normal((RESNET_N, 3, RESNET_HW, RESNET_HW)).astype(dtype),)


def _encoder_setup(rng, dtype):
    _build("encoder")
    return (rng.standard_normal((ENC_N, ENC_L, ENC_E)).astype(dtype),)


RESNET18_GFLOP_PER_IMAGE = 2 * 1.814  # multiply-adds of torchvision's resnet18 at 224x224
_T = ENC_N * ENC_L
ENCODER_FLOPS = 2.0 * (4 * _T * ENC_E * ENC_E + 2 * _T * ENC_E * ENC_FF + 2 * ENC_N * ENC_L * ENC_L * ENC_E)

CASES = [
    Case(
        name=f"resnet18 forward N{RESNET_N} {RESNET_HW}x{RESNET_HW} eval", family="models", setup=_resnet_setup,
        nbops=_run_nbops("resnet18"), torch=_run_torch("resnet18"),
        flops=RESNET18_GFLOP_PER_IMAGE * 1e9 * RESNET_N,
        bytes=4.0 * (RESNET_N * 3 * RESNET_HW ** 2 + 11689512 + RESNET_N * 1000),
        quick=False,
        rtol=1e-3, atol=1e-3,  # 20 float32 layers, each summing up to 4608 terms in another order than oneDNN
    ),
    Case(  # the GPU target: batch 32
        name=f"resnet18 forward N32 {RESNET_HW}x{RESNET_HW} eval", family="models", setup=_resnet_setup_n(32),
        nbops=_run_nbops("resnet18"), torch=_run_torch("resnet18"),
        flops=RESNET18_GFLOP_PER_IMAGE * 1e9 * 32,
        bytes=4.0 * (32 * 3 * RESNET_HW ** 2 + 11689512 + 32 * 1000),
        quick=False, targets=("cuda",),
        rtol=1e-3, atol=1e-3,
    ),
    Case(
        name=f"resnet18 forward N{RESNET_N} {RESNET_HW}x{RESNET_HW} eval, conv+BN fused on both sides",
        family="models", setup=_resnet_fused_setup,
        nbops=_run_nbops("resnet18_fused"), torch=_run_torch("resnet18_fused"),
        flops=RESNET18_GFLOP_PER_IMAGE * 1e9 * RESNET_N,
        bytes=4.0 * (RESNET_N * 3 * RESNET_HW ** 2 + 11689512 + RESNET_N * 1000),
        quick=False,
        rtol=1e-3, atol=1e-3,
    ),
    Case(
        name=f"transformer encoder layer ({ENC_N}, {ENC_L}, {ENC_E}) h{ENC_H} ff{ENC_FF} eval", family="models",
        setup=_encoder_setup, nbops=_run_nbops("encoder"), torch=_run_torch("encoder"),
        flops=ENCODER_FLOPS,
        bytes=4.0 * (2 * _T * ENC_E + 4 * ENC_E * ENC_E + 2 * ENC_E * ENC_FF),
        quick=False,
        rtol=1e-3, atol=1e-3,  # sums of 768-3072 float32 terms through two residual blocks
    ),
]


OUTER = "(outermost timed modules)"
GLUE = "functional ops between modules (residual add, flatten, ...)"


def breakdown(name, repeat=3):
    """Median seconds per leaf-module type over ``repeat`` forwards, for nbops and torch: {type: (nbops, torch)}."""
    t, n = _build(name)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((RESNET_N, 3, RESNET_HW, RESNET_HW)) if name.startswith("resnet18")
         else rng.standard_normal((ENC_N, ENC_L, ENC_E))).astype(np.float32)
    leaf_types = {type(m).__name__ for m in n.modules() if not list(m.children())} | {"MultiheadAttention"}

    def timed(model, arg, is_torch):
        totals = defaultdict(list)
        starts = {}

        def pre(m, args):
            starts[id(m)] = time.perf_counter()

        def post(m, args, out):
            dt = time.perf_counter() - starts.pop(id(m))
            totals[type(m).__name__].append(dt)
            if not starts:  # an outermost timed module: what is left of the forward is glue between modules
                totals[OUTER].append(dt)

        handles = []
        for m in model.modules():
            name_ = type(m).__name__
            if name_ in leaf_types or name_ == "NonDynamicallyQuantizableLinear":
                handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
        runs = []
        for _ in range(repeat + 1):  # the first forward compiles / warms up
            totals.clear()
            t0 = time.perf_counter()
            if is_torch:
                with torch.no_grad():
                    model(arg)
            else:
                model(arg)
            total = time.perf_counter() - t0
            per = {k: sum(v) for k, v in totals.items()}
            per[GLUE] = total - per.pop(OUTER, 0.0)
            runs.append((total, per))
        for h in handles:
            h.remove()
        runs = sorted(runs[1:], key=lambda r: r[0])
        return runs[len(runs) // 2]

    total_n, per_n = timed(n, x, False)
    total_t, per_t = timed(t, torch.from_numpy(x), True)
    per_t["Linear"] = per_t.get("Linear", 0.0) + per_t.pop("NonDynamicallyQuantizableLinear", 0.0)
    return total_n, per_n, total_t, per_t


def main():
    p = argparse.ArgumentParser(prog="python -m bench.cases.models", description="per-layer-type forward times")
    p.add_argument("models", nargs="*", default=["resnet18", "encoder"])
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    for name in args.models:
        total_n, per_n, total_t, per_t = breakdown(name, args.repeat)
        print(f"\n{name}: nbops {total_n * 1e3:.1f} ms, torch {total_t * 1e3:.1f} ms, "
              f"speed-up {total_t / total_n:.2f}x (median of {args.repeat}; nested modules count in their parents)")
        print("| layer type | nbops ms | torch ms | speed-up |\n|---|---:|---:|---:|")
        for key in sorted(set(per_n) | set(per_t), key=lambda k: -per_n.get(k, 0.0)):
            a, b = per_n.get(key, 0.0), per_t.get(key, 0.0)
            ratio = f"{b / a:.2f}x" if a > 0 and b > 0 else "-"
            print(f"| {key} | {a * 1e3:.1f} | {b * 1e3:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
