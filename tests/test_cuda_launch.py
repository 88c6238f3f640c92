"""The CUDA call path's host side on the CPU (no GPU, no simulator): ``nbops.cuda._launch``'s parameter packing
against numba's own marshalling, its launch flow, and the stream-ordered pool's bookkeeping (a stand-in libcuda).

Device arrays are built over a stand-in allocation (numba needs no context for that); each is packed by numba's
``_Kernel._prepare_args`` and by the fast path's packer, and both parameter lists must hold the same values. The
layout letter the fast path keys on must equal numba's typing of the array. The launch itself (fast path against
the dispatcher on a real GPU) is in tests/test_cuda_gpu.py.
"""

import ctypes

import numpy as np
import pytest
from numba import config, typeof

pytestmark = pytest.mark.skipif(config.ENABLE_CUDASIM, reason="numba's real CUDA target, not the simulator")


class _Memory:
    """What a DeviceNDArray needs of its allocation: a pointer value, a size, and no owner."""

    owner = None

    def __init__(self, pointer, size):
        self.device_pointer_value = pointer
        self.device_ctypes_pointer = ctypes.c_void_p(pointer)
        self._cuda_memsize_ = size


def _array(shape, strides, dtype, pointer=0x7F0000):
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    return DeviceNDArray(shape, strides, dtype, gpu_data=_Memory(pointer, 1 << 20))


ARRAYS = {
    "C": lambda: _array((3, 5), (40, 8), np.float64),
    "F": lambda: _array((5, 3), (8, 40), np.float64),
    "A": lambda: _array((3, 5), (80, 16), np.float32, pointer=0x7F0040),
    "broadcast": lambda: _array((4, 5), (0, 4), np.float32),
    "size 1": lambda: _array((1, 7), (28, 4), np.float32),
    "0-d": lambda: _array((), (), np.int64),
    "rank 3": lambda: _array((2, 3, 4), (48, 16, 4), np.uint8),
}


def _numba_params(value):
    from numba.cuda.dispatcher import _Kernel

    class Kernel:
        extensions = []

    params = []
    _Kernel._prepare_args(Kernel(), typeof(value), value, 0, [], params)
    return [p.value for p in params]


@pytest.mark.parametrize("name", list(ARRAYS))
def test_array_parameters_and_layout_are_numbas(name):
    from nbops.cuda import _launch

    a = ARRAYS[name]()
    params = []
    _launch._array_packer(a.dtype.itemsize)(a, params)
    assert [p.value for p in params] == _numba_params(a)
    assert _launch._layout(a) == typeof(a).layout


@pytest.mark.parametrize("value", [1.5, -3, True, np.float32(2.5), np.float64(-1.0), np.int32(-7), np.uint8(200),
                                   np.int64(1 << 40), np.bool_(False)])
def test_scalar_parameters_are_numbas(value):
    from nbops.cuda import _launch

    params = []
    _launch._scalar_packer(_launch._SCALARS[str(typeof(value))])(value, params)
    assert [p.value for p in params] == _numba_params(value)


def test_argument_classes_separate_what_numba_types_apart():
    from nbops.cuda import _launch

    kernel = object()
    key = _launch._key(kernel, (ARRAYS["C"](), 1.0, 2))
    assert key == _launch._key(kernel, (_array((7, 2), (16, 8), np.float64, pointer=0x800000), 3.0, 4))
    assert key != _launch._key(kernel, (ARRAYS["F"](), 1.0, 2))
    assert key != _launch._key(kernel, (ARRAYS["C"](), np.float32(1.0), 2))
    assert _launch._key(kernel, (ARRAYS["C"](), 1 << 70)) is None  # numba would not type it as int64
    assert _launch._key(kernel, (ARRAYS["C"](), (1, 2))) is None  # tuples go through the dispatcher
    assert _launch._dim3(5) == (5, 1, 1) and _launch._dim3((2, np.int64(3))) == (2, 3, 1)


class _Dispatcher:
    """A stand-in ``@cuda.jit`` dispatcher: a configured launch records itself and "compiles" an overload for the
    arguments' types, as numba's does on a first launch."""

    def __init__(self):
        self.launches, self.overloads = [], {}

    def __getitem__(self, configuration):
        def run(*args):
            self.launches.append((configuration, args))
            self.overloads[tuple(typeof(a) for a in args)] = _Overload()

        return run

    def typeof_pyval(self, value):
        return typeof(value)


class _Overload:
    cooperative, extensions = False, []

    class _codelibrary:
        @staticmethod
        def get_cufunc():
            return type("CUfunc", (), {"handle": "cufunc"})


def test_launch_packs_after_the_dispatchers_first_launch_of_a_class(monkeypatch):
    """With the fast path on, a class's first launch goes through the dispatcher, the next ones to
    driver.launch_kernel with numba's parameter values, the grid and block as 3-tuples and the call's stream."""
    import types

    from nbops import _arrays
    from nbops.cuda import _launch

    sent = []
    monkeypatch.setattr(_launch, "FAST", True)
    monkeypatch.setattr(_launch, "_driver", types.SimpleNamespace(
        launch_kernel=lambda *a, cooperative: sent.append((a, cooperative))))
    kernel = _Dispatcher()
    a, b = ARRAYS["C"](), _array((3, 5), (40, 8), np.float64, pointer=0x900000)
    _launch.launch(kernel, 4, (32, 2), a, b, 0.5, True)
    assert len(kernel.launches) == 1 and kernel.launches[0][0] == (4, (32, 2), 0) and not sent
    stream = types.SimpleNamespace(handle=ctypes.c_void_p(0xABC))
    outer, _arrays.LAUNCH.call = _arrays.LAUNCH.call, types.SimpleNamespace(stream=stream)
    try:
        _launch.launch(kernel, 4, (32, 2), b, a, 0.5, True)
    finally:
        _arrays.LAUNCH.call = outer
    assert len(kernel.launches) == 1 and len(sent) == 1
    (handle, gx, gy, gz, bx, by, bz, shared, hstream, params), cooperative = sent[0]
    assert (handle, gx, gy, gz, bx, by, bz, shared, hstream, cooperative) == ("cufunc", 4, 1, 1, 32, 2, 1, 0, 0xABC,
                                                                             False)
    want = _numba_params(b) + _numba_params(a) + _numba_params(0.5) + _numba_params(True)
    assert [p.value for p in params] == want
    _launch.launch(kernel, 4, 32, a, (1, 2))  # a class the fast path does not pack: the dispatcher, every time
    _launch.launch(kernel, 4, 32, a, (1, 2))
    assert len(kernel.launches) == 3 and len(sent) == 1


class _Lib:
    """A stand-in libcuda: cuMemAllocAsync hands out increasing addresses; every call is recorded."""

    def __init__(self):
        self.calls, self.next = [], 0x10000

    def cuMemAllocAsync(self, pointer, size, stream):
        pointer._obj.value = self.next
        self.calls.append(("alloc", self.next, size, stream))
        self.next += size
        return 0

    def cuMemFreeAsync(self, pointer, stream):
        self.calls.append(("free", pointer, stream))
        return 0


def test_pool_allocates_on_the_calls_stream_and_frees_there_at_the_next_allocation(monkeypatch):
    """The EMM plugin's bookkeeping with a stand-in libcuda: each allocation on the stream that ``Call.empty`` set,
    each collected array's free queued and issued, on its own stream, by the next allocation."""
    import gc
    import types

    from nbops import _arrays
    from nbops.cuda import _pool

    lib = _Lib()
    monkeypatch.setattr(_pool, "_LIB", [lib])
    class Context:  # numba hands the plugin a weakly referenced context
        device = types.SimpleNamespace(id=0)

    context = Context()
    manager = _pool.StreamOrderedMemoryManager(context=context)
    assert manager.interface_version == 1
    stream = types.SimpleNamespace(handle=ctypes.c_void_p(0x5))
    monkeypatch.setattr(_arrays.LAUNCH, "alloc", stream)
    first = manager.memalloc(256)
    assert first.device_pointer_value == 0x10000 and first.size == 256
    monkeypatch.setattr(_arrays.LAUNCH, "alloc", 0)
    second = manager.memalloc(64)
    del first
    gc.collect()
    assert lib.calls == [("alloc", 0x10000, 256, 0x5), ("alloc", 0x10100, 64, 0)]
    third = manager.memalloc(32)
    assert lib.calls[2:] == [("free", 0x10000, 0x5), ("alloc", 0x10140, 32, 0)]
    del second
    gc.collect()
    manager.reset()
    assert lib.calls[4:] == [("free", 0x10100, 0)] and third.device_pointer_value == 0x10140


def _numba_import(t):
    """The device array numba's ``from_cuda_array_interface`` makes of tensor ``t`` (its interface as torch writes
    it: strides None for a contiguous tensor), over a stand-in context."""
    from numba.cuda.api_util import prepare_shape_strides_dtype
    from numba.cuda.cudadrv import devicearray, driver

    dtype = t.numpy().dtype
    strides = None if t.is_contiguous() else tuple(s * dtype.itemsize for s in t.stride())
    shape, strides, dtype = prepare_shape_strides_dtype(tuple(t.shape), strides, dtype, order="C")
    size = driver.memory_size_from_info(shape, strides, dtype.itemsize)
    memory = driver.MemoryPointer(None, ctypes.c_size_t(t.data_ptr()), size=size, owner=t)
    return devicearray.DeviceNDArray(shape=shape, strides=strides, dtype=dtype, gpu_data=memory)


def test_torch_views_are_what_numba_imports(monkeypatch):
    """``_arrays._view`` (torch tensors as numba device arrays without the interface) against numba's own import,
    for every layout, first (constructor) and second (attributes reused) time; CPU tensors stand in for CUDA ones
    (empty tensors take numba's import itself)."""
    import types

    import torch
    from numba.cuda.cudadrv import devicearray, driver

    from nbops import _arrays

    monkeypatch.setattr(_arrays, "_NUMBA", [devicearray, types.SimpleNamespace(get_context=lambda: None), driver])
    monkeypatch.setattr(_arrays, "_LAYOUTS", {})
    base = torch.randn(6, 8)
    tensors = [base, base.T, base[1:, ::3], base[2], base[:, :1], base[2:3], base[None, 3:4].expand(5, 1, 8),
               base[None, 0].expand(1, 8), base.to(torch.int32), base > 0, base.double()[::2],
               torch.tensor(3.0)]
    for t in tensors:
        for _ in range(2):
            view = _arrays._view(t, t.numpy().dtype)
            assert _arrays._same_view(view, _numba_import(t)), (tuple(t.shape), t.stride())
            assert view.flags == _numba_import(t).flags and view.gpu_data.owner is t
