"""The benchmark report's statistics: per-round ratios, their spread, and the "noisy" verdict; the cuda timing loop
driven by a stand-in timer on CPU tensors, and the cuda report's format (no timings are asserted; the rows are built
from given samples or from the stand-in's clock)."""

import itertools
import threading
import time

import numba
import numpy as np
import torch

from bench import runner
from bench.core import Case
from bench.report import render, render_cuda, roof_range
from bench.runner import (CUDA_ROUNDS, CUDA_SECONDS, MAX_CALLS, MIN_ROUNDS, NOISY, Row, calls_per_round, run_case,
                          run_cuda_case, spread, time_round)


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


def test_no_budget_means_min_rounds_however_noisy(monkeypatch):
    # seconds 0 (the test above, or --seconds 0): the rounds stop at MIN_ROUNDS even when every round disagrees;
    # they once went on to MAX_ROUNDS, 20 minutes of a CI run on a noisy host
    medians = itertools.cycle([1.0, 3.0, 1.0, 1.0, 5.0])
    monkeypatch.setattr(runner, "_turn", lambda fn, args, target, turn_s: (next(medians), 0.0))
    samples = runner._rounds({"nbops": (None, ()), "torch": (None, ())}, "cpu", 0.0)
    assert [len(s) for s in samples.values()] == [MIN_ROUNDS, MIN_ROUNDS]
    assert max(spread(s) for s in samples.values()) > NOISY


def test_turn_waits_until_no_other_thread_spins():
    # a thread that burns a core for 80 ms, as OpenBLAS's workers do after NumPy's matmul: the provider's turn
    # starts only once it has stopped
    done = threading.Event()

    def spin():
        end = time.perf_counter() + 0.08
        while time.perf_counter() < end:
            pass
        done.set()

    worker = threading.Thread(target=spin)
    worker.start()
    calls = []
    median, spent = runner._turn(lambda: calls.append(done.is_set()), (), "cpu", 0.0)
    worker.join()
    assert calls and all(calls) and median >= 0 and spent >= 0


class FakeTimer:
    """A stand-in for ``CudaTimer``: a device clock that the providers advance by the device time each call takes,
    and events that read it."""

    def __init__(self):
        self.now = 0.0
        self.syncs = 0

    def event(self):
        timer = self

        class Event:
            def record(self):
                self.t = timer.now

            def synchronize(self):
                pass

            def elapsed_time(self, other):
                return (other.t - self.t) * 1e3  # ms, as torch.cuda.Event reports

        return Event()

    def synchronize(self):
        self.syncs += 1

    def op(self, device_s, fn):
        def run(*args):
            self.now += device_s
            return fn(*args)

        return run


def test_time_round_reports_device_time_per_call_from_events():
    timer = FakeTimer()
    host, device = time_round(timer.op(2e-3, lambda: None), (), 10, timer)
    assert abs(device - 2e-3) < 1e-12 and 0 <= host < 1e-3 and timer.syncs == 1


def test_calls_per_round_fills_the_round_within_bounds():
    assert calls_per_round(1e-3, 0.03) == 30
    assert calls_per_round(1.0, 0.03) == 1
    assert calls_per_round(1e-9, 0.03) == MAX_CALLS == calls_per_round(0.0, 0.03)


def test_cuda_case_times_device_and_host_and_checks_parity():
    """The cuda loop on CPU tensors with a stand-in timer: nbops takes 1 ms of device time per call, torch 3 ms."""
    timer = FakeTimer()
    case = Case("add 64", "pointwise", lambda rng, dt: (rng.standard_normal(64).astype(dt),) * 2,
                timer.op(1e-3, torch.add), timer.op(3e-3, torch.add), bytes=768.0)
    row = run_cuda_case(case, CUDA_SECONDS, timer=timer, device="cpu")
    assert row.parity == "ok" and not row.error and row.rounds == CUDA_ROUNDS
    assert abs(row.ms["nbops"] - 1.0) < 1e-9 and abs(row.speedup("torch") - 3.0) < 1e-9
    round_s = CUDA_SECONDS / CUDA_ROUNDS
    assert row.calls == {"nbops": calls_per_round(1e-3, round_s), "torch": calls_per_round(3e-3, round_s)}
    assert set(row.host_us) == {"nbops", "torch"} and all(v >= 0 for v in row.host_us.values())


def test_cuda_case_out_argument_parity_reads_nbops_result_before_torch_runs():
    def wrong_into(a, o):  # writes a wrong answer; torch's right one lands in the same tensor afterwards
        o.copy_(a + 1)
        return o

    timer = FakeTimer()
    case = Case("out=", "linear", lambda rng, dt: (rng.standard_normal(8).astype(dt), np.zeros(8, dt)),
                timer.op(1e-3, wrong_into), timer.op(1e-3, lambda a, o: torch.mul(a, 1, out=o)), bytes=64.0)
    row = run_cuda_case(case, 0.01, timer=timer, device="cpu")
    assert row.parity.startswith("FAIL (max abs err 1")


def test_cuda_report_shows_device_and_host_times_and_percent_of_references():
    copy = Case("torch copy_ 1 GiB", "reference", None, None, None, bytes=2e9)
    ref = _row_of(copy, {"torch": [1e-3] * 5}, {"torch": [1e-5] * 5})  # 2000 GB/s
    case = Case("relu", "activation", None, None, None, bytes=1e9)
    row = _row_of(case, {"nbops": [1e-3] * 5, "torch": [0.5e-3] * 5}, {"nbops": [2e-5] * 5, "torch": [1e-5] * 5})
    text = render_cuda({"target": "cuda"}, [row], [ref])
    assert "| reference | torch copy_ 1 GiB | - | 1000 | - | 10 | - | 2000 GB/s | - / 100 |" in text
    assert "| activation | relu | 1000 | 500 | 20 | 10 | 1000 GB/s | 2000 GB/s | 50 / 100 | 0.5 |" in text
    assert "| activation | 1 | 0 | 0.5 | 0.5 | 0 |" in text and "reference" not in text.split("Family summ")[1]


def _row_of(case, device, host):
    row = Row(case)
    row.samples = device
    row.ms = {p: float(np.median(s)) * 1e3 for p, s in device.items()}
    row.host_us = {p: float(np.median(s)) * 1e6 for p, s in host.items()}
    row.spread = {p: spread(s) for p, s in device.items()}
    row.rounds, row.calls = 5, {p: 10 for p in device}
    return row


def test_reference_rows_time_torch_alone_and_the_launch_floor_against_torch(monkeypatch):
    """The reference rows on CPU tensors at toy sizes; the stand-in's device clock is the host's."""
    class HostClock(FakeTimer):
        def event(self):
            event = super().event()
            event.record = lambda: setattr(event, "t", time.perf_counter())
            return event

    monkeypatch.setattr(runner, "COPY_BYTES", 1 << 12)
    monkeypatch.setattr(runner, "MATMUL_N", 16)
    copy, matmul, floor = runner.run_references(0.01, timer=HostClock(), device="cpu")
    assert set(copy.ms) == {"torch"} and copy.rate("torch")[1] == "GB/s" and copy.speedup("torch") is None
    assert matmul.case.flops == 2 * 16 ** 3 and matmul.rate("torch")[1] == "GFLOP/s"
    assert floor.parity == "ok" and set(floor.ms) == {"nbops", "torch"}
    assert "| reference | torch copy_ 1 GiB | - |" in render_cuda({}, [], [copy, matmul, floor])


def test_ceilings_fma_loop_computes_its_chains_and_the_table_has_every_row(monkeypatch):
    # the FMA-peak loop is real arithmetic (CHAINS chains of acc = acc * b + c from c + j, summed over the lanes),
    # and the table measures all four ceilings with positive rates (tiny sizes here)
    from bench import ceilings

    b, c, steps = np.float32(0.5), np.float32(0.25), 5
    acc = np.array([c + j for j in range(ceilings.CHAINS)], np.float64)
    for _ in range(steps):
        acc = acc * b + c
    expected = acc.sum() * ceilings.LANES
    assert np.isclose(ceilings.fma_one(steps, b, c), expected, rtol=1e-6)
    monkeypatch.setattr(ceilings, "STEPS", 1000)
    monkeypatch.setattr(ceilings, "MIB", 1)
    rows = ceilings.measure(rounds=3)
    assert [r[0].split(",")[0] for r in rows] == ["FMA peak", "FMA peak", "read", "copy"]
    assert all(lo <= med <= hi and lo > 0 for _, med, lo, hi, _ in rows)


def test_roof_floor_is_the_longer_of_compute_and_memory_time():
    from bench.ceilings import floor_ms

    roof = {"fma": 200.0, "read": 40.0, "copy": 32.0}  # GFLOP/s, GB/s, GB/s read plus written
    # a copy of S bytes (2S counted, S written) takes exactly the copy roof's time, 2S / copy
    assert np.isclose(floor_ms(0.0, 2e9, 1e9, roof), 2e9 / 32.0 / 1e6)
    # a reduction reads at the read roof (its 4-byte output is next to nothing)
    assert np.isclose(floor_ms(1e9, 4e9 + 4, 4.0, roof), (4e9 / 40.0 + 4 * (2 / 32.0 - 1 / 40.0)) / 1e6)
    # a GEMM is bound by its flops; a case that counts nothing has no floor; written never exceeds the bytes
    assert np.isclose(floor_ms(2e12, 1e8, 4e7, roof), 2e12 / 200.0 / 1e6)
    assert floor_ms(0.0, 0.0, 0.0, roof) is None
    assert floor_ms(0.0, 1e9, 5e9, roof) == floor_ms(0.0, 1e9, 1e9, roof)


def test_report_prints_each_providers_share_of_the_roofs():
    row = run_case(_case(), "cpu", 0.0)
    assert row.out_bytes == 64 * 4  # nbops' float32 sum of two 64-vectors, as run_case measured it
    row.ms = {"nbops": 1e-3, "torch": 2e-3}  # 768 bytes (256 written) in 1 and 2 us
    assert "| - / - |" in render({}, [row])  # no roofs measured
    row.roof = {"fma": 100.0, "read": 1.0, "copy": 1.0}  # GB/s: a written byte costs one read's time more
    assert "| 77 / 38 |" in render({}, [row])  # 512 read + 256 x (2 - 1) written = 768 ns: of 1 us, of 2 us
    assert runner._nbytes((np.zeros(3), torch.zeros(2, dtype=torch.int64))) == 24 + 16
    other = _row([1.0] * 4, [1.0] * 4)
    other.roof = {"fma": 120.0, "read": 3.0, "copy": 0.5}
    assert roof_range([row, other, _row([1.0] * 4, [1.0] * 4)]).startswith(
        "FMA 100-120 GFLOP/s, read 1.0-3.0 GB/s, copy 0.5-1.0 GB/s")
    assert roof_range([_row([1.0] * 4, [1.0] * 4)]) is None


def test_roofs_are_the_median_of_short_calls(monkeypatch):
    from bench import ceilings

    monkeypatch.setattr(ceilings, "MIB", 1)
    # each probe's calls took 1 to 4 s, 2 s the median: the roof is its amount over the median call
    monkeypatch.setattr(ceilings, "_median_spread", lambda fn, rounds: (2.0, 1.0, 4.0))
    roof = ceilings.roofs(rounds=3, steps=10)
    flops = ceilings.CHAINS * ceilings.LANES * 2.0 * 10 * numba.get_num_threads()
    assert roof == {"fma": flops / 2e9, "read": (1 << 20) / 2e9, "copy": 2 * (1 << 20) / 2e9}
    monkeypatch.undo()
    monkeypatch.setattr(ceilings, "MIB", 1)
    real = ceilings.roofs(rounds=2, steps=1000)
    assert set(real) == {"fma", "read", "copy"} and min(real.values()) > 0


def test_calls_table_times_every_small_case_against_torch(monkeypatch):
    # python -m bench.calls: one row per case, nbops' and torch's median us per call and the per-round ratio
    from bench import calls

    monkeypatch.setattr(runner, "LEAD_S", 0.0)
    monkeypatch.setattr(runner, "_quiesce", lambda: None)
    monkeypatch.setattr(calls, "_rounds", lambda providers, target, seconds: runner._rounds(
        providers, target, 0, turn_s=0.0005))
    rows = calls.measure()
    assert len(rows) == len(calls._cases(np.random.default_rng(0))) >= 10
    for name, nb, th, ratio, sp in rows:
        assert nb > 0 and th > 0 and ratio > 0 and sp >= 0, name
