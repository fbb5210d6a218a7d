"""The sweep engine on a real local Ray: results store, W&B offline runs, ASHA, resume, --more."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import yaml
from typer.testing import CliRunner

from skelray.cli import app
from skelray.console import make_console
from skelray.errors import ConfigError
from skelray.runtime import start_ray
from skelray.sweep.results import Location, read_results
from skelray.sweep.runner import resume_sweep, run_sweep
from skelray.sweep.spec import load_sweep
from skelray.sweep.tracking import offline_runs, read_offline_run


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    started = start_ray(num_cpus=2, object_store_memory=200 * 2**20)
    yield
    if started:
        ray.shutdown()


def test_grid_sweep_writes_every_trial_and_epoch(tmp_path, tiny_sweep, monkeypatch):
    secret = "sk-skelray-test-0123456789abcdef"
    monkeypatch.setenv("WANDB_API_KEY", secret)  # present, yet the sweep asks for offline runs
    spec = load_sweep(tiny_sweep("grid", str(tmp_path)))
    outcome = run_sweep(spec)
    trials, epochs = read_results(outcome.sweep_dir)
    assert trials.num_rows == 2
    assert set(trials.column("status").to_pylist()) == {"TERMINATED"}
    assert sorted(trials.column("config.model.kwargs.pa_count").to_pylist()) == [1, 2]
    assert sorted(trials.column("trial_name").to_pylist()) == ["t00000-pa_count=1", "t00001-pa_count=2"]
    assert epochs.num_rows == 4
    for key in ("params", "macs", "latency_ms_b1"):
        assert all(v is not None and v > 0 for v in trials.column(key).to_pylist())
    for key in ("best.val/top1", "best.test/top1"):
        assert all(v is not None and 0 <= v <= 1 for v in trials.column(key).to_pylist())
    # The best checkpoint holds the logits the ensemble builder needs.
    for row in trials.to_pylist():
        ckpt = Path(outcome.sweep_dir) / row["run"] / row["trial_name"] / row["best_checkpoint"]
        assert (ckpt / "logits.npz").is_file() and (ckpt / "state.pt").is_file()
    # W&B: one offline run per trial, grouped by sweep, holding every epoch.
    runs = [read_offline_run(p) for p in offline_runs(Location.parse(outcome.sweep_dir))]
    assert sorted(r["name"] for r in runs) == sorted(trials.column("trial_name").to_pylist())
    for run in runs:
        assert run["group"] == "grid"
        assert [h["epoch"] for h in run["history"]] == [1, 2]
        assert run["config"]["model"]["name"] == "hpigcn_rp"
        assert "val/top1" in run["summary"]
    # The key is read from the environment only: nothing in the sweep folder holds it.
    for path in Path(outcome.sweep_dir).rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    per_class = json.loads(trials.column("best.val/per_class")[0].as_py())
    assert len(per_class) == 4 and all(0 <= a <= 1 for a in per_class)

    # Running the same sweep again would mix two runs in one folder: refused, nothing touched.
    with pytest.raises(ConfigError, match="already exists.*resume"):
        run_sweep(spec)

    # The CLI reads the store back: leaderboard and the three plots.
    result = CliRunner().invoke(app, ["sweep", "results", outcome.sweep_dir])
    assert result.exit_code == 0, result.output
    assert "t00000-pa_count=1" in result.output and "leaderboard" in result.output
    plots = Path(outcome.sweep_dir) / "results" / "plots"
    assert sorted(p.name for p in plots.glob("*.png")) == [
        "accuracy_per_epoch.png", "accuracy_vs_latency.png", "accuracy_vs_params.png"]


def test_asha_stops_trials_early(tmp_path, tiny_sweep):
    # One trial at a time so the order is fixed, and a metric that ranks trials without noise
    # (the learning rate after epoch 1 is proportional to the base rate): the first trial sets
    # the bar at the first rung, and the two below it are stopped there.
    spec = load_sweep(tiny_sweep(
        "asha", str(tmp_path), train={"epochs": 4, "batch_size": 8, "latency_batches": [1]},
        search={"train.lr": {"grid": [0.05, 0.01, 0.001]}}, max_concurrent=1, metric="lr", mode="max",
        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2}))
    trials, epochs = read_results(run_sweep(spec).sweep_dir)
    by_lr = {r["config.train.lr"]: r for r in trials.to_pylist()}
    assert by_lr[0.05]["epochs_run"] == 4 and by_lr[0.05]["status"] == "TERMINATED"
    for lr in (0.01, 0.001):
        assert by_lr[lr]["epochs_run"] == 1 and by_lr[lr]["status"] == "STOPPED"
    assert epochs.num_rows == 6


def test_scope_last_keeps_the_latest_checkpoint_and_tests_on_the_named_epochs(tmp_path, tiny_sweep):
    # The learning rate falls every epoch (warm-up 0, cosine), so by "lr" the best epoch is the
    # first: scope all would keep epoch 1's checkpoint. Scope last keeps the most recent one.
    spec = load_sweep(tiny_sweep(
        "scope", str(tmp_path), train={"epochs": 4, "batch_size": 8, "latency_batches": [1], "test_every": 2},
        search={}, metric="lr", mode="max", scope="last", checkpoint={"keep": 1}))
    trials, epochs = read_results(run_sweep(spec).sweep_dir)
    (row,) = trials.to_pylist()
    lrs = {e["epoch"]: e["lr"] for e in epochs.to_pylist()}
    assert lrs[1] > lrs[4] and row["score"] == lrs[4]
    assert row["best_epoch"] == 4 and row["best.test/top1"] is not None
    ckpts = sorted((tmp_path / "scope" / "run-0" / row["trial_name"]).glob("checkpoint_*"))
    assert len(ckpts) == 1 and json.loads((ckpts[0] / "trial.json").read_text())["epoch"] == 4
    assert [e["epoch"] for e in epochs.to_pylist() if e.get("test/top1") is not None] == [2, 4]
    assert all(e.get("val/top1") is not None for e in epochs.to_pylist())


def test_target_ends_the_whole_sweep(tmp_path, tiny_sweep):
    # One trial at a time and a metric known in advance: the first trial reaches the target at
    # its first epoch, so it stops there and the other two never start.
    spec = load_sweep(tiny_sweep("target", str(tmp_path), search={"model.kwargs.pa_count": {"grid": [1, 2, 3]}},
                                 max_concurrent=1, metric="epoch", mode="max", target=1))
    outcome = run_sweep(spec)  # Ray's own W&B callback would wait 30 min here for the cut-short run
    trials, epochs = read_results(outcome.sweep_dir)
    assert epochs.num_rows == 1
    ran = [r for r in trials.to_pylist() if r["epochs_run"]]
    assert [(r["trial_name"], r["epochs_run"]) for r in ran] == [("t00000-pa_count=1", 1)]
    (run,) = [read_offline_run(p) for p in offline_runs(Location.parse(outcome.sweep_dir))]
    assert [h["epoch"] for h in run["history"]] == [1]


@pytest.fixture
def busy_cpus():
    """Two processes spinning beside the test (one per core of a 2-core CI machine), each
    bounded to 120 s and stopped when the test ends: the contention under which W&B's writer
    used to be killed before it flushed."""
    spin = "import time\nend = time.monotonic() + 120\nwhile time.monotonic() < end:\n    pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2)]
    yield
    for p in procs:
        p.kill()
        p.wait()


def test_target_under_cpu_contention_keeps_every_wandb_epoch(tmp_path, tiny_sweep, busy_cpus):
    # Two trials at once, stopped together when the first reaches epoch 2: each W&B run holds
    # exactly the epochs Tune recorded for its trial, the cut-short one's included.
    spec = load_sweep(tiny_sweep("contended", str(tmp_path), search={"model.kwargs.pa_count": {"grid": [1, 2, 3]}},
                                 train={"epochs": 3, "batch_size": 8, "lr": 0.05, "latency_batches": [1]},
                                 max_concurrent=2, metric="epoch", mode="max", target=2))
    log = io.StringIO()  # not a terminal, as a log file: a progress line per epoch
    outcome = run_sweep(spec, console=make_console(file=log))
    _, epochs = read_results(outcome.sweep_dir)
    recorded: dict[str, list[int]] = {}
    for row in epochs.to_pylist():
        recorded.setdefault(row["trial_name"], []).append(row["epoch"])
        assert re.search(rf"\] epoch  {re.escape(row['trial_name'])}  {row['epoch']}/3  epoch={row['epoch']}  "
                         r"val/top1=[0-9.]+  train/loss=[0-9.]+", log.getvalue()), log.getvalue()
    assert max(e for es in recorded.values() for e in es) == 2
    runs = {r["name"]: [h["epoch"] for h in r["history"]]
            for r in (read_offline_run(p) for p in offline_runs(Location.parse(outcome.sweep_dir)))}
    assert set(recorded) <= set(runs)
    for name, history in runs.items():  # a trial stopped before its first epoch: a run, no history
        assert history == sorted(recorded.get(name, [])), name


def test_diverging_trial_stops_itself(tmp_path, tiny_sweep):
    spec = load_sweep(tiny_sweep("diverge", str(tmp_path), train={"epochs": 3, "batch_size": 8, "lr": 1e4, "latency_batches": [1]},
                                 search={}))
    trials, _ = read_results(run_sweep(spec).sweep_dir)
    (row,) = trials.to_pylist()
    assert row["status"] == "DIVERGED" and row["epochs_run"] < 3


def _finished(run_dir: Path) -> int:
    done = 0
    for result in run_dir.glob("t*/result.json"):
        if len(result.read_text().splitlines()) >= 2:
            done += 1
    return done


def test_killed_driver_then_resume_and_more(tmp_path, tiny_sweep):
    spec_dict = tiny_sweep("resumable", str(tmp_path), search={"model.kwargs.pa_count": {"grid": [1, 2, 3]}},
                           max_concurrent=1, train={"epochs": 2, "batch_size": 16, "latency_batches": [1]})
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(spec_dict))
    address = ray.get_runtime_context().gcs_address
    driver = subprocess.Popen([sys.executable, "-m", "skelray.cli", "sweep", "run", str(sweep_file),
                               "--address", address], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = tmp_path / "resumable" / "run-0"
    deadline = time.monotonic() + 240
    while _finished(run_dir) < 1 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.5)
    assert _finished(run_dir) >= 1, "the driver finished no trial in time"
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    finished_before = {p.parent.name: sorted(c.name for c in p.parent.glob("checkpoint_*"))
                       for p in run_dir.glob("t*/result.json") if len(p.read_text().splitlines()) >= 2}
    assert 1 <= len(finished_before) < 3  # killed mid-sweep

    outcome = resume_sweep(str(tmp_path / "resumable"))
    trials, epochs = read_results(outcome.sweep_dir)
    assert trials.num_rows == 3 and set(trials.column("status").to_pylist()) == {"TERMINATED"}
    for name, checkpoints in finished_before.items():
        # A finished trial is not trained again: no new checkpoint, one row per epoch.
        assert sorted(c.name for c in (run_dir / name).glob("checkpoint_*")) == checkpoints
        assert sum(1 for r in epochs.to_pylist() if r["trial_name"] == name) == 2

    # A grid has nothing new to draw: --more 1 replicates it with a new training seed.
    outcome = resume_sweep(str(tmp_path / "resumable"), more=1)
    trials, _ = read_results(outcome.sweep_dir)
    assert trials.num_rows == 6
    added = [r for r in trials.to_pylist() if r["run"] == "run-1"]
    assert len(added) == 3 and {r["config.train.seed"] for r in added} == {1000}
    assert {r["status"] for r in added} == {"TERMINATED"}


def test_resume_reruns_a_first_run_that_stopped_before_tune_saved_anything(tmp_path, tiny_sweep, monkeypatch):
    """The driver recorded run-0 in sweep_state.json, then stopped before Tune wrote any state:
    resume runs it, instead of calling the sweep finished with no trial."""
    import skelray.sweep.runner as runner

    spec = load_sweep(tiny_sweep("unsaved", str(tmp_path), train={"epochs": 1, "batch_size": 16,
                                                                   "latency_batches": [1]}))

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C after the state was written, before the Tuner started

    with monkeypatch.context() as m:
        m.setattr(runner, "_tuner", stopped)
        with pytest.raises(KeyboardInterrupt):
            run_sweep(spec)
    sweep_dir = tmp_path / "unsaved"
    state = json.loads((sweep_dir / "sweep_state.json").read_text())
    assert state["runs"] == ["run-0"] and not state["finished"]

    out = io.StringIO()
    outcome = resume_sweep(str(sweep_dir), console=make_console(file=out))
    assert "starting it again" in out.getvalue()
    trials, _ = read_results(outcome.sweep_dir)
    assert trials.num_rows == 2 and set(trials.column("status").to_pylist()) == {"TERMINATED"}
    assert json.loads((sweep_dir / "sweep_state.json").read_text())["finished"]
