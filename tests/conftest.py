"""Test configuration: the cuda marker runs only where numba.cuda is available (a GPU, or the simulator with
NUMBA_ENABLE_CUDASIM=1 set before numba is imported); the slow marker's deep checks are collected only with
--slow (deselected otherwise, like a -m filter, so a normal run lists no skips)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False, help="run the slow (deep) checks too")


def _cuda_available():
    from numba import cuda

    return cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--slow"):
        slow = [item for item in items if item.get_closest_marker("slow")]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [item for item in items if not item.get_closest_marker("slow")]
    want_cuda = any(item.get_closest_marker("cuda") for item in items)
    skip_cuda = pytest.mark.skip(reason="no CUDA device and NUMBA_ENABLE_CUDASIM is not set")
    cuda_ok = want_cuda and _cuda_available()
    for item in items:
        if item.get_closest_marker("cuda") and not cuda_ok:
            item.add_marker(skip_cuda)
