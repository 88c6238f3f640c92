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
