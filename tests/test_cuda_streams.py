"""The CUDA call path's stream plumbing, under the simulator: every kernel an op launches goes on the stream its
``Call`` decided once (``nbops.cuda_stream(s)``, else the caller's framework's current stream, else numba's default
stream 0), temporaries and outputs are bound to it, and the choice of stream per array kind follows the policy in
``nbops._arrays.call_stream``. The seam: the simulator's kernel launch configuration (``kernel[grid, block,
stream]``), recorded for every launch an op makes."""

import threading
import types

import numpy as np
import pytest
import torch
from numba import cuda

import nbops
from nbops import _arrays
from helpers import assert_same, make, make_int, to_numpy, to_target

pytestmark = pytest.mark.cuda


@pytest.fixture
def launches(monkeypatch):
    """The stream (third item of the launch configuration, 0 when absent) of every kernel launched meanwhile."""
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    seen = []
    getitem = FakeCUDAKernel.__getitem__

    def record(self, configuration):
        seen.append(configuration[2] if len(configuration) > 2 else 0)
        return getitem(self, configuration)

    monkeypatch.setattr(FakeCUDAKernel, "__getitem__", record)
    return seen


def _t(x):
    return torch.from_numpy(np.array(x))


def _calls(dev):
    """(name, nbops call on device arrays, torch reference) for ops with one, several and allocating launches."""
    x, y = make((3, 5), seed=1), make((3, 5), seed=2)
    img, w = make((2, 3, 5, 5), seed=3), make((4, 3, 3, 3), seed=4)
    bn = make((4, 3, 2), seed=5)
    idx, table = make_int((2, 3), 0, 7, seed=6), make((7, 4), seed=7)
    a, b = make_int((3, 4), -9, 9, np.int32, seed=8), make_int((4, 2), -9, 9, np.int32, seed=9)
    F = torch.nn.functional
    return [
        ("relu", lambda: nbops.relu(dev(x)), lambda: torch.relu(_t(x))),
        ("add", lambda: nbops.add(dev(x), dev(y), alpha=2.0), lambda: torch.add(_t(x), _t(y), alpha=2.0)),
        ("softmax", lambda: nbops.softmax(dev(x), dim=0), lambda: torch.softmax(_t(x), 0)),
        ("layer_norm", lambda: nbops.layer_norm(dev(x), (5,)), lambda: F.layer_norm(_t(x), (5,))),
        ("sum", lambda: nbops.sum(dev(x), dim=1), lambda: torch.sum(_t(x), 1)),
        ("var", lambda: nbops.var(dev(x), dim=0), lambda: torch.var(_t(x), 0)),
        ("batch_norm", lambda: nbops.batch_norm(dev(bn), None, None, training=True),
         lambda: F.batch_norm(_t(bn), None, None, training=True)),
        ("conv2d", lambda: nbops.conv2d(dev(img), dev(w), padding=1), lambda: F.conv2d(_t(img), _t(w), padding=1)),
        ("embedding", lambda: nbops.embedding(dev(idx), dev(table)), lambda: F.embedding(_t(idx), _t(table))),
        ("matmul int32", lambda: nbops.matmul(dev(a), dev(b)), lambda: torch.matmul(_t(a), _t(b))),
        ("transpose copy", lambda: nbops.contiguous(dev(x).T), lambda: _t(x).T.contiguous()),
    ]


CASES = [name for name, _, _ in _calls(lambda v: v)]


@pytest.mark.parametrize("case", CASES)
def test_every_launch_goes_on_the_stream_given_with_cuda_stream(case, launches):
    from numba import cuda

    name, call, reference = next(c for c in _calls(lambda v: to_target(v, "cuda")) if c[0] == case)
    s = cuda.stream()
    with nbops.cuda_stream(s) as entered:
        out = call()
    assert entered is s
    assert launches and all(st is s for st in launches), (name, launches)
    assert_same(to_numpy(out), reference())


@pytest.mark.parametrize("case", ["relu", "batch_norm", "conv2d", "embedding"])
def test_numba_arrays_launch_on_numbas_default_stream_and_come_back_as_numba_arrays(case, launches):
    name, call, reference = next(c for c in _calls(lambda v: to_target(v, "cuda")) if c[0] == case)
    out = call()
    assert launches and all(st == 0 for st in launches), (name, launches)
    assert _arrays.kind_of(out) == _arrays.NUMBA
    assert_same(out.copy_to_host(), reference())


def test_outputs_and_temporaries_are_bound_to_the_calls_stream(monkeypatch):
    """numba's own transfers of an op's output (``copy_to_host()`` without a stream) then follow the call's
    kernels; temporaries come from the call's allocator (``Call.empty``) on the call's stream."""
    from numba import cuda

    made = []
    empty = _arrays.empty

    def spy(*args, **kwargs):
        made.append(empty(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(_arrays, "empty", spy)
    s = cuda.stream()
    x = to_target(make((4, 3, 2), seed=11), "cuda")
    with nbops.cuda_stream(s):
        out = nbops.batch_norm(x, None, None, training=True)
    assert len(made) >= 3 and all(a.stream is s for a in made)  # the output, the mean and M2 temporaries
    assert_same(out.copy_to_host(), torch.nn.functional.batch_norm(_t(make((4, 3, 2), seed=11)), None, None,
                                                                   training=True))


def test_cuda_stream_nests_restores_and_is_per_thread(launches):
    from numba import cuda

    outer, inner = cuda.stream(), cuda.stream()
    x = to_target(make((2, 3), seed=12), "cuda")
    seen_elsewhere = []
    with nbops.cuda_stream(outer):
        with nbops.cuda_stream(inner):
            nbops.relu(x)
            worker = threading.Thread(target=lambda: seen_elsewhere.append(_arrays.call_stream("numba", x)))
            worker.start()
            worker.join()
        nbops.relu(x)
        with pytest.raises(ValueError):
            with nbops.cuda_stream(inner):
                raise ValueError("leaves the block")
        nbops.relu(x)
    nbops.relu(x)
    assert launches == [inner, outer, outer, 0]
    assert seen_elsewhere == [0]
    assert _arrays.LAUNCH.user == () and _arrays.LAUNCH.call is None


def test_launchers_outside_a_call_use_the_default_stream(launches):
    from nbops._dispatch import kernel

    x = to_target(make((2, 3), seed=13), "cuda")
    out = to_target(np.zeros((2, 3), np.float32), "cuda")
    kernel("relu", "cuda")(out, x)
    assert launches == [0]
    assert_same(out.copy_to_host(), torch.relu(_t(make((2, 3), seed=13))))


@pytest.mark.parametrize("bad", [0, 7, "stream", np.float32(1), torch.zeros(1), "numba device array"])
def test_cuda_stream_rejects_what_is_not_a_stream(bad):
    if bad == "numba device array":
        bad = to_target(make((2,)), "cuda")
    with pytest.raises(TypeError, match=r"cuda_stream\(\): expected a numba, torch or CuPy CUDA stream"):
        with nbops.cuda_stream(bad):
            pass
    assert _arrays.LAUNCH.user == ()


@pytest.fixture
def external(monkeypatch):
    """numba.cuda.external_stream replaced by a recorder (the simulator has none), and an empty handle cache."""
    made = []

    def external_stream(handle):
        made.append(handle)
        return types.SimpleNamespace(handle=handle)

    monkeypatch.setattr(_arrays, "_cuda", lambda: types.SimpleNamespace(external_stream=external_stream))
    monkeypatch.setattr(_arrays, "_EXTERNAL", {})
    return made


def test_torch_tensors_launch_on_torchs_current_stream_wrapped_once_per_handle(monkeypatch, external):
    """torch's current stream of the tensor's device, wrapped once per handle; its default stream (handle 0) is
    the legacy default stream, numba's stream 0."""
    asked, current = [], {"handle": 0}

    def current_stream(device):
        asked.append(device)
        return types.SimpleNamespace(cuda_stream=current["handle"])

    monkeypatch.setattr(torch.cuda, "current_stream", current_stream)
    like = types.SimpleNamespace(device="cuda:1")
    assert _arrays.call_stream(_arrays.TORCH, like) == 0
    current["handle"] = 0x5EED
    first = _arrays.call_stream(_arrays.TORCH, like)
    again = _arrays.call_stream(_arrays.TORCH, like)
    assert first is again and first.handle == 0x5EED and external == [0x5EED]
    assert asked == ["cuda:1"] * 3


def test_cupy_and_interface_arrays_launch_on_their_exporters_stream(monkeypatch, external):
    cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(ptr=77)))
    monkeypatch.setitem(__import__("sys").modules, "cupy", cupy)
    assert _arrays.call_stream(_arrays.CUPY, object()).handle == 77
    for field, want in [(None, 0), (1, 0), (2, 2), (99, 99)]:
        like = types.SimpleNamespace(__cuda_array_interface__={"stream": field, "version": 3})
        got = _arrays.call_stream(_arrays.CAI, like)
        assert (got if got == 0 else got.handle) == want, field
    assert external == [77, 2, 99]


def test_cuda_stream_takes_torch_and_cupy_streams_by_handle(monkeypatch, external):
    TorchStream = type("Stream", (), {"__module__": "torch.cuda.streams"})
    CupyStream = type("Stream", (), {"__module__": "cupy.cuda.stream"})
    ts, cs = TorchStream(), CupyStream()
    ts.cuda_stream, cs.ptr = 0x100, 0x200
    with nbops.cuda_stream(ts) as a, nbops.cuda_stream(cs) as b:
        assert _arrays.call_stream(_arrays.TORCH, None) is b
    assert (a.handle, b.handle) == (0x100, 0x200)


def _device_view(owner, shape, strides, offset, dtype=np.float32):
    """A stand-in for a numba device array over ``owner``'s memory (shape, byte strides, element offset)."""
    item = np.dtype(dtype).itemsize
    memory = types.SimpleNamespace(owner=owner, device_pointer_value=owner.data_ptr() + offset * item)
    return types.SimpleNamespace(gpu_data=memory, dtype=np.dtype(dtype), shape=shape, strides=strides,
                                 size=int(np.prod(shape)))


def test_torch_results_come_back_as_the_torch_tensor_that_owns_them():
    """Results for torch callers are handed back through the tensor owning their memory (no re-import through the
    CUDA Array Interface): the tensor itself when the result is all of it, else a view at the result's offset and
    strides; None (the interface path) when no torch tensor of that dtype owns it."""
    base = torch.arange(30, dtype=torch.float32).reshape(5, 6)
    owner = base[1:]  # storage offset 6
    assert _arrays._torch_owner_view(_device_view(owner, (4, 6), (24, 4), 0), torch) is owner
    window = _arrays._torch_owner_view(_device_view(owner, (3, 2), (4, 24), 7), torch)
    assert window.data_ptr() == owner.data_ptr() + 7 * 4
    assert torch.equal(window, owner.reshape(-1)[7:].as_strided((3, 2), (1, 6)))
    assert _arrays._torch_owner_view(_device_view(owner, (4, 6), (24, 4), 0, np.int32), torch) is None
    assert _arrays._torch_owner_view(_device_view(owner, (0, 6), (24, 4), 0), torch) is None
    numba_owned = types.SimpleNamespace(gpu_data=types.SimpleNamespace(owner=object()), dtype=np.dtype(np.float32))
    assert _arrays._torch_owner_view(numba_owned, torch) is None


class _FakeCupyArray:
    """Just what the CuPy result path reads and calls: ``data`` (a pointer with ``ptr`` and ``+ bytes``), dtype,
    shape, byte strides, and the ``ndarray(shape, dtype=, memptr=, strides=)`` constructor."""

    def __init__(self, shape, dtype=np.float32, memptr=None, strides=None):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.strides = tuple(strides) if strides is not None else np.empty(shape, dtype).strides
        self.data = memptr if memptr is not None else _FakePointer(0x10000)


class _FakePointer:
    def __init__(self, ptr):
        self.ptr = ptr

    def __add__(self, nbytes):
        return _FakePointer(self.ptr + nbytes)


def test_cupy_results_come_back_as_the_cupy_array_that_owns_them():
    cupy = types.SimpleNamespace(ndarray=_FakeCupyArray)
    owner = _FakeCupyArray((4, 6))

    def out(shape, strides, offset_bytes, dtype=np.float32):
        memory = types.SimpleNamespace(owner=owner, device_pointer_value=owner.data.ptr + offset_bytes)
        return types.SimpleNamespace(gpu_data=memory, dtype=np.dtype(dtype), shape=shape, strides=strides,
                                     size=int(np.prod(shape)))

    assert _arrays._cupy_owner_view(out((4, 6), (24, 4), 0), cupy) is owner
    window = _arrays._cupy_owner_view(out((3, 2), (4, 24), 28), cupy)
    assert (window.shape, window.strides, window.data.ptr) == ((3, 2), (4, 24), owner.data.ptr + 28)
    assert _arrays._cupy_owner_view(out((4, 6), (24, 4), 0, np.float64), cupy) is None


def test_every_launch_and_transfer_in_the_cuda_kernels_names_the_calls_stream():
    """Source guard for new launchers: every ``kernel[grid, block, ...](...)`` in nbops/cuda/*.py passes
    ``stream()`` as its stream, temporaries come from ``empty()``, and host-device transfers name the stream;
    the one allocation left to numba is pooling's cached, never-written 1-element placeholder."""
    import ast
    import pathlib

    root = pathlib.Path(nbops.__file__).parent / "cuda"
    launches, bad, numba_allocations = 0, [], []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            where = f"{path.name}:{node.lineno}"
            f = node.func
            if isinstance(f, ast.Subscript) and isinstance(f.slice, ast.Tuple) and len(f.slice.elts) >= 2:
                launches += 1
                last = f.slice.elts[2] if len(f.slice.elts) > 2 else None
                if not (isinstance(last, ast.Call) and getattr(last.func, "id", None) == "stream"):
                    bad.append(f"{where} launch without stream()")
            if isinstance(f, ast.Attribute) and f.attr in ("to_device", "copy_to_host", "copy_to_device"):
                if not any(k.arg == "stream" for k in node.keywords):
                    bad.append(f"{where} {f.attr} without stream=")
            if isinstance(f, ast.Attribute) and f.attr == "synchronize":
                bad.append(f"{where} synchronize")
            if isinstance(f, ast.Attribute) and f.attr == "device_array":
                numba_allocations.append(path.name)
    assert launches >= 50 and not bad, bad
    assert numba_allocations == ["pooling.py"]


def test_launch_is_the_dispatcher_launch_on_the_calls_stream_under_the_simulator(launches):
    """``nbops.cuda._launch.launch`` never takes its fast path under the simulator: it launches through the
    dispatcher, on the stream of the call being launched (0 outside a call)."""
    from nbops.cuda import _launch

    scale = cuda.jit(_scale)
    assert not _launch.FAST
    x = cuda.to_device(np.arange(5, dtype=np.float32))
    out = cuda.device_array(5, np.float32)
    _launch.launch(scale, 1, 32, out, x, 2.0)
    s = cuda.stream()
    with nbops.cuda_stream(s):
        call = nbops._dispatch.Call("relu", input=x)
    outer, _arrays.LAUNCH.call = _arrays.LAUNCH.call, call
    try:
        _launch.launch(scale, 1, 32, out, x, 3.0)
    finally:
        _arrays.LAUNCH.call = outer
    assert launches == [0, s] and not _launch._PLANS
    np.testing.assert_array_equal(out.copy_to_host(), 3.0 * np.arange(5, dtype=np.float32))


def _scale(out, x, a):
    """out[i] = a * x[i]; a module-level function, so that the simulator gives it its per-thread ``cuda``."""
    i = cuda.grid(1)
    if i < out.size:
        out[i] = a * x[i]
