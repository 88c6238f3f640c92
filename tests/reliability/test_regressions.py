"""Minimal cases the fuzz tests shrank to, kept as plain parity tests (each failed before its fix)."""

import numpy as np
import pytest
import torch

import nbops
from helpers import DTYPES, TARGETS, check


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("exponent", [0.5, -0.5])
def test_pow_half_is_sqrt(target, dtype, exponent):
    """torch computes x ** +-0.5 as (1 /) sqrt(x): sqrt(-inf) is NaN, sqrt(-0.0) is -0.0 (C's pow: inf, 0.0)."""
    x = np.array([-np.inf, -0.0, 0.0, np.inf, -4.0, 4.0, 3.0, np.nan], dtype=dtype)
    got = check(nbops.pow, torch.pow, target, x, exponent)
    want = torch.pow(torch.from_numpy(x), exponent).numpy()
    assert np.array_equal(np.signbit(got[1:4]), np.signbit(want[1:4]))
