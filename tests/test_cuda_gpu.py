"""The CUDA call path on a real GPU with torch CUDA tensors (marker ``gpu``; ``scripts/test.sh`` deselects it, and
``scripts/gpu-check.sh`` runs it on a GPU machine): ops follow torch's current stream and are ordered with torch's
work on it, nothing inside an op waits for the device, the host runs ahead of the device, and calls can be captured
into a CUDA graph and replayed. Under the simulator or without torch CUDA these tests cannot mean anything; where
they are selected anyway, the ``real_gpu`` fixture says so."""

import time

import numpy as np
import pytest
import torch

import nbops

pytestmark = [pytest.mark.cuda, pytest.mark.gpu]

SLEEP_CYCLES = 400_000_000  # torch.cuda._sleep: ~0.2 s of spinning on a ~2 GHz GPU, far longer than any op's host cost


TOL = {"rtol": 1e-4, "atol": 1e-4}  # fp32 kernels against torch's fp32 ones (TF32 off below)


@pytest.fixture(autouse=True)
def real_gpu(monkeypatch):
    """Skip where no real GPU with torch CUDA is present; else turn torch's TF32 off for the duration (torch's
    results are the fp32 reference)."""
    from numba import config, cuda

    if config.ENABLE_CUDASIM or not cuda.is_available() or not torch.cuda.is_available():
        pytest.skip("needs a real GPU and torch with CUDA (select with -m gpu on a GPU machine)")
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


def _gen(seed):
    return torch.Generator(device="cuda").manual_seed(seed)


def _randn(*shape, seed=0):
    return torch.randn(*shape, device="cuda", generator=_gen(seed))


def _ops():
    """(name, fn) over torch CUDA tensors: single-kernel, multi-kernel and allocating ops (not embedding, which
    reads its index check on the host; docs/ops.md)."""
    F = torch.nn.functional
    x, y = _randn(64, 257, seed=1), _randn(64, 257, seed=2)
    img, w, b = _randn(4, 8, 17, 17, seed=3), _randn(16, 8, 3, 3, seed=4), _randn(16, seed=5)
    a, m = _randn(96, 80, seed=6), _randn(80, 48, seed=7)
    return [
        ("relu", lambda: (nbops.relu(x), torch.relu(x))),
        ("add", lambda: (nbops.add(x, y, alpha=0.5), torch.add(x, y, alpha=0.5))),
        ("softmax", lambda: (nbops.softmax(x, dim=1), torch.softmax(x, 1))),
        ("layer_norm", lambda: (nbops.layer_norm(x, (257,)), F.layer_norm(x, (257,)))),
        ("sum", lambda: (nbops.sum(x, dim=0), torch.sum(x, 0))),
        ("var", lambda: (nbops.var(x, dim=1), torch.var(x, 1))),
        ("batch_norm train", lambda: (nbops.batch_norm(img, None, None, training=True),
                                      F.batch_norm(img, None, None, training=True))),
        ("conv2d", lambda: (nbops.conv2d(img, w, b, padding=1), F.conv2d(img, w, b, padding=1))),
        ("conv2d no bias", lambda: (nbops.conv2d(img, w), F.conv2d(img, w))),
        ("matmul", lambda: (nbops.matmul(a, m), torch.matmul(a, m))),
        ("max_pool2d", lambda: (nbops.max_pool2d(img, 3, 2), F.max_pool2d(img, 3, 2))),
        ("transpose copy", lambda: (nbops.contiguous(x.T), x.T.contiguous())),
    ]


OPS = ["relu", "add", "softmax", "layer_norm", "sum", "var", "batch_norm train", "conv2d", "conv2d no bias", "matmul",
       "max_pool2d", "transpose copy"]  # the names _ops() returns (it makes CUDA tensors, so not at collection)


@pytest.mark.parametrize("name", OPS)
def test_op_on_a_torch_side_stream_runs_on_it_in_order(name):
    """Inside ``with torch.cuda.stream(s)``, the op reads inputs that torch writes on s just before it (s is held
    back by a long sleep, so a kernel on any other stream would read them unwritten), and torch's next work on s
    reads the op's result."""
    dict(_ops())[name]()  # compile and load the kernels first
    torch.cuda.synchronize()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        torch.cuda._sleep(SLEEP_CYCLES)
        got, want = dict(_ops())[name]()  # inputs made on s after the sleep
        doubled = got * 2.0
    assert not s.query(), "the sleep should still be running, or the check below proves nothing"
    s.synchronize()
    torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(doubled, 2.0 * got, rtol=0, atol=0)


def test_the_call_stream_is_torchs_current_stream():
    from nbops import _arrays

    x = _randn(4, 4)
    torch.cuda.synchronize()
    assert torch.cuda.current_stream().cuda_stream == 0 and _arrays.call_stream(_arrays.TORCH, x) == 0
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        st = _arrays.call_stream(_arrays.TORCH, x)
        assert int(st) == s.cuda_stream
        assert _arrays.call_stream(_arrays.TORCH, x) is st  # wrapped once per handle


def test_no_op_waits_for_the_device():
    """With ~0.2 s of work queued ahead on torch's stream, every op returns at once: an op that synchronized the
    stream, the context or the device (explicitly, or through cuMemFree or a pageable copy to the host) would
    wait for the sleep."""
    ops = _ops()
    for _, fn in ops:
        fn()  # compile, load modules, make dropout's generator states
    nbops.dropout(_randn(8, 8), 0.5)
    torch.cuda.synchronize()
    start_event, end_event = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start_event.record()
    torch.cuda._sleep(SLEEP_CYCLES)
    end_event.record()
    t0 = time.perf_counter()
    results = [fn() for _, fn in ops]
    nbops.dropout(_randn(8, 8), 0.5)
    host = time.perf_counter() - t0
    pending = not torch.cuda.current_stream().query()
    torch.cuda.synchronize()
    sleep = start_event.elapsed_time(end_event) / 1e3
    assert pending and host < sleep / 2, f"ops took {host * 1e3:.1f} ms of host time with {sleep * 1e3:.0f} ms queued"
    for (name, _), (got, want) in zip(ops, results):
        torch.testing.assert_close(got, want, **TOL, msg=name)


def test_host_runs_ahead_of_a_large_op():
    """Host time per call of a large op is far below its device time (events around 10 back-to-back calls)."""
    a, b = _randn(2048, 2048, seed=10), _randn(2048, 2048, seed=11)
    nbops.matmul(a, b)
    torch.cuda.synchronize()
    start_event, end_event = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start_event.record()
    t0 = time.perf_counter()
    for _ in range(10):
        nbops.matmul(a, b)
    host = time.perf_counter() - t0
    end_event.record()
    torch.cuda.synchronize()
    device = start_event.elapsed_time(end_event) / 1e3
    assert host < device / 4, f"host {host / 10 * 1e6:.0f} us/call vs device {device / 10 * 1e6:.0f} us/call"


def _capture(fn, static_input):
    """Warm ``fn`` up on a side stream (as torch requires), capture one call into a CUDA graph; returns the graph
    and the captured output."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            fn(static_input)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_output = fn(static_input)
    return graph, static_output


def _few_ops(x):
    y = nbops.layer_norm(nbops.relu(nbops.add(x, x, alpha=0.5)), (x.shape[-1],))
    return nbops.sum(nbops.softmax(y, dim=-1) * y, dim=0)


def _resnet18():
    from nbops.models import resnet18

    model = resnet18(num_classes=10)
    model.eval()
    return model.cuda()


@pytest.mark.parametrize("case", ["few ops", "resnet18"])
def test_calls_capture_into_a_cuda_graph_and_replay_on_new_input(case):
    fn, shape = (_few_ops, (32, 96)) if case == "few ops" else (_resnet18(), (4, 3, 64, 64))
    static_input = _randn(*shape, seed=12)
    graph, static_output = _capture(fn, static_input)
    fresh = _randn(*shape, seed=13)
    static_input.copy_(fresh)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(static_output, fn(fresh), **TOL)
    assert not torch.equal(static_output, fn(_randn(*shape, seed=12)))  # the replay saw the new input
    assert isinstance(static_output, torch.Tensor) and np.isfinite(static_output.cpu().numpy()).all()


_KERNELS = []


def _launch_kernel():
    """One dispatcher for the launch tests (compiled once per argument class, whichever test comes first)."""
    if not _KERNELS:
        from numba import cuda

        @cuda.jit
        def axpb(out, x, y, a, b, flip):
            """out[i, j] = a * x[i, j] + y[i, j] + b (negated when flip), over out's shape (a 2-D grid of threads)."""
            i, j = cuda.grid(2)
            if i < out.shape[0] and j < out.shape[1]:
                v = a * x[i, j] + y[i, j] + b
                out[i, j] = -v if flip else v

        _KERNELS.append(axpb)
    return _KERNELS[0]


def _launch_args(kind, dtype):
    """(out, x, y) torch tensors of one argument class: C-contiguous, transposed (F layout), sliced (A layout),
    broadcast (stride 0), empty."""
    t = getattr(torch, dtype)
    x, y = _randn(37, 45, seed=20).to(t), _randn(37, 45, seed=21).to(t)
    if kind == "F":
        x, y = _randn(45, 37, seed=20).to(t).T, _randn(45, 37, seed=21).to(t).T
    elif kind == "A":
        x, y = _randn(37, 90, seed=20).to(t)[:, ::2], _randn(74, 45, seed=21).to(t)[::2]
    elif kind == "broadcast":
        y = _randn(1, 45, seed=21).to(t).expand(37, 45)
    elif kind == "empty":
        x, y = x[:0], y[:0]
    return torch.empty(x.shape, dtype=t, device="cuda"), x, y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["C", "F", "A", "broadcast", "empty"])
def test_fast_launch_matches_the_dispatcher(kind, dtype, monkeypatch):
    """``_launch.launch`` packs the parameters itself after the first launch of an argument class: its results
    equal the dispatcher's for every layout, both float dtypes and Python / NumPy scalars, on torch's stream."""
    from numba import cuda

    from nbops.cuda import _launch

    monkeypatch.setattr(_launch, "FAST", True)
    kernel = _launch_kernel()
    out, x, y = _launch_args(kind, dtype)
    want = torch.empty_like(out)
    grid, block = ((out.shape[0] + 7) // 8 or 1, (out.shape[1] + 31) // 32), (8, 32)
    for a, b, flip in [(0.5, 3, False), (np.float32(-2.0) if dtype == "float32" else -2.0, np.int32(-7), True)]:
        views = [cuda.as_cuda_array(t, sync=False) for t in (out, x, y)]
        _launch.launch(kernel, grid, block, *views, a, b, flip)  # a class new to _launch: the dispatcher launches
        out.zero_()
        views = [cuda.as_cuda_array(t, sync=False) for t in (out, x, y)]
        _launch.launch(kernel, grid, block, *views, a, b, flip)  # the fast path, fresh arrays
        kernel[grid, block, 0](cuda.as_cuda_array(want, sync=False), *views[1:], a, b, flip)
        torch.cuda.synchronize()
        torch.testing.assert_close(out, want, rtol=0, atol=0)
        expect = (float(a) * x.double() + y.double() + int(b)) * (-1 if flip else 1)
        torch.testing.assert_close(out.double(), expect, rtol=1e-5, atol=1e-5)
    plans = [p for k, p in _launch._PLANS.items() if k[0] is kernel]
    assert plans and all(p is not None for p in plans), "every class of this test should take the fast path"


def test_fast_launch_goes_on_the_calls_stream(monkeypatch):
    """Inside a call on a torch side stream held back by a sleep, the fast launch is ordered after torch's writes
    on that stream."""
    from numba import cuda

    from nbops import _arrays
    from nbops.cuda import _launch

    monkeypatch.setattr(_launch, "FAST", True)
    kernel = _launch_kernel()
    out, x, y = _launch_args("C", "float32")
    grid, block = ((37 + 7) // 8, (45 + 31) // 32), (8, 32)
    _launch.launch(kernel, grid, block, *(cuda.as_cuda_array(t, sync=False) for t in (out, x, y)), 1.0, 0, False)
    s = torch.cuda.Stream()
    torch.cuda.synchronize()
    with torch.cuda.stream(s):
        torch.cuda._sleep(SLEEP_CYCLES)
        x2 = x * 2.0
        call = _dispatch_call(x2)
        state = _arrays.LAUNCH
        outer, state.call = state.call, call
        try:
            _launch.launch(kernel, grid, block, *(cuda.as_cuda_array(t, sync=False) for t in (out, x2, y)), 1.0, 0,
                           False)
        finally:
            state.call = outer
        result = out * 1.0
    assert not s.query()
    s.synchronize()
    torch.testing.assert_close(result, 2.0 * x + y, rtol=1e-6, atol=1e-6)


def _dispatch_call(x):
    from nbops._dispatch import Call

    return Call("relu", input=x)


def test_torch_tensors_are_viewed_as_numba_imports_them():
    """``_arrays.native`` builds numba views of torch CUDA tensors itself: each equals numba's own import (pointer,
    shape, strides where a dim is longer than 1, dtype), for contiguous, transposed, sliced, offset, broadcast,
    size-1, grad-requiring, integer and bool tensors, and the first check left the fast path on."""
    from numba import cuda

    from nbops import _arrays

    base = _randn(6, 8, seed=30)
    tensors = [base, base.T, base[1:, ::3], base[2], base[:, :1], base[None, 3:4].expand(5, 1, 8),
               base.clone().requires_grad_(), base.to(torch.int32), base > 0, base.double()[::2]]
    for t in tensors:
        view = _arrays.native(t, _arrays.TORCH)
        assert _arrays._same_view(view, cuda.as_cuda_array(t.detach(), sync=False)), (t.shape, t.stride())
        assert view.gpu_data.owner.data_ptr() == t.data_ptr() and not view.gpu_data.owner.requires_grad
    assert _arrays._FAST_VIEWS[0] is True
    assert _arrays.call_stream(_arrays.TORCH, base) == 0 and _arrays._RAW_STREAM[0] not in (None, False)


POOL_SCRIPT = """
import gc
import numpy as np
from numba import cuda
from numba.cuda.cudadrv import driver

import nbops
from nbops.cuda import _pool

calls = {"cuMemAlloc": 0}
real = driver.driver.cuMemAlloc


def counting(*args):
    calls["cuMemAlloc"] += 1
    return real(*args)


driver.driver.cuMemAlloc = counting
x = cuda.to_device(np.linspace(-1, 1, 4096, dtype=np.float32))
s = cuda.stream()
with nbops.cuda_stream(s):
    for _ in range(1000):
        y = nbops.relu(x)
    z = nbops.add(y, y)
s.synchronize()
gc.collect()
cuda.device_array(1)  # issues the frees the collector queued
assert type(cuda.current_context().memory_manager) is _pool.StreamOrderedMemoryManager
assert np.array_equal(z.copy_to_host(), 2 * np.maximum(x.copy_to_host(), 0))
print(calls["cuMemAlloc"], _pool.STATS["allocs"], _pool.STATS["frees"])
"""


def test_numba_arrays_come_from_the_stream_ordered_pool_when_installed():
    """With NUMBA_CUDA_MEMORY_MANAGER=nbops.cuda._pool (a fresh process: the plugin must precede the first
    context), 1000 allocating calls on numba arrays make no cuMemAlloc; every output comes from cuMemAllocAsync on
    the call's stream and goes back with cuMemFreeAsync."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CUDA_MEMORY_MANAGER="nbops.cuda._pool")
    done = subprocess.run([sys.executable, "-c", POOL_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    mem_alloc, allocs, frees = map(int, done.stdout.split()[-3:])
    assert mem_alloc == 0 and allocs >= 1002 and frees >= 998, (mem_alloc, allocs, frees)
