"""Collecting cases, moving their inputs to the target, timing providers in interleaved rounds, checking parity."""

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

PAUSE_S = 0.005  # between providers: lets the other runtime's spinning OpenMP/OpenBLAS workers go to sleep
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


def _warm_up(providers, target):
    """Call every provider untimed, interleaved, in at least WARMUP_CALLS rounds and for at least WARMUP_S: the
    thread pools are up, the code and data are in cache, and the clock has ramped before the first timed round."""
    start = time.perf_counter()
    calls = 0
    while calls < WARMUP_CALLS or time.perf_counter() - start < WARMUP_S:
        for fn, args in providers.values():
            _timed(fn, args, target)
            time.sleep(PAUSE_S)
        calls += 1


def _rounds(providers, target, seconds):
    """Timed samples per provider: interleaved rounds (one call of each, a pause between calls) until there were
    MIN_ROUNDS and one provider has spent ``seconds`` (or the rounds took twice that, for calls much shorter than
    the pauses); while any provider's times or its per-round ratios to nbops spread above NOISY, rounds go on up to
    EXTEND times those limits (more samples steady the median on a noisy machine), never beyond MAX_ROUNDS."""
    samples = {p: [] for p in providers}
    spent = {p: 0.0 for p in providers}
    start = time.perf_counter()
    for r in range(MAX_ROUNDS):
        for p, (fn, args) in providers.items():
            dt, _ = _timed(fn, args, target)
            samples[p].append(dt)
            spent[p] += dt
            time.sleep(PAUSE_S)
        used = max(max(spent.values()) / seconds, (time.perf_counter() - start) / (2 * seconds)) if seconds else 1
        if r + 1 < MIN_ROUNDS or used < 1:
            continue
        ratios = [[t / n for n, t in zip(samples["nbops"], s)] for p, s in samples.items() if p != "nbops"]
        if used >= EXTEND or max(spread(s) for s in ratios + list(samples.values())) <= NOISY:
            break
    return samples


def run_case(case, target, seconds):
    """Time every provider of ``case`` on ``target`` and check nbops' output against torch's.

    The first call of each provider (nbops' compile or cache load) is timed on its own as ``first_call_s`` and its
    output checked for parity; warm-up calls follow (``_warm_up``), then the timed rounds (``_rounds``)."""
    import torch

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
        a, e = _host(out_nb), _host(out_t)
        try:
            torch.testing.assert_close(a.to(e.dtype), e, rtol=case.rtol, atol=case.atol, equal_nan=True)
            row.parity = "ok"
        except AssertionError:
            err = (a.double() - e.double()).abs().nan_to_num(nan=float("inf")).max().item() if a.shape == e.shape \
                else float("nan")
            row.parity_ok, row.parity = False, f"FAIL (max abs err {err:.3g})" if a.shape == e.shape else \
                f"FAIL (shape {tuple(a.shape)} vs {tuple(e.shape)})"
        del out_nb, out_t, a, e
        _warm_up(providers, target)
        samples = _rounds(providers, target, seconds)
        row.rounds = len(samples["nbops"])
        row.samples = samples
        row.ms = {p: statistics.median(s) * 1e3 for p, s in samples.items()}
        row.spread = {p: spread(s) for p, s in samples.items()}
    except Exception as exc:  # a broken case is reported in its row, the rest of the report still runs
        row.parity_ok, row.parity, row.error = False, "ERROR", f"{type(exc).__name__}: {exc}"
    return row
