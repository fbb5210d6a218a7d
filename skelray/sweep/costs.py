"""Inference cost measured once per architecture, where nothing else runs; and the sweep's
``constraints`` on it.

A latency timed by each trial while other trials train beside it is noise: identical networks
came out several-fold apart. So trials only record the *structure key* of their inference form
(``skelray.train.measure.structure_key``) with its params and MACs (exact), and each distinct
key is timed once, by a Ray task that reserves every CPU of one node (and a GPU when trials use
GPUs), so no trial trains beside it, under the rule of ``skelray.train.measure`` (blocks of
calls until the last 3 block medians lie within 5%, at most 10 s per batch size).

When: structures known from a config alone (dense models, element or kernel sparsity) before
the Tune run starts, the runner building each distinct config's model once on the driver
(``plan_run``); structures known only after training (channel / CTF compaction, or any key
the plan did not foresee: random and Optuna searches) after the run, from the keys the trials'
chosen checkpoints recorded (``measure_after_run``). Either way no trial is running.

Where: ``<sweep>/costs.json`` (``skelray.record.COSTS_FILE``, a ``CostTable``: what the trials
table, the leaderboard, the plots, ``ensemble build --budget-ms`` and the export manifest read)
and a per-machine-type cache reused across sweeps, ``~/.cache/skelray/costs.json`` or the file
``SKELRAY_COST_CACHE`` names, keyed by the machine type (CPU model and cores, or GPU name;
torch version; thread count). The cache is read and written on the measuring node itself.

Constraints (``constraints: ["latency_ms_b1 <= 20", "params <= 1e6"]``): keys ``params``,
``macs`` and ``latency_ms_bN`` for N in ``train.latency_batches``; operators <=, <, >=, >.
Grid and random searches have their configs drawn before the run (a random search with
constraints draws its ``num_samples`` configs here, with the searcher's seed, instead of in
Tune); each is keyed and measured, the violators are dropped before any trial trains, and Tune
runs the rest as an explicit list (so a random search may run fewer than ``num_samples``). A config whose
structure is only known after training (channel / CTF sparsity) cannot be judged before; it
runs, and the runner names it after the run if its compacted form violates a constraint.
Optuna proposes configs while it runs, so it cannot be given constraints (a validation error).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skelray import record
from skelray.config import TrialConfig
from skelray.errors import ConfigError
from skelray.record import COSTS_FILE, BatchTiming, CostRecord, CostTable
from skelray.sweep._validate import Constraint, known_before_training, parse_constraint
from skelray.sweep.results import load_costs

__all__ = ["CACHE_ENV", "Constraint", "known_before_training", "load_costs", "measure_after_run",
           "parse_constraint", "parse_constraints", "plan_run", "preview", "violations"]

if TYPE_CHECKING:
    from torch import nn

    from skelray.sweep.results import Location
    from skelray.sweep.spec import SweepSpec

CACHE_ENV = "SKELRAY_COST_CACHE"  # the machine cache file; default ~/.cache/skelray/costs.json
THREADS = 1  # torch threads of a timed forward pass: what a serving replica uses (1 CPU, 1 thread)
LATENCY_BASIS = "measured alone, once per architecture"  # what the trials table says of its latency


# -- constraints (parsed by ``_validate.parse_constraint``, the one reading of the syntax) -------------
def parse_constraints(texts: list[str], latency_batches: list[int] | tuple[int, ...]) -> list[Constraint]:
    out = []
    for i, text in enumerate(texts):
        parsed = parse_constraint(text, latency_batches)
        if not isinstance(parsed, Constraint):
            raise ConfigError(parsed[0], where=f"constraints[{i}]", fix=parsed[1])
        out.append(parsed)
    return out


def violations(constraints: list[Constraint], sizes: Mapping[str, Any]) -> list[str]:
    """``"latency_ms_b1 31.2 > 20"`` for each constraint ``sizes`` breaks (unknown values pass)."""
    out = []
    for c in constraints:
        value = sizes.get(c.key)
        if c.holds(value) is False:
            out.append(f"{c.key} {float(value):.4g} breaks {c.op} {c.limit:g}")
    return out


# -- the structures of a sweep's configs ---------------------------------------------------------
@dataclass
class DataFacts:
    """What shapes a model, of one dataset (``build_model`` reads these like a DataBundle's)."""

    num_classes: int
    layout: str
    in_channels: int
    num_joints: int


_facts: dict[str, DataFacts] = {}


def data_facts(data) -> DataFacts:
    """Class count, layout, channels and joints of a data spec: from a store's metadata, else by
    reading the data once (synthetic data is made in a moment). Remembered per data key."""
    from skelray.data.layouts import get_layout
    from skelray.train.data import data_key, load_splits

    key = data_key(data)
    if key not in _facts:
        if data.format == "store":
            from skelray.data.store import open_store

            store = open_store(data.path)
            shapes = store.shapes
            facts = DataFacts(store.num_classes, store.layout, int(shapes[0, 3]), int(shapes[0, 2]))
        else:
            bundle = load_splits(data)
            clip = bundle.splits["train"].clips[0]
            facts = DataFacts(bundle.num_classes, bundle.layout, bundle.in_channels, int(clip.shape[2]))
        if not facts.num_joints:
            facts.num_joints = get_layout(facts.layout).num_joints
        _facts[key] = facts
    return _facts[key]


@dataclass
class Structure:
    """One config's inference form, as the driver builds it before training."""

    key: str
    sizes: dict[str, Any]  # params, macs, structure
    sample_shape: tuple[int, ...]
    module: Any  # the inference form (an nn.Module), to be timed
    known: bool  # False: training compacts it, so this is the uncompacted form


def structural_id(cfg: TrialConfig) -> str:
    """Configs with the same id build the same model: the model section, frames, persons, data."""
    from skelray.train.data import data_key

    return json.dumps([cfg.model.model_dump(mode="json"), cfg.data.frames, cfg.data.persons,
                       data_key(cfg.data)], sort_keys=True, default=str)


def build_structure(cfg: TrialConfig) -> Structure:
    """Build ``cfg``'s model on the driver (CPU) as its trial will, and key its inference form."""
    import torch

    from skelray.models import inference_form
    from skelray.train.measure import sizes
    from skelray.train.trial import _sparsity_hooks, build_model

    facts = data_facts(cfg.data)
    torch.manual_seed(0)
    model, _ = _sparsity_hooks(build_model(cfg, facts), cfg.model.sparsity)
    shape = (cfg.data.persons, cfg.data.frames, facts.num_joints, facts.in_channels)
    got = sizes(model, shape)
    return Structure(got[record.STRUCTURE], got, shape, inference_form(model).eval(), known_before_training(cfg))


def planned_configs(spec: SweepSpec, *, num_samples: int | None = None, seed_offset: int = 0
                    ) -> list[dict[str, Any]] | None:
    """Every trial config a grid or random search will run, in Tune's order (a random search's
    draws made here with the searcher's seed); None for Optuna, which proposes them as it runs."""
    if spec.searcher_type == "optuna":
        return None
    import numpy as np
    from ray.tune.search.variant_generator import generate_variants

    from skelray.sweep.tune_builders import build_param_space

    space = build_param_space(spec, seed_offset=seed_offset)
    rng = np.random.default_rng(spec.searcher.seed + seed_offset) if spec.searcher_type == "random" else None
    out = []
    for _ in range(num_samples or spec.samples):
        # The config is the root, as Tune resolves it: computed leaves read config paths.
        for _, variant in generate_variants(space, random_state=rng):
            out.append(variant)
    return out


def search_point(spec: SweepSpec, config: Mapping[str, Any]) -> dict[str, Any]:
    """The searched values of a planned config (what Tune's ``points_to_evaluate`` takes); the
    computed ones Tune computes again, the same way."""
    from skelray.sweep._tree import get_path, set_path

    point: dict[str, Any] = {}
    for path, leaf in spec.search.items():
        if not leaf.is_dependent:
            set_path(point, path, get_path(config, path, None))
    return point


# -- measuring ---------------------------------------------------------------------------------------
def machine_key(device: str, threads: int = THREADS) -> str:
    """The machine type a latency belongs to: CPU model and core count (or GPU name), torch
    version, torch threads."""
    import platform

    import torch

    if device.startswith("cuda"):
        hw = f"gpu={torch.cuda.get_device_name(0)};cuda={torch.version.cuda}"
    else:
        model = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        hw = f"cpu={model};cores={os.cpu_count()}"
    return f"{hw};torch={torch.__version__};threads={threads}"


def machine_cache_path() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "skelray" / COSTS_FILE).expanduser()


def _read_machine_cache(path: Path) -> dict[str, CostTable]:
    if not path.is_file():
        return {}
    try:
        return record.machine_costs_from_text(path.read_text(), str(path))
    except (OSError, record.DataError):
        return {}  # a damaged cache is measured again, not trusted


@dataclass
class Job:
    """One structure to time: its inference form and sizes, and the batch sizes still missing."""

    key: str
    module: Any
    sample_shape: tuple[int, ...]
    params: float
    macs: float
    batches: list[int]


@dataclass
class Measured:
    records: dict[str, CostRecord]
    measured: list[str] = field(default_factory=list)  # keys timed now (the rest came from the machine cache)
    machine: str = ""


def measure_jobs(jobs: list[Job], *, device: str, cache_path: str | None, threads: int = THREADS,
                 max_seconds: float | None = None) -> Measured:
    """Time every job here (what the node's task runs), reading and updating the machine cache."""
    import torch

    from skelray.train.measure import MAX_SECONDS, time_forward

    torch.set_num_threads(threads)
    machine = machine_key(device, threads)
    path = machine_cache_path() if cache_path == "" else Path(cache_path) if cache_path else None
    cache = _read_machine_cache(path) if path else {}
    table = cache.setdefault(machine, CostTable())
    out = Measured({}, machine=machine)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    for job in jobs:
        rec = table.entries.get(job.key)
        need = [b for b in job.batches if rec is None or b not in rec.latency]
        if rec is None:
            rec = CostRecord(structure=job.key, params=job.params, macs=job.macs,
                             input_shape=list(job.sample_shape), device=device, machine=machine,
                             threads=threads, measured_at=now)
        for b in need:
            t = time_forward(job.module, (b, *job.sample_shape), device=device,
                             max_seconds=max_seconds or MAX_SECONDS)
            rec.latency[b] = BatchTiming(t.median_ms, t.spread, t.repeats, t.converged)
        if need:
            rec.measured_at = now
            out.measured.append(job.key)
        table.entries[job.key] = rec
        out.records[job.key] = dataclasses.replace(rec, latency={b: rec.latency[b] for b in job.batches},
                                                   from_machine_cache=not need)
    if path is not None and out.measured:
        try:
            # Read again just before writing: another sweep may have added entries meanwhile.
            latest = _read_machine_cache(path)
            latest.setdefault(machine, CostTable()).entries.update(
                {k: table.entries[k] for k in out.measured})
            record.write_text_atomic(path, record.machine_costs_to_text(latest))
        except OSError:
            pass  # the cache is an optimisation; the sweep's own costs.json is what counts
    return out


def measuring_node(spec: SweepSpec, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """The node that measures: of the live nodes that can hold a trial, the one with the most
    CPUs (ties: the lowest node id), so every measurement of a sweep is on one machine type."""
    fits = [n for n in nodes if n.get("Alive", True)
            and float(n.get("Resources", {}).get("CPU", 0)) >= spec.resources.cpu
            and float(n.get("Resources", {}).get("GPU", 0)) >= (1 if device_of(spec) == "cuda" else 0)]
    if not fits:
        raise ConfigError("no live node can hold a trial, so costs cannot be measured", where="resources",
                          fix="start Ray with enough CPUs/GPUs for one trial")
    return min(fits, key=lambda n: (-float(n["Resources"]["CPU"]), n["NodeID"]))


def device_of(spec: SweepSpec) -> str:
    """Where latency is measured: on a GPU when trials get one (and may use it), else on CPU."""
    return "cuda" if spec.resources.gpu > 0 and spec.train.device != "cpu" else "cpu"


def run_measurement(spec: SweepSpec, jobs: list[Job], *, max_seconds: float | None = None) -> Measured:
    """Time ``jobs`` in one Ray task that holds every CPU of the measuring node (and one GPU on a
    GPU sweep): no trial can train beside it."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = measuring_node(spec, ray.nodes())
    device = device_of(spec)
    task = ray.remote(measure_jobs).options(
        num_cpus=float(node["Resources"]["CPU"]), num_gpus=1 if device == "cuda" else 0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False), max_retries=0)
    # The driver's SKELRAY_COST_CACHE when it sets one; else "" : the node's own default path.
    ref = task.remote(jobs, device=device, cache_path=os.environ.get(CACHE_ENV, ""), max_seconds=max_seconds)
    # Generous: waiting for the node to be free, then up to the time cap per structure and batch size.
    limit = 600 + 4 * MAX_SECONDS_PER_BATCH * sum(len(j.batches) for j in jobs)
    try:
        return ray.get(ref, timeout=limit)
    except ray.exceptions.GetTimeoutError:
        ray.cancel(ref, force=True)
        raise ConfigError(f"measuring {len(jobs)} architecture(s) did not finish within {limit:.0f} s "
                          f"(it waits for all {node['Resources']['CPU']:g} CPUs of node {node['NodeID'][:8]})",
                          where="resources", fix="make sure nothing else holds that node's CPUs (other jobs "
                          "on the cluster), then resume the sweep") from None


MAX_SECONDS_PER_BATCH = 10.0  # skelray.train.measure.MAX_SECONDS, without importing torch here


# -- the sweep's costs.json ------------------------------------------------------------------------------
def save_costs(sweep: Location, table: CostTable) -> None:
    sweep.join(COSTS_FILE).write_text(table.to_text())


def trial_latencies(table: CostTable) -> dict[str, dict[str, float]]:
    """What trials are given: structure key -> ``{latency_ms_bN: ms}``, reported beside their
    own params and MACs (so the live view and a latency metric read the one measurement)."""
    return {k: {record.latency_key(b): t.median_ms for b, t in r.latency.items()} for k, r in table.entries.items()}


def _missing(table: CostTable, key: str, batches: list[int]) -> list[int]:
    rec = table.entries.get(key)
    return [b for b in batches if rec is None or b not in rec.latency]


def ensure_measured(spec: SweepSpec, sweep: Location, structures: Mapping[str, Structure | Job], *,
                    console=None, max_seconds: float | None = None) -> tuple[CostTable, Measured | None]:
    """The sweep's cost table with every key of ``structures`` in it, timing the missing ones
    in one task (``run_measurement``) and saving ``costs.json``."""
    table = load_costs(sweep)
    batches = list(spec.train.latency_batches)
    jobs = []
    for key, s in structures.items():
        need = _missing(table, key, batches)
        if not need:
            continue
        if isinstance(s, Job):
            jobs.append(dataclasses.replace(s, batches=need))
        else:
            jobs.append(Job(key, s.module, s.sample_shape, s.sizes[record.PARAMS], s.sizes[record.MACS], need))
    if not jobs:
        return table, None
    if console is not None:
        console.print(f"measuring the cost of {len(jobs)} architecture(s) alone on one node "
                      f"(batch sizes {batches}) ...")
    got = run_measurement(spec, jobs, max_seconds=max_seconds)
    table = load_costs(sweep)  # unchanged meanwhile unless another driver writes it
    for key, rec in got.records.items():
        old = table.entries.get(key)
        if old is not None:
            rec = dataclasses.replace(rec, latency={**old.latency, **rec.latency})
        table.entries[key] = rec
    save_costs(sweep, table)
    if console is not None:
        reused = len(got.records) - len(got.measured)
        console.print(f"latency {LATENCY_BASIS}: {len(got.measured)} timed now, {reused} from this "
                      f"machine's cache ({got.machine})")
    return table, got


# -- before and after the run ------------------------------------------------------------------------
@dataclass
class CostPlan:
    """What the runner hands Tune: the latencies trials report, and, when constraints dropped
    configs, the explicit list of searched values to run instead of the search."""

    latencies: dict[str, dict[str, float]]
    points: list[dict[str, Any]] | None = None  # None: let Tune expand the search as usual
    dropped: list[tuple[str, list[str]]] = field(default_factory=list)  # (trial name, broken constraints)
    planned: int = 0


def plan_run(spec: SweepSpec, sweep: Location, *, console=None, num_samples: int | None = None,
             seed_offset: int = 0, max_seconds: float | None = None) -> CostPlan:
    """Before the run: key each planned config, measure the structures known from the config
    alone, and drop the configs that break a constraint."""
    constraints = parse_constraints(spec.constraints, spec.train.latency_batches)
    # Grid: every config. Random with constraints: the draws, which Tune then runs as a list.
    # Otherwise (optuna, random without constraints) Tune draws: the base config's structure
    # now (the searched values may not change it), the others after the run.
    configs = planned_configs(spec, num_samples=num_samples, seed_offset=seed_offset)
    if configs is None or (spec.searcher_type != "grid" and not constraints):
        configs = [spec.merged_config()]
    by_id: dict[str, Structure] = {}
    keyed: list[tuple[dict[str, Any], Structure]] = []
    for config in configs:
        cfg = TrialConfig.from_tune(config)
        sid = structural_id(cfg)
        if sid not in by_id:
            by_id[sid] = build_structure(cfg)
        keyed.append((config, by_id[sid]))
    known = {s.key: s for s in by_id.values() if s.known}
    table, _ = ensure_measured(spec, sweep, known, console=console, max_seconds=max_seconds)
    plan = CostPlan(trial_latencies(table), planned=len(keyed))
    if not constraints or spec.searcher_type == "optuna":
        return plan
    if spec.searcher_type == "random":
        plan.points = []  # Tune runs the draws made here, less the dropped ones
    kept = []
    for config, s in keyed:
        costs = {**s.sizes, **(table.entries[s.key].sizes() if s.known and s.key in table.entries else {})}
        # An uncompacted form that fits will fit once compacted; one that does not may, so it runs.
        broken = violations(constraints, costs) if s.known else []
        if broken:
            plan.dropped.append((spec.trial_name(config) or "(base config)", broken))
        else:
            kept.append(config)
    if not kept:
        shown = "; ".join(f"{name}: {', '.join(broken)}" for name, broken in plan.dropped[:5])
        raise ConfigError(f"every one of the {len(keyed)} configs breaks the constraints ({shown})",
                          where="constraints", fix="loosen the constraints or search smaller models")
    if console is not None and plan.dropped:
        console.print(f"constraints: dropped {len(plan.dropped)} of {len(keyed)} configs before training"
                      + "".join(f"\n  {name}: {', '.join(b)}" for name, b in plan.dropped))
    elif console is not None:
        console.print(f"constraints: all {len(keyed)} configs fit")
    if plan.dropped or plan.points is not None:
        plan.points = [search_point(spec, c) for c in kept]
    return plan


def measure_after_run(spec: SweepSpec, sweep: Location, *, console=None,
                      max_seconds: float | None = None) -> CostTable:
    """After the run: time the structures the trials' chosen checkpoints recorded that the
    sweep has no measurement of (compacted models, random and Optuna draws); then name the
    trials whose measured form breaks a constraint."""
    from pyarrow.fs import LocalFileSystem

    from skelray.sweep.results import trial_dirs

    table = load_costs(sweep)
    if not isinstance(sweep.fs, LocalFileSystem):
        if console is not None:
            console.print("costs of compacted models are measured for local sweep folders only")
        return table
    batches = list(spec.train.latency_batches)
    jobs: dict[str, Job] = {}
    chosen: list[tuple[str, dict[str, Any]]] = []
    for _, trial in trial_dirs(sweep):
        found = _chosen_sizes(trial, spec)
        if found is None:
            continue
        ckpt, sizes = found
        key = sizes.get(record.STRUCTURE)
        if not key:
            continue
        chosen.append((trial.name, {**sizes, "_key": key}))
        if key in jobs or not _missing(table, key, batches):
            continue
        module, shape = _inference_form_of(ckpt)
        jobs[key] = Job(key, module, shape, float(sizes[record.PARAMS]), float(sizes[record.MACS]), batches)
    if jobs:
        table, _ = ensure_measured(spec, sweep, jobs, console=console, max_seconds=max_seconds)
    constraints = parse_constraints(spec.constraints, spec.train.latency_batches)
    if constraints and console is not None:
        for name, sizes in chosen:
            rec = table.entries.get(sizes["_key"])
            broken = violations(constraints, {**sizes, **(rec.sizes() if rec else {})})
            if broken:
                console.print(f"[yellow]after training[/], {name} breaks the constraints: {', '.join(broken)}")
    return table


def _chosen_sizes(trial: Location, spec: SweepSpec) -> tuple[str, dict[str, Any]] | None:
    """(local checkpoint path, sizes) of the checkpoint a trial is judged by."""
    from skelray.sweep.results import trial_row

    row, _ = trial_row("", trial, metric=spec.metric, mode=spec.mode, epochs_total=None, scope=spec.scope,
                       costs=CostTable())
    if not row.get("best_checkpoint"):
        return None
    ckpt = trial.join(row["best_checkpoint"])
    info = record.TrialRecord.from_text(ckpt.join(record.TRIAL_FILE).read_text(), ckpt.path)
    return ckpt.path, info.sizes


def _inference_form_of(checkpoint: str) -> tuple[nn.Module, tuple[int, ...]]:
    from skelray.data.layouts import get_layout
    from skelray.models import inference_form
    from skelray.train.trial import model_from_checkpoint

    model, info = model_from_checkpoint(checkpoint)
    m = info.require_model(checkpoint)
    pp = info.preprocess or {}
    shape = (int(pp.get("persons", m.num_persons)), int(pp["frames"]), get_layout(m.layout).num_joints,
             m.in_channels)
    return inference_form(model).eval(), shape


def preview(spec: SweepSpec) -> list[str]:
    """What ``sweep validate`` says about the constraints: which configs would be dropped, judged
    on params and MACs (exact) and on the latencies this machine's cache already holds; the
    rest is measured at run time."""
    if not spec.constraints:
        return []
    constraints = parse_constraints(spec.constraints, spec.train.latency_batches)
    configs = planned_configs(spec)
    if configs is None:
        return ["constraints: optuna proposes configs as it runs; they cannot be judged before"]
    import torch

    device = device_of(spec)
    cached = CostTable()
    if device == "cpu" or torch.cuda.is_available():
        cached = _read_machine_cache(machine_cache_path()).get(machine_key(device), CostTable())
    needs_latency = any(record.is_latency_key(c.key) for c in constraints)
    by_id: dict[str, Structure] = {}
    dropped, unknown, later = [], set(), 0
    for config in configs:
        cfg = TrialConfig.from_tune(config)
        sid = structural_id(cfg)
        if sid not in by_id:
            by_id[sid] = build_structure(cfg)
        s = by_id[sid]
        if not s.known:
            later += 1
            continue
        rec = cached.entries.get(s.key)
        broken = violations(constraints, {**s.sizes, **(rec.sizes() if rec else {})})
        if broken:
            dropped.append(f"{spec.trial_name(config) or '(base config)'}: {', '.join(broken)}")
        elif needs_latency and (rec is None or any(rec.latency_ms(b) is None for b in spec.train.latency_batches)):
            unknown.add(s.key)
    lines = [f"constraints: would drop {len(dropped)} of {len(configs)} configs before training"
             + (" (all: the run would stop with an error)" if len(dropped) == len(configs) else "")
             + "".join(f"\n  {d}" for d in dropped)]
    if unknown:
        lines.append(f"constraints: {len(unknown)} architecture(s) not yet in this machine's cost cache: "
                     "their latency is measured at run time (alone, once each), which may drop more")
    if later:
        lines.append(f"constraints: {later} config(s) with channel/CTF sparsity are compacted by training; "
                     "they run, and are checked after the run")
    return lines
