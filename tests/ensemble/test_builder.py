"""The ensemble builder on a real (tiny) sweep: chosen on validation logits, within budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from skelray.cli import app as cli
from skelray.ensemble import EnsembleSpec, build_ensemble, ensemble_of
from skelray.ensemble.combine import top1
from skelray.errors import ConfigError, DataError
from skelray.sweep.results import read_results


def saved_logits(experiment: Path) -> dict[str, dict[str, np.ndarray]]:
    """Each trial's best-checkpoint logits, read straight from the folders, not via the builder."""
    trials, _ = read_results(str(experiment))
    out = {}
    for row in trials.to_pylist():
        ckpt = experiment / row["run"] / row["trial_name"] / row["best_checkpoint"]
        with np.load(ckpt / "logits.npz") as z:
            out[f"{row['run']}/{row['trial_name']}"] = {k: z[k] for k in z.files}
    return out


def test_ensemble_is_at_least_as_good_as_the_best_single_trial(experiment):
    spec = build_ensemble(experiment)
    logits = saved_logits(experiment)
    best = max(top1(v["val_logits"], v["val_labels"]) for v in logits.values())
    assert spec.ensemble.val_top1 >= best
    assert spec.best_single.val_top1 == pytest.approx(best)
    # the reported score is what the members' saved logits give with the stated weights
    combined = sum(m.weight * logits[m.key]["val_logits"].astype(np.float64) for m in spec.members)
    labels = next(iter(logits.values()))["val_labels"]
    assert top1(combined, labels) == pytest.approx(spec.ensemble.val_top1)
    assert sum(m.weight for m in spec.members) == pytest.approx(1.0)
    assert {m.stream for m in spec.members} <= {"j", "b"}


def test_parameter_budget_is_respected(experiment):
    smallest = min(m.params for m in build_ensemble(experiment, max_members=1).members)
    spec = build_ensemble(experiment, budget_params=smallest * 1.5)
    assert sum(m.params for m in spec.members) <= smallest * 1.5
    assert len(spec.members) == 1  # both trials have the same size: only one fits
    with pytest.raises(ConfigError, match="no trial fits the budget.*raise the budget"):
        build_ensemble(experiment, budget_params=smallest / 2)


def test_latency_budget_is_respected(experiment):
    trials, _ = read_results(str(experiment))
    ms = sorted(trials.column("latency_ms_b1").to_pylist())
    spec = build_ensemble(experiment, budget_ms=ms[0] + 1e-6)
    assert sum(m.latency_ms for m in spec.members) <= ms[0] + 1e-6
    assert spec.best_single_in_budget.key == spec.members[0].key
    with pytest.raises(ConfigError, match="one budget"):
        build_ensemble(experiment, budget_ms=10, budget_params=10)


def test_hand_picked_weights_are_normalised(experiment):
    spec = ensemble_of(experiment, {"t00000": 3, "t00001": 1})
    assert [m.weight for m in spec.members] == pytest.approx([0.75, 0.25])
    with pytest.raises(ConfigError, match="matches no usable trial"):
        ensemble_of(experiment, {"t9": 1})


def test_ensemble_file_round_trips_and_refuses_newer_versions(experiment, tmp_path):
    path = build_ensemble(experiment).save(tmp_path / "ENSEMBLE.json")
    assert EnsembleSpec.load(path) == EnsembleSpec.load(path)
    doc = json.loads(path.read_text())
    doc["schema_version"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="schema_version 99 is newer.*upgrade skelray"):
        EnsembleSpec.load(path)


def test_cli_prints_members_and_writes_the_file(experiment, tmp_path):
    out = tmp_path / "ENSEMBLE.json"
    result = CliRunner().invoke(cli,
                                ["ensemble", "build", str(experiment), "--max-members", "2", "-o", str(out)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    spec = EnsembleSpec.load(out)
    assert "best single" in result.output and "ensemble" in result.output
    for m in spec.members:
        assert m.key in result.output
    assert f"{100 * spec.ensemble.val_top1:.2f}%" in result.output
