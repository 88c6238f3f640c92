"""What one call costs on a small input, nbops against torch: ``python -m bench.calls``.

The main report's cases are large enough that the kernels decide them; on small inputs the fixed cost of a call
decides instead (argument checks, views, allocation, the kernel's dispatch, the thread pool), and a model run on
small tensors pays it once per op (the last row: a small MLP through ``nbops.nn``, torch's under ``no_grad``).
This table times that: CPU, float32 NumPy arrays for nbops and the same data as torch tensors, rounds of
interleaved turns as the main report times them (``bench.runner``), median microseconds per call and torch's time
/ nbops' time in the same round.

    python -m bench.calls [--seconds S]
"""

import argparse
import statistics

import numpy as np
import torch
import torch.nn.functional as F

import nbops
import nbops.nn as nn

from .runner import _rounds, _warm_up, prepare, spread


def _mlp():
    """(nbops model, torch model): Linear 64 -> 128, ReLU, LayerNorm, Linear 128 -> 10, Softmax, eval mode, the same
    weights on both sides (``nbops.nn.from_torch``)."""
    torch.manual_seed(0)
    tnn = torch.nn
    model = tnn.Sequential(tnn.Linear(64, 128), tnn.ReLU(), tnn.LayerNorm(128), tnn.Linear(128, 10),
                           tnn.Softmax(-1)).eval()
    return nn.from_torch(model), model


def _inference(model, x):
    with torch.no_grad():
        return model(x)


def _cases(rng):
    """[(name, nbops call, torch call)] on small float32 inputs."""
    def arr(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    x, y, m, img, k = arr(4, 4), arr(4, 4), arr(8, 8), arr(1, 3, 8, 8), arr(4, 3, 3, 3)
    h, w, b, g = arr(8, 64), arr(64, 64), arr(64), arr(64)
    v = arr(1, 64)
    fm, kt, bt = arr(1, 8, 8, 8), arr(8, 4, 3, 3), arr(8, 8, 8)
    ids, table = rng.integers(0, 100, (2, 8)), arr(100, 16)
    t = {name: torch.from_numpy(a) for name, a in dict(x=x, y=y, m=m, img=img, k=k, h=h, w=w, b=b, g=g, v=v, fm=fm,
                                                            kt=kt, bt=bt, ids=ids, table=table).items()}
    mlp = _mlp()
    return [
        ("relu 4x4", lambda: nbops.relu(x), lambda: F.relu(t["x"])),
        ("add 4x4 + 4x4", lambda: nbops.add(x, y), lambda: torch.add(t["x"], t["y"])),
        ("mul 4x4 * 2.0", lambda: nbops.mul(x, 2.0), lambda: torch.mul(t["x"], 2.0)),
        ("matmul 8x8", lambda: nbops.matmul(m, m), lambda: torch.matmul(t["m"], t["m"])),
        ("linear (8,64) -> 64, bias", lambda: nbops.linear(h, w, b), lambda: F.linear(t["h"], t["w"], t["b"])),
        ("softmax 4x4 dim -1", lambda: nbops.softmax(x, -1), lambda: F.softmax(t["x"], -1)),
        ("layer_norm (8,64)", lambda: nbops.layer_norm(h, (64,), g, b),
         lambda: F.layer_norm(t["h"], (64,), t["g"], t["b"])),
        ("sum 4x4 dim 1", lambda: nbops.sum(x, 1), lambda: torch.sum(t["x"], 1)),
        ("conv2d 1x3x8x8, 4x3x3x3 pad 1", lambda: nbops.conv2d(img, k, padding=1),
         lambda: F.conv2d(t["img"], t["k"], padding=1)),
        ("conv_transpose2d 1x8x8x8, 8x4x3x3 s2 pad 1", lambda: nbops.conv_transpose2d(fm, kt, stride=2, padding=1),
         lambda: F.conv_transpose2d(t["fm"], t["kt"], stride=2, padding=1)),
        ("max_pool2d 2x2 1x8x8x8", lambda: nbops.max_pool2d(fm, 2), lambda: F.max_pool2d(t["fm"], 2)),
        ("bmm 8x(8x8)", lambda: nbops.bmm(bt, bt), lambda: torch.bmm(t["bt"], t["bt"])),
        ("embedding (2,8) ids, 100x16", lambda: nbops.embedding(ids, table), lambda: F.embedding(t["ids"], t["table"])),
        ("argmax (8,64) dim 1", lambda: nbops.argmax(h, 1), lambda: torch.argmax(t["h"], 1)),
        ("cat 2x(8,64)", lambda: nbops.cat([h, h]), lambda: torch.cat([t["h"], t["h"]])),
        ("clamp (8,64) -1..1", lambda: nbops.clamp(h, -1, 1), lambda: torch.clamp(t["h"], -1, 1)),
        ("permute 4x4 (1, 0)", lambda: nbops.permute(x, (1, 0)), lambda: torch.permute(t["x"], (1, 0))),
        ("MLP 64-128-10 forward, batch 1 (nn modules)", lambda: mlp[0](v), lambda: _inference(mlp[1], t["v"])),
    ]


def measure(seconds=0.3):
    """[(case, nbops us, torch us, x torch, spread)]: medians over rounds, the ratio per round then its median."""
    prepare("cpu")
    rows = []
    for name, nb, th in _cases(np.random.default_rng(0)):
        providers = {"nbops": (nb, ()), "torch": (th, ())}
        _warm_up(providers, "cpu")
        samples = _rounds(providers, "cpu", seconds)
        ratios = [t / n for n, t in zip(samples["nbops"], samples["torch"])]
        rows.append((name, statistics.median(samples["nbops"]) * 1e6, statistics.median(samples["torch"]) * 1e6,
                     statistics.median(ratios), max(spread(s) for s in samples.values())))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.calls", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=0.3, help="timing budget per provider and case")
    args = p.parse_args(argv)
    print(f"threads: nbops/numba {nbops.get_num_threads()}, torch {torch.get_num_threads()}")
    print("| case | nbops us | torch us | x torch | spread % |\n|---|---|---|---|---|")
    for name, nb, th, ratio, sp in measure(args.seconds):
        print(f"| {name} | {nb:.1f} | {th:.1f} | {ratio:.2f} | {100 * sp:.0f} |")


if __name__ == "__main__":
    main()
