"""One trial without Ray: what ``run_trial`` reports and what its checkpoint folder holds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from skelray.data.transforms import Preprocess
from skelray.errors import DataError
from skelray.sweep import load_sweep
from skelray.sweep._validate import TUNE_METRICS, reported_metrics
from skelray.train.data import load_splits
from skelray.train.loop import WeightAverage, metrics_from_logits, predict
from skelray.train.trial import model_from_checkpoint, run_trial


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_checkpoint_logits_are_those_of_the_trained_model(tmp_path: Path, tiny_sweep, ema_decay) -> None:
    # The trial evaluates dense models in their fused form; the logits it saves for ensembling
    # and the metrics it reports must still be those of the model it trained (with a weight
    # average: of the averaged weights, which is what the checkpoint's ``model`` holds).
    spec = load_sweep(tiny_sweep("trial", str(tmp_path), model={"name": "hpigcn_rp",
                                                                  "kwargs": {"pa_count": 2, "width": 0.5}},
                                 train={"epochs": 2, "batch_size": 8, "lr": 0.05, "latency_batches": [1],
                                        "ema_decay": ema_decay}))
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
    assert info.epoch == 2 and info.model.kwargs["width"] == 0.5
    pp = Preprocess(**info.preprocess)
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
    state = torch.load(folder / "state.pt", weights_only=True)
    assert state["optimizer"]["state"]
    if ema_decay is None:
        assert "live_model" not in state
    else:  # the optimiser's weights are kept for resuming, and differ from the evaluated ones
        assert state["average_updates"] > 0
        assert any(not torch.equal(state["model"][k], v) for k, v in state["live_model"].items()
                   if v.dtype.is_floating_point)


def test_resume_with_weight_average_continues_the_same_run(tmp_path: Path, tiny_sweep) -> None:
    # Stopping after epoch 1 and resuming from its checkpoint must give exactly the epoch 2 of
    # an uninterrupted run: the live weights, the average and its update count all come back.
    spec = load_sweep(tiny_sweep("resume", str(tmp_path),
                                 train={"epochs": 2, "batch_size": 8, "lr": 0.05, "latency_batches": [1],
                                        "ema_decay": 0.9}))
    cfg = spec.trial_config()
    data = load_splits(cfg.data)
    straight: list[dict[str, Any]] = []
    run_trial(cfg, data=data, report=lambda m, d: straight.append(m), device="cpu")

    def keep_first(metrics: dict[str, Any], directory: str) -> None:
        if metrics["epoch"] == 1:
            shutil.copytree(directory, tmp_path / "epoch1")

    run_trial(cfg, data=data, report=keep_first, device="cpu")
    resumed: list[dict[str, Any]] = []
    run_trial(cfg, data=data, report=lambda m, d: resumed.append(m), resume_from=str(tmp_path / "epoch1"),
              device="cpu")
    assert [m["epoch"] for m in resumed] == [2]
    for key in ("train/loss", "val/loss", "test/loss", "val/top1"):
        assert resumed[0][key] == pytest.approx(straight[1][key], rel=1e-5, abs=1e-6), key


def test_weight_average_follows_the_model_with_a_ramped_decay() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.9)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].num_batches_tracked += 5
    average.update(model)  # first update: decay min(0.9, 1/10) = 0.1, so 90% of the way
    np.testing.assert_allclose(average.module[0].weight, start + 0.9, rtol=0, atol=1e-6)
    assert int(average.module[1].num_batches_tracked) == 5  # integer buffers are copied
    for _ in range(200):
        average.update(model)
    np.testing.assert_allclose(average.module[0].weight, model[0].weight.detach(), rtol=0, atol=1e-6)
    assert not average.module[0].weight.requires_grad
    restored = WeightAverage(model, decay=0.9)
    restored.load(average.module.state_dict(), average.updates)
    assert restored.updates == 201 and torch.equal(restored.module[0].weight, average.module[0].weight)
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


def test_weight_average_of_a_sparse_model_keeps_its_schedule(tmp_path: Path, tiny_sweep) -> None:
    # The sparsity level ramps each epoch; the averaged (evaluated, saved) copy must follow the
    # same schedule as the model being trained, not lag behind it or stay at the start.
    from skelray import sparsity

    spec = load_sweep(tiny_sweep("sparse", str(tmp_path),
                                 model={"name": "hpigcn_rp", "kwargs": {"pa_count": 1},
                                        "sparsity": {"level": 0.8, "schedule": {"ramp_epochs": 2}}},
                                 train={"epochs": 3, "batch_size": 8, "lr": 0.05, "latency_batches": [1],
                                        "ema_decay": 0.9}))
    seen: list[tuple[float, float]] = []

    def report(metrics: dict[str, Any], directory: str) -> None:
        averaged, _ = model_from_checkpoint(directory)
        seen.append((metrics["sparsity"], float(sparsity.report(averaged, macs=False)["overall"])))

    run_trial(spec.trial_config(), report=report, device="cpu")
    assert len(seen) == 3 and seen[0][0] < seen[-1][0]  # the level did ramp
    for live, averaged in seen:
        assert averaged == pytest.approx(live, abs=1e-3)


def test_test_every_evaluates_test_on_its_multiples_and_the_last_epoch(tmp_path: Path, tiny_sweep) -> None:
    spec = load_sweep(tiny_sweep("every", str(tmp_path), search={}, scope="last",
                                 train={"epochs": 3, "batch_size": 8, "lr": 0.05, "latency_batches": [1],
                                        "test_every": 2}))
    seen: dict[int, tuple[set, set]] = {}

    def report(metrics: dict[str, Any], directory: str) -> None:
        with np.load(Path(directory) / "logits.npz") as z:
            per_class = set(json.loads((Path(directory) / "trial.json").read_text()))
            seen[metrics["epoch"]] = ({k for k in metrics if k.startswith(("val/", "test/"))},
                                      set(z.files) | {k for k in per_class if k.endswith("_per_class")})

    run_trial(spec.trial_config(), report=report, device="cpu")
    val = {"val/top1", "val/top5", "val/loss", "val_logits", "val_labels", "val_per_class"}
    test = {k.replace("val", "test") for k in val}
    assert sorted(seen) == [1, 2, 3]
    assert set.union(*seen[1]) == val
    assert set.union(*seen[2]) == set.union(*seen[3]) == val | test


def test_a_checkpoint_without_its_record_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"trial\.json: does not exist") as err:
        model_from_checkpoint(tmp_path)
    assert err.value.where == str(tmp_path / "trial.json")
    (tmp_path / "trial.json").write_text('{"epoch": 3, "metrics": {}}')  # no model section
    with pytest.raises(DataError, match="has no 'model' section"):
        model_from_checkpoint(tmp_path)
    (tmp_path / "trial.json").write_text('{"epoch": 3, "rn')  # cut short
    with pytest.raises(DataError, match="is not valid JSON"):
        model_from_checkpoint(tmp_path)


def test_resuming_from_a_damaged_record_says_which_file(tmp_path: Path, tiny_sweep) -> None:
    cfg = load_sweep(tiny_sweep("damaged", str(tmp_path), search={})).trial_config()
    ckpt = tmp_path / "checkpoint_000000"
    ckpt.mkdir()
    (ckpt / "trial.json").write_text('{"epoch": 1, "metrics": {}}')  # no NumPy RNG state to resume with
    with pytest.raises(DataError, match=r"checkpoint_000000/trial\.json: has no NumPy RNG state"):
        run_trial(cfg, resume_from=str(ckpt), device="cpu")
    (ckpt / "trial.json").unlink()
    with pytest.raises(DataError, match=r"checkpoint_000000/trial\.json: does not exist"):
        run_trial(cfg, resume_from=str(ckpt), device="cpu")
