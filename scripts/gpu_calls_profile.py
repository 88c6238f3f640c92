"""Where an nbops call on torch CUDA tensors spends its host time (run on a GPU machine; ~30 s on an H200).

1. Host and device us per call, pipelined (back-to-back calls, no sync inside; CUDA events around each round), of
   relu 4x4, add 64x64, softmax, layer_norm and sum over dim 1 on (64, 257), nbops against torch on the same tensors.
2. The pieces of the call path, each timed alone in a loop: torch's own costs (empty_like, the array interface, the
   current stream), numba's import of a tensor (``as_cuda_array``), its typing of a device array (``typeof``), the
   launch of a trivial kernel through the dispatcher, through the compiled kernel's ``launch``, through
   ``nbops.cuda._launch.launch``, through ``driver.launch_kernel`` with prepared parameters and through libcuda's
   ``cuLaunchKernel`` by ctypes (the floor); nbops' ``Call``, ``native``, ``empty`` and ``wrap``.
3. cProfile of 2000 calls each of nbops.relu and nbops.add: the functions by own time and by cumulative time.

    python scripts/gpu_calls_profile.py    # scripts/gpu-check.sh runs it as its calls_profile stage
"""

import cProfile
import io
import pstats
import statistics
import sys
import time
import traceback

import numba
import torch
from numba import cuda

import nbops
from nbops import _arrays, _dispatch

ROUNDS, CALLS = 5, 400  # per measured row: median over ROUNDS of the mean over CALLS back-to-back calls
PROFILED_CALLS = 2000


def per_call(fn, calls=CALLS, rounds=ROUNDS):
    """(host us, device us) per call, medians over rounds of ``calls`` back-to-back calls started on an idle GPU."""
    fn()
    host, device = [], []
    for _ in range(rounds):
        torch.cuda.synchronize()
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        host.append((time.perf_counter() - t0) / calls * 1e6)
        stop.record()
        stop.synchronize()
        device.append(start.elapsed_time(stop) / calls * 1e3)
    return statistics.median(host), statistics.median(device)


def row(name, fn):
    try:
        host, device = per_call(fn)
        print(f"| {name:58} | {host:8.1f} | {device:8.1f} |")
    except Exception as exc:  # a piece that this numba flavour lacks is reported, the rest still runs
        print(f"| {name:58} | failed: {type(exc).__name__}: {str(exc)[:80]} |")


def ops():
    F = torch.nn.functional
    x4, a, b, r = (torch.randn(*s, device="cuda") for s in ((4, 4), (64, 64), (64, 64), (64, 257)))
    return [
        ("relu 4x4", lambda: nbops.relu(x4), lambda: torch.relu(x4)),
        ("add 64x64", lambda: nbops.add(a, b), lambda: torch.add(a, b)),
        ("softmax (64,257) dim 1", lambda: nbops.softmax(r, 1), lambda: torch.softmax(r, 1)),
        ("layer_norm (64,257)", lambda: nbops.layer_norm(r, (257,)), lambda: F.layer_norm(r, (257,))),
        ("sum (64,257) dim 1", lambda: nbops.sum(r, 1), lambda: torch.sum(r, 1)),
    ]


@cuda.jit
def _copy(out, x):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = x[i]


def pieces():
    """The call path's parts, one loop each."""
    x = torch.randn(16, device="cuda")
    dx, dout = cuda.as_cuda_array(x, sync=False), cuda.as_cuda_array(torch.empty_like(x), sync=False)
    stream = _arrays.call_stream(_arrays.TORCH, x)
    _copy[1, 32, stream](dout, dx)
    kernel = next(iter(_copy.overloads.values()))
    call = _dispatch.Call("relu", input=x)
    out = call.empty((16,), dx.dtype)
    rows = [
        ("torch.relu(x) (the whole op)", lambda: torch.relu(x)),
        ("torch.empty_like(x)", lambda: torch.empty_like(x)),
        ("x.__cuda_array_interface__", lambda: x.__cuda_array_interface__),
        ("torch.cuda.current_stream().cuda_stream", lambda: torch.cuda.current_stream().cuda_stream),
        ("cuda.as_cuda_array(x, sync=False)", lambda: cuda.as_cuda_array(x, sync=False)),
        ("numba.typeof(device array), the same array", lambda: numba.typeof(dx)),
        ("numba.typeof(as_cuda_array(x)), a fresh array", lambda: numba.typeof(cuda.as_cuda_array(x, sync=False))),
        ("_copy[1, 32, stream](prepared arrays) (dispatcher)", lambda: _copy[1, 32, stream](dout, dx)),
        ("_copy[1, 32, stream](2 fresh as_cuda_array)", lambda: _copy[1, 32, stream](
            cuda.as_cuda_array(torch.empty_like(x), sync=False), cuda.as_cuda_array(x, sync=False))),
        ("compiled kernel.launch(prepared arrays)",
         lambda: kernel.launch((dout, dx), (1, 1, 1), (32, 1, 1), stream, 0)),
        ("_dispatch.Call('relu', input=x)", lambda: _dispatch.Call("relu", input=x)),
        ("_arrays.native(x, 'torch')", lambda: _arrays.native(x, _arrays.TORCH)),
        ("_arrays.call_stream('torch', x)", lambda: _arrays.call_stream(_arrays.TORCH, x)),
        ("call.empty((16,), float32)", lambda: call.empty((16,), dx.dtype)),
        ("call.wrap(out)", lambda: call.wrap(out)),
    ]
    from nbops.cuda import _launch

    _launch.FAST = True  # measured here whatever the installed version; the plan is checked by tests/test_cuda_gpu.py
    rows += [
        ("_launch.launch(prepared arrays) (fast path)", lambda: _launch.launch(_copy, 1, 32, dout, dx)),
        ("_launch.launch(2 fresh _arrays.native views)", lambda: _launch.launch(
            _copy, 1, 32, _arrays.native(torch.empty_like(x), _arrays.TORCH), _arrays.native(x, _arrays.TORCH))),
    ]
    for name, build in [("driver.launch_kernel(prepared parameters)", _driver_launch),
                        ("libcuda cuLaunchKernel by ctypes (prepared)", _ctypes_launch)]:
        try:
            rows.append((name, build(kernel, (dout, dx), stream)))
        except Exception as exc:
            print(f"{name}: not built: {type(exc).__name__}: {exc}")
    return rows


def _ctypes_launch(kernel, args, stream):
    """The floor under numba's Python: libcuda's cuLaunchKernel called through ctypes with a prepared parameter
    pointer array."""
    import ctypes

    params, retr = [], []
    for t, v in zip(kernel.argument_types, args):
        kernel._prepare_args(t, v, stream, retr, params)
    pointers = (ctypes.c_void_p * len(params))(*[ctypes.addressof(p) for p in params])
    lib = ctypes.CDLL("libcuda.so.1")
    lib.cuLaunchKernel.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [ctypes.c_void_p] * 3
    h = kernel._codelibrary.get_cufunc().handle
    func = (h.value or 0) if hasattr(h, "value") else int(h)
    handle = _arrays.stream_handle(stream)

    def launch():
        code = lib.cuLaunchKernel(func, 1, 1, 1, 32, 1, 1, 0, handle, pointers, None)
        if code:
            raise RuntimeError(f"cuLaunchKernel: CUDA error {code}")

    return launch


def _driver_launch(kernel, args, stream):
    """The floor of a numba launch: ``driver.launch_kernel`` with the parameters ``_Kernel._prepare_args`` built
    once, on the stream's raw handle."""
    from numba.cuda.cudadrv import driver

    params, retr = [], []
    for t, v in zip(kernel.argument_types, args):
        kernel._prepare_args(t, v, stream, retr, params)
    handle = _arrays.stream_handle(stream)
    cufunc = kernel._codelibrary.get_cufunc()
    return lambda: driver.launch_kernel(cufunc.handle, 1, 1, 1, 32, 1, 1, 0, handle, params, cooperative=False)


def profile(name, fn):
    fn()
    torch.cuda.synchronize()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(PROFILED_CALLS):
        fn()
    prof.disable()
    torch.cuda.synchronize()
    for order in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(prof, stream=text).strip_dirs().sort_stats(order).print_stats(25)
        body = text.getvalue()
        body = body[body.find("   ncalls"):] if "   ncalls" in body else body
        print(f"\n### cProfile, {PROFILED_CALLS} calls of {name}, by {order} (us = s / {PROFILED_CALLS} x 1e6)\n")
        print(body.rstrip())


def section(title, fn):
    """Print ``title`` and run ``fn``; a section that fails prints its traceback and the next one still runs."""
    print(f"\n## {title}")
    try:
        fn()
    except Exception:
        traceback.print_exc(file=sys.stdout)


def ops_table():
    print(f"\n| {'op':58} | {'host':>8} | {'device':>8} |")
    print(f"|{'-' * 60}|{'-' * 10}|{'-' * 10}|")
    for name, ours, theirs in ops():
        row(f"nbops {name}", ours)
        row(f"torch {name}", theirs)


def pieces_table():
    print(f"\n| {'piece':58} | {'host':>8} | {'device':>8} |")
    print(f"|{'-' * 60}|{'-' * 10}|{'-' * 10}|")
    for name, fn in pieces():
        row(name, fn)


def profiles():
    x4 = torch.randn(4, 4, device="cuda")
    a, b = torch.randn(64, 64, device="cuda"), torch.randn(64, 64, device="cuda")
    profile("nbops.relu(4x4)", lambda: nbops.relu(x4))
    profile("nbops.add(64x64, 64x64)", lambda: nbops.add(a, b))


def main():
    try:
        from importlib.metadata import version

        flavour = f"numba-cuda {version('numba-cuda')}"
    except Exception:
        flavour = "numba's built-in CUDA target"
    print(f"# nbops per-call profile: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"numba {numba.__version__}, {flavour}, python {sys.version.split()[0]}")
    section(f"1. Ops, us per call (median of {ROUNDS} rounds of {CALLS} back-to-back calls)", ops_table)
    section("2. Pieces of the call path, us per call", pieces_table)
    section("3. Where nbops' host time goes", profiles)


if __name__ == "__main__":
    main()
