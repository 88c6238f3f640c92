"""Kernel device time of the CUDA norms, pooling and embedding against torch's kernels, on a real GPU.

    python scripts/gpu_norm_kernels.py [name-filter ...]

The bench's per-call device time is bounded below by the host's launch cost while that is larger than the kernels
(hundreds of us per nbops call today); this script sums the device time of the kernels each call queued, as CUPTI
records them (torch.profiler, CUDA activity), so the kernels can be tuned apart from the launch path. One row per
case: us per call, GB/s (each input read once, each output written once, as the bench counts) and x torch; below
it, nbops' kernels with their us per call. Inputs are torch CUDA tensors, float32. 40-60 s on an H200, most of
it compiling.
"""

import sys

import torch
import torch.nn.functional as F
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

import nbops

CALLS = 10


def _walked(call):
    """``call()`` with nbops' 3 x 3 max-pool and 2 x 2 average-pool fast paths off (the general tap loops)."""
    from nbops.cuda import pooling

    pooling.TAPS_3X3 = pooling.TAPS_2X2 = False
    try:
        return call()
    finally:
        pooling.TAPS_3X3 = pooling.TAPS_2X2 = True


def _one_pass(call):
    """``call()`` with the norm planes and embedding rows laid out as before PLANE_ROUNDS / ROW_PASSES: the widest
    thread group that gives each thread one four-load pass."""
    from nbops.cuda import embedding, norm

    norm.PLANE_ROUNDS = embedding.ROW_PASSES = 1
    try:
        return call()
    finally:
        norm.PLANE_ROUNDS = embedding.ROW_PASSES = 4


def _block_rows(call):
    """``call()`` with rows of up to 1024 values on a block of TPB_ROWS threads each (WARP_ROW_MAX = 512), not a
    warp: the second read of a row then comes from L1 (8 blocks x 4 KB an SM) rather than L2."""
    from nbops.cuda import norm

    norm.WARP_ROW_MAX = 512
    try:
        return call()
    finally:
        norm.WARP_ROW_MAX = 1024


def _unsplit(call):
    """``call()`` with group norm's long rows on one block each (no split over blocks)."""
    from nbops.cuda import norm

    keep = norm.ROW_CHUNK_MIN
    norm.ROW_CHUNK_MIN = 1 << 62
    try:
        return call()
    finally:
        norm.ROW_CHUNK_MIN = keep


def _cases():
    torch.manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, device="cuda")

    img, big, sd = r(32, 256, 28, 28), r(64, 256, 56, 56), r(1, 320, 64, 64)
    w, b, rm, rv = r(256), r(256), r(256), torch.rand(256, device="cuda") + 0.5
    tok, tw, tb = r(32768, 1024), r(1024), r(1024)
    stem, head = r(32, 64, 112, 112), r(32, 2048, 7, 7)
    ids, table = torch.randint(0, 50000, (32, 512), device="cuda"), r(50000, 768)
    pooled = 32 * 64 * 56 * 56
    rows, image, batch, stem_b = 8 * tok.numel(), 8 * img.numel(), 8 * big.numel(), 4 * (stem.numel() + pooled)
    return [
        ("max_pool2d 3x3 s2 p1 (32,64,112,112)", lambda m: m.max_pool2d(stem, 3, 2, 1), stem_b),
        ("max_pool2d, taps walked (TAPS_3X3 off)", lambda m: _walked(lambda: m.max_pool2d(stem, 3, 2, 1)), stem_b),
        ("avg_pool2d 2x2 (32,64,112,112)", lambda m: m.avg_pool2d(stem, 2, 2), stem_b),
        ("avg_pool2d, taps walked (TAPS_2X2 off)", lambda m: _walked(lambda: m.avg_pool2d(stem, 2, 2)), stem_b),
        ("layer_norm (32768,1024)", lambda m: m.layer_norm(tok, (1024,), tw, tb), rows),
        ("layer_norm, block per row", lambda m: _block_rows(lambda: m.layer_norm(tok, (1024,), tw, tb)), rows),
        ("rms_norm (32768,1024)", lambda m: m.rms_norm(tok, (1024,), tw), rows),
        ("rms_norm, block per row", lambda m: _block_rows(lambda: m.rms_norm(tok, (1024,), tw)), rows),
        ("batch_norm train (32,256,28,28)", lambda m: m.batch_norm(img, rm, rv, w, b, training=True), image),
        ("batch_norm train (32,256,28,28), 1 pass", lambda m: _one_pass(lambda: m.batch_norm(img, rm, rv, w, b, True)),
         image),
        ("batch_norm eval (32,256,28,28)", lambda m: m.batch_norm(img, rm, rv, w, b), image),
        ("batch_norm eval (32,256,28,28), 1 pass", lambda m: _one_pass(lambda: m.batch_norm(img, rm, rv, w, b)),
         image),
        ("embedding 50000x768, 32x512 ids", lambda m: m.embedding(ids, table), 8 * ids.numel() * 768),
        ("embedding, 1 pass", lambda m: _one_pass(lambda: m.embedding(ids, table)), 8 * ids.numel() * 768),
        ("group_norm G32 (1,320,64,64), split rows", lambda m: m.group_norm(sd, 32), 8 * sd.numel()),
        ("group_norm G32 (1,320,64,64), one block a row", lambda m: _unsplit(lambda: m.group_norm(sd, 32)),
         8 * sd.numel()),
        ("batch_norm train (64,256,56,56)", lambda m: m.batch_norm(big, rm, rv, w, b, training=True), batch),
        ("batch_norm eval (64,256,56,56)", lambda m: m.batch_norm(big, rm, rv, w, b), batch),
        ("group_norm G32 (32,256,28,28)", lambda m: m.group_norm(img, 32, w, b), image),
        ("instance_norm (32,256,28,28)", lambda m: m.instance_norm(img, weight=w, bias=b), image),
        ("dyt (32768,1024)", lambda m: m.dyt(tok, 0.5, tw, tb) if m is nbops else tw * torch.tanh(0.5 * tok) + tb,
         rows),
        ("max_pool2d +indices", lambda m: m.max_pool2d(stem, 3, 2, 1, return_indices=True), stem_b + 8 * pooled),
        ("adaptive_avg_pool2d ->1 (32,2048,7,7)", lambda m: m.adaptive_avg_pool2d(head, 1), 4 * head.numel()),
    ]


def kernel_us(fn):
    """{kernel name: device us per call} of ``fn()``, from CALLS profiled calls after two warm-up calls."""
    fn()
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(CALLS):
            fn()
        torch.cuda.synchronize()
    out = {}
    for e in prof.events():
        if e.device_type == DeviceType.CUDA:
            name = e.name.split("[")[0]
            out[name] = out.get(name, 0.0) + e.device_time / CALLS
    return out


def main(filters):
    print(f"{'case':40s} {'nbops us':>9s} {'GB/s':>6s} {'torch us':>9s} {'GB/s':>6s} {'x torch':>7s}")
    for name, fn, nbytes in _cases():
        if filters and not any(f in name for f in filters):
            continue
        ours, theirs = kernel_us(lambda: fn(nbops)), kernel_us(lambda: fn(F))
        t_ours, t_theirs = sum(ours.values()), sum(theirs.values())
        print(f"{name:40s} {t_ours:9.1f} {nbytes / t_ours / 1e3:6.0f} {t_theirs:9.1f} {nbytes / t_theirs / 1e3:6.0f}"
              f" {t_theirs / t_ours:7.2f}", flush=True)
        for kname, us in ours.items():
            print(f"    {us:8.1f}  {kname}")


if __name__ == "__main__":
    main(sys.argv[1:])
