"""Sweep the CUDA GEMM core's variants on a real GPU and print one table (TFLOP/s, and x torch).

    python scripts/gpu_gemm_sweep.py

Rows: matmul 4096^3, linear 8192x1024 -> 4096 (W^T read in place) and bmm 1024 x 128^3 on the 128x128 and 128x64
float32 tiles and on the 128x128 tile built with max_registers=128 (two blocks an SM; ptxas spills 12 bytes), then
two ResNet convolutions on the 128x128 and 128x64 implicit-GEMM tiles, each against torch (cuBLAS / cuDNN, TF32
off). Device time from CUDA events around back-to-back launches on the default stream; inputs are torch CUDA
tensors read in place. Each row prints as it lands; about 30 s on an H200, most of it compiling the variants.
"""

import time

import numpy as np
import torch
import torch.nn.functional as F
from numba import cuda

import nbops
from nbops.cuda import conv as C
from nbops.cuda import linear as L

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def device_ms(fn, budget_ms=30.0):
    """Median device milliseconds of one ``fn()`` call over 3 rounds of back-to-back calls."""
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    calls = max(1, min(200, int(budget_ms / max(start.elapsed_time(end), 1e-3))))
    times = []
    for _ in range(3):
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / calls)
    return float(np.median(times))


def gemm_call(kernel, tile, out, a, b):
    """A launch of a GEMM ``kernel`` built for ``tile`` on numba views of torch tensors (as ``gemm_launch``)."""
    BATCH, M, N = out.shape
    item = 4
    p = (BATCH, M, N, a.shape[2], 0, 0, int(a.strides[2] == item or a.strides[1] != item),
         int(b.strides[2] == item or b.strides[1] != item))
    bias = out.reshape(out.size)[:1]
    grid = L.gemm_grid(BATCH, M, N, tile)
    return lambda: kernel[grid, L.THREADS, 0](out, a, b, bias, np.float32(1), np.float32(0), p)


def gemm_rows():
    f32 = np.dtype(np.float32)
    capped = cuda.jit(max_registers=128)(L._matmul_kernel[(f32, 8, 8)].py_func)
    variants = [(f"{tm * 16}x{tn * 16}", (tm, tn), L._matmul_kernel[(f32, tm, tn)]) for tm, tn in L.TILES[f32][:2]]
    variants.append(("128x128 maxreg128", (8, 8), capped))
    shapes = [  # name, A (BATCH, M, K), B (BATCH, K, N) as torch tensors, torch reference
        ("matmul 4096^3", (1, 4096, 4096), (1, 4096, 4096), False),
        ("linear 8192x1024 -> 4096", (1, 8192, 1024), (1, 4096, 1024), True),  # B = W^T, read in place
        ("bmm 1024 x 128^3", (1024, 128, 128), (1024, 128, 128), False),
    ]
    rows = []
    for name, sa, sb, transposed in shapes:
        ta = torch.randn(sa, device="cuda")
        tb = torch.randn(sb, device="cuda")
        tbv = tb.transpose(1, 2) if transposed else tb
        flops = 2.0 * sa[0] * sa[1] * sa[2] * tbv.shape[2]
        ref = device_ms(lambda: torch.matmul(ta, tbv))
        out = torch.empty((sa[0], sa[1], tbv.shape[2]), device="cuda")
        a, b, o = cuda.as_cuda_array(ta), cuda.as_cuda_array(tbv), cuda.as_cuda_array(out)
        for label, tile, kernel in variants:
            t0 = time.perf_counter()
            ms = device_ms(gemm_call(kernel, tile, o, a, b))
            err = (out - torch.matmul(ta, tbv)).abs().max().item()
            rows.append((name, label, ms, flops / ms / 1e9, ref / ms, err, time.perf_counter() - t0))
            show(rows[-1])


def conv_rows():
    shapes = [  # name, input, weight, kwargs
        ("conv2d 3x3 C64 56^2 N32", (32, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
        ("conv2d 3x3 C256 14^2 N32", (32, 256, 14, 14), (256, 256, 3, 3), dict(padding=1)),
    ]
    rows = []
    choose = C.tile_for
    try:
        for name, sx, sw, kw in shapes:
            x, w = torch.randn(sx, device="cuda"), torch.randn(sw, device="cuda") / 10
            oh = F.conv2d(x, w, **kw).shape[2]
            flops = 2.0 * sx[0] * sw[0] * sw[1] * sw[2] * sw[3] * oh * oh
            ref = device_ms(lambda: F.conv2d(x, w, **kw))
            for tile in ((8, 8), (8, 4)):
                C.tile_for = lambda *args, t=tile: t
                t0 = time.perf_counter()
                ms = device_ms(lambda: nbops.conv2d(x, w, **kw))
                err = (nbops.conv2d(x, w, **kw) - F.conv2d(x, w, **kw)).abs().max().item()
                rows.append((name, f"{tile[0] * 16}x{tile[1] * 16}", ms, flops / ms / 1e9, ref / ms, err,
                             time.perf_counter() - t0))
                show(rows[-1])
    finally:
        C.tile_for = choose


def show(row):
    name, label, ms, tflops, ratio, err, secs = row
    print(f"| {name} | {label} | {ms:.3f} | {tflops:.1f} | {ratio:.2f} | {err:.1e} | {secs:.1f} |", flush=True)


def main():
    start = time.perf_counter()
    print(f"# GEMM core sweep on {torch.cuda.get_device_name()}, float32, TF32 off")
    print("| case | variant | ms | TFLOP/s | x torch | max abs err | s (incl. compile) |")
    print("|---|---|---|---|---|---|---|", flush=True)
    gemm_rows()
    conv_rows()
    print(f"# {time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
