"""Every loader of a user-edited file reports all its field errors at once, each with its path."""

from __future__ import annotations

import json

import pytest

from skelray.errors import ConfigError
from skelray.export import BundleError, read_manifest
from skelray.serve import ServeArgs


def test_serve_args_report_every_bad_field(tmp_path) -> None:
    with pytest.raises(ConfigError) as err:
        ServeArgs.parse({"bundle": str(tmp_path), "max_batch_size": "many", "num_cpus": -1, "replica": 2})
    text = str(err.value)
    assert "3 problems in serve args" in text
    for field in ("max_batch_size", "num_cpus", "replica"):
        assert f"- {field}:" in text, text
    assert "did you mean 'replicas'?" in text


def test_a_manifest_reports_every_bad_field(tmp_path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({
        "schema_version": 1, "kind": "skelray-bundle", "name": "b", "created": "now", "skelray_version": "0",
        "source": {}, "layout": "ntu25", "layout_def": {}, "num_joints": "many", "in_channels": 3,
        "frames": 64, "persons": 2, "num_classes": 2, "class_names": ["a", "b"], "members": [{}]}))
    with pytest.raises(BundleError) as err:
        read_manifest(tmp_path)
    text = str(err.value)
    assert "manifest.json" in text and "re-export the bundle" in text
    for field in ("num_joints", "members[0].name", "members[0].weights_file", "members[0].check"):
        assert field in text, text


def test_an_ensemble_file_reports_every_bad_field(tmp_path) -> None:
    from skelray.ensemble.builder import KIND, EnsembleSpec
    from skelray.errors import DataError

    path = tmp_path / "ens.json"
    path.write_text(json.dumps({"kind": KIND, "schema_version": 1, "experiment": "/x", "budget": {"ms": 3},
                                "members": [{"key": "a"}], "ensemble": {"val_top1": "high"}}))
    with pytest.raises(DataError) as err:
        EnsembleSpec.load(path)
    text = str(err.value)
    assert "ens.json" in text and "rebuild it with `skelray ensemble build`" in text
    for field in ("budget.ms", "members[0].weight", "ensemble.val_top1", "best_single"):
        assert field in text, text
