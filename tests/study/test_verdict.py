"""Verdict rules and the study file's checks: pure functions, no Ray."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from skelray.errors import ConfigError
from skelray.study.claims import CLAIMS_SCHEMA, ClaimRecord, ClaimsFile, _served_record
from skelray.study.spec import load_study
from skelray.study.verdict import HELD, INCONCLUSIVE, NOT_HELD, decide

STUDY = Path(__file__).resolve().parents[2] / "studies" / "nw_ucla.yaml"


@pytest.mark.parametrize(("diffs", "by", "verdict"), [
    ([0.030, 0.034, 0.031], 0.004, HELD),  # clearly better, the claimed gain inside the interval
    ([0.0, 0.001, -0.001], 0.004, NOT_HELD),  # the interval's top is below the claimed gain
    ([0.0, 0.0], 0.004, NOT_HELD),  # no spread at all: [0, 0] excludes 0.4 points
    ([-0.05, 0.06, 0.01], 0.004, INCONCLUSIVE),  # holds both 0 and the claim
    ([0.05], 0.004, INCONCLUSIVE),  # one seed: no interval
])
def test_better(diffs: list[float], by: float, verdict: str) -> None:
    decision, _ = decide("better", diffs, by=by)
    assert decision.verdict == verdict, decision.reason


@pytest.mark.parametrize(("diffs", "verdict"), [
    ([0.001, -0.002, 0.0], HELD),
    ([0.10, 0.12, 0.11], NOT_HELD),
    ([0.0, 0.03, -0.02], INCONCLUSIVE),
])
def test_equivalent(diffs: list[float], verdict: str) -> None:
    assert decide("equivalent", diffs, within=0.01)[0].verdict == verdict


@pytest.mark.parametrize(("diffs", "verdict"), [
    ([-0.002, 0.001, -0.004], HELD),  # any loss is well under a point
    ([-0.06, -0.05, -0.055], NOT_HELD),  # a loss of 5 points is certain
    ([-0.03, 0.01, -0.01], INCONCLUSIVE),  # could be no loss or a 3-point one
])
def test_noninferior(diffs: list[float], verdict: str) -> None:
    decision, _ = decide("noninferior", diffs, margin=0.01)
    assert decision.verdict == verdict, decision.reason


def test_an_interval_is_shown_within_the_range_a_difference_can_take() -> None:
    from skelray.study.claims import ACCURACY, DIFFERENCE, _figure

    wide = {"0": 0.0, "1": 0.5}  # two seeds: the t interval spans far past +-100 points
    decision, iv = decide("better", list(wide.values()))
    assert iv is not None and iv.low is not None and iv.low < -1
    assert "[-100.00, +100.00]" in decision.reason
    fig = _figure("a", wide, ACCURACY)
    assert (fig.low, fig.high) == (0.0, 1.0) and fig.mean == 0.25
    assert _figure("d", wide, DIFFERENCE).low == -1.0
    assert _figure("ratio", wide).low == iv.low  # a ratio is not cut


def test_fewer_epochs_than_the_paper_make_a_verdict_inconclusive_and_say_why() -> None:
    decision, iv = decide("better", [0.030, 0.034, 0.031], by=0.004, epochs=10, paper_epochs=110)
    assert decision.verdict == INCONCLUSIVE
    assert "10 epochs" in decision.reason and "110" in decision.reason and "'held'" in decision.reason
    assert iv is not None and iv.n == 3 and iv.low is not None and iv.low > 0
    few = decide("better", [0.03], by=0.004)[0]
    assert "needs 2 or more" in few.reason


def test_the_study_file_loads_and_every_size_names_its_sweeps() -> None:
    study = load_study(STUDY)
    assert set(study.sizes) == {"smoke", "laptop", "full"}
    assert study.sweeps_for("smoke") == ["pa", "pa_lr", "streams", "sparsity"]
    assert {"pa_official", "ctf"} <= set(study.sweeps_for("full"))
    # A size's sweeps: override reaches that sweep only: the sparsity schedule fits the size's epochs.
    sparse = study.sweep_spec("sparsity", "laptop", "/tmp/x")
    assert sparse.model.sparsity is not None and sparse.model.sparsity.schedule.ramp_epochs == 4
    assert study.sweep_spec("pa", "laptop", "/tmp/x").model.sparsity is None
    spec = study.sweep_spec("pa_lr", "smoke", "/tmp/x")
    assert spec.data.format == "synthetic" and spec.train.epochs == 2 and spec.seeds == 2
    assert spec.model.kwargs["pa_noise"] == 0.0 and spec.wandb.mode == "disabled"


@pytest.mark.parametrize(("edit", "where"), [
    (lambda raw: raw["claims"][0]["test"]["a"].update(sweep="nope"), "sweep 'nope'"),
    (lambda raw: raw["sizes"]["smoke"].update(claims=["nope"]), "sizes.smoke.claims"),
    (lambda raw: raw["sizes"]["smoke"].update(seeds=0), "sizes.smoke.seeds"),
    (lambda raw: raw["sweeps"]["pa"].update(search={"model.kwargs.pa_count": {"grd": [1]}}), "sweeps.pa"),
    (lambda raw: raw["claims"][-1].update(id=raw["claims"][0]["id"]), "used twice"),
    (lambda raw: raw["sizes"]["laptop"]["sweeps"].update(sparsty={}), "sizes.laptop.sweeps names 'sparsty'"),
    (lambda raw: raw["claims"][0]["test"].update(rule="noninferiour"), "rule"),
    (lambda raw: raw["claims"][-1]["check"].update(sweeps=["streams", "pa"]), "served check builds its ensemble"),
])
def test_a_bad_study_names_the_field(edit, where: str) -> None:
    raw = copy.deepcopy(yaml.safe_load(STUDY.read_text()))
    edit(raw)
    with pytest.raises(ConfigError, match=where):
        load_study(raw)


def test_the_claims_schema_accepts_a_record_and_refuses_an_unknown_verdict() -> None:
    rec = ClaimRecord(id="x", section="s", claim="c", paper=None, ours=None, verdict="inconclusive",
                      rule="-", reason="not run by this version")
    doc = ClaimsFile(study="s", size="smoke", claims=[rec]).model_dump(mode="json")
    jsonschema.validate(doc, CLAIMS_SCHEMA)
    doc["claims"][0]["verdict"] = "probably"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, CLAIMS_SCHEMA)


def test_a_missing_data_folder_stops_the_run_before_anything_is_written(tmp_path) -> None:
    from skelray.study.runner import run_study

    with pytest.raises(ConfigError, match=r"sweeps.pa at size laptop \(sweep: data.path\)"):
        run_study(STUDY, "laptop", data=str(tmp_path / "nowhere"), storage=str(tmp_path / "runs"))
    with pytest.raises(ConfigError, match="--size"):
        run_study(STUDY, "huge", storage=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


def test_deployed_parameters_count_the_fused_sparse_model_not_its_training_form(tmp_path) -> None:
    """A sparse trial deploys the non-zero weights of its inference form (compacted, then fused):
    fusing sums the Rep-TCN branches' kernels, so it keeps more weights than any one branch's
    mask. ``measure.sizes`` records that count; a trial of a version that did not is counted
    from its checkpoint."""
    import torch

    from skelray import record
    from skelray.models import create_model, inference_form
    from skelray.sparsity import on_epoch_start, sparsify
    from skelray.study.claims import deployed_params
    from skelray.train import measure

    torch.manual_seed(0)
    dense = create_model("hpigcn_rp", num_classes=4, width=0.25)
    sizes = measure.sizes(dense, (1, 8, 25, 3))
    assert sizes[record.NONZERO_PARAMS] == pytest.approx(sizes[record.PARAMS], rel=1e-2)  # untrained zero biases
    sparse = sparsify(create_model("hpigcn_rp", num_classes=4, width=0.25), 0.95)
    on_epoch_start(sparse, 0)
    got = measure.sizes(sparse, (1, 8, 25, 3))[record.NONZERO_PARAMS]
    assert got == measure.nonzero_params(inference_form(sparse))
    assert got < 0.5 * sizes[record.PARAMS]  # most weights are gone once deployed
    row = {record.PARAMS: 1000.0, record.NONZERO_PARAMS: 300.0}
    assert deployed_params(row) == 300.0
    assert deployed_params({record.PARAMS: 1000.0, record.NONZERO_PARAMS: None}) == 1000.0  # dense, old version


def _served(tmp_path: Path, **fields) -> ClaimRecord:
    """Claim 6's record from a served.json holding ``fields`` (none: no file)."""
    claim = next(c for c in load_study(STUDY).claims if c.id == "served_equals_offline")
    if fields:
        (tmp_path / "served.json").write_text(json.dumps({"kind": "skelray-study-served", **fields}))
    return _served_record(claim, tmp_path, epochs=2)


SERVED = {"ensemble": "streams-ensemble", "clips": 40, "http_top1": 0.75, "offline_top1": 0.75,
          "builder_top1": 0.75, "differing": 0, "differing_clips": [], "max_prob_diff": 2e-7, "per_request": 8,
          "concurrency": 4, "graph": "fused", "http_s": 1.5, "error": None}


def test_served_claim_without_its_file_is_inconclusive_and_says_to_resume(tmp_path) -> None:
    rec = _served(tmp_path)
    assert rec.verdict == INCONCLUSIVE and "not run yet" in rec.reason and "resume the study" in rec.reason
    assert rec.ours is None


def test_served_claim_with_a_recorded_error_is_inconclusive_and_gives_the_message(tmp_path) -> None:
    rec = _served(tmp_path, sweep="streams", error="serving the bundle: application skelray is DEPLOY_FAILED")
    assert rec.verdict == INCONCLUSIVE and "application skelray is DEPLOY_FAILED" in rec.reason
    assert "delete served.json" in rec.reason


def test_served_claim_with_a_differing_clip_is_not_held_and_says_how_many(tmp_path) -> None:
    rec = _served(tmp_path, **{**SERVED, "differing": 1, "differing_clips": ["s7"], "http_top1": 0.725})
    assert rec.verdict == NOT_HELD and "1 of 40 clips" in rec.reason, rec.reason
    assert rec.ours is not None and rec.ours.difference.mean == pytest.approx(-0.025)


def test_served_claim_held_names_both_top1s_and_the_clips(tmp_path) -> None:
    rec = _served(tmp_path, **SERVED)
    assert rec.verdict == HELD and "75.00%" in rec.reason and "40 clips" in rec.reason, rec.reason
    assert rec.ours is not None and rec.ours.a.n == 40 and rec.ours.a.low is None
    assert rec.ours.a.per_seed == {"streams-ensemble": 0.75} and rec.ours.counted == "clips"
    other = _served(tmp_path, **{**SERVED, "builder_top1": 0.8})  # every clip agrees, the figure does not
    assert other.verdict == NOT_HELD and "80.00%" in other.reason
