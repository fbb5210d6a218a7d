"""Package a sweep for a Ray cluster: check it here, stage its files, build the runtime env.

What the job receives:
  working_dir   a fresh folder holding only the sweep file (so nothing else of the caller's
                disk travels); the entrypoint names it relatively
  py_modules    this checkout's ``skelray`` package (``--no-ship``: use the image's copy)
  pip           nothing by default: the image carries the pinned set (k8s/Dockerfile);
                ``--pip`` installs requirements.lock (minus ray) in a per-job virtualenv
  env_vars      W&B variables from the caller's environment, in memory only
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import skelray
from skelray.deploy.jobs import entrypoint, forwarded_env, submission_id
from skelray.errors import ConfigError

PACKAGE_DIR = Path(skelray.__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
# Never uploaded: caches, and anything a developer may have left inside the package folder.
EXCLUDES = ["__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv", "runs", ".git"]
# Ray refuses packages over 512 MiB; a source package over a few MiB holds data by mistake.
LARGE_FILE_BYTES = 5 * 2**20


@dataclass
class Submission:
    submission_id: str
    entrypoint: str
    runtime_env: dict[str, Any]  # holds env var values: print ``jobs.masked(runtime_env)`` only
    sweep_name: str
    storage: str
    skipped_large: list[str]  # package files left out for their size


def _storage(storage: str | None, spec_storage: str | None) -> str:
    """Where the job writes results: a path every node sees, or an object-store URI."""
    value = storage or spec_storage
    where = "--storage" if storage else "storage"
    if not value:
        raise ConfigError("a sweep on a cluster needs a results location every node can reach",
                          where="storage", fix="pass --storage /shared/runs (a shared filesystem) or "
                                               "--storage s3://bucket/runs")
    if "://" not in value and not os.path.isabs(value):
        raise ConfigError(f"{value!r} is relative: the job would write it into its own temporary folder",
                          where=where, fix="give an absolute path on a filesystem every node mounts, or s3://...")
    return value


def _check_data_path(path: str | None, data_format: str) -> None:
    if path and data_format != "synthetic" and "://" not in path and not os.path.isabs(path):
        raise ConfigError(f"{path!r} is relative: the job resolves it inside its own temporary folder",
                          where="data.path", fix="use --data /absolute/path as the cluster's nodes see it")


def large_files(root: Path, limit: int = LARGE_FILE_BYTES) -> list[str]:
    """Files under ``root`` bigger than ``limit`` bytes, relative to ``root``."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in ("__pycache__", ".git", ".venv")]
        for name in filenames:
            path = Path(dirpath) / name
            if path.stat().st_size > limit:
                out.append(path.relative_to(root).as_posix())
    return sorted(out)


def read_requirements(path: Path) -> list[str]:
    """Pinned lines of a requirements file, without Ray: a job must use the cluster's own Ray."""
    if not path.is_file():
        raise ConfigError("does not exist", where=f"--requirements {path}",
                          fix="pass the pinned set, e.g. requirements.lock of the checkout")
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        name = line.split("==")[0].split("[")[0].strip().lower()
        if line and name != "ray":
            out.append(line)
    return out


@contextmanager
def staged(sweep_file: Path, *, storage: str | None = None, data: str | None = None,
           sets: list[str] | None = None, ship: bool = True, requirements: Path | None = None,
           env_names: list[str] | None = None, env: Mapping[str, str] | None = None) -> Iterator[Submission]:
    """Validate the sweep here and yield its submission; the staged folder lives while inside.

    Validation runs before anything is sent, with the same overrides the job applies, so a bad
    file fails in a second here rather than minutes later on the cluster.
    """
    from skelray.config.overrides import cli_overrides
    from skelray.sweep.spec import load_sweep

    sets = list(sets or [])
    if not sweep_file.is_file():
        raise ConfigError("does not exist", where=str(sweep_file), fix="pass the path of a sweep YAML")
    # The data may exist only on the cluster's disks: its path is checked there.
    spec = load_sweep(sweep_file, cli_overrides(sets, data), check_paths=False)
    _check_data_path(spec.data.path, spec.data.format)
    results = _storage(storage, spec.storage)
    env_vars = forwarded_env(list(env_names or []), env)

    with tempfile.TemporaryDirectory(prefix="skelray-submit-") as tmp:
        workdir = Path(tmp) / "job"
        workdir.mkdir()
        shutil.copy2(sweep_file, workdir / sweep_file.name)
        runtime_env: dict[str, Any] = {"working_dir": str(workdir)}
        skipped: list[str] = []
        if ship:
            skipped = large_files(PACKAGE_DIR)
            runtime_env["py_modules"] = [str(PACKAGE_DIR)]
            runtime_env["excludes"] = [*EXCLUDES, *(f"/{p}" for p in skipped)]
        if requirements is not None:
            runtime_env["pip"] = {"packages": read_requirements(requirements), "pip_check": False}
        if env_vars:
            runtime_env["env_vars"] = env_vars
        yield Submission(
            submission_id=submission_id(spec.name),
            entrypoint=entrypoint(sweep_file.name, storage=results, data=data, sets=sets),
            runtime_env=runtime_env, sweep_name=spec.name, storage=results, skipped_large=skipped)
