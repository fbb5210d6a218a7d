"""Run a study at one size: its sweeps, one after another, in one folder; resume it; report it.

A study run lives in ``<storage>/<study>-<size>/``::

  study.json          the study as run, the size, --data, the report folder, and whether it finished
  sweeps/<name>/      one sweep folder per sweep the size needs (``skelray.sweep.runner``)
  served.json         claim 6's check: the builder's ensemble over HTTP against offline (``served.py``)
  served/             its ENSEMBLE.json and the bundle/ it exported and served

``resume_study`` skips every sweep whose ``sweep_state.json`` says finished, resumes an
interrupted one with ``resume_sweep`` (finished trials are not re-run) and runs those not yet
started. After the sweeps, while Ray is still up, each served claim the size runs gets its
check unless ``served.json`` exists already (delete it to check again). Ray starts once for
the whole study.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from skelray.errors import ConfigError, DataError
from skelray.record import SWEEP_STATE_FILE
from skelray.runtime import start_ray
from skelray.study.spec import StudySpec, load_study
from skelray.sweep.results import Location, sweep_state

STATE_FILE = "study.json"


@dataclass
class StudyRun:
    """What ``study.json`` records."""

    dir: Path
    study: StudySpec
    size: str
    data: str | None
    report: Path
    finished: bool = False

    def save(self) -> None:
        doc = {"kind": "skelray-study-run", "study": self.study.model_dump(mode="json"), "size": self.size,
               "data": self.data, "report": str(self.report), "finished": self.finished}
        tmp = self.dir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(self.dir / STATE_FILE)  # atomic: a killed driver never leaves half a file

    @classmethod
    def load(cls, run_dir: str | Path) -> StudyRun:
        path = Path(run_dir) / STATE_FILE
        if not path.is_file():
            raise DataError(f"is not a study folder (no {STATE_FILE})", where=str(run_dir),
                            fix="pass the folder `skelray study run` printed, e.g. runs/nw_ucla-laptop")
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"is not valid JSON ({exc.msg})", where=str(path)) from None
        return cls(dir=Path(run_dir).resolve(), study=load_study(doc["study"]), size=doc["size"],
                   data=doc.get("data"), report=Path(doc["report"]), finished=bool(doc.get("finished")))

    def sweep_dir(self, name: str) -> Path:
        return self.dir / "sweeps" / name


def default_report(study: StudySpec, size: str) -> Path:
    """``reports/<study>`` for the laptop size (the committed report), else ``reports/<study>-<size>``."""
    return Path("reports") / (study.name if size == "laptop" else f"{study.name}-{size}")


def run_study(source: str | Path | dict[str, Any], size: str, *, data: str | None = None,
              address: str | None = None, storage: str | None = None, report: str | Path | None = None,
              console: Console | None = None) -> StudyRun:
    """Start a study run at ``size`` and take it to its report."""
    from skelray.sweep.runner import default_storage

    study = load_study(source)
    if size not in study.sizes:
        raise ConfigError(f"the study defines no size '{size}'", where="--size",
                          fix=f"use one of {', '.join(study.sizes)}")
    run_dir = Path(storage or default_storage()).resolve() / f"{study.name}-{size}"
    if (run_dir / STATE_FILE).exists():
        raise ConfigError(f"a study run already exists at {run_dir}", where="--storage",
                          fix=f"resume it with `skelray study resume {run_dir}`, or pass another --storage")
    for name in study.sweeps_for(size):  # the data folder must exist before anything trains
        study.sweep_spec(name, size, str(run_dir / "sweeps"), data=data, check_paths=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = StudyRun(dir=run_dir, study=study, size=size, data=data,
                   report=Path(report or default_report(study, size)).resolve())
    run.save()
    return _continue(run, address=address, console=console or Console())


def resume_study(run_dir: str | Path, *, address: str | None = None, console: Console | None = None) -> StudyRun:
    """Finish an interrupted study run without re-running a finished trial, then report it."""
    return _continue(StudyRun.load(run_dir), address=address, console=console or Console())


def _continue(run: StudyRun, *, address: str | None, console: Console) -> StudyRun:
    from skelray.study.report import write_report
    from skelray.sweep.runner import resume_sweep, run_sweep

    started = start_ray(address)
    try:
        for name in run.study.sweeps_for(run.size):
            folder = run.sweep_dir(name)
            if (folder / SWEEP_STATE_FILE).exists():
                if sweep_state(Location.parse(str(folder))).finished:
                    console.print(f"study {run.study.name}: sweep {name} finished already, skipped")
                    continue
                resume_sweep(str(folder), console=console)
            else:
                spec = run.study.sweep_spec(name, run.size, str(run.dir / "sweeps"), data=run.data)
                run_sweep(spec, console=console)
        _served_checks(run, local=address is None, console=console)
        run.finished = True
        run.save()
    finally:
        if started:
            import ray

            ray.shutdown()
    path = write_report(run.dir, run.report)
    console.print(f"study {run.study.name} ({run.size}): report in {path}")
    return run


def _served_checks(run: StudyRun, *, local: bool, console: Console) -> None:
    """Claim 6's check (``served.served_check``) for each served claim the size runs, on the
    study's Ray (``local``: the embedded one), unless its ``served.json`` exists."""
    from skelray.study.served import SERVED_FILE, served_check

    for c in run.study.runs(run.size):
        if c.check is None or c.check.kind != "served":
            continue
        if (run.dir / SERVED_FILE).exists():
            console.print(f"study {run.study.name}: served check done already ({SERVED_FILE}), not redone")
            continue
        served_check(run.dir, run.sweep_dir(c.check.sweeps[0]), local=local, console=console)
