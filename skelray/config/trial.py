"""One trial's configuration: the typed ``data`` / ``model`` / ``train`` sections.

This is the contract between the sweep (which samples values into these sections) and the
trainer (which reads them): ``skelray.sweep`` builds one ``TrialConfig`` per Tune trial,
``skelray.train`` takes it as its ``cfg``, ``skelray.export`` re-reads it from a trial's
``params.json``. Every field carries a comment saying what it does; unknown keys are errors.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from skelray.config._problems import Problems, pydantic_problems
from skelray.errors import ConfigError, SkelrayError

DataFormat = Literal["store", "ntu", "pyskl", "ucla", "npz", "synthetic"]
Stream = Literal["j", "b", "jm", "bm"]
LAYOUT_FILE_SUFFIXES = (".yaml", ".yml", ".json")  # a data.layout ending so names a layout file
# The layout each reader uses when ``data.layout`` is not given; None: read from the data itself.
DEFAULT_LAYOUTS: dict[str, str | None] = {
    "ntu": "ntu25", "ucla": "kinect_v1_20", "synthetic": "ntu25", "store": None, "pyskl": None, "npz": None,
}


class Section(BaseModel):
    # Unknown keys are errors (with a did-you-mean), never silently ignored.
    model_config = ConfigDict(extra="forbid", validate_default=True)


def validate_or_raise(model: type[BaseModel], data: Any, source: str, prefix: str = "", *,
                      error: type[SkelrayError] = ConfigError, fix: str | None = None) -> Any:
    """``model.model_validate(data)``, with every pydantic error reported at once as one
    ``error`` naming each field's path and its fix (not only the first error); ``fix`` is the
    advice for errors that have no specific one (e.g. "re-export the bundle")."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = Problems(source=source)
        problems.extend(pydantic_problems(exc, model, prefix))
        problems.raise_if_any(error, fix)
        raise  # pragma: no cover - raise_if_any always raises here


class FoldSpec(Section):
    """``data.split.val: {folds: K, by: subject}``: K-fold (leave-groups-out) cross-validation.
    The training split's values of ``by`` are dealt into K folds (fixed seed); fold k validates
    on its values and trains on the rest. A sweep runs every fold as its own trial."""

    folds: int  # K >= 2 (checked by SplitSpec, so the error names data.split.val)
    by: str  # the tag whose values are held out together, e.g. subject


class SplitSpec(Section):
    train: str = "train"  # split used for training
    # The split the metric is computed on each epoch; null: about a tenth of the training split
    # held out (holdout_group says how); {folds: K, by: TAG}: K-fold cross-validation by TAG.
    val: str | FoldSpec | None = "val"
    test: str | None = None  # held-out split, evaluated once by `sweep results`, never tuned on
    # With val: null, which clips are held out together: auto = mirror the test protocol (whole
    # values of the tag by which test differs from train, e.g. whole subjects for a
    # cross-subject test; else the views of one recording); clip = each clip alone; or a list
    # of tags, e.g. [subject] to hold out whole subjects (all their classes).
    holdout_group: Literal["auto", "clip"] | list[str] = "auto"
    # With val: {folds: K}: the fold this trial validates on (0..K-1); a sweep sets it for each
    # trial itself (one trial per fold). null = fold 0.
    fold: int | None = Field(None, ge=0)

    @field_validator("val", mode="before")
    @classmethod
    def _folds(cls, v: Any) -> Any:
        # Checked here rather than by the union, so a mistake gets one message at data.split.val
        # (a union would also report that the value is not a split name).
        if v is None or isinstance(v, (str, FoldSpec)):
            return v
        if not isinstance(v, Mapping):  # ValueError, not TypeError: pydantic reports only the former
            raise ValueError(  # noqa: TRY004
                "give a split name (quote it if YAML reads it as a number), null for a hold-out of the "
                "training split, or {folds: K, by: TAG} for k-fold cross-validation")
        unknown = sorted(set(v) - set(FoldSpec.model_fields))
        if unknown:
            raise ValueError(f"unknown key '{unknown[0]}' in k-fold validation: write {{folds: K, by: TAG}}, "
                             "e.g. {folds: 5, by: subject}")
        folds, by = v.get("folds"), v.get("by")
        if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
            raise ValueError(f"k-fold validation needs folds: a whole number >= 2, not {folds!r}: set folds: 2 "
                             "or more, or val: null for a single hold-out")
        if not isinstance(by, str) or not by:
            raise ValueError("k-fold validation needs by: the tag whose values are held out together, "
                             "e.g. {folds: 5, by: subject}")
        return FoldSpec(folds=folds, by=by)


class DataSpec(Section):
    path: str | None = None  # folder/file of the data (required unless format is synthetic)
    format: DataFormat = "store"  # store = skelray's Arrow store; others are read directly
    split: SplitSpec = Field(default_factory=SplitSpec)
    # Skeleton layout: a name (skelray.data.list_layouts()) or a layout YAML/JSON file (joints,
    # edges, center; relative to the folder skelray runs in); None = the format's default, or
    # the store's own layout (a store keeps its layout's definition; set this only to check it).
    layout: str | None = None
    frames: int = Field(64, ge=1)  # frames per clip after temporal sampling
    persons: int = Field(2, ge=1)  # persons per clip (padded with zeros)
    stream: Stream = "j"  # joint, bone, joint-motion, bone-motion
    normalize: bool = True  # centre on the layout's centre joint
    align: bool = True  # rotate to the layout's body axes (3D only)
    sampling: Literal["uniform", "interp"] = "uniform"
    rotate_degrees: float = Field(0.0, ge=0)  # random rotation augmentation; 0 = off
    scale: tuple[float, float] | None = None  # random scale augmentation range, e.g. [0.9, 1.1]
    mirror: bool = False  # mirror half the training clips left-right (the layout must pair left_/right_ joints)
    # synthetic data only: a small, learnable dataset made on the fly
    num_classes: int = Field(10, ge=2)
    num_per_class: int = Field(20, ge=1)
    seed: int = 0
    # 0: clips carry no subject (the default dataset). S >= 2: clip k of each class is performed
    # by subject k mod S, tagged subject, with splits xsub_train / xsub_test (half the subjects
    # each); each subject has its own body size and speed, spread by subject_effect (0: none).
    subjects: int = Field(0, ge=0)
    subject_effect: float = Field(1.0, ge=0)

    @field_validator("layout")
    @classmethod
    def _layout_file(cls, v: str | None) -> str | None:
        # The data is loaded in a Ray worker, whose working folder is not this one: pin the
        # file's path now (a name stays a name).
        if v is not None and v.endswith(LAYOUT_FILE_SUFFIXES) and "${" not in v:
            return os.path.abspath(os.path.expanduser(v))
        return v

    @field_validator("subjects")
    @classmethod
    def _subjects(cls, v: int) -> int:
        if v == 1:
            raise ValueError("subjects must be 0 (no subject tags) or at least 2 (half train, half test)")
        return v

    def resolved_layout(self) -> str | None:
        return self.layout or DEFAULT_LAYOUTS[self.format]


class SparsitySchedule(Section):
    """When sparsity applies: dense warm-up, then a linear or stepped ramp to the target level.

    The one schema of the schedule: a sweep's ``model.sparsity.schedule`` is validated into it
    and ``skelray.sparsity`` runs it. Plain data, so a checkpoint does not need it (the level
    reached is a buffer in the model's state).
    """

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)

    warmup_epochs: int = Field(0, ge=0)  # dense epochs before pruning starts
    ramp_epochs: int = Field(0, ge=0)  # epochs over which sparsity ramps from 0 to the level
    kind: Literal["linear", "step"] = "linear"  # linear: a bit more each epoch; step: `steps` jumps
    steps: int = Field(1, ge=1)  # step kind: jumps over the ramp (1: straight to the level at its end)
    penalty: float = Field(0.0, ge=0)  # L2 pull (like weight decay) on weights about to be pruned; 0 = off
    # CTF only (granularity ctf): the budget term's weight, and the temperature's start and end
    # (annealed geometrically over the ramp).
    budget_weight: float = Field(1.0, ge=0)
    temperature: tuple[float, float] = (1.0, 1e-3)

    @field_validator("penalty", "budget_weight")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[1] <= v[0]:
            raise ValueError("temperature must be [start, end] with start >= end > 0, e.g. [1.0, 0.001]")
        return v

    def progress(self, epoch: int) -> float:
        """0 during warm-up, rising to 1 by the last ramp epoch, then 1.

        The first ramp epoch is already above 0 and the last one is at 1, so a ramp of R
        epochs reaches the target R epochs after the warm-up ends.
        """
        if epoch < self.warmup_epochs:
            return 0.0
        if self.ramp_epochs == 0:
            return 1.0
        return min(1.0, (epoch - self.warmup_epochs + 1) / self.ramp_epochs)

    def fraction(self, epoch: int) -> float:
        """The fraction of the target level in force at ``epoch``."""
        p = self.progress(epoch)
        if self.kind == "step":
            # floor, with a tolerance so 3 * (1/3) counts as a full step
            return math.floor(p * self.steps + 1e-9) / self.steps
        return p


class SparsitySpec(Section):
    level: float | None = Field(None, ge=0, lt=1)  # fraction of weights removed (ctf: 1 - kept budget)
    # element: per weight; kernel: per (out, in) kernel; channel: per output channel (compacts
    # into a smaller, faster model); ctf: coarse-to-fine channel x column x row x entry masks
    granularity: Literal["element", "kernel", "channel", "ctf"] = "element"
    scope: Literal["global", "block"] = "global"  # one threshold for the model, or one per block
    schedule: SparsitySchedule = Field(default_factory=SparsitySchedule)
    ensemble_levels: list[float] | None = None  # members of a multi-level ensemble (instead of level)

    @field_validator("ensemble_levels")
    @classmethod
    def _levels(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (not v or any(not 0 <= x < 1 for x in v)):
            raise ValueError("ensemble_levels must be a non-empty list of levels in [0, 1)")
        return v


class ModelSpec(Section):
    name: str  # a registered model (skelray.models.list_models())
    kwargs: dict[str, Any] = Field(default_factory=dict)  # constructor keyword arguments
    sparsity: SparsitySpec | None = None  # trainable sparsity; None = dense


class TrainSpec(Section):
    epochs: int = Field(30, ge=1)  # one Tune iteration = one epoch
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    nesterov: bool = True  # sgd only
    weight_decay: float = Field(4e-4, ge=0)
    # Learning-rate factor of the learnable adjacencies (HPI-GCN's PA matrices, ST-GCN's edge
    # importance), which get no weight decay: PA count's learning-rate equivalent.
    adjacency_lr_scale: float = Field(1.0, gt=0, allow_inf_nan=False)
    schedule: Literal["cosine", "step"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)  # linear warm-up before the schedule
    milestones: list[int] = Field(default_factory=list)  # step schedule: epochs where lr *= gamma
    gamma: float = Field(0.1, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0)  # max gradient norm; None = no clipping
    # Evaluate, save and export an exponential moving average of the weights (decay per
    # optimiser step, e.g. 0.99 ~ the last 100 steps); null = the live weights.
    ema_decay: float | None = Field(None, ge=0, lt=1)
    # Numeric precision of the training step: auto = bf16 autocast on a GPU that supports it,
    # fp16 with a loss scaler on older GPUs, fp32 on the CPU; or fp32, bf16 (also on the CPU), fp16 (CUDA).
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    amp: bool = False  # older spelling of precision: fp16 (CUDA only; ignored on the CPU)
    compile: bool = False  # torch.compile the model for training (a one-off compile per trial)
    # Batches prepared ahead in a background thread while the step runs; 0: in the step's thread.
    # null: 2 on a GPU, 0 on the CPU (there the batched pipeline is a few % of a step, and the
    # thread only competes with the step for the trial's cores).
    prefetch: int | None = Field(None, ge=0)
    seed: int = 0
    num_workers: int = Field(0, ge=0)  # data loader workers per trial
    eval_batch_size: int | None = Field(None, ge=1)  # None = batch_size
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when the trial got a GPU
    precise_bn_batches: int = Field(16, ge=0)  # re-estimate BN statistics on N train batches before eval; 0 = off
    latency_batches: list[int] = Field(default_factory=lambda: [1, 64])  # batch sizes timed for the leaderboard
    # Evaluate the test split every N epochs and at the last one (validation runs every epoch).
    # Test is only read at the checkpoint a trial is judged by, so with scope: last a sweep
    # whose trials stop at known epochs (fifo, pbt, or ASHA rungs that are multiples of N)
    # saves the test pass on the other epochs.
    test_every: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _one_precision(self) -> TrainSpec:
        if self.amp and self.precision not in ("auto", "fp16"):
            raise ValueError(f"amp: true (fp16) contradicts precision: {self.precision}; "
                             "remove amp and keep precision")
        return self

    def prefetch_on(self, device: str) -> int:
        """``prefetch`` with its default for ``device`` filled in."""
        if self.prefetch is not None:
            return self.prefetch
        return 2 if device.startswith("cuda") else 0

    def precision_on(self, device: str) -> str:
        """``precision`` with the older ``amp: true`` folded in (fp16 on CUDA, off on the CPU)."""
        if self.amp:
            return "fp16" if device.startswith("cuda") else "fp32"
        return self.precision


class TrialConfig(Section):
    """What one trial needs: the Tune ``config`` dict validated into typed sections."""

    data: DataSpec
    model: ModelSpec
    train: TrainSpec = Field(default_factory=TrainSpec)

    @classmethod
    def from_tune(cls, config: Mapping[str, Any]) -> TrialConfig:
        """Validate a trial's full config (what ``build_param_space`` produces, once sampled)."""
        return validate_or_raise(cls, dict(config), "trial config")
