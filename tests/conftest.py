"""Shared fixtures: where the NW-UCLA dataset lives, and Ray hygiene for every test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# No network on CI machines: never let Ray or W&B try to phone home.
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
os.environ.setdefault("WANDB_SILENT", "true")


def ucla_dir() -> Path:
    return Path(os.environ.get("SKELRAY_UCLA", REPO.parent / "shared" / "data" / "nw_ucla"))


@pytest.fixture(scope="session")
def ucla_path() -> Path:
    path = ucla_dir()
    if not path.is_dir() or not any(path.glob("a*_s*_e*_v*.json")):
        pytest.skip(f"NW-UCLA not found at {path}: set SKELRAY_UCLA to the folder of aAA_sSS_eEE_vVV.json files")
    return path


# -- the demo sweep (two trained trials) that ensemble, export and serve tests build on ------------
# Built once per pytest session under the session's base temp folder, by whichever module needs
# it first; later modules reuse the same folder. ``_demo`` is tests/_demo.py: pytest puts this
# folder (the rootdir conftest's) on sys.path.
def _demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.getbasetemp() / "skelray-demo"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from _demo import demo_experiment

    return demo_experiment(_demo_root(tmp_path_factory))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of both demo trials (unequal weights), exported once per session."""
    from _demo import demo_bundle

    return demo_bundle(_demo_root(tmp_path_factory))


@pytest.fixture(scope="module")
def local_ray():
    """A private local Ray (2 CPUs) for the module, unless this process runs one already."""
    import ray

    from skelray.runtime import start_ray

    started = start_ray(num_cpus=2, object_store_memory=200 * 2**20)
    yield
    if started:
        ray.shutdown()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` need CUDA: skipped, saying so, on a machine without it."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run benchmarks/gpu_check.py on a GPU node)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
