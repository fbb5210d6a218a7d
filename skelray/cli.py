"""The ``skelray`` command line. Each concern adds its own sub-command group here.

Heavy imports (torch, ray) happen inside the commands so ``skelray --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from skelray import __version__
from skelray.console import make_console
from skelray.errors import SkelrayError

console = make_console()
err_console = make_console(stderr=True)

app = typer.Typer(
    name="skelray",
    help="Sweeps of skeleton action-recognition models on Ray, and serving the best one.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"skelray {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """skelray: sweep, compare and serve skeleton action-recognition models."""


def _register_groups() -> None:
    from skelray.data.cli import app as data_app

    app.add_typer(data_app, name="data", help="Convert, inspect and load skeleton datasets.")
    from skelray.models.cli import app as models_app
    app.add_typer(models_app, name="models", help="List and inspect the registered models.")
    from skelray.sweep.cli import app as sweep_app

    app.add_typer(sweep_app, name="sweep", help="Run, resume, extend and summarise sweeps on Ray Tune.")
    from skelray.ensemble.cli import app as ensemble_app

    app.add_typer(ensemble_app, name="ensemble", help="Choose an ensemble of a sweep's trials on validation.")
    from skelray.export.cli import export_command

    app.command("export", help="Write a servable bundle (fused members, checked, plus a manifest) from an "
                "ENSEMBLE.json, or from a sweep folder: a sweep folder needs --trial.")(export_command)
    from skelray.serve.cli import app as serve_app

    app.add_typer(serve_app, name="serve", help="Serve a bundle with Ray Serve (`serve BUNDLE`, `serve build`).")
    from skelray.study.cli import app as study_app

    app.add_typer(study_app, name="study", help="Test the papers' claims: run a study's sweeps, report verdicts.")
    from skelray.deploy.cli import k8s_app, register

    register(sweep_app)  # sweep submit | status | logs | stop (Ray Jobs API)
    app.add_typer(k8s_app, name="k8s", help="Render and check KubeRay manifests (RayJob for a sweep).")


_register_groups()


def main() -> None:
    """Entry point: run the app and turn project errors into a clear message and exit code 2."""
    try:
        app()
    except SkelrayError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
