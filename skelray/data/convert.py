"""Convert a source dataset (NTU, PYSKL, NW-UCLA, npz) into a store, failing or skipping bad files.

``on_error="fail"`` stops at the first bad file or sequence and writes nothing;
``on_error="skip"`` leaves bad ones out and reports each with its reason. Either way an
existing store at the target survives anything that goes wrong (see ``write_store``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from skelray.config import DEFAULT_LAYOUTS  # the layout a format implies; None: the file says
from skelray.data._types import SkeletonDataset
from skelray.data.readers import READERS
from skelray.data.store import check_target, write_store
from skelray.errors import ConfigError, DataError

OnErrorMode = Literal["fail", "skip"]


@dataclass
class Skipped:
    """One file or sequence left out, and why."""

    where: str  # relative to the source folder where possible, to keep reports narrow
    problem: str


@dataclass
class ConvertReport:
    out: Path
    num_sequences: int
    splits: dict[str, int]
    skipped: list[Skipped] = field(default_factory=list)


def _skipped(exc: DataError, src: Path) -> Skipped:
    text = str(exc)
    where = exc.where or ""
    # The message reads "where: problem (fix: ...)"; a skip report wants the problem alone
    # (the fix usually says "skip it", which just happened).
    if where and text.startswith(f"{where}: "):
        text = text[len(where) + 2:]
    if exc.fix and text.endswith(f" (fix: {exc.fix})"):
        text = text[: -len(f" (fix: {exc.fix})")]
    base = f"{src if src.is_dir() else src.parent}{os.sep}"
    return Skipped(where.removeprefix(base), text)


def read_source(src: str | Path, fmt: str, *, layout: str | None = None, on_error: OnErrorMode = "fail",
                skipped: list[Skipped] | None = None) -> SkeletonDataset:
    """Read ``src`` with the reader for ``fmt``; with ``skip``, append each bad item to ``skipped``."""
    if fmt not in READERS:
        raise ConfigError(f"unknown format '{fmt}'", where="--format", fix=f"choose one of {sorted(READERS)}")
    if on_error not in ("fail", "skip"):
        raise ConfigError(f"unknown mode '{on_error}'", where="--on-error", fix="choose fail or skip")
    sink = skipped if skipped is not None else []
    handler = None if on_error == "fail" else (lambda exc: sink.append(_skipped(exc, Path(src))))
    dataset = READERS[fmt](src, layout=layout or DEFAULT_LAYOUTS[fmt], on_error=handler)
    if not dataset.sequences:
        raise DataError(f"no sequence could be read ({len(sink)} problem(s) reported)", where=str(src))
    return dataset


def convert_to_store(src: str | Path, fmt: str, out: str | Path, *, layout: str | None = None,
            on_error: OnErrorMode = "fail", overwrite: bool = False) -> ConvertReport:
    """Read ``src`` as ``fmt`` and write a store at ``out``."""
    check_target(out, overwrite=overwrite)  # fail before spending minutes reading
    skipped: list[Skipped] = []
    dataset = read_source(src, fmt, layout=layout, on_error=on_error, skipped=skipped)
    path = write_store(dataset, out, overwrite=overwrite, source=f"{fmt}:{Path(src).resolve()}")
    return ConvertReport(path, len(dataset), {k: len(v) for k, v in dataset.splits.items()}, skipped)
