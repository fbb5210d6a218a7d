"""A tiny sweep, ensemble and bundle to build on, for the tests and benchmarks/bench_serve.py.

Two HPI-GCN-RP trials on synthetic Kinect-v1 (20 joint) clips, two epochs each, differing in
stream and PA count: (PA 1, joint) and (PA 2, bone). Under a minute on two idle CPU cores.
The layout matches NW-UCLA, so real UCLA clips can be sent to what it trains.
``demo_experiment(root)`` and ``demo_bundle(root)`` build once under ``root`` and reuse it.

Import it as ``_demo``: under pytest ``tests/`` is on ``sys.path`` (the folder of the rootdir
conftest); a script puts it there itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

NAME = "ensemble-demo"
# Unequal, so a bug that ignores or reorders the weights changes the answers.
WEIGHTS = {"t00000": 0.6, "t00001": 0.4}


def demo_sweep_spec(name: str, storage: str | Path, *, epochs: int = 2,
                    num_per_class: int = 16) -> dict[str, Any]:
    return {
        "name": name,
        "data": {"format": "synthetic", "layout": "kinect_v1_20", "num_classes": 4,
                 "num_per_class": num_per_class,
                 "frames": 8, "persons": 1, "split": {"train": "train", "val": "val", "test": "test"}},
        "model": {"name": "hpigcn_rp", "kwargs": {"pa_count": 1}},
        # AdamW at a small rate keeps logits moderate after two epochs (SGD at 0.05 can reach 1e6).
        "train": {"epochs": epochs, "batch_size": 8, "optimizer": "adamw", "lr": 0.002,
                  "latency_batches": [1]},
        # The second member averages each clip with its mirror image, so export and serving are
        # checked with a model option that changes the forward pass but adds no weights.
        "search": {"model.kwargs.pa_count": {"grid": [1, 2]},
                   "data.stream": {"depends": "model.kwargs.pa_count", "map": {1: "j", 2: "b"}},
                   "model.kwargs.mirror_tta": {"depends": "model.kwargs.pa_count", "map": {1: False, 2: True}}},
        "resources": {"cpu": 1},
        "storage": str(storage),
        "wandb": {"mode": "disabled"},
    }


def demo_experiment(root: str | Path, **kwargs: Any) -> Path:
    """The demo sweep's folder under ``root``, run now if it is not there yet. Uses the Ray this
    process started, or starts a private local one (never someone else's running cluster)."""
    import ray
    from rich.console import Console

    from skelray.runtime import start_ray
    from skelray.sweep.runner import run_sweep
    from skelray.sweep.spec import load_sweep

    sweep = Path(root) / NAME
    if (sweep / "results" / "trials.parquet").is_file():
        return sweep
    started = start_ray(num_cpus=2, object_store_memory=200 * 2**20)
    try:
        outcome = run_sweep(load_sweep(demo_sweep_spec(NAME, root, **kwargs)), console=Console(quiet=True))
    finally:
        if started:
            ray.shutdown()
    return Path(outcome.sweep_dir)


def demo_bundle(root: str | Path) -> Path:
    """A bundle of both demo trials (weights ``WEIGHTS``) under ``root``, exported once."""
    from skelray.ensemble.builder import ensemble_of
    from skelray.export.writer import export_bundle

    bundle = Path(root) / "bundle"
    if (bundle / "manifest.json").is_file():
        return bundle
    sweep = demo_experiment(root)
    ensemble_of(sweep, WEIGHTS).save(Path(root) / "ENSEMBLE.json")
    export_bundle(Path(root) / "ENSEMBLE.json", bundle)
    return bundle


def three_member_bundle(root: str | Path) -> Path:
    """The demo bundle with a third member (the first one's weights under another name and
    weight), under ``root``: what a user gets from a 3-member ensemble, without a third trial."""
    import json
    import shutil

    bundle = Path(root) / "bundle-3"
    if (bundle / "manifest.json").is_file():
        return bundle
    source = demo_bundle(root)
    tmp = Path(root) / "bundle-3.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    doc = json.loads((tmp / "manifest.json").read_text())
    third = {**doc["members"][0], "name": "m2-copy"}
    doc["members"].append(third)
    for m, w in zip(doc["members"], (0.5, 0.3, 0.2)):
        m["weight"] = w
    (tmp / "manifest.json").write_text(json.dumps(doc, indent=1))
    tmp.rename(bundle)
    return bundle
