"""The markdown table, the per-family geometric means, and the PNG chart of speed-ups."""

import math
import os


def _fmt(v, digits=3):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"


def geomean(values):
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def _ratio(row, other):
    """The x-<other> cell: the speed-up, or "noisy" (with the widest spread) when the rounds spread too widely."""
    v = row.speedup(other)
    if v is None:
        return "-"
    if row.noisy(other):
        return f"noisy ({100 * row.ratio_spread(other):.0f}%)"
    return _fmt(v)


def _roof_percent(row, provider):
    """The provider's share of the host's roofline measured before the case (``row.roof``): the shortest time the
    roofs allow a call (``bench.ceilings.floor_ms``) over the provider's median, in percent; "-" without roofs."""
    from .ceilings import floor_ms

    ms = row.ms.get(provider)
    floor = floor_ms(row.case.flops, row.case.bytes, row.out_bytes, row.roof) if row.roof and ms else None
    return f"{100 * floor / ms:.0f}" if floor else "-"


def roof_range(rows):
    """The header line on the roofs: each one's lowest and highest over the rows that measured them, or None."""
    measured = [r.roof for r in rows if r.roof]
    if not measured:
        return None

    def span(key, digits):
        lo, hi = min(m[key] for m in measured), max(m[key] for m in measured)
        return f"{lo:.{digits}f}-{hi:.{digits}f}"

    return (f"FMA {span('fma', 0)} GFLOP/s, read {span('read', 1)} GB/s, copy {span('copy', 1)} GB/s (read plus "
            "written): before each case, the median of 5 calls (python -m bench.ceilings), lowest-highest")


def render(env, rows, method=""):
    """The cpu report; each row's ``roof`` (``bench.ceilings.roofs``, measured before its case) fills its ``% roof``
    column (nbops / torch)."""
    lines = ["# nbops benchmark and parity report", ""]
    lines += [f"- {k}: {v}" for k, v in env.items()]
    lines += ["", "Times are medians of rounds (one turn per provider) in one run; `x torch` > 1 means nbops is faster. "
              + method, ""]
    lines.append("| family | case | nbops ms | torch ms | numpy ms | nbops rate | torch rate | % roof | x torch "
                 "| x numpy | spread % | rounds | first call s | parity |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rate_nb, unit = r.rate("nbops")
        rate_t, _ = r.rate("torch")
        spread = max(r.spread["nbops"], r.spread["torch"]) if r.spread else None
        lines.append(
            f"| {r.case.family} | {r.case.name} | {_fmt(r.ms.get('nbops'))} | {_fmt(r.ms.get('torch'))} "
            f"| {_fmt(r.ms.get('numpy'))} | {_fmt(rate_nb)} {unit} | {_fmt(rate_t)} {unit if rate_t else ''} "
            f"| {_roof_percent(r, 'nbops')} / {_roof_percent(r, 'torch')} "
            f"| {_ratio(r, 'torch')} | {_ratio(r, 'numpy')} | {_fmt(None if spread is None else 100 * spread, 2)} "
            f"| {r.rounds or '-'} | {_fmt(r.first_call_s)} | {r.parity}{(' ' + r.error) if r.error else ''} |"
        )
    return "\n".join(lines + _summary(rows))


def _summary(rows):
    lines = ["", "Family summaries count only rows whose spread allows a ratio.", "",
             "| family | cases | noisy | geomean x torch | min x torch | parity failures |",
             "|---|---|---|---|---|---|"]
    for fam in sorted({r.case.family for r in rows}):
        fr = [r for r in rows if r.case.family == fam]
        sp = [r.speedup("torch") for r in fr if r.speedup("torch") and not r.noisy("torch")]
        noisy = sum(bool(r.speedup("torch")) and r.noisy("torch") for r in fr)
        lines.append(f"| {fam} | {len(fr)} | {noisy} | {_fmt(geomean(sp))} | {_fmt(min(sp) if sp else None)} "
                     f"| {sum(not r.parity_ok for r in fr)} |")
    return lines


def _ceilings(references):
    """{unit: the reference rate a row of that unit is a percentage of}: torch's copy_ GB/s and matmul GFLOP/s."""
    out = {}
    for r in references:
        if r.case.nbops is None:
            value, unit = r.rate("torch")
            if value:
                out[unit] = value
    return out


def _percent(row, provider, ceilings):
    value, unit = row.rate(provider)
    return f"{100 * value / ceilings[unit]:.0f}" if value and unit in ceilings else "-"


def render_cuda(env, rows, references, method=""):
    """The cuda report: device us per call (CUDA events around back-to-back calls; rates, percentages and ratios come
    from it), host us per call, and each rate as a percentage of the same run's reference (copy_ GB/s for
    memory-bound rows, cuBLAS matmul GFLOP/s for compute-bound ones); the reference rows come first."""
    ceilings = _ceilings(references)
    lines = ["# nbops benchmark and parity report", ""]
    lines += [f"- {k}: {v}" for k, v in env.items()]
    refs = ", ".join(f"{_fmt(v)} {u}" for u, v in ceilings.items())
    lines += ["", "Device us per call: CUDA events around back-to-back calls, median of rounds; host us per call: the "
              "issuing loop alone. Rates, `% ref` and `x torch` come from device time; `x torch` > 1 means nbops is "
              f"faster. `% ref` (nbops / torch) is the rate as a percentage of this run's reference ({refs or '-'}). "
              + method, ""]
    lines.append("| family | case | nbops dev us | torch dev us | nbops host us | torch host us | nbops rate "
                 "| torch rate | % ref | x torch | spread % | calls x rounds | first call s | parity |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in list(references) + list(rows):
        rate_nb, unit = r.rate("nbops")
        rate_t, unit_t = r.rate("torch")
        spread = max(r.spread.values()) if r.spread else None
        us = {p: None if p not in r.ms else 1e3 * r.ms[p] for p in ("nbops", "torch")}
        calls = "/".join(str(r.calls[p]) for p in ("nbops", "torch") if p in r.calls)
        lines.append(
            f"| {r.case.family} | {r.case.name} | {_fmt(us['nbops'])} | {_fmt(us['torch'])} "
            f"| {_fmt(r.host_us.get('nbops'))} | {_fmt(r.host_us.get('torch'))} "
            f"| {_fmt(rate_nb)}{' ' + unit if rate_nb else ''} | {_fmt(rate_t)}{' ' + unit_t if rate_t else ''} "
            f"| {_percent(r, 'nbops', ceilings)} / {_percent(r, 'torch', ceilings)} | {_ratio(r, 'torch')} "
            f"| {_fmt(None if spread is None else 100 * spread, 2)} | {calls or '-'} x {r.rounds or '-'} "
            f"| {_fmt(r.first_call_s)} | {r.parity}{(' ' + r.error) if r.error else ''} |"
        )
    return "\n".join(lines + _summary(rows))


def save(text, rows, env, out_dir):
    """Write the table (markdown) and the chart (PNG) under ``out_dir``; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, env["date"].replace(" ", "_").replace(":", "") + f"_{env['target']}")
    paths = [stem + ".md"]
    with open(paths[0], "w") as f:
        f.write(text + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return paths
    data = [(f"{r.case.family}: {r.case.name}", r.speedup("torch")) for r in rows
            if r.speedup("torch") and not r.noisy("torch")]
    if not data:
        return paths
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(data) + 1.5))
    names, values = zip(*data)
    colors = ["tab:green" if v >= 1 else "tab:red" for v in values]
    ax.barh(range(len(data)), values, color=colors)
    ax.set_yticks(range(len(data)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xlabel("speed-up of nbops over torch (same run, log scale)")
    ax.set_title(f"nbops vs torch, {env['target']}, {env['date']}", fontsize=9)
    fig.tight_layout()
    paths.append(stem + ".png")
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths
