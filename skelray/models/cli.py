"""``skelray models ...``: list the registered models and inspect one's size and cost."""

from __future__ import annotations

import typer
from rich.table import Table

from skelray.config import parse_overrides
from skelray.console import make_console

app = typer.Typer(no_args_is_help=True)
console = make_console()


def _summary(doc: str | None) -> str:
    """The first paragraph of a docstring on one line."""
    first = (doc or "").strip().split("\n\n")[0]
    return " ".join(first.split())


@app.command("list")
def list_command() -> None:
    """The registered models with their default size (NTU, 25 joints, 60 classes)."""
    from skelray.models import count_params, create_model, is_fusable, list_models
    from skelray.models._registry import get_entry_point

    table = Table(title="registered models")
    table.add_column("name", style="bold")
    table.add_column("params", justify="right")
    table.add_column("fusable")
    table.add_column("description")
    for name in list_models():
        model = create_model(name)
        table.add_row(name, f"{count_params(model):,}", "yes" if is_fusable(model) else "no",
                      _summary(get_entry_point(name).__doc__))
    console.print(table)


@app.command("info")
def info_command(
    name: str = typer.Argument(..., help="A registered model name (see `skelray models list`)."),
    layout: str = typer.Option("ntu25", "--layout", help="Skeleton layout name or YAML/JSON file."),
    frames: int = typer.Option(64, "--frames", min=1, help="Frames T of the profiled input."),
    persons: int = typer.Option(2, "--persons", min=1, help="Persons M of the profiled input."),
    num_classes: int = typer.Option(60, "--num-classes", min=1, help="Number of classes."),
    fused: bool = typer.Option(False, "--fused", help="Also profile the fused (inference) form."),
    opt: list[str] = typer.Option([], "--opt", help="Extra model option KEY=VALUE, repeatable."),
) -> None:
    """Parameters, MACs and fusability of one model for a given input."""
    from skelray.models import create_model, fuse, is_fusable, profile

    model = create_model(name, layout=layout, num_classes=num_classes, num_persons=persons,
                         **parse_overrides(opt, flag="--opt", example="pa_count=3"))
    shape = (1, persons, frames, model.num_joints, model.in_channels)
    forms = [("training", model)]
    if fused:
        forms.append(("fused", fuse(model)))
    table = Table(title=f"{name}: input (N, M, T, V, C) = {shape}, {num_classes} classes")
    table.add_column("form", style="bold")
    table.add_column("params", justify="right")
    table.add_column("GMACs / clip", justify="right")
    table.add_column("GMACs / person-clip", justify="right")
    for label, m in forms:
        params, macs = profile(m, shape)
        table.add_row(label, f"{params:,}", f"{macs / 1e9:.3f}", f"{macs / persons / 1e9:.3f}")
    console.print(table)
    console.print(f"fusable: {'yes' if is_fusable(model) else 'no'}; feature size: {model.feat_dim}; "
                  "MACs count convs, linear layers and graph (adjacency/attention) products")
