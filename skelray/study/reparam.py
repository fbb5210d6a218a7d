"""Claim 2: re-parameterization is exact and faster, checked on every finished trial.

A dense trial evaluates its fused form (``skelray.train.trial``); here each trial's chosen
checkpoint is loaded in its training form and fused again, both run on the trial's test split
(the same preprocessed batches), and we compare their test top-1 and logits, and time the two
forward passes on the first batches (best of ``repeats`` runs each, one after the other on this
machine, so the ratio is what the report states, not the absolute speed).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from skelray import record
from skelray.config import TrialConfig
from skelray.data.transforms import Preprocess
from skelray.ensemble.combine import top1
from skelray.models import fuse
from skelray.train.data import data_key, load_splits
from skelray.train.loop import batches
from skelray.train.trial import model_from_checkpoint


@dataclass(frozen=True)
class FusionCheck:
    trial: str
    training_top1: float
    fused_top1: float
    max_logit_diff: float
    speedup: float  # training-form forward time / fused forward time on the same batches


TIMED_BATCHES = 2  # batches the forward time is taken on (the logits cover the whole split)


def _forward_time(model: torch.nn.Module, xs: list[torch.Tensor], repeats: int) -> tuple[np.ndarray, float]:
    """The logits of every batch (once), and the best of ``repeats`` timings of the first
    ``TIMED_BATCHES`` batches: the ratio of two models' times needs no more than that."""
    best = float("inf")
    with torch.inference_mode():
        out = torch.cat([model(x) for x in xs]).float().numpy()
        for _ in range(repeats):
            start = time.perf_counter()
            for x in xs[:TIMED_BATCHES]:
                model(x)
            best = min(best, time.perf_counter() - start)
    return out, best


def check_trial(trial_dir: Path, checkpoint: Path, cache: dict[str, object], *, repeats: int = 3,
                batch_size: int = 64) -> FusionCheck | None:
    """The check on one trial's checkpoint; None when its test split is empty or it is sparse."""
    cfg = TrialConfig.from_tune(record.load_params(trial_dir))
    if cfg.model.sparsity is not None:
        return None  # a sparse model is compacted before it fuses: claim 3's business
    key = data_key(cfg.data)
    if key not in cache:
        cache[key] = load_splits(cfg.data)
    test = cache[key].splits["test"]  # type: ignore[attr-defined]
    if not len(test):
        return None
    trained, info = model_from_checkpoint(checkpoint)
    assert info.preprocess is not None
    pp = Preprocess(**info.preprocess).for_inference()
    fused = fuse(copy.deepcopy(trained)).eval()
    xs = [x for x, _ in batches(test, pp, batch_size, train=False)]
    a, t_train = _forward_time(trained, xs, repeats)
    b, t_fused = _forward_time(fused, xs, repeats)
    return FusionCheck(trial=trial_dir.name, training_top1=top1(a, test.labels), fused_top1=top1(b, test.labels),
                       max_logit_diff=float(np.abs(a - b).max()), speedup=t_train / t_fused)
