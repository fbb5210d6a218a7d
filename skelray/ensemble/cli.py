"""``skelray ensemble build``: choose members and weights from a sweep's validation logits."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from skelray.console import make_console

app = typer.Typer(no_args_is_help=True)
console = make_console()


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def print_ensemble(spec, out: Console | None = None) -> None:
    """The members, their weights and sizes, and the ensemble against the best single trial."""
    out = out or console
    table = Table(title=f"ensemble of {len(spec.members)} from {spec.experiment}")
    for col, justify in (("member", "left"), ("stream", "left"), ("PA", "right"), ("sparsity", "right"),
                         ("weight", "right"), ("params", "right"), ("ms (b1)", "right"),
                         ("val top-1", "right"),
                         ("test top-1", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for m in spec.members:
        table.add_row(m.key, m.stream, "-" if m.pa_count is None else str(m.pa_count),
                      "-" if m.sparsity is None else f"{m.sparsity:g}", f"{m.weight:.3f}", f"{m.params:,.0f}",
                      f"{m.latency_ms:.2f}", _pct(m.val_top1), _pct(m.test_top1))
    out.print(table)
    summary = Table(show_header=True)
    for col in ("", "val top-1", "test top-1", "params", "ms (b1)"):
        summary.add_column(col, justify="right" if col else "left")
    params = sum(m.params for m in spec.members)
    ms = sum(m.latency_ms for m in spec.members)
    summary.add_row("[bold]ensemble[/]", _pct(spec.ensemble.val_top1), _pct(spec.ensemble.test_top1),
                    f"{params:,.0f}", f"{ms:.2f}")
    summary.add_row(f"best single ({spec.best_single.key})", _pct(spec.best_single.val_top1),
                    _pct(spec.best_single.test_top1), "", "")
    if spec.best_single_in_budget.key != spec.best_single.key:
        summary.add_row(f"best single in budget ({spec.best_single_in_budget.key})",
                        _pct(spec.best_single_in_budget.val_top1),
                        _pct(spec.best_single_in_budget.test_top1), "", "")
    out.print(summary)
    for line in spec.skipped:
        out.print(f"[yellow]left out[/] {line}")


def _member_weights(items: list[str]) -> dict[str, float]:
    """``["t00000", "t00001@0.5"]`` -> ``{"t00000": 1.0, "t00001": 0.5}`` ("@": trial names hold "=")."""
    from skelray.errors import ConfigError

    out: dict[str, float] = {}
    for item in items:
        name, sep, weight = item.rpartition("@")
        if not sep:
            name, weight = item, "1"
        try:
            out[name] = out.get(name, 0.0) + float(weight)
        except ValueError:
            raise ConfigError(f"'{weight}' is not a number", where=f"--member {item}",
                              fix="write TRIAL or TRIAL@WEIGHT, e.g. --member t00001@0.6") from None
    return out


@app.command("build")
def build_command(
    experiment: Path = typer.Argument(..., help="The sweep folder (holds results/ and run-0/)."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write ENSEMBLE.json."),
    budget_params: float = typer.Option(None, "--budget-params",
                                        help="Most total parameters of the members."),
    budget_ms: float = typer.Option(None, "--budget-ms",
                                    help="Most summed batch-1 latency (ms) of the members."),
    max_members: int = typer.Option(None, "--max-members", help="Most distinct members."),
    rounds: int = typer.Option(None, "--rounds",
                               help="Greedy selection rounds (default 3 per trial, 10..100)."),
    refine: bool = typer.Option(False, "--refine", help="Fit the weights on validation after selection."),
    member: list[str] = typer.Option(None, "--member", help="Skip selection: score these trials instead, "
                                     "as TRIAL or TRIAL@WEIGHT (repeat the option)."),
) -> None:
    """Greedy forward selection (with replacement) of members on validation, under a budget."""
    from skelray.ensemble.builder import build_ensemble, ensemble_of

    if member:
        spec = ensemble_of(experiment, _member_weights(member))
    else:
        spec = build_ensemble(experiment, budget_params=budget_params, budget_ms=budget_ms,
                              max_members=max_members, rounds=rounds, refine=refine)
    spec.save(output)
    print_ensemble(spec)
    console.print(f"wrote {output}; next: skelray export {output} -o BUNDLE_DIR")
