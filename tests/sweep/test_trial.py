"""One trial without Ray: what ``run_trial`` reports and what its checkpoint folder holds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skelray.data.transforms import Preprocess
from skelray.sweep import load_sweep
from skelray.sweep._validate import TUNE_METRICS, reported_metrics
from skelray.train.data import load_splits
from skelray.train.loop import metrics_from_logits, predict
from skelray.train.trial import model_from_checkpoint, run_trial


def test_checkpoint_logits_are_those_of_the_trained_model(tmp_path: Path, tiny_sweep) -> None:
    # The trial evaluates dense models in their fused form; the logits it saves for ensembling
    # and the metrics it reports must still be those of the model it trained.
    spec = load_sweep(tiny_sweep("trial", str(tmp_path), model={"name": "hpigcn_rp",
                                                                  "kwargs": {"pa_count": 2, "width": 0.5}}))
    cfg = spec.trial_config()
    reports: list[dict[str, Any]] = []

    def report(metrics: dict[str, Any], directory: str) -> None:
        reports.append(metrics)
        shutil.copytree(directory, tmp_path / f"epoch{metrics['epoch']}")

    last = run_trial(cfg, report=report, device="cpu")
    assert [r["epoch"] for r in reports] == [1, 2] and last == reports[-1]
    # The list a sweep's metric is checked against is what the trial reports (less what
    # only sparse or diverged trials add).
    assert set(last) == set(reported_metrics(spec)) - set(TUNE_METRICS) - {"sparsity", "diverged"}
    folder = tmp_path / "epoch2"
    model, info = model_from_checkpoint(folder)
    assert info["epoch"] == 2 and info["model"]["kwargs"]["width"] == 0.5
    pp = Preprocess(**info["preprocess"])
    data = load_splits(cfg.data)
    saved = np.load(folder / "logits.npz")
    for split in ("val", "test"):
        trained_form = predict(model, data.splits[split], pp, batch_size=64)
        scale = max(1.0, float(np.abs(trained_form).max()))
        np.testing.assert_allclose(saved[f"{split}_logits"], trained_form, rtol=0, atol=1e-4 * scale)
        np.testing.assert_array_equal(saved[f"{split}_labels"], data.splits[split].labels)
        # Same predictions, up to one clip whose top two logits are closer than the fusion error.
        want = metrics_from_logits(trained_form, data.splits[split].labels)["top1"]
        assert abs(last[f"{split}/top1"] - want) <= 1 / len(trained_form) + 1e-9
    assert json.loads((folder / "trial.json").read_text())["metrics"]["epoch"] == 2
    assert torch.load(folder / "state.pt", weights_only=True)["optimizer"]["state"]
