"""The results store built from trial folders alone, without Ray."""

from __future__ import annotations

import json

from skelray.sweep.results import collect


def _trial(run_dir, name, epochs, total=2, error=None):
    d = run_dir / name
    d.mkdir(parents=True)
    (d / "params.json").write_text(json.dumps({"train": {"epochs": total}, "model": {"name": "stgcn"}}))
    rows = [{"epoch": e, "val/top1": 0.1 * e, "trial_id": name, "time_total_s": float(e)} for e in range(1, epochs + 1)]
    (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if error:
        (d / "error.txt").write_text(error)


def test_status_and_superseded_folders(tmp_path):
    run = tmp_path / "sweep" / "run-0"
    _trial(run, "t00000-a", 2)
    _trial(run, "t00001-b", 0)  # started, killed before its first epoch ...
    _trial(run, "t00001-b_2af0", 2)  # ... and restarted by resume in a fresh folder
    _trial(run, "t00002-c", 1, error="Failure # 1\nboom")
    _trial(run, "t00003-d", 2, error="Failure # 1\nnode died")  # failed once, then finished
    trials, epochs = collect(str(tmp_path / "sweep"))
    rows = {r["trial_name"]: r for r in trials.to_pylist()}
    assert sorted(rows) == ["t00000-a", "t00001-b_2af0", "t00002-c", "t00003-d"]
    assert rows["t00000-a"]["status"] == "TERMINATED"
    assert rows["t00002-c"]["status"] == "ERROR" and "boom" in rows["t00002-c"]["error"]
    assert rows["t00003-d"]["status"] == "TERMINATED" and rows["t00003-d"]["failures"] == 1
    assert rows["t00000-a"]["best.val/top1"] == 0.2 and rows["t00000-a"]["best_epoch"] == 2
    assert epochs.num_rows == 7
    assert (tmp_path / "sweep" / "results" / "trials.parquet").is_file()


def test_best_metrics_are_those_of_the_checkpoint_export_uses(tmp_path):
    # Epochs 2, 3 and 4 tie on val/top1; Tune kept the checkpoints of epochs 3 and 4 (the newer
    # of tied ones) and of the last epoch. The row's best.* must describe the checkpoint that
    # ensembling and export load (epoch 4), not the first epoch that reached the top value.
    d = tmp_path / "sweep" / "run-0" / "t00000-a"
    d.mkdir(parents=True)
    (d / "params.json").write_text(json.dumps({"train": {"epochs": 5}}))
    vals, tests = [0.5, 0.9, 0.9, 0.9, 0.8], [0.5, 0.70, 0.75, 0.80, 0.85]
    rows = [{"epoch": e, "val/top1": v, "test/top1": t} for e, (v, t) in enumerate(zip(vals, tests), 1)]
    (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for e in (3, 4, 5):
        ckpt = d / f"checkpoint_{e - 1:06d}"
        ckpt.mkdir()
        (ckpt / "trial.json").write_text(json.dumps({"epoch": e, "metrics": rows[e - 1], "test_per_class": [e]}))
    (row,) = collect(str(tmp_path / "sweep"), metric="val/top1", mode="max")[0].to_pylist()
    assert (row["best_epoch"], row["best_checkpoint"], row["best.test/top1"]) == (4, "checkpoint_000003", 0.80)
    assert json.loads(row["best.test/per_class"]) == [4]
    # Without checkpoints (a trial that errored before its first), ties also go to the later epoch.
    for ckpt in d.glob("checkpoint_*"):
        for f in ckpt.iterdir():
            f.unlink()
        ckpt.rmdir()
    (row,) = collect(str(tmp_path / "sweep"), metric="val/top1", mode="max")[0].to_pylist()
    assert (row["best_epoch"], row["best_checkpoint"]) == (4, None)


def test_pareto_front_keeps_only_undominated_points():
    from skelray.sweep.report import pareto_front

    # (latency, accuracy): the 2nd is dominated by the 1st, the 4th by the 3rd.
    points = [(1.0, 0.80), (2.0, 0.75), (3.0, 0.90), (4.0, 0.85), (5.0, 0.95)]
    assert pareto_front(points) == [0, 2, 4]


def test_scope_score_follows_tune_rules():
    from skelray.sweep.results import scope_score

    vals = [0.5, 0.9, 0.7, 0.6, float("nan"), 0.8]
    assert scope_score(vals, "all", "max") == 0.9
    assert scope_score(vals, "all", "min") == 0.5
    assert scope_score(vals, "last", "max") == 0.8
    assert scope_score(vals, "avg", "max") == sum([0.5, 0.9, 0.7, 0.6, 0.8]) / 5
    assert abs(scope_score(vals, "last-2-avg", "max") - 0.7) < 1e-12  # nan epochs are skipped
    assert scope_score(vals, "last-50-avg", "max") == scope_score(vals, "avg", "max")
    assert scope_score([None, float("nan")], "last", "max") is None


def test_scope_last_judges_a_trial_by_its_last_epochs_and_uses_its_last_checkpoint(tmp_path):
    # A spike at epoch 2 (a noisy validation set, a high learning rate) is the best epoch; with
    # scope last-2-avg the trial is scored on epochs 4-5 and its last checkpoint is the chosen one.
    run = tmp_path / "sweep" / "run-0"
    for name, vals in (("t00000-spiky", [0.5, 0.95, 0.7, 0.8, 0.8]), ("t00001-steady", [0.5, 0.7, 0.8, 0.85, 0.87])):
        d = run / name
        d.mkdir(parents=True)
        (d / "params.json").write_text(json.dumps({"train": {"epochs": 5}}))
        rows = [{"epoch": e, "val/top1": v, **({"test/top1": v - 0.05} if e in (2, 5) else {})}
                for e, v in enumerate(vals, 1)]
        (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        for e in (4, 5):  # Tune keeps the most recent checkpoints when the scope is not all
            ckpt = d / f"checkpoint_{e - 1:06d}"
            ckpt.mkdir()
            (ckpt / "trial.json").write_text(json.dumps({"epoch": e, "metrics": rows[e - 1]}))
    rows = {r["trial_name"]: r for r in collect(str(tmp_path / "sweep"), scope="last-2-avg")[0].to_pylist()}
    spiky, steady = rows["t00000-spiky"], rows["t00001-steady"]
    assert (spiky["best_epoch"], spiky["best_checkpoint"]) == (5, "checkpoint_000004")
    assert abs(spiky["score"] - 0.8) < 1e-9 and abs(steady["score"] - 0.86) < 1e-9
    assert abs(steady["best.test/top1"] - 0.82) < 1e-9  # the last epoch's test, read where it was run
    # Scope all: the spike wins and its epoch is chosen (here without its checkpoint, from the log).
    for d in run.iterdir():
        for ckpt in d.glob("checkpoint_*"):
            (ckpt / "trial.json").unlink()
            ckpt.rmdir()
    rows = {r["trial_name"]: r for r in collect(str(tmp_path / "sweep"), scope="all")[0].to_pylist()}
    assert rows["t00000-spiky"]["score"] == 0.95 and rows["t00000-spiky"]["best_epoch"] == 2


def test_leaderboard_ranks_by_score_in_the_sweeps_mode():
    import pyarrow as pa
    from rich.console import Console

    from skelray.sweep.report import leaderboard

    trials = pa.Table.from_pylist([
        {"trial_name": n, "status": "TERMINATED", "epochs_run": 5, "score": s, "best.val/top1": v}
        for n, s, v in (("low-loss", 0.2, 0.7), ("high-loss", 0.9, 0.9), ("no-score", None, None))])

    def order(mode):
        console = Console(width=200, record=True)
        console.print(leaderboard(trials, mode=mode))
        text = console.export_text()
        return sorted(("low-loss", "high-loss", "no-score"), key=text.index), text

    ranked, text = order("min")
    assert ranked == ["low-loss", "high-loss", "no-score"]
    assert "score" in text  # the score differs from val top-1, so it is shown
    assert order("max")[0] == ["high-loss", "low-loss", "no-score"]


def test_a_damaged_checkpoint_record_is_a_data_error_naming_the_file(tmp_path):
    import pytest

    from skelray.errors import DataError

    _trial(tmp_path / "sweep" / "run-0", "t00000-a", 2)
    ckpt = tmp_path / "sweep" / "run-0" / "t00000-a" / "checkpoint_000001"
    ckpt.mkdir()
    (ckpt / "trial.json").write_text('{"epoch": 2, "metrics": {"val/top1": 0.')  # cut short
    with pytest.raises(DataError, match=r"checkpoint_000001/trial\.json: is not valid JSON") as err:
        collect(str(tmp_path / "sweep"))
    assert err.value.where == str(ckpt / "trial.json")


def test_the_state_a_sweep_ran_with_ranks_its_results(tmp_path):
    from skelray.record import SweepState, save_sweep_state
    from skelray.sweep.results import read_results

    run = tmp_path / "sweep" / "run-0"
    for name, loss in (("t00000-a", 0.9), ("t00001-b", 0.4)):
        d = run / name
        d.mkdir(parents=True)
        (d / "params.json").write_text(json.dumps({"train": {"epochs": 1}}))
        (d / "result.json").write_text(json.dumps({"epoch": 1, "val/loss": loss}) + "\n")
    state = SweepState(name="sweep", metric="val/loss", mode="min", scope="last")
    save_sweep_state(tmp_path / "sweep", state)
    trials, _ = read_results(str(tmp_path / "sweep"))  # no tables yet: collected as the sweep ran
    assert {r["trial_name"]: r["score"] for r in trials.to_pylist()} == {"t00000-a": 0.9, "t00001-b": 0.4}
