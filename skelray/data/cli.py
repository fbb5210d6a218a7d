"""``skelray data ...`` commands: convert a dataset into a store, and describe a store.

Readers and pyarrow are imported inside the commands so ``skelray --help`` stays fast.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from skelray.console import make_console
from skelray.errors import SkelrayError

if TYPE_CHECKING:
    from skelray.data.quality import BoneCheck, EmptyCount

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
    src: Path = typer.Argument(..., help="Source: a .skeleton folder, a .pkl, a JSON folder, or a .npz "
                                         "file or a folder of them (merged)."),
    fmt: Format = typer.Option(..., "--format", "-f",
                               help="Source format. pyskl files are pickles, which can run code when "
                                    "loaded: only convert PYSKL files you trust."),
    out: Path = typer.Option(..., "--out", "-o", help="Store folder to create."),
    layout: str = typer.Option(None, "--layout", "-l",
                               help="Layout name or YAML; default: ntu25 for ntu, kinect_v1_20 for ucla, "
                                    "the file's own for pyskl/npz. Checked against the joint count."),
    on_error: OnError = typer.Option(OnError.fail, "--on-error",
                                     help="fail: stop at the first bad file and write nothing; "
                                          "skip: convert the rest and list what was skipped (empty "
                                          "clips too: all joints zero in every frame)."),
    reorder: str = typer.Option(None, "--reorder",
                                help="The file's joints in the file's order, as the layout's joint names or "
                                     "0-based indices, comma-separated: the file's joint i becomes the layout "
                                     "joint named i-th. Use it when your files list the joints in another "
                                     "order than the layout (a bone-length check warns when they seem to)."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an existing store (once the new one is complete)."),
) -> None:
    """Convert a skeleton dataset into a memory-mapped Arrow store."""
    from skelray.data.convert import convert_to_store

    try:
        report = convert_to_store(src, fmt.value, out, layout=layout, on_error=on_error.value,
                                  overwrite=overwrite, reorder=reorder)
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
    _print_quality(report.empty, report.bones, dropped=on_error is OnError.skip)


def _warn(text: str) -> None:
    console.print(f"[yellow]warning:[/] {text}", highlight=False, soft_wrap=True)


def _print_quality(empty: EmptyCount, bones: BoneCheck | None, *, dropped: bool | None = None) -> None:
    """Empty clips and frames, and the joint-order check (``skelray.data.quality``).
    ``dropped``: convert left the empty clips out (True) or kept them (False); None: a store."""
    from skelray.data.quality import MOSTLY_EMPTY

    console.print(f"empty frames: {empty.summary()}", highlight=False, soft_wrap=True)
    if empty.empty_clips and dropped is not True:
        shown = ", ".join(empty.empty_clips[:5]) + (", ..." if len(empty.empty_clips) > 5 else "")
        how = ("kept: convert with --on-error skip to leave them out" if dropped is False
               else "convert again with --on-error skip to leave them out")
        _warn(f"{len(empty.empty_clips)} clip(s) are empty, every joint zero in every frame ({shown}); {how}")
    if empty.mostly_empty:
        worst = sorted(empty.mostly_empty, key=lambda c: -c[1] / c[2])
        shown = "the 10 emptiest of " if len(worst) > 10 else ""
        table = Table(title=f"Kept: {shown}{len(worst)} clip(s) with at least {100 * MOSTLY_EMPTY:.0f}% empty frames",
                      title_justify="left")
        for col in ("clip", "empty frames", "frames"):
            table.add_column(col, justify="left" if col == "clip" else "right")
        for cid, n, t in worst[:10]:
            table.add_row(cid, str(n), str(t))
        console.print(table)
    if bones is not None:
        console.print(f"joint order (layout {bones.layout}): {bones.summary()}", highlight=False, soft_wrap=True)
        for text in bones.warnings():
            _warn(text)
        if bones.warnings():
            _warn(bones.advice())


def _size(path: Path) -> str:
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return f"{size / 2**20:.1f} MiB"


@app.command()
def info(
    store_dir: Path = typer.Argument(..., help="A store folder written by `skelray data convert`."),
) -> None:
    """Counts per class and split, frame-length statistics, tags, scores, empty frames and a
    joint-order check (bone lengths) of a store."""
    import numpy as np

    from skelray.data.quality import check_bones, count_empty
    from skelray.data.store import open_store

    try:
        store = open_store(store_dir)
    except SkelrayError as exc:
        raise _fail(exc) from None
    k = store.num_classes
    names = store.class_names or [str(i) for i in range(k)]
    parts = {name: store.select(name) for name in store.split_names}
    console.print(f"[bold]{store.path}[/]: {len(store)} sequences, {k} classes, layout {store.layout} "
                  f"({store.layout_spec.num_joints} joints), "
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

    tags = [f"{k} ({t}, {len({v for v in store.tag_values(k) if v is not None})} values)"
            for k, t in store.tag_types.items()]
    console.print(f"tags: {', '.join(tags) or 'none'}", highlight=False, soft_wrap=True)
    console.print("keypoint_score: " + ("stored (training does not use it today)" if store.has_keypoint_score
                                        else "not stored"), highlight=False)
    _print_quality(count_empty(store), check_bones(store, store.layout_spec))
