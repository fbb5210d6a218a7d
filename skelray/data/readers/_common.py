"""Machinery every reader shares: error routing, file listing, layout checks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from skelray.data.layouts import get_layout
from skelray.errors import DataError

# Called with each bad file or sequence when a reader should skip it instead of failing.
# None means "raise the first DataError", which is what a plain library call wants.
OnError = Callable[[DataError], None] | None


def handle(exc: DataError, on_error: OnError) -> None:
    """Raise ``exc``, or hand it to ``on_error`` so the caller can report it and go on."""
    if on_error is None:
        raise exc
    on_error(exc)


def list_files(path: str | Path, suffix: str, what: str) -> list[Path]:
    """``path`` itself if it is a file, else the sorted ``*suffix`` files directly inside it."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise DataError(f"{what} path does not exist", where=str(p), fix="check the path")
    files = sorted(f for f in p.iterdir() if f.suffix == suffix and f.is_file())
    if not files:
        raise DataError(f"holds no {suffix} files", where=str(p),
                        fix=f"point at the folder of {what} files (or pick another --format)")
    return files


def fixed_layout(requested: str | None, default: str, num_joints: int, fmt: str) -> str:
    """The layout for a format whose joint count is fixed; refuse one that cannot match."""
    name = requested or default
    layout = get_layout(name)
    if layout.num_joints != num_joints:
        raise DataError(f"layout '{layout.name}' has {layout.num_joints} joints but {fmt} data has "
                        f"{num_joints}",
                        where="--layout", fix=f"use --layout {default} or another {num_joints}-joint layout")
    return layout.name


def joints_of(layout: str | None) -> int | None:
    return None if layout is None else get_layout(layout).num_joints


def known_splits(raw: dict[str, Iterable[str]], known: set[str], where: str,
                 on_error: OnError) -> dict[str, list[str]]:
    """Splits restricted to the sequences read, in the file's order.

    An id no sequence has is usually one skipped above; it is reported once per split
    (raised, or handed to ``on_error``) and dropped.
    """
    splits: dict[str, list[str]] = {}
    for name, ids in raw.items():
        ids = [str(i) for i in ids]
        missing = [i for i in ids if i not in known]
        if missing:
            handle(DataError(f"split '{name}' names {len(missing)} sequence(s) that were not read, "
                             f"e.g. '{missing[0]}'", where=where), on_error)
        splits[str(name)] = [i for i in ids if i in known]
    return splits
