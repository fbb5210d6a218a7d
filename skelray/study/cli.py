"""``skelray study ...``: run a study at a size, resume it, rebuild its report."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 160)


@app.command("run")
def run(study_file: Path = typer.Argument(..., help="Study YAML, e.g. studies/nw_ucla.yaml."),
        size: str = typer.Option("smoke", "--size", help="smoke (synthetic, minutes), laptop (NW-UCLA, "
                                 "about 2 h on 2 cores) or full (the papers' schedules; a GPU cluster)."),
        data: str = typer.Option(None, "--data", help="Dataset folder (overrides data.path of every sweep)."),
        address: str = typer.Option(None, "--address", help="Ray cluster address; default: a local Ray."),
        storage: str = typer.Option(None, "--storage", help="Where the run folder goes (default: runs/ or "
                                    "$SKELRAY_STORAGE)."),
        report: str = typer.Option(None, "--report", help="Report folder (default: reports/<study> for "
                                   "laptop, reports/<study>-<size> otherwise).")) -> None:
    """Run every sweep the size's claims need, then write the report."""
    from skelray.study.runner import run_study

    run_study(study_file, size, data=data, address=address, storage=storage, report=report, console=console)


@app.command("resume")
def resume(run_dir: Path = typer.Argument(..., help="The study run folder (runs/<study>-<size>)."),
           address: str = typer.Option(None, "--address", help="Ray cluster address; default: a local Ray.")
           ) -> None:
    """Finish an interrupted study: finished sweeps are skipped, finished trials not re-run."""
    from skelray.study.runner import resume_study

    resume_study(run_dir, address=address, console=console)


@app.command("report")
def report(run_dir: Path = typer.Argument(..., help="The study run folder (runs/<study>-<size>)."),
           out: Path = typer.Option(None, "--out", help="Report folder to write (default: the run's own, "
                                    "as recorded in study.json).")) -> None:
    """Rebuild report.md, claims.json and the plots from what has finished. Writes only the
    report folder; the run folder is only read."""
    from skelray.study.report import write_report
    from skelray.study.runner import StudyRun

    target = out or StudyRun.load(run_dir).report
    console.print(f"report in {write_report(run_dir, target)}")
