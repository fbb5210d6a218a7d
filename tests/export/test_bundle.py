"""Export a real sweep's members, check the manifest, load without unpickling, and refuse
bundles that are newer, incomplete or inconsistent with a clear error."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _demo import WEIGHTS
from typer.testing import CliRunner

from skelray.cli import app as cli
from skelray.config import TrialConfig
from skelray.export import SCHEMA_VERSION, BundleError, export_bundle, load_bundle, read_manifest
from skelray.sweep.results import read_results
from skelray.train.data import load_splits


def copy_bundle(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "copy"))


def edit_manifest(root: Path, change) -> None:
    doc = json.loads((root / "manifest.json").read_text())
    change(doc)
    (root / "manifest.json").write_text(json.dumps(doc))


def test_manifest_describes_every_member(bundle):
    m = read_manifest(bundle)
    assert m.schema_version == SCHEMA_VERSION and m.kind == "skelray-bundle"
    assert m.layout == "kinect_v1_20" and m.num_joints == 20 and m.in_channels == 3
    assert m.frames == 8 and m.persons == 1
    assert len(m.class_names) == m.num_classes == 4
    assert [x.weight for x in m.members] == pytest.approx(sorted(WEIGHTS.values(), reverse=True))
    assert sorted(x.stream for x in m.members) == ["b", "j"]
    for x in m.members:
        assert x.model.name == "hpigcn_rp" and x.model.kwargs["pa_count"] in (1, 2)
        assert x.model.kwargs["mirror_tta"] is (x.model.kwargs["pa_count"] == 2)
        assert x.preprocess["stream"] == x.stream and x.preprocess["frames"] == 8
        assert x.preprocess["rotate_degrees"] == 0 and x.preprocess["scale"] is None
        assert x.params > 0 and x.macs > 0 and x.metrics["val_top1"] is not None
        assert x.check.max_abs_diff <= x.check.tolerance * max(1.0, x.check.logit_scale)
        assert set(x.check.inputs) == {"random", "synthetic", "val"}
        assert (bundle / x.weights_file).is_file() and x.weights_file.endswith(".safetensors")
    # JSON and safetensors only: nothing a loader would have to unpickle.
    assert {p.suffix for p in bundle.rglob("*") if p.is_file()} == {".json", ".safetensors"}


def best_checkpoint(experiment: Path, key: str) -> Path:
    trials, _ = read_results(str(experiment))
    row = next(r for r in trials.to_pylist() if f"{r['run']}/{r['trial_name']}" == key)
    return experiment / row["run"] / row["trial_name"] / row["best_checkpoint"]


def test_bundle_reproduces_the_ensemble_of_the_saved_validation_logits(bundle, experiment):
    """Serving's preprocessing and fused models give what training saw: the bundle's offline
    ensemble on the validation clips equals the weighted sum of the logits each trial saved."""
    b = load_bundle(bundle)
    expected = 0.0
    for member in b.manifest.members:
        with np.load(best_checkpoint(experiment, member.trial) / "logits.npz") as z:
            expected = expected + member.weight * z["val_logits"].astype(np.float64)
    run, trial = b.manifest.members[0].trial.split("/")
    cfg = TrialConfig.from_tune(json.loads((experiment / run / trial / "params.json").read_text()))
    got = b.logits(list(load_splits(cfg.data).splits["val"].clips))
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_export_one_trial_from_the_cli(experiment, tmp_path):
    out = tmp_path / "one"
    result = CliRunner().invoke(cli, ["export", str(experiment), "--trial", "t00001", "-o", str(out),
                                      "--no-check-data"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    m = read_manifest(out)
    assert len(m.members) == 1 and m.members[0].weight == 1.0 and m.members[0].stream == "b"
    assert set(m.members[0].check.inputs) == {"random", "synthetic"}
    assert m.source["trial"].endswith(m.members[0].trial.split("/")[1])
    assert "max |fused - trained|" in result.output


def test_export_refuses_a_fusion_that_changes_the_model(experiment, tmp_path, monkeypatch):
    from skelray import models

    honest = models.inference_form

    def broken(model):
        fused = honest(model)
        with torch.no_grad():
            fused.head.weight.mul_(1.01)  # what an inexact fuse() would do: logits off by 1%
        return fused

    monkeypatch.setattr(models, "inference_form", broken)
    with pytest.raises(BundleError, match=r"differs from the training form by .*tolerance 0\.0001"):
        export_bundle(experiment, tmp_path / "bad", trial="t00000", check_data=False)
    assert not (tmp_path / "bad").exists()  # no half-written bundle is left behind


def test_export_never_overwrites_silently(bundle, experiment):
    with pytest.raises(Exception, match="exists and is not empty.*--overwrite"):
        export_bundle(experiment, bundle, trial="t00000")


def test_loading_never_unpickles(bundle, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a bundle load tried to unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    b = load_bundle(bundle)
    assert set(b.models) == {m.name for m in b.manifest.members}


def test_newer_schema_version_is_refused(bundle, tmp_path):
    root = copy_bundle(bundle, tmp_path)
    edit_manifest(root, lambda d: d.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(BundleError,
                       match=rf"manifest.json: schema_version: schema_version {SCHEMA_VERSION + 1} "
                                          r"is newer.*upgrade skelray"):
        load_bundle(root)


def test_missing_weights_file_names_the_file(bundle, tmp_path):
    root = copy_bundle(bundle, tmp_path)
    member = read_manifest(root).members[1]
    (root / member.weights_file).unlink()
    with pytest.raises(BundleError,
                       match=rf"{member.weights_file}.*weights file is missing.*copy the whole bundle"):
        load_bundle(root)


def test_shape_mismatch_names_the_tensor(bundle, tmp_path):
    root = copy_bundle(bundle, tmp_path)
    edit_manifest(root, lambda d: d["members"][0]["model"]["kwargs"].update(tcn_kernel=9))
    with pytest.raises(BundleError, match=r"tensor 'blocks\.0\.tcn\.weight' has shape \(64, 64, 5, 1\), "
                                          r"the model expects \(64, 64, 9, 1\)"):
        load_bundle(root)


def test_changed_weights_file_fails_its_checksum(bundle, tmp_path):
    root = copy_bundle(bundle, tmp_path)
    member = read_manifest(root).members[0]
    path = root / member.weights_file
    path.write_bytes(path.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(BundleError, match="does not match the manifest's sha256"):
        load_bundle(root)


def test_invalid_manifest_field_is_named(bundle, tmp_path):
    root = copy_bundle(bundle, tmp_path)
    edit_manifest(root, lambda d: d["members"][0].update(weight=-1))
    with pytest.raises(BundleError, match=r"members\[0\]\.weight"):
        read_manifest(root)
