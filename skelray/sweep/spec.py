"""The sweep specification: the Tune-side sections of a sweep YAML, and ``load_sweep``.

A minimal sweep is ``name``, ``data`` and ``model``; everything else has a default. The full
format, section by section, is the field list below (one comment per field says what it does);
``sweeps/README.md`` is the overview, ``sweeps/*.yaml`` are worked examples, ``leaves.py``
documents the ``search:`` leaves and ``wandb_format.py`` the W&B sweep files.

Strings may use ``${ENV}`` or ``${ENV:-default}``; an unset variable is an error naming the key,
so ``data: {path: ${SKELRAY_UCLA}}`` makes the data folder a run-time argument (the CLI's
``--data PATH`` overrides ``data.path`` instead).

``load_sweep`` is the top of the loading side and calls each step once, downwards: ``_source``
(read, overrides, env), ``wandb_format`` (convert a W&B file), ``leaves.parse_search`` (the
search leaves), pydantic (the sections), ``_validate.check_spec`` (every cross-field check).
None of those calls back into this module: the checks read the spec's fields only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from skelray.config import DataSpec, ModelSpec, Problems, TrainSpec, TrialConfig, pydantic_problems
from skelray.config import Section as _Section
from skelray.config.trial import FoldSpec
from skelray.sweep import _source, _validate
from skelray.sweep._naming import trial_name as trial_name_from
from skelray.sweep._tree import with_values
from skelray.sweep._validate import check_resources  # noqa: F401  (re-exported: the runner imports it here)
from skelray.sweep.leaves import Grid, Leaf, grid_trials, parse_search
from skelray.sweep.wandb_format import convert_wandb, is_wandb_format


class SearcherSpec(_Section):
    type: Literal["grid", "random", "optuna"] | None = None  # None: grid if every leaf is grid/dependent
    seed: int = 0


class SchedulerSpec(_Section):
    """Early stopping; ``time_attr`` is always training_iteration (= epochs)."""

    type: Literal["fifo", "asha", "hyperband", "pbt", "median"] = "fifo"
    grace_period: int | None = Field(None, ge=1)  # asha, median: epochs before a trial may stop
    max_t: int | None = Field(None, ge=1)  # asha, hyperband: epochs a trial may run; None = train.epochs
    reduction_factor: float | None = Field(None, gt=1)  # asha, hyperband (default 3)
    brackets: int | None = Field(None, ge=1)  # asha (default 1)
    perturbation_interval: int | None = Field(None, ge=1)  # pbt: epochs between exploit/explore (default 1)
    burn_in_period: int | None = Field(None, ge=0)  # pbt
    quantile_fraction: float | None = Field(None, gt=0, le=0.5)  # pbt (default 0.25)
    resample_probability: float | None = Field(None, ge=0, le=1)  # pbt (default 0.25)
    hyperparam_mutations: dict[str, Leaf] | None = None  # pbt: config path -> leaf (choice/ranges)
    min_samples_required: int | None = Field(None, ge=1)  # median (default 3)

    @field_validator("hyperparam_mutations", mode="before")
    @classmethod
    def _mutations(cls, v: Any) -> Any:
        return _leaves_or_raise(v, "scheduler.hyperparam_mutations")


class ResourcesSpec(_Section):
    cpu: float = Field(1.0, gt=0)  # CPUs per trial (fractions let trials share cores)
    gpu: float = Field(0.0, ge=0)  # GPUs per trial: a fraction below 1 or a whole number


class FailureSpec(_Section):
    max_retries: int = Field(0, ge=-1)  # restarts of a failed trial from its checkpoint; -1 = forever


class CheckpointSpec(_Section):
    keep: int | None = Field(2, ge=1)  # best checkpoints kept per trial (by metric); None = all


class WandbSpec(_Section):
    project: str = "skelray"
    entity: str | None = None
    group: str | None = None  # None = the sweep name
    # None: online when WANDB_API_KEY is set, else offline (no key needed; `wandb sync` later)
    mode: Literal["online", "offline", "disabled"] | None = None


class SweepSpec(_Section):
    """A validated sweep; what the runner, the CLI and the results code pass around."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # also the experiment folder name
    description: str = ""
    data: DataSpec
    model: ModelSpec
    train: TrainSpec = Field(default_factory=TrainSpec)
    search: dict[str, Leaf] = Field(default_factory=dict)  # config path -> leaf (see leaves.py)
    searcher: SearcherSpec = Field(default_factory=SearcherSpec)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    metric: str = "val/top1"  # a key the trial reports every epoch
    mode: Literal["max", "min"] = "max"
    # Which epochs judge a trial (Ray Tune's scope): all = its best epoch, whose checkpoint is
    # the one ensembled and exported; last = its last epoch; avg / last-N-avg = the mean metric
    # of all / its last N epochs. With last and the averages the last checkpoint is the one
    # used: right for schedules that anneal the learning rate to zero.
    scope: str = "all"
    target: float | None = None  # stop the whole sweep once a trial's metric reaches this (W&B metric.target)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    max_concurrent: int | None = Field(None, ge=1)  # trials at once; None = as many as resources allow
    num_samples: int | None = Field(None, ge=1)  # None: 1 for grid, 10 for random/optuna
    # Run every config with N training seeds (train.seed + 0..N-1): a grid over train.seed,
    # combined with the search like any grid. With data.split.val: {folds: K} each seed runs
    # every fold. None: one seed.
    seeds: int | None = Field(None, ge=1)
    failure: FailureSpec = Field(default_factory=FailureSpec)
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    storage: str | None = None  # local folder or pyarrow URI (s3://bucket/x, gs://...); None: runner default
    wandb: WandbSpec = Field(default_factory=WandbSpec)  # mode: disabled turns W&B off
    # Bounds on the inference cost, e.g. ["latency_ms_b1 <= 20", "params <= 1e6"] (keys params,
    # macs, latency_ms_bN for N in train.latency_batches): grid and random configs that cannot
    # fit are dropped before any trains (skelray.sweep.costs).
    constraints: list[Any] = Field(default_factory=list)

    @field_validator("scope")
    @classmethod
    def _scope(cls, v: str) -> str:
        if not re.fullmatch(r"all|last|avg|last-[1-9][0-9]*-avg", v):
            raise ValueError("scope must be all, last, avg or last-N-avg (N a whole number >= 1, e.g. last-5-avg)")
        return v

    @field_validator("search", mode="before")
    @classmethod
    def _search(cls, v: Any) -> Any:
        return _leaves_or_raise(v, "search")

    # -- derived settings --------------------------------------------------------------------
    @property
    def searcher_type(self) -> str:
        if self.searcher.type:
            return self.searcher.type
        return "grid" if all(not leaf.is_random for leaf in self.search.values()) else "random"

    @property
    def samples(self) -> int:
        if self.num_samples is not None:
            return self.num_samples
        return 1 if self.searcher_type == "grid" else 10

    def storage_uri(self) -> str | None:
        """``storage`` as Ray wants it: URIs unchanged, local paths absolute (None if unset)."""
        if self.storage is None or "://" in self.storage:
            return self.storage
        return str(Path(self.storage).expanduser().resolve())

    # -- replicates: seeds and folds -----------------------------------------------------------
    def replicate_leaves(self) -> dict[str, Leaf]:
        """The grids the sweep adds to ``search`` so every config runs as several trials:
        ``data.split.fold`` over 0..K-1 for ``data.split.val: {folds: K}``, and ``train.seed``
        over ``train.seed + 0..seeds-1``. A path the search already sets is left to it (a
        grid sweep's ``--more`` searches train.seed itself)."""
        out: dict[str, Leaf] = {}
        val = self.data.split.val
        if isinstance(val, FoldSpec) and "data.split.fold" not in self.search:
            out["data.split.fold"] = Grid(tuple(range(val.folds)))
        if self.seeds and "train.seed" not in self.search:
            out["train.seed"] = Grid(tuple(range(self.train.seed, self.train.seed + self.seeds)))
        return out

    def expanded_search(self) -> dict[str, Leaf]:
        """``search`` with the replicate grids after it: what Tune expands and names trials by."""
        return {**self.search, **self.replicate_leaves()}

    # -- trial configs -----------------------------------------------------------------------
    def base_config(self) -> dict[str, Any]:
        """The unsearched trial config (data/model/train) as plain, JSON-friendly dicts."""
        return {k: getattr(self, k).model_dump(mode="json") for k in TrialConfig.model_fields}

    def merged_config(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Base config with ``overrides`` applied: a nested config (as Tune gives a trial) or
        ``{"model.kwargs.pa_count": 3}``; mapping values merge into the sub-tree they replace.
        Keys beside data/model/train (the runner may add e.g. wandb) are not ours and left out."""
        return with_values(self.base_config(), overrides or {})

    def trial_config(self, overrides: Mapping[str, Any] | None = None) -> TrialConfig:
        """The typed data/model/train view of one trial; errors name the config path."""
        return TrialConfig.from_tune(self.merged_config(overrides))

    def trial_name(self, config: Mapping[str, Any]) -> str:
        """Readable, deterministic, file-name-safe name from the searched values of ``config``."""
        return trial_name_from(self.expanded_search(), self.base_config(), config)


def trial_name(config: Mapping[str, Any], spec: SweepSpec | None = None) -> str:
    """A trial's name. With ``spec``: from its searched paths (pass Tune's ``trial.config``).
    Without: every key of a flat overrides dict such as Tune's ``trial.evaluated_params``
    (``{"model/kwargs/pa_count": 3}``) or ``{"model.kwargs.pa_count": 3}``."""
    if spec is not None:
        return spec.trial_name(config)
    flat = {str(k).replace("/", "."): v for k, v in config.items()}
    if set(flat) >= set(TrialConfig.model_fields):
        raise ValueError("trial_name got a whole trial config without its spec; pass spec=, or "
                         "the searched values only (trial.evaluated_params)")
    return trial_name_from(dict.fromkeys(flat, Grid((None,))), {}, flat)


def grid_size(spec: SweepSpec) -> int:
    """Trials one sample expands to: the product of the grid leaves' lengths, the replicate
    grids (seeds, folds) included."""
    return grid_trials(spec.expanded_search().values())


def count_trials(spec: SweepSpec, num_samples: int | None = None) -> int:
    """How many trials Tune will start (grid product times samples)."""
    return grid_size(spec) * (num_samples or spec.samples)


def _leaves_or_raise(v: Any, where: str) -> Any:
    if v is None or (isinstance(v, Mapping) and all(isinstance(x, Leaf) for x in v.values())):
        return v
    problems = Problems(source=where)
    leaves = parse_search(v, problems, where=where)
    if problems:
        raise ValueError("; ".join(str(p) for p in problems.items))
    return leaves


def load_sweep(source: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | None = None, *,
               check_paths: bool = True, env: Mapping[str, str] | None = None) -> SweepSpec:
    """Read, check and type a sweep: a YAML file path, YAML text or an already-parsed dict.

    W&B sweep files (top-level ``method`` and ``parameters``) are converted first. ``overrides``
    maps dotted paths to values (``{"data.path": "/data/ucla", "train.epochs": 1}``) and wins over
    the file. Every problem found is reported at once in one ``ConfigError``, each with its YAML
    path and a fix. ``check_paths=False`` skips the data-path existence check (for a driver
    that cannot see the workers' disks).
    """
    raw, name, lines, _ = _source.read_source(source)
    problems = Problems(source=name, lines=lines)
    if is_wandb_format(raw):
        raw = convert_wandb(raw, problems, default_name=_default_name(source))
        problems.raise_if_any()
    raw = _source.apply_overrides(raw, overrides)
    raw = _source.interpolate_env(raw, problems, env)
    search = parse_search(raw.pop("search", None), problems)
    try:
        spec = SweepSpec.model_validate({**raw, "search": search})
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, SweepSpec))
        problems.raise_if_any()
        raise  # pragma: no cover
    problems.extend(_validate.check_spec(spec, check_paths=check_paths))
    problems.raise_if_any()
    return spec


def _default_name(source: Any) -> str:
    if isinstance(source, (str, Path)) and str(source).endswith((".yaml", ".yml")):
        return Path(str(source)).stem
    return "wandb-sweep"
