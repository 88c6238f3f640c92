"""The benchmark report's statistics: per-round ratios, their spread, and the "noisy" verdict (no timings are
asserted; the rows are built from given samples)."""

import numpy as np
import torch

from bench.core import Case
from bench.report import render
from bench.runner import MIN_ROUNDS, NOISY, Row, run_case, spread


def _case():
    return Case("add 64", "pointwise", lambda rng, dt: (rng.standard_normal(64).astype(dt),) * 2,
                np.add, torch.add, numpy=np.add, bytes=768.0)


def _row(nb, th):
    row = Row(_case())
    row.samples = {"nbops": nb, "torch": th}
    row.ms = {p: float(np.median(s)) * 1e3 for p, s in row.samples.items()}
    row.spread = {p: spread(s) for p, s in row.samples.items()}
    row.rounds = len(nb)
    return row


def test_spread_is_the_relative_interquartile_range():
    assert spread([1.0, 2.0, 3.0, 4.0, 5.0]) == 2.0 / 3.0
    assert spread([2.0] * 9) == 0.0
    assert spread([1.0, 9.0, 5.0]) == 0.0  # too few samples to tell


def test_ratio_is_the_median_of_per_round_ratios():
    # torch is twice as slow in every round while both drift a little together: the paired ratio stays 2, trusted
    nb = [1.0, 1.1, 0.95, 1.05, 1.0, 1.08, 0.97, 1.02]
    row = _row(nb, [2 * t for t in nb])
    assert row.speedup("torch") == 2.0 and row.ratio_spread("torch") <= NOISY and not row.noisy("torch")
    assert "| 2 |" in render({}, [row])


def test_wide_ratio_spread_prints_noisy():
    row = _row([1.0] * 8, [0.5, 2.0, 0.6, 1.9, 0.7, 1.8, 0.5, 2.1])
    assert row.ratio_spread("torch") > NOISY and row.noisy("torch")
    text = render({}, [row])
    assert "noisy (" in text and "| pointwise | 1 | 1 | - | - | 0 |" in text


def test_provider_switching_speeds_prints_noisy():
    # both providers switch between two speeds in step: the per-round ratio is steady, the times are not
    nb = [1.0, 3.0] * 4
    row = _row(nb, [2 * t for t in nb])
    assert spread(row.ratios("torch")) == 0.0 and row.noisy("torch")


def test_run_case_warms_up_and_times_enough_rounds():
    row = run_case(_case(), "cpu", 0.0)
    assert row.parity == "ok" and row.rounds >= MIN_ROUNDS
    assert set(row.samples) == {"nbops", "torch", "numpy"} and all(len(s) == row.rounds for s in row.samples.values())
