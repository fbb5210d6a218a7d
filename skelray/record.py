"""What a trial leaves on disk and a sweep records about itself: the one definition of the files
that ``skelray.train`` writes and ``skelray.sweep``, ``skelray.ensemble`` and ``skelray.export``
read back.

A Tune trial folder holds::

  params.json           the trial's config, as Tune wrote it (``TrialConfig.from_tune`` reads it)
  result.json           one JSON line per reported epoch: the metrics below plus Tune's own keys
  error.txt             Tune's failure log, when the trial failed at least once
  checkpoint_NNNNNN/    one folder per kept checkpoint, written by the trial:
    state.pt            model / optimiser / schedule / torch RNG state (written with torch)
    trial.json          a ``TrialRecord``: epoch, NumPy RNG state, metrics, sizes, how to rebuild
                        the model and feed it, per-class accuracy
    logits.npz          a ``Logits``: validation (and, on test epochs, test) logits and labels

and a sweep folder a ``sweep_state.json`` (a ``SweepState``: metric, mode, scope, runs, finished),
written atomically, and a ``costs.json`` (a ``CostTable``: the inference cost of each distinct
architecture, measured once, alone on a node, by ``skelray.sweep.costs``). Each record reads from and writes to text (``from_text`` / ``to_text``) so
callers on other filesystems (``skelray.sweep.results.Location``) do their own IO; the
``save_*`` / ``load_*`` functions do it for local folders. A missing or unreadable file is a
``DataError`` naming it. The formats are those of earlier versions, field for field: old sweep
folders read unchanged.

This module imports only ``skelray.config``, ``skelray.errors`` and NumPy, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skelray.config import TrainSpec, TrialConfig
from skelray.errors import DataError

# -- file names ---------------------------------------------------------------------------------
PARAMS_FILE = "params.json"  # Tune: the trial's config
RESULT_FILE = "result.json"  # Tune: one JSON line per report
ERROR_FILE = "error.txt"  # Tune: failure log
CHECKPOINT_PREFIX = "checkpoint_"  # Tune: checkpoint_000003/
CHECKPOINT_DIR_KEY = "checkpoint_dir_name"  # Tune: the result.json key naming a report's checkpoint
WEIGHTS_FILE = "state.pt"  # trial: torch state (skelray.train.trial reads and writes it)
TRIAL_FILE = "trial.json"  # trial: a TrialRecord
LOGITS_FILE = "logits.npz"  # trial: a Logits
SWEEP_STATE_FILE = "sweep_state.json"  # sweep runner: a SweepState
COSTS_FILE = "costs.json"  # sweep runner: a CostTable (also the name of the per-machine cache)

# -- metric keys: what a trial reports each epoch (result.json lines, trial.json "metrics") ----
EPOCH = "epoch"
LR = "lr"
EPOCH_TIME = "epoch_time_s"
SPARSITY = "sparsity"  # sparse models only: the overall sparsity reached
DIVERGED = "diverged"  # only on the epoch whose training loss was not finite
NODE_ID = "node_id"  # added by the Tune trainable: the Ray node that ran the epoch
PARAMS = "params"  # sizes of the inference form (also trial.json "sizes")
MACS = "macs"
# trial.json "sizes": parameters of the inference form that are not zero (what a sparse model
# deploys; a dense model's are its params, but for the odd exact zero)
NONZERO_PARAMS = "nonzero_params"
# trial.json "sizes" (not reported to Tune): the structure key of the inference form
# (skelray.train.measure.structure_key), by which the sweep's costs.json gives its latency.
STRUCTURE = "structure"
# The trials table's note on where its latency comes from.
LATENCY_BASIS = "latency_basis"
LATENCY_MEASURED_ALONE = "measured alone, once per architecture"
LATENCY_SELF_TIMED = "timed by the trial beside other trials (sweep of an older version)"
EVAL_SPLITS = ("val", "test")
SPLIT_METRICS = ("top1", "top5", "loss")  # per evaluated split: skelray.train.loop.metrics_from_logits
TRAIN_METRICS = ("loss", "top1")  # of the training epoch: skelray.train.loop.train_epoch

# What Tune itself adds to every result line that skelray reads back.
TUNE_TRIAL_ID = "trial_id"
TUNE_NODE_IP = "node_ip"
TUNE_TIME_TOTAL = "time_total_s"


def metric_key(split: str, name: str) -> str:
    """``val/top1``, ``train/loss``: the reported key of one split's metric."""
    return f"{split}/{name}"


_LATENCY = "latency_ms_b"


def latency_key(batch: int) -> str:
    """``latency_ms_b1``: the reported key of the inference form's latency at one batch size."""
    return f"{_LATENCY}{batch}"


def is_latency_key(key: str) -> bool:
    return key.startswith(_LATENCY)


VAL_TOP1 = metric_key("val", "top1")
TEST_TOP1 = metric_key("test", "top1")
TRAIN_LOSS = metric_key("train", "loss")
DEFAULT_METRIC = VAL_TOP1  # what a sweep ranks trials by unless it says otherwise
EVAL_METRICS = tuple(metric_key(s, m) for s in EVAL_SPLITS for m in SPLIT_METRICS)
# TrainSpec.latency_batches' default: the sizes every trial reports unless its config says otherwise.
DEFAULT_LATENCY_BATCHES = tuple(
    TrainSpec.model_fields["latency_batches"].get_default(call_default_factory=True))
SIZE_KEYS = (PARAMS, NONZERO_PARAMS, MACS, *(latency_key(b) for b in DEFAULT_LATENCY_BATCHES))


def reported_metrics(latency_batches: Iterable[int] = DEFAULT_LATENCY_BATCHES) -> list[str]:
    """Every key a trial reports (``skelray.train.trial.run_trial``), with ``sparsity`` and
    ``diverged``, which only sparse or diverged trials add; Tune's own keys are not included."""
    return [EPOCH, LR, EPOCH_TIME, *(metric_key("train", m) for m in TRAIN_METRICS), PARAMS, NONZERO_PARAMS, MACS,
            SPARSITY, DIVERGED, *(latency_key(b) for b in latency_batches), *EVAL_METRICS]


# -- reading helpers ------------------------------------------------------------------------------
def _corrupt(where: str, problem: str) -> DataError:
    return DataError(problem, where=where,
                     fix="the file is damaged or was not written by skelray: restore it, or delete the trial "
                         "folder it belongs to and run it again (`skelray sweep resume DIR`)")


def _json_object(text: str, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _corrupt(where, f"is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _corrupt(where, f"must hold a JSON object, not {_json_kind(doc)}")
    return doc


def _read_local(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise DataError("does not exist", where=str(path),
                        fix="pass a checkpoint or trial folder that a skelray trial wrote") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _corrupt(str(path), f"cannot be read ({exc})") from None


def _field(doc: Mapping[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    """``doc[key]`` when it is a ``kind``; ``default`` when absent or null; else a DataError."""
    value = doc.get(key)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise _corrupt(where, f"'{key}' must be {_KINDS.get(kind, kind.__name__)}, not {_json_kind(value)}")
    return value


# JSON's types as a message names them; bool before int, since True is an int to Python.
_KINDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
          dict: "a JSON object"}


def _require_object(doc: Any, keys: Iterable[str], what: str, where: str) -> None:
    """A ``DataError`` naming the file unless ``doc`` is a JSON object holding every key."""
    if not isinstance(doc, dict):
        raise _corrupt(where, f"{what} must be a JSON object, not {_json_kind(doc)}")
    missing = [k for k in keys if k not in doc]
    if missing:
        raise _corrupt(where, f"{what} lacks {', '.join(missing)}")


def _json_kind(value: Any) -> str:
    return next((name for kind, name in _KINDS.items() if isinstance(value, kind)), type(value).__name__)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it and ``os.replace``: a reader
    sees the old content or the new, never part of either, and a failed write leaves no file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        # O_EXCL: never write into someone else's file; mode 0o666 less the umask, like open().
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# -- trial.json -----------------------------------------------------------------------------------
@dataclass
class ModelRecord:
    """The ``create_model`` call that rebuilds the trained architecture (and its sparsity)."""

    name: str
    kwargs: dict[str, Any]
    num_classes: int
    layout: str
    in_channels: int
    num_persons: int
    sparsity: dict[str, Any] | None = None  # SparsitySpec as JSON; None for dense models
    # The layout's definition (skelray.data.layouts: Layout.to_dict), so a user's own layout
    # rebuilds anywhere; None in records of versions that named a built-in layout only.
    layout_def: dict[str, Any] | None = None

    @property
    def sparsity_level(self) -> float | None:
        """The trainable sparsity level the model was wrapped with; None when it was not."""
        return (self.sparsity or {}).get("level")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kwargs": self.kwargs, "num_classes": self.num_classes,
                "layout": self.layout, "in_channels": self.in_channels, "num_persons": self.num_persons,
                "sparsity": self.sparsity, **({"layout_def": self.layout_def} if self.layout_def else {})}

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> ModelRecord:
        _require_object(doc, ("name", "num_classes", "layout", "in_channels", "num_persons"), "'model'", where)
        return cls(name=doc["name"], kwargs=_field(doc, "kwargs", dict, where, {}),
                   num_classes=doc["num_classes"], layout=doc["layout"], in_channels=doc["in_channels"],
                   num_persons=doc["num_persons"], sparsity=_field(doc, "sparsity", dict, where, None),
                   layout_def=_field(doc, "layout_def", dict, where, None))


_TRIAL_KEYS = ("epoch", "rng", "metrics", "sizes", "model", "preprocess", "class_names", "holdout")
_PER_CLASS = "_per_class"  # "val_per_class": [accuracy of label 0, label 1, ...]


@dataclass
class TrialRecord:
    """A checkpoint's ``trial.json``: where the trial stood, what it scored, how to rebuild it.

    Every field has a default, so partial records (hand-made in tests, or older) still read;
    what needs a field (resuming needs ``rng``, rebuilding the model needs ``model``) says so."""

    epoch: int = 0  # epochs completed when the checkpoint was written
    rng: dict[str, Any] | None = None  # NumPy bit-generator state, for resuming
    metrics: dict[str, Any] = field(default_factory=dict)  # this epoch's reported metrics
    # params, macs and structure of the inference form (older versions: latency_ms_b* the trial timed)
    sizes: dict[str, Any] = field(default_factory=dict)
    model: ModelRecord | None = None
    preprocess: dict[str, Any] | None = None  # skelray.data.transforms.Preprocess fields (eval form)
    class_names: list[str] = field(default_factory=list)
    per_class: dict[str, list[float]] = field(default_factory=dict)  # split -> accuracy per label
    # How the validation clips were chosen, in words (skelray.train.data: DataBundle.holdout);
    # None in records of versions that did not say.
    holdout: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as read

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"epoch": self.epoch, "rng": self.rng, "metrics": self.metrics,
                               "sizes": self.sizes}
        if self.model is not None:
            doc["model"] = self.model.to_dict()
        if self.model is not None or self.preprocess is not None:
            doc["preprocess"] = self.preprocess
        if self.model is not None or self.class_names:
            doc["class_names"] = self.class_names
        doc.update({f"{split}{_PER_CLASS}": acc for split, acc in self.per_class.items()})
        if self.holdout is not None:
            doc["holdout"] = self.holdout
        return {**doc, **self.extra}

    def to_text(self) -> str:
        # default=float: metrics arrive as NumPy scalars.
        return json.dumps(self.to_dict(), default=float)

    @classmethod
    def from_dict(cls, doc: dict[str, Any], where: str) -> TrialRecord:
        per_class, extra = {}, {}
        for key, value in doc.items():
            if key.endswith(_PER_CLASS):
                if value is not None and not isinstance(value, list):
                    raise _corrupt(where, f"'{key}' must be a list, not {_json_kind(value)}")
                per_class[key.removesuffix(_PER_CLASS)] = value
            elif key not in _TRIAL_KEYS:
                extra[key] = value
        return cls(epoch=_field(doc, "epoch", int, where, 0), rng=_field(doc, "rng", dict, where, None),
                   metrics=_field(doc, "metrics", dict, where, {}),
                   sizes=_field(doc, "sizes", dict, where, {}),
                   model=ModelRecord.from_dict(doc["model"], where) if doc.get("model") is not None else None,
                   preprocess=_field(doc, "preprocess", dict, where, None),
                   class_names=_field(doc, "class_names", list, where, []),
                   per_class=per_class, holdout=_field(doc, "holdout", str, where, None), extra=extra)

    @classmethod
    def from_text(cls, text: str, where: str) -> TrialRecord:
        return cls.from_dict(_json_object(text, where), where)

    def require_model(self, where: str) -> ModelRecord:
        """``model``, or a DataError saying the checkpoint cannot be rebuilt without it."""
        if self.model is None:
            raise DataError("has no 'model' section, so the trained model cannot be rebuilt", where=where,
                            fix="use a checkpoint written by a skelray trial "
                                f"(its {TRIAL_FILE} describes the model)")
        return self.model


# -- logits.npz -----------------------------------------------------------------------------------
@dataclass
class Logits:
    """One epoch's logits and labels, clip by clip in the split's fixed order. ``test_*`` are
    None on epochs that did not evaluate the test split (``train.test_every``)."""

    val_logits: np.ndarray
    val_labels: np.ndarray
    test_logits: np.ndarray | None = None
    test_labels: np.ndarray | None = None

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(logits, labels)`` of ``val`` or ``test``; None when it was not evaluated or is empty."""
        logits, labels = getattr(self, f"{name}_logits"), getattr(self, f"{name}_labels")
        return (logits, labels) if labels is not None and len(labels) else None

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"val_logits": self.val_logits, "val_labels": self.val_labels}
        if self.test_logits is not None:
            out.update(test_logits=self.test_logits, test_labels=self.test_labels)
        return out


def save_logits(directory: str | Path, logits: Logits) -> Path:
    path = Path(directory) / LOGITS_FILE
    np.savez(path, **logits.arrays())
    return path


def load_logits(directory: str | Path) -> Logits:
    """A checkpoint's logits. Nothing is unpickled: a results folder is data, and data must not run code."""
    path = Path(directory) / LOGITS_FILE
    if not path.is_file():
        raise DataError("does not exist", where=str(path),
                        fix="pass a checkpoint folder that a skelray trial wrote (it holds logits.npz)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise _corrupt(str(path), f"is not a readable .npz file ({exc})") from None
    missing = [k for k in ("val_logits", "val_labels") if k not in arrays]
    if missing:
        raise DataError(f"has no {', '.join(missing)}", where=str(path),
                        fix="re-run the trial with a validation split (data.split.val)")
    if ("test_logits" in arrays) != ("test_labels" in arrays):
        raise _corrupt(str(path), "holds test logits or test labels, not both")
    return Logits(arrays["val_logits"], arrays["val_labels"], arrays.get("test_logits"),
                  arrays.get("test_labels"))


# -- a checkpoint folder ----------------------------------------------------------------------------
def save_checkpoint_record(directory: str | Path, record: TrialRecord, logits: Logits) -> None:
    """Write a checkpoint's ``trial.json`` and ``logits.npz`` (the trial writes ``state.pt``)."""
    directory = Path(directory)
    (directory / TRIAL_FILE).write_text(record.to_text())
    save_logits(directory, logits)


def load_checkpoint_record(directory: str | Path) -> TrialRecord:
    """A checkpoint folder's ``trial.json``; a DataError naming the file when it is missing or corrupt."""
    path = Path(directory) / TRIAL_FILE
    return TrialRecord.from_text(_read_local(path), str(path))


def has_checkpoint_record(directory: str | Path) -> bool:
    """Whether a folder holds what ensembling and export read: ``trial.json`` and ``logits.npz``."""
    return (Path(directory) / TRIAL_FILE).is_file() and (Path(directory) / LOGITS_FILE).is_file()


# -- Tune's files ----------------------------------------------------------------------------------
def params_from_text(text: str, where: str) -> dict[str, Any]:
    """A trial's ``params.json``: the config Tune handed it, as the raw mapping."""
    return _json_object(text, where)


def load_params(trial_dir: str | Path) -> dict[str, Any]:
    path = Path(trial_dir) / PARAMS_FILE
    return params_from_text(_read_local(path), str(path))


def load_trial_config(trial_dir: str | Path) -> TrialConfig:
    """The validated ``TrialConfig`` of a trial folder (its ``params.json``)."""
    return TrialConfig.from_tune(load_params(trial_dir))


def epochs_from_text(text: str, where: str) -> list[dict[str, Any]]:
    """The reports in a trial's ``result.json``, one JSON object per non-empty line, in order."""
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            rows.append(_json_object(line, f"{where}: line {n}"))
    return rows


# -- costs.json: the inference cost of each distinct architecture ------------------------------------
@dataclass
class BatchTiming:
    """One batch size's latency, timed by ``skelray.train.measure.time_forward``'s rule."""

    median_ms: float
    spread: float  # (max - min) / median of the last block medians compared
    repeats: int  # timed calls
    converged: bool = True  # the spread fell within the rule's bound before its time cap

    def to_dict(self) -> dict[str, Any]:
        return {"median_ms": self.median_ms, "spread": self.spread, "repeats": self.repeats,
                "converged": self.converged}


@dataclass
class CostRecord:
    """The inference cost of one structure (``skelray.train.measure.structure_key``): params and
    MACs per clip, and the latency at each batch size, measured once by a task that held a whole
    node (``skelray.sweep.costs``) on the machine ``machine`` describes."""

    structure: str
    params: float
    macs: float
    input_shape: list[int]  # one clip: M, T, V, C
    device: str  # cpu or cuda
    machine: str  # the machine type: CPU model and cores (or GPU name), torch version, threads
    threads: int  # torch threads the forward passes ran with
    latency: dict[int, BatchTiming] = field(default_factory=dict)  # batch size -> timing
    measured_at: str = ""  # ISO time of the measurement
    from_machine_cache: bool = False  # copied from the machine's cache, not measured for this sweep

    def latency_ms(self, batch: int) -> float | None:
        timing = self.latency.get(int(batch))
        return timing.median_ms if timing is not None else None

    def sizes(self) -> dict[str, float]:
        """``params``, ``macs`` and ``latency_ms_bN`` for every measured batch size."""
        return {PARAMS: self.params, MACS: self.macs,
                **{latency_key(b): t.median_ms for b, t in sorted(self.latency.items())}}

    def to_dict(self) -> dict[str, Any]:
        return {"structure": self.structure, "params": self.params, "macs": self.macs,
                "input_shape": self.input_shape, "device": self.device, "machine": self.machine,
                "threads": self.threads,
                "latency": {str(b): t.to_dict() for b, t in sorted(self.latency.items())},
                "measured_at": self.measured_at, "from_machine_cache": self.from_machine_cache}

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> CostRecord:
        _require_object(doc, ("structure", "params", "macs", "device", "machine"), "a cost record", where)
        latency: dict[int, BatchTiming] = {}
        for b, t in _field(doc, "latency", dict, where, {}).items():
            if not str(b).isdigit() or not isinstance(t, dict) or "median_ms" not in t:
                raise _corrupt(where, f"latency '{b}' must map a batch size to its timing")
            latency[int(b)] = BatchTiming(float(t["median_ms"]), float(t.get("spread", 0.0)),
                                          int(t.get("repeats", 0)), bool(t.get("converged", True)))
        return cls(structure=doc["structure"], params=float(doc["params"]), macs=float(doc["macs"]),
                   input_shape=list(_field(doc, "input_shape", list, where, [])), device=doc["device"],
                   machine=doc["machine"], threads=int(doc.get("threads") or 1), latency=latency,
                   measured_at=_field(doc, "measured_at", str, where, ""),
                   from_machine_cache=bool(doc.get("from_machine_cache", False)))


@dataclass
class CostTable:
    """A ``costs.json``: structure key -> ``CostRecord``. A sweep folder holds one (what its
    trials table, leaderboard, ensembles and exports read); a machine's cache holds one per
    machine type (``machines``), reused across sweeps."""

    entries: dict[str, CostRecord] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": COST_RULE, "entries": {k: r.to_dict() for k, r in sorted(self.entries.items())}}

    def to_text(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, doc: dict[str, Any], where: str) -> CostTable:
        entries = _field(doc, "entries", dict, where, {})
        return cls({k: CostRecord.from_dict(v, f"{where}: entries.{k}") for k, v in entries.items()})

    @classmethod
    def from_text(cls, text: str, where: str) -> CostTable:
        return cls.from_dict(_json_object(text, where), where)


COST_RULE = ("each structure timed once by a task holding a whole node; per batch size: warm-up, then "
             "blocks of calls until the last 3 block medians are within 5% (or 10 s); the median of "
             "those blocks' calls")


def machine_costs_from_text(text: str, where: str) -> dict[str, CostTable]:
    """A machine cost cache: machine type -> its ``CostTable``."""
    machines = _field(_json_object(text, where), "machines", dict, where, {})
    return {m: CostTable.from_dict(t if isinstance(t, dict) else {}, f"{where}: machines.{m}")
            for m, t in machines.items()}


def machine_costs_to_text(machines: Mapping[str, CostTable]) -> str:
    return json.dumps({"machines": {m: t.to_dict() for m, t in sorted(machines.items())}}, indent=1)


# -- sweep_state.json ------------------------------------------------------------------------------
@dataclass
class SweepState:
    """What the sweep runner records beside its runs: how trials are ranked, the runs so far
    (``run-0``, then one per ``--more``), and whether the last one finished. A sweep folder
    without the file (results collected from bare Tune folders) reads as the defaults."""

    name: str | None = None
    metric: str = DEFAULT_METRIC
    mode: str = "max"
    scope: str = "all"
    runs: list[str] = field(default_factory=lambda: ["run-0"])
    finished: bool = False

    def to_text(self) -> str:
        return json.dumps({"name": self.name, "metric": self.metric, "mode": self.mode, "scope": self.scope,
                           "runs": self.runs, "finished": self.finished})

    @classmethod
    def from_text(cls, text: str, where: str) -> SweepState:
        try:
            return cls._parse(text, where)
        except DataError as exc:
            fix = ('restore it, or write it anew: {"name": ..., "metric": "val/top1", "mode": "max", '
                   '"scope": "all", "runs": ["run-0", ...], "finished": false}')
            raise DataError(exc.message, where=where, fix=fix) from None

    @classmethod
    def _parse(cls, text: str, where: str) -> SweepState:
        doc, d = _json_object(text, where), cls()
        runs = _field(doc, "runs", list, where, d.runs)
        if not all(isinstance(r, str) for r in runs):
            raise _corrupt(where, "'runs' must list run folder names")
        return cls(name=_field(doc, "name", str, where, d.name),
                   metric=_field(doc, "metric", str, where, d.metric),
                   mode=_field(doc, "mode", str, where, d.mode),
                   scope=_field(doc, "scope", str, where, d.scope), runs=runs,
                   finished=_field(doc, "finished", bool, where, d.finished))


def save_sweep_state(sweep_dir: str | Path, state: SweepState) -> None:
    """Write a local sweep folder's ``sweep_state.json`` atomically (see ``write_text_atomic``)."""
    write_text_atomic(Path(sweep_dir) / SWEEP_STATE_FILE, state.to_text())


def load_sweep_state(sweep_dir: str | Path) -> SweepState:
    """A local sweep folder's state; the defaults when it has none; a DataError when it is corrupt."""
    path = Path(sweep_dir) / SWEEP_STATE_FILE
    return SweepState.from_text(_read_local(path), str(path)) if path.is_file() else SweepState()
