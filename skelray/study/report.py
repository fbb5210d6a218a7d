"""A study run's report: ``claims.json``, ``report.md`` and one PNG per claim decided over seeds.

``write_report(run_dir, out_dir)`` reads the run's sweeps (trial folders only; nothing in
``run_dir`` is written) and writes ``out_dir`` alone, so ``skelray study report`` can rebuild a
report at any time from what has finished, even while the study still runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from skelray.study.claims import (
    CLAIMS_SCHEMA,
    ClaimRecord,
    ClaimsFile,
    Figure,
    deployed_params,
    evaluate,
    sweep_rows,
)
from skelray.sweep.aggregate import FINISHED


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _pm(f: Figure, *, signed: bool = False, counted: str = "seeds") -> str:
    """A figure in words; ``counted``: what its n counts (``Ours.counted``)."""
    if f.mean is None:
        return "no finished seed"
    mean = f"{100 * f.mean:+.2f} pts" if signed else _pct(f.mean)
    if f.low is None or f.high is None:
        return f"{mean} (1 seed, no interval)" if counted == "seeds" else f"{mean} ({f.n} {counted})"
    unit = " pts" if signed else "%"
    return f"{mean} [{100 * f.low:+.2f}, {100 * f.high:+.2f}{unit}] ({f.n} {counted})" if signed else \
        f"{mean} [{100 * f.low:.1f}, {100 * f.high:.1f}%] ({f.n} {counted})"


def _plot(c: ClaimRecord, out: Path) -> str | None:
    """Both sides' values and intervals; None without values, or for figures that are not over
    seeds (claim 6: one number a side, in the text)."""
    if c.ours is None or (c.ours.a.mean is None and c.ours.b.mean is None) or c.ours.counted != "seeds":
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for x, f in enumerate((c.ours.a, c.ours.b)):
        ys = [100 * v for v in f.per_seed.values()]
        ax.scatter([x] * len(ys), ys, color="0.5", s=14, zorder=2, label="one seed" if x == 0 else None)
        if f.mean is not None:
            lo = 100 * (f.mean - f.low) if f.low is not None else 0.0
            hi = 100 * (f.high - f.mean) if f.high is not None else 0.0
            ax.errorbar([x + 0.12], [100 * f.mean], yerr=[[lo], [hi]], fmt="o", color="C0", capsize=4,
                        label="mean, 95% t interval" if x == 0 else None)
    ax.set_xticks([0, 1], [c.ours.a.label, c.ours.b.label], fontsize=8)
    ax.set_xlim(-0.5, 1.6)
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(f"{c.id}: {c.verdict}", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    name = f"{c.id}.png"
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def _sparse_sweeps(rows: dict[str, list[dict]]) -> set[str]:
    """The sweeps with a sparsity level in any trial's config."""
    from skelray.study.claims import SPARSITY_LEVEL

    return {n for n, rs in rows.items() if any(r.get(SPARSITY_LEVEL) is not None for r in rs)}


def _sparsity_plot(run, rows: dict[str, list[dict]], sparse: set[str], out: Path) -> str | None:
    """Test top-1 against deployed non-zero parameters: each sparsity level of every sweep that
    has them (mean over seeds, 95% t interval), the dense side and any ensemble of the claims
    that compare against them. None when no sweep of the run has a sparsity level."""
    from skelray.study.claims import SPARSITY_LEVEL, TEST_TOP1, side_figures
    from skelray.sweep.stats import interval

    level = SPARSITY_LEVEL
    points: list[tuple[str, list[float], list[float]]] = []  # label, top-1s, params
    for name in sorted(sparse):
        done = [r for r in rows[name] if r.get("status") in FINISHED and r.get(TEST_TOP1) is not None]
        for lv in sorted({r[level] for r in done if r.get(level) is not None}):
            picked = [r for r in done if r.get(level) == lv]
            points.append((f"{name} {lv:g}", [r[TEST_TOP1] for r in picked],
                           [p for r in picked if (p := deployed_params(r, run.sweep_dir(name))) is not None]))
    seen = set()
    for c in run.study.runs(run.size):
        for sel in (c.test.a, c.test.b) if c.test is not None and c.test.a.sweep in sparse else ():
            if sel.name() in seen or (sel.sweep in sparse and sel.ensemble is None):
                continue
            seen.add(sel.name())
            top1, params = side_figures(sel, run.sweep_dir(sel.sweep), rows[sel.sweep])
            points.append((sel.name(), list(top1.values()), [p for p in params.values() if p is not None]))
    points = [p for p in points if p[1] and p[2]]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, (label, top1, params) in enumerate(points):
        iv = interval([100 * v for v in top1])
        x = sum(params) / len(params) / 1e6
        err = None
        if iv.low is not None and iv.high is not None:  # cut to the range a top-1 can take
            err = [[iv.mean - max(iv.low, 0.0)], [min(iv.high, 100.0) - iv.mean]]
        ax.errorbar([x], [iv.mean], yerr=err, fmt="o", capsize=3, color=f"C{i % 10}", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("deployed non-zero parameters (M, log scale)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("accuracy against non-zero parameters (mean, 95% t interval over seeds)", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(out / "sparsity.png", dpi=110)
    plt.close(fig)
    return "sparsity.png"


def _claim_md(c: ClaimRecord, plot: str | None) -> list[str]:
    lines = [f"### {c.id}: {c.claim}", ""]
    if c.paper:
        epochs = f", {c.paper.epochs} epochs" if c.paper.epochs else ""
        lines.append(f"- Paper: {c.paper.figure or 'no single figure'} ({c.paper.source}{epochs})")
    if c.ours:
        n = c.ours.counted
        lines += [f"- Ours ({c.ours.metric}, {c.ours.epochs} epochs):",
                  f"  - a = {c.ours.a.label}: {_pm(c.ours.a, counted=n)}",
                  f"  - b = {c.ours.b.label}: {_pm(c.ours.b, counted=n)}",
                  f"  - a - b: {_pm(c.ours.difference, signed=True, counted=n)}"]
        if c.ours.speed is not None and c.ours.speed.mean is not None:
            s = c.ours.speed
            span = f" [{s.low:.2f}, {s.high:.2f}]" if s.low is not None and s.high is not None else ""
            lines.append(f"  - {s.label}: {s.mean:.2f}x{span} ({s.n} trials)")
        if c.ours.params is not None and any(abs(v - 1) > 1e-9 for v in c.ours.params.per_seed.values()):
            p = c.ours.params
            span = f" (from {min(p.per_seed.values()):.2f} to {max(p.per_seed.values()):.2f})" if p.n > 1 else ""
            lines.append(f"  - {p.label}: {p.mean:.2f}x{span}, {p.n} seeds")
        if c.ours.detail:
            lines.append(f"  - {c.ours.detail}")
    lines += [f"- Verdict: **{c.verdict}**", f"- Rule: {c.rule}", f"- Why: {c.reason}"]
    if plot:
        lines += ["", f"![{c.id}]({plot})"]
    return [*lines, ""]


def _where_and_when(run) -> list[str]:
    """The run's measured wall time (first trial start to last result, from Tune's timestamps)
    and the machine(s) its costs were measured on (``costs.json``: CPU, cores, torch, threads)."""
    import time

    from skelray.sweep.results import Location, load_costs, sweep_span

    spans, machines = [], set()
    for name in run.study.sweeps_for(run.size):
        loc = Location.parse(str(run.sweep_dir(name)))
        if loc.is_dir():
            if (span := sweep_span(loc)) is not None:
                spans.append(span)
            machines |= {c.machine for c in load_costs(loc).entries.values() if c.machine}
    if not spans:
        return ["Wall time: no trial has reported yet."]
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(start))
    busy = sum(e - s for s, e in spans) / 60
    return [f"Wall time: {(end - start) / 60:.1f} min from the first trial's start ({stamp}) to the last "
            f"result, {busy:.1f} min of it training (the sweeps run one after another; the rest is "
            f"start-up and cost measurement). Machine: {'; '.join(sorted(machines)) or 'not recorded'}."]


def write_report(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write ``claims.json``, ``report.md`` and the plots of the study run at ``run_dir``."""
    from skelray.study.runner import StudyRun

    run = StudyRun.load(run_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = {name: sweep_rows(run.sweep_dir(name)) for name in run.study.sweeps_for(run.size)}
    claims: ClaimsFile = evaluate(run.study, run.size, run.dir, rows)
    (out / "claims.json").write_text(claims.model_dump_json(indent=2))
    size = run.study.sizes[run.size]
    lines = [f"# Study {run.study.name} ({run.size})", "", run.study.description.strip(), "",
             (f"Size {run.size}: {size.epochs} epochs, {size.seeds} seeds per configuration, "
              f"width {size.width}. {size.estimate.strip()}"), "", *_where_and_when(run), "",
             "| sweep | trials finished | trial wall time, sum (min) |", "|---|---|---|"]
    for name, trials in rows.items():
        done = [r for r in trials if r.get("status") in FINISHED]
        wall = sum(r.get("wall_time_s") or 0.0 for r in trials) / 60
        lines.append(f"| {name} | {len(done)} of {len(trials)} | {wall:.1f} |")
    status = "finished" if run.finished else "not finished: the figures are those of the trials done so far"
    lines += ["", (f"Run: {status}. A verdict is *held*, *not held* or *inconclusive* by the rule printed "
                   "under it; intervals are 95% Student-t over seeds (`skelray.sweep.stats`)."), "",
              "| claim | paper | ours: a - b | verdict |", "|---|---|---|---|"]
    for c in claims.claims:
        ours = _pm(c.ours.difference, signed=True, counted=c.ours.counted) if c.ours else "-"
        paper = (c.paper.figure or "-") if c.paper else "-"
        lines.append(f"| {c.id} | {paper} | {ours} | {c.verdict} |")
    lines.append("")
    sparse = _sparse_sweeps(rows)
    curve = _sparsity_plot(run, rows, sparse, out)
    # The plot goes in the first section with a claim whose a side reads a sparse sweep.
    on_sparse = {c.id for c in run.study.runs(run.size) if c.test is not None and c.test.a.sweep in sparse}
    for section in dict.fromkeys(c.section for c in claims.claims):
        lines += [f"## {section}", ""]
        if curve and any(c.section == section and c.id in on_sparse for c in claims.claims):
            lines += [f"![accuracy against non-zero parameters]({curve})", ""]
            curve = None  # once, in the first section with a sparsity claim
        for c in claims.claims:
            if c.section == section:
                lines += _claim_md(c, _plot(c, out))
    (out / "report.md").write_text("\n".join(lines))
    (out / "claims.schema.json").write_text(json.dumps(CLAIMS_SCHEMA, indent=2))
    return out
