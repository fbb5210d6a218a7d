"""Fixtures for deploy tests: the sweep tests' tiny synthetic sweep, and the KubeRay CRDs."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent


def _load_tiny_sweep() -> Callable[..., dict[str, Any]]:
    # tests/ is not a package: load the sweep tests' conftest by path to share its tiny sweep.
    spec = importlib.util.spec_from_file_location("_skelray_sweep_conftest", TESTS / "sweep" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.tiny_sweep


tiny_sweep = _load_tiny_sweep()


@pytest.fixture(name="tiny_sweep")
def tiny_sweep_fixture():
    """``tiny_sweep(name, storage, **overrides) -> dict``: 2 trials of a few seconds each."""
    return tiny_sweep


@pytest.fixture(scope="session")
def crd_schemas_or_none() -> dict[str, Any] | None:
    """The KubeRay v1 CRD schemas, or None where they are absent (the project ships none):
    then only the operator's rules and the built-in kinds are checked."""
    from skelray.deploy.validate import default_crd_dir, load_crd_schemas

    crds = default_crd_dir()
    return load_crd_schemas(crds) if crds is not None else None


@pytest.fixture(scope="session")
def crd_schemas(crd_schemas_or_none) -> dict[str, Any]:
    if crd_schemas_or_none is None:
        pytest.skip("KubeRay CRDs not found: put them at ../shared/reference/kuberay-crds "
                    "or set SKELRAY_KUBERAY_CRDS")
    return crd_schemas_or_none
