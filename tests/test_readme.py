"""The README's quick start runs as written: its NumPy half on the cpu run, the whole of it under the cuda run."""

import os
import re

import numpy as np
import pytest

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def _quick_start():
    with open(README) as f:
        return re.search(r"```python\n(.*?)```", f.read(), re.S).group(1)


def test_quick_start_on_numpy():
    code = _quick_start().split("from numba import cuda")[0]
    scope = {}
    exec(code, scope)
    assert scope["y"].shape == (4, 8, 16, 16) and scope["p"].shape == (4, 8)
    np.testing.assert_allclose(scope["p"].sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.cuda
def test_quick_start_on_cuda_arrays():
    scope = {}
    exec(_quick_start(), scope)
    np.testing.assert_allclose(scope["yd"].copy_to_host(), scope["y"], rtol=1e-5, atol=1e-5)
