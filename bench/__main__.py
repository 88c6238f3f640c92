"""``python -m bench``: nbops' benchmark-and-parity report against torch (and NumPy where it applies).

Per case: median ms of each provider (rounds of turns, same run), GB/s or GFLOP/s, the speed-up of nbops over
torch and NumPy, nbops' first-call time (compile or cache load, plus one run), and a parity check of nbops'
output against torch's. Untimed warm-up calls precede the rounds; a row whose times or per-round ratios spread too
widely to trust (interquartile range above NOISY of the median) prints "noisy" instead of a ratio. Prints a
markdown table and saves it, with a PNG chart of the speed-ups, under ``bench/results/``.

    python -m bench                         # every family, cpu
    python -m bench --family conv,norm      # some families
    python -m bench --quick                 # the short list, a shorter time budget per case
    python -m bench --target cuda           # torch CUDA tensors (needs a GPU; never the simulator)
    python -m bench --target cuda --numba-arrays   # nbops fed numba device arrays over the same memory

On cuda the times are device time per call from CUDA events around back-to-back calls (median of rounds), with the
host's issuing time per call beside them, and the report opens with reference rows measured in the same run (torch's
copy_ bandwidth, torch's fp32 matmul rate, the launch floor of a 4x4 relu); see ``bench.runner.cuda_rounds``.
"""

import argparse
import os
import sys

from .ceilings import roofs
from .report import render, render_cuda, roof_range, save
from .runner import (CUDA_MAX_ROUNDS, CUDA_ROUNDS, CUDA_SECONDS, EXTEND, LEAD_S, MIN_ROUNDS, NOISY, TURN_S,
                     WARMUP_CALLS, WARMUP_S, _quiesce, collect, environment, prepare, run_case, run_references)


def _roofs_when_quiet():
    """The host's roofs (``bench.ceilings.roofs``) once no other thread of the process spins: OpenBLAS's workers
    spin ~100 ms after NumPy's last matmul and took a core from the FMA probe (96-120 GFLOP/s of 234 before the
    linear rows, which then printed 150-190 % of their roof)."""
    _quiesce()
    return roofs()


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--family", default="", help="comma-separated families (default: all)")
    p.add_argument("--case", default="", help="only cases whose name contains this text")
    p.add_argument("--quick", action="store_true", help="only the quick cases, a shorter budget")
    p.add_argument("--seconds", type=float, default=None, help="timing budget per provider per case")
    p.add_argument("--numba-arrays", action="store_true", help="cuda: feed nbops numba device arrays, not tensors")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    p.add_argument("--no-save", action="store_true", help="print only")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.target == "cuda" and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        sys.exit("bench: refusing to benchmark the CUDA simulator; unset NUMBA_ENABLE_CUDASIM")
    families = [f for f in args.family.split(",") if f]
    cases = collect(families, args.target, args.quick, args.case)
    if not cases:
        sys.exit(f"bench: no cases for families {families or 'all'} on {args.target}")
    prepare(args.target)
    cuda = args.target == "cuda"
    seconds = args.seconds if args.seconds is not None else (CUDA_SECONDS if cuda else 0.4 if args.quick else 1.5)
    try:
        from tqdm import tqdm
    except ImportError:
        def tqdm(it, **_):
            return it
    references = run_references(seconds) if cuda else []
    rows = []
    bar = tqdm(cases, desc="bench", unit="case", file=sys.stderr)
    try:
        for case in bar:
            if hasattr(bar, "set_postfix_str"):
                bar.set_postfix_str(case.name[:40])
            roof = None if cuda else _roofs_when_quiet()
            rows.append(run_case(case, args.target, seconds, numba_arrays=args.numba_arrays))
            rows[-1].roof = roof
    except KeyboardInterrupt:  # a time limit (gpu-check.sh sends SIGINT) still gets the report of the cases done
        print(f"bench: interrupted; reporting the {len(rows)} of {len(cases)} cases done", file=sys.stderr)
    env = environment(args.target)
    if len(rows) < len(cases):
        env["interrupted"] = f"after {len(rows)} of {len(cases)} cases"
    if roof_range(rows):
        env["roofs"] = roof_range(rows)
    if cuda:
        env["nbops inputs"] = "numba device arrays" if args.numba_arrays else "torch CUDA tensors"
        method = (f"Per case: the first call of each provider alone and synchronised (nbops' compile), two untimed "
                  f"warm-up rounds, then {CUDA_ROUNDS} timed rounds per provider, interleaved (up to "
                  f"{CUDA_MAX_ROUNDS} while they spread widely), each ~{1e3 * seconds / CUDA_ROUNDS:g} ms of "
                  f"back-to-back calls (`calls x rounds`). `x torch` is the median over rounds of torch's device time "
                  f"/ nbops' in the same round; above {100 * NOISY:g}% spread the row says noisy. `spread %` is the "
                  f"widest (q3 - q1) / median of the providers' device times.")
        text = render_cuda(env, rows, references, method)
    else:
        method = (f"Per case: the first call of each provider alone (compile), >= {WARMUP_CALLS} untimed warm-up "
                  f"rounds over >= {WARMUP_S:g} s, then >= {MIN_ROUNDS} timed rounds and {seconds:g} s (up to "
                  f"{EXTEND:g}x that while the rounds spread widely). A provider's turn in a round waits until no "
                  f"other thread spins, makes untimed calls for {1e3 * LEAD_S:g} ms, then times calls for "
                  f"{1e3 * TURN_S:g} ms (one at least): the round's sample is their median. `x torch` is the median "
                  f"over rounds of torch's time / nbops' time in the same round; where the (q3 - q1) / median of those ratios or of either "
                  f"provider's times exceeds {100 * NOISY:g}%, the row says noisy (with the widest spread) instead. "
                  f"`spread %` is the wider (q3 - q1) / median of nbops' and torch's times. `% roof` (nbops / "
                  f"torch): the shortest time the roofs measured before the case allow a call over the provider's "
                  f"median, where that time is the longer of the case's flops at the FMA roof and its bytes read at "
                  f"the read roof plus its output's bytes at what the copy roof says a written byte costs "
                  f"(bench.ceilings.floor_ms); above 100 the data stayed in cache between calls, or (Winograd "
                  f"convolutions) fewer flops ran than counted.")
        text = render(env, rows, method)
    print(text)
    if not args.no_save:
        paths = save(text, rows, env, args.out)
        print("\nsaved: " + ", ".join(paths))
    return 0 if all(r.parity_ok for r in rows + references) else 1


if __name__ == "__main__":
    sys.exit(main())
