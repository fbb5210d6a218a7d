"""A user's own layout, given as a YAML file, goes the whole way: ``data convert`` (a fresh
process), a one-epoch sweep on a real local Ray (``data.layout`` naming the file too),
``skelray export`` (another fresh process) and Ray Serve over HTTP. The layout has a name and a joint
count no built-in layout has, and nothing here registers it: every process learns it from the
store, the trial record or the manifest (``skelray.data.layouts.adopt_layout``). One Ray for
the module."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from ray import serve
from rich.console import Console

from skelray.data import layout_from_dict, list_layouts, synthetic, write_npz
from skelray.errors import ConfigError
from skelray.export import load_bundle
from skelray.runtime import free_port
from skelray.sweep.results import read_results
from skelray.sweep.runner import run_sweep
from skelray.sweep.spec import load_sweep

# Seven joints: no built-in layout has seven, and none is named stick7.
LAYOUT = {"name": "stick7", "joints": ["pelvis", "chest", "head", "left_hand", "right_hand", "left_foot",
                                       "right_foot"],
          "edges": [["chest", "pelvis"], ["head", "chest"], ["left_hand", "chest"], ["right_hand", "chest"],
                    ["left_foot", "pelvis"], ["right_foot", "pelvis"]],
          "center": "pelvis", "description": "a stick figure"}
SKELRAY = str(Path(sys.executable).with_name("skelray"))


def _run(*args: str) -> subprocess.CompletedProcess:
    """A skelray command in a fresh process, which knows only the built-in layouts."""
    proc = subprocess.run([SKELRAY, *args], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _sweep(name: str, storage: Path, data: dict) -> dict:
    from _demo import demo_sweep_spec

    spec = demo_sweep_spec(name, storage, epochs=1, num_per_class=8)
    spec["data"] = {"frames": 8, "persons": 1, "split": {"train": "train", "val": "val", "test": "test"}, **data}
    spec["search"] = {}  # one trial
    return spec


@pytest.fixture(scope="module")
def layout_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("layout") / "stick7.yaml"
    path.write_text(yaml.safe_dump(LAYOUT))
    return path


def _clips(n_per_class: int, seed: int) -> list[np.ndarray]:
    # A Layout object is used as it is, never registered: the test process stays ignorant.
    return [s.keypoints for s in synthetic(4, n_per_class, layout_from_dict(LAYOUT), 12, seed).sequences]


def test_a_layout_file_converts_sweeps_exports_and_serves(tmp_path, local_ray, layout_file):
    assert "stick7" not in list_layouts()
    ds = synthetic(4, 8, layout_from_dict(LAYOUT), 10, seed=0)
    write_npz(ds, tmp_path / "clips.npz")
    store = tmp_path / "store"
    _run("data", "convert", str(tmp_path / "clips.npz"), "--format", "npz", "--layout", str(layout_file),
         "--out", str(store))

    # data.layout may name the file too (the trial checks that it is the store's layout).
    data = {"format": "store", "path": str(store), "layout": str(layout_file)}
    outcome = run_sweep(load_sweep(_sweep("stick", tmp_path / "runs", data)), console=Console(quiet=True))
    trials, _ = read_results(outcome.sweep_dir)
    assert trials.column("status").to_pylist() == ["TERMINATED"], trials.to_pylist()
    row = trials.to_pylist()[0]
    trial_json = Path(outcome.sweep_dir) / row["run"] / row["trial_name"] / row["best_checkpoint"] / "trial.json"
    model = json.loads(trial_json.read_text())["model"]
    assert model["layout"] == "stick7" and layout_from_dict(model["layout_def"]) == layout_from_dict(LAYOUT)

    bundle = tmp_path / "bundle"
    _run("export", outcome.sweep_dir, "--trial", row["trial_name"], "-o", str(bundle))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["layout"] == "stick7" and manifest["num_joints"] == 7
    assert layout_from_dict(manifest["layout_def"]) == layout_from_dict(LAYOUT)

    from skelray.serve import app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(app({"bundle": str(bundle), "num_cpus": 0.4, "max_batch_size": 4}), name="stick",
                  route_prefix="/")
        sent = _clips(1, seed=5)
        offline = load_bundle(bundle).predict(sent, k=2)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            r = client.post("/v1/predict", json={"instances": [c.tolist() for c in sent], "top_k": 2})
            assert r.status_code == 200, r.text
            got = r.json()["predictions"]
            np.testing.assert_allclose([p["probabilities"] for p in got], offline["probabilities"], rtol=1e-4,
                                       atol=1e-6)
            wrong = client.post("/v1/predict", json={"keypoints": sent[0][:, :, :5].tolist()})
            assert wrong.status_code == 422 and "stick7 has 7" in wrong.text
    finally:
        serve.shutdown()  # its replicas hold CPUs a later sweep of this module needs


def test_data_layout_takes_a_layout_file_for_any_format(tmp_path, layout_file):
    from skelray.config import DataSpec
    from skelray.train.data import load_splits

    spec = DataSpec(format="synthetic", layout=str(layout_file), num_classes=4, num_per_class=4, frames=8)
    bundle = load_splits(spec)
    assert bundle.layout == "stick7" and layout_from_dict(bundle.layout_def) == layout_from_dict(LAYOUT)
    assert bundle.splits["train"].clips[0].shape[2] == 7


@pytest.mark.parametrize(("content", "says"), [
    (None, "does not exist"),
    ({**LAYOUT, "edges": [["chest", "pelvs"]]}, "edges[0]: 'pelvs' is neither a joint index nor a joint name"),
    ({**LAYOUT, "name": "kinect_v1_20"}, "defines layout 'kinect_v1_20', but a different layout of that name"),
])
def test_a_bad_layout_file_is_a_config_error_at_data_layout(tmp_path, content, says):
    path = tmp_path / "bad.yaml"
    if content is not None:
        path.write_text(yaml.safe_dump(content))
    data = {"format": "synthetic", "layout": str(path), "num_classes": 4, "num_per_class": 8}
    with pytest.raises(ConfigError) as err:
        load_sweep(_sweep("bad", tmp_path, data))
    assert "data.layout" in str(err.value) and says in str(err.value)


def test_an_unknown_layout_name_points_at_layout_files(tmp_path):
    data = {"format": "synthetic", "layout": "stick8", "num_classes": 4, "num_per_class": 8}
    with pytest.raises(ConfigError, match=r"data.layout: unknown layout 'stick8'.*give a layout YAML/JSON file"):
        load_sweep(_sweep("bad", tmp_path, data))
