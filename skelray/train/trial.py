"""One trial: train one configuration on one dataset split, reporting every epoch.

``run_trial`` knows nothing of Ray Tune: it calls ``report(metrics, checkpoint_dir)`` after
each epoch and resumes from a checkpoint directory when given one. ``tune_trainable`` wraps
it for Tune (node-shared data, ``tune.report`` with a ``Checkpoint``, ``tune.get_checkpoint``).
The plain-Python baseline of the overhead benchmark calls ``run_trial`` directly.

A checkpoint directory holds (the files and their records are defined in ``skelray.record``):
  state.pt      model / optimiser / schedule / torch RNG state (``torch.load(weights_only=True)``);
                with ``train.ema_decay``, ``model`` is the averaged (evaluated) weights and
                ``live_model`` the weights the optimiser is training
  trial.json    a ``TrialRecord``: epoch, NumPy RNG state, metrics of this epoch, sizes of the
                inference form, how to rebuild the model and feed it, per-class accuracy
  logits.npz    a ``Logits``: validation and test logits and labels of this epoch (for
                ensembling); test only on the epochs ``train.test_every`` evaluates it
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skelray import record
from skelray.config import SparsitySpec, TrialConfig
from skelray.data.layouts import adopt_layout
from skelray.data.transforms import Preprocess
from skelray.errors import ConfigError, DataError
from skelray.models import fuse
from skelray.record import Logits, ModelRecord, TrialRecord
from skelray.train.accel import maybe_compile
from skelray.train.data import DataBundle, load_splits
from skelray.train.loop import (
    WeightAverage,
    make_optimizer,
    make_schedule,
    metrics_from_logits,
    per_class_accuracy,
    predict,
    recalibrate_bn,
    seed_everything,
    train_epoch,
)

Report = Callable[[dict[str, Any], str], None]


def _sparsity_hooks(model: torch.nn.Module, spec: SparsitySpec | None):
    """Wrap the model for trainable sparsity when the config asks for it. A model that is sparse
    by construction (the multi-level ensemble) gets the hooks without being wrapped again."""
    from skelray import sparsity

    if spec is not None and spec.level is not None:
        model = sparsity.sparsify(model, spec.level, granularity=spec.granularity, scope=spec.scope,
                                  schedule=spec.schedule.model_dump() if spec.schedule else None)
    return model, (sparsity if sparsity.is_sparse(model) else None)


def model_kwargs(cfg: TrialConfig) -> dict[str, Any]:
    """The model's own kwargs; ``model.sparsity.ensemble_levels`` become the ensemble's levels."""
    kwargs = dict(cfg.model.kwargs)
    spec = getattr(cfg.model, "sparsity", None)
    if spec is not None and spec.ensemble_levels and cfg.model.name == "sparse_ensemble":
        kwargs.setdefault("levels", list(spec.ensemble_levels))
    return kwargs


def build_model(cfg: TrialConfig, data: DataBundle) -> torch.nn.Module:
    from skelray.models import create_model

    return create_model(cfg.model.name, num_classes=data.num_classes, layout=data.layout,
                        in_channels=data.in_channels, num_persons=cfg.data.persons, **model_kwargs(cfg))


def describe(cfg: TrialConfig, data: DataBundle, pp: Preprocess) -> TrialRecord:
    """Everything needed to rebuild the trained model and feed it, without the dataset: the part
    of every checkpoint's record that does not change from epoch to epoch."""
    sparsity = getattr(cfg.model, "sparsity", None)
    model = ModelRecord(name=cfg.model.name, kwargs=model_kwargs(cfg), num_classes=data.num_classes,
                        layout=data.layout, in_channels=data.in_channels, num_persons=cfg.data.persons,
                        sparsity=sparsity.model_dump(mode="json") if sparsity is not None else None,
                        layout_def=data.layout_def or None)
    return TrialRecord(model=model, preprocess=dataclasses.asdict(pp), class_names=data.class_names,
                       holdout=data.holdout or None)


def _save(directory: Path, model, optimizer, schedule, info: TrialRecord, logits: Logits,
          average: WeightAverage | None = None) -> None:
    # ``model`` is always the evaluated weights: exports, ensembles and serving load that key.
    weights = {"model": average.module.state_dict(), "live_model": model.state_dict(),
               "average_updates": average.updates} if average else {"model": model.state_dict()}
    torch.save({**weights, "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "torch_rng": torch.get_rng_state()}, directory / record.WEIGHTS_FILE)
    record.save_checkpoint_record(directory, info, logits)


def _load_state(directory: Path, device: str) -> dict[str, Any]:
    path = directory / record.WEIGHTS_FILE
    if not path.is_file():
        raise DataError("does not exist", where=str(path),
                        fix=f"pass a checkpoint folder a skelray trial wrote (with {record.WEIGHTS_FILE})")
    return torch.load(path, map_location=device, weights_only=True)


def model_from_checkpoint(directory: str | Path) -> tuple[torch.nn.Module, TrialRecord]:
    """The trained model of a checkpoint folder (eval mode, training form) and its trial record."""
    from skelray.models import create_model

    directory = Path(directory)
    info = record.load_checkpoint_record(directory)
    m = info.require_model(str(directory / record.TRIAL_FILE))
    if m.layout_def:  # records of older versions name a built-in layout
        adopt_layout(m.layout_def, source=f"{directory / record.TRIAL_FILE}: model.layout_def")
    model = create_model(m.name, num_classes=m.num_classes, layout=m.layout, in_channels=m.in_channels,
                         num_persons=m.num_persons, **m.kwargs)
    if m.sparsity_level is not None:
        from skelray import sparsity

        s = m.sparsity
        model = sparsity.sparsify(model, s["level"], granularity=s["granularity"], scope=s["scope"],
                                  schedule=s.get("schedule"))
    model.load_state_dict(_load_state(directory, "cpu")["model"])
    return model.eval(), info


def trial_device(wanted: str, gpu: bool) -> str:
    """The device a trial trains on: ``train.device`` (auto, cpu or cuda) given whether it holds
    a usable GPU. ``cpu`` stays on the CPU even beside a GPU; ``cuda`` without one is a
    ``ConfigError`` (the sweep's check refuses it before the run when ``resources.gpu`` is 0)."""
    if wanted == "cpu" or (wanted == "auto" and not gpu):
        return "cpu"
    if not gpu:
        raise ConfigError("train.device is cuda, but this trial holds no usable GPU", where="train.device",
                          fix="give the trials a GPU (resources.gpu), or set device: auto")
    return "cuda"


def run_trial(cfg: TrialConfig, *, data: DataBundle | None = None, report: Report | None = None,
              resume_from: str | None = None, device: str | None = None,
              latencies: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, Any]:
    """Train ``cfg`` and return the last epoch's metrics (the keys of ``record.reported_metrics``).

    ``latencies`` (structure key -> ``{latency_ms_bN: ms}``): the sweep's one measurement of
    each architecture; the trial reports its own structure's entry, and no latency when it has
    none. Without it (a trial run on its own, nothing training beside it) the trial times its
    inference form itself."""
    t = cfg.train
    seed_everything(t.seed)
    data = data if data is not None else load_splits(cfg.data)
    if data.layout_def:  # the data's own definition, known here by name from now on
        adopt_layout(data.layout_def, source=f"the layout of {cfg.data.path or cfg.data.format}")
    if device is None:
        device = trial_device(t.device, torch.cuda.is_available())
    common = dict(layout=data.layout, frames=cfg.data.frames, persons=cfg.data.persons, stream=cfg.data.stream,
                  normalize=cfg.data.normalize, align=cfg.data.align, sampling=cfg.data.sampling)
    pp_train = Preprocess(**common, rotate_degrees=cfg.data.rotate_degrees,
                          scale=tuple(cfg.data.scale) if cfg.data.scale else None, mirror=cfg.data.mirror)
    pp_eval = Preprocess(**common)
    model = build_model(cfg, data)
    model, sparsity = _sparsity_hooks(model, getattr(cfg.model, "sparsity", None))
    model.to(device)
    forward = maybe_compile(model, t.compile)  # shares model's parameters; checkpoints save model
    steps = max(1, len(data.splits["train"]) // t.batch_size)
    optimizer = make_optimizer(model, t.optimizer, t.lr, momentum=t.momentum, nesterov=t.nesterov,
                               weight_decay=t.weight_decay, adjacency_lr_scale=t.adjacency_lr_scale)
    schedule = make_schedule(optimizer, kind=t.schedule, epochs=t.epochs, steps_per_epoch=steps,
                             warmup_epochs=t.warmup_epochs, milestones=t.milestones, gamma=t.gamma)
    rng = np.random.default_rng(t.seed)
    average = WeightAverage(model, t.ema_decay) if t.ema_decay is not None else None
    start_epoch, sizes, metrics = 0, {}, {}
    if resume_from:
        resumed = record.load_checkpoint_record(resume_from)
        if resumed.rng is None:
            raise DataError("has no NumPy RNG state ('rng'), so the run cannot be resumed",
                            where=str(Path(resume_from) / record.TRIAL_FILE),
                            fix="resume from a checkpoint a skelray trial wrote, or start the trial afresh")
        state = _load_state(Path(resume_from), device)
        model.load_state_dict(state.get("live_model", state["model"]))
        if average is not None:
            average.load(state["model"], state.get("average_updates", 0))
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        rng.bit_generator.state = resumed.rng
        start_epoch, sizes = resumed.epoch, resumed.sizes
    sample_shape = (cfg.data.persons, cfg.data.frames, len(data.splits["train"].clips[0][0, 0]),
                    data.in_channels)
    val, test = data.splits["val"], data.splits["test"]
    description = describe(cfg, data, pp_eval)
    evaluated = average.module if average is not None else model  # what is scored and saved
    for epoch in range(start_epoch, t.epochs):
        started = time.perf_counter()
        if sparsity is not None:
            sparsity.on_epoch_start(model, epoch)
            if average is not None:  # the averaged copy follows the same schedule
                sparsity.on_epoch_start(average.module, epoch)
        penalty = (lambda m, y: sparsity.penalty(m, labels=y)) if sparsity is not None else None
        tr = train_epoch(model, data.splits["train"], pp_train, optimizer, schedule, batch_size=t.batch_size,
                         rng=rng, label_smoothing=t.label_smoothing, device=device, extra_loss=penalty,
                         precision=t.precision_on(str(device)), grad_clip=t.grad_clip,
                         after_step=average.update if average is not None else None,
                         prefetch_batches=t.prefetch_on(str(device)), forward=forward)
        if t.precise_bn_batches:
            recalibrate_bn(evaluated, data.splits["train"], pp_train, batch_size=t.batch_size,
                           num_batches=t.precise_bn_batches, rng=rng, device=device)
        eval_bs = t.eval_batch_size or t.batch_size
        # Dense models are evaluated in their fused form: the same logits (the fusion tests hold
        # them within 1e-4), 2-3x cheaper for multi-branch models.
        judged = evaluated if sparsity is not None else fuse(evaluated)
        last = epoch + 1 == t.epochs
        logits = Logits(predict(judged, val, pp_eval, batch_size=eval_bs, device=device), val.labels)
        if last or (epoch + 1) % t.test_every == 0:
            logits.test_logits = predict(judged, test, pp_eval, batch_size=eval_bs, device=device)
            logits.test_labels = test.labels
        del judged
        # Params, MACs and structure key of the inference form (exact and cheap): once for dense
        # models (training does not change them), every epoch for sparse ones (the masks move).
        # Latency is not timed here, beside other trials: see ``_sizes``.
        if record.STRUCTURE not in sizes or sparsity is not None:
            sizes = _sizes(model, sample_shape, device, tuple(t.latency_batches), latencies)
        metrics = {record.EPOCH: epoch + 1, record.LR: optimizer.param_groups[0]["lr"],
                   record.EPOCH_TIME: time.perf_counter() - started,
                   **{record.metric_key("train", k): v for k, v in tr.items()},
                   **{k: v for k, v in sizes.items() if k != record.STRUCTURE}}
        scored = {name: split for name in record.EVAL_SPLITS if (split := logits.split(name)) is not None}
        for name, (split_logits, labels) in scored.items():
            scores = metrics_from_logits(split_logits, labels)
            metrics.update({record.metric_key(name, k): v for k, v in scores.items()})
        if sparsity is not None:
            metrics[record.SPARSITY] = float(sparsity.report(model, macs=False)["overall"])
        per_class = {name: per_class_accuracy(split_logits, labels, data.num_classes)
                     for name, (split_logits, labels) in scored.items()}
        # A diverged run only burns compute: say so and stop (the results mark it DIVERGED).
        diverged = not np.isfinite(tr["loss"])
        if diverged:
            metrics[record.DIVERGED] = 1
        info = dataclasses.replace(description, epoch=epoch + 1, rng=rng.bit_generator.state, metrics=metrics,
                                   sizes=sizes, per_class=per_class)
        with tempfile.TemporaryDirectory(prefix="skelray-ckpt-") as tmp:
            _save(Path(tmp), model, optimizer, schedule, info, logits, average)
            if report is not None:
                report(metrics, tmp)
        if diverged:
            break
    return metrics


STANDALONE_TIMING_S = 2.0  # time cap per batch size when a trial run on its own times itself


def _sizes(model: torch.nn.Module, sample_shape: tuple[int, ...], device: str, batches: tuple[int, ...],
           latencies: Mapping[str, Mapping[str, float]] | None) -> dict[str, Any]:
    """Params, MACs and structure key of the inference form, with its latency: the sweep's
    measurement of that structure (timed once, alone on a node: a trial timing itself while
    others train beside it measures their load, not its network), or, for a trial run on its
    own (``latencies`` None), timed here."""
    from skelray.train import measure

    if latencies is None:
        return measure.measure(model, sample_shape, device=device, batches=batches,
                               max_seconds=STANDALONE_TIMING_S)
    out = measure.sizes(model, sample_shape)
    known = latencies.get(out[record.STRUCTURE], {})
    out.update({k: known[k] for k in map(record.latency_key, batches) if k in known})
    return out


def tune_trainable(config: dict[str, Any], latencies: Mapping[str, Mapping[str, float]] | None = None) -> None:
    """The function Ray Tune runs for each trial; the sweep runner passes ``latencies`` (its
    measured costs, ``tune.with_parameters``) so the trial never times itself."""
    from ray import tune

    from skelray.train.data import node_splits

    cfg = TrialConfig.from_tune(config)
    # Trials share the node's cores: without this each would spawn a thread per core.
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    # The GPU Ray assigned this trial (Ray sets CUDA_VISIBLE_DEVICES), and train.device's say.
    device = trial_device(cfg.train.device, torch.cuda.is_available()
                          and os.environ.get("CUDA_VISIBLE_DEVICES", "") not in ("", "-1"))
    checkpoint = tune.get_checkpoint()
    import ray

    node_id = ray.get_runtime_context().get_node_id()

    def report(metrics: dict[str, Any], directory: str) -> None:
        # The node id, not just its IP: several nodes may share one machine.
        tune.report({**metrics, record.NODE_ID: node_id},
                    checkpoint=tune.Checkpoint.from_directory(directory))

    latencies = latencies if latencies is not None else {}
    if checkpoint is None:
        run_trial(cfg, data=node_splits(cfg.data), report=report, device=device, latencies=latencies)
        return
    checkpoint = latest_reported_checkpoint(checkpoint)
    with checkpoint.as_directory() as resume_dir:
        if record.load_checkpoint_record(resume_dir).epoch >= cfg.train.epochs:
            return  # it had finished: its reports and checkpoints are all on disk already
        run_trial(cfg, data=node_splits(cfg.data), report=report, resume_from=resume_dir,
                  device=device, latencies=latencies)


def latest_reported_checkpoint(given: Any) -> Any:
    """The newest checkpoint the trial's own ``result.json`` names, where it is newer than
    ``given`` (the ``tune.Checkpoint`` Tune restored the trial with); else ``given``.

    Tune saves its experiment state every few seconds, so a driver killed just after a trial
    reported restores that trial from an older checkpoint, and the trial would train its last
    epochs again, finished or not. ``result.json`` sits beside the checkpoints and gets a line
    only after that line's checkpoint was persisted, so a checkpoint it names is complete."""
    import posixpath

    from ray import tune

    fs, trial = given.filesystem, posixpath.dirname(given.path.rstrip("/"))
    try:
        with fs.open_input_stream(posixpath.join(trial, record.RESULT_FILE)) as f:
            text = f.read().decode()
    except (OSError, FileNotFoundError):
        return given  # not on this storage (yet): Tune's is the newest known
    newest = posixpath.basename(given.path.rstrip("/"))
    for line in text.splitlines():
        try:
            name = json.loads(line).get(record.CHECKPOINT_DIR_KEY)
        except ValueError:
            continue  # a line the kill cut short
        # Tune's names, checkpoint_000003, sort in the order they were written.
        if isinstance(name, str) and name.startswith(record.CHECKPOINT_PREFIX) and name > newest:
            newest = name
    if newest == posixpath.basename(given.path.rstrip("/")):
        return given
    return tune.Checkpoint(path=posixpath.join(trial, newest), filesystem=fs)
