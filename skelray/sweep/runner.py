"""Turn a validated ``SweepSpec`` into a Ray Tune run, and resume or extend one.

A sweep lives in one folder, ``<storage>/<name>/``:

  sweep.yaml          the spec as run (resume reads it back)
  sweep_state.json    metric, mode, scope, the runs so far, whether the last one finished
                      (a ``skelray.record.SweepState``, replaced atomically at every change)
  costs.json          the inference cost of each distinct architecture, measured once, alone
                      on a node, before the run (or after it, for compacted models): what the
                      trials table, plots, ensembles and exports read (``skelray.sweep.costs``)
  run-0/ run-1/ ...   one Tune experiment per `run` / `--more`, one folder per trial
  results/            trials.parquet and epochs.parquet (see skelray.sweep.results)
  wandb/              offline W&B runs, when storage is local
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import yaml
from rich.console import Console

from skelray.console import make_console
from skelray.errors import ConfigError
from skelray.record import SWEEP_STATE_FILE, SweepState
from skelray.runtime import start_ray
from skelray.sweep.costs import CostPlan, load_costs, measure_after_run, plan_run, trial_latencies
from skelray.sweep.results import SPEC_FILE, Location, collect, sweep_state, write_sweep_state

# Tune logs "The `process_trial_result` operation took 2.4 s, which may be a performance
# bottleneck" whenever one driver step takes over 0.5 s (TUNE_WARN_THRESHOLD_S, read once when
# ray.tune is imported, which this module does not do itself). A sweep's driver waits on Ray
# calls (the W&B callback hands each result to its logging actor's queue), and under load one
# step takes seconds, beside epochs of seconds to minutes: only a stall of 10 s matters to a
# sweep. Set here, when a sweep is run, and never over a value the user set.
os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "10")


@dataclass
class SweepOutcome:
    sweep_dir: str
    trials: Any  # pyarrow.Table
    errored: int
    mode: str = "max"  # how the trials table's score ranks (the sweep's mode)


def default_storage() -> str:
    return os.path.abspath(os.environ.get("SKELRAY_STORAGE", "runs"))


def _state(spec, runs: list[str], *, finished: bool) -> SweepState:
    """What ``sweep_state.json`` records: the runs so far and how trials are ranked."""
    return SweepState(name=spec.name, metric=spec.metric, mode=spec.mode, scope=spec.scope, runs=runs,
                      finished=finished)


class _TrialNamer:
    """``t00003-pa_count=3,stream=j``: Tune's per-run trial counter, then the searched values.
    A class rather than a closure so Tune can pickle it into the experiment state."""

    def __init__(self, spec) -> None:
        self.spec = spec

    def __call__(self, trial) -> str:
        index = trial.trial_id.rsplit("_", 1)[-1]
        name = self.spec.trial_name(trial.config)
        return f"t{index}-{name}" if name else f"t{index}"


def _trainable(spec, latencies: dict[str, dict[str, float]]):
    """The trial function with its resources and the sweep's measured latencies (which it
    reports instead of timing itself beside other trials)."""
    from ray import tune

    from skelray.sweep.tune_builders import trial_resources
    from skelray.train.trial import tune_trainable

    return tune.with_resources(tune.with_parameters(tune_trainable, latencies=latencies), trial_resources(spec))


def _tuner(spec, sweep: Location, run: str, *, num_samples: int | None = None, seed_offset: int = 0,
           console: Console, plan: CostPlan | None = None):
    from ray import tune

    from skelray.sweep.live import LiveView
    from skelray.sweep.tracking import wandb_callback
    from skelray.sweep.tune_builders import (
        build_param_space,
        build_stopper,
        build_tune_config,
    )

    tune_config = build_tune_config(spec, num_samples=num_samples, seed_offset=seed_offset)
    if plan is not None and plan.points is not None:
        # Constraints dropped configs: Tune runs the rest, an explicit list, instead of the search.
        from ray.tune.search import BasicVariantGenerator

        tune_config.search_alg = BasicVariantGenerator(points_to_evaluate=[dict(p) for p in plan.points],
                                                       max_concurrent=spec.max_concurrent or 0)
        tune_config.num_samples = len(plan.points)
    # A finished trial's worker process takes the next trial: torch and skelray are imported
    # once per worker instead of once per trial.
    tune_config.reuse_actors = True
    tune_config.trial_dirname_creator = _TrialNamer(spec)
    tune_config.trial_name_creator = _TrialNamer(spec)
    callbacks = [LiveView(spec.name, spec.metric, spec.mode, console)]
    wb = wandb_callback(spec, sweep)
    if wb is not None:
        callbacks.append(wb)
    run_config = tune.RunConfig(
        name=run,
        storage_path=spec_storage_uri(sweep),
        # Scope all judges a trial by its best epoch, so the best checkpoints are kept; any other
        # scope by its last ones, so the most recent are kept.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.checkpoint.keep,
                                                checkpoint_score_attribute=spec.metric if spec.scope == "all" else None,
                                                checkpoint_score_order=spec.mode),
        failure_config=tune.FailureConfig(max_failures=spec.failure.max_retries),
        stop=build_stopper(spec),
        callbacks=callbacks,
        verbose=0,
    )
    trainable = _trainable(spec, plan.latencies if plan is not None else {})
    param_space = build_param_space(spec, seed_offset=seed_offset)
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


def spec_storage_uri(sweep: Location) -> str:
    from pyarrow.fs import LocalFileSystem

    if isinstance(sweep.fs, LocalFileSystem):
        return sweep.path
    return f"{sweep.fs.type_name}://{sweep.path}"


def _finish(spec, sweep: Location, runs: list[str], console: Console) -> SweepOutcome:
    from skelray.train.data import shutdown_caches

    shutdown_caches()
    trials, _ = collect(spec_storage_uri(sweep), metric=spec.metric, mode=spec.mode, scope=spec.scope)
    write_sweep_state(sweep, _state(spec, runs, finished=True))
    errored = sum(1 for s in trials.column("status").to_pylist() if s == "ERROR") if trials.num_rows else 0
    console.print(f"sweep [bold]{spec.name}[/]: {trials.num_rows} trials, {errored} errored; "
                  f"results in {spec_storage_uri(sweep)}")
    return SweepOutcome(spec_storage_uri(sweep), trials, errored, spec.mode)


def _check_cluster(spec) -> None:
    import ray

    from skelray.sweep.spec import check_resources

    check_resources(spec, ray.nodes())


def run_sweep(spec, *, address: str | None = None, storage: str | None = None,
              console: Console | None = None) -> SweepOutcome:
    """Run a new sweep to completion and write its results store."""
    console = console or make_console()
    root = storage or spec.storage or default_storage()
    sweep = Location.parse(root).join(spec.name)
    if sweep.join(SWEEP_STATE_FILE).exists() or sweep.join("run-0").exists():
        raise ConfigError(f"a sweep named '{spec.name}' already exists at {spec_storage_uri(sweep)}",
                          where="name", fix="resume it with `skelray sweep resume DIR` (add `--more N` to extend it), "
                          "or choose another name or --storage")
    started = start_ray(address)
    try:
        _check_cluster(spec)
        # Costs first (nothing trains yet): a sweep whose every config breaks its constraints
        # stops here, leaving only costs.json, so it can be rerun at once.
        plan = plan_run(spec, sweep, console=console)
        sweep.join(SPEC_FILE).write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
        write_sweep_state(sweep, _state(spec, ["run-0"], finished=False))
        _tuner(spec, sweep, "run-0", console=console, plan=plan).fit()
        measure_after_run(spec, sweep, console=console)
        return _finish(spec, sweep, ["run-0"], console)
    finally:
        if started:
            import ray

            ray.shutdown()


def load_sweep_dir(sweep_dir: str):
    """The spec a sweep folder was run with."""
    from skelray.sweep.spec import load_sweep

    sweep = Location.parse(sweep_dir)
    if not sweep.join(SPEC_FILE).exists():
        raise ConfigError(f"{sweep_dir} is not a skelray sweep folder (no {SPEC_FILE})",
                          fix="pass the folder `skelray sweep run` printed, e.g. runs/<name>")
    return sweep, load_sweep(yaml.safe_load(sweep.join(SPEC_FILE).read_text()))


def resume_sweep(sweep_dir: str, *, address: str | None = None, more: int = 0,
                 console: Console | None = None) -> SweepOutcome:
    """Finish an interrupted sweep without re-running finished trials; then, with ``more``,
    add that many samples as a new run (Tune itself cannot grow a finished experiment)."""
    from ray import tune

    console = console or make_console()
    sweep, spec = load_sweep_dir(sweep_dir)
    state = sweep_state(sweep)
    runs = list(state.runs)
    started = start_ray(address)
    try:
        _check_cluster(spec)
        last = sweep.join(runs[-1])
        if not state.finished and tune.Tuner.can_restore(spec_storage_uri(last)):
            from skelray.sweep.tracking import prepare_env

            prepare_env(spec)
            console.print(f"resuming {runs[-1]} of sweep {spec.name}")
            tuner = tune.Tuner.restore(spec_storage_uri(last), trainable=_trainable(
                spec, trial_latencies(load_costs(sweep))), resume_unfinished=True, resume_errored=True)
            tuner.fit()
        elif not state.finished:
            # The driver stopped after recording the run but before Tune saved any state of it,
            # so no trial of it can have finished: run it again rather than call it done.
            runs = _rerun_unsaved(spec, sweep, runs, console)
        if more > 0:
            run = f"run-{len(runs)}"
            runs.append(run)
            write_sweep_state(sweep, _state(spec, runs, finished=False))
            console.print(f"adding {more} samples to sweep {spec.name} as {run}")
            more_spec, samples, offset = _more_spec(spec, more, len(runs) - 1)
            plan = plan_run(more_spec, sweep, console=console, num_samples=samples, seed_offset=offset)
            _tuner(more_spec, sweep, run, num_samples=samples, seed_offset=offset, console=console,
                   plan=plan).fit()
        measure_after_run(spec, sweep, console=console)
        return _finish(spec, sweep, runs, console)
    finally:
        if started:
            import ray

            ray.shutdown()


def _rerun_unsaved(spec, sweep: Location, runs: list[str], console: Console) -> list[str]:
    """Start again the last run, which Tune saved nothing of; the runs the sweep now has. A
    first run starts over as `sweep run` would; a `--more` run (whose size the sweep does not
    record) is dropped, its folder left as it is, and is added again with `--more N`."""
    run = runs[-1]
    if run != "run-0":
        console.print(f"[yellow]{run} of sweep {spec.name} stopped before Tune saved any state of it: "
                      f"it is dropped (its folder is kept); add its samples again with --more N[/]")
        runs = runs[:-1]
        write_sweep_state(sweep, _state(spec, runs, finished=False))
        return runs
    console.print(f"{run} of sweep {spec.name} stopped before Tune saved any state of it: starting it again")
    plan = plan_run(spec, sweep, console=console)
    _tuner(spec, sweep, run, console=console, plan=plan).fit()
    return runs


def _more_spec(spec, more: int, run_index: int):
    """The spec, sample count and seed offset of the ``run_index``-th ``--more`` run.

    Random and Optuna searchers draw ``more`` new points, their seeds moved so they do not
    repeat earlier draws. A grid has nothing new to draw, so ``more`` replicates it with new
    training seeds: ``--more 2`` on a 4-point grid adds 8 trials, seeds ``1000k`` and ``1000k+1``.
    """
    from skelray.sweep.leaves import Grid

    if spec.searcher_type == "grid" and "train.seed" not in spec.search:
        base = spec.train.seed + 1000 * run_index
        search = {**spec.search, "train.seed": Grid(tuple(range(base, base + more)))}
        return spec.model_copy(update={"search": search, "num_samples": 1}), 1, 0
    return spec, more, 1000 * run_index
