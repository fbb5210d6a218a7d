"""``skelray sweep ...``: run, resume, extend and summarise sweeps."""

from __future__ import annotations

from pathlib import Path

import typer

from skelray.config.overrides import cli_overrides
from skelray.console import make_console

app = typer.Typer(no_args_is_help=True)
console = make_console()


@app.command("validate")
def validate(sweep_file: Path = typer.Argument(..., help="Sweep YAML (skelray or W&B format)."),
             data: str = typer.Option(None, "--data", help="Dataset path (overrides data.path)."),
             set_: list[str] = typer.Option([], "--set", help="Override a config path: KEY=VALUE.")) -> None:
    """Check a sweep file and show how many trials it makes, without starting anything."""
    from skelray.sweep.spec import count_trials, load_sweep

    spec = load_sweep(sweep_file, cli_overrides(set_, data))
    console.print(f"[green]ok[/]: sweep [bold]{spec.name}[/], searcher {spec.searcher_type}, "
                  f"scheduler {spec.scheduler.type}, {count_trials(spec)} trials")
    if spec.constraints:
        from skelray.sweep.costs import preview

        for line in preview(spec):
            console.print(line)
    _print_validation(spec)


def _print_validation(spec) -> None:
    """The replicates of each config (seeds, folds) and the rule that chooses the validation
    clips, read from the data (as each trial will choose them)."""
    from rich.markup import escape

    from skelray.sweep.spec import count_trials
    from skelray.train.data import describe_validation

    grids = spec.replicate_leaves()
    if grids:
        each = " x ".join(f"{len(leaf.grid_points())} {path.rsplit('.', 1)[-1]}s" for path, leaf in grids.items())
        runs = 1
        for leaf in grids.values():
            runs *= len(leaf.grid_points())
        console.print(f"replicates: {each} of every config ({count_trials(spec) // runs} configs)")
    path = spec.data.path
    if path and "://" in path:
        console.print("validation: chosen when each trial loads the data (a remote path is not read here)")
        return
    for line in describe_validation(spec.trial_config().data):
        console.print(f"validation: {escape(line)}")


@app.command("run")
def run(sweep_file: Path = typer.Argument(..., help="Sweep YAML (skelray or W&B format)."),
        address: str = typer.Option(None, "--address", help="Ray cluster address; default: an embedded local Ray."),
        storage: str = typer.Option(None, "--storage", help="Results folder or URI (overrides the YAML's storage)."),
        data: str = typer.Option(None, "--data", help="Dataset path (overrides data.path)."),
        set_: list[str] = typer.Option([], "--set", help="Override a config path: KEY=VALUE (repeatable)."),
        top: int = typer.Option(20, help="Rows of the leaderboard printed at the end.")) -> None:
    """Run a sweep to completion and print its leaderboard."""
    from skelray.sweep.report import leaderboard
    from skelray.sweep.runner import run_sweep
    from skelray.sweep.spec import load_sweep

    # With --address the data may live on the workers' disks only: the trial checks it there.
    spec = load_sweep(sweep_file, cli_overrides(set_, data), check_paths=address is None)
    outcome = run_sweep(spec, address=address, storage=storage, console=console)
    console.print(leaderboard(outcome.trials, mode=outcome.mode, top=top))
    console.print(f"next: skelray sweep results {outcome.sweep_dir}")
    if outcome.errored:
        raise typer.Exit(1)


@app.command("resume")
def resume(sweep_dir: str = typer.Argument(..., help="The sweep folder (<storage>/<name>)."),
           address: str = typer.Option(None, "--address", help="Ray cluster address."),
           more: int = typer.Option(0, "--more", min=0, help="Add N more samples as a new run.")) -> None:
    """Finish an interrupted sweep without re-running finished trials; --more N extends it."""
    from skelray.sweep.report import leaderboard
    from skelray.sweep.runner import resume_sweep

    outcome = resume_sweep(sweep_dir, address=address, more=more, console=console)
    console.print(leaderboard(outcome.trials, mode=outcome.mode, top=20))
    if outcome.errored:
        raise typer.Exit(1)


@app.command("results")
def results(sweep_dir: str = typer.Argument(..., help="The sweep folder (<storage>/<name>)."),
            top: int = typer.Option(0, help="Rows to show; 0 = all."),
            plots: bool = typer.Option(True, help="Write PNG plots into <sweep>/results/plots."),
            refresh: bool = typer.Option(False, help="Rebuild the tables from the trial folders first.")) -> None:
    """Leaderboard (and plots) from a sweep's Parquet results store."""
    from skelray.sweep.report import leaderboard, plot
    from skelray.sweep.results import RESULTS_DIR, Location, collect_as_run, read_results, sweep_state

    state = sweep_state(Location.parse(sweep_dir))
    if refresh:
        trials, epochs = collect_as_run(sweep_dir, state)
    else:
        trials, epochs = read_results(sweep_dir)
    if trials.num_rows == 0:
        console.print(f"no trials in {sweep_dir} yet")
        return
    console.print(leaderboard(trials, mode=state.mode, top=top or None))
    if plots:
        loc = Location.parse(sweep_dir)
        if "://" in sweep_dir:
            console.print("plots are written for local sweep folders only")
            return
        for path in plot(trials, epochs, Path(loc.path) / RESULTS_DIR / "plots", mode=state.mode,
                         metric=state.metric, scope=state.scope):
            console.print(f"wrote {path}")
