"""``skelray data ...`` commands: convert a dataset into a store, and describe a store.

Readers and pyarrow are imported inside the commands so ``skelray --help`` stays fast.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.table import Table

from skelray.console import make_console
from skelray.errors import SkelrayError

app = typer.Typer(no_args_is_help=True)
console = make_console()
err_console = make_console(stderr=True)


class Format(str, Enum):
    ntu = "ntu"
    pyskl = "pyskl"
    ucla = "ucla"
    npz = "npz"


class OnError(str, Enum):
    fail = "fail"
    skip = "skip"


def _fail(exc: SkelrayError, note: str = "") -> typer.Exit:
    # Same message and exit code as skelray.cli.main, also when the app runs under a test runner.
    err_console.print(f"[bold red]error:[/] {exc}{note}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


@app.command()
def convert(
    src: Path = typer.Argument(..., help="Source: a .skeleton folder, a .pkl, a JSON folder or a .npz."),
    fmt: Format = typer.Option(..., "--format", "-f",
                               help="Source format. pyskl files are pickles, which can run code when "
                                    "loaded: only convert PYSKL files you trust."),
    out: Path = typer.Option(..., "--out", "-o", help="Store folder to create."),
    layout: str = typer.Option(None, "--layout", "-l",
                               help="Layout name or YAML; default: ntu25 for ntu, kinect_v1_20 for ucla, "
                                    "the file's own for pyskl/npz. Checked against the joint count."),
    on_error: OnError = typer.Option(OnError.fail, "--on-error",
                                     help="fail: stop at the first bad file and write nothing; "
                                          "skip: convert the rest and list what was skipped."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an existing store (once the new one is complete)."),
) -> None:
    """Convert a skeleton dataset into a memory-mapped Arrow store."""
    from skelray.data.convert import convert_to_store

    try:
        report = convert_to_store(src, fmt.value, out, layout=layout, on_error=on_error.value,
                                  overwrite=overwrite)
    except SkelrayError as exc:
        raise _fail(exc, " — nothing was written") from None
    if report.skipped:
        table = Table(title=f"Skipped {len(report.skipped)} bad file(s) or sequence(s)", title_justify="left")
        table.add_column("file / sequence", overflow="fold")
        table.add_column("problem", overflow="fold")
        for item in report.skipped:
            table.add_row(item.where, item.problem)
        console.print(table)
    splits = ", ".join(f"{name} {n}" for name, n in report.splits.items()) or "none"
    console.print(f"[green]wrote[/] {report.num_sequences} sequences to {report.out} "
                  f"({len(report.skipped)} skipped; splits: {splits})", highlight=False, soft_wrap=True)


def _size(path: Path) -> str:
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return f"{size / 2**20:.1f} MiB"


@app.command()
def info(
    store_dir: Path = typer.Argument(..., help="A store folder written by `skelray data convert`."),
) -> None:
    """Counts per class and split, and frame-length statistics, of a store."""
    import numpy as np

    from skelray.data.store import open_store

    try:
        store = open_store(store_dir)
    except SkelrayError as exc:
        raise _fail(exc) from None
    k = store.num_classes
    names = store.class_names or [str(i) for i in range(k)]
    parts = {name: store.select(name) for name in store.split_names}
    console.print(f"[bold]{store.path}[/]: {len(store)} sequences, {k} classes, layout {store.layout}, "
                  f"{_size(store.path)} on disk" + (f"\nsource: {store.source}" if store.source else ""),
                  highlight=False)

    counts = Table(title="Sequences per class", title_justify="left")
    counts.add_column("label", justify="right")
    counts.add_column("class")
    for name in [*parts, "all"]:
        counts.add_column(name, justify="right")
    per_split = [np.bincount(p.labels, minlength=k) for p in [*parts.values(), store]]
    for label in range(k):
        counts.add_row(str(label), names[label], *(str(c[label]) for c in per_split))
    counts.add_row("", "[bold]total", *(f"[bold]{c.sum()}" for c in per_split))
    console.print(counts)

    frames = Table(title="Frames per sequence", title_justify="left")
    for col in ("split", "sequences", "min", "median", "mean", "max", "max persons"):
        frames.add_column(col, justify="left" if col == "split" else "right")
    for name, part in [*parts.items(), ("all", store)]:
        t = part.lengths
        if len(t) == 0:
            frames.add_row(name, "0", "-", "-", "-", "-", "-")
            continue
        frames.add_row(name, str(len(t)), str(t.min()), f"{np.median(t):g}", f"{t.mean():.1f}", str(t.max()),
                       str(part.shapes[:, 0].max()))
    console.print(frames)
