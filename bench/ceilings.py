"""The host's ceilings, which the bench's CPU rates are read against: ``python -m bench.ceilings``.

- **FMA peak**: a loop of CHAINS independent vector fused multiply-adds of the widest vector the kernels compile for
  (``<16 x float>`` with AVX-512, else ``<8 x float>``), written as LLVM IR so that no compiler tuning narrows,
  merges or reorders it; each chain depends only on itself, enough of them to hide the FMA latency on the cores
  we run on (4 cycles, 2 pipes). On one thread, then on every numba thread at once.
- **Read bandwidth**: a plain vectorised prange sum over a 64 MiB float32 array (the single pass that a reduction
  along the last dim makes), GB/s of bytes read.
- **Copy bandwidth**: a prange copy between two warm 64 MiB arrays, GB/s of bytes read plus written.

Each figure is the median of ROUNDS timed calls after a warm-up; the spread (min-max) is printed beside it, since
these hosts are shared. A GEMM that runs at 90 % of the FMA peak is at its ceiling, whatever a ratio to torch says.
The report measures the same probes, shorter, before each case (``roofs``) and prints each row's share of the
roofline they draw (``floor_ms``): its `% roof` column.

    python -m bench.ceilings [--rounds N]
"""

import argparse
import time

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from nbops.cpu._util import vector_bytes

CHAINS = 12  # independent accumulators: 2 pipes x 4 cycles of latency = 8 at least
LANES = vector_bytes() // 4  # float32 lanes of one vector register
STEPS = 20_000_000  # loop trips of one FMA call (12 x 16 x 2 x 2e7 = 7.7 GFLOP with AVX-512)
MIB = 64  # size of the bandwidth arrays
ROUNDS = 7
ROOF_STEPS, ROOF_ROUNDS = 2_000_000, 5  # the report's roofs before each case: 5 calls of ~7 ms (FMA) each


@intrinsic
def _fma_chains(typingctx, steps, b, c):
    """Sum of CHAINS vectors after ``steps`` rounds of acc = fma(acc, b, c) each (b, c splatted float32): the
    loop is CHAINS independent ``llvm.fma`` calls a trip, carried in registers (allocas that LLVM promotes)."""
    if not (isinstance(steps, types.Integer) and b == types.float32 and c == types.float32):
        return None

    def codegen(context, builder, sig, args):
        n, bs, cs = args
        vt = ir.VectorType(ir.FloatType(), LANES)
        undef = ir.Constant(vt, ir.Undefined)
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)

        def splat(x):
            return builder.shuffle_vector(builder.insert_element(undef, x, ir.Constant(ir.IntType(32), 0)), undef,
                                         zeros)

        bv, cv = splat(bs), splat(cs)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]), f"llvm.fma.v{LANES}f32")
        # distinct starting values (c + j): equal chains would be merged into one by LLVM's value numbering
        accs = [cgutils.alloca_once_value(builder, builder.fadd(cv, splat(ir.Constant(ir.FloatType(), j))))
                for j in range(CHAINS)]
        with cgutils.for_range(builder, n):
            for acc in accs:
                builder.store(builder.call(fma, [builder.load(acc), bv, cv]), acc)
        total = builder.load(accs[0])
        for acc in accs[1:]:
            total = builder.fadd(total, builder.load(acc))
        out = builder.extract_element(total, ir.Constant(ir.IntType(32), 0))
        for i in range(1, LANES):
            out = builder.fadd(out, builder.extract_element(total, ir.Constant(ir.IntType(32), i)))
        return out

    return types.float32(steps, b, c), codegen


@njit(cache=True)
def fma_one(steps, b, c):
    return _fma_chains(steps, b, c)


@njit(parallel=True, cache=True)
def fma_all(out, steps, b, c):
    """One FMA loop per prange iteration; ``out`` has one slot per thread, so each thread runs one loop."""
    for t in prange(out.shape[0]):
        out[t] = _fma_chains(steps, b, c)


@njit(parallel=True, fastmath={"reassoc"}, cache=True)
def read_sum(x):
    """sum of the (R, C) float32 array x, one row per prange iteration."""
    s = np.float32(0)
    for r in prange(x.shape[0]):
        t = np.float32(0)
        for i in range(x.shape[1]):
            t += x[r, i]
        s += t
    return s


@njit(parallel=True, cache=True)
def copy_rows(out, x):
    for r in prange(x.shape[0]):
        for i in range(x.shape[1]):
            out[r, i] = x[r, i]


def _median_spread(fn, rounds):
    """(median, min, max) seconds of ``rounds`` calls of ``fn`` after two untimed ones."""
    fn()
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), min(times), max(times)


_arrays = {}  # MiB -> (x, y): the bandwidth arrays, made once (filling 64 MiB with random numbers takes 0.3 s)


def _probes(steps, one_thread=True):
    """[(what, call, amount, unit)]: the FMA loops of ``steps`` trips (on one thread too when ``one_thread``), the
    read and the copy of MIB MiB."""
    threads = numba.get_num_threads()
    b, c = np.float32(0.999999), np.float32(1e-7)
    flops = CHAINS * LANES * 2.0 * steps
    slots = np.zeros(threads, np.float32)
    if MIB not in _arrays:
        x = np.random.default_rng(0).random(((MIB << 20) // 4 // 4096, 4096), dtype=np.float32)
        _arrays[MIB] = x, np.empty_like(x)
    x, y = _arrays[MIB]
    probes = [("FMA peak, 1 thread", lambda: fma_one(steps, b, c), flops, "GFLOP/s")] if one_thread else []
    return probes + [
        (f"FMA peak, {threads} threads", lambda: fma_all(slots, steps, b, c), flops * threads, "GFLOP/s"),
        (f"read, prange sum of {MIB} MiB", lambda: read_sum(x), x.nbytes, "GB/s"),
        (f"copy, prange copy of {MIB} MiB", lambda: copy_rows(y, x), 2 * x.nbytes, "GB/s"),
    ]


def measure(rounds=ROUNDS):
    """[(what, median rate, slowest rate, fastest rate, unit)] of this host, as ``python -m bench.ceilings`` prints."""
    rows = []
    for what, fn, amount, unit in _probes(STEPS):
        med, lo, hi = _median_spread(fn, rounds)
        rows.append((what, amount / med / 1e9, amount / hi / 1e9, amount / lo / 1e9, unit))
    return rows


def roofs(rounds=ROOF_ROUNDS, steps=ROOF_STEPS):
    """{"fma": GFLOP/s on all threads, "read": GB/s, "copy": GB/s read plus written}: the roofs of the report's
    ``% roof`` column (``floor_ms``), each the median of ``rounds`` short calls. The report measures them before
    each case (~0.1 s), so that a row is compared with what the shared host gave at the time: one measurement
    before the run, made in a slow spell, put the read roof at 18 GB/s and the reductions at 130-200 %, and the
    fastest of 5 calls before each case swung with single calls (FMA 117-235 GFLOP/s, read 23-83 GB/s in one run:
    a call that lost a vCPU, a read that found part of its 64 MiB still in L3)."""
    rates = [amount / _median_spread(fn, rounds)[0] / 1e9 for _, fn, amount, _ in _probes(steps, one_thread=False)]
    return {"fma": rates[0], "read": rates[1], "copy": rates[2]}


def floor_ms(flops, nbytes, written, roof):
    """The shortest time in ms one call can take under the roofs ``roof`` (``roofs``): the longer of its flops at
    the FMA roof and its memory time, or None where the case counts neither. Memory time: the bytes read at the
    read roof, plus per byte written what the copy roof says a written byte costs beyond a read one (a store to an
    uncached line reads it first): 2 / copy - 1 / read. ``nbytes`` counts reads and writes, ``written`` the
    output's bytes (clipped to ``nbytes``). Data the cache holds between calls can beat it (% roof above 100), and
    so do Winograd convolutions, whose flops are counted as the direct ones."""
    if not flops and not nbytes:
        return None
    written = min(written, nbytes)
    per_written = max(2.0 / roof["copy"] - 1.0 / roof["read"], 0.0)
    memory = (nbytes - written) / roof["read"] + written * per_written
    return max(flops / roof["fma"], memory) / 1e6


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.ceilings", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=ROUNDS)
    args = p.parse_args(argv)
    print(f"vector: {LANES} float32 lanes, {CHAINS} FMA chains; numba threads: {numba.get_num_threads()}")
    print("| ceiling | median | slowest | fastest | unit |\n|---|---|---|---|---|")
    for what, med, lo, hi, unit in measure(args.rounds):
        print(f"| {what} | {med:.1f} | {lo:.1f} | {hi:.1f} | {unit} |")


if __name__ == "__main__":
    main()
