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
MIN_ROUNDS, MAX_ROUNDS = 3, 50


@dataclass
class Row:
    case: object
    ms: dict = field(default_factory=dict)  # provider -> median ms
    first_call_s: float = float("nan")
    parity_ok: bool = True
    parity: str = ""
    error: str = ""

    def speedup(self, other):
        if "nbops" not in self.ms or other not in self.ms:
            return None
        return self.ms[other] / self.ms["nbops"]

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


def run_case(case, target, seconds):
    """Time every provider of ``case`` on ``target`` and check nbops' output against torch's."""
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
        samples = {p: [] for p in providers}
        spent = {p: 0.0 for p in providers}
        for r in range(MAX_ROUNDS):
            for p, (fn, args) in providers.items():
                dt, _ = _timed(fn, args, target)
                samples[p].append(dt)
                spent[p] += dt
                time.sleep(PAUSE_S)
            if r + 1 >= MIN_ROUNDS and max(spent.values()) > seconds:
                break
        row.ms = {p: statistics.median(s) * 1e3 for p, s in samples.items()}
    except Exception as exc:  # a broken case is reported in its row, the rest of the report still runs
        row.parity_ok, row.parity, row.error = False, "ERROR", f"{type(exc).__name__}: {exc}"
    return row
