"""python -m nbops.onnx MODEL.onnx [--dim NAME=VALUE ...] [--repeat N] [--check]

Runs the model on random inputs of its declared shapes (named dynamic dims given with ``--dim``; float inputs
standard normal, integer inputs 0 or 1, seeded), prints each output's shape and dtype, the first run's time (it
includes numba's compile or cache load) and the median of ``--repeat`` further runs. ``--check`` runs the same
inputs through onnxruntime's CPU provider and compares (rtol 1e-3, atol 1e-4); exit status 1 on a mismatch.
"""

import argparse
import sys
import time

import numpy as np

from .session import load


def _inputs(session, dims, seed):
    rng = np.random.default_rng(seed)
    feed = {}
    for vi in session.get_inputs():
        shape = []
        for d in vi.shape or []:
            if isinstance(d, int):
                shape.append(d)
            elif d in dims:
                shape.append(dims[d])
            else:
                raise SystemExit(f"input {vi.name!r} has dynamic dim {d!r}: give it with --dim {d or 'NAME'}=VALUE")
        dtype = vi.dtype or np.dtype(np.float32)
        if dtype.kind == "f":
            feed[vi.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feed[vi.name] = rng.integers(0, 2, size=shape).astype(dtype)
    return feed


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m nbops.onnx", description=__doc__.split("\n\n")[1])
    p.add_argument("model", help="path to an .onnx file")
    p.add_argument("--dim", action="append", default=[], metavar="NAME=VALUE", help="size of a named dynamic dim")
    p.add_argument("--repeat", type=int, default=5, help="timed runs after the first (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check", action="store_true", help="compare with onnxruntime's CPU provider")
    args = p.parse_args(argv)
    dims = {}
    for item in args.dim:
        name, _, value = item.partition("=")
        if not value.isdigit():
            raise SystemExit(f"--dim expects NAME=VALUE with an integer VALUE, got {item!r}")
        dims[name] = int(value)
    session = load(args.model)
    feed = _inputs(session, dims, args.seed)
    t0 = time.perf_counter()
    outputs = session.run(None, feed)
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t0)
    for vi, y in zip(session.get_outputs(), outputs):
        print(f"{vi.name}: shape {tuple(y.shape)} {y.dtype}")
    line = f"first run {first * 1e3:.1f} ms (compile or cache load included)"
    if times:
        line += f", then {np.median(times) * 1e3:.3f} ms per run (median of {len(times)})"
    print(line)
    if not args.check:
        return 0
    try:
        import onnxruntime
    except ImportError:
        raise SystemExit("--check needs onnxruntime (pip install nbops[onnx])") from None
    ort = onnxruntime.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    expected = ort.run(None, feed)
    ok = True
    for vi, y, e in zip(session.get_outputs(), outputs, expected):
        diff = float(np.max(np.abs(y.astype(np.float64) - e.astype(np.float64)))) if y.size else 0.0
        match = y.shape == e.shape and np.allclose(y, e, rtol=1e-3, atol=1e-4, equal_nan=True)
        ok &= bool(match)
        print(f"check {vi.name}: {'ok' if match else 'MISMATCH'} against onnxruntime (max abs diff {diff:.3g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
