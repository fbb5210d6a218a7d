"""A study run's report: ``claims.json``, ``report.md`` and one PNG per claim decided over seeds.

``write_report(run_dir, out_dir)`` reads the run's sweeps (trial folders only; nothing in
``run_dir`` is written) and writes ``out_dir`` alone, so ``skelray study report`` can rebuild a
report at any time from what has finished, even while the study still runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from skelray.study.claims import CLAIMS_SCHEMA, ClaimRecord, ClaimsFile, Figure, evaluate, sweep_rows
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
        if c.ours.detail:
            lines.append(f"  - {c.ours.detail}")
    lines += [f"- Verdict: **{c.verdict}**", f"- Rule: {c.rule}", f"- Why: {c.reason}"]
    if plot:
        lines += ["", f"![{c.id}]({plot})"]
    return [*lines, ""]


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
              f"width {size.width}. {size.estimate.strip()}"), "",
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
    for section in dict.fromkeys(c.section for c in claims.claims):
        lines += [f"## {section}", ""]
        for c in claims.claims:
            if c.section == section:
                lines += _claim_md(c, _plot(c, out))
    (out / "report.md").write_text("\n".join(lines))
    (out / "claims.schema.json").write_text(json.dumps(CLAIMS_SCHEMA, indent=2))
    return out
