"""Collecting cases, moving their inputs to the target, timing providers in rounds of turns, checking parity."""

import ctypes
import datetime
import importlib
import os
import pkgutil
import platform
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from . import cases as _cases_pkg

# Before a provider's turn the process must be quiet: after a call, each runtime's worker threads spin on the cores
# for a while, waiting for more work (on this 2-core VM, CPU time burnt while the main thread slept: OpenBLAS
# (NumPy's matmul) 105 ms, numba's OpenMP workers 8 ms, torch's 5 ms). A call that starts while another runtime
# spins shares a core with it: nbops' matmul 256^3 took 7.8 ms right after NumPy's (0.17 ms alone), torch's 4.0 ms;
# nbops' and torch's 0.37 / 0.32 ms back to back (0.18 / 0.13 alone).
QUIET_STEP_S = 0.01  # one look at the process's CPU use while the main thread sleeps: long enough for the
# scheduler tick (4 ms here) to have charged a spinning thread's time (2 ms looks missed spinners)
QUIET_BUSY = 0.1  # the process is quiet when its threads used less than this fraction of one core during a step
QUIET_MAX_S = 0.5  # the longest wait for quiet (a process with a thread that never sleeps is timed anyway)
LEAD_S = 0.015  # a provider's turn in a round starts with untimed calls for at least this long (one at least):
# after a quiet wait the first two calls wake its pool on an idle vCPU (matmul 256^3 here: 6-8 and 4 ms, then 0.3)
TURN_S = 0.02  # then timed calls for at least this long (one at least); the round's sample is their median
WARMUP_S, WARMUP_CALLS = 0.1, 2  # untimed rounds before the timed ones: at least this many, and this long
MIN_ROUNDS, MAX_ROUNDS = 10, 400
NOISY = 0.2  # above this (q3 - q1) / median of a row's times or per-round ratios, it says "noisy", not a ratio
EXTEND = 3.0  # a case whose spread is above NOISY keeps sampling up to EXTEND times its time budget


@dataclass
class Row:
    case: object
    ms: dict = field(default_factory=dict)  # provider -> median ms
    spread: dict = field(default_factory=dict)  # provider -> (q3 - q1) / median of its timed rounds
    samples: dict = field(default_factory=dict)  # provider -> seconds of each timed round, in round order
    rounds: int = 0
    first_call_s: float = float("nan")
    out_bytes: float = 0.0  # bytes of nbops' output (cpu): what a call writes, for the report's % roof
    roof: dict = None  # the host's roofs measured just before the case (cpu; ``bench.ceilings.roofs``)
    host_us: dict = field(default_factory=dict)  # provider -> median host us per call (cuda)
    calls: dict = field(default_factory=dict)  # provider -> back-to-back calls per timed round (cuda)
    parity_ok: bool = True
    parity: str = ""
    error: str = ""

    def ratios(self, other):
        """Per round, ``other``'s time over nbops' time in that round (> 1: nbops is faster): the two calls of a
        round ran within milliseconds of each other, so load that lasts longer than a round cancels out."""
        return [t / n for n, t in zip(self.samples["nbops"], self.samples[other])]

    def speedup(self, other):
        """The median of the per-round ratios (``ratios``), or None where a provider is missing."""
        if "nbops" not in self.samples or other not in self.samples:
            return None
        return statistics.median(self.ratios(other))

    def ratio_spread(self, other):
        """The widest of three spreads ((q3 - q1) / median): of the per-round ratios (how far one round's verdict
        strays from the median's), and of nbops' and ``other``'s own times (a provider that switches between two
        speeds within a run may switch between runs too)."""
        return max(spread(self.ratios(other)), self.spread["nbops"], self.spread[other])

    def noisy(self, other):
        """True when the rounds spread too widely (``ratio_spread`` above NOISY) for the ratio to be trusted."""
        return self.ratio_spread(other) > NOISY

    def rate(self, provider):
        """(value, unit) for the provider: GFLOP/s when the case counts flops, else GB/s."""
        ms = self.ms.get(provider)
        if not ms:
            return None, ""
        if self.case.flops:
            return self.case.flops / ms / 1e6, "GFLOP/s"
        if self.case.bytes:
            return self.case.bytes / ms / 1e6, "GB/s"
        return None, ""


def collect(families, target, quick, name_filter=""):
    """Every Case of the requested families (all when empty) that runs on ``target``."""
    names = [m.name for m in pkgutil.iter_modules(_cases_pkg.__path__)]
    unknown = set(families) - set(names)
    if unknown:
        raise SystemExit(f"bench: unknown families {sorted(unknown)}; known: {sorted(names)}")
    out = []
    for name in names:
        if families and name not in families:
            continue
        module = importlib.import_module(f"{_cases_pkg.__name__}.{name}")
        for case in module.CASES:
            if target in case.targets and (case.quick or not quick) and name_filter in case.name:
                out.append(case)
    return out


def environment(target):
    """The header facts: machine, versions, threads, date, device. Call it after the cases ran."""
    import numba
    import torch

    import nbops

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "target": target,
        "machine": f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}",
        "versions": f"python {platform.python_version()}, nbops {nbops.__version__}, numba {numba.__version__}, "
        f"numpy {np.__version__}, torch {torch.__version__}",
        "threads": f"nbops/numba {nbops.get_num_threads()} ({_threading_layer()} layer), torch {torch.get_num_threads()}",
    }
    if target == "cuda":
        env["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "numba CUDA device"
        env["versions"] += f", numba-cuda {_numba_cuda_version()}"
        env["notes"] = f"torch TF32 matmul {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}"
    return env


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's cap on M_MMAP_THRESHOLD for 64-bit processes


def _steady_malloc():
    """Keep freed memory of up to 32 MiB in glibc's heap instead of returning it to the system (and taking page
    faults when the next call's output reuses it). Without this, glibc's adaptive thresholds flip between the two
    states during a run, and calls that allocate multi-MiB outputs (torch's and nbops' alike) take one of two
    times: torch's 7x7 first layer 5.5-6 or 14-15 ms. A no-op where the C library has no mallopt."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):
        pass


def prepare(target):
    """Settings that must hold before anything is timed: a steady allocator (``_steady_malloc``); on cuda, torch's
    TF32 off so both sides do fp32 math."""
    _steady_malloc()
    if target == "cuda":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def _numba_cuda_version():
    """The numba-cuda package's version, or a note that numba's built-in CUDA target is in use."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("numba-cuda")
    except PackageNotFoundError:
        return "not installed (numba's built-in CUDA target)"


def _threading_layer():
    """numba's threading layer; it is chosen at the first parallel launch, so ask after the cases ran."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return "not yet chosen"


def _to_nbops(x, target):
    if target == "cuda" and isinstance(x, np.ndarray):
        from numba import cuda

        return cuda.to_device(x)
    return x


def _to_torch(x, target):
    import torch

    if isinstance(x, np.ndarray):
        t = torch.from_numpy(x.copy())
        return t.cuda() if target == "cuda" else t
    return x


def _host(x):
    import torch

    if isinstance(x, (tuple, list)):
        return _host(x[0])
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if hasattr(x, "copy_to_host"):
        return torch.from_numpy(x.copy_to_host())
    return torch.from_numpy(np.asarray(x))


def _nbytes(x):
    """Bytes of an op's result: an array, or the arrays of a tuple or list (a pooling's values and indices)."""
    if isinstance(x, (tuple, list)):
        return float(sum(_nbytes(v) for v in x))
    return float(getattr(x, "nbytes", 0))


def _sync(target):
    if target == "cuda":
        import torch
        from numba import cuda

        cuda.synchronize()
        torch.cuda.synchronize()


def _timed(fn, args, target):
    _sync(target)
    t0 = time.perf_counter()
    result = fn(*args)
    _sync(target)
    return time.perf_counter() - t0, result


def spread(samples):
    """(q3 - q1) / median of ``samples``: the relative width of their middle half (0 for fewer than 4)."""
    if len(samples) < 4:
        return 0.0
    q1, med, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return (q3 - q1) / med if med > 0 else 0.0


def _quiesce():
    """Sleep until no other thread of this process is spinning (``QUIET_BUSY``), at most QUIET_MAX_S."""
    start = time.perf_counter()
    while time.perf_counter() - start < QUIET_MAX_S:
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(QUIET_STEP_S)
        if time.process_time() - cpu < QUIET_BUSY * (time.perf_counter() - wall):
            return


def _turn(fn, args, target, turn_s):
    """One provider's turn in a round: wait for quiet, untimed calls for LEAD_S, then timed calls for at least
    ``turn_s`` (one at least). Returns (median seconds per call, seconds spent in timed calls)."""
    _quiesce()
    lead = time.perf_counter()
    while True:
        _timed(fn, args, target)
        if time.perf_counter() - lead >= LEAD_S:
            break
    times, total = [], 0.0
    while not times or total < turn_s:  # a running total (summing the list after each call was quadratic)
        times.append(_timed(fn, args, target)[0])
        total += times[-1]
    return statistics.median(times), total


def _warm_up(providers, target):
    """Call every provider untimed, in turns, in at least WARMUP_CALLS rounds and for at least WARMUP_S: the thread
    pools are up, the code and data are in cache, and the clock has ramped before the first timed round."""
    start = time.perf_counter()
    calls = 0
    while calls < WARMUP_CALLS or time.perf_counter() - start < WARMUP_S:
        for fn, args in providers.values():
            _quiesce()
            _timed(fn, args, target)
        calls += 1


def _rounds(providers, target, seconds, turn_s=TURN_S):
    """Timed samples per provider: rounds of one turn per provider (``_turn``: quiet, a wake-up call, then the
    median of ``turn_s`` of calls) until there were MIN_ROUNDS and one provider has spent ``seconds`` in timed calls
    (or the rounds took twice that, for calls much shorter than the waits); while any provider's samples or their
    per-round ratios to nbops spread above NOISY, rounds go on up to EXTEND times those limits (more samples steady
    the median on a noisy machine), never beyond MAX_ROUNDS. ``seconds`` 0: MIN_ROUNDS rounds, however noisy."""
    samples = {p: [] for p in providers}
    spent = {p: 0.0 for p in providers}
    start = time.perf_counter()
    for r in range(MAX_ROUNDS):
        for p, (fn, args) in providers.items():
            median, used = _turn(fn, args, target, turn_s)
            samples[p].append(median)
            spent[p] += used
        used = max(max(spent.values()) / seconds, (time.perf_counter() - start) / (2 * seconds)) if seconds else EXTEND
        if r + 1 < MIN_ROUNDS or used < 1:
            continue
        ratios = [[t / n for n, t in zip(samples["nbops"], s)] for p, s in samples.items() if p != "nbops"]
        if used >= EXTEND or max(spread(s) for s in ratios + list(samples.values())) <= NOISY:
            break
    return samples


def run_case(case, target, seconds, numba_arrays=False):
    """Time every provider of ``case`` on ``target`` and check nbops' output against torch's.

    The first call of each provider (nbops' compile or cache load) is timed on its own as ``first_call_s`` and its
    output checked for parity; warm-up calls follow (``_warm_up``), then the timed rounds (``_rounds``). On cuda the
    case goes to ``run_cuda_case`` instead (device time from CUDA events; ``numba_arrays`` feeds nbops numba device
    arrays over the torch tensors' memory instead of the tensors themselves)."""
    if target == "cuda":
        return run_cuda_case(case, seconds, numba_arrays=numba_arrays)
    row = Row(case)
    dtype = np.dtype(case.dtype)
    inputs = case.setup(np.random.default_rng(0), dtype)
    providers = {"nbops": (case.nbops, tuple(_to_nbops(x, target) for x in inputs)),
                 "torch": (case.torch, tuple(_to_torch(x, target) for x in inputs))}
    if case.numpy is not None and target == "cpu":
        providers["numpy"] = (case.numpy, inputs)
    try:
        row.first_call_s, out_nb = _timed(case.nbops, providers["nbops"][1], target)
        _, out_t = _timed(case.torch, providers["torch"][1], target)
        _check_parity(row, _host(out_nb), _host(out_t))
        row.out_bytes = _nbytes(out_nb)
        del out_nb, out_t
        _warm_up(providers, target)
        samples = _rounds(providers, target, seconds)
        row.rounds = len(samples["nbops"])
        row.samples = samples
        row.ms = {p: statistics.median(s) * 1e3 for p, s in samples.items()}
        row.spread = {p: spread(s) for p, s in samples.items()}
    except Exception as exc:  # a broken case is reported in its row, the rest of the report still runs
        row.parity_ok, row.parity, row.error = False, "ERROR", f"{type(exc).__name__}: {exc}"
    return row


def _check_parity(row, a, e):
    """Set ``row.parity``: "ok" when nbops' output ``a`` matches torch's ``e`` (torch.testing tolerances, or the
    case's), else FAIL with the largest absolute error or the two shapes."""
    import torch

    case = row.case
    try:
        torch.testing.assert_close(a.to(e.dtype), e, rtol=case.rtol, atol=case.atol, equal_nan=True)
        row.parity = "ok"
    except AssertionError:
        if a.shape == e.shape:
            err = (a.double() - e.double()).abs().nan_to_num(nan=float("inf")).max().item()
            row.parity_ok, row.parity = False, f"FAIL (max abs err {err:.3g})"
        else:
            row.parity_ok, row.parity = False, f"FAIL (shape {tuple(a.shape)} vs {tuple(e.shape)})"


# --- cuda: device time from CUDA events around back-to-back calls ----------------------------------------------

CUDA_SECONDS = 0.15  # default timing budget per provider per case on cuda: CUDA_ROUNDS rounds of ~30 ms each
CUDA_ROUNDS, CUDA_MAX_ROUNDS = 5, 15  # timed rounds per provider; up to CUDA_MAX_ROUNDS while they spread widely
MAX_CALLS = 4000  # calls in one round at most (a launch-bound call of ~5 us fills 20 ms)
COPY_BYTES = 1 << 30  # the copy_ reference: a 1 GiB float32 tensor copied into another (2 GiB moved)
MATMUL_N = 8192  # the matmul reference: fp32 8192^3 through cuBLAS with TF32 off


class CudaTimer:
    """CUDA events on torch's current stream (device time) and ``torch.cuda.synchronize``; tests pass a stand-in
    with the same three members."""

    def __init__(self):
        import torch

        self._torch = torch

    def event(self):
        return self._torch.cuda.Event(enable_timing=True)

    def synchronize(self):
        self._torch.cuda.synchronize()


def time_round(fn, args, calls, timer):
    """(host seconds, device seconds) per call of ``calls`` back-to-back calls of ``fn(*args)``, started on an idle
    device. Device time is the span between events recorded before the first call and after the last, so for calls
    that the host issues slower than the device runs them it includes the device's waits: it is the time a user
    sees per call in a loop. Host time is the issuing loop alone (no sync inside), which blocks only when the launch
    queue is full."""
    timer.synchronize()
    start, stop = timer.event(), timer.event()
    start.record()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn(*args)
    host = time.perf_counter() - t0
    stop.record()
    stop.synchronize()
    return host / calls, start.elapsed_time(stop) * 1e-3 / calls


def calls_per_round(per_call_s, round_s):
    """Back-to-back calls that fill ``round_s`` at ``per_call_s`` each: at least 1, at most MAX_CALLS."""
    if per_call_s <= 0:
        return MAX_CALLS
    return max(1, min(MAX_CALLS, round(round_s / per_call_s)))


def cuda_rounds(providers, seconds, timer):
    """Timed rounds of every provider, interleaved: ({provider: [device s per call, per round]}, {provider: [host s
    per call]}, {provider: calls per round}).

    Each provider's round length is set from its first call (synchronised, after the compile) and refined by two
    untimed warm-up rounds (the clocks ramp up, the allocator holds the outputs' blocks) to fill seconds /
    CUDA_ROUNDS of max(host, device) time. Then CUDA_ROUNDS timed rounds, more (up to CUDA_MAX_ROUNDS) while any
    provider's device times or per-round ratios to nbops spread above NOISY."""
    round_s = seconds / CUDA_ROUNDS
    calls = {}
    for p, (fn, args) in providers.items():
        timer.synchronize()
        t0 = time.perf_counter()
        fn(*args)
        timer.synchronize()
        calls[p] = calls_per_round(time.perf_counter() - t0, round_s)
        for _ in range(2):
            host, device = time_round(fn, args, calls[p], timer)
            calls[p] = calls_per_round(max(host, device), round_s)
    device = {p: [] for p in providers}
    host = {p: [] for p in providers}
    for r in range(CUDA_MAX_ROUNDS):
        for p, (fn, args) in providers.items():
            h, d = time_round(fn, args, calls[p], timer)
            host[p].append(h)
            device[p].append(d)
        if r + 1 < CUDA_ROUNDS:
            continue
        ratios = [[t / n for n, t in zip(device["nbops"], s)] for p, s in device.items()
                  if p != "nbops" and "nbops" in device]
        if max(spread(s) for s in ratios + list(device.values())) <= NOISY:
            break
    return device, host, calls


def _to_device(x, device):
    """A case input as a torch tensor on ``device`` (a copy of the NumPy array; other values pass through)."""
    import torch

    if isinstance(x, np.ndarray):
        return torch.from_numpy(x.copy()).to(device)
    return x


def _numba_view(x):
    """A numba device array over a torch CUDA tensor's memory (other values pass through)."""
    import torch

    if isinstance(x, torch.Tensor):
        from numba import cuda

        return cuda.as_cuda_array(x, sync=False)
    return x


def _finish_cuda_row(row, device, host, calls):
    row.samples = device
    row.host_us = {p: statistics.median(s) * 1e6 for p, s in host.items()}
    row.ms = {p: statistics.median(s) * 1e3 for p, s in device.items()}
    row.spread = {p: spread(s) for p, s in device.items()}
    row.rounds = len(next(iter(device.values())))
    row.calls = calls


def run_cuda_case(case, seconds, numba_arrays=False, timer=None, device="cuda"):
    """``run_case`` on cuda: nbops and torch get the same torch tensors on ``device`` (nbops numba device arrays over
    them with ``numba_arrays``). The first call of each (nbops': compile or cache load) is timed alone and synchronised
    as ``first_call_s``, nbops' output is copied to the host before torch runs (an ``out=`` case writes the same
    tensor), then ``cuda_rounds`` gives device and host time per call; rates and ratios come from device time.
    ``timer`` and ``device`` let the CPU tests drive the loop with a stand-in timer."""
    timer = CudaTimer() if timer is None else timer
    row = Row(case)
    try:
        inputs = tuple(_to_device(x, device) for x in case.setup(np.random.default_rng(0), np.dtype(case.dtype)))
        providers = {"nbops": (case.nbops, tuple(_numba_view(x) for x in inputs) if numba_arrays else inputs),
                     "torch": (case.torch, inputs)}
        timer.synchronize()
        t0 = time.perf_counter()
        out = case.nbops(*providers["nbops"][1])
        timer.synchronize()
        row.first_call_s = time.perf_counter() - t0
        a = _host(out).clone()  # a copy on the host, even where the "device" is the cpu (tests)
        del out
        _check_parity(row, a, _host(case.torch(*inputs)))
        _finish_cuda_row(row, *cuda_rounds(providers, seconds, timer))
    except Exception as exc:  # a broken case is reported in its row, the rest of the report still runs
        row.parity_ok, row.parity, row.error = False, "ERROR", f"{type(exc).__name__}: {exc}"
    return row


def _reference_cases(device):
    """The rows every cuda report carries, measured in the same run: torch's copy_ of 1 GiB (the bandwidth that
    memory-bound rows are a percentage of), torch's fp32 matmul 8192^3 with TF32 off (the same for compute-bound
    rows), and the launch floor, relu on a 4x4 tensor, nbops against torch (the fixed cost of one call)."""
    import torch

    import nbops

    from .core import Case

    def copy_setup(rng, dtype):
        n = COPY_BYTES // 4
        return torch.randn(n, device=device), torch.empty(n, device=device)

    def matmul_setup(rng, dtype):
        return torch.randn(MATMUL_N, MATMUL_N, device=device), torch.randn(MATMUL_N, MATMUL_N, device=device)

    return [
        Case("torch copy_ 1 GiB", "reference", copy_setup, None, lambda x, y: y.copy_(x), bytes=2.0 * COPY_BYTES),
        Case(f"torch matmul {MATMUL_N}^3 fp32", "reference", matmul_setup, None, torch.matmul,
             flops=2.0 * MATMUL_N ** 3),
        Case("relu 4x4 (launch floor)", "reference", lambda rng, dt: (rng.standard_normal((4, 4)).astype(dt),),
             nbops.relu, torch.relu, bytes=2 * 16 * 4.0),
    ]


def run_references(seconds, timer=None, device="cuda"):
    """Rows for ``_reference_cases``: torch-only rows time torch alone; the launch floor runs as a case."""
    import torch

    rows = []
    for case in _reference_cases(device):
        if case.nbops is not None:
            rows.append(run_cuda_case(case, seconds, timer=timer, device=device))
            continue
        row = Row(case)
        try:
            args = case.setup(None, None)
            _finish_cuda_row(row, *cuda_rounds({"torch": (case.torch, args)}, seconds, timer or CudaTimer()))
            row.parity = "-"
            del args
        except Exception as exc:
            row.parity_ok, row.parity, row.error = False, "ERROR", f"{type(exc).__name__}: {exc}"
        if device == "cuda":
            torch.cuda.empty_cache()
        rows.append(row)
    return rows
