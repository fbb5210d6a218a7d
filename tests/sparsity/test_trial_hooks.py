"""The calls the trial makes (``skelray.train.trial``, ``skelray.train.measure``) with the configs
of the shipped sparsity sweep."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from skelray.errors import ConfigError
from skelray.models import inference_form
from skelray.sparsity import on_epoch_start, penalty, report
from skelray.sweep import load_sweep
from skelray.train.trial import _sparsity_hooks, build_model, model_from_checkpoint

SWEEP = Path(__file__).resolve().parents[2] / "sweeps" / "sparsity_levels.yaml"
DATA = SimpleNamespace(num_classes=4, layout="kinect_v1_20", in_channels=3)


def trial_config(model_override: dict):
    spec = load_sweep(SWEEP, overrides={"data.persons": 1})
    return spec.trial_config({"model": model_override})


def test_a_level_of_the_sweep_trains_measures_and_reloads(tmp_path: Path, clips) -> None:
    cfg = trial_config({"sparsity": {"level": 0.6, "granularity": "channel"}})
    torch.manual_seed(0)
    model, sparsity = _sparsity_hooks(build_model(cfg, DATA), cfg.model.sparsity)
    levels = []
    for epoch in range(4):  # the sweep's schedule: 1 dense epoch, then a 2-epoch ramp
        sparsity.on_epoch_start(model, epoch)
        assert sparsity.penalty(model).item() == 0.0
        levels.append(round(sparsity.report(model, macs=False)["overall"], 2))
    assert levels == [0.0, 0.3, 0.6, 0.6]
    x = clips(2, 8)
    model.eval()
    deployed = inference_form(model)  # what export ships: compacted, then fused
    with torch.no_grad():
        scale = 4.0 / model(x).abs().max()
        assert ((deployed(x) - model(x)) * scale).abs().max().item() <= 1e-4
    # A checkpoint folder as the trial writes it, read back as export and serve will.
    m = {"name": cfg.model.name, "kwargs": dict(cfg.model.kwargs), "num_classes": 4, "layout": "kinect_v1_20",
         "in_channels": 3, "num_persons": 1, "sparsity": cfg.model.sparsity.model_dump(mode="json")}
    (tmp_path / "trial.json").write_text(json.dumps({"model": m}))
    torch.save({"model": model.state_dict()}, tmp_path / "state.pt")
    reloaded, _ = model_from_checkpoint(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), model(x), rtol=0, atol=0)


def test_the_ensemble_trial_of_the_sweep_builds_and_masks_its_members() -> None:
    cfg = trial_config({"name": "sparse_ensemble", "sparsity": {"level": None,
                                                                "ensemble_levels": [0.6, 0.8, 0.95, 0.99]}})
    model, _ = _sparsity_hooks(build_model(cfg, DATA), cfg.model.sparsity)
    on_epoch_start(model, 3)
    got = [report(member, macs=False)["overall"] for member in model.members]
    assert got == pytest.approx([0.6, 0.8, 0.95, 0.99], abs=0.005)
    assert penalty(model).item() == 0.0


def test_ensemble_levels_other_than_the_defaults_reach_the_members() -> None:
    cfg = trial_config({"name": "sparse_ensemble",
                        "sparsity": {"level": None, "ensemble_levels": [0.5, 0.9]}})
    model, _ = _sparsity_hooks(build_model(cfg, DATA), cfg.model.sparsity)
    assert model.levels == (0.5, 0.9)


ENSEMBLE = ("name: t\ndata: {format: synthetic, layout: kinect_v1_20, persons: 1}\n"
            "model: {name: sparse_ensemble, kwargs: {backbone: stgcn, levels: [0.5, 0.9], KWARG}}\n")


def test_a_sweep_checks_ensemble_options_against_the_backbone_it_names() -> None:
    # edge_importance is stgcn's (not the default backbone's): accepted, set or searched.
    spec = load_sweep(ENSEMBLE.replace("KWARG", "edge_importance: false"))
    assert spec.model.kwargs["edge_importance"] is False
    load_sweep(ENSEMBLE.replace(", KWARG", "") + "search: {model.kwargs.edge_importance: {grid: [true, false]}}\n")
    with pytest.raises(ConfigError, match=r"model\.kwargs\.pa_count.*'sparse_ensemble' has no argument 'pa_count'"):
        load_sweep(ENSEMBLE.replace("KWARG", "pa_count: 3"))
    with pytest.raises(ConfigError, match=r"search\.model\.kwargs\.pa_count.*has no argument 'pa_count'"):
        load_sweep(ENSEMBLE.replace(", KWARG", "") + "search: {model.kwargs.pa_count: {grid: [1, 3]}}\n")
