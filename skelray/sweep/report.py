"""Leaderboard and plots from a sweep's results store: which configuration gives the best
accuracy per millisecond, and how did each trial learn."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from rich.table import Table

ACCURACY = "best.val/top1"


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
    """Trials ranked by their score (the sweep's metric over the epochs its scope names); the
    accuracy columns are the chosen checkpoint's. Stores written before scores existed rank by
    validation top-1."""
    rows = trials.to_pylist()
    key = "score" if "score" in trials.column_names else ACCURACY
    rows.sort(key=lambda r: (r.get(key) is None, -(r.get(key) or 0) if mode == "max" else (r.get(key) or 0)))
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
            _pct(r.get("best.val/top1")), _pct(r.get("best.test/top1")), _count(r.get("params")),
            _num(r.get("macs"), 1e-9, 3), _num(r.get("latency_ms_b1"), 1, 1), _num(r.get("latency_ms_b64"), 1, 1),
        )
    return table


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.1f}%"


def _num(v, scale: float, digits: int) -> str:
    return "" if v is None else f"{v * scale:.{digits}f}"


def _count(v) -> str:
    if v is None:
        return ""
    return f"{v / 1e6:.2f}M" if v >= 1e5 else f"{v / 1e3:.1f}k"


def plot(trials: pa.Table, epochs: pa.Table, out_dir: str | Path) -> list[Path]:
    """Accuracy vs latency and vs params with the Pareto front, and accuracy per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [r for r in trials.to_pylist() if r.get(ACCURACY) is not None]
    written = []
    for cost, label, fname in (("latency_ms_b1", "latency at batch 1 (ms)", "accuracy_vs_latency.png"),
                               ("params", "parameters", "accuracy_vs_params.png")):
        pts = [(r[cost], r[ACCURACY], r["trial_name"]) for r in rows if r.get(cost) is not None]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.scatter([p[0] for p in pts], [100 * p[1] for p in pts], color="tab:blue", alpha=0.7)
        front = pareto_front([(p[0], p[1]) for p in pts])
        ax.plot([pts[i][0] for i in front], [100 * pts[i][1] for i in front], "-o", color="tab:red",
                label="Pareto front")
        for i in front:
            ax.annotate(pts[i][2].split("-", 1)[-1][:40], (pts[i][0], 100 * pts[i][1]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel("best validation top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / fname, dpi=120)
        plt.close(fig)
        written.append(out / fname)
    if epochs.num_rows and "val/top1" in epochs.column_names:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        by_trial: dict[str, list[tuple[int, float]]] = {}
        for r in epochs.to_pylist():
            if r.get("val/top1") is not None:
                by_trial.setdefault(r["trial_name"], []).append((r["epoch"], r["val/top1"]))
        for name, pts in sorted(by_trial.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker=".", label=name.split("-", 1)[-1][:40])
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation top-1 (%)")
        ax.grid(alpha=0.3)
        if len(by_trial) <= 12:
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "accuracy_per_epoch.png", dpi=120)
        plt.close(fig)
        written.append(out / "accuracy_per_epoch.png")
    return written
