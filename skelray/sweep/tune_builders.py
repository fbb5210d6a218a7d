"""The Ray Tune objects a sweep needs: param space, searcher, scheduler, TuneConfig, per-trial
resources. The top of the Tune side: it reads the ``SweepSpec`` and hands its leaves and base
config down to ``space`` (which asks each leaf for its Tune domain or Optuna suggestion).

Metric and mode go to ``TuneConfig`` only, and schedulers get them from there: Ray refuses a
scheduler that was given its own metric/mode when TuneConfig has them too. The one exception
is Optuna with a define-by-run space, which never receives TuneConfig's values and so is
given them directly (Ray allows that for searchers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ray import tune
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
    TrialScheduler,
)
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, SearchAlgorithm, Searcher

from skelray.sweep._tree import get_path, set_path
from skelray.sweep.leaves import Leaf
from skelray.sweep.space import OptunaSpace, param_space

if TYPE_CHECKING:
    from skelray.sweep.spec import SweepSpec

TIME_ATTR = "training_iteration"  # the trial reports once per epoch, so iterations are epochs

__all__ = ["TIME_ATTR", "TargetStopper", "build_param_space", "build_scheduler", "build_search_alg",
           "build_stopper", "build_tune_config", "trial_resources"]


def build_param_space(spec: SweepSpec, seed_offset: int = 0) -> dict[str, Any]:
    """``Tuner(param_space=...)``: the full trial config with Tune domains at searched paths.

    With the optuna searcher the space lives in the searcher (``build_search_alg``), so this
    holds constants only: Tune refuses domains in both places. ``seed_offset`` moves
    ``train.seed`` so extra samples of a resumed sweep do not repeat earlier seeds.
    """
    search, base = _seeded(spec, seed_offset)
    return base if spec.searcher_type == "optuna" else param_space(search, base)


def _seeded(spec: SweepSpec, offset: int) -> tuple[dict[str, Leaf], dict[str, Any]]:
    """The search leaves (the replicate grids of ``seeds`` and folds included) and base config
    with ``train.seed`` moved by ``offset``."""
    base = spec.base_config()
    base["train"]["seed"] += offset
    search = spec.expanded_search()
    if "train.seed" in search:
        search["train.seed"] = search["train.seed"].shifted(offset)
    return search, base


def build_search_alg(spec: SweepSpec, seed_offset: int = 0) -> Searcher | SearchAlgorithm | None:
    """None (Tune's default grid expansion), a seeded BasicVariantGenerator, or OptunaSearch (TPE).

    ``max_concurrent`` is applied here: BasicVariantGenerator takes it directly, a Searcher
    is wrapped in a ConcurrencyLimiter.
    """
    kind, seed = spec.searcher_type, spec.searcher.seed + seed_offset
    limit = spec.max_concurrent
    if kind == "grid":
        return BasicVariantGenerator(max_concurrent=limit) if limit else None
    if kind == "random":
        # With seeds or folds, the replicates of a sample must share its random values: Tune
        # otherwise draws them anew for every grid point.
        return BasicVariantGenerator(random_state=seed, max_concurrent=limit or 0,
                                     constant_grid_search=bool(spec.replicate_leaves()))
    from ray.tune.search.optuna import OptunaSearch

    searcher: Searcher = OptunaSearch(space=OptunaSpace(*_seeded(spec, seed_offset)), metric=spec.metric,
                                      mode=spec.mode, seed=seed)
    return ConcurrencyLimiter(searcher, max_concurrent=limit) if limit else searcher


def _max_epochs(spec: SweepSpec) -> int:
    """The longest a trial can run: train.epochs, or the largest searched value of it."""
    leaf = spec.search.get("train.epochs")
    if leaf is None:
        return spec.train.epochs
    points = [int(v) for v in leaf.sample_points() if isinstance(v, (int, float))]
    return max([spec.train.epochs, *points])


def build_scheduler(spec: SweepSpec) -> TrialScheduler:
    """The scheduler for ``spec.scheduler``, counting time in epochs; metric/mode come from TuneConfig."""
    s = spec.scheduler
    if s.type == "asha":
        return ASHAScheduler(time_attr=TIME_ATTR, max_t=s.max_t or _max_epochs(spec),
                             grace_period=s.grace_period or 1,
                             reduction_factor=s.reduction_factor or 3, brackets=s.brackets or 1)
    if s.type == "hyperband":
        return HyperBandScheduler(time_attr=TIME_ATTR, max_t=s.max_t or _max_epochs(spec),
                                  reduction_factor=s.reduction_factor or 3)
    if s.type == "median":
        return MedianStoppingRule(time_attr=TIME_ATTR, grace_period=s.grace_period or 1,
                                  min_samples_required=s.min_samples_required or 3)
    if s.type == "pbt":
        return PopulationBasedTraining(
            time_attr=TIME_ATTR, perturbation_interval=s.perturbation_interval or 1,
            burn_in_period=s.burn_in_period or 0, hyperparam_mutations=pbt_mutations(spec),
            quantile_fraction=s.quantile_fraction or 0.25,
            resample_probability=s.resample_probability if s.resample_probability is not None else 0.25)
    return FIFOScheduler()


def pbt_mutations(spec: SweepSpec) -> dict[str, Any]:
    """PBT's nested ``hyperparam_mutations``: each leaf's ``pbt_mutation`` (a list PBT steps
    through for grid/choice, else a Tune domain PBT resamples or scales by 0.8/1.2)."""
    out: dict[str, Any] = {}
    base = spec.base_config()
    for path, leaf in (spec.scheduler.hyperparam_mutations or {}).items():
        set_path(out, path, leaf.pbt_mutation(path, get_path(base, path, None)))
    return out


def build_tune_config(spec: SweepSpec, num_samples: int | None = None,
                      seed_offset: int = 0) -> tune.TuneConfig:
    """``TuneConfig`` with metric/mode, searcher, scheduler and the number of samples.

    ``num_samples`` overrides the spec (``sweep resume --more N``); ``seed_offset`` moves the
    searcher seed so those extra samples differ from the first run's.
    """
    return tune.TuneConfig(
        metric=spec.metric, mode=spec.mode,
        search_alg=build_search_alg(spec, seed_offset), scheduler=build_scheduler(spec),
        num_samples=num_samples or spec.samples,
    )


class TargetStopper(tune.Stopper):
    """Ends the whole sweep once any trial reports ``metric`` at or past ``target`` (W&B's
    ``metric.target``): running trials stop after that epoch and pending ones never start."""

    def __init__(self, metric: str, mode: str, target: float) -> None:
        self.metric, self.mode, self.target = metric, mode, target
        self.reached_by: str | None = None

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        value = result.get(self.metric)
        if self.reached_by is None and isinstance(value, (int, float)) and (
                value >= self.target if self.mode == "max" else value <= self.target):
            self.reached_by = trial_id
        return False

    def stop_all(self) -> bool:
        return self.reached_by is not None


def build_stopper(spec: SweepSpec) -> TargetStopper | None:
    return TargetStopper(spec.metric, spec.mode, spec.target) if spec.target is not None else None


def trial_resources(spec: SweepSpec) -> dict[str, float]:
    """For ``tune.with_resources``: CPUs and GPUs (fractions allowed) of one trial."""
    return {"cpu": float(spec.resources.cpu), "gpu": float(spec.resources.gpu)}
