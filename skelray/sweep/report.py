"""Leaderboard and plots from a sweep's results store: which configuration gives the best
accuracy per millisecond, and how did each trial learn."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from rich.table import Table

from skelray.record import EPOCH, LATENCY_BASIS, MACS, PARAMS, TEST_TOP1, VAL_TOP1, latency_key
from skelray.sweep.aggregate import aggregate, best_first
from skelray.sweep.results import best_column

ACCURACY = best_column(VAL_TOP1)
TEST_ACCURACY = best_column(TEST_TOP1)
LATENCY_B1, LATENCY_B64 = latency_key(1), latency_key(64)


def _searched_columns(trials: pa.Table) -> list[str]:
    """Config columns whose value differs between trials: what the sweep varied."""
    out = []
    for name in trials.column_names:
        if name.startswith("config.") and len(set(map(str, trials.column(name).to_pylist()))) > 1:
            out.append(name)
    return out


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated by another (lower cost, higher accuracy), by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def leaderboard(trials: pa.Table, *, mode: str = "max", top: int | None = None) -> Table:
    """The sweep ranked: by configuration (mean over its seeds / folds, with 95% intervals and
    ties marked) when any configuration was run more than once, else by trial."""
    rows, configs = aggregate(trials.to_pylist(), mode=mode)
    if any(c["replicates"] for c in configs):
        table = config_leaderboard(configs, pa.Table.from_pylist(rows), top=top)
    else:
        table = trial_leaderboard(trials, mode=mode, top=top)
    basis = next((r.get(LATENCY_BASIS) for r in rows if r.get(LATENCY_BASIS)), None)
    if basis:
        table.caption = f"ms b1 / b64: latency of the inference form, {basis}"
        table.caption_justify = "left"
    return table


def trial_leaderboard(trials: pa.Table, *, mode: str = "max", top: int | None = None) -> Table:
    """Trials ranked by their score (the sweep's metric over the epochs its scope names), ties
    as ``skelray.sweep.aggregate.best_first`` breaks them; the accuracy columns are the chosen
    checkpoint's. Stores written before scores existed rank by validation top-1."""
    rows = sorted(trials.to_pylist(), key=lambda r: best_first(r, mode))
    key = "score" if "score" in trials.column_names else ACCURACY
    varied = _searched_columns(trials)
    # The score gets its own column only when it is not the validation top-1 shown anyway.
    show_score = key == "score" and any(r.get("score") != r.get(ACCURACY) for r in rows)
    table = Table(title="leaderboard", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("trial")
    for col in varied:
        table.add_column(col.removeprefix("config.").split(".")[-1])
    for col in ("status", "epochs", *(["score"] if show_score else []), "val top1", "test top1", "params", "GMACs",
                "ms b1", "ms b64"):
        table.add_column(col, justify="right")
    for i, r in enumerate(rows[:top] if top else rows, 1):
        score = [_num(r.get("score"), 1, 4)] if show_score else []
        table.add_row(
            str(i), r["trial_name"], *[str(r.get(c)) for c in varied], r["status"], str(r["epochs_run"]), *score,
            _pct(r.get(ACCURACY)), _pct(r.get(TEST_ACCURACY)), _count(r.get(PARAMS)),
            _num(r.get(MACS), 1e-9, 3), _num(r.get(LATENCY_B1), 1, 1), _num(r.get(LATENCY_B64), 1, 1),
        )
    return table


def config_leaderboard(configs: list[dict], trials: pa.Table, *, top: int | None = None) -> Table:
    """Configurations ranked by mean score over their replicates; ``±`` is the half-width of
    the 95% Student-t interval, and ``tie`` marks those whose score interval overlaps the
    best one's: the data cannot tell them apart."""
    replicates = sorted({r for c in configs for r in c["replicates"].split(",") if r})
    varied = [c for c in _searched_columns(trials) if c.removeprefix("config.") not in replicates]
    table = Table(title=f"leaderboard by configuration (mean over {', '.join(replicates)}; "
                        "± 95% interval; tie = interval overlaps the best's)", title_justify="left")
    table.add_column("#", justify="right")
    for col in varied:
        table.add_column(col.removeprefix("config.").split(".")[-1])
    for col in ("n", "score", "test top1", "test 95% interval", "tie", "params", "GMACs", "ms b1", "ms b64"):
        table.add_column(col, justify="right")
    shown = configs[:top] if top else configs
    for c in shown:
        table.add_row(
            str(c["rank"] or ""), *[str(c.get(col)) for col in varied], str(c["n"]),
            _mean_pm(c, "score", pct=False), _mean_pm(c, "test_top1"),
            "" if c["test_top1_low"] is None else f"{_pct(c['test_top1_low'])}–{_pct(c['test_top1_high'])}",
            "=" if c["tie"] else "", _count(c.get(PARAMS)), _num(c.get(MACS), 1e-9, 3),
            _num(c.get(LATENCY_B1), 1, 1), _num(c.get(LATENCY_B64), 1, 1),
        )
    return table


def _mean_pm(c: dict, name: str, *, pct: bool = True) -> str:
    mean, high = c.get(f"{name}_mean"), c.get(f"{name}_high")
    if mean is None:
        return ""
    if pct:
        return _pct(mean) + ("" if high is None else f" ± {100 * (high - mean):.1f}")
    return f"{mean:.4f}" + ("" if high is None else f" ± {high - mean:.4f}")


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.1f}%"


def _num(v, scale: float, digits: int) -> str:
    return "" if v is None else f"{v * scale:.{digits}f}"


def _count(v) -> str:
    if v is None:
        return ""
    return f"{v / 1e6:.2f}M" if v >= 1e5 else f"{v / 1e3:.1f}k"


def score_label(metric: str = VAL_TOP1, scope: str = "all") -> str:
    """What a trial's score is, in words: the axis label of the accuracy plots."""
    what = metric.replace("/", " ").replace("top1", "top-1")
    if scope == "all":
        return f"{what} at the best epoch"
    if scope == "last":
        return f"{what} at the last epoch"
    if scope == "avg":
        return f"{what}, mean over all epochs"
    return f"{what}, mean of the last {scope.split('-')[1]} epochs"


def _spread(xs: list[float]) -> list[float]:
    """Nudge points that share an x value apart, by up to ±3% of that value, so configurations
    of the same size stay visible side by side; they keep their order."""
    out = list(xs)
    groups: dict[float, list[int]] = {}
    for i, x in enumerate(xs):
        groups.setdefault(round(x, 9), []).append(i)
    for members in groups.values():
        for k, i in enumerate(members if len(members) > 1 else ()):
            out[i] = xs[i] * (1 + 0.06 * (k / (len(members) - 1) - 0.5))
    return out


def plot(trials: pa.Table, epochs: pa.Table, out_dir: str | Path, *, mode: str = "max",
         metric: str = VAL_TOP1, scope: str = "all") -> list[Path]:
    """Score vs latency and vs params with the Pareto front, and accuracy per epoch.

    The accuracy plots show each configuration's score (the sweep's metric over its scope's
    epochs, as the leaderboard ranks it): the mean over its seeds / folds with its 95% interval
    when it has several, else its one trial. Points of equal cost are spread apart, and every
    point is numbered: the legend names each number. The per-epoch plot draws validation as
    solid lines and test, at the epochs it was evaluated, dashed in the same colour.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, configs = aggregate(trials.to_pylist(), mode=mode)
    names = {r["per_config.id"]: _short(r["trial_name"]) for r in rows}
    if any(c["replicates"] for c in configs):
        for c in configs:  # name a config by its first trial's name without the replicate parts
            names[c["id"]] = _config_name(names[c["id"]], c["replicates"])
    points = [c for c in configs if c["score_mean"] is not None]
    written = []
    ylabel = score_label(metric, scope) + (" (%)" if "top" in metric else "")
    scale = 100.0 if "top" in metric else 1.0
    for cost, label, fname, log in ((LATENCY_B1, "latency at batch 1 (ms), measured alone", "accuracy_vs_latency.png",
                                     False),
                                    (PARAMS, "parameters of the inference form", "accuracy_vs_params.png", True)):
        pts = [c for c in points if c.get(cost) is not None]
        if not pts:
            continue
        xs = _spread([float(c[cost]) for c in pts])
        ys = [scale * c["score_mean"] for c in pts]
        err = [[scale * (c["score_mean"] - c["score_low"]) if c["score_low"] is not None else 0 for c in pts],
               [scale * (c["score_high"] - c["score_mean"]) if c["score_high"] is not None else 0 for c in pts]]
        fig, ax = plt.subplots(figsize=(8, 5))
        ax.errorbar(xs, ys, yerr=err, fmt="o", color="tab:blue", alpha=0.75, capsize=3,
                    label="mean ± 95% interval" if any(e > 0 for e in err[1]) else "trial")
        sign = 1.0 if mode == "max" else -1.0
        front = pareto_front([(float(c[cost]), sign * c["score_mean"]) for c in pts])
        ax.plot([xs[i] for i in front], [ys[i] for i in front], "-o", color="tab:red", mfc="none", ms=10,
                label="Pareto front")
        for i, c in enumerate(pts):
            ax.annotate(str(i + 1), (xs[i], ys[i]), fontsize=7, xytext=(4, 3), textcoords="offset points")
        if log:
            ax.set_xscale("log")
        lo, hi = min(float(c[cost]) for c in pts), max(float(c[cost]) for c in pts)
        if hi <= lo * 1.2:  # one size (or nearly): show it as such, not as a spread of sizes
            ax.set_xlim(lo / 1.25, hi * 1.25)
        ax.set_xlabel(label)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        key = [f"{i + 1}: {names[c['id']]}" for i, c in enumerate(pts)]
        ax.legend(handles, labels, fontsize=7, loc="lower right")
        fig.text(0.01, 0.01, "   ".join(key)[:2000], fontsize=6, wrap=True)
        fig.tight_layout(rect=(0, 0.04 + 0.012 * (len(key) // 6), 1, 1))
        fig.savefig(out / fname, dpi=120)
        plt.close(fig)
        written.append(out / fname)
    if epochs.num_rows and VAL_TOP1 in epochs.column_names:
        fig, ax = plt.subplots(figsize=(8, 5))
        by_trial: dict[str, dict[str, list[tuple[int, float]]]] = {}
        for r in epochs.to_pylist():
            curves = by_trial.setdefault(r["trial_name"], {"val": [], "test": []})
            for split, key in (("val", VAL_TOP1), ("test", TEST_TOP1)):
                if r.get(key) is not None:
                    curves[split].append((r[EPOCH], r[key]))
        for i, (name, curves) in enumerate(sorted(by_trial.items())):
            color = f"C{i % 10}"
            for split, style in (("val", "-"), ("test", "--")):
                pts = sorted(curves[split])
                if pts:
                    ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], style, marker=".", color=color,
                            label=f"{_short(name)} ({split})" if len(by_trial) <= 8 or split == "val" else None)
        ax.set_xlabel("epoch")
        ax.set_ylabel("top-1 (%): validation solid, test dashed")
        ax.grid(alpha=0.3)
        if len(by_trial) <= 16:
            ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        fig.savefig(out / "accuracy_per_epoch.png", dpi=120)
        plt.close(fig)
        written.append(out / "accuracy_per_epoch.png")
    return written


def _short(trial_name: str) -> str:
    """``t00003-pa_count=3,stream=b`` -> ``pa_count=3,stream=b``."""
    return trial_name.split("-", 1)[-1][:60]


def _config_name(name: str, replicates: str) -> str:
    """A trial's short name without its replicate parts (``seed=1``, ``fold=0``)."""
    drop = {r.rsplit(".", 1)[-1] for r in replicates.split(",") if r}
    parts = [p for p in name.split(",") if p.split("=", 1)[0] not in drop]
    return ",".join(parts) or name
