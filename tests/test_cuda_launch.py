"""``nbops.cuda._launch``'s parameter packing against numba's own marshalling, on the CPU (no GPU, no simulator).

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


def test_argument_classes_separate_what_numba_types_apart(monkeypatch):
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    from nbops.cuda import _launch

    monkeypatch.setattr(_launch, "_DeviceNDArray", DeviceNDArray)
    kernel = object()
    key = _launch._key(kernel, (ARRAYS["C"](), 1.0, 2))
    assert key == _launch._key(kernel, (_array((7, 2), (16, 8), np.float64, pointer=0x800000), 3.0, 4))
    assert key != _launch._key(kernel, (ARRAYS["F"](), 1.0, 2))
    assert key != _launch._key(kernel, (ARRAYS["C"](), np.float32(1.0), 2))
    assert _launch._key(kernel, (ARRAYS["C"](), 1 << 70)) is None  # numba would not type it as int64
    assert _launch._key(kernel, (ARRAYS["C"](), (1, 2))) is None  # tuples go through the dispatcher
    assert _launch._dim3(5) == (5, 1, 1) and _launch._dim3((2, np.int64(3))) == (2, 3, 1)
