"""The trial and sweep records (skelray.record): round trips, the on-disk format earlier versions
wrote, clear errors for missing or damaged files, and atomic writes of the sweep state."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

from skelray import record
from skelray.errors import DataError
from skelray.record import Logits, ModelRecord, SweepState, TrialRecord


def _record() -> TrialRecord:
    rng = np.random.default_rng(3)
    rng.random(5)  # a state that is not the seed's
    model = ModelRecord(name="hpigcn_rp", kwargs={"pa_count": 2, "width": 0.5}, num_classes=4,
                        layout="kinect_v1_20", in_channels=3, num_persons=1,
                        sparsity={"level": 0.6, "granularity": "channel", "scope": "all", "schedule": None})
    return TrialRecord(epoch=2, rng=rng.bit_generator.state,
                       metrics={"epoch": 2, "val/top1": np.float32(0.75), "train/loss": 1.25, "params": 1e4},
                       sizes={"params": 1e4, "macs": 2e6, "latency_ms_b1": 1.5}, model=model,
                       preprocess={"layout": "kinect_v1_20", "frames": 8, "stream": "j"},
                       class_names=["a", "b", "c", "d"], per_class={"val": [1.0, 0.5, 0.5, 1.0],
                                                                    "test": [0.0, 1.0, 1.0, 1.0]})


def _old_trial_json(rec: TrialRecord) -> str:
    """trial.json exactly as skelray.train.trial wrote it before the record module existed."""
    description = {"model": rec.model.to_dict(), "preprocess": rec.preprocess, "class_names": rec.class_names}
    per_class = {f"{split}_per_class": acc for split, acc in rec.per_class.items()}
    return json.dumps({"epoch": rec.epoch, "rng": rec.rng, "metrics": rec.metrics, "sizes": rec.sizes,
                       **description, **per_class}, default=float)


def test_checkpoint_record_round_trips_in_the_format_earlier_versions_wrote(tmp_path: Path) -> None:
    rec = _record()
    logits = Logits(np.arange(12, dtype=np.float32).reshape(3, 4), np.array([0, 1, 3]),
                    np.ones((2, 4), dtype=np.float32), np.array([2, 2]))
    record.save_checkpoint_record(tmp_path, rec, logits)
    assert (tmp_path / record.TRIAL_FILE).read_text() == _old_trial_json(rec)
    back = record.load_checkpoint_record(tmp_path)
    assert back.to_text() == rec.to_text()
    assert back.model == rec.model and back.model.sparsity_level == 0.6
    assert back.per_class["test"] == [0.0, 1.0, 1.0, 1.0] and back.metrics["val/top1"] == 0.75
    np.random.default_rng().bit_generator.state = back.rng  # a usable NumPy state
    with np.load(tmp_path / record.LOGITS_FILE) as z:  # the arrays and key order np.savez gave before
        assert z.files == ["val_logits", "val_labels", "test_logits", "test_labels"]
    read = record.load_logits(tmp_path)
    for name in ("val_logits", "val_labels", "test_logits", "test_labels"):
        np.testing.assert_array_equal(getattr(read, name), getattr(logits, name))
    assert record.has_checkpoint_record(tmp_path)


def test_logits_without_a_test_evaluation_leave_the_test_arrays_out(tmp_path: Path) -> None:
    record.save_logits(tmp_path, Logits(np.zeros((2, 3), dtype=np.float32), np.array([0, 1])))
    with np.load(tmp_path / record.LOGITS_FILE) as z:
        assert z.files == ["val_logits", "val_labels"]
    read = record.load_logits(tmp_path)
    assert read.test_logits is None and read.split("test") is None and read.split("val") is not None


def test_partial_and_foreign_records_read_and_keep_what_they_hold() -> None:
    # What a hand-made checkpoint (tests/sparsity) or a later version might write.
    text = json.dumps({"model": _record().model.to_dict(), "note": {"from": "a later version"}})
    rec = TrialRecord.from_text(text, "x/trial.json")
    assert (rec.epoch, rec.rng, rec.metrics, rec.model.name) == (0, None, {}, "hpigcn_rp")
    assert rec.extra == {"note": {"from": "a later version"}}
    assert json.loads(rec.to_text())["note"] == {"from": "a later version"}
    bare = TrialRecord.from_text(json.dumps({"epoch": 3, "metrics": {"val/top1": 0.5}}), "y/trial.json")
    assert bare.model is None and bare.metrics == {"val/top1": 0.5}
    with pytest.raises(DataError, match=r"y/trial.json: has no 'model' section"):
        bare.require_model("y/trial.json")


@pytest.mark.parametrize(("content", "problem"), [
    (None, "does not exist"),
    ('{"epoch": 2, "metr', "is not valid JSON"),
    ("[1, 2]", "must hold a JSON object, not a list"),
    ('{"epoch": "two"}', "'epoch' must be an integer, not a string"),
    ('{"metrics": [1]}', "'metrics' must be a JSON object, not a list"),
    ('{"model": {"name": "stgcn"}}', "'model' lacks num_classes, layout, in_channels, num_persons"),
])
def test_a_missing_or_damaged_trial_json_is_a_data_error_naming_it(tmp_path: Path, content, problem) -> None:
    if content is not None:
        (tmp_path / record.TRIAL_FILE).write_text(content)
    path = str(tmp_path / record.TRIAL_FILE)
    with pytest.raises(DataError, match=problem) as err:
        record.load_checkpoint_record(tmp_path)
    assert err.value.where == path and path in str(err.value)


def test_a_missing_or_damaged_logits_file_is_a_data_error_naming_it(tmp_path: Path) -> None:
    path = str(tmp_path / record.LOGITS_FILE)
    with pytest.raises(DataError, match="does not exist") as err:
        record.load_logits(tmp_path)
    assert err.value.where == path
    (tmp_path / record.LOGITS_FILE).write_bytes(b"PK\x03\x04 not really a zip file")
    with pytest.raises(DataError, match=r"is not a readable \.npz file") as err:
        record.load_logits(tmp_path)
    assert err.value.where == path
    np.savez(tmp_path / record.LOGITS_FILE, test_logits=np.zeros((1, 2)), test_labels=np.zeros(1))
    with pytest.raises(DataError, match=r"has no val_logits, val_labels.*data.split.val") as err:
        record.load_logits(tmp_path)
    assert err.value.where == path


def test_params_and_result_log_read_as_tune_wrote_them(tmp_path: Path) -> None:
    params = {"train": {"epochs": 2}, "model": {"name": "stgcn"}}
    (tmp_path / record.PARAMS_FILE).write_text(json.dumps(params))
    assert record.load_params(tmp_path)["train"] == {"epochs": 2}
    rows = record.epochs_from_text('{"epoch": 1}\n\n{"epoch": 2}\n', "r/result.json")
    assert [r["epoch"] for r in rows] == [1, 2]
    with pytest.raises(DataError, match=r"r/result.json: line 2: is not valid JSON"):
        record.epochs_from_text('{"epoch": 1}\n{"epo', "r/result.json")
    with pytest.raises(DataError, match=r"params\.json: does not exist"):
        record.load_params(tmp_path / "elsewhere")


def test_the_metric_list_is_what_the_sweep_checks_metric_names_against() -> None:
    from skelray.sweep import load_sweep
    from skelray.sweep._validate import TUNE_METRICS, reported_metrics

    spec = load_sweep({"name": "m", "data": {"format": "synthetic", "layout": "kinect_v1_20"},
                       "model": {"name": "stgcn"}, "train": {"latency_batches": [1, 8]},
                       "wandb": {"mode": "disabled"}}, check_paths=False)
    assert set(record.reported_metrics([1, 8])) == set(reported_metrics(spec)) - set(TUNE_METRICS)
    assert record.SIZE_KEYS == ("params", "nonzero_params", "macs", "latency_ms_b1", "latency_ms_b64")
    assert record.VAL_TOP1 == "val/top1" and record.latency_key(64) == "latency_ms_b64"


# -- sweep_state.json ---------------------------------------------------------------------------
def _old_state_json(state: SweepState) -> str:
    """sweep_state.json exactly as the runner wrote it before the record module existed."""
    return json.dumps({"name": state.name, "metric": state.metric, "mode": state.mode, "scope": state.scope,
                       "runs": state.runs, "finished": state.finished})


def test_sweep_state_round_trips_in_the_old_format_and_defaults_when_absent(tmp_path: Path) -> None:
    assert record.load_sweep_state(tmp_path) == SweepState()  # a bare Tune folder
    state = SweepState(name="s", metric="val/loss", mode="min", scope="last-2-avg", runs=["run-0", "run-1"],
                       finished=True)
    record.save_sweep_state(tmp_path, state)
    assert (tmp_path / record.SWEEP_STATE_FILE).read_text() == _old_state_json(state)
    assert record.load_sweep_state(tmp_path) == state
    # A state file written before scope existed reads with Tune's default scope.
    (tmp_path / record.SWEEP_STATE_FILE).write_text('{"name": "s", "metric": "val/top1", "mode": "max", '
                                                   '"runs": ["run-0"], "finished": false}')
    assert record.load_sweep_state(tmp_path).scope == "all"


def test_a_damaged_sweep_state_is_a_data_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / record.SWEEP_STATE_FILE).write_text('{"name": "s", "runs": "run-0"}')
    with pytest.raises(DataError, match="'runs' must be a list") as err:
        record.load_sweep_state(tmp_path)
    assert err.value.where == str(tmp_path / record.SWEEP_STATE_FILE) and '"runs": ["run-0"' in err.value.fix


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != record.SWEEP_STATE_FILE)


def test_a_failing_state_write_leaves_the_old_state_whole_and_no_temp_file(tmp_path: Path) -> None:
    before = SweepState(name="s", runs=["run-0"])
    record.save_sweep_state(tmp_path, before)
    mode = os.stat(tmp_path / record.SWEEP_STATE_FILE).st_mode
    # Serialisation fails before anything is written ...
    with pytest.raises(TypeError):
        record.save_sweep_state(tmp_path, SweepState(name="s", runs=["run-0", object()]))
    # ... and a write fails half-way through (a lone surrogate cannot be encoded as UTF-8).
    with pytest.raises(UnicodeEncodeError):
        record.write_text_atomic(tmp_path / record.SWEEP_STATE_FILE, '{"name": "' + "x" * 10000 + '\ud800"}')
    assert record.load_sweep_state(tmp_path) == before
    assert _leftovers(tmp_path) == []
    record.save_sweep_state(tmp_path, SweepState(name="s", runs=["run-0", "run-1"]))
    assert record.load_sweep_state(tmp_path).runs == ["run-0", "run-1"]
    assert os.stat(tmp_path / record.SWEEP_STATE_FILE).st_mode == mode  # not the 0600 of a mkstemp file
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("filesystem", ["local", "other"])
def test_the_results_store_writes_and_reads_the_state_on_any_filesystem(tmp_path: Path, filesystem) -> None:
    from skelray.sweep.results import Location, sweep_state, write_sweep_state

    if filesystem == "local":
        sweep = Location.parse(str(tmp_path / "sweep"))
    else:  # not a LocalFileSystem, so written beside and moved, as on an object store
        sweep = Location(pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()), "sweep")
    assert sweep_state(sweep) == SweepState()
    state = SweepState(name="s", mode="min", runs=["run-0"])
    write_sweep_state(sweep, state)
    write_sweep_state(sweep, SweepState(name="s", mode="min", runs=["run-0", "run-1"]))
    assert sweep_state(sweep).runs == ["run-0", "run-1"]
    assert (tmp_path / "sweep" / record.SWEEP_STATE_FILE).read_text() == _old_state_json(sweep_state(sweep))
    assert _leftovers(tmp_path / "sweep") == []
    with pytest.raises(UnicodeEncodeError):
        sweep.join(record.SWEEP_STATE_FILE).write_text("\ud800")
    assert sweep_state(sweep).runs == ["run-0", "run-1"] and _leftovers(tmp_path / "sweep") == []
