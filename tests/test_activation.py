import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nbops
from helpers import DTYPES, TARGETS, check, make

SHAPES = [(7,), (3, 5), (2, 3, 4, 5), (1,), (0, 3), ()]
LAYOUTS = ["contiguous", "transposed", "strided"]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_relu(target, dtype, shape):
    check(nbops.relu, F.relu, target, make(shape, dtype))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("layout", LAYOUTS[1:])
def test_relu_noncontiguous(target, layout):
    check(nbops.relu, F.relu, target, make((5, 6), np.float32, layout=layout))


@pytest.mark.parametrize("target", TARGETS)
def test_relu_nan_inf(target):
    x = np.array([np.nan, -np.inf, np.inf, -0.0, 1e-40], dtype=np.float32)
    check(nbops.relu, F.relu, target, x)
