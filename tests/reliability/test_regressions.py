"""Minimal cases the fuzz tests shrank to, kept as plain parity tests (each failed before its fix)."""

import numpy as np
import pytest
import torch

import nbops
from helpers import DTYPES, TARGETS, check, make


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("exponent", [0.5, -0.5])
def test_pow_half_is_sqrt(target, dtype, exponent):
    """torch computes x ** +-0.5 as (1 /) sqrt(x): sqrt(-inf) is NaN, sqrt(-0.0) is -0.0 (C's pow: inf, 0.0)."""
    x = np.array([-np.inf, -0.0, 0.0, np.inf, -4.0, 4.0, 3.0, np.nan], dtype=dtype)
    got = check(nbops.pow, torch.pow, target, x, exponent)
    want = torch.pow(torch.from_numpy(x), exponent).numpy()
    assert np.array_equal(np.signbit(got[1:4]), np.signbit(want[1:4]))


@pytest.mark.parametrize("op", ["sum", "amax", "var", "logsumexp"])
def test_reduce_size_one_dims_of_permuted_view(op):
    """Reducing only size-1 dims of a view whose axes are permuted in memory kept the memory order of the rest."""
    x = np.transpose(make((3, 1, 2, 1), np.float32), (2, 1, 0, 3))
    assert x.shape == (2, 1, 3, 1) and not x.flags.c_contiguous
    for dim in (1, 3, (1, 3)):
        check(getattr(nbops, op), getattr(torch, op), "cpu", x, dim=dim)


@pytest.mark.parametrize("shape, groups", [((1, 1), 1), ((1, 2), 2), ((1, 4, 1, 1), 4)])
def test_group_norm_one_value_per_group_raises(shape, groups):
    """F.group_norm rejects a single value per (sample, group), as batch_norm does in training."""
    x = make(shape, np.float32)
    with pytest.raises(ValueError, match=r"group_norm\(\): Expected more than 1 value per channel"):
        nbops.group_norm(x, groups)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        torch.nn.functional.group_norm(torch.from_numpy(x), groups)


@pytest.mark.parametrize("bounds", [(float("nan"), 1.0), (-1.0, float("nan"))])
def test_hardtanh_nan_bound_raises(bounds):
    """A NaN bound was silently ignored (torch returns NaN everywhere); nbops rejects it."""
    with pytest.raises(ValueError, match=r"hardtanh\(\): min_val and max_val must not be NaN"):
        nbops.hardtanh(make((3, 4), np.float32), *bounds)
