"""Cost measured once per architecture, where nothing else runs; constraints known before training.

The structure key (no Ray); then real tiny sweeps on a local Ray: four trials of one network
share one measurement, a second sweep reuses the machine cache, constraints drop configs
before any trains.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray
import torch

from skelray import record
from skelray.errors import ConfigError
from skelray.models import create_model, inference_form
from skelray.runtime import start_ray
from skelray.sweep import costs
from skelray.sweep.results import read_results
from skelray.sweep.runner import run_sweep
from skelray.sweep.spec import load_sweep
from skelray.train.measure import structure_key

SHAPE = (1, 8, 20, 3)  # one clip: persons, frames, joints, channels


def _key(seed: int = 0, shape: tuple[int, ...] = SHAPE, **kwargs) -> str:
    torch.manual_seed(seed)
    options = {"num_classes": 4, "layout": "kinect_v1_20", "in_channels": 3, "num_persons": shape[0],
               "width": 0.25, "pa_count": 2, **kwargs}
    return structure_key(inference_form(create_model("hpigcn_rp", **options)), shape)


def test_structure_key_is_equal_for_equal_architectures_and_differs_for_any_change() -> None:
    base = _key()
    assert _key(seed=1) == base  # other weights, same architecture
    torch.manual_seed(2)
    trained = create_model("hpigcn_rp", num_classes=4, layout="kinect_v1_20", in_channels=3, num_persons=1,
                           width=0.25, pa_count=2)
    with torch.no_grad():
        for p in trained.parameters():
            p.mul_(3.0).add_(0.5)
    assert structure_key(inference_form(trained), SHAPE) == base
    changed = {
        "width": _key(width=0.5),
        "kernel": _key(tcn_kernel=9),
        "mirror_tta": _key(mirror_tta=True),
        "frames": _key(shape=(1, 16, 20, 3)),
        "persons": _key(shape=(2, 8, 20, 3)),
        "classes": _key(num_classes=5),
    }
    for what, key in changed.items():
        assert key != base, what
    assert len(set(changed.values())) == len(changed)
    # Any module tree: a conv's stride or kernel changes the key, its weights do not.
    def conv(**kw) -> str:
        torch.manual_seed(kw.pop("seed", 0))
        return structure_key(torch.nn.Sequential(torch.nn.Conv2d(3, 8, **{"kernel_size": 3, **kw})), (3, 16, 16))
    assert conv() == conv(seed=5)
    assert len({conv(), conv(stride=2), conv(kernel_size=5), conv(dilation=2)}) == 4


def test_structure_key_follows_the_fused_pa_shape_and_compaction() -> None:
    from skelray import sparsity

    # PA matrices are summed into one at fusion: any pa_count gives the same fused network,
    # so one key; a layout with other joints gives the fused PA another shape, so another key.
    assert _key(pa_count=1) == _key(pa_count=3) == _key()
    assert _key(layout="ntu25", shape=(1, 8, 25, 3)) != _key(shape=(1, 8, 25, 3), layout="ntu25", width=0.5)
    assert _key(layout="ntu25", shape=(1, 8, 25, 3)) != _key()
    # Channel sparsity compacts the inference form into fewer channels: another key.
    torch.manual_seed(0)
    options = {"num_classes": 4, "layout": "kinect_v1_20", "in_channels": 3, "num_persons": 1, "width": 0.5}
    dense = inference_form(create_model("hpigcn_rp", **options))
    model = sparsity.sparsify(create_model("hpigcn_rp", **options), 0.5, granularity="channel")
    sparsity.on_epoch_start(model, 0)
    compacted = inference_form(model)
    assert sum(p.numel() for p in compacted.parameters()) < sum(p.numel() for p in dense.parameters())
    assert structure_key(compacted, SHAPE) != structure_key(dense, SHAPE)
    # Element sparsity zeroes weights, not channels: the structure stays the dense one.
    element = sparsity.sparsify(create_model("hpigcn_rp", **options), 0.5, granularity="element")
    sparsity.on_epoch_start(element, 0)
    assert structure_key(inference_form(element), SHAPE) == structure_key(dense, SHAPE)


def test_a_bad_constraint_is_a_config_error_naming_it() -> None:
    base = {"name": "c", "data": {"format": "synthetic", "layout": "kinect_v1_20", "persons": 1},
            "model": {"name": "hpigcn_rp"}, "train": {"latency_batches": [1]}}
    for bad, fix in (("latency_ms_b1 =< 20", "KEY OP NUMBER"), ("latency_ms_b64 <= 20", "latency_batches"),
                     ("parms <= 1e6", "params"), (5, "string")):
        with pytest.raises(ConfigError) as err:
            load_sweep({**base, "constraints": [bad]})
        assert "constraints[0]" in str(err.value) and fix in str(err.value), str(err.value)
    with pytest.raises(ConfigError, match=r"constraints\[1\]"):
        load_sweep({**base, "constraints": ["params <= 1e6", "macs < lots"]})
    with pytest.raises(ConfigError, match="constraints.*optuna"):
        load_sweep({**base, "constraints": ["params <= 1e6"], "searcher": {"type": "optuna"},
                    "search": {"train.lr": {"loguniform": [0.01, 0.1]}}})
    spec = load_sweep({**base, "constraints": ["latency_ms_b1 <= 20", "params<=1e6"]})
    assert spec.constraints == ["latency_ms_b1 <= 20", "params<=1e6"]


def test_validate_says_what_the_constraints_would_drop(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from skelray.cli import app

    monkeypatch.setenv(costs.CACHE_ENV, str(tmp_path / "empty.json"))
    spec = _four_lrs("v", tmp_path, search={"model.kwargs.width": {"grid": [0.25, 1.0]}},
                     constraints=["params <= 3e5"])
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(spec))
    result = CliRunner().invoke(app, ["sweep", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "would drop 1 of 2 configs" in result.output and "width=1.0: params" in result.output
    spec["constraints"] = ["latency_ms_b1 <= 50"]
    path.write_text(json.dumps(spec))
    result = CliRunner().invoke(app, ["sweep", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "would drop 0 of 2" in result.output and "measured at run time" in result.output


def test_a_random_search_is_drawn_before_the_run_with_its_seed(tmp_path) -> None:
    spec = load_sweep(_four_lrs("r", tmp_path, search={"train.lr": {"loguniform": [0.001, 0.1]},
                                                      "model.kwargs.width": {"choice": [0.25, 0.5]},
                                                      "data.stream": {"depends": "model.kwargs.width",
                                                                      "map": {0.25: "j", 0.5: "b"}}},
                                num_samples=5))
    drawn = costs.planned_configs(spec)
    assert len(drawn) == 5 and drawn == costs.planned_configs(spec)
    assert all(0.001 <= c["train"]["lr"] <= 0.1 and c["model"]["kwargs"]["width"] in (0.25, 0.5) for c in drawn)
    assert all(c["data"]["stream"] == {0.25: "j", 0.5: "b"}[c["model"]["kwargs"]["width"]] for c in drawn)
    assert costs.search_point(spec, drawn[0]) == {"train": {"lr": drawn[0]["train"]["lr"]},
                                                  "model": {"kwargs": {"width": drawn[0]["model"]["kwargs"]["width"]}}}


# -- real sweeps ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def machine_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("machine") / "costs.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(costs.CACHE_ENV, str(path))
        started = start_ray(num_cpus=2, object_store_memory=200 * 2**20)
        yield path
        if started:
            ray.shutdown()


def _four_lrs(name: str, storage: Path, **extra) -> dict:
    return {
        "name": name,
        "data": {"format": "synthetic", "layout": "kinect_v1_20", "num_classes": 4, "num_per_class": 6,
                 "frames": 8, "persons": 1, "split": {"train": "train", "val": "val", "test": "test"}},
        "model": {"name": "hpigcn_rp", "kwargs": {"pa_count": 1, "width": 0.25}},
        "train": {"epochs": 1, "batch_size": 8, "latency_batches": [1], "precise_bn_batches": 0},
        "search": {"train.lr": {"grid": [0.01, 0.02, 0.05, 0.1]}},
        "resources": {"cpu": 1}, "storage": str(storage), "wandb": {"mode": "disabled"}, **extra,
    }


def test_identical_networks_share_one_measurement_and_the_machine_cache(tmp_path, machine_cache) -> None:
    outcome = run_sweep(load_sweep(_four_lrs("same", tmp_path)))
    trials, _ = read_results(outcome.sweep_dir)
    assert trials.num_rows == 4 and set(trials.column("status").to_pylist()) == {"TERMINATED"}
    latency = trials.column("latency_ms_b1").to_pylist()
    assert len(set(latency)) == 1 and latency[0] > 0
    assert len(set(trials.column(record.STRUCTURE).to_pylist())) == 1
    assert set(trials.column("latency_basis").to_pylist()) == {record.LATENCY_MEASURED_ALONE}
    table = costs.load_costs(outcome_location(outcome.sweep_dir))
    assert list(table.entries) == trials.column(record.STRUCTURE).to_pylist()[:1]
    rec = table.entries[latency and trials.column(record.STRUCTURE)[0].as_py()]
    assert rec.latency[1].median_ms == latency[0] and rec.latency[1].repeats >= 3
    assert not rec.from_machine_cache
    # Every trial reported that one number too (what the live view shows).
    for row in trials.to_pylist():
        lines = (Path(outcome.sweep_dir) / row["run"] / row["trial_name"] / record.RESULT_FILE).read_text()
        assert {json.loads(line)["latency_ms_b1"] for line in lines.splitlines()} == {latency[0]}
    cached = record.machine_costs_from_text(machine_cache.read_text(), str(machine_cache))
    assert [list(t.entries) for t in cached.values()] == [list(table.entries)]

    # A second sweep on this machine: the same structure comes from the machine cache.
    stamp = machine_cache.stat().st_mtime_ns
    again = run_sweep(load_sweep(_four_lrs("again", tmp_path, search={"train.lr": {"grid": [0.03, 0.07]}})))
    trials2, _ = read_results(again.sweep_dir)
    assert trials2.column("latency_ms_b1").to_pylist() == [latency[0]] * 2
    rec2 = costs.load_costs(outcome_location(again.sweep_dir)).entries[rec.structure]
    assert rec2.from_machine_cache and rec2.measured_at == rec.measured_at
    assert machine_cache.stat().st_mtime_ns == stamp  # nothing new was measured or written


def test_constraints_drop_configs_before_any_trains(tmp_path, machine_cache) -> None:
    spec = _four_lrs("cons", tmp_path, search={"model.kwargs.width": {"grid": [0.25, 0.5, 1.0]}})
    params = {}
    for width in (0.25, 0.5, 1.0):
        cfg = load_sweep(spec).trial_config({"model.kwargs.width": width})
        params[width] = costs.build_structure(cfg).sizes[record.PARAMS]
    assert params[0.25] < params[0.5] < params[1.0]
    limit = (params[0.5] + params[1.0]) / 2  # width 1.0 cannot fit
    spec["constraints"] = [f"params <= {limit:.0f}", "latency_ms_b1 <= 1e9"]
    outcome = run_sweep(load_sweep(spec))
    trials, _ = read_results(outcome.sweep_dir)
    assert trials.num_rows == 2  # the third config never trained
    assert sorted(trials.column("config.model.kwargs.width").to_pylist()) == [0.25, 0.5]
    assert all(p <= limit for p in trials.column(record.PARAMS).to_pylist())
    assert not list((Path(outcome.sweep_dir) / "run-0").glob("*width=1.0*"))
    # Nothing fits: the sweep stops before it starts, and says so.
    spec.update(name="none", constraints=["params <= 10"])
    with pytest.raises(ConfigError, match=r"constraints: every one of the 3 configs breaks"):
        run_sweep(load_sweep(spec))
    assert not (tmp_path / "none" / "run-0").exists()


def outcome_location(path: str):
    from skelray.sweep.results import Location

    return Location.parse(path)
