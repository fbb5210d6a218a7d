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
